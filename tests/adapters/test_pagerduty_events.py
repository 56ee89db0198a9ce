"""The ``pagerduty`` channel against the fake PagerDuty: exact events, status decisions, limits."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.config import PagerDutyConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.pagerduty import build
from adapters.pagerduty.events import (
    MAX_EVENT_BYTES,
    SIZE_ERROR_DETAILS,
    PagerDutyEventsNotifier,
    encode_event,
    parse_retry_after,
    truncate_summary,
)
from adapters.pagerduty.tls import config_ssl_context
from adapters.registry import AdapterContext
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import (
    AlertRecord,
    AlertStatus,
    IncidentRecord,
    OutboxRecord,
    Status,
)
from tests.fakes.pagerduty import FakePagerDuty, Scripted

T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
CORE_KEY = "e93facc04764012d7bfb002500d5d1a6"
DEFAULT_KEY = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://tocsin.example.com"
INC_ID = "4f1c2a9e0b7d4c3e8a21"
INC_URL = f"{PUBLIC}/api/v1/incidents/{INC_ID}"
LABELS = {
    "alertname": "DiskFull",
    "instance": "db1:9100",
    "service": "postgres",
    "runbook_url": "https://runbooks.example.com/disk-full",
}


def incident(**kw: Any) -> IncidentRecord:
    base = IncidentRecord(
        id=INC_ID,
        number=42,
        key='pd/{}:{alertname="DiskFull"}',
        status=Status.TRIGGERED,
        severity="P0",
        title="DiskFull on db1",
        team="storage",
        policy_name="critical",
        policy={"steps": []},
        level={"name": "SEV-1", "pagerduty_severity": "critical"},
        opened_at=T0,
        updated_at=T0,
        labels=dict(LABELS),
    )
    return replace(base, **kw)


def row(
    kind: str = "page",
    person: str = "pagerduty:core",
    target: str = "pagerduty:core",
    incident_id: str = INC_ID,
) -> OutboxRecord:
    return OutboxRecord(
        id=f"{incident_id}:0:page:0:0:{person}:pagerduty",
        incident_id=incident_id,
        step_id=f"{incident_id}:0:page:0:0",
        kind=kind,
        tier=0,
        round=0,
        target=target,
        person=person,
        channel="pagerduty",
        created_at=T0,
        not_before=T0,
    )


def delivery(kind: str = "page", **kw: Any) -> Delivery:
    inc = kw.pop("inc", None) or incident()
    person = kw.pop("person_details", {})
    return Delivery(row(kind, **kw), inc, person, {"incident": INC_URL})


def expected_trigger(routing_key: str = CORE_KEY, **details: Any) -> dict[str, Any]:
    custom = {
        "incident": {
            "id": INC_ID,
            "number": 42,
            "title": "DiskFull on db1",
            "status": "triggered",
            "severity": "P0",
            "severity_name": "SEV-1",
            "team": "storage",
            "opened_at": "2026-11-22T13:00:00+00:00",
            "url": INC_URL,
        },
        "labels": LABELS,
        "notification": {
            "tier": 0,
            "round": 0,
            "target": "pagerduty:core",
            "person": "pagerduty:core",
        },
    }
    custom.update(details)
    return {
        "routing_key": routing_key,
        "dedup_key": INC_ID,
        "event_action": "trigger",
        "payload": {
            "summary": "[SEV-1] DiskFull on db1",
            "source": "db1:9100",
            "severity": "critical",
            "timestamp": "2026-11-22T13:00:00+00:00",
            "component": "postgres",
            "group": "storage",
            "class": "DiskFull",
            "custom_details": custom,
        },
        "client": "tocsin",
        "client_url": INC_URL,
        "links": [
            {"href": INC_URL, "text": "tocsin incident #42"},
            {"href": "https://runbooks.example.com/disk-full", "text": "Runbook"},
        ],
    }


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakePagerDuty]:
    pd = await FakePagerDuty(tmp_path).start()
    yield pd
    await pd.close()


MakeNotifier = Callable[..., PagerDutyEventsNotifier]


@pytest.fixture
def make_notifier(fake: FakePagerDuty, session: aiohttp.ClientSession) -> MakeNotifier:
    clock = VirtualClock(T0)

    def make(**overrides: Any) -> PagerDutyEventsNotifier:
        fields: dict[str, Any] = {
            "events_url": fake.http_url,
            "allow_insecure_events_url": True,
            "services": {"core": CORE_KEY, "default": DEFAULT_KEY},
            "default_service": "default",
            "timeout": 2,
        } | overrides
        cfg = PagerDutyConfig.model_validate(fields)
        notifiers = build(cfg, AdapterContext(PUBLIC, lambda: session, clock))
        notifier = notifiers["pagerduty"]
        assert isinstance(notifier, PagerDutyEventsNotifier)
        return notifier

    return make


# -- exact requests -------------------------------------------------------------------------------


async def test_trigger_for_a_service_target_is_the_exact_documented_event(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    result = await make_notifier().notify(delivery())

    assert result == DeliveryResult(ok=True, provider_id=INC_ID)
    [req] = fake.requests
    assert (req.method, req.path, req.status) == ("POST", "/v2/enqueue", 202)
    assert req.headers["Content-Type"] == "application/json"
    assert req.json == expected_trigger()
    [alert] = fake.alerts
    assert (alert.routing_key, alert.dedup_key, alert.status) == (CORE_KEY, INC_ID, "triggered")


async def test_a_person_paged_via_pagerduty_uses_the_default_service_and_names_their_user(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    d = delivery(
        person="alice",
        target="role:oncall",
        person_details={"email": "alice@example.com", "pagerduty_user": "PALICE1", "name": "Alice"},
    )
    result = await make_notifier().notify(d)

    assert result.ok is True
    want = expected_trigger(DEFAULT_KEY, pagerduty_user="PALICE1")
    want["payload"]["custom_details"]["notification"] = {
        "tier": 0,
        "round": 0,
        "target": "role:oncall",
        "person": "alice",
    }
    assert fake.requests[0].json == want
    assert fake.alerts[0].routing_key == DEFAULT_KEY


@pytest.mark.parametrize(
    ("kind", "status"), [("resolve", "resolved"), ("acknowledge", "acknowledged")]
)
async def test_follow_ups_reuse_the_trigger_routing_key_and_dedup_key(
    fake: FakePagerDuty, make_notifier: MakeNotifier, kind: str, status: str
) -> None:
    n = make_notifier()
    assert (await n.notify(delivery())).ok
    result = await n.notify(delivery(kind))

    assert result == DeliveryResult(ok=True, provider_id=INC_ID)
    follow = fake.requests[1]
    assert (follow.method, follow.path, follow.status) == ("POST", "/v2/enqueue", 202)
    assert follow.json == {"routing_key": CORE_KEY, "dedup_key": INC_ID, "event_action": kind}
    [alert] = fake.alerts
    assert alert.status == status
    assert alert.actions == ["trigger", kind]
    assert fake.dropped == []


async def test_person_follow_up_goes_through_the_default_service_like_its_trigger(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    n = make_notifier()
    await n.notify(delivery(person="alice", target="role:oncall"))
    await n.notify(delivery("resolve", person="alice", target="role:oncall"))

    assert [r.json["routing_key"] for r in fake.requests] == [DEFAULT_KEY, DEFAULT_KEY]
    assert fake.alerts[0].status == "resolved"


async def test_resolve_without_an_open_alert_is_dropped_by_pagerduty_with_202(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    result = await make_notifier().notify(delivery("resolve"))

    assert result.ok is True
    assert fake.alerts == []
    assert fake.dropped == [
        {"routing_key": CORE_KEY, "dedup_key": INC_ID, "event_action": "resolve"}
    ]


async def test_a_reminder_sends_nothing(fake: FakePagerDuty, make_notifier: MakeNotifier) -> None:
    assert await make_notifier().notify(delivery("reminder")) == DeliveryResult(ok=True)
    assert fake.requests == []


async def test_events_over_tls_with_the_configured_ca(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    n = make_notifier(events_url=fake.https_url, tls_ca_path=fake.ca_file)
    result = await n.notify(delivery())

    assert result.ok is True
    assert fake.requests[0].secure is True


async def test_events_over_tls_without_trusting_the_ca_fail_retryably(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    result = await make_notifier(events_url=fake.https_url).notify(delivery())

    assert (result.ok, result.retryable, result.unknown) == (False, True, False)
    assert result.error.startswith("network error talking to PagerDuty (")
    assert fake.requests == []


# -- status → decision --------------------------------------------------------------------------


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize(
    ("answer", "ok", "reason", "retry_after", "error"),
    [
        (None, True, None, None, ""),
        (
            Scripted.invalid("Length of 'routing_key' is incorrect (should be 32 characters)"),
            False,
            FailureReason.PERMANENT,
            None,
            "PagerDuty rejected the event (HTTP 400): Event object is invalid: "
            "Length of 'routing_key' is incorrect (should be 32 characters)",
        ),
        (
            Scripted(404, {"error": "not found"}),
            False,
            FailureReason.PERMANENT,
            None,
            "PagerDuty answered HTTP 404",
        ),
        (
            Scripted.rate_limited("7"),
            False,
            FailureReason.RATE_LIMITED,
            7.0,
            "rate limited by PagerDuty (HTTP 429): Too many API calls at a time.",
        ),
        (
            Scripted.rate_limited(),
            False,
            FailureReason.RATE_LIMITED,
            None,
            "rate limited by PagerDuty (HTTP 429): Too many API calls at a time.",
        ),
        (
            Scripted.error(500),
            False,
            FailureReason.RETRYABLE,
            None,
            "PagerDuty answered HTTP 500: Internal Server Error: try again later",
        ),
        (
            Scripted(502, b"<html>bad gateway</html>"),
            False,
            FailureReason.RETRYABLE,
            None,
            "PagerDuty answered HTTP 502",
        ),
        (
            Scripted(503, None, {"Retry-After": "30"}),
            False,
            FailureReason.RETRYABLE,
            30.0,
            "PagerDuty answered HTTP 503",
        ),
    ],
    ids=["202", "400", "404", "429-retry-after", "429", "500", "502", "503"],
)
async def test_status_decision_table(
    fake: FakePagerDuty,
    make_notifier: MakeNotifier,
    answer: Scripted | None,
    ok: bool,
    reason: FailureReason | None,
    retry_after: float | None,
    error: str,
) -> None:
    if answer is not None:
        fake.script_events(answer)
    result = await make_notifier().notify(delivery())

    provider_id = INC_ID if ok else ""
    assert result == DeliveryResult(ok, reason, error, provider_id, retry_after)
    assert len(fake.event_requests) == 1
    # A scripted failure is not ingested: PagerDuty opened nothing.
    assert len(fake.alerts) == (1 if ok else 0)


async def test_network_error_is_retryable(make_notifier: MakeNotifier) -> None:
    n = make_notifier(events_url=f"http://127.0.0.1:{_closed_port()}")
    result = await n.notify(delivery())

    assert result == DeliveryResult(
        ok=False,
        reason=FailureReason.RETRYABLE,
        error="network error talking to PagerDuty (ClientConnectorError)",
    )


async def test_timeout_is_retryable_because_dedup_makes_a_repeat_safe(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    fake.script_events(Scripted.slow(1.0))
    result = await make_notifier(timeout=0.2).notify(delivery())

    assert result == DeliveryResult(
        ok=False, reason=FailureReason.RETRYABLE, error="no answer from PagerDuty within 0.2s"
    )
    # The repeat lands on the same alert: still exactly one open at the fake.
    second = await make_notifier(timeout=2).notify(delivery())
    assert second.ok is True
    await _settle(fake, 2)
    assert len(fake.open_alerts()) == 1
    assert fake.open_alerts()[0].actions == ["trigger", "trigger"]


async def _settle(fake: FakePagerDuty, n: int) -> None:
    import asyncio

    for _ in range(100):
        if len(fake.event_requests) >= n:
            return
        await asyncio.sleep(0.02)


def test_retry_after_as_http_date_counts_from_the_clock() -> None:
    assert parse_retry_after("Sun, 22 Nov 2026 13:00:45 GMT", T0) == 45.0
    assert parse_retry_after("Sun, 22 Nov 2026 12:00:00 GMT", T0) == 0.0
    assert parse_retry_after("120", T0) == 120.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


# -- limits --------------------------------------------------------------------------------------


def test_truncate_summary_cuts_to_1024_with_an_ellipsis() -> None:
    assert truncate_summary("x" * 1024) == "x" * 1024
    cut = truncate_summary("y" * 1025)
    assert len(cut) == 1024
    assert cut == "y" * 1023 + "…"


async def test_a_long_title_is_cut_and_pagerduty_accepts_it(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    title = "é" * 3000
    result = await make_notifier().notify(delivery(inc=incident(title=title)))

    assert result.ok is True
    summary = fake.requests[0].json["payload"]["summary"]
    assert summary == ("[SEV-1] " + title)[:1023] + "…"
    assert len(summary) == 1024


async def test_an_oversized_event_cuts_long_detail_values_before_dropping_details(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    huge = incident(labels=LABELS | {f"big{i}": "z" * 10_000 for i in range(60)})
    result = await make_notifier().notify(delivery(inc=huge))

    assert result.ok is True
    req = fake.requests[0]
    assert req.status == 202
    assert len(req.body) <= MAX_EVENT_BYTES
    assert req.json["payload"]["custom_details"]["labels"]["big0"] == "z" * 1023 + "…"
    assert req.json["payload"]["custom_details"]["labels"]["alertname"] == "DiskFull"
    assert req.json["payload"]["summary"] == "[SEV-1] DiskFull on db1"
    assert result.notes == (
        "long values in the PagerDuty event's custom details were cut to 1024 characters "
        "(the event was over 512 KB)",
    )


async def test_an_event_of_many_small_details_drops_them_like_alertmanager(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    many = incident(labels=LABELS | {f"label{i:05}": "v" * 20 for i in range(20_000)})
    result = await make_notifier().notify(delivery(inc=many))

    assert result.ok is True
    req = fake.requests[0]
    assert (req.status, req.json["payload"]["custom_details"]) == (202, SIZE_ERROR_DETAILS)
    assert result.notes == ("the PagerDuty event's custom details were left out (over 512 KB)",)


def test_encode_event_keeps_small_events_whole() -> None:
    event = {"payload": {"summary": "s", "custom_details": {"a": "b"}}}
    assert json.loads(encode_event(event)) == event


async def test_one_label_larger_than_the_event_limit_still_pages(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    """A 600 KB label in source, component, class, group and the runbook: each field is cut to
    its limit (or the link dropped, a URL cut short being another URL), and the page goes."""
    big = "s" * 600_000
    labels = {
        "alertname": big,
        "instance": big,
        "service": big,
        "cluster": big,
        "runbook_url": "https://runbooks.example.com/" + big,
    }
    huge = incident(labels=labels, team="")
    result = await make_notifier().notify(delivery(inc=huge))

    assert result.ok is True
    req = fake.requests[0]
    assert req.status == 202
    payload = req.json["payload"]
    cut = "s" * 1023 + "…"
    assert [payload[f] for f in ("source", "component", "group", "class")] == [cut] * 4
    assert req.json["links"] == [{"href": INC_URL, "text": "tocsin incident #42"}]
    assert result.notes[0] == "link 'Runbook' not sent to PagerDuty: longer than 2048 characters"


async def test_fake_rejects_what_pagerduty_rejects(
    fake: FakePagerDuty, session: aiohttp.ClientSession
) -> None:
    fake.expect_violations()
    bad = {
        "routing_key": "short",
        "event_action": "trigger",
        "payload": {"summary": "x" * 1025, "source": "", "severity": "fatal"},
    }
    async with session.post(f"{fake.http_url}/v2/enqueue", json=bad) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [
                "'payload.severity' 'fatal' is not one of ['critical', 'warning', 'error', 'info']",
                "Length of 'routing_key' is incorrect (should be 32 characters)",
                "'payload.source' is missing or blank",
                "Length of 'payload.summary' is incorrect (should be at most 1024 characters)",
            ],
        }
    async with session.post(
        f"{fake.http_url}/v2/enqueue", data=b"{" + b" " * MAX_EVENT_BYTES + b"}"
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"] == ["Event object exceeds the maximum size of 512KB"]
    assert fake.alerts == []
    assert len(fake.violations) == 2


_GOOD: dict[str, Any] = {
    "routing_key": CORE_KEY,
    "event_action": "trigger",
    "dedup_key": INC_ID,
    "payload": {"summary": "s", "source": "db1", "severity": "critical"},
}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"links": [{"href": "see the wiki"}]}, "'links[0].href' 'see the wiki' is not a 'url'"),
        ({"links": [{"href": "/runbooks/x"}]}, "'links[0].href' '/runbooks/x' is not a 'url'"),
        ({"links": [{"href": "https://a.example", "text": 3}]}, "'links[0].text' 3 is not of"),
        ({"links": [{"text": "no href"}]}, "'links[0]' 'href' is a required property"),
        ({"client_url": "/api/v1/incidents/x"}, "'client_url' '/api/v1/incidents/x' is not a"),
        ({"client_url": "javascript:alert(1)"}, "'client_url' 'javascript:alert(1)' is not a"),
        ({"dedup_key": 7}, "'dedup_key' 7 is not of type 'string'"),
        ({"event_action": "page"}, "'event_action' 'page' is not one of"),
        (
            {"payload": _GOOD["payload"] | {"timestamp": "2026-11-22T13:00:00"}},
            "'payload.timestamp' '2026-11-22T13:00:00' is not a 'date-time'",
        ),
        ({"payload": _GOOD["payload"] | {"component": ["db"]}}, "'payload.component' ['db']"),
        ({"payload": {"summary": "s", "severity": "info"}}, "'payload' 'source' is a required"),
    ],
)
async def test_fake_validates_events_against_the_published_schema(
    fake: FakePagerDuty, session: aiohttp.ClientSession, change: dict[str, Any], error: str
) -> None:
    fake.expect_violations()
    async with session.post(f"{fake.https_url}/v2/enqueue", json=_GOOD, ssl=False) as resp:
        assert resp.status == 202
    async with session.post(f"{fake.https_url}/v2/enqueue", json=_GOOD | change, ssl=False) as resp:
        assert resp.status == 400
        answer = await resp.json()
    assert (answer["status"], answer["message"]) == ("invalid event", "Event object is invalid")
    assert [e for e in answer["errors"] if e.startswith(error)] != [], answer["errors"]


async def test_fake_keeps_invalid_events_it_was_scripted_to_answer(
    fake: FakePagerDuty, session: aiohttp.ClientSession
) -> None:
    """A scripted answer (a 429 here) does not hide an event PagerDuty would refuse."""
    fake.script_events(Scripted.rate_limited())
    async with session.post(f"{fake.http_url}/v2/enqueue", json={"event_action": "x"}) as resp:
        assert (resp.status, resp.headers.get("Retry-After")) == (429, None)
    assert fake.violations == [
        [
            "'event' 'routing_key' is a required property",
            "'event_action' 'x' is not one of ['trigger', 'acknowledge', 'resolve']",
        ]
    ]
    with pytest.raises(AssertionError, match="events PagerDuty would refuse were sent"):
        await fake.close()
    fake.violations.clear()


async def test_events_over_http_to_an_https_only_pagerduty_fail_with_its_error_2009(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    fake.events_https_only = True
    result = await make_notifier().notify(delivery())

    assert (result.ok, result.reason) == (False, FailureReason.PERMANENT)
    assert result.error == "PagerDuty answered HTTP 403: Only HTTPS Allowed For This Call (2009)"
    assert [r.status for r in fake.requests] == [403]
    ok = await make_notifier(events_url=fake.https_url, tls_ca_path=fake.ca_file).notify(delivery())
    assert ok.ok is True


# -- routing problems and secrets ------------------------------------------------------------------


async def test_unknown_service_fails_permanently_without_a_request(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    result = await make_notifier().notify(
        delivery(person="pagerduty:billing", target="pagerduty:billing")
    )

    assert result == DeliveryResult(
        ok=False, error="unknown PagerDuty service 'billing' (configured: core, default)"
    )
    assert fake.requests == []


async def test_a_person_without_a_default_service_fails_permanently(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    result = await make_notifier(default_service=None).notify(
        delivery(person="alice", target="role:oncall")
    )

    assert result.ok is False and result.retryable is False
    assert result.error == (
        "alice is a person, and adapters.pagerduty.default_service is not set: "
        "no PagerDuty service to page them through"
    )
    assert fake.requests == []


async def test_error_texts_never_carry_the_routing_key(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    fake.script_events(Scripted.invalid(f"Routing key {CORE_KEY} is disabled"))
    result = await make_notifier().notify(delivery())

    assert result.error == (
        "PagerDuty rejected the event (HTTP 400): Event object is invalid: "
        "Routing key [redacted] is disabled"
    )


def test_build_rejects_a_routing_key_of_the_wrong_length_without_echoing_it() -> None:
    cfg = PagerDutyConfig(services={"core": SecretStr("tooshort-secret")})
    with pytest.raises(ValueError) as err:
        build(cfg, AdapterContext(PUBLIC, aiohttp.ClientSession, VirtualClock(T0)))
    assert str(err.value) == (
        "services.core: a PagerDuty routing (integration) key is 32 characters long; "
        "this one has 15"
    )
    assert "tooshort-secret" not in str(err.value)


async def test_a_bundle_names_the_other_incidents(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    other = incident(id="9b8a7c6d5e4f3a2b1c0d", number=43, title="DiskFull on db2")
    d = Delivery(
        row(),
        incident(),
        {},
        {"incident": INC_URL},
        bundle=(row(incident_id=other.id),),
        bundle_incidents={other.id: other},
    )
    result = await make_notifier().notify(d)

    assert result.ok is True
    payload = fake.requests[0].json["payload"]
    assert payload["summary"] == "[SEV-1] DiskFull on db1 (+1 more incident)"
    assert payload["custom_details"]["bundled_incidents"] == [
        {
            "id": "9b8a7c6d5e4f3a2b1c0d",
            "number": 43,
            "title": "DiskFull on db2",
            "severity": "P0",
            "severity_name": "SEV-1",
            "status": "triggered",
            "url": f"{PUBLIC}/api/v1/incidents/9b8a7c6d5e4f3a2b1c0d",
        }
    ]


async def test_an_extra_ca_given_as_pem_text_is_trusted_too(
    fake: FakePagerDuty, session: aiohttp.ClientSession
) -> None:
    # What the config loader makes of `tls_ca_path:` in YAML once a section declares `tls_ca`.
    ctx = config_ssl_context(SimpleNamespace(tls_ca_path=None, tls_ca=fake.ca_pem))
    assert ctx is not None
    async with session.get(f"{fake.https_url}/oncalls", ssl=ctx) as resp:
        assert resp.status == 401  # TLS verified; the fake then wants a token
    assert config_ssl_context(SimpleNamespace(tls_ca_path=None)) is None
    with pytest.raises(ValueError) as err:
        config_ssl_context(SimpleNamespace(tls_ca_path=None, tls_ca="not a certificate"))
    assert str(err.value).startswith("the extra TLS CA cannot be loaded: ")


# -- links and fields PagerDuty would refuse -------------------------------------------------------


def _alert(annotations: dict[str, str], generator_url: str, **labels: str) -> AlertRecord:
    return AlertRecord(
        incident_id=INC_ID,
        fingerprint="fa65a21db3335b7d",
        starts_at=T0,
        status=AlertStatus.FIRING,
        ends_at=None,
        labels={"alertname": "DiskFull", **labels},
        annotations=annotations,
        generator_url=generator_url,
        severity="P0",
        rule="default",
        first_seen=T0,
        last_seen=T0,
    )


@pytest.mark.parametrize(
    ("runbook", "generator", "notes"),
    [
        (
            "see the wiki, section Disk",
            "/graph?g0.expr=disk",
            [
                "link 'Runbook' not sent to PagerDuty: contains whitespace or control characters",
                "link 'Source' not sent to PagerDuty: a relative reference, not an absolute "
                "http(s) URL",
            ],
        ),
        (
            "javascript:alert(1)",
            "prometheus:9090/graph",
            [
                "link 'Runbook' not sent to PagerDuty: a javascript: URL, not an absolute "
                "http(s) URL",
                "link 'Source' not sent to PagerDuty: a prometheus: URL, not an absolute "
                "http(s) URL",
            ],
        ),
        (
            "https://runbooks.example.com/disk full",
            "http://",
            [
                "link 'Runbook' not sent to PagerDuty: contains whitespace or control characters",
                "link 'Source' not sent to PagerDuty: has no host",
            ],
        ),
    ],
)
async def test_links_that_are_not_absolute_http_urls_are_dropped_and_said(
    fake: FakePagerDuty,
    make_notifier: MakeNotifier,
    runbook: str,
    generator: str,
    notes: list[str],
) -> None:
    inc = incident(labels={"alertname": "DiskFull", "instance": "db1:9100"})
    d = replace(delivery(inc=inc), alerts=(_alert({"runbook_url": runbook}, generator),))
    result = await make_notifier().notify(d)

    assert result.ok is True
    assert fake.requests[0].status == 202
    assert fake.requests[0].json["links"] == [{"href": INC_URL, "text": "tocsin incident #42"}]
    assert list(result.notes) == notes


async def test_usable_links_are_sent_percent_encoded_where_rfc_3986_needs_it(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    inc = incident(labels={"alertname": "DiskFull", "instance": "db1:9100"})
    runbook = "  https://wiki.example.com/Plattenplatz_voll_ü?q={disk}  "
    d = replace(delivery(inc=inc), alerts=(_alert({"runbook_url": runbook}, ""),))
    result = await make_notifier().notify(d)

    assert (result.ok, result.notes) == (True, ())
    assert fake.requests[0].json["links"][1] == {
        "href": "https://wiki.example.com/Plattenplatz_voll_%C3%BC?q=%7Bdisk%7D",
        "text": "Runbook",
    }


async def test_a_relative_incident_link_is_sent_neither_as_link_nor_as_client_url(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    d = Delivery(row(), incident(), {}, {"incident": f"/api/v1/incidents/{INC_ID}"})
    result = await make_notifier().notify(d)

    assert result.ok is True
    sent = fake.requests[0].json
    assert "client_url" not in sent
    assert [link["text"] for link in sent["links"]] == ["Runbook"]
    assert result.notes[:2] == (
        "client_url not sent to PagerDuty: a relative reference, not an absolute http(s) URL",
        "link 'tocsin incident #42' not sent to PagerDuty: a relative reference, not an "
        "absolute http(s) URL",
    )


@pytest.mark.parametrize("blank", ["   ", "\t", ""])
async def test_a_blank_instance_falls_back_to_the_next_source_candidate(
    fake: FakePagerDuty, make_notifier: MakeNotifier, blank: str
) -> None:
    inc = incident(labels={"alertname": "DiskFull", "instance": blank, "job": "node"})
    result = await make_notifier().notify(delivery(inc=inc))

    assert result.ok is True
    assert fake.requests[0].json["payload"]["source"] == "node"


async def test_no_source_candidate_at_all_is_tocsin(
    fake: FakePagerDuty, make_notifier: MakeNotifier
) -> None:
    inc = incident(labels={"alertname": "DiskFull", "instance": "  ", "host": " "})
    result = await make_notifier().notify(delivery(inc=inc))

    assert result.ok is True
    assert fake.requests[0].json["payload"]["source"] == "tocsin"
