"""Opsgenie's Alert API, the subset integrations use, so a sender switches by changing a URL.

``POST /v2/alerts`` creates (``alias`` is the dedup key), ``POST /v2/alerts/{identifier}/close``
resolves, ``/acknowledge`` acknowledges and ``/notes`` adds a timeline note, the identifier being
an incident id, its alias or its number (``identifierType`` id|alias|tiny). Keys are
``auth.genie_keys``, presented as ``Authorization: GenieKey <key>``; the key's name is who acts.

Answers are Opsgenie's: 202 ``{"result", "took", "requestId"}`` and errors ``{"message", "took",
"requestId"}`` (422 adds ``errors``), with ``X-Request-ID``. Opsgenie processes a valid request
asynchronously and answers 202 even when it then fails (an acknowledge naming no alert); tocsin
acts before answering, so a 202 here means the effect is durable, and a request that names no
incident, or does not apply to it (closing a closed one), answers 202 too and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.opsgenie import PRIORITIES, default_priorities
from config.server import GenieKey
from escalation.engine.heartbeats import UnknownHeartbeat
from escalation.engine.service import IncidentNotFound, StoreUnavailable
from escalation.incidents.actions import Action, IllegalTransition
from escalation.incidents.model import IncidentRecord, Status
from router.auth import same_secret
from router.errors import ApiError
from router.keys import RUNTIME
from router.opsgenie_translate import slug
from router.receiver import clean_text, read_body
from router.runtime import Runtime
from rules.alerts import Alert, Notification
from rules.classifier import Classification

__all__ = ["KEY_PREFIX", "add_opsgenie_routes", "incident_key"]

log = logging.getLogger("tocsin.opsgenie")

KEY_PREFIX = "opsgenie:"
"""Incident keys of Opsgenie alerts: ``opsgenie:<alias>``. The prefix keeps an alias such as
``42`` from ever being read as incident number 42 or as another source's key."""

# Opsgenie's documented field limits: longer values are cut, as Opsgenie does.
_LIMITS = {"message": 130, "alias": 512, "description": 15000, "entity": 512, "source": 100}
_TAGS, _TAG_LEN, _USER, _NOTE = 20, 50, 100, 25000
_M = TypeVar("_M", bound=BaseModel)
_UNPROCESSABLE = "Request body is not processable. Please check the errors."


class GenieError(Exception):
    """An answer in Opsgenie's error shape."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


class Responder(BaseModel):
    """A team, user, escalation or schedule, by id, name or username."""

    model_config = ConfigDict(extra="ignore")

    type: str
    id: str = ""
    name: str = ""
    username: str = ""


class CreateAlert(BaseModel):
    """Opsgenie's CreateAlertPayload (tests/fakes/data/opsgenie_alert_api.subset.json)."""

    model_config = ConfigDict(extra="ignore")

    message: str
    alias: str = ""
    description: str = ""
    responders: list[Responder] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    details: dict[str, str] = Field(default_factory=dict)
    entity: str = ""
    source: str = ""
    priority: Literal["P1", "P2", "P3", "P4", "P5"] = "P3"
    user: str = ""
    note: str = ""


class ActionBody(BaseModel):
    """Close, acknowledge and add-note payloads: who (``user``), from where, and a note."""

    model_config = ConfigDict(extra="ignore")

    user: str = ""
    source: str = ""
    note: str = ""


def incident_key(alias: str) -> str:
    """The incident key of an Opsgenie alias."""
    return KEY_PREFIX + alias


def require_genie_key(request: web.Request, keys: list[GenieKey]) -> GenieKey:
    """The configured key presented as ``GenieKey <key>``, compared with every key."""
    scheme, _, cred = request.headers.get("Authorization", "").partition(" ")
    found: GenieKey | None = None
    if scheme.lower() == "geniekey" and cred.strip():
        for k in keys:
            if same_secret(cred.strip(), k.key.get_secret_value()):
                found = k
    if found is None:
        # Opsgenie's words for a missing, unknown or disabled key.
        raise GenieError(401, "Could not authenticate")
    return found


def _reply(status: int, request_id: str, started: float, body: dict[str, Any]) -> web.Response:
    took = round(time.perf_counter() - started, 3)
    return web.json_response(
        body | {"took": took, "requestId": request_id},
        status=status,
        headers={"X-Request-ID": request_id, "X-Response-Time": f"{took}"},
    )


# A route returns the 202's ``result`` when it is not the Alert API's.
Route = Callable[[web.Request], Awaitable[str | None]]
_ACCEPTED = "Request will be processed"


