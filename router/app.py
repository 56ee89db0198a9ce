"""The aiohttp application: routes, middlewares and typed app keys."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.errors import ConfigError
from router.auth import require_api_token, require_receiver_auth
from router.console import add_console_routes
from router.errors import ApiError, Outage, error_middleware, on_store_outage
from router.heartbeats_api import add_heartbeat_routes
from router.ics import add_calendar_routes
from router.inbound_email import add_email_routes
from router.inbound_gateway import add_gateway_routes
from router.inbound_pagerduty import add_pagerduty_routes
from router.inbound_phone import add_phone_routes
from router.inbound_pushover import add_pushover_routes
from router.inbound_slack import add_slack_routes
from router.inbound_vonage import add_vonage_routes
from router.incidents_api import add_incident_routes
from router.keys import RUNTIME
from router.oncall_api import add_oncall_routes
from router.opsgenie_api import add_opsgenie_routes
from router.receiver import check_content_type, parse_notification, read_body
from router.runtime import Runtime

__all__ = ["RUNTIME", "create_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests by route template and status; time them."""
    rt = request.app[RUNTIME]
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    start = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        rt.metrics.served(route, status, time.perf_counter() - start)


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body still incomplete ``server.body_timeout`` after its headers is answered 408.

    The deadline is set on the body stream itself, so every way a route reads its body (raw,
    form, JSON) fails the same way, and a route that never reads one is not affected.
    """
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (as nearly every webhook's does): nothing left to
        # wait for, so no timer. One call_later and its cancel per request was 5 % of the
        # server's time under wrk, and cancelled timers linger in the loop's heap until due.
        return await handler(request)
    limit = request.app[RUNTIME].loaded.config.server.body_timeout.total_seconds()

    def expire() -> None:
        if not content.is_eof() and content.exception() is None:
            detail = f"the body did not arrive within {limit:g}s (server.body_timeout)"
            content.set_exception(ApiError(408, "request timeout", detail))

    deadline = asyncio.get_running_loop().call_later(limit, expire)
    try:
        return await handler(request)
    finally:
        deadline.cancel()


async def receive_alertmanager(request: web.Request) -> web.Response:
    """Alertmanager's webhook: 2xx only once the notification's effects are durable."""
    rt = request.app[RUNTIME]
    cfg = rt.loaded.config
    require_receiver_auth(request, cfg.auth.receiver)
    check_content_type(request)
    body = await read_body(request, cfg.server.max_body_bytes)
    notification = parse_notification(body)
    result = await rt.pipeline.submit(notification)
    return web.json_response(
        {
            "status": "accepted",
            "alerts": [
                {
                    "fingerprint": fp,
                    "severity": c.severity,
                    "severity_name": c.severity_name,
                    "rule": c.rule,
                    "policy": c.policy,
                    "team": c.team,
                    "incident_key": c.incident_key,
                    "title": c.title,
                }
                for fp, c in result.classifications
            ],
            "incidents": result.incidents,
            **({"heartbeats": result.heartbeats} if result.heartbeats else {}),
        },
        status=200,
    )


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the process can accept and store notifications."""
    rt = request.app[RUNTIME]
    problems = await rt.readiness_problems()
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the app's registry."""
    rt = request.app[RUNTIME]
    await rt.refresh_gauges()
    resp = web.Response(body=generate_latest(rt.registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


async def reload(request: web.Request) -> web.Response:
    """``POST /-/reload``: reload atomically; a bad config keeps the old one running."""
    rt = request.app[RUNTIME]
    require_api_token(request, rt.loaded.config.auth.api_tokens, "write")
    try:
        await rt.reload()
    except ConfigError as e:
        return web.json_response(
            {
                "error": "reload failed",
                "detail": "the previous configuration stays in force",
                "path": str(rt.config_path),
                "problems": [dataclasses.asdict(p) | {"text": str(p)} for p in e.problems],
            },
            status=400,
        )
    return web.json_response({"status": "reloaded"})


# Alertmanager retries 5xx: nothing is lost, but an operator should see the outage.
_NOT_STORED = Outage(
    detail="the notification was not stored; retry",
    log="store unavailable; asking Alertmanager to retry",
)


def create_app(runtime: Runtime) -> web.Application:
    """Build the application around ``runtime``."""
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware, body_deadline_middleware],
        # aiohttp refuses bodies *larger* than client_max_size (request.read/post): exactly
        # max_body_bytes is allowed, one more is a 413, as the receiver's own read_body does.
        client_max_size=runtime.loaded.config.server.max_body_bytes,
    )
    app[RUNTIME] = runtime
    app.router.add_post("/api/v1/alertmanager", receive_alertmanager)
    on_store_outage(app, _NOT_STORED, receive_alertmanager)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/-/reload", reload)
    add_incident_routes(app)
    add_heartbeat_routes(app)
    add_oncall_routes(app)
    add_calendar_routes(app)
    add_pagerduty_routes(app)
    add_email_routes(app)
    add_phone_routes(app)
    add_gateway_routes(app)
    add_vonage_routes(app)
    add_slack_routes(app)
    add_opsgenie_routes(app)
    add_pushover_routes(app)
    add_console_routes(app)
    return app
