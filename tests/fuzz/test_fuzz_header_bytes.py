"""Every route, with arbitrary bytes in the headers that carry credentials and signatures.

aiohttp decodes header bytes that are not UTF-8 with ``surrogateescape``, so a handler sees lone
surrogates (and any non-ASCII text) where a token or signature should be. Properties: on every
registered route, any bytes in ``Authorization`` (API tokens, basic auth, Vonage's JWT, Opsgenie's
GenieKey), ``X-Twilio-Signature``, ``X-PagerDuty-Signature``, Slack's ``X-Slack-Signature`` and
``X-Slack-Request-Timestamp``, the SMS gateway's ``X-Signature``, ``Cookie`` (the console's
session and CSRF cookies), the trusted auth proxy's ``X-Forwarded-Email`` and
``X-Forwarded-User`` (the proxy is this module's own peer address), ``Content-Type`` and a few
arbitrary headers give a 4xx or a 2xx (never a 5xx, never a logged error or traceback), and
nothing changes in the store.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.console.identity import CSRF_COOKIE, SESSION_COOKIE
from tests.driver.app import START
from tests.fuzz.conftest import (
    GATHER,
    INCIDENTS,
    PD_WEBHOOK,
    PUSHOVER_CALLBACK,
    RECEIVER,
    SMS,
    STATUS,
    FuzzApp,
    build_request,
    fuzz_settings,
    raw_header_bytes,
    raw_http,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOP_BY_HOP = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"}
# Every route the app registers, by (method, path pattern), with a concrete target for it.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", RECEIVER): RECEIVER,
    ("POST", PD_WEBHOOK): PD_WEBHOOK,
    ("POST", GATHER): GATHER + "?row=$row0",
    ("POST", STATUS): STATUS + "?row=$row0",
    ("POST", SMS): SMS,
    ("POST", "/api/v1/phone/gateway/sms"): "/api/v1/phone/gateway/sms",
    ("POST", "/api/v1/phone/vonage/input"): "/api/v1/phone/vonage/input?row=$row0",
    ("POST", "/api/v1/phone/vonage/event"): "/api/v1/phone/vonage/event?row=$row0",
    ("POST", "/api/v1/phone/vonage/inbound"): "/api/v1/phone/vonage/inbound",
    ("POST", "/api/v1/slack/interactivity"): "/api/v1/slack/interactivity",
    ("POST", "/api/v1/slack/commands"): "/api/v1/slack/commands",
    # Signed action links (email and Teams share one route).
    ("GET", "/api/v1/{channel}/{action}"): "/api/v1/email/ack?token=$token",
    ("POST", "/api/v1/{channel}/{action}"): "/api/v1/email/resolve?token=$token",
    ("POST", PUSHOVER_CALLBACK): PUSHOVER_CALLBACK + "?token=$token",
    ("GET", INCIDENTS): INCIDENTS,
    ("GET", INCIDENTS + "/{id}"): INCIDENTS + "/$inc0",
    ("POST", INCIDENTS + "/{id}/{action}"): INCIDENTS + "/$inc0/ack",
    ("GET", "/healthz"): "/healthz",
    ("GET", "/readyz"): "/readyz",
    ("GET", "/metrics"): "/metrics",
    ("POST", "/-/reload"): "/-/reload",
    ("GET", "/api/v1/oncall"): "/api/v1/oncall",
    ("GET", "/api/v1/heartbeats"): "/api/v1/heartbeats",
    ("GET", "/api/v1/heartbeats/{name}/ping"): "/api/v1/heartbeats/nightly/ping",
    ("POST", "/api/v1/heartbeats/{name}/ping"): "/api/v1/heartbeats/nightly/ping",
    ("GET", "/api/v1/schedules/{name}/overrides"): "/api/v1/schedules/primary/overrides",
    ("POST", "/api/v1/schedules/{name}/overrides"): "/api/v1/schedules/primary/overrides",
    ("DELETE", "/api/v1/schedules/{name}/overrides/{id}"): "/api/v1/schedules/primary/overrides/o1",
    ("GET", "/api/v1/calendars"): "/api/v1/calendars",
    ("POST", "/api/v1/calendars"): "/api/v1/calendars",
    ("DELETE", "/api/v1/calendars/{id}"): "/api/v1/calendars/cal-1",
    ("GET", "/calendar/{token}.ics"): "/calendar/" + "x" * 43 + ".ics",
    # The console (pages answer the sign-in page to a visitor nobody vouches for).
    ("GET", "/"): "/",
    ("GET", "/board/rows"): "/board/rows",
    ("GET", "/events"): "/events",
    ("GET", "/signin"): "/signin",
    ("POST", "/signin"): "/signin",
    ("POST", "/signout"): "/signout",
    ("GET", "/incidents/{id}"): "/incidents/$inc0",
    ("GET", "/incidents/{id}/live"): "/incidents/$inc0/live",
    ("POST", "/incidents/{id}/{action}"): "/incidents/$inc0/ack",
    ("GET", "/static/{name}"): "/static/console.css",
    ("GET", "/oncall"): "/oncall",
    ("GET", "/status"): "/status",
    ("GET", "/rules"): "/rules",
    ("POST", "/oncall/{schedule}/overrides"): "/oncall/primary/overrides",
    ("POST", "/oncall/{schedule}/overrides/{id}/remove"): "/oncall/primary/overrides/o1/remove",
    ("POST", "/oncall/calendars"): "/oncall/calendars",
    # The Opsgenie-compatible Alert API.
    ("POST", "/v2/alerts"): "/v2/alerts",
    ("POST", "/v2/alerts/{identifier}/close"): "/v2/alerts/a1/close?identifierType=alias",
    ("POST", "/v2/alerts/{identifier}/acknowledge"): "/v2/alerts/a1/acknowledge",
    ("POST", "/v2/alerts/{identifier}/notes"): "/v2/alerts/a1/notes",
    ("GET", "/v2/heartbeats/{name}/ping"): "/v2/heartbeats/nightly/ping",
    ("POST", "/v2/heartbeats/{name}/ping"): "/v2/heartbeats/nightly/ping",
    ("PUT", "/v2/heartbeats/{name}/ping"): "/v2/heartbeats/nightly/ping",
    ("PATCH", "/v2/heartbeats/{name}/ping"): "/v2/heartbeats/nightly/ping",
    ("POST", "/oncall/calendars/{id}/revoke"): "/oncall/calendars/cal-1/revoke",
}
# Endless to a visitor the console knows (a valid session cookie, or the proxy's word).
STREAMS = {("GET", "/events"), ("GET", "/incidents/{id}/live")}
# Control bytes but HTAB: aiohttp refuses a header holding one (400) before any route runs, so
# they come one header at a time (``controls``) and the other headers still reach the routes.
_CONTROLS = bytes(range(32)).replace(b"\t", b"") + b"\x7f"
# Bytes that are not valid UTF-8, non-ASCII UTF-8, and plausible-looking prefixes.
octets = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xe2\x82", b"caf\xc3\xa9", b"\x80" * 30]),
    st.builds(
        bytes.__add__,
        st.sampled_from(
            [
                b"Bearer ",
                b"Basic ",
                b"GenieKey ",
                b"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.",  # a JWT's header, as Vonage's
                b"v1=",
                b"t=1,v1=",
                b"v0=",  # Slack's signature
                b"sha256=",  # the SMS gateway's HMAC
                b"",
            ]
        ),
        st.binary(max_size=40),
    ),
).map(lambda b: b.translate(None, _CONTROLS))
# Any bytes but CR and LF (which would end the header line).
controls = st.binary(min_size=1, max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
)
FUZZED = [
    b"Authorization",
    b"X-Twilio-Signature",
    b"X-PagerDuty-Signature",
    b"X-Slack-Signature",
    b"X-Slack-Request-Timestamp",
    b"X-Signature",
    b"Cookie",
    b"X-Forwarded-Email",
    b"X-Forwarded-User",
    b"Content-Type",
]
# Slack's timestamp: digits around now (the app's clock) too, so the signature is compared.
_NOW = int(START.timestamp())
timestamps = octets | st.integers(_NOW - 600, _NOW + 600).map(lambda n: str(n).encode())
# The console's cookies: "$session" is a valid session of the write token (see _cookie).
cookies = st.one_of(
    octets,
    st.builds(
        bytes.__add__,
        st.sampled_from(
            [f"{SESSION_COOKIE}=".encode(), f"{CSRF_COOKIE}=".encode(), b"$session; tocsin_csrf="]
        ),
        octets,
    ),
    st.just(b"$session"),
)
# What the auth proxy says: arbitrary bytes, or someone who is (or is not) one of the people.
proxy_ids = octets | st.sampled_from([b"ollie@example.com", b"ollie", b"OLLIE@EXAMPLE.COM", b"x"])
content_types = (
    st.sampled_from([b"application/x-www-form-urlencoded", b"application/json", b"text/plain"])
    | octets
)


@pytest.fixture(scope="module")
def console_auth() -> dict[str, Any]:
    """A trusted auth proxy at this test's own address, so its headers are read."""
    return {"proxy": {"trusted_proxies": ["127.0.0.1/32"], "scope": "write"}}


