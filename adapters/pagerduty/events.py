"""PagerDuty Events API v2: one tocsin incident is one PagerDuty alert (dedup_key = incident id).

``page`` rows trigger, ``resolve`` rows resolve and ``acknowledge`` rows acknowledge, each
with the routing key of the service the row was meant for, so follow-ups land on the alert the
trigger opened (PagerDuty drops an ack/resolve sent with another key). One attempt per call:
the dispatcher owns retries, and a repeat is always safe because PagerDuty deduplicates on
``dedup_key``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import aiohttp

from adapters.config import PagerDutyConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.http import parse_retry_after
from adapters.pagerduty.fit import (
    MAX_EVENT_BYTES,
    MAX_SUMMARY,
    SIZE_ERROR_DETAILS,
    EventTooLarge,
    fit_event,
    truncate,
)
from adapters.pagerduty.tls import config_ssl_context, redact
from escalation.incidents.model import IncidentRecord, OutboxRecord
from rules.grafana import GRAFANA_LINKS

__all__ = [
    "ACTIONS",
    "MAX_EVENT_BYTES",
    "MAX_SUMMARY",
    "SIZE_ERROR_DETAILS",
    "EventTooLarge",
    "PagerDutyEventsNotifier",
    "RouteError",
    "build_event",
    "encode_event",
    "parse_retry_after",
    "routing_service",
    "truncate_summary",
]

log = logging.getLogger("tocsin.pagerduty")

SEVERITIES = ("critical", "error", "warning", "info")
_SEVERITY_BY_LEVEL = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info", "P4": "info"}
ACTIONS: dict[str, str] = {"page": "trigger", "resolve": "resolve", "acknowledge": "acknowledge"}
_PREFIX = "pagerduty:"
_MAX_BODY_READ = 64 * 1024  # enough for any PagerDuty answer; more is not read
_MAX_ERROR = 500


class RouteError(ValueError):
    """The row names no PagerDuty service tocsin has a routing key for."""


def routing_service(row: OutboxRecord, cfg: PagerDutyConfig) -> str:
    """The configured service whose routing key carries ``row``.

    A ``pagerduty:<service>`` recipient (its person, else its target) names the service; a person
    paged through the ``pagerduty`` channel goes to ``default_service``. Follow-ups (resolve,
    acknowledge) are derived the same way from the same row fields, so they reuse the trigger's key.
    """
    for ref in (row.person, row.target):
        if ref.startswith(_PREFIX) and ref[len(_PREFIX) :]:
            return ref[len(_PREFIX) :]
    if cfg.default_service is None:
        raise RouteError(
            f"{row.person} is a person, and adapters.pagerduty.default_service is not set: "
            "no PagerDuty service to page them through"
        )
    return cfg.default_service


def truncate_summary(text: str, limit: int = MAX_SUMMARY) -> str:
    """At most ``limit`` characters; when cut, the last one is '…' (as Alertmanager does)."""
    return truncate(text, limit)


def pagerduty_severity(inc: IncidentRecord) -> str:
    """The matrix level's ``pagerduty_severity``; a safe mapping by rank if it is missing."""
    sev = inc.level.get("pagerduty_severity")
    if sev in SEVERITIES:
        return str(sev)
    return _SEVERITY_BY_LEVEL.get(inc.severity, "error")


def incident_url(inc: IncidentRecord, links: Mapping[str, str], public_url: str) -> str:
    """The tocsin URL of ``inc`` (the runtime's link when given, else built from public_url)."""
    url = links.get("incident", "")
    if url:
        return url
    base = public_url.rstrip("/")
    return f"{base}/api/v1/incidents/{inc.id}" if base else ""


def _alert_json(a: Any) -> dict[str, Any]:
    starts = getattr(a, "starts_at", None)
    ends = getattr(a, "ends_at", None)
    return {
        "status": getattr(a, "status", ""),
        "fingerprint": getattr(a, "fingerprint", ""),
        "labels": dict(getattr(a, "labels", {}) or {}),
        "annotations": dict(getattr(a, "annotations", {}) or {}),
        "starts_at": starts.isoformat() if isinstance(starts, datetime) else None,
        "ends_at": ends.isoformat() if isinstance(ends, datetime) else None,
        "generator_url": getattr(a, "generator_url", ""),
    }


def _first(keys: Sequence[str], *maps: Mapping[str, str]) -> str:
    """The first of ``keys`` with a value in the first map that has one; blank values do not
    count (PagerDuty refuses a blank ``source``, and a blank field tells nobody anything)."""
    for m in maps:
        for k in keys:
            v = str(m.get(k) or "").strip()
            if v:
                return v
    return ""


