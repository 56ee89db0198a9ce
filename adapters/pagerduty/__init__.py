"""PagerDuty, both ways: Events API v2 out (``events``), on-call lookups (``oncall``).

Signed v3 webhooks coming back in are handled by ``router.inbound_pagerduty``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from adapters.config import PagerDutyConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.http import is_loopback
from adapters.pagerduty.events import PagerDutyEventsNotifier
from adapters.pagerduty.oncall import OncallLookup, OncallLookupError
from adapters.tls import ca_file_problems

__all__ = ["OncallLookup", "OncallLookupError", "PagerDutyEventsNotifier", "build"]

ROUTING_KEY_LENGTH = 32


def check(cfg: PagerDutyConfig) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.pagerduty``, message).

    Never a key's value. ``tocsin check`` and ``serve`` both apply this (through the config
    loader), so a config ``check`` accepts is never refused at start.
    """
    out: list[tuple[tuple[str, ...], str]] = []
    out += [(("events_url",), m) for m in _events_url_problems(cfg)]
    out += [(("api_url",), m) for m in _api_url_problems(cfg)]
    out += ca_file_problems(cfg.tls_ca_path)
    for name, key in cfg.services.items():
        n = len(key.get_secret_value())
        if n != ROUTING_KEY_LENGTH:
            message = (
                f"a PagerDuty routing (integration) key is "
                f"{ROUTING_KEY_LENGTH} characters long; this one has {n}"
            )
            out.append((("services", name), message))
    return out


def _events_url_problems(cfg: PagerDutyConfig) -> list[str]:
    url = urlsplit(cfg.events_url)
    if url.scheme == "http" and url.hostname:
        if cfg.allow_insecure_events_url and is_loopback(url.hostname):
            return []
        if cfg.allow_insecure_events_url:
            # The escape hatch is for a fake on this machine: to any other host the routing key
            # would cross the network in clear.
            return [
                "allow_insecure_events_url allows plain http only to this machine (127.0.0.0/8, "
                f"::1, localhost) for a local test fake, not to {url.hostname!r}"
            ]
        return [
            "PagerDuty takes events over https only (an event sent over http carries the routing "
            "key in clear); allow_insecure_events_url: true allows http for a local test fake"
        ]
    if url.scheme != "https" or not url.hostname:
        return [f"must be an absolute https:// URL, not {cfg.events_url!r}"]
    return []


def _api_url_problems(cfg: PagerDutyConfig) -> list[str]:
    # No allow_insecure_* here: python-pagerduty refuses any REST base URL that is not https, so
    # an http one could only switch webhook matching and on-call lookups off at run time.
    url = urlsplit(cfg.api_url)
    if url.scheme == "http" and url.hostname:
        return [
            "PagerDuty's REST API is served over https only (a request over http carries the API "
            "token in clear); python-pagerduty refuses any other URL, even for a local test fake"
        ]
    if url.scheme != "https" or not url.hostname:
        return [f"must be an absolute https:// URL, not {cfg.api_url!r}"]
    return []


def build(cfg: PagerDutyConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """The ``pagerduty`` channel; ValueError names what is wrong (never a key's value)."""
    problems = check(cfg)
    if problems:
        raise ValueError("; ".join(f"{'.'.join(loc)}: {message}" for loc, message in problems))
    return {"pagerduty": PagerDutyEventsNotifier(cfg, ctx)}
