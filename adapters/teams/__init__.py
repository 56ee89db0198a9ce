"""The ``teams`` channel: Adaptive Cards to Microsoft Teams through Workflows webhooks.

``via: [teams]`` posts to every configured webhook; ``via: [teams:<name>]`` to that one only.
The cards' buttons open signed, expiring acknowledge / resolve links, so ``build`` (like the
email channel's) refuses a configuration without ``link_secret``.
"""

from __future__ import annotations

from adapters.config import TeamsConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.email.links import LinkSigner
from adapters.http import private_in_transit
from adapters.signed_links import checked_signer, public_url_problems, secret_problems
from adapters.teams.notifier import TeamsNotifier

__all__ = ["TeamsNotifier", "build", "check", "link_signer"]


def check(cfg: TeamsConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.teams``, message)."""
    out = secret_problems(
        cfg.link_secret,
        "link_secret",
        "the Teams cards' acknowledge links are signed",
        "it signs the acknowledge links in Teams cards",
    )
    out += public_url_problems(public_url, "Teams links")
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
    return checked_signer(problems, cfg.link_secret, cfg.link_ttl, public_url, "teams")


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
