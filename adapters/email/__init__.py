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

__all__ = ["EmailNotifier", "build", "link_signer"]


def link_signer(cfg: EmailConfig, public_url: str) -> LinkSigner:
    """The signer for ``cfg``'s links; ValueError without a (long enough) ``link_secret``."""
    if cfg.link_secret is None:
        raise ValueError(
            "link_secret is required: the acknowledge / resolve links in emails are signed with it"
        )
    if not public_url.startswith(("http://", "https://")):
        raise ValueError(
            f"server.public_url must be an http(s) URL for email links, not {public_url!r}"
        )
    return LinkSigner(cfg.link_secret.get_secret_value(), cfg.link_ttl, public_url)


def build(cfg: EmailConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``{"email": EmailNotifier}`` for ``cfg``; ValueError / OSError when it cannot work."""
    signer = link_signer(cfg, ctx.public_url)
    return {"email": EmailNotifier(cfg, signer, ctx.clock, SmtpTransport(cfg))}