def build_event(
    delivery: Delivery, *, action: str, routing_key: str, public_url: str = ""
) -> dict[str, Any]:
    """The Events API v2 body for ``delivery`` (size not yet checked: see ``encode_event``)."""
    inc = delivery.incident
    base: dict[str, Any] = {
        "routing_key": routing_key,
        "dedup_key": inc.id,
        "event_action": action,
    }
    if action != "trigger":
        # Follow-ups need only the key pair; client/links/payload are used on triggers only.
        return base
    url = incident_url(inc, delivery.links, public_url)
    # The Delivery may carry the incident's alerts (labels, annotations, generatorURL).
    alert_json = [_alert_json(a) for a in getattr(delivery, "alerts", ()) or ()]
    others = [delivery.bundle_incidents.get(r.incident_id) for r in delivery.bundle]
    others_known = [o for o in others if o is not None and o.id != inc.id]
    payload = _payload(delivery, alert_json, others_known)
    payload["custom_details"] = _details(delivery, url, alert_json, others_known, public_url)
    links = _links(inc, url, alert_json)
    event = base | {"payload": payload, "client": "tocsin"}
    client_url = url or public_url
    if client_url:
        event["client_url"] = client_url
    if links:
        event["links"] = links
    return event


def _payload(
    delivery: Delivery, alert_json: list[dict[str, Any]], others_known: list[IncidentRecord]
) -> dict[str, Any]:
    """The event's ``payload`` (without ``custom_details``): summary, source, severity, …"""
    inc = delivery.incident
    labels = dict(inc.labels)
    alert_labels: list[Mapping[str, str]] = [a["labels"] for a in alert_json]
    summary = f"[{inc.severity_name}] {inc.title}"
    if others_known:
        summary += f" (+{len(others_known)} more incident{'s' if len(others_known) > 1 else ''})"
    payload: dict[str, Any] = {
        "summary": truncate_summary(summary),
        "source": _first(("instance", "host", "job", "service"), labels, *alert_labels) or "tocsin",
        "severity": pagerduty_severity(inc),
        "timestamp": inc.opened_at.isoformat(),
    }
    component = _first(("service", "component", "job"), labels)
    group = inc.team or _first(("team", "cluster", "namespace"), labels)
    klass = _first(("alertname",), labels, *alert_labels)
    if component:
        payload["component"] = component
    if group:
        payload["group"] = group
    if klass:
        payload["class"] = klass
    return payload


def _details(
    delivery: Delivery,
    url: str,
    alert_json: list[dict[str, Any]],
    others_known: list[IncidentRecord],
    public_url: str,
) -> dict[str, Any]:
    """The event's ``custom_details``: the incident, its labels and alerts, who is paged."""
    row, inc = delivery.row, delivery.incident
    details: dict[str, Any] = {
        "incident": {
            "id": inc.id,
            "number": inc.number,
            "title": inc.title,
            "status": inc.status.value,
            "severity": inc.severity,
            "severity_name": inc.severity_name,
            "team": inc.team,
            "opened_at": inc.opened_at.isoformat(),
            "url": url,
        },
        "labels": dict(inc.labels),
        "notification": {
            "tier": row.tier,
            "round": row.round,
            "target": row.target,
            "person": row.person,
        },
    }
    if alert_json:
        details["alerts"] = alert_json
    user = delivery.person.get("pagerduty_user") if not row.person.startswith(_PREFIX) else None
    if user:
        details["pagerduty_user"] = user
    if others_known:
        details["bundled_incidents"] = [
            {
                "id": o.id,
                "number": o.number,
                "title": o.title,
                "severity": o.severity,
                "severity_name": o.severity_name,
                "status": o.status.value,
                "url": incident_url(o, {}, public_url),
            }
            for o in others_known
        ]
    return details


