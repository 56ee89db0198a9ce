"""Heartbeat routes: ``POST|GET /api/v1/heartbeats/{name}/ping`` and ``GET /api/v1/heartbeats``.

A ping is what a cron job or any other system sends while it is alive; it authenticates like
Alertmanager does (the receiver's credentials), so whatever can reach the receiver can ping.
``GET`` pings too because many schedulers can only fetch a URL. The list is for people and
dashboards: the API read token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from escalation.engine.heartbeats import HeartbeatView, UnknownHeartbeat
from router.auth import require_api_token, require_receiver_auth
from router.errors import ApiError, Outage, on_store_outage
from router.keys import RUNTIME

__all__ = ["add_heartbeat_routes", "heartbeat_json"]


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def heartbeat_json(v: HeartbeatView) -> dict[str, Any]:
    """One heartbeat as the API shows it."""
    return {
        "name": v.name,
        "state": v.state,
        "last_ping": _iso(v.last_ping),
        "due_at": _iso(v.due_at),
        "expired_at": _iso(v.expired_at),
        "expect_every_seconds": v.config.expect_every.total_seconds(),
        "grace_seconds": v.config.grace.total_seconds(),
        "severity": v.config.severity,
        "policy": v.config.policy,
        "team": v.config.team,
        "title": v.config.title or f"Heartbeat {v.name} stopped",
    }


async def ping_heartbeat(request: web.Request) -> web.Response:
    """Re-arm the heartbeat (and resolve its incident if it had expired); 200 once durable."""
    rt = request.app[RUNTIME]
    require_receiver_auth(request, rt.loaded.config.auth.receiver)
    name = request.match_info["name"]
    try:
        rec = await rt.heartbeats.ping(name)
    except UnknownHeartbeat:
        raise ApiError(404, "not found", f"no heartbeat {name[:128]!r} is configured") from None
    return web.json_response({"status": "ok", "name": name, "due_at": _iso(rec.due_at)})


async def list_heartbeats(request: web.Request) -> web.Response:
    """Every configured heartbeat with its state (unknown, ok, expired) and last ping."""
    rt = request.app[RUNTIME]
    require_api_token(request, rt.loaded.config.auth.api_tokens, "read")
    views = await rt.heartbeats.views()
    return web.json_response({"heartbeats": [heartbeat_json(v) for v in views]})


# The pinger retries on 5xx (cron's curl --retry, Alertmanager): nothing is lost meanwhile.
_NOT_PINGED = Outage(detail="the ping was not stored; retry")


def add_heartbeat_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/heartbeats", list_heartbeats)
    app.router.add_post("/api/v1/heartbeats/{name:[^/]+}/ping", ping_heartbeat)
    app.router.add_get("/api/v1/heartbeats/{name:[^/]+}/ping", ping_heartbeat)
    on_store_outage(app, _NOT_PINGED, ping_heartbeat)
