"""The ``email`` channel: SMTP through aiosmtplib, with signed acknowledge / resolve links.

``build`` refuses a configuration without ``link_secret``: an email whose links anyone could
forge would let anyone acknowledge (and so silence) an incident.
"""

from __future__ import annotations

from adapters.config import EmailConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.email.links import LinkSigner
from adapters.email.sender import EmailNotifier, SmtpTransport
from adapters.signed_links import checked_signer, public_url_problems, secret_problems
from adapters.tls import ca_file_problems

__all__ = ["EmailNotifier", "build", "check", "link_signer"]


def check(cfg: EmailConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.email``, message).

    ``tocsin check`` and ``serve`` both apply this (through the config loader), so a config
    ``check`` accepts is never refused at start.
    """
    out = secret_problems(
        cfg.link_secret,
        "link_secret",
        "the acknowledge / resolve links in emails are signed with it",
        "it signs the acknowledge links in emails",
    )
    out += ca_file_problems(cfg.tls_ca_path)
    if cfg.link_secret is None:
        return out
    return out + public_url_problems(public_url, "email links")


def link_signer(cfg: EmailConfig, public_url: str) -> LinkSigner:
    """The signer for ``cfg``'s links; ValueError when ``check`` finds a problem."""
    problems = check(cfg, public_url)
    return checked_signer(problems, cfg.link_secret, cfg.link_ttl, public_url, "email")


def build(cfg: EmailConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``{"email": EmailNotifier}`` for ``cfg``; ValueError / OSError when it cannot work."""
    signer = link_signer(cfg, ctx.public_url)
    return {"email": EmailNotifier(cfg, signer, ctx.clock, SmtpTransport(cfg))}
