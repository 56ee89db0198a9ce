"""The HTTP rules every push channel and phone provider shares (``adapters/http.py``): how a
status and a request without an answer map into a ``FailureReason``, never naming the URL."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.http import Answer, exchange, failed_answer, status_failure
from tests.fakes.serving import serve_local

NOW = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
SECRET_QUERY = "token=do-not-log-me"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (429, FailureReason.RATE_LIMITED),
        (500, FailureReason.RETRYABLE),
        (503, FailureReason.RETRYABLE),
        (400, FailureReason.PERMANENT),
        (404, FailureReason.PERMANENT),
        (302, FailureReason.PERMANENT),
    ],
)
def test_a_status_maps_to_one_failure_reason(status: int, reason: FailureReason) -> None:
    got = status_failure(status, "x: HTTP", 7.0)
    assert (got.ok, got.reason, got.error) == (False, reason, "x: HTTP")
    # A wait is kept only where a retry follows.
    assert got.retry_after == (7.0 if reason != FailureReason.PERMANENT else None)


def test_failed_answer_names_the_label_status_and_detail() -> None:
    got = failed_answer("ntfy", Answer(429, b"", 30.0), "too many")
    assert got == DeliveryResult(
        False, FailureReason.RATE_LIMITED, "ntfy: HTTP 429: too many", retry_after=30.0
    )


async def test_a_refused_connection_is_retryable_and_names_no_address(
    http: aiohttp.ClientSession,
) -> None:
    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/publish?{SECRET_QUERY}"
    got = await exchange(http, "POST", url, label="push", limit=5, now=NOW)
    assert got == DeliveryResult(False, FailureReason.RETRYABLE, "push: Connection refused")


async def test_a_url_that_cannot_be_one_is_permanent(http: aiohttp.ClientSession) -> None:
    got = await exchange(http, "POST", f"not a url?{SECRET_QUERY}", label="push", limit=5, now=NOW)
    assert got == DeliveryResult(ok=False, error="push: invalid URL")


async def test_an_answer_carries_its_retry_after(http: aiohttp.ClientSession) -> None:
    async def busy(_: web.Request) -> web.Response:
        return web.Response(status=503, text="later", headers={"Retry-After": "120"})

    app = web.Application()
    app.router.add_post("/publish", busy)
    runner, base = await serve_local(app)
    try:
        got = await exchange(http, "POST", f"{base}/publish", label="push", limit=5, now=NOW)
    finally:
        await runner.cleanup()
    assert got == Answer(503, b"later", 120.0)
