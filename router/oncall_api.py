"""The on-call API: who is on call now and next, schedule overrides, calendar-feed tokens."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from escalation.engine.oncall import OverrideNotFound, OverrideRefused, ScheduleNotFound
from escalation.incidents.oncall_view import RoleView, ScheduleView, Shift
from escalation.oncall.overrides import CalendarToken, StoredOverride
from router.auth import require_api_token
from router.errors import ApiError
from router.keys import RUNTIME
from router.receiver import clean_text

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = [
    "add_oncall_routes",
    "feed_url",
    "override_json",
    "parse_override",
    "schedule_json",
]

_NAME = r"[^/]+"
_M = TypeVar("_M", bound=BaseModel)


class OverrideBody(BaseModel):
    """``POST /api/v1/schedules/{name}/overrides``: person covers from start (default now) to
    end, optionally only where ``replaces`` would be on call."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(min_length=1, max_length=200)
    start: AwareDatetime | None = None
    end: AwareDatetime
    replaces: str | None = Field(default=None, min_length=1, max_length=200)
    actor: str | None = Field(default=None, min_length=1, max_length=200)


class ActorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, min_length=1, max_length=200)


class CalendarBody(BaseModel):
    """``POST /api/v1/calendars``: a feed of one schedule or of one person."""

    model_config = ConfigDict(extra="forbid")

    schedule: str | None = Field(default=None, min_length=1, max_length=200)
    person: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one(self) -> CalendarBody:
        if (self.schedule is None) == (self.person is None):
            raise ValueError("give exactly one of schedule or person")
        return self


def _t(v: datetime | None, zone: ZoneInfo | None = None) -> str | None:
    if v is None:
        return None
    return v.astimezone(zone).isoformat() if zone is not None else v.isoformat()


def _shift(s: Shift | None, zone: ZoneInfo) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "person": s.person,
        "start": _t(s.start),
        "end": _t(s.end),
        "start_local": _t(s.start, zone),
        "end_local": _t(s.end, zone),
    }


def schedule_json(v: ScheduleView) -> dict[str, Any]:
    """One schedule's now and next, hand-offs in UTC and in the schedule's zone (``*_local``)."""
    zone = ZoneInfo(v.timezone)
    return {
        "schedule": v.name,
        "timezone": v.timezone,
        "source": v.source,
        "now": [_shift(s, zone) for s in v.now],
        "next": _shift(v.next, zone),
    }


def _role_json(v: RoleView) -> dict[str, Any]:
    return {"role": v.name, "now": v.now, "next_at": _t(v.next_at), "next": v.next}


def override_json(o: StoredOverride) -> dict[str, Any]:
    """An override with its audit trail."""
    return {
        "id": o.id,
        "schedule": o.schedule,
        "person": o.person,
        "start": o.starts_at.isoformat(),
        "end": o.ends_at.isoformat(),
        "replaces": o.replaces,
        "created_at": o.created_at.isoformat(),
        "created_by": o.created_by,
        "on_behalf_of": o.on_behalf_of,
        "removed_at": _t(o.removed_at),
        "removed_by": o.removed_by,
        "removed_on_behalf_of": o.removed_on_behalf_of,
    }


def _token_json(t: CalendarToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "kind": t.kind,
        "name": t.name,
        "created_at": t.created_at.isoformat(),
        "created_by": t.created_by,
    }


def feed_url(rt: Runtime, secret: str) -> str:
    """Where a calendar app subscribes to the feed opened by ``secret``."""
    return f"{rt.loaded.config.server.public_url.rstrip('/')}/calendar/{secret}.ics"


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid JSON", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid payload", "the body must be a JSON object", "")
    return body


def _validate(model: type[_M], body: dict[str, Any]) -> _M:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        raise ApiError(
            400, "invalid payload", _INSTANT.get(err["type"], err["msg"]), path
        ) from None


# Pydantic's wording ("Input should have timezone info") does not say what to send instead.
_EXAMPLE = "e.g. 2026-03-02T18:00:00+01:00 or 2026-03-02T17:00:00Z"
_INSTANT = {
    "timezone_aware": f"an instant needs a UTC offset, {_EXAMPLE}",
    "datetime_from_date_parsing": f"expected an ISO 8601 instant with a UTC offset, {_EXAMPLE}",
    "datetime_parsing": f"expected an ISO 8601 instant with a UTC offset, {_EXAMPLE}",
    "datetime_type": f"expected an ISO 8601 instant with a UTC offset, {_EXAMPLE}",
}


def parse_override(body: dict[str, Any]) -> OverrideBody:
    """The override a body asks for (400 with the offending field's path if it is bad)."""
    return _validate(OverrideBody, body)


def _schedule_missing(name: str) -> ApiError:
    return ApiError(404, "not found", f"no schedule {name!r}", "name")


