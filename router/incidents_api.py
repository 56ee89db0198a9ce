"""The incident API: list, show, and act (ack, mitigate, resolve, escalate, notes)."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from aiohttp import web

from escalation.engine.service import IncidentNotFound
from escalation.incidents.actions import Action, IllegalTransition
from escalation.incidents.model import (
    AlertRecord,
    IncidentRecord,
    OutboxRecord,
    StepRecord,
    TimelineEvent,
)
from router.auth import require_api_token
from router.errors import ApiError
from router.keys import RUNTIME
from router.receiver import clean_text

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["add_incident_routes", "incident_json", "incident_summary"]

_MAX_NOTE = 4000


def _t(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def incident_summary(inc: IncidentRecord) -> dict[str, Any]:
    """The list view of an incident."""
    return {
        "id": inc.id,
        "number": inc.number,
        "key": inc.key,
        "status": inc.status.value,
        "severity": inc.severity,
        "severity_name": inc.severity_name,
        "title": inc.title,
        "team": inc.team,
        "policy": inc.policy_name,
        "opened_at": _t(inc.opened_at),
        "acknowledged_at": _t(inc.acknowledged_at),
        "mitigated_at": _t(inc.mitigated_at),
        "resolved_at": _t(inc.resolved_at),
        "updated_at": _t(inc.updated_at),
    }


# The fields each part of the full view shows, in order; instants as ISO 8601, enums by value.
_ALERT_FIELDS = tuple(
    "fingerprint status starts_at ends_at labels annotations generator_url severity rule".split()
)
_STEP_FIELDS = tuple("id kind tier round due_at unless".split())
_OUTBOX_FIELDS = tuple(
    "id kind tier round target person channel state attempts last_error created_at sent_at".split()
)
_EVENT_FIELDS = tuple("at kind actor source message data".split())


def _json(record: object, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Enum):
            value = value.value
        out[name] = value
    return out


def incident_json(
    inc: IncidentRecord,
    alerts: list[AlertRecord],
    steps: list[StepRecord],
    timeline: list[TimelineEvent],
    outbox: list[OutboxRecord],
) -> dict[str, Any]:
    """The full view: alerts, policy snapshot, pending steps with due times, timeline."""
    return incident_summary(inc) | {
        "rule": inc.rule,
        "receiver": inc.receiver,
        "group_key": inc.group_key,
        "labels": inc.labels,
        "level": inc.level,
        "policy_snapshot": inc.policy,
        "alerts": [_json(a, _ALERT_FIELDS) for a in alerts],
        "pending_steps": [_json(s, _STEP_FIELDS) for s in steps if s.state.value == "pending"],
        "notifications": [_json(o, _OUTBOX_FIELDS) for o in outbox],
        "timeline": [_json(e, _EVENT_FIELDS) for e in timeline],
    }


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


# ``open`` is the first three; several may be given, comma-separated.
_STATUSES = ("triggered", "acknowledged", "mitigated", "resolved", "open")


async def list_incidents(request: web.Request) -> web.Response:
    rt = _runtime(request)
    require_api_token(request, rt.loaded.config.auth.api_tokens, "read")
    q = request.query
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise ApiError(
            400, "bad query", f"limit must be a whole number, got {q.get('limit')!r}", "limit"
        ) from None
    if not 1 <= limit <= 1000:
        raise ApiError(400, "bad query", "limit must be between 1 and 1000", "limit")
    statuses = [s for s in q.get("status", "").split(",") if s]
    for s in statuses:
        if s not in _STATUSES:
            # Say what is accepted: "closed" or "all" are natural guesses that are not.
            expected = f"expected {', '.join(_STATUSES[:-1])} or {_STATUSES[-1]}"
            raise ApiError(400, "bad query", f"unknown status {s!r}; {expected}", "status")
    if "open" in statuses:
        statuses = [s for s in statuses if s != "open"] + ["triggered", "acknowledged", "mitigated"]
    severities = []
    for s in (x for x in q.get("severity", "").split(",") if x):
        key = rt.loaded.matrix.resolve(s)
        if key is None:
            raise ApiError(400, "bad query", f"unknown severity {s!r}", "severity")
        severities.append(key)
    incidents = await rt.service.list_incidents(
        status=statuses, severity=severities, team=q.get("team"), limit=limit
    )
    return web.json_response({"incidents": [incident_summary(i) for i in incidents]})


async def load_full(rt: Runtime, ref: str) -> dict[str, Any]:
    """Everything about one incident, by id, number or key."""
    d = await rt.service.detail(ref)
    if d is None:
        raise ApiError(404, "not found", f"no incident {ref!r}", "id")
    return incident_json(d.incident, d.alerts, d.steps, d.timeline, d.outbox)


async def show_incident(request: web.Request) -> web.Response:
    rt = _runtime(request)
    require_api_token(request, rt.loaded.config.auth.api_tokens, "read")
    return web.json_response(await load_full(rt, request.match_info["id"]))


async def act_on_incident(request: web.Request) -> web.Response:
    rt = _runtime(request)
    token = require_api_token(request, rt.loaded.config.auth.api_tokens, "write")
    try:
        action = Action(request.match_info["action"])
    except ValueError:
        raise ApiError(
            404, "not found", f"unknown action {request.match_info['action']!r}", "action"
        ) from None
    body: dict[str, Any] = {}
    raw = await request.read()
    if raw.strip():
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: too deep
            raise ApiError(400, "invalid JSON", "the body must be a JSON object or empty") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid payload", "the body must be a JSON object", "")
    note = body.get("note", "")
    # Who acts is who authenticated: the token's name. The body's `actor` is the caller's word
    # only (a shared automation token acting for a person), so it is kept as "on behalf of".
    actor = body.get("actor", token.name)
    if not isinstance(note, str) or len(note) > _MAX_NOTE:
        raise ApiError(
            400,
            "invalid payload",
            f"note must be a string of at most {_MAX_NOTE} characters",
            "note",
        )
    if not isinstance(actor, str) or not actor or len(actor) > 200:
        raise ApiError(400, "invalid payload", "actor must be a non-empty string", "actor")
    # JSON strings may hold lone surrogates (\udc80 escapes); the store cannot encode them.
    note, actor = clean_text(note), clean_text(actor)
    on_behalf_of = "" if actor == token.name else actor
    if action == Action.NOTE and not note.strip():
        raise ApiError(400, "invalid payload", "a note needs non-empty 'note'", "note")
    if action == Action.REOPEN:
        raise ApiError(404, "not found", "unknown action 'reopen'", "action")
    try:
        await rt.service.act(
            request.match_info["id"],
            action,
            actor=token.name,
            source="api",
            note=note,
            on_behalf_of=on_behalf_of,
        )
    except IncidentNotFound:
        raise ApiError(
            404, "not found", f"no incident {request.match_info['id']!r}", "id"
        ) from None
    except IllegalTransition as e:
        raise ApiError(409, "conflict", str(e), "status") from None
    return web.json_response(await load_full(rt, request.match_info["id"]))


def add_incident_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/incidents", list_incidents)
    # Incident keys contain braces (Alertmanager's groupKey): allow anything but a slash; a
    # slash inside a key arrives percent-encoded and is matched before it is decoded.
    app.router.add_get("/api/v1/incidents/{id:[^/]+}", show_incident)
    app.router.add_post("/api/v1/incidents/{id:[^/]+}/{action}", act_on_incident)
