"""Generic JSON webhooks: chat tools, ticketing, anything that takes an HTTP POST.

Each notification is POSTed as JSON (see ``payload``) to the endpoint with its configured
headers and, when a secret is set, ``X-Tocsin-Signature: sha256=<hex HMAC-SHA256 of the body>``.
``X-Tocsin-Delivery`` carries the outbox row id, the idempotency key: a retry repeats it, so
receivers can drop duplicates (delivery is at-least-once).

Outcome of one attempt: 2xx → ok; 429 → rate limited; 5xx, network errors and timeouts →
retryable (``Retry-After`` honoured for both); any other status (other 4xx, a redirect: not
followed) → permanent. Errors name the endpoint, never its URL (chat webhook URLs carry
their secret in the path).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.config import WebhookEndpoint, WebhookPreset
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.http import parse_retry_after, status_failure, transport_failure
from adapters.webhook.bodies import body_for, content_type_of, url_of
from adapters.webhook.presets import retry_after_in_body
from escalation.engine.clock import Clock
from escalation.incidents.model import AlertRecord, IncidentRecord, OutboxRecord

__all__ = [
    "SIGNATURE_HEADER",
    "Accepted",
    "WebhookNotifier",
    "combined",
    "payload",
    "post_body",
    "sign",
    "with_page",
]

SIGNATURE_HEADER = "X-Tocsin-Signature"
DELIVERY_HEADER = "X-Tocsin-Delivery"
PAYLOAD_VERSION = "1"

_REMEMBER = 10_000  # rows whose per-endpoint successes are remembered across retries


def sign(secret: str, body: bytes) -> str:
    """The ``X-Tocsin-Signature`` value for ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _t(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def _incident(inc: IncidentRecord, url: str | None) -> dict[str, Any]:
    return {
        "id": inc.id,
        "number": inc.number,
        "key": inc.key,
        "title": inc.title,
        "status": inc.status.value,
        "severity": inc.severity,
        "severity_name": inc.severity_name,
        "team": inc.team,
        "policy": inc.policy_name,
        "labels": dict(inc.labels),
        "opened_at": _t(inc.opened_at),
        "acknowledged_at": _t(inc.acknowledged_at),
        "mitigated_at": _t(inc.mitigated_at),
        "resolved_at": _t(inc.resolved_at),
        "url": url,
    }


def _notification(row: OutboxRecord, person: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "tier": row.tier,
        "round": row.round,
        "target": row.target,
        "person": row.person,
        "person_name": person.get("name") or row.person,
        "channel": row.channel,
    }


def _alert(a: AlertRecord) -> dict[str, Any]:
    return {
        "fingerprint": a.fingerprint,
        "status": a.status,
        "starts_at": _t(a.starts_at),
        "ends_at": _t(a.ends_at),
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "generator_url": a.generator_url,
    }


def payload(delivery: Delivery, now: datetime) -> dict[str, Any]:
    """The JSON document posted for ``delivery``.

    ``incident`` and ``notification`` describe the row; ``alerts`` are the incident's alerts;
    rows the dispatcher bundled into this message are listed under ``bundle``.
    """
    d = delivery
    url = d.links.get("incident")
    incidents = {d.incident.id: d.incident, **d.bundle_incidents}
    return {
        "version": PAYLOAD_VERSION,
        "sent_at": now.isoformat(),
        "incident": _incident(d.incident, url),
        "notification": _notification(d.row, d.person),
        "alerts": [_alert(a) for a in d.alerts],
        "bundle": [
            {
                "incident": _incident(incidents[r.incident_id], None),
                "notification": _notification(r, d.person),
            }
            for r in d.bundle
            if r.incident_id in incidents
        ],
    }


class WebhookNotifier:
    """POSTs each notification to one or more endpoints; ok only when every one accepted it.

    Endpoints that accepted a row are remembered (in memory, bounded), so a retry after a
    partial failure goes only to those that did not.
    """

    def __init__(
        self,
        endpoints: Mapping[str, WebhookEndpoint],
        http: Callable[[], aiohttp.ClientSession],
        clock: Clock,
        public_url: str | None = None,
    ) -> None:
        self.endpoints = dict(endpoints)
        self._http = http
        self._clock = clock
        self._public_url = public_url
        self._accepted = Accepted()

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """One attempt to every endpoint that has not yet accepted this row."""
        if not self.endpoints:
            return DeliveryResult(ok=False, error="no webhook endpoints are configured")
        now = self._clock.now()
        doc = payload(delivery, now)
        plain = json.dumps(doc, separators=(",", ":")).encode()
        # Presets and templates also get the console's incident page (the plain document keeps
        # its published shape).
        rich = with_page(doc, self._public_url)
        done = self._accepted.of(delivery.row.id)
        todo = [(n, ep) for n, ep in self.endpoints.items() if n not in done]
        sent = await asyncio.gather(
            *(self._send(n, ep, rich, plain, delivery.row.id, now) for n, ep in todo)
        )
        names = [n for n, _ in todo]
        return self._accepted.outcome(delivery.row.id, done, names, sent)

    async def _send(
        self,
        name: str,
        ep: WebhookEndpoint,
        doc: Mapping[str, Any],
        plain: bytes,
        row_id: str,
        now: datetime,
    ) -> DeliveryResult:
        try:
            body = body_for(ep, doc, plain)
        except ValueError as e:
            return DeliveryResult(ok=False, error=f"webhook {name}: {e}")
        return await post_body(
            self._http(),
            f"webhook {name}",
            url_of(ep, doc),
            body,
            headers=_headers(ep, body, row_id),
            limit=ep.timeout.total_seconds(),
            now=now,
            preset=ep.preset,
            provider_id=name,
        )


def with_page(doc: dict[str, Any], public_url: str | None) -> dict[str, Any]:
    """``doc`` with ``incident.page``, the console's page of the incident, when the public URL
    is known."""
    if not public_url:
        return doc
    page = f"{public_url.rstrip('/')}/incidents/{quote(str(doc['incident']['id']), safe='')}"
    return {**doc, "incident": {**doc["incident"], "page": page}}


def _headers(ep: WebhookEndpoint, body: bytes, row_id: str) -> dict[str, str]:
    headers = {**ep.headers, "Content-Type": content_type_of(ep), DELIVERY_HEADER: row_id}
    if ep.secret is not None:
        headers[SIGNATURE_HEADER] = sign(ep.secret.get_secret_value(), body)
    return headers


async def post_body(
    http: aiohttp.ClientSession,
    label: str,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    limit: float,
    now: datetime,
    preset: WebhookPreset | None = None,
    provider_id: str = "",
) -> DeliveryResult:
    """One POST of ``body``; its outcome as a ``DeliveryResult`` whose errors name ``label``,
    never the URL (chat webhook URLs carry their secret)."""
    try:
        # No redirects: a signed page must not be re-posted wherever a 30x points.
        async with http.post(
            url,
            data=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=limit),
            allow_redirects=False,
        ) as resp:
            status = resp.status
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
            answer = await resp.read()
    except (TimeoutError, aiohttp.ClientError) as e:
        return transport_failure(label, e)
    if 200 <= status < 300:
        return DeliveryResult(ok=True, provider_id=provider_id)
    if (status == 429 or status >= 500) and retry_after is None:
        # Some receivers say when to come back only in the body (the preset names where).
        retry_after = retry_after_in_body(preset, answer)
    return status_failure(status, f"{label}: HTTP {status}", retry_after)


