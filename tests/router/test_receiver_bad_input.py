"""Bad input on ``POST /api/v1/alertmanager``: the precise 4xx, a JSON body naming the field.

Alertmanager never retries a 4xx, so every case here must be truly unfixable input; none may
crash the handler, answer 5xx, or leave anything in the store.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.router.conftest import (
    AM_HEADERS,
    BEARER_A,
    JSON,
    MAX_BODY,
    RECEIVER,
    SAMPLE_NAMES,
    App,
    incident_count,
    metric_value,
    sample,
    sample_bytes,
    scrape,
)

FIRING = "alertmanager-0.25-firing.json"
TWO = "alertmanager-0.25-firing-two-alerts.json"


def variant(change: Callable[[dict[str, Any]], None], name: str = FIRING) -> bytes:
    """The sample ``name`` with ``change`` applied, re-encoded."""
    d = copy.deepcopy(sample(name))
    change(d)
    return json.dumps(d).encode()


def without(key: str) -> bytes:
    return variant(lambda d: d.pop(key))


def top(**kw: Any) -> bytes:
    return variant(lambda d: d.update(kw))


def alert0(**kw: Any) -> bytes:
    return variant(lambda d: d["alerts"][0].update(kw))


def alert0_without(key: str) -> bytes:
    return variant(lambda d: d["alerts"][0].pop(key))


def _bad_second_alert(d: dict[str, Any]) -> None:
    d["alerts"][1]["startsAt"] = "2026-11-22T12:52:03.31"


def _invalid_utf8() -> bytes:
    raw = sample_bytes(FIRING)
    at = raw.index(b"HighErrorRate")
    return raw[:at] + b"\xff\xfe" + raw[at + 2 :]


@dataclass(frozen=True)
class Case:
    """One bad request and exactly what tocsin must answer."""

    id: str
    body: bytes
    status: int
    error: str
    detail: str  # a distinctive substring of the response's ``detail``
    path: str
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    skip_auto: tuple[str, ...] = ()


INVALID_PAYLOAD = "invalid payload"
TS = "alerts[0].startsAt"

CASES = [
    # -- media type -----------------------------------------------------------------------
    Case(
        "text-plain",
        sample_bytes(FIRING),
        415,
        "unsupported media type",
        "Content-Type must be application/json, got 'text/plain'",
        "",
        headers={"Content-Type": "text/plain"},
    ),
    Case(
        "content-type-missing",
        sample_bytes(FIRING),
        415,
        "unsupported media type",
        "Content-Type must be application/json, got ''",
        "",
        headers={},
        skip_auto=("Content-Type",),
    ),
    Case(
        "form-encoded",
        b"receiver=web.hook",
        415,
        "unsupported media type",
        "got 'application/x-www-form-urlencoded'",
        "",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    # -- not JSON -------------------------------------------------------------------------
    Case("not-json", b"{not json", 400, "invalid JSON", "key must be a string at line 1", ""),
    Case("empty-body", b"", 400, "invalid JSON", "EOF while parsing a value", ""),
    Case(
        "truncated-json",
        sample_bytes(FIRING)[:200],
        400,
        "invalid JSON",
        "EOF while parsing",
        "",
    ),
    Case("trailing-garbage", b'{"version": "4"} x', 400, "invalid JSON", "trailing characters", ""),
    Case(
        "invalid-utf8",
        _invalid_utf8(),
        400,
        "invalid JSON",
        "body is not valid UTF-8: invalid start byte at byte",
        "",
    ),
    Case(
        "nan-literal",
        top(truncatedAlerts=0).replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": NaN'),
        400,
        INVALID_PAYLOAD,
        "input should be a finite number, got NaN",
        "truncatedAlerts",
    ),
    Case(
        "deeply-nested-arrays",
        b"[" * 4000 + b"]" * 4000,
        400,
        "invalid JSON",
        "recursion limit exceeded",
        "",
    ),
    Case(
        "deeply-nested-objects",
        b'{"version": "4", "x": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000 + b"}",
        400,
        "invalid JSON",
        "recursion limit exceeded",
        "",
    ),
    # -- JSON, but not an object ----------------------------------------------------------
    Case("array", b"[]", 400, INVALID_PAYLOAD, "expected a JSON object, got an array", ""),
    Case("string", b'"firing"', 400, INVALID_PAYLOAD, "expected a JSON object, got a string", ""),
    Case("number", b"42\n", 400, INVALID_PAYLOAD, "expected a JSON object, got a number", ""),
    Case("null", b"null", 400, INVALID_PAYLOAD, "expected a JSON object, got null", ""),
    Case("boolean", b"true", 400, INVALID_PAYLOAD, "expected a JSON object, got a boolean", ""),
    # -- version --------------------------------------------------------------------------
    Case(
        "version-3",
        top(version="3"),
        400,
        "unsupported version",
        'expected webhook payload version "4", got "3"',
        "version",
    ),
    Case(
        "version-number-4",
        top(version=4),
        400,
        "unsupported version",
        'expected webhook payload version "4", got 4',
        "version",
    ),
    # -- missing required fields ----------------------------------------------------------
    *[
        Case(
            f"missing-{key}",
            without(key),
            400,
            INVALID_PAYLOAD,
            f"missing required field {key!r}",
            key,
        )
        for key in ("version", "receiver", "status", "alerts", "groupKey")
    ],
    # -- alerts ---------------------------------------------------------------------------
    Case("alerts-object", top(alerts={}), 400, INVALID_PAYLOAD, "valid array, got {}", "alerts"),
    Case(
        "alerts-string",
        top(alerts="HighErrorRate"),
        400,
        INVALID_PAYLOAD,
        'valid array, got "HighErrorRate"',
        "alerts",
    ),
    Case(
        "alert-not-object", top(alerts=[1]), 400, INVALID_PAYLOAD, "an object, got 1", "alerts[0]"
    ),
    Case(
        "alert-missing-labels",
        alert0_without("labels"),
        400,
        INVALID_PAYLOAD,
        "missing required field 'labels'",
        "alerts[0].labels",
    ),
    Case(
        "alert-empty-labels",
        alert0(labels={}),
        400,
        INVALID_PAYLOAD,
        "an alert must have at least one label",
        "alerts[0].labels",
    ),
    Case(
        "label-value-number",
        alert0(labels={"alertname": "X", "replicas": 5}),
        400,
        INVALID_PAYLOAD,
        "valid string, got 5",
        "alerts[0].labels.replicas",
    ),
    Case(
        "label-value-null",
        alert0(labels={"alertname": "X", "env": None}),
        400,
        INVALID_PAYLOAD,
        "valid string, got null",
        "alerts[0].labels.env",
    ),
    Case(
        "label-value-nested-junk",
        alert0(labels={"alertname": json.loads("[" * 100 + "]" * 100)}),
        400,
        INVALID_PAYLOAD,
        "valid string, got [[[[",
        "alerts[0].labels.alertname",
    ),
    Case(
        "annotation-value-number",
        alert0(annotations={"value": 7.2}),
        400,
        INVALID_PAYLOAD,
        "valid string, got 7.2",
        "alerts[0].annotations.value",
    ),
    Case(
        "receiver-nested-junk",
        top(receiver={"a": [{"b": [[[]]]}]}),
        400,
        INVALID_PAYLOAD,
        'valid string, got {"a": [{"b": [[[]]]}]}',
        "receiver",
    ),
    # -- timestamps -----------------------------------------------------------------------
    Case(
        "startsAt-not-rfc3339",
        alert0(startsAt="yesterday at noon"),
        400,
        INVALID_PAYLOAD,
        "not an RFC 3339 timestamp: 'yesterday at noon'",
        TS,
    ),
    Case(
        "startsAt-epoch-string",
        alert0(startsAt="1700000000"),
        400,
        INVALID_PAYLOAD,
        "not an RFC 3339 timestamp: '1700000000'",
        TS,
    ),
    Case(
        "startsAt-month-13",
        alert0(startsAt="2026-13-01T00:00:00Z"),
        400,
        INVALID_PAYLOAD,
        "not an RFC 3339 timestamp: '2026-13-01T00:00:00Z'",
        TS,
    ),
    Case(
        "startsAt-no-offset",
        alert0(startsAt="2026-11-22T12:52:03.31"),
        400,
        INVALID_PAYLOAD,
        "timestamp has no timezone offset: '2026-11-22T12:52:03.31'",
        TS,
    ),
    Case(
        "startsAt-zero-time",
        alert0(startsAt="0001-01-01T00:00:00Z"),
        400,
        INVALID_PAYLOAD,
        "startsAt must be a real time, not the zero time",
        TS,
    ),
    Case(
        "startsAt-number",
        alert0(startsAt=1700000000),
        400,
        INVALID_PAYLOAD,
        "expected an RFC 3339 timestamp string, got int",
        TS,
    ),
    Case(
        "startsAt-missing",
        alert0_without("startsAt"),
        400,
        INVALID_PAYLOAD,
        "missing required field 'startsAt'",
        TS,
    ),
    Case(
        "startsAt-bad-on-second-alert",
        variant(_bad_second_alert, TWO),
        400,
        INVALID_PAYLOAD,
        "timestamp has no timezone offset",
        "alerts[1].startsAt",
    ),
    Case(
        "endsAt-not-rfc3339",
        alert0(endsAt="soon"),
        400,
        INVALID_PAYLOAD,
        "not an RFC 3339 timestamp: 'soon'",
        "alerts[0].endsAt",
    ),
    # -- enums and numbers ----------------------------------------------------------------
    Case(
        "status-burning",
        top(status="burning"),
        400,
        INVALID_PAYLOAD,
        "input should be 'firing' or 'resolved', got \"burning\"",
        "status",
    ),
    Case(
        "alert-status-pending",
        alert0(status="pending"),
        400,
        INVALID_PAYLOAD,
        "input should be 'firing' or 'resolved', got \"pending\"",
        "alerts[0].status",
    ),
    Case(
        "truncatedAlerts-negative",
        top(truncatedAlerts=-1),
        400,
        INVALID_PAYLOAD,
        "greater than or equal to 0, got -1",
        "truncatedAlerts",
    ),
    Case(
        "truncatedAlerts-fraction",
        top(truncatedAlerts=1.5),
        400,
        INVALID_PAYLOAD,
        "fractional part, got 1.5",
        "truncatedAlerts",
    ),
    Case(
        "several-problems-report-the-first",
        variant(lambda d: d.update(status="burning", version="4", alerts="x")),
        400,
        INVALID_PAYLOAD,
        "(and 1 more problem)",
        "status",
    ),
]


def test_there_are_at_least_24_distinct_cases() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.body for c in CASES if not c.skip_auto}) >= 24
    assert len(CASES) >= 24


async def _assert_nothing_stored(h: App) -> None:
    assert await incident_count(h.rt) == 0
    text = await scrape(h.client)
    assert metric_value(text, "tocsin_alerts_received_total", {"status": "firing"}) is None
    assert metric_value(text, "tocsin_alerts_received_total", {"status": "resolved"}) is None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_body_is_refused_precisely(app: App, case: Case) -> None:
    resp = await app.client.post(
        RECEIVER,
        data=case.body,
        headers={**BEARER_A, **case.headers},
        skip_auto_headers=case.skip_auto,
    )
    assert resp.status == case.status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error", "detail", "path"}
    assert body["error"] == case.error
    assert case.detail in body["detail"]
    assert body["path"] == case.path
    await _assert_nothing_stored(app)


# Every field Alertmanager sends, and values of the wrong JSON type for it: each is a 400
# naming that exact field. (Empty strings/maps are legitimate for some fields and left out.)
_NOT_STRING: list[Any] = [None, 0, True, [], {}]
_NOT_MAP: list[Any] = [None, 0, True, "", []]
_NOT_TIME: list[Any] = [0, True, "", [], {}]
_ANY: list[Any] = [None, 0, True, "", [], {}]
GRID: list[tuple[str, Any, str, str]] = [
    *[("receiver", v, "receiver", "valid string") for v in _NOT_STRING],
    *[("status", v, "status", "'firing' or 'resolved'") for v in _ANY],
    *[("alerts", v, "alerts", "valid array") for v in [None, 0, True, "", {}]],
    *[
        (k, v, k, "an object")
        for k in ("groupLabels", "commonLabels", "commonAnnotations")
        for v in _NOT_MAP
    ],
    *[("externalURL", v, "externalURL", "valid string") for v in _NOT_STRING],
    *[("groupKey", v, "groupKey", "valid string") for v in _NOT_STRING],
    *[("version", v, "version", 'version "4"') for v in _ANY],
    *[("truncatedAlerts", v, "truncatedAlerts", "valid integer") for v in [None, "", [], {}]],
    *[("alerts.0.status", v, "alerts[0].status", "'firing' or 'resolved'") for v in _ANY],
    *[("alerts.0.labels", v, "alerts[0].labels", "an object") for v in _NOT_MAP],
    *[("alerts.0.annotations", v, "alerts[0].annotations", "an object") for v in _NOT_MAP],
    *[("alerts.0.startsAt", v, TS, "RFC 3339 timestamp") for v in _NOT_TIME],
    *[("alerts.0.endsAt", v, "alerts[0].endsAt", "RFC 3339 timestamp") for v in _NOT_TIME],
    *[("alerts.0.generatorURL", v, "alerts[0].generatorURL", "valid string") for v in _NOT_STRING],
    *[("alerts.0.fingerprint", v, "alerts[0].fingerprint", "valid string") for v in _NOT_STRING],
]


def _set(dotted: str, value: Any) -> bytes:
    def change(d: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        target: Any = d
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[last] = value

    return variant(change)


@pytest.mark.parametrize(
    ("field", "value", "path", "detail"),
    GRID,
    ids=[f"{f}={json.dumps(v)}" for f, v, _, _ in GRID],
)
async def test_wrong_type_names_the_field(
    app: App, field: str, value: Any, path: str, detail: str
) -> None:
    resp = await app.client.post(RECEIVER, data=_set(field, value), headers=AM_HEADERS)
    assert resp.status == 400
    body = await resp.json()
    assert body["path"] == path
    assert body["error"] == ("unsupported version" if field == "version" else INVALID_PAYLOAD)
    assert detail in body["detail"]
    assert await incident_count(app.rt) == 0


# -- size limits ------------------------------------------------------------------------------


async def test_declared_length_over_limit_is_refused_before_the_body_is_read(
    app: App,
) -> None:
    """The body generator stalls after its first chunk: a 413 can only come from the header."""
    stalled = asyncio.Event()
    release = asyncio.Event()
    chunks_sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        chunks_sent += 1
        yield b'{"version": "4", "receiver": "'
        stalled.set()
        await release.wait()  # never set before the response arrives
        chunks_sent += 1
        yield b"x" * 100_000

    try:
        resp = await asyncio.wait_for(
            app.client.post(
                RECEIVER,
                data=body(),
                headers={**AM_HEADERS, "Content-Length": str(MAX_BODY * 10)},
            ),
            timeout=10,
        )
        assert resp.status == 413
        assert await resp.json() == {
            "error": "body too large",
            "detail": f"{MAX_BODY * 10} bytes declared; the limit is {MAX_BODY}",
            "path": "",
        }
        assert stalled.is_set()
        assert chunks_sent == 1
    finally:
        release.set()
    await _assert_nothing_stored(app)


async def test_declared_length_one_over_limit(app: App) -> None:
    raw = sample_bytes(FIRING)
    body = raw + b" " * (MAX_BODY + 1 - len(raw))
    assert len(body) == MAX_BODY + 1
    resp = await app.client.post(RECEIVER, data=body, headers=AM_HEADERS)
    assert resp.status == 413
    assert await resp.json() == {
        "error": "body too large",
        "detail": f"{MAX_BODY + 1} bytes declared; the limit is {MAX_BODY}",
        "path": "",
    }
    await _assert_nothing_stored(app)


async def test_body_exactly_at_limit_is_accepted(app: App) -> None:
    raw = sample_bytes(FIRING)
    body = raw + b" " * (MAX_BODY - len(raw))  # JSON allows trailing whitespace
    assert len(body) == MAX_BODY
    resp = await app.client.post(RECEIVER, data=body, headers=AM_HEADERS)
    assert resp.status == 200
    assert (await resp.json())["alerts"][0]["fingerprint"] == "7db01aa399468675"


def _chunked(payload: bytes, size: int = 1024) -> Callable[[], AsyncIterator[bytes]]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), size):
            yield payload[i : i + size]

    return gen


async def test_chunked_body_growing_past_limit_is_refused(app: App) -> None:
    raw = sample_bytes(FIRING)
    payload = raw + b" " * (MAX_BODY * 3)
    resp = await app.client.post(RECEIVER, data=_chunked(payload)(), headers=AM_HEADERS)
    assert "Content-Length" not in resp.request_info.headers
    assert resp.request_info.headers["Transfer-Encoding"] == "chunked"
    assert resp.status == 413
    assert await resp.json() == {
        "error": "body too large",
        "detail": f"more than {MAX_BODY} bytes sent; the limit is {MAX_BODY}",
        "path": "",
    }
    await _assert_nothing_stored(app)


async def test_chunked_body_within_limit_is_accepted(app: App) -> None:
    raw = sample_bytes(FIRING)
    payload = raw + b" " * (MAX_BODY - len(raw))
    resp = await app.client.post(RECEIVER, data=_chunked(payload, 100)(), headers=AM_HEADERS)
    assert resp.request_info.headers["Transfer-Encoding"] == "chunked"
    assert resp.status == 200
    assert await incident_count(app.rt) == 1


# -- the server survives all of it ------------------------------------------------------------


async def test_server_keeps_serving_after_every_bad_case(app: App) -> None:
    for case in CASES:
        resp = await app.client.post(
            RECEIVER,
            data=case.body,
            headers={**BEARER_A, **case.headers},
            skip_auto_headers=case.skip_auto,
        )
        assert resp.status == case.status, case.id
    assert await incident_count(app.rt) == 0
    for name in SAMPLE_NAMES:
        resp = await app.client.post(RECEIVER, data=sample_bytes(name), headers=AM_HEADERS)
        assert resp.status == 200
    assert await incident_count(app.rt) == 2
    text = await scrape(app.client)
    code = {"route": RECEIVER}
    assert metric_value(text, "tocsin_http_requests_total", {**code, "code": "200"}) == 3
    expected = {str(s): sum(1 for c in CASES if c.status == s) for s in {c.status for c in CASES}}
    for status, n in expected.items():
        got = metric_value(text, "tocsin_http_requests_total", {**code, "code": status})
        assert got == n, status
    assert metric_value(text, "tocsin_http_requests_total", {**code, "code": "500"}) is None
