"""Publishes one notification to ntfy as JSON (``POST {server_url}/``, ntfy's "Publish as JSON").

The publication: ``topic`` (the person's ``ntfy_topic``), ``title`` (the headline), ``message``
(state and facts, at most ntfy's 4,096 bytes: a longer one would become an attachment, which a
server without an attachment cache refuses), ``priority`` (P0 → 5 "max/urgent", P1 → 4, P2 → 3,
lower → 2; a resolution 2), ``tags``, ``click`` (the incident's console page) and up to ntfy's
three ``actions``: Acknowledge and Resolve as ``http`` actions POSTing to signed tocsin links,
and a ``view`` of the incident.

ntfy answers the message as JSON (``{"id", "time", "event": "message", ...}``; the id is the
provider id) or an error ``{"code": 40101, "http": 401, "error": "unauthorized", ...}``: 429
(``42901`` and the other limits) → rate limited; 5xx, network errors, timeouts → retryable;
401/403 (a wrong or revoked token, a topic the token may not write) and other 4xx → permanent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp

from adapters.config import NtfyConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.email.links import LinkSigner
from adapters.http import Answer, exchange, failed_answer
from adapters.webhook.notifier import payload, with_page
from adapters.webhook.presets import Summary, summary_of
from escalation.engine.clock import Clock

__all__ = ["MESSAGE_LIMIT", "TOPIC", "NtfyNotifier", "priority_of", "publication"]

MESSAGE_LIMIT = 4096  # bytes of ``message`` (ntfy's default message-size-limit)
TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")  # ntfy's topicRegex
_TITLE = 250  # characters: a phone shows one or two lines


def priority_of(s: Summary, kind: str) -> int:
    """ntfy's 1 to 5 for this notification: the worse the level, the louder the phone."""
    if s.resolved or kind == "resolve":
        return 2
    return {"P0": 5, "P1": 4, "P2": 3}.get(s.severity, 2)


def _cut_bytes(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore").rstrip() + "…"


def _actions(delivery: Delivery, signer: LinkSigner, now: datetime, s: Summary) -> list[Any]:
    row, inc = delivery.row, delivery.incident
    out: list[dict[str, Any]] = []
    if row.kind in ("page", "reminder") and not s.resolved:
        for action, label in (("ack", "Acknowledge"), ("resolve", "Resolve")):
            url = signer.url(inc.id, action, row.person, now, epoch=inc.epoch)
            # The app POSTs at once, no confirmation: the link is single-use and expires.
            out.append(
                {"action": "http", "label": label, "url": url, "method": "POST", "clear": True}
            )
    # The third button: the runbook (or the alert's source) if known; ``click`` opens the page.
    view = [link for link in s.links if link[0] != "Incident"][:1] or list(s.links[:1])
    out += [{"action": "view", "label": label, "url": url} for label, url in view]
    return out


def publication(
    delivery: Delivery, topic: str, signer: LinkSigner, now: datetime
) -> dict[str, Any]:
    """The JSON ntfy publishes for ``delivery`` to ``topic``."""
    doc = with_page(payload(delivery, now), signer.public_url)
    s = summary_of(doc)
    lines = [s.state, *(f"{k}: {v}" for k, v in s.facts if k != "Status")]
    out: dict[str, Any] = {
        "topic": topic,
        "title": s.headline[:_TITLE],
        "message": _cut_bytes("\n".join(lines), MESSAGE_LIMIT),
        "priority": priority_of(s, delivery.row.kind),
        "tags": ["white_check_mark" if s.resolved else "rotating_light", s.severity],
        "actions": _actions(delivery, signer, now, s),
    }
    page = doc["incident"].get("page")
    if page:
        out["click"] = page
    return out


def _error_text(answer: Answer) -> str:
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    code, error = doc.get("code"), doc.get("error")
    return f"{code} {error}" if isinstance(code, int) and isinstance(error, str) else ""


class NtfyNotifier:
    """One publication per notification, to the person's topic."""

    def __init__(
        self,
        cfg: NtfyConfig,
        signer: LinkSigner,
        http: Callable[[], aiohttp.ClientSession],
        clock: Clock,
    ) -> None:
        self._url = cfg.server_url.rstrip("/") + "/"  # JSON is published to the root URL
        self._token = cfg.access_token
        self._timeout = cfg.timeout.total_seconds()
        self._signer = signer
        self._http = http
        self._clock = clock

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """One publish attempt."""
        topic = delivery.person.get("ntfy_topic")
        if not isinstance(topic, str) or not TOPIC.match(topic):
            who = delivery.row.person
            return DeliveryResult(
                ok=False,
                reason=FailureReason.NO_ADDRESS,
                error=f"{who} has no valid ntfy_topic (1-64 of A-Z a-z 0-9 _ -)",
            )
        now = self._clock.now()
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        answer = await exchange(
            self._http(),
            "POST",
            self._url,
            label="ntfy",
            limit=self._timeout,
            now=now,
            headers=headers,
            json_body=publication(delivery, topic, self._signer, now),
        )
        if isinstance(answer, DeliveryResult):
            return answer
        if not 200 <= answer.status < 300:
            return failed_answer("ntfy", answer, _error_text(answer))
        try:
            message_id = json.loads(answer.body).get("id", "")
        except (ValueError, AttributeError):
            message_id = ""
        return DeliveryResult(
            ok=True, provider_id=message_id if isinstance(message_id, str) else ""
        )