def _links(inc: IncidentRecord, url: str, alert_json: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The event's links: the incident, its runbook and the alert's source, where known."""
    labels = dict(inc.labels)
    annotations: list[Mapping[str, str]] = [a["annotations"] for a in alert_json]
    alert_labels: list[Mapping[str, str]] = [a["labels"] for a in alert_json]
    links: list[dict[str, str]] = []
    if url:
        links.append({"href": url, "text": f"tocsin incident #{inc.number}"})
    runbook = _first(("runbook_url", "runbook"), labels, *annotations, *alert_labels)
    if runbook:
        links.append({"href": runbook, "text": "Runbook"})
    generator = next((a["generator_url"] for a in alert_json if a["generator_url"]), "")
    if generator:
        links.append({"href": generator, "text": "Source"})
    # Grafana's dashboard, panel, silence and image URLs (rules/grafana.py); ``fit_event``
    # keeps only absolute http(s) ones, as PagerDuty's links must be.
    for key, text in GRAFANA_LINKS:
        found = next((a[key] for a in annotations if a.get(key)), "")
        if found:
            links.append({"href": found, "text": text})
    return links


def encode_event(event: dict[str, Any]) -> bytes:
    """The JSON bytes to send, fitted to PagerDuty's limits (see ``fit.fit_event``)."""
    return fit_event(event)[0]


class PagerDutyEventsNotifier:
    """The ``pagerduty`` channel: Events API v2 over the shared aiohttp session."""

    def __init__(self, cfg: PagerDutyConfig, ctx: AdapterContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.url = cfg.events_url.rstrip("/") + "/v2/enqueue"
        self._ssl = config_ssl_context(cfg)
        self._timeout_s = cfg.timeout.total_seconds()
        self._secrets = [k.get_secret_value() for k in cfg.services.values()]

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """One attempt at sending ``delivery``'s event; never raises."""
        try:
            return await self._notify(delivery)
        except Exception as e:  # a bug here must still end as a recorded failure
            log.error(
                "pagerduty adapter error",
                extra={"outbox": delivery.row.id, "error": type(e).__name__},
            )
            return DeliveryResult(
                ok=False, error=f"internal error in the PagerDuty adapter ({type(e).__name__})"
            )

    async def _notify(self, delivery: Delivery) -> DeliveryResult:
        row = delivery.row
        if row.kind == "reminder":
            # PagerDuty runs its own notifications for an open alert: a repeated trigger would
            # be folded into it (or re-open one resolved there), so a reminder sends nothing.
            return DeliveryResult(ok=True, provider_id="")
        action = ACTIONS.get(row.kind)
        if action is None:
            return DeliveryResult(ok=False, error=f"PagerDuty has no event for a {row.kind!r} row")
        try:
            service = routing_service(row, self.cfg)
        except RouteError as e:
            return DeliveryResult(ok=False, error=str(e))
        key = self.cfg.services.get(service)
        if key is None:
            known = ", ".join(sorted(self.cfg.services)) or "none"
            return DeliveryResult(
                ok=False,
                error=f"unknown PagerDuty service {service!r} (configured: {known})",
            )
        event = build_event(
            delivery,
            action=action,
            routing_key=key.get_secret_value(),
            public_url=self.ctx.public_url,
        )
        try:
            body, notes = fit_event(event)
        except EventTooLarge as e:
            return DeliveryResult(ok=False, error=str(e))
        result = await self._post(body, delivery)
        return replace(result, notes=tuple(notes)) if notes else result

    async def _post(self, body: bytes, delivery: Delivery) -> DeliveryResult:
        session = self.ctx.http()
        try:
            async with session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                ssl=self._ssl if self._ssl is not None else True,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                raw = await resp.content.read(_MAX_BODY_READ)
        except TimeoutError:
            # PagerDuty deduplicates on dedup_key: repeating an event that may have arrived is safe.
            return self._fail(
                delivery,
                f"no answer from PagerDuty within {self._timeout_s:g}s",
                FailureReason.RETRYABLE,
            )
        except (aiohttp.ClientError, OSError) as e:
            return self._fail(
                delivery,
                f"network error talking to PagerDuty ({type(e).__name__})",
                FailureReason.RETRYABLE,
            )
        return self._decide(status, raw, retry_after, delivery)

    def _decide(
        self, status: int, raw: bytes, retry_after: str | None, delivery: Delivery
    ) -> DeliveryResult:
        answer = _json_object(raw)
        if 200 <= status < 300:
            dedup = answer.get("dedup_key")
            provider_id = dedup if isinstance(dedup, str) and dedup else delivery.incident.id
            return DeliveryResult(ok=True, provider_id=provider_id)
        detail = self._detail(answer)
        wait = parse_retry_after(retry_after, self.ctx.clock.now())
        if status == 400:
            error = f"PagerDuty rejected the event (HTTP 400){detail}"
            return self._fail(delivery, error, FailureReason.PERMANENT)
        if status == 429:
            error = f"rate limited by PagerDuty (HTTP 429){detail}"
            return self._fail(delivery, error, FailureReason.RATE_LIMITED, wait)
        if status == 408 or status >= 500:
            return self._fail(
                delivery, f"PagerDuty answered HTTP {status}{detail}", FailureReason.RETRYABLE, wait
            )
        error = f"PagerDuty answered HTTP {status}{detail}"
        return self._fail(delivery, error, FailureReason.PERMANENT)

    def _detail(self, answer: Mapping[str, Any]) -> str:
        parts: list[str] = []
        message = answer.get("message")
        if isinstance(message, str) and message:
            parts.append(message)
        errors = answer.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(e) for e in errors))
        rest = answer.get("error")  # PagerDuty's REST error shape, e.g. 2009 for plain HTTP
        if isinstance(rest, dict) and isinstance(rest.get("message"), str):
            parts.append(f"{rest['message']} ({rest.get('code')})")
        return (": " + ": ".join(parts)) if parts else ""

    def _fail(
        self,
        delivery: Delivery,
        error: str,
        reason: FailureReason,
        retry_after: float | None = None,
    ) -> DeliveryResult:
        error = redact(error, self._secrets)
        if len(error) > _MAX_ERROR:
            error = error[: _MAX_ERROR - 1] + "…"
        log.warning(
            "pagerduty event not delivered",
            extra={
                "outbox": delivery.row.id,
                "incident": delivery.incident.id,
                "kind": delivery.row.kind,
                "reason": reason.value,
                "error": error,
            },
        )
        return DeliveryResult(ok=False, reason=reason, error=error, retry_after=retry_after)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8", errors="replace")) if raw else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
