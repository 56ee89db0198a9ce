"""The ``webhook`` channel: signed JSON POSTs to configured endpoints.

``via: [webhook]`` posts to every endpoint; ``via: [webhook:<name>]`` to that one only. An
endpoint posts tocsin's JSON document, a chat platform's own request (``preset``) or a Jinja2
body (``template``); ``check`` refuses a template that fails on a sample notification.
"""

from __future__ import annotations

from adapters.config import WebhookConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.webhook.bodies import check
from adapters.webhook.notifier import SIGNATURE_HEADER, WebhookNotifier, payload, sign

__all__ = ["SIGNATURE_HEADER", "WebhookNotifier", "build", "check", "payload", "sign"]


def build(cfg: WebhookConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``webhook`` (all endpoints) and ``webhook:<name>`` (one each)."""
    out: dict[str, Notifier] = {
        "webhook": WebhookNotifier(cfg.endpoints, ctx.http, ctx.clock, ctx.public_url)
    }
    for name, ep in cfg.endpoints.items():
        out[f"webhook:{name}"] = WebhookNotifier({name: ep}, ctx.http, ctx.clock, ctx.public_url)
    return out