def _opsgenie(handler: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Run ``handler`` with Opsgenie's answers: 202 on success, its error shape otherwise."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        request_id, started = str(uuid.uuid4()), time.perf_counter()
        try:
            result = await handler(request) or _ACCEPTED
        except GenieError as e:
            body: dict[str, Any] = {"message": e.message}
            if e.errors is not None:
                body["errors"] = e.errors
            return _reply(e.status, request_id, started, body)
        except ApiError as e:  # a body too large or too slow (router/receiver.py)
            return _reply(e.status, request_id, started, {"message": e.detail or e.error})
        except StoreUnavailable:
            # Alertmanager and Grafana retry a 5xx: nothing was stored.
            log.error("store unavailable; asking the Opsgenie sender to retry")
            body = {"message": "Service unavailable, the request was not processed; retry"}
            return _reply(503, request_id, started, body)
        return _reply(202, request_id, started, {"result": result})

    return wrapped


async def _json_body(request: web.Request, rt: Runtime, *, required: bool) -> dict[str, Any]:
    raw = await read_body(request, rt.loaded.config.server.max_body_bytes)
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise GenieError(400, "Invalid JSON body") from None
    if not isinstance(body, dict):
        raise GenieError(400, "Invalid JSON body")
    return body


def _validate(model: type[_M], body: dict[str, Any]) -> _M:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        errors: dict[str, str] = {}
        for err in e.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "body"
            if err["type"] == "missing":
                errors[field] = f"{field.capitalize()} can not be empty."
            elif err["loc"][:1] == ("priority",):
                errors[field] = f"Priority should be one of {list(PRIORITIES)}"
            else:
                errors[field] = str(err["msg"])
        raise GenieError(422, _UNPROCESSABLE, errors) from None


def _cut(value: str, limit: int) -> str:
    return clean_text(value)[:limit]


def _alert(a: CreateAlert, alias: str, now: datetime) -> Alert:
    """The create request as an alert the rules can match: details and fields as labels."""
    labels = {_cut(k, 100): _cut(v, 1000) for k, v in a.details.items() if k}
    fields = {
        "alertname": a.message,
        "priority": a.priority,
        "entity": a.entity,
        "source": a.source,
        "tags": ",".join(a.tags),
    }
    labels |= {k: v for k, v in fields.items() if v}
    annotations = {"summary": a.message, "description": a.description, "alias": alias}
    return Alert.model_validate(
        {
            "status": "firing",
            "labels": labels,
            "annotations": {k: v for k, v in annotations.items() if v},
            "startsAt": now,
            # One alert per alias, whatever its labels: repeats of it are the same alert.
            "fingerprint": hashlib.sha256(alias.encode()).hexdigest()[:16],
        }
    )


def _clean(a: CreateAlert) -> CreateAlert:
    if not a.message.strip():
        raise GenieError(422, _UNPROCESSABLE, {"message": "Message can not be empty."})
    cut = {k: _cut(getattr(a, k), n) for k, n in _LIMITS.items()}
    tags = [_cut(t, _TAG_LEN) for t in a.tags if t.strip()][:_TAGS]
    return a.model_copy(update=cut | {"tags": tags, "user": _cut(a.user, _USER)})


def _adjust(rt: Runtime, a: CreateAlert, key: str) -> Callable[[Classification], Classification]:
    """Priority decides the severity and the alias the incident; responders naming a
    configured team or policy route it there (as they would in Opsgenie)."""
    matrix, cfg = rt.loaded.matrix, rt.loaded.config
    table = default_priorities(matrix.level_keys()) | cfg.opsgenie.priorities
    severity = matrix.resolve(table[a.priority]) or matrix.default_level
    team = _configured(a.responders, "team", cfg.teams)
    policy = _configured(a.responders, "escalation", cfg.policies)

    def adjust(c: Classification) -> Classification:
        reason = f"opsgenie: priority {a.priority} -> {severity}"
        return replace(
            c,
            severity=severity,
            severity_name=matrix.level(severity).name,
            incident_key=key,
            title=a.message,
            team=team or c.team,
            policy=policy or c.policy,
            reasons=(*c.reasons, reason),
        )

    return adjust


def _configured(responders: list[Responder], kind: str, names: Collection[str]) -> str | None:
    """The first responder of ``kind`` naming one of ``names``, as written or as
    ``tocsin import opsgenie`` names it ("Ops Team" → ``ops-team``)."""
    for r in responders:
        if r.type == kind and r.name:
            for name in (r.name, slug(r.name)):
                if name in names:
                    return name
    return None


async def create_alert(request: web.Request) -> str | None:
    rt = request.app[RUNTIME]
    genie = require_genie_key(request, rt.loaded.config.auth.genie_keys)
    a = _clean(_validate(CreateAlert, await _json_body(request, rt, required=True)))
    # Opsgenie gives an alert without an alias a unique one: it never deduplicates.
    alias = a.alias or str(uuid.uuid4())
    key = incident_key(alias)
    open_one = await rt.service.find_incident(key)
    if open_one is not None and open_one.key == key and open_one.status != Status.RESOLVED:
        # Opsgenie's dedup: an open alert with this alias takes the repeat; nothing changes.
        log.debug("opsgenie alert deduplicated", extra={"incident": open_one.id})
        return None
    n = Notification.model_validate(
        {
            "version": "4",
            "receiver": f"opsgenie/{genie.name}",
            "status": "firing",
            "alerts": [_alert(a, alias, rt.clock.now())],
            "groupKey": key,
        }
    )
    await rt.pipeline.submit(n, _adjust(rt, a, key))
    return None


async def _find(rt: Runtime, ident: str, kind: str) -> IncidentRecord | None:
    if kind == "id":
        return await rt.service.get_incident(ident)
    if kind == "tiny":
        inc = await rt.service.find_incident(ident) if ident.isdigit() else None
        return inc if inc is not None and str(inc.number) == ident else None
    inc = await rt.service.find_incident(incident_key(ident))
    return inc if inc is not None and inc.key == incident_key(ident) else None


async def _act(request: web.Request, action: Action) -> str | None:
    rt = request.app[RUNTIME]
    genie = require_genie_key(request, rt.loaded.config.auth.genie_keys)
    kind = request.query.get("identifierType", "id")
    if kind not in ("id", "alias", "tiny"):
        errors = {"identifierType": "Identifier type should be one of [id, alias, tiny]"}
        raise GenieError(422, _UNPROCESSABLE, errors)
    body = _validate(ActionBody, await _json_body(request, rt, required=action == Action.NOTE))
    note = _cut(body.note, _NOTE)
    if action == Action.NOTE and not note.strip():
        raise GenieError(422, _UNPROCESSABLE, {"note": "Note can not be empty."})
    ident = request.match_info["identifier"]
    inc = await _find(rt, ident, kind)
    where = {"identifier_type": kind, "action": action.value, "key_name": genie.name}
    if inc is None:
        # Opsgenie accepts it and the request fails later ("Alert does not exist").
        log.info("opsgenie action names no incident; nothing done", extra=where)
        return None
    try:
        await rt.service.act(
            inc.id,
            action,
            actor=genie.name,
            source="opsgenie",
            note=note,
            on_behalf_of=_cut(body.user, _USER),
        )
    except (IncidentNotFound, IllegalTransition) as e:
        log.info("opsgenie action does not apply; nothing done", extra=where | {"why": str(e)})
    return None


async def close_alert(request: web.Request) -> str | None:
    return await _act(request, Action.RESOLVE)


async def acknowledge_alert(request: web.Request) -> str | None:
    return await _act(request, Action.ACK)


async def add_note(request: web.Request) -> str | None:
    return await _act(request, Action.NOTE)


async def ping_heartbeat(request: web.Request) -> str:
    """Opsgenie's heartbeat ping: re-arms the configured heartbeat (``heartbeats:``)."""
    rt = request.app[RUNTIME]
    genie = require_genie_key(request, rt.loaded.config.auth.genie_keys)
    name = request.match_info["name"]
    try:
        await rt.heartbeats.ping(name)
    except UnknownHeartbeat:
        # Opsgenie answers PONG without checking that the heartbeat exists; so does tocsin.
        log.info("opsgenie ping names no configured heartbeat", extra={"key_name": genie.name})
    return "PONG - Heartbeat received"


def add_opsgenie_routes(app: web.Application) -> None:
    app.router.add_post("/v2/alerts", _opsgenie(create_alert))
    for verb, handler in (
        ("close", close_alert),
        ("acknowledge", acknowledge_alert),
        ("notes", add_note),
    ):
        route = "/v2/alerts/{identifier:[^/]+}/" + verb
        app.router.add_post(route, _opsgenie(handler))
    # Opsgenie takes a ping with any of these methods.
    ping = _opsgenie(ping_heartbeat)
    for method in ("GET", "POST", "PUT", "PATCH"):
        app.router.add_route(method, "/v2/heartbeats/{name:[^/]+}/ping", ping)
