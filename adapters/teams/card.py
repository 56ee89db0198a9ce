"""One notification as a Teams message: an Adaptive Card (version 1.4) in the envelope Teams
Workflows' "When a Teams webhook request is received" trigger posts to a channel or chat.

The card says what the webhook presets say (``adapters.webhook.presets.summary_of``: headline,
state, facts, links), and a page or reminder carries ``Action.OpenUrl`` buttons to signed,
expiring acknowledge / resolve links (``adapters.email.links``, channel ``teams``): opening one
shows a confirmation page, and only its form's POST acts, as for the links in emails. A Workflows
webhook cannot update a card it posted (it answers 202 with no message id), so each state change
is a new card: an acknowledgement (made anywhere) and a resolution each post one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.delivery.notifier import Delivery
from adapters.email.links import LinkSigner
from adapters.webhook.notifier import payload, with_page
from adapters.webhook.presets import Summary, summary_of

__all__ = ["CARD_CONTENT_TYPE", "CARD_VERSION", "card", "message"]

CARD_VERSION = "1.4"  # what Teams renders on desktop, web and mobile alike
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_TEXT = 1000  # characters of one text block or fact: a card stays far below Teams' 28 KB


def _cut(text: str, limit: int = _TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _colour(s: Summary) -> str:
    if s.resolved:
        return "Good"
    return "Attention" if s.severity in ("P0", "P1") else "Warning"


def _actions(delivery: Delivery, signer: LinkSigner, now: datetime, s: Summary) -> list[Any]:
    row, inc = delivery.row, delivery.incident
    out: list[dict[str, Any]] = []
    # A page or reminder can be acknowledged or resolved; the card saying it was acknowledged
    # (a new card: a Workflows webhook cannot edit the first) can still be resolved.
    buttons: dict[str, tuple[str, ...]] = {
        "page": ("ack", "resolve"),
        "reminder": ("ack", "resolve"),
        "acknowledge": ("resolve",),
    }
    for action in buttons.get(row.kind, ()) if not s.resolved else ():
        url = signer.url(inc.id, action, row.person, now, epoch=inc.epoch)
        title = "Acknowledge" if action == "ack" else "Resolve"
        out.append({"type": "Action.OpenUrl", "title": title, "url": url})
    out += [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in s.links]
    return out


def card(delivery: Delivery, signer: LinkSigner, now: datetime) -> dict[str, Any]:
    """The Adaptive Card for ``delivery``."""
    s = summary_of(with_page(payload(delivery, now), signer.public_url))
    return {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "fallbackText": _cut(f"{s.headline}: {s.state}"),
        "body": [
            {
                "type": "TextBlock",
                "text": _cut(s.headline),
                "weight": "Bolder",
                "size": "Medium",
                "color": _colour(s),
                "wrap": True,
            },
            {"type": "TextBlock", "text": _cut(s.state), "isSubtle": True, "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": _cut(k, 100), "value": _cut(v)} for k, v in s.facts],
            },
        ],
        "actions": _actions(delivery, signer, now, s),
    }


def message(content: Mapping[str, Any]) -> dict[str, Any]:
    """The Workflows webhook's request body around one card."""
    return {
        "type": "message",
        "attachments": [
            {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": dict(content)}
        ],
    }
