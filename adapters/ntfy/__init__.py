"""The ``ntfy`` channel: push notifications through ntfy.sh or a self-hosted ntfy server.

Each page is published as JSON to the server's root URL, to the person's ``ntfy_topic``, with a
priority from the severity and Acknowledge / Resolve buttons: ntfy ``http`` actions that POST to
signed, expiring, single-use tocsin links (``adapters.email.links``, channel ``ntfy``). The app
sends that POST without asking, so ``build`` refuses a configuration without ``link_secret``.
"""

from __future__ import annotations

from adapters.config import NtfyConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.email.links import LinkSigner
from adapters.http import private_in_transit
from adapters.ntfy.notifier import NtfyNotifier, publication
from adapters.signed_links import checked_signer, public_url_problems, secret_problems

__all__ = ["NtfyNotifier", "build", "check", "link_signer", "publication"]


def check(cfg: NtfyConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.ntfy``, message)."""
    out = secret_problems(
        cfg.link_secret,
        "link_secret",
        "the ntfy Acknowledge buttons are signed links",
        "it signs the Acknowledge buttons of ntfy notifications",
    )
    out += public_url_problems(public_url, "ntfy buttons")
    if cfg.access_token is not None and not private_in_transit(cfg.server_url):
        # The token (and the signed buttons) would cross the network in clear text.
        out.append(
            (
                ("server_url",),
                "must be https:// (http:// only to localhost) when access_token is set",
            )
        )
    elif not cfg.server_url.startswith(("http://", "https://")):
        out.append((("server_url",), "must be an http(s) URL"))
    return out


def link_signer(cfg: NtfyConfig, public_url: str) -> LinkSigner:
    """The signer for ``cfg``'s buttons; ValueError when ``check`` finds a problem."""
    problems = check(cfg, public_url)
    return checked_signer(problems, cfg.link_secret, cfg.link_ttl, public_url, "ntfy")


def build(cfg: NtfyConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``ntfy``: one notifier publishing to each person's topic."""
    signer = link_signer(cfg, ctx.public_url)
    return {"ntfy": NtfyNotifier(cfg, signer, ctx.http, ctx.clock)}
