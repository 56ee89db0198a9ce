"""Sends one notification through Pushover's Message API, and cancels what still rings.

``POST {api_url}/1/messages.json`` (form): ``token``, ``user`` (the person's ``pushover_user``),
``title`` (≤ 250 characters), ``message`` (≤ 1,024), ``url`` (≤ 512: the incident's console
page), ``priority``. The levels in ``emergency`` go as priority 2 with ``retry`` (≥ 30 s),
``expire`` (≤ 3 h) and a signed ``callback``; Pushover answers ``{"status": 1, "request",
"receipt"}`` and the receipt becomes the row's provider id (``receipt:<receipt>``). Other levels
go as priority 0, a resolution as -1. An acknowledgement made elsewhere (or a resolution)
cancels the person's receipts of the incident: ``POST /1/receipts/{receipt}/cancel.json``.

Pushover's answers: 200 ``status: 1``; 4xx ``status: 0`` with ``errors`` (a bad token or user
key: permanent); 429 (the application's monthly limit) → rate limited; 5xx, network errors and
timeouts → retryable, no sooner than 5 seconds later (Pushover asks for no more than one retry
every 5 seconds). A cancel refused with a 4xx (the receipt expired or was acknowledged) has
nothing left to stop; a cancel answered 5xx or 429 fails the acknowledgement's (or
resolution's) delivery, which is retried, so the receipt is cancelled after all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from urllib.parse import urlencode

import aiohttp

from adapters.config import PushoverConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.email.links import LinkSigner
from adapters.http import Answer, exchange, failed_answer
from adapters.webhook.notifier import payload, with_page
from adapters.webhook.presets import summary_of
from escalation.engine.clock import Clock
from escalation.engine.service import IncidentDetail

__all__ = ["CALLBACK_PATH", "RECEIPT", "USER_KEY", "PushoverNotifier", "receipt_of"]

CALLBACK_PATH = "/api/v1/pushover/callback"
USER_KEY = re.compile(r"^[A-Za-z0-9]{30}$")  # user and group keys
RECEIPT = re.compile(r"^[A-Za-z0-9]{30}$")
_PREFIX = "receipt:"
_LIMITS = {"title": 250, "message": 1024, "url": 512}
# "Being friendly to our API": after a 5xx (or no answer), retry no more than every 5 seconds.
_FRIENDLY_RETRY = 5.0


def receipt_of(provider_id: str) -> str | None:
    """The emergency receipt a row's provider id names, if any."""
    receipt = provider_id.removeprefix(_PREFIX) if provider_id.startswith(_PREFIX) else ""
    return receipt if RECEIPT.match(receipt) else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _friendly(result: DeliveryResult) -> DeliveryResult:
    """A retryable failure waits at least Pushover's 5 seconds (the policy's first backoff is
    shorter); a 429 keeps its own, slower rate-limit backoff."""
    if result.reason != FailureReason.RETRYABLE:
        return result
    return replace(result, retry_after=max(result.retry_after or 0.0, _FRIENDLY_RETRY))


