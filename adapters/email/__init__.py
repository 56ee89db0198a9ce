"""The ``email`` channel: SMTP through aiosmtplib, with signed acknowledge / resolve links.

``build`` refuses a configuration without ``link_secret``: an email whose links anyone could
forge would let anyone acknowledge (and so silence) an incident.
"""

from __future__ import annotations

from adapters.config import EmailConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.email.links import MIN_SECRET_LENGTH, LinkSigner
from adapters.email.sender import EmailNotifier, SmtpTransport

__all__ = ["EmailNotifier", "build", "check", "link_signer"]


def check(cfg: EmailConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.email``, message).

    ``tocsin check`` and ``serve`` both apply this (through the config loader), so a config
    ``check`` accepts is never refused at start.
    """
    secret = cfg.link_secret
    if secret is None:
        what = (
            "link_secret is required: the acknowledge / resolve links in emails are signed with it"
        )
        return [((), what)]
    out: list[tuple[tuple[str, ...], str]] = []
    if len(secret.get_secret_value().encode()) < MIN_SECRET_LENGTH:
        out.append(
            (
                ("link_secret",),
                f"link_secret must be at least {MIN_SECRET_LENGTH} characters "
                "(it signs the acknowledge links in emails)",
            )
        )
    if not public_url.startswith(("http://", "https://")):
        out.append(
            ((), f"server.public_url must be an http(s) URL for email links, not {public_url!r}")
        )
    return out


def link_signer(cfg: EmailConfig, public_url: str) -> LinkSigner:
    """The signer for ``cfg``'s links; ValueError when ``check`` finds a problem."""
    problems = check(cfg, public_url)
    if problems or cfg.link_secret is None:
        raise ValueError("; ".join(message for _, message in problems))
    return LinkSigner(cfg.link_secret.get_secret_value(), cfg.link_ttl, public_url)


def build(cfg: EmailConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``{"email": EmailNotifier}`` for ``cfg``; ValueError / OSError when it cannot work."""
    signer = link_signer(cfg, ctx.public_url)
    return {"email": EmailNotifier(cfg, signer, ctx.clock, SmtpTransport(cfg))}
