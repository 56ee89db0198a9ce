"""PagerDuty, both ways: Events API v2 out (``events``), on-call lookups (``oncall``).

Signed v3 webhooks coming back in are handled by ``router.inbound_pagerduty``.
"""

from __future__ import annotations

from adapters.config import PagerDutyConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.pagerduty.events import PagerDutyEventsNotifier
from adapters.pagerduty.oncall import OncallLookup, OncallLookupError

__all__ = ["OncallLookup", "OncallLookupError", "PagerDutyEventsNotifier", "build"]

ROUTING_KEY_LENGTH = 32


def check(cfg: PagerDutyConfig) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.pagerduty``, message).

    Never a key's value. ``tocsin check`` and ``serve`` both apply this (through the config
    loader), so a config ``check`` accepts is never refused at start.
    """
    out: list[tuple[tuple[str, ...], str]] = []
    if not cfg.events_url.startswith(("https://", "http://")):
        out.append((("events_url",), "must be an http:// or https:// URL"))
    for name, key in cfg.services.items():
        n = len(key.get_secret_value())
        if n != ROUTING_KEY_LENGTH:
            message = (
                f"a PagerDuty routing (integration) key is "
                f"{ROUTING_KEY_LENGTH} characters long; this one has {n}"
            )
            out.append((("services", name), message))
    return out


def build(cfg: PagerDutyConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """The ``pagerduty`` channel; ValueError names what is wrong (never a key's value)."""
    problems = check(cfg)
    if problems:
        raise ValueError("; ".join(f"{'.'.join(loc)}: {message}" for loc, message in problems))
    return {"pagerduty": PagerDutyEventsNotifier(cfg, ctx)}
