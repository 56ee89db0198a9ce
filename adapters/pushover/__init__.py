"""The ``pushover`` channel: Pushover notifications, emergency priority for the top levels.

An emergency message repeats on the phone until someone acknowledges it in the Pushover app;
Pushover then POSTs to the message's ``callback`` URL, a tocsin route carrying a signed,
expiring token (``adapters.email.links``, channel ``pushover``) that names the incident, the
person and the escalation run, so that acknowledgement acknowledges the tocsin incident. An
acknowledgement made anywhere else cancels the receipts still ringing (``UPDATED_CHANNELS``).
"""

from __future__ import annotations

from adapters.config import PushoverConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.email.links import MIN_SECRET_LENGTH, LinkSigner
from adapters.http import private_in_transit
from adapters.pushover.notifier import CALLBACK_PATH, PushoverNotifier

__all__ = ["CALLBACK_PATH", "PushoverNotifier", "build", "callback_signer", "check"]


def check(cfg: PushoverConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.pushover``, message)."""
    out: list[tuple[tuple[str, ...], str]] = []
    secret = cfg.callback_secret
    if secret is None:
        out.append(
            ((), "callback_secret is required: Pushover's acknowledgement callback is signed")
        )
    elif len(secret.get_secret_value().encode()) < MIN_SECRET_LENGTH:
        out.append(
            (
                ("callback_secret",),
                f"callback_secret must be at least {MIN_SECRET_LENGTH} characters "
                "(it signs the callback URL of emergency messages)",
            )
        )
    if not public_url.startswith(("http://", "https://")):
        out.append(
            ((), f"server.public_url must be an http(s) URL for Pushover, not {public_url!r}")
        )
    if not private_in_transit(cfg.api_url):
        out.append((("api_url",), "must be https:// (http:// only to localhost): it carries token"))
    return out


def callback_signer(cfg: PushoverConfig, public_url: str) -> LinkSigner:
    """The signer of ``cfg``'s callback URLs; ValueError when ``check`` finds a problem."""
    problems = check(cfg, public_url)
    if problems or cfg.callback_secret is None:
        raise ValueError("; ".join(message for _, message in problems))
    secret = cfg.callback_secret.get_secret_value()
    return LinkSigner(secret, cfg.callback_ttl, public_url, channel="pushover")


def build(cfg: PushoverConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``pushover``: one notifier sending to each person's ``pushover_user``."""
    signer = callback_signer(cfg, ctx.public_url)
    return {"pushover": PushoverNotifier(cfg, signer, ctx.http, ctx.clock, ctx.incident_detail)}