def _rt(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


async def get_oncall(request: web.Request) -> web.Response:
    rt = _rt(request)
    require_api_token(request, rt.loaded.config.auth.api_tokens, "read")
    now, schedules, roles = await rt.schedules.view()
    return web.json_response(
        {
            "at": now.isoformat(),
            "schedules": [schedule_json(v) for v in schedules],
            "roles": [_role_json(v) for v in roles],
        }
    )


async def list_overrides(request: web.Request) -> web.Response:
    rt = _rt(request)
    require_api_token(request, rt.loaded.config.auth.api_tokens, "read")
    name = request.match_info["name"]
    ended = request.query.get("ended", "") in ("1", "true", "yes")
    try:
        found = await rt.schedules.overrides(name, ended=ended)
    except ScheduleNotFound:
        raise _schedule_missing(name) from None
    return web.json_response({"overrides": [override_json(o) for o in found]})


async def create_override(request: web.Request) -> web.Response:
    rt = _rt(request)
    token = require_api_token(request, rt.loaded.config.auth.api_tokens, "write")
    name = request.match_info["name"]
    body = parse_override(await _json_body(request))
    actor = clean_text(body.actor or token.name)
    try:
        made = await rt.schedules.create_override(
            name,
            clean_text(body.person),
            body.start,
            body.end,
            replaces=clean_text(body.replaces) if body.replaces is not None else None,
            actor=token.name,
            on_behalf_of="" if actor == token.name else actor,
        )
    except ScheduleNotFound:
        raise _schedule_missing(name) from None
    except OverrideRefused as e:
        p = e.problems[0]
        status = 409 if p.conflict else 400
        error = "conflict" if p.conflict else "invalid payload"
        raise ApiError(status, error, p.message, p.path) from None
    return web.json_response(override_json(made), status=201)


async def remove_override(request: web.Request) -> web.Response:
    rt = _rt(request)
    token = require_api_token(request, rt.loaded.config.auth.api_tokens, "write")
    name, override_id = request.match_info["name"], request.match_info["id"]
    body = _validate(ActorBody, await _json_body(request))
    actor = clean_text(body.actor or token.name)
    try:
        gone = await rt.schedules.remove_override(
            name, override_id, actor=token.name, on_behalf_of="" if actor == token.name else actor
        )
    except ScheduleNotFound:
        raise _schedule_missing(name) from None
    except OverrideNotFound:
        raise ApiError(
            404, "not found", f"schedule {name!r} has no override {override_id!r}", "id"
        ) from None
    return web.json_response(override_json(gone))


async def create_calendar(request: web.Request) -> web.Response:
    rt = _rt(request)
    token = require_api_token(request, rt.loaded.config.auth.api_tokens, "write")
    body = _validate(CalendarBody, await _json_body(request))
    kind: Literal["schedule", "person"] = "schedule" if body.schedule is not None else "person"
    name = body.schedule or body.person or ""
    try:
        made, secret = await rt.schedules.create_calendar_token(kind, name, actor=token.name)
    except ScheduleNotFound:
        raise ApiError(404, "not found", f"no {kind} {name!r}", kind) from None
    except OverrideRefused as e:
        raise ApiError(400, "invalid payload", e.problems[0].message, kind) from None
    # The one answer that carries the secret: the caller asked for it, to subscribe with.
    return web.json_response(
        _token_json(made) | {"url": feed_url(rt, secret), "token": secret}, status=201
    )


async def list_calendars(request: web.Request) -> web.Response:
    rt = _rt(request)
    require_api_token(request, rt.loaded.config.auth.api_tokens, "read")
    return web.json_response(
        {"calendars": [_token_json(t) for t in await rt.schedules.calendar_tokens()]}
    )


async def revoke_calendar(request: web.Request) -> web.Response:
    rt = _rt(request)
    token = require_api_token(request, rt.loaded.config.auth.api_tokens, "write")
    token_id = request.match_info["id"]
    if not await rt.schedules.revoke_calendar_token(token_id, actor=token.name):
        raise ApiError(404, "not found", f"no calendar feed {token_id!r}", "id")
    return web.json_response({"id": token_id, "revoked": True})


def add_oncall_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/oncall", get_oncall)
    app.router.add_get(f"/api/v1/schedules/{{name:{_NAME}}}/overrides", list_overrides)
    app.router.add_post(f"/api/v1/schedules/{{name:{_NAME}}}/overrides", create_override)
    app.router.add_delete(
        f"/api/v1/schedules/{{name:{_NAME}}}/overrides/{{id:{_NAME}}}", remove_override
    )
    app.router.add_get("/api/v1/calendars", list_calendars)
    app.router.add_post("/api/v1/calendars", create_calendar)
    app.router.add_delete(f"/api/v1/calendars/{{id:{_NAME}}}", revoke_calendar)