class Accepted:
    """Which of a row's targets (endpoints, Teams webhooks) accepted it, across the dispatcher's
    retries: a retry sends only to the others, so no target gets the same page twice. Bounded:
    the oldest rows are forgotten first (at worst a target is sent a page again)."""

    def __init__(self) -> None:
        self._rows: OrderedDict[str, set[str]] = OrderedDict()

    def of(self, row_id: str) -> set[str]:
        """The targets that already accepted ``row_id``."""
        return self._rows.get(row_id, set())

    def outcome(
        self, row_id: str, done: set[str], names: list[str], sent: Sequence[DeliveryResult]
    ) -> DeliveryResult:
        """The row's result once ``names`` were sent to (``sent``, in order) after ``done``:
        ok when every target has it, else the failures ``combined`` (the successes kept)."""
        done |= {n for n, r in zip(names, sent, strict=True) if r.ok}
        failed = [r for r in sent if not r.ok]
        if not failed:
            self._rows.pop(row_id, None)
            return DeliveryResult(ok=True, provider_id=",".join(sorted(done)))
        if done:
            self._rows[row_id] = done
            self._rows.move_to_end(row_id)
            while len(self._rows) > _REMEMBER:
                self._rows.popitem(last=False)
        return combined(failed)


def combined(failed: list[DeliveryResult]) -> DeliveryResult:
    """Several endpoints' failures as one: retried if any endpoint may still accept it.

    Rate limited only when every endpoint worth retrying said so; the longest Retry-After wins.
    """
    again = [r for r in failed if r.retryable]
    waits = [r.retry_after for r in again if r.retry_after is not None]
    if not again:
        reason = FailureReason.PERMANENT
    elif all(r.reason == FailureReason.RATE_LIMITED for r in again):
        reason = FailureReason.RATE_LIMITED
    else:
        reason = FailureReason.RETRYABLE
    return DeliveryResult(
        ok=False,
        reason=reason,
        error="; ".join(r.error for r in failed),
        retry_after=max(waits) if waits else None,
    )