async def test_the_route_list_covers_every_registered_route(fuzz_app: FuzzApp) -> None:
    registered = {
        (r.method, r.resource.canonical.replace("{id:[^/]+}", "{id}"))
        for r in fuzz_app.client.server.app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert registered == set(ROUTES)


def _target(app: FuzzApp, template: str) -> bytes:
    s = app.seeded
    token = s.ack_tokens[s.incident_ids[0]]
    return (
        template.replace("$row0", quote(s.row_ids[0], safe=":"))
        .replace("$inc0", s.incident_ids[0])
        .replace("$token", quote(token, safe=""))
        .encode("ascii")
    )


def _session(app: FuzzApp) -> bytes:
    return f"{SESSION_COOKIE}={app.console_session()}".encode()


@fuzz_settings(1000)
@given(
    route=st.sampled_from(sorted(ROUTES)),
    authorization=octets,
    signatures=st.fixed_dictionaries(
        {
            b"X-Twilio-Signature": octets,
            b"X-PagerDuty-Signature": octets,
            b"X-Slack-Signature": octets,
            b"X-Slack-Request-Timestamp": timestamps,
            b"X-Signature": octets,
        }
    ),
    cookie=cookies,
    proxy=st.fixed_dictionaries(
        {}, optional={b"X-Forwarded-Email": proxy_ids, b"X-Forwarded-User": proxy_ids}
    ),
    ctype=content_types,
    # Mostly none: a control byte makes the whole request one aiohttp refuses.
    raw=st.sampled_from([None, None, None]) | st.tuples(st.sampled_from(FUZZED), controls),
    # Often none: an arbitrary header name is answered 400 by aiohttp before any route runs.
    extra=st.just([]) | raw_header_bytes(),
    body=st.sampled_from([b"", b"{}", b"Digits=1&CallSid=CA1&From=%2B14155550100&Body=ACK+1"]),
)
async def test_any_header_bytes_on_any_route_are_never_a_server_error(
    batch: FuzzApp,
    route: tuple[str, str],
    authorization: bytes,
    signatures: dict[bytes, bytes],
    cookie: bytes,
    proxy: dict[bytes, bytes],
    ctype: bytes,
    raw: tuple[bytes, bytes] | None,
    extra: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    method, _ = route
    fuzzed = {
        b"Authorization": authorization,
        **signatures,
        b"Cookie": cookie.replace(b"$session", _session(batch)),
        **proxy,
        b"Content-Type": ctype,
    }
    if raw is not None:
        fuzzed[raw[0]] = raw[1]
    lines = [h for h in extra if h[0].strip().lower() not in HOP_BY_HOP] + list(fuzzed.items())
    request = build_request(method, _target(batch, ROUTES[route]), lines, body)
    before = batch.begin()
    resp = await raw_http(batch.port, request, head_only=route in STREAMS)
    # No valid credential can come out of these bytes: nothing may change.
    batch.finish(before, resp.status, may_change=False, what=f"{route} {lines!r}")


@pytest.mark.parametrize(
    "request_bytes",
    [
        build_request("GET", b"/healthz", [(b"Authorization", b"Bearer " + b"s3cr3t" * 2000)]),
        build_request("GET", b"/healthz", [(b"Bad Header Name", b"x")]),
        b"GARBAGE\r\n\r\n",
        build_request(
            "POST", RECEIVER.encode(), [(b"Content-Length", b"-1")], content_length=False
        ),
    ],
    ids=["header-too-long", "bad-header-name", "bad-request-line", "bad-content-length"],
)
async def test_requests_aiohttp_cannot_parse_are_answered_in_json(
    fuzz_app: FuzzApp, request_bytes: bytes
) -> None:
    resp = await raw_http(fuzz_app.port, request_bytes)

    assert resp.status == 400, resp
    assert resp.headers["content-type"].startswith("application/json"), resp
    body = json.loads(resp.body)
    assert set(body) == {"error", "detail", "path"}
    assert body["error"] == "bad request"
    assert b"s3cr3t" not in resp.body  # the offending bytes are not echoed back
