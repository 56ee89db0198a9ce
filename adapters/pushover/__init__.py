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
from adapters.email.links import LinkSigner
from adapters.http import private_in_transit
from adapters.pushover.notifier import CALLBACK_PATH, PushoverNotifier
from adapters.signed_links import checked_signer, public_url_problems, secret_problems

__all__ = ["CALLBACK_PATH", "PushoverNotifier", "build", "callback_signer", "check"]


def check(cfg: PushoverConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg`` from working, as (path under ``adapters.pushover``, message)."""
    out = secret_problems(
        cfg.callback_secret,
        "callback_secret",
        "Pushover's acknowledgement callback is signed",
        "it signs the callback URL of emergency messages",
    )
    out += public_url_problems(public_url, "Pushover")
    if not private_in_transit(cfg.api_url):
        out.append((("api_url",), "must be https:// (http:// only to localhost): it carries token"))
    return out


def callback_signer(cfg: PushoverConfig, public_url: str) -> LinkSigner:
    """The signer of ``cfg``'s callback URLs; ValueError when ``check`` finds a problem."""
    problems = check(cfg, public_url)
    return checked_signer(problems, cfg.callback_secret, cfg.callback_ttl, public_url, "pushover")


def build(cfg: PushoverConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``pushover``: one notifier sending to each person's ``pushover_user``."""
    signer = callback_signer(cfg, ctx.public_url)
    return {"pushover": PushoverNotifier(cfg, signer, ctx.http, ctx.clock, ctx.incident_detail)}
