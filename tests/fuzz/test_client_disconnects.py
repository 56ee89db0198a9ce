"""A client that goes away in the middle of its request body is not a server error.

For every route that may read a body (every POST, PUT, PATCH and DELETE the app registers):
send the headers and part of the declared body, close the connection, and wait until the
server has finished with the request. Nothing may be logged at ERROR (or with a traceback), no
request may be counted with a 5xx status, and nothing changes. Each request carries what its
route checks before it reads the body (a token, a signed link, a session), so the read that
fails is really reached; a route that never reads a body answers before it would.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from adapters.pushover import callback_signer
from router.console.identity import SESSION_COOKIE
from tests.fuzz.conftest import (
    AM_HEADERS,
    GATHER,
    GENIE_KEY,
    INCIDENTS,
    PD_WEBHOOK,
    PUBLIC,
    PUSHOVER_CALLBACK,
    RECEIVER,
    SMS,
    STATUS,
    WRITE,
    FuzzApp,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
FORM = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}
JSON = {"Content-Type": "application/json"}
VONAGE = {**JSON, "Authorization": "Bearer a.b.c"}
SLACK = {
    "Content-Type": "application/x-www-form-urlencoded",
    "X-Slack-Request-Timestamp": "1",
    "X-Slack-Signature": "v0=0",
}
GENIE = {**JSON, "Authorization": f"GenieKey {GENIE_KEY}"}
API_WRITE = {**WRITE, **JSON}
# Replaced per app: a console session of the write token, a valid Pushover callback token.
SESSION = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "$session"}
PINGS = "/api/v1/heartbeats/{name}/ping", "/v2/heartbeats/{name}/ping"
# (method, route template as counted, target, headers): every route that may read a body. A
# template may appear more than once (the signed-link route serves three channels).
BODY_ROUTES: list[tuple[str, str, str, dict[str, str]]] = [
    ("POST", RECEIVER, RECEIVER, AM_HEADERS),
    ("POST", PD_WEBHOOK, PD_WEBHOOK, {**JSON, "X-PagerDuty-Signature": "v1=0"}),
    ("POST", GATHER, GATHER + "?row=r", FORM),
    ("POST", STATUS, STATUS + "?row=r", FORM),
    ("POST", SMS, SMS, FORM),
    ("POST", "/api/v1/phone/gateway/sms", "/api/v1/phone/gateway/sms", FORM),
    ("POST", "/api/v1/phone/vonage/input", "/api/v1/phone/vonage/input?row=r", VONAGE),
    ("POST", "/api/v1/phone/vonage/event", "/api/v1/phone/vonage/event?row=r", VONAGE),
    ("POST", "/api/v1/phone/vonage/inbound", "/api/v1/phone/vonage/inbound", VONAGE),
    ("POST", "/api/v1/slack/interactivity", "/api/v1/slack/interactivity", SLACK),
    ("POST", "/api/v1/slack/commands", "/api/v1/slack/commands", SLACK),
    ("POST", "/api/v1/{channel}/{action}", "/api/v1/email/ack?token=t", FORM),
    ("POST", "/api/v1/{channel}/{action}", "/api/v1/teams/resolve?token=t", FORM),
    ("POST", "/api/v1/{channel}/{action}", "/api/v1/ntfy/ack?token=t", FORM),
    ("POST", PUSHOVER_CALLBACK, PUSHOVER_CALLBACK + "?token=$pushover", FORM),
    ("POST", INCIDENTS + "/{id}/{action}", INCIDENTS + "/1/ack", API_WRITE),
    # Reloading reads no body; unauthenticated, so the config is not reloaded mid-test.
    ("POST", "/-/reload", "/-/reload", JSON),
    # Pings read no body; unauthenticated, so nothing is pinged.
    ("POST", PINGS[0], "/api/v1/heartbeats/nightly/ping", JSON),
    ("POST", PINGS[1], "/v2/heartbeats/nightly/ping", JSON),
    ("PUT", PINGS[1], "/v2/heartbeats/nightly/ping", JSON),
    ("PATCH", PINGS[1], "/v2/heartbeats/nightly/ping", JSON),
    (
        "POST",
        "/api/v1/schedules/{name}/overrides",
        "/api/v1/schedules/primary/overrides",
        API_WRITE,
    ),
    (
        "DELETE",
        "/api/v1/schedules/{name}/overrides/{id}",
        "/api/v1/schedules/primary/overrides/o1",
        API_WRITE,
    ),
    ("POST", "/api/v1/calendars", "/api/v1/calendars", API_WRITE),
    ("DELETE", "/api/v1/calendars/{id}", "/api/v1/calendars/cal-1", API_WRITE),
    # The Opsgenie-compatible Alert API.
    ("POST", "/v2/alerts", "/v2/alerts", GENIE),
    ("POST", "/v2/alerts/{identifier}/close", "/v2/alerts/a1/close?identifierType=alias", GENIE),
    ("POST", "/v2/alerts/{identifier}/acknowledge", "/v2/alerts/a1/acknowledge", GENIE),
    ("POST", "/v2/alerts/{identifier}/notes", "/v2/alerts/a1/notes", GENIE),
    # The console's forms (the sign-in and sign-out forms need no session).
    ("POST", "/signin", "/signin", SESSION),
    ("POST", "/signout", "/signout", SESSION),
    ("POST", "/incidents/{id}/{action}", "/incidents/1/ack", SESSION),
    ("POST", "/oncall/{schedule}/overrides", "/oncall/primary/overrides", SESSION),
    (
        "POST",
        "/oncall/{schedule}/overrides/{id}/remove",
        "/oncall/primary/overrides/o1/remove",
        SESSION,
    ),
    ("POST", "/oncall/calendars", "/oncall/calendars", SESSION),
    ("POST", "/oncall/calendars/{id}/revoke", "/oncall/calendars/cal-1/revoke", SESSION),
]


async def test_the_list_covers_every_route_that_may_read_a_body(fuzz_app: FuzzApp) -> None:
    registered = {
        (r.method, r.resource.canonical)
        for r in fuzz_app.client.server.app.router.routes()
        if r.method in BODY_METHODS and r.resource is not None
    }
    assert {(m, route) for m, route, _, _ in BODY_ROUTES} == registered


def _counted(registry: CollectorRegistry, route: str) -> dict[str, float]:
    """status → how many requests to ``route`` were counted with it."""
    out: dict[str, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "tocsin_http_requests_total" and s.labels.get("route") == route:
                out[s.labels["code"]] = s.value
    return out


def _credentials(app: FuzzApp, text: str) -> str:
    """``text`` with the placeholders replaced by credentials valid in ``app``."""
    if "$session" in text:
        text = text.replace("$session", f"{SESSION_COOKIE}={app.console_session()}")
    if "$pushover" in text:
        section = app.rt.loaded.config.adapters.pushover
        assert section is not None
        signer = callback_signer(section, PUBLIC)
        token = signer.token(app.seeded.incident_ids[0], "ack", "ollie", app.clock.now())
        text = text.replace("$pushover", quote(token, safe=""))
    return text


async def _send_half(port: int, method: str, target: str, headers: dict[str, str]) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 1000"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"version": "4", "alerts": [')
    await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("method", "route", "target", "headers"),
    BODY_ROUTES,
    ids=[f"{r[0]} {r[2].split('?')[0]}" for r in BODY_ROUTES],
)
async def test_a_client_closing_mid_body_is_not_a_server_error(
    fuzz_app: FuzzApp, method: str, route: str, target: str, headers: dict[str, str]
) -> None:
    registry = fuzz_app.rt.registry
    assert registry is not REGISTRY
    before_counts = _counted(registry, route)
    before = fuzz_app.begin()
    target = _credentials(fuzz_app, target)
    headers = {k: _credentials(fuzz_app, v) for k, v in headers.items()}

    await _send_half(fuzz_app.port, method, target, headers)
    # Poll until the server has counted it (no event to wait on); 60 s is only a safety bound.
    async with asyncio.timeout(60):
        while sum(_counted(registry, route).values()) == sum(before_counts.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    after = _counted(registry, route)
    new = {k: v - before_counts.get(k, 0) for k, v in after.items() if v != before_counts.get(k)}
    assert all(not status.startswith("5") for status in new), new
    fuzz_app.finish(before, 400, may_change=False, what=f"{method} {route}")
