"""The ``webhook`` channel against a local sink server: exact body, signature, retry decisions."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.config import AdaptersConfig, WebhookConfig, WebhookEndpoint
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.registry import AdapterContext, build_notifiers
from adapters.webhook import WebhookNotifier, build, sign
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import AlertRecord, IncidentRecord, OutboxRecord, Status
from tests.fakes.webhook_sink import Reply, WebhookSink

T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
PUBLIC = "https://tocsin.example.com"
INC_ID = "4f1c2a9e0b7d4c3e8a21"
ROW_ID = f"{INC_ID}:0:page:0:1:ollie:webhook"
SECRET = "whsec-0123456789"


def incident(**kw: Any) -> IncidentRecord:
    base: dict[str, Any] = dict(
        id=INC_ID,
        number=42,
        key='am/{}:{alertname="DiskFull"}',
        status=Status.TRIGGERED,
        severity="P0",
        title="DiskFull on db1",
        team="storage",
        policy_name="critical",
        policy={"steps": []},
        level={"name": "SEV-1"},
        opened_at=T0,
        updated_at=T0,
        labels={"alertname": "DiskFull", "instance": "db1"},
    )
    base.update(kw)
    return IncidentRecord(**base)


def row(**kw: Any) -> OutboxRecord:
    base: dict[str, Any] = dict(
        id=ROW_ID,
        incident_id=INC_ID,
        step_id=f"{INC_ID}:0:page:0:1",
        kind="page",
        tier=1,
        round=0,
        target="role:lead",
        person="ollie",
        channel="webhook",
        created_at=T0,
        not_before=T0,
    )
    base.update(kw)
    return OutboxRecord(**base)


def delivery(**kw: Any) -> Delivery:
    return Delivery(
        kw.pop("row", row()),
        kw.pop("incident", incident()),
        {"name": "Ollie Oncall", "phone": "+14155550100", "email": "ollie@example.com"},
        {"incident": f"{PUBLIC}/api/v1/incidents/{INC_ID}"},
        **kw,
    )


EXPECTED_INCIDENT = {
    "id": INC_ID,
    "number": 42,
    "key": 'am/{}:{alertname="DiskFull"}',
    "title": "DiskFull on db1",
    "status": "triggered",
    "severity": "P0",
    "severity_name": "SEV-1",
    "team": "storage",
    "policy": "critical",
    "labels": {"alertname": "DiskFull", "instance": "db1"},
    "opened_at": "2026-11-22T13:00:00+00:00",
    "acknowledged_at": None,
    "mitigated_at": None,
    "resolved_at": None,
    "url": f"{PUBLIC}/api/v1/incidents/{INC_ID}",
}
EXPECTED_NOTIFICATION = {
    "id": ROW_ID,
    "kind": "page",
    "tier": 1,
    "round": 0,
    "target": "role:lead",
    "person": "ollie",
    "person_name": "Ollie Oncall",
    "channel": "webhook",
}


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    s = await WebhookSink().start()
    yield s
    await s.close()


@pytest.fixture
async def other_sink() -> AsyncIterator[WebhookSink]:
    s = await WebhookSink().start()
    yield s
    await s.close()


Make = Callable[..., WebhookNotifier]


@pytest.fixture
def make(session: aiohttp.ClientSession) -> Make:
    def make_notifier(**endpoints: WebhookEndpoint) -> WebhookNotifier:
        return WebhookNotifier(endpoints, lambda: session, VirtualClock(T0))

    return make_notifier


def endpoint(url: str, **kw: Any) -> WebhookEndpoint:
    return WebhookEndpoint(url=url, **kw)


async def test_the_exact_body_and_a_signature_that_verifies(sink: WebhookSink, make: Make) -> None:
    notifier = make(
        ops=endpoint(
            f"{sink.url}/hooks/T000/B000/XXXX",
            secret=SecretStr(SECRET),
            headers={"Authorization": "Bearer chat-token", "X-Team": "storage"},
        )
    )
    result = await notifier.notify(delivery())
    assert result == DeliveryResult(ok=True, provider_id="ops")
    [got] = sink.received
    assert got.method == "POST"
    assert got.path == "/hooks/T000/B000/XXXX"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Authorization"] == "Bearer chat-token"
    assert got.headers["X-Team"] == "storage"
    assert got.headers["X-Tocsin-Delivery"] == ROW_ID
    # The receiver's check: HMAC-SHA256 of the exact bytes received, hex, prefixed.
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Tocsin-Signature"] == expected
    assert hmac.compare_digest(sign(SECRET, got.body), got.headers["X-Tocsin-Signature"])
    document = {
        "version": "1",
        "sent_at": "2026-11-22T13:00:00+00:00",
        "incident": EXPECTED_INCIDENT,
        "notification": EXPECTED_NOTIFICATION,
        "alerts": [],
        "bundle": [],
    }
    assert got.body == json.dumps(document, separators=(",", ":")).encode()  # byte for byte


async def test_a_tampered_body_fails_the_receivers_check(sink: WebhookSink, make: Make) -> None:
    await make(ops=endpoint(sink.url, secret=SecretStr(SECRET))).notify(delivery())
    [got] = sink.received
    tampered = got.body.replace(b'"P0"', b'"P4"')
    assert tampered != got.body
    assert sign(SECRET, tampered) != got.headers["X-Tocsin-Signature"]
    assert sign("another-secret", got.body) != got.headers["X-Tocsin-Signature"]


async def test_without_a_secret_there_is_no_signature_header(sink: WebhookSink, make: Make) -> None:
    await make(ops=endpoint(sink.url)).notify(delivery())
    [got] = sink.received
    assert "X-Tocsin-Signature" not in got.headers
    assert got.json["notification"] == EXPECTED_NOTIFICATION


async def test_configured_headers_cannot_replace_the_signature(
    sink: WebhookSink, make: Make
) -> None:
    ep = endpoint(
        sink.url,
        secret=SecretStr(SECRET),
        headers={"X-Tocsin-Signature": "sha256=forged", "Content-Type": "text/plain"},
    )
    await make(ops=ep).notify(delivery())
    [got] = sink.received
    assert got.headers["X-Tocsin-Signature"] == sign(SECRET, got.body)
    assert got.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(200), DeliveryResult(ok=True, provider_id="ops")),
        (Reply(202), DeliveryResult(ok=True, provider_id="ops")),
        (Reply(204), DeliveryResult(ok=True, provider_id="ops")),
        (
            Reply(429, {"Retry-After": "30"}),
            DeliveryResult(
                ok=False,
                reason=FailureReason.RATE_LIMITED,
                error="webhook ops: HTTP 429",
                retry_after=30.0,
            ),
        ),
        (
            Reply(429, {"Retry-After": "Sun, 22 Nov 2026 13:02:00 GMT"}),
            DeliveryResult(
                ok=False,
                reason=FailureReason.RATE_LIMITED,
                error="webhook ops: HTTP 429",
                retry_after=120.0,
            ),
        ),
        (
            Reply(503, {"Retry-After": "5"}),
            DeliveryResult(
                ok=False,
                reason=FailureReason.RETRYABLE,
                error="webhook ops: HTTP 503",
                retry_after=5.0,
            ),
        ),
        (
            Reply(500),
            DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error="webhook ops: HTTP 500"),
        ),
        (
            Reply(502),
            DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error="webhook ops: HTTP 502"),
        ),
        (Reply(400), DeliveryResult(ok=False, error="webhook ops: HTTP 400")),
        (Reply(401), DeliveryResult(ok=False, error="webhook ops: HTTP 401")),
        (Reply(404), DeliveryResult(ok=False, error="webhook ops: HTTP 404")),
        (Reply(410), DeliveryResult(ok=False, error="webhook ops: HTTP 410")),
        (
            Reply(307, {"Location": "http://127.0.0.1:1/elsewhere"}),
            DeliveryResult(ok=False, error="webhook ops: HTTP 307"),
        ),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else "",
)
async def test_status_decision_table(
    sink: WebhookSink, make: Make, reply: Reply, expected: DeliveryResult
) -> None:
    sink.script(reply)
    assert await make(ops=endpoint(sink.url)).notify(delivery()) == expected
    assert len(sink.received) == 1  # one attempt; redirects are not followed


async def test_a_timeout_is_retryable(sink: WebhookSink, make: Make) -> None:
    sink.script(Reply(200, hang=3.0))
    ep = endpoint(sink.url, timeout=timedelta(seconds=0.3))
    assert await make(ops=ep).notify(delivery()) == DeliveryResult(
        ok=False, reason=FailureReason.RETRYABLE, error="webhook ops: timed out"
    )


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_connection_refused_is_retryable_and_names_no_url(make: Make) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hooks/secret-path-token"
    result = await make(ops=endpoint(url)).notify(delivery())
    assert result == DeliveryResult(
        ok=False, reason=FailureReason.RETRYABLE, error="webhook ops: Connection refused"
    )


async def test_a_retry_after_a_partial_failure_goes_only_where_it_failed(
    sink: WebhookSink, other_sink: WebhookSink, make: Make
) -> None:
    notifier = make(chat=endpoint(sink.url), tickets=endpoint(other_sink.url))
    other_sink.script(Reply(503, {"Retry-After": "10"}))
    first = await notifier.notify(delivery())
    assert first == DeliveryResult(
        ok=False,
        reason=FailureReason.RETRYABLE,
        error="webhook tickets: HTTP 503",
        retry_after=10.0,
    )
    second = await notifier.notify(delivery())
    assert second == DeliveryResult(ok=True, provider_id="chat,tickets")
    assert len(sink.received) == 1  # chat already had it
    assert len(other_sink.received) == 2
    assert sink.received[0].body == other_sink.received[1].body  # same document, same key


async def test_a_permanent_failure_on_one_endpoint_is_not_retried(
    sink: WebhookSink, other_sink: WebhookSink, make: Make
) -> None:
    notifier = make(chat=endpoint(sink.url), tickets=endpoint(other_sink.url))
    other_sink.script(Reply(400))
    assert await notifier.notify(delivery()) == DeliveryResult(
        ok=False, error="webhook tickets: HTTP 400"
    )
    assert len(sink.received) == len(other_sink.received) == 1


@pytest.mark.parametrize(
    ("chat", "tickets", "reason", "wait"),
    [
        (Reply(429, {"Retry-After": "5"}), Reply(429, {"Retry-After": "20"}), "RATE_LIMITED", 20.0),
        (Reply(429, {"Retry-After": "5"}), Reply(503), "RETRYABLE", 5.0),
        (Reply(429), Reply(400), "RATE_LIMITED", None),
        (Reply(404), Reply(400), "PERMANENT", None),
    ],
    ids=["both-429", "429-and-503", "429-and-400", "both-4xx"],
)
async def test_failures_at_several_endpoints_combine_into_one_reason(
    sink: WebhookSink,
    other_sink: WebhookSink,
    make: Make,
    chat: Reply,
    tickets: Reply,
    reason: str,
    wait: float | None,
) -> None:
    # Retried while any endpoint may still take it; rate limited only if all of those said so.
    sink.script(chat)
    other_sink.script(tickets)
    result = await make(chat=endpoint(sink.url), tickets=endpoint(other_sink.url)).notify(
        delivery()
    )
    assert (result.ok, result.reason, result.retry_after) == (False, FailureReason[reason], wait)


async def test_the_incidents_alerts_are_included(sink: WebhookSink, make: Make) -> None:
    alert = AlertRecord(
        incident_id=INC_ID,
        fingerprint="7db01aa399468675",
        starts_at=T0 - timedelta(minutes=3),
        status="firing",
        ends_at=None,
        labels={"alertname": "DiskFull", "instance": "db1"},
        annotations={"summary": "disk 97% full", "runbook_url": "https://runbooks.example.com/d"},
        generator_url="http://prometheus:9090/graph?g0.expr=x&g0.tab=1",
        severity="P0",
        rule="disk",
        first_seen=T0,
        last_seen=T0,
    )
    await make(ops=endpoint(sink.url)).notify(delivery(alerts=(alert,)))
    assert sink.received[0].json["alerts"] == [
        {
            "fingerprint": "7db01aa399468675",
            "status": "firing",
            "starts_at": "2026-11-22T12:57:00+00:00",
            "ends_at": None,
            "labels": {"alertname": "DiskFull", "instance": "db1"},
            "annotations": {
                "summary": "disk 97% full",
                "runbook_url": "https://runbooks.example.com/d",
            },
            "generator_url": "http://prometheus:9090/graph?g0.expr=x&g0.tab=1",
        }
    ]


async def test_a_bundle_lists_every_notification(sink: WebhookSink, make: Make) -> None:
    other = incident(
        id="b" * 20, number=43, title="API slow", severity="P1", level={"name": "SEV-2"}
    )
    extra = row(id=f"{'b' * 20}:0:page:0:0:ollie:webhook", incident_id="b" * 20, tier=0)
    await make(ops=endpoint(sink.url)).notify(
        delivery(bundle=(extra,), bundle_incidents={other.id: other})
    )
    bundle = sink.received[0].json["bundle"]
    assert [(b["incident"]["number"], b["incident"]["severity_name"]) for b in bundle] == [
        (43, "SEV-2")
    ]
    assert bundle[0]["notification"]["id"] == extra.id
    assert bundle[0]["incident"]["url"] is None


async def test_build_offers_all_endpoints_and_each_one(session: aiohttp.ClientSession) -> None:
    cfg = WebhookConfig(
        endpoints={
            "chat": endpoint("http://127.0.0.1:1/a"),
            "ops": endpoint("http://127.0.0.1:1/b"),
        }
    )
    ctx = AdapterContext(PUBLIC, lambda: session, VirtualClock(T0))
    built = build(cfg, ctx)
    assert sorted(built) == ["webhook", "webhook:chat", "webhook:ops"]
    assert sorted(built["webhook"].endpoints) == ["chat", "ops"]  # type: ignore[attr-defined]
    assert sorted(built["webhook:ops"].endpoints) == ["ops"]  # type: ignore[attr-defined]
    via_registry = build_notifiers(AdaptersConfig(webhook=cfg), ctx)
    assert {"log", "webhook", "webhook:chat", "webhook:ops"} <= set(via_registry)


async def test_no_endpoints_is_a_visible_permanent_failure(make: Make) -> None:
    assert await make().notify(delivery()) == DeliveryResult(
        ok=False, error="no webhook endpoints are configured"
    )
