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

Matching (``router.pagerduty_match``): PagerDuty's webhooks about tocsin's Events API incidents
carry ``"incident_key": null``, so the incident's alerts are looked up over PagerDuty's REST API
once, and aliases recorded with the event let later events, notes included, match with no
lookup. Without a REST API token only an ``incident_key`` or an alias can match (``tocsin check``
warns). A PagerDuty incident holding alerts of several tocsin incidents (alert grouping, a
merge) acts on all of them; ``incident.resolved`` for a merge (``resolve_reason``
``merge_resolve_reason``) resolves nothing: the alerts live on in the target incident, whose
aliases then include them.
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

from config.server import REPLAY_CLOCK_SKEW
from escalation.engine.service import Acted, ActOn, Delivery, Outcome
from escalation.incidents.actions import Action
from escalation.incidents.model import EventKind, IncidentRecord, TimelineEvent
from router.errors import ApiError, Outage, on_store_outage
from router.keys import RUNTIME
from router.pagerduty_match import match
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


def _reply(outcome: str, ev: _Event | None = None, incidents: Sequence[str] = ()) -> web.Response:
    body: dict[str, Any] = {"status": outcome}
    if ev is not None:
        body["event_type"] = ev.event_type
    if incidents:
        body["incident"] = incidents[0]
    if len(incidents) > 1:  # one PagerDuty incident holding several of tocsin's (grouped)
        body["incidents"] = list(incidents)
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
    m = await match(rt, *_pd_refs(ev), lookup=False)
    if m.aliases:
        await rt.service.remember_aliases(m.aliases)
    log.info("pagerduty webhook ignored", extra={"event_type": ev.event_type})
    return _reply("ignored", ev, m.ids)


_REPLIES = {Outcome.DONE: "applied", Outcome.ILLEGAL: "no change", Outcome.MISSING: "ignored"}


async def _apply(rt: Runtime, ev: _Event, action: Action, webhook_id: str) -> web.Response:
    # Seen check, aliases and action commit together: the same delivery twice (even at once, or
    # on another replica) acts once, and one that failed is not refused when retried.
    too_old = _too_old(rt, ev)  # before any lookup: its age alone refuses it
    if too_old:
        return _stale(ev, too_old)
    merged_into = _merged_into(ev) if action == Action.RESOLVE else ""
    if merged_into:
        return await _merged(rt, ev, webhook_id, merged_into)
    m = await match(rt, *_pd_refs(ev), lookup=True, event_type=ev.event_type)
    targets = list(m.incidents)
    # A note changes no state, so its order against state changes does not matter: one written
    # before an ack but delivered after it (out of order, or retried after a 503) still counts.
    state_change = action != Action.NOTE
    if state_change and targets:
        targets = [i for i in targets if not await _before_last_change(rt, ev, i)]
        if not targets:
            return _stale(ev, "occurred before the incident's last state change", m.ids)
    note = ""
    if action == Action.NOTE:
        note = _str(ev.data.get("content")).strip()[:_MAX_NOTE] or "(empty note)"
    acts = [
        # The epoch read with the timeline: a reopen committed since then makes this stale too.
        ActOn(i.id, ev.actor, note, i.epoch if state_change else None, occurred_at=ev.occurred_at)
        for i in targets
    ]
    acted = await rt.service.act_once(
        Delivery(SOURCE, webhook_id), acts, action, source=SOURCE, aliases=m.aliases
    )
    return _acted(ev, acted, [i.id for i in targets])


def _acted(ev: _Event, acted: list[Acted] | None, ids: list[str]) -> web.Response:
    if acted is None:
        return _reply("duplicate", ev)
    if not ids:
        log.info(
            "pagerduty webhook for an incident tocsin does not know",
            extra={"event_type": ev.event_type, "pagerduty_incident": _pd_refs(ev)[0]},
        )
        return _reply("ignored", ev)
    # ILLEGAL: e.g. acknowledged in tocsin before PagerDuty told us.
    outcomes = [_REPLIES[a.outcome] for a in acted]
    outcome = "applied" if "applied" in outcomes else outcomes[0]
    log.info(
        "pagerduty webhook",
        extra={"event_type": ev.event_type, "incident": ids, "outcome": outcome, "actor": ev.actor},
    )
    return _reply(outcome, ev, ids)


def _stale(ev: _Event, why: str, ids: Sequence[str] = ()) -> web.Response:
    log.warning(
        "pagerduty webhook refused as stale",
        extra={"event_type": ev.event_type, "event_id": ev.event_id, "reason": why},
    )
    return _reply("stale", ev, ids)


def _merged_into(ev: _Event) -> str:
    """PagerDuty's id of the incident this one was merged into ("" when it was not merged)."""
    reason = ev.data.get("resolve_reason") if ev.data.get("type") == "incident" else None
    if not isinstance(reason, dict) or reason.get("type") != "merge_resolve_reason":
        return ""
    target = reason.get("incident")
    return _str(target.get("id")) if isinstance(target, dict) else ""


async def _merged(rt: Runtime, ev: _Event, webhook_id: str, target: str) -> web.Response:
    """A merge resolves the merged incident in PagerDuty, but its alerts live on in the target:
    tocsin's incidents are not resolved; they are recorded as the target's (whose alerts are
    asked anew), so an ack or resolve of the target acts on them, and their timelines say so."""
    source = await match(rt, *_pd_refs(ev), lookup=False)
    into = await match(
        rt, target, "", lookup=True, refresh=True, also=source.incidents, event_type=ev.event_type
    )
    note = f"merged in PagerDuty into its incident {target}"
    acts = [ActOn(i.id, ev.actor, note, occurred_at=ev.occurred_at) for i in source.incidents]
    acted = await rt.service.act_once(
        Delivery(SOURCE, webhook_id),
        acts,
        Action.NOTE,
        source=SOURCE,
        aliases=source.aliases + into.aliases,
    )
    return _acted(ev, acted, source.ids)


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