def _errors(answer: Answer) -> str:
    try:
        doc = json.loads(answer.body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
    except ValueError:
        return ""
    return "; ".join(e for e in errors if isinstance(e, str))[:300] if errors else ""


class PushoverNotifier:
    """One message per notification; acknowledgements and resolutions cancel receipts."""

    def __init__(
        self,
        cfg: PushoverConfig,
        signer: LinkSigner,
        http: Callable[[], aiohttp.ClientSession],
        clock: Clock,
        incident_detail: Callable[[str], Awaitable[IncidentDetail | None]] | None,
    ) -> None:
        self._cfg = cfg
        self._api = cfg.api_url.rstrip("/")
        self._signer = signer
        self._http = http
        self._clock = clock
        self._detail = incident_detail

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """Cancel what rings (acknowledge, resolve), then send (page, reminder, resolve)."""
        return _friendly(await self._notify(delivery))

    async def _notify(self, delivery: Delivery) -> DeliveryResult:
        kind = delivery.row.kind
        if kind in ("acknowledge", "resolve"):
            cancelled = await self._cancel(delivery)
            if kind == "acknowledge" or not cancelled.ok:
                return cancelled
        user = delivery.person.get("pushover_user")
        if not isinstance(user, str) or not USER_KEY.match(user):
            who = delivery.row.person
            error = f"{who} has no valid pushover_user (30 letters)"
            return DeliveryResult(ok=False, reason=FailureReason.NO_ADDRESS, error=error)
        return await self._send(delivery, user)

    def form(self, delivery: Delivery, user: str, now: datetime) -> dict[str, str]:
        """The Message API's form for ``delivery`` to ``user``."""
        doc = with_page(payload(delivery, now), self._signer.public_url)
        s = summary_of(doc)
        lines = [s.state, *(f"{k}: {v}" for k, v in s.facts if k != "Status")]
        out = {
            "token": self._cfg.token.get_secret_value(),
            "user": user,
            "title": _cut(s.headline, _LIMITS["title"]),
            "message": _cut("\n".join(lines), _LIMITS["message"]),
            "timestamp": str(int(delivery.incident.opened_at.timestamp())),
        }
        page = doc["incident"].get("page")
        if page and len(page) <= _LIMITS["url"]:
            out |= {"url": page, "url_title": "Open incident"}
        if s.resolved:
            out["priority"] = "-1"  # no sound: nothing to do
        elif s.severity in self._cfg.emergency:
            inc, row = delivery.incident, delivery.row
            token = self._signer.token(inc.id, "ack", row.person, now, epoch=inc.epoch)
            callback = f"{self._signer.public_url}{CALLBACK_PATH}?{urlencode({'token': token})}"
            out |= {
                "priority": "2",
                "retry": str(int(self._cfg.retry.total_seconds())),
                "expire": str(int(self._cfg.expire.total_seconds())),
                "callback": callback,
            }
        else:
            out["priority"] = "0"
        return out

    async def _send(self, delivery: Delivery, user: str) -> DeliveryResult:
        now = self._clock.now()
        answer = await exchange(
            self._http(),
            "POST",
            f"{self._api}/1/messages.json",
            label="pushover",
            limit=self._cfg.timeout.total_seconds(),
            now=now,
            form=self.form(delivery, user, now),
        )
        if isinstance(answer, DeliveryResult):
            return answer
        try:
            doc = json.loads(answer.body)
        except ValueError:
            doc = None
        if answer.status != 200 or not isinstance(doc, dict) or doc.get("status") != 1:
            return failed_answer("pushover", answer, _errors(answer))
        receipt = doc.get("receipt")
        if isinstance(receipt, str) and RECEIPT.match(receipt):
            return DeliveryResult(ok=True, provider_id=_PREFIX + receipt)
        request = doc.get("request")
        return DeliveryResult(ok=True, provider_id=request if isinstance(request, str) else "")

    async def _cancel(self, delivery: Delivery) -> DeliveryResult:
        """Cancel every receipt of this person's emergency pages of the incident."""
        if self._detail is None:
            return DeliveryResult(ok=False, error="pushover: no incident reader to find receipts")
        detail = await self._detail(delivery.incident.id)
        row = delivery.row
        receipts = sorted(
            {
                r
                for o in (detail.outbox if detail is not None else [])
                if o.channel == row.channel and o.person == row.person
                for r in [receipt_of(o.provider_id)]
                if r is not None
            }
        )
        for receipt in receipts:
            answer = await exchange(
                self._http(),
                "POST",
                f"{self._api}/1/receipts/{receipt}/cancel.json",
                label="pushover cancel",
                limit=self._cfg.timeout.total_seconds(),
                now=self._clock.now(),
                form={"token": self._cfg.token.get_secret_value()},
            )
            if isinstance(answer, DeliveryResult):
                return answer
            if answer.status == 429 or answer.status >= 500:
                return failed_answer("pushover cancel", answer, _errors(answer))
            # 200, or a 4xx for a receipt already acknowledged or expired: nothing rings.
        return DeliveryResult(ok=True, provider_id=",".join(f"cancelled:{r}" for r in receipts))
