"""The ``teams`` channel: Adaptive Cards to Microsoft Teams through Workflows webhooks.

``via: [teams]`` posts to every configured webhook; ``via: [teams:<name>]`` to that one only.
The cards' buttons open signed, expiring acknowledge / resolve links, so ``build`` (like the
email channel's) refuses a configuration without ``link_secret``.
"""

from __future__ import annotations

from adapters.config import TeamsConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.email.links import MIN_SECRET_LENGTH, LinkSigner
from adapters.http import private_in_transit
from adapters.teams.notifier import TeamsNotifier

__all__ = ["TeamsNotifier", "build", "check", "link_signer"]


def check(cfg: TeamsConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.teams``, message)."""
    out: list[tuple[tuple[str, ...], str]] = []
    secret = cfg.link_secret
    if secret is None:
        out.append(((), "link_secret is required: the Teams cards' acknowledge links are signed"))
    elif len(secret.get_secret_value().encode()) < MIN_SECRET_LENGTH:
        out.append(
            (
                ("link_secret",),
                f"link_secret must be at least {MIN_SECRET_LENGTH} characters "
                "(it signs the acknowledge links in Teams cards)",
            )
        )
    if not public_url.startswith(("http://", "https://")):
        out.append(
            ((), f"server.public_url must be an http(s) URL for Teams links, not {public_url!r}")
        )
    for name, url in cfg.webhooks.items():
        if not private_in_transit(url.get_secret_value()):
            # Never echo the URL: its sig= is the credential.
            out.append(
                (
                    ("webhooks", name),
                    "must be the workflow's https:// webhook URL (http:// only to localhost)",
                )
            )
    return out


def link_signer(cfg: TeamsConfig, public_url: str) -> LinkSigner:
    """The signer for ``cfg``'s links; ValueError when ``check`` finds a problem."""
    problems = check(cfg, public_url)
    if problems or cfg.link_secret is None:
        raise ValueError("; ".join(message for _, message in problems))
    secret = cfg.link_secret.get_secret_value()
    return LinkSigner(secret, cfg.link_ttl, public_url, channel="teams")


def build(cfg: TeamsConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``teams`` (all webhooks) and ``teams:<name>`` (one each)."""
    signer = link_signer(cfg, ctx.public_url)
    timeout = cfg.timeout.total_seconds()
    out: dict[str, Notifier] = {
        "teams": TeamsNotifier(cfg.webhooks, signer, ctx.http, ctx.clock, timeout)
    }
    for name, url in cfg.webhooks.items():
        out[f"teams:{name}"] = TeamsNotifier({name: url}, signer, ctx.http, ctx.clock, timeout)
    return out
