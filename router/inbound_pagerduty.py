"""``POST /api/v1/pagerduty/webhook``: signed PagerDuty v3 webhooks acting on tocsin incidents.

Order matters: the raw bytes are read (size-limited) and the ``X-PagerDuty-Signature`` checked
before anything is parsed or stored. A delivery is remembered by its signed ``event.id`` (never
the unsigned ``X-Webhook-Id`` header, which a replayer can change) in the same transaction that
applies its action, so a replay is refused and a delivery that failed (503) is retried by
PagerDuty and acts then. An event is also refused ("stale") when its signed ``occurred_at`` is
older than ``server.replay_window`` (default 48 h, PagerDuty's retry horizon, so a retry hours
after a 503 still acts; ids are kept as long) or in the future by more than a clock skew, and a
state change (ack, resolve, reopen) also when it is older than the incident's last state change
(a change PagerDuty told of counts from its own ``occurred_at``): a captured ack cannot
re-silence a reopened incident. A note changes no state, so it is added
whatever its order against state changes (its event id still deduplicates it).

Status codes (PagerDuty retries 5xx, 429 and timeouts; it drops any other 4xx):

- 401: no ``X-PagerDuty-Signature`` header at all;
- 403: a header with no ``v1=`` signature matching any configured secret (or no secret is
  configured, so nothing can be verified); nothing changes;
- 400: correctly signed but not a JSON webhook body; 413: over 256 KiB (PagerDuty drops such
  payloads itself);
- 503: the store failed, or PagerDuty's REST API could not tell which incident the event is
  about (down, 5xx, 429 past the lookup's budget, timeout): PagerDuty retries, and the delivery
  is not remembered as seen, so the retry acts;
- 200 for everything else, including events tocsin ignores (``pagey.ping``, other event types,
  incidents that are definitively not tocsin's), actions that no longer apply (already
  acknowledged) and stale events (``{"status": "stale"}``: retrying would not make them fresher).

Matching, as PagerDuty works: the Events API ``dedup_key`` tocsin sent is its incident id, but
PagerDuty's incidents for Events API alerts carry ``"incident_key": null`` in webhooks. So, in
order: (a) ``incident_key``, when present, naming a tocsin incident (free); (b) the alias
``pagerduty-incident:<PagerDuty incident id>`` recorded earlier; (c) the incident's alerts over
PagerDuty's REST API (``adapters.pagerduty.alerts``, cached): an alert's ``alert_key`` is the
dedup key. A match by (a) or (c) records the alias in the transaction that applies the event,
so later events, notes included, match with no lookup. Without a REST API token only (a) and
(b) can match (``tocsin check`` warns).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.pagerduty.alerts import AlertLookupError
from config.server import REPLAY_CLOCK_SKEW
from escalation.engine.service import ActOn, Delivery, Outcome
from escalation.incidents.actions import Action
from escalation.incidents.model import EventKind, IncidentRecord, TimelineEvent
from router.errors import ApiError, Outage, on_store_outage
from router.keys import RUNTIME
from router.receiver import clean_text, read_body

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = [
    "EVENT_ACTIONS",
    "MAX_WEBHOOK_BYTES",
    "WEBHOOK_PATH",
    "add_pagerduty_routes",
    "signature_valid",
]

log = logging.getLogger("tocsin.pagerduty.webhook")

WEBHOOK_PATH = "/api/v1/pagerduty/webhook"
MAX_WEBHOOK_BYTES = 256 * 1024  # PagerDuty drops larger payloads rather than sending them
SOURCE = "pagerduty"
ALIAS_PREFIX = "pagerduty-incident:"
_MAX_NOTE = 4000
_MAX_ACTOR = 200
# Timeline kinds that change an incident's state: an event from before the latest is stale.
_STATE_CHANGES = frozenset(
    {
        EventKind.OPEN,
        EventKind.REOPEN,
        EventKind.SEVERITY,
        EventKind.ACK,
        EventKind.ACK_TIMEOUT,
        EventKind.MITIGATE,
        EventKind.RESOLVE,
    }
)

EVENT_ACTIONS: dict[str, Action] = {
    "incident.acknowledged": Action.ACK,
    "incident.resolved": Action.RESOLVE,
    "incident.reopened": Action.REOPEN,
    "incident.unacknowledged": Action.REOPEN,
    "incident.annotated": Action.NOTE,
}


def signature_valid(body: bytes, header: str, secrets: Sequence[str]) -> bool:
    """True if any ``v1=`` entry of ``header`` is HMAC-SHA256(secret, body) for any secret.

    Entries of other versions are ignored. Every candidate is compared (constant time each),
    so timing does not tell which secret or entry matched.
    """
    candidates = [
        part.strip()[3:].strip().lower()
        for part in header.split(",")
        if part.strip().startswith("v1=")
    ]
    ok = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        for c in candidates:
            ok |= hmac.compare_digest(expected.encode("ascii"), c.encode("ascii", "replace"))
    return ok


@dataclass(frozen=True)
class _Event:
    event_type: str
    resource_type: str
    data: dict[str, Any]
    actor: str
    event_id: str
    occurred_at: datetime | None


def _instant(v: Any) -> datetime | None:
    """An ISO 8601 instant with an offset (PagerDuty sends ``...Z``), else None."""
    if not isinstance(v, str):
        return None
    try:
        at = datetime.fromisoformat(v)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _parse(body: bytes) -> _Event:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ApiError(400, "invalid JSON", "the webhook body is not JSON") from None
    event = doc.get("event") if isinstance(doc, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise ApiError(400, "invalid payload", 'expected {"event": {"event_type": ...}}')
    data = event.get("data")
    agent = event.get("agent")
    summary = _str(agent.get("summary")) if isinstance(agent, dict) else ""
    actor = summary.strip()[:_MAX_ACTOR] or SOURCE
    resource_type = event.get("resource_type")
    return _Event(
        event_type=clean_text(event["event_type"]),
        resource_type=_str(resource_type) if resource_type else "",
        data=data if isinstance(data, dict) else {},
        actor=actor,
        event_id=_str(event.get("id")),
        occurred_at=_instant(event.get("occurred_at")),
    )


def _str(v: Any) -> str:
    # JSON strings may hold lone surrogates (\udc80 escapes): unstorable, so replaced.
    return clean_text(v) if isinstance(v, str) else ""


def _pd_refs(ev: _Event) -> tuple[str, str]:
    """(PagerDuty's incident id, its incident_key) as the event carries them ("" when absent)."""
    data = ev.data
    ref = data if data.get("type") == "incident" else data.get("incident")
    if not isinstance(ref, dict):
        return "", ""
    return _str(ref.get("id")), _str(ref.get("incident_key"))


async def _find_incident(
    rt: Runtime, ev: _Event, *, lookup: bool
) -> tuple[IncidentRecord | None, str]:
    """The tocsin incident the event is about, and the alias to record for it ("": none).

    ``lookup`` allows asking PagerDuty's REST API; its failure raises ApiError 503.
    """
    svc = rt.service
    pd_id, key = _pd_refs(ev)
    alias = ALIAS_PREFIX + pd_id if pd_id else ""
    # By id only: an arbitrary incident_key must never match an incident number or key.
    inc = await svc.get_incident(key) if key else None
    if inc is not None or not pd_id:
        return inc, alias if inc is not None else ""
    inc = await svc.find_incident(alias)
    if inc is not None:
        return inc, ""  # already recorded
    if not lookup:
        return None, ""
    try:
        alerts = rt.incident_alerts()
        if alerts is None:
            return None, ""
        keys = await alerts.alert_keys(pd_id)
    except AlertLookupError as e:
        log.warning(
            "pagerduty webhook not matched: PagerDuty's REST API did not answer",
            extra={"event_type": ev.event_type, "pagerduty_incident": pd_id, "error": str(e)},
        )
        raise ApiError(
            503,
            "pagerduty unavailable",
            "the incident could not be matched through PagerDuty's REST API; retry",
        ) from None
    for k in keys:
        inc = await svc.get_incident(k)
        if inc is not None:
            return inc, alias
    return None, ""


def _reply(outcome: str, ev: _Event | None = None, incident: str | None = None) -> web.Response:
    body: dict[str, Any] = {"status": outcome}
    if ev is not None:
        body["event_type"] = ev.event_type
    if incident is not None:
        body["incident"] = incident
    return web.json_response(body, status=200)


async def receive_pagerduty_webhook(request: web.Request) -> web.Response:
    """Verify, deduplicate and apply one PagerDuty v3 webhook delivery."""

    rt = request.app[RUNTIME]
    cfg = rt.loaded.config.adapters.pagerduty
    secrets = [s.get_secret_value() for s in cfg.webhook_secrets] if cfg is not None else []
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    header = request.headers.get("X-PagerDuty-Signature", "").strip()
    if not header:
        raise ApiError(401, "signature required", "the X-PagerDuty-Signature header is missing")
    if not secrets:
        raise ApiError(
            403,
            "signature not verified",
            "no PagerDuty webhook secret is configured (adapters.pagerduty.webhook_secrets)",
        )
    if not signature_valid(body, header, secrets):
        log.warning("pagerduty webhook with no valid signature", extra={"path": request.path})
        raise ApiError(403, "signature not verified", "no v1 signature matches a configured secret")
    ev = _parse(body)
    # The signed event id; a body without one is its own id (the body is what is signed).
    webhook_id = ev.event_id[:200] or "sha256:" + hashlib.sha256(body).hexdigest()
    if ev.resource_type != "incident" or not ev.event_type.startswith("incident."):
        log.info("pagerduty webhook ignored", extra={"event_type": ev.event_type})
        return _reply("ignored", ev)
    action = EVENT_ACTIONS.get(ev.event_type)
    if action is None:
        # Nothing to do, but incident.triggered (PagerDuty's first word on the incident tocsin
        # just created) tells which PagerDuty id is ours, for later notes.
        return await _observe(rt, ev)
    return await _apply(rt, ev, action, webhook_id)


async def _observe(rt: Runtime, ev: _Event) -> web.Response:
    # Free matching only: an event tocsin ignores is not worth a REST call (notes and state
    # changes look their incident up when they come).
    inc, alias = await _find_incident(rt, ev, lookup=False)
    if inc is not None and alias:
        await rt.service.remember_alias(alias, inc.id)
    log.info("pagerduty webhook ignored", extra={"event_type": ev.event_type})
    return _reply("ignored", ev, inc.id if inc is not None else None)


_REPLIES = {Outcome.DONE: "applied", Outcome.ILLEGAL: "no change", Outcome.MISSING: "ignored"}


async def _apply(rt: Runtime, ev: _Event, action: Action, webhook_id: str) -> web.Response:
    # Seen check, alias and action commit together: the same delivery twice (even at once, or
    # on another replica) acts once, and one that failed is not refused when retried.
    too_old = _too_old(rt, ev)  # before any lookup: its age alone refuses it
    inc, alias = (None, "") if too_old else await _find_incident(rt, ev, lookup=True)
    # A note changes no state, so its order against state changes does not matter: one written
    # before an ack but delivered after it (out of order, or retried after a 503) still counts.
    state_change = action != Action.NOTE
    stale = too_old or (await _before_last_change(rt, ev, inc) if inc and state_change else "")
    if stale:
        log.warning(
            "pagerduty webhook refused as stale",
            extra={"event_type": ev.event_type, "event_id": ev.event_id, "reason": stale},
        )
        return _reply("stale", ev, inc.id if inc is not None else None)
    note = ""
    if action == Action.NOTE:
        note = _str(ev.data.get("content")).strip()[:_MAX_NOTE] or "(empty note)"
    acted = await rt.service.act_once(
        Delivery(SOURCE, webhook_id),
        # The epoch read with the timeline: a reopen committed since then makes this stale too.
        [
            ActOn(
                inc.id,
                ev.actor,
                note,
                inc.epoch if state_change else None,
                occurred_at=ev.occurred_at,
            )
        ]
        if inc is not None
        else [],
        action,
        source=SOURCE,
        alias=alias,
    )
    if acted is None:
        return _reply("duplicate", ev)
    if inc is None:
        log.info(
            "pagerduty webhook for an incident tocsin does not know",
            extra={"event_type": ev.event_type, "pagerduty_incident": _pd_refs(ev)[0]},
        )
        return _reply("ignored", ev)
    # ILLEGAL: e.g. acknowledged in tocsin before PagerDuty told us.
    outcome = _REPLIES[acted[0].outcome]
    log.info(
        "pagerduty webhook",
        extra={
            "event_type": ev.event_type,
            "incident": inc.id,
            "outcome": outcome,
            "actor": ev.actor,
        },
    )
    return _reply(outcome, ev, inc.id)


def _too_old(rt: Runtime, ev: _Event) -> str:
    """Why the event's signed time refuses it ("" when it is fresh)."""
    if ev.occurred_at is None:
        return "no valid event.occurred_at"
    now = rt.clock.now()
    window = rt.loaded.config.server.replay_window
    if ev.occurred_at < now - window:
        return f"occurred more than {window} ago (server.replay_window)"
    if ev.occurred_at > now + REPLAY_CLOCK_SKEW:
        return "occurred in the future"
    return ""


async def _before_last_change(rt: Runtime, ev: _Event, inc: IncidentRecord) -> str:
    """Why the event predates the incident's current state ("" when it does not)."""
    assert ev.occurred_at is not None
    timeline = await rt.service.timeline(inc.id)
    changes = [_changed_at(e) for e in timeline if e.kind in _STATE_CHANGES]
    if changes and ev.occurred_at < max(changes):
        return "occurred before the incident's last state change"
    return ""


def _changed_at(e: TimelineEvent) -> datetime:
    """When a state change happened: for one PagerDuty told of, when it happened there.

    A delivery retried after a 503 is applied late, and PagerDuty queues the incident's later
    events behind it: ordered by when tocsin applied it, those would all be refused as stale.
    """
    told = _instant(e.data.get("occurred_at")) if e.source == SOURCE else None
    return told or e.at


def add_pagerduty_routes(app: web.Application) -> None:
    """Register ``POST /api/v1/pagerduty/webhook``."""
    app.router.add_post(WEBHOOK_PATH, receive_pagerduty_webhook)
    # PagerDuty retries 5xx: the delivery acts when the store is back.
    outage = Outage(
        detail="the webhook was not applied; retry",
        log="store unavailable; PagerDuty will retry the webhook",
        logger=log.name,
    )
    on_store_outage(app, outage, receive_pagerduty_webhook)
