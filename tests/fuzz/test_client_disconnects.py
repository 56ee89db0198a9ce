"""A client that goes away in the middle of its request body is not a server error.

For every route that reads a body: send the headers and part of the declared body, close the
connection, and wait until the server has finished with the request. Nothing may be logged at
ERROR (or with a traceback), no request may be counted with a 5xx status, and nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from tests.fuzz.conftest import (
    AM_HEADERS,
    GATHER,
    INCIDENTS,
    PD_WEBHOOK,
    PUSHOVER_CALLBACK,
    RECEIVER,
    SMS,
    STATUS,
    WRITE,
    FuzzApp,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

FORM = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}
VONAGE = {"Content-Type": "application/json", "Authorization": "Bearer a.b.c"}
# (route template as counted, target, headers): every POST route that reads a body.
BODY_ROUTES = [
    (RECEIVER, RECEIVER, AM_HEADERS),
    (PD_WEBHOOK, PD_WEBHOOK, {"Content-Type": "application/json", "X-PagerDuty-Signature": "v1=0"}),
    (GATHER, GATHER + "?row=r", FORM),
    (STATUS, STATUS + "?row=r", FORM),
    (SMS, SMS, FORM),
    ("/api/v1/phone/gateway/sms", "/api/v1/phone/gateway/sms", FORM),
    ("/api/v1/phone/vonage/input", "/api/v1/phone/vonage/input?row=r", VONAGE),
    ("/api/v1/phone/vonage/inbound", "/api/v1/phone/vonage/inbound", VONAGE),
    ("/api/v1/{channel}/{action}", "/api/v1/email/ack?token=t", FORM),
    ("/api/v1/{channel}/{action}", "/api/v1/teams/resolve?token=t", FORM),
    (PUSHOVER_CALLBACK, PUSHOVER_CALLBACK + "?token=t", FORM),
    (
        INCIDENTS + "/{id}/{action}",
        INCIDENTS + "/1/ack",
        {**WRITE, "Content-Type": "application/json"},
    ),
]


def _counted(registry: CollectorRegistry, route: str) -> dict[str, float]:
    """status → how many requests to ``route`` were counted with it."""
    out: dict[str, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "tocsin_http_requests_total" and s.labels.get("route") == route:
                out[s.labels["code"]] = s.value
    return out


async def _send_half(port: int, target: str, headers: dict[str, str]) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"POST {target} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 1000"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"version": "4", "alerts": [')
    await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("route", "target", "headers"), BODY_ROUTES, ids=[r[1].split("?")[0] for r in BODY_ROUTES]
)
async def test_a_client_closing_mid_body_is_not_a_server_error(
    fuzz_app: FuzzApp, route: str, target: str, headers: dict[str, str]
) -> None:
    registry = fuzz_app.rt.registry
    assert registry is not REGISTRY
    before_counts = _counted(registry, route)
    before = fuzz_app.begin()

    await _send_half(fuzz_app.port, target, headers)
    # Poll until the server has counted it (no event to wait on); 60 s is only a safety bound.
    async with asyncio.timeout(60):
        while sum(_counted(registry, route).values()) == sum(before_counts.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    after = _counted(registry, route)
    new = {k: v - before_counts.get(k, 0) for k, v in after.items() if v != before_counts.get(k)}
    assert all(not status.startswith("5") for status in new), new
    fuzz_app.finish(before, 400, may_change=False, what=route)
