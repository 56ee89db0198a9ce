"""The whole app with ``adapters.pagerduty`` pointed at the fake PagerDuty, on a virtual clock.

A P0 alert's policy notifies ``pagerduty:core`` first and a person five minutes later; the fake
records every event and keeps PagerDuty's alert state, and signed v3 webhooks come back.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest

from escalation.incidents.model import IncidentRecord, OutboxState, Status
from tests.adapters.conftest import (
    PD_AM,
    PD_API_TOKEN,
    PD_CORE_KEY,
    PD_RECEIVER_TOKEN,
    PD_SECRET_A,
    PD_SECRET_B,
    PD_TOCSIN_API_TOKEN,
    MakeAdapterApp,
)
from tests.driver.app import App
from tests.driver.config import PUBLIC
from tests.fakes.pagerduty import (
    Scripted,
    incident_webhook,
    secrets_in,
    send_webhook,
)

SECRETS = (
    PD_CORE_KEY,
    PD_SECRET_A,
    PD_SECRET_B,
    PD_API_TOKEN,
    PD_RECEIVER_TOKEN,
    PD_TOCSIN_API_TOKEN,
)
API = {"Authorization": f"Bearer {PD_TOCSIN_API_TOKEN}"}


def alertmanager(status: str = "firing") -> dict[str, Any]:
    """An Alertmanager v4 webhook body for one DiskFull alert."""
    labels = {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"}
    return {
        "receiver": "pd",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "Disk full on db1"},
                "startsAt": "2026-11-22T12:59:00Z",
                "endsAt": "2026-11-22T13:20:00Z"
                if status == "resolved"
                else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom:9090/graph?g0.expr=disk",
                "fingerprint": "fa65a21db3335b7d",
            }
        ],
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "Disk full on db1"},
        "externalURL": "http://am:9093",
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0,
    }


@pytest.fixture
async def app(make_pd_app: MakeAdapterApp) -> App:
    return await make_pd_app()


async def fire(app: App, status: str = "firing") -> IncidentRecord:
    """Alertmanager sends the DiskFull group; the one incident it is part of."""
    return await app.fire(alertmanager(status), headers=PD_AM)


async def test_p0_alert_triggers_one_pagerduty_alert_keyed_by_the_incident(app: App) -> None:
    inc = await fire(app)
    await app.at(timedelta(0))

    [req] = app.pagerduty.event_requests
    assert req.status == 202
    body = req.json
    assert (body["routing_key"], body["dedup_key"], body["event_action"]) == (
        PD_CORE_KEY,
        inc.id,
        "trigger",
    )
    assert body["payload"]["severity"] == "critical"
    assert body["payload"]["summary"] == f"[SEV-1] {inc.title}"
    assert body["payload"]["class"] == "DiskFull"
    assert body["links"][0] == {
        "href": f"{PUBLIC}/api/v1/incidents/{inc.id}",
        "text": f"tocsin incident #{inc.number}",
    }
    [alert] = app.pagerduty.open_alerts()
    assert (alert.routing_key, alert.dedup_key) == (PD_CORE_KEY, inc.id)
    [row] = await app.outbox(inc.id)
    assert (row.state, row.provider_id, row.attempts) == (OutboxState.SENT, inc.id, 1)


async def test_the_first_tier_is_sent_at_ingest_and_no_engine_tick_sends_it_again(
    app: App,
) -> None:
    inc = await fire(app)  # the driver waits for what the ingest handed to delivery, no tick

    [req] = app.pagerduty.event_requests
    assert (req.json["dedup_key"], req.json["event_action"]) == (inc.id, "trigger")
    [row] = await app.outbox(inc.id)
    assert (row.state, row.attempts, row.sent_at) == (OutboxState.SENT, 1, app.start)
    await app.at(timedelta(0))
    await app.at(timedelta(minutes=1))
    assert len(app.pagerduty.event_requests) == 1
    assert "late" not in [e.kind.value for e in await app.timeline(inc.id)]


async def test_pagerduty_ack_webhook_stops_the_escalation(app: App) -> None:
    inc = await fire(app)
    await app.at(timedelta(0))

    reply = await send_webhook(
        app.client,
        incident_webhook(
            "incident.acknowledged", app.pagerduty.incident_of(inc.id), agent="Jane Responder"
        ),
        secrets=(PD_SECRET_A,),
    )
    assert (reply.status, reply.body["status"]) == (200, "applied")
    acked = await app.record(inc.id)
    assert acked.status == Status.ACKNOWLEDGED
    assert "acknowledged by Jane Responder" in await app.messages(inc.id)

    await app.at(timedelta(minutes=6))  # the lead tier was due at 5m
    rows = await app.outbox(inc.id)
    assert [r.person for r in rows] == ["pagerduty:core"]
    assert len(app.pagerduty.event_requests) == 1


async def test_500_500_202_ends_with_one_alert_and_one_sent_delivery(app: App) -> None:
    app.pagerduty.script_events(Scripted.error(500), Scripted.error(500))
    inc = await fire(app)
    await app.at(timedelta(0))
    [row] = await app.outbox(inc.id)
    assert (row.state, row.attempts) == (OutboxState.PENDING, 1)

    await app.at(timedelta(seconds=5))
    await app.at(timedelta(seconds=10))

    assert [r.status for r in app.pagerduty.event_requests] == [500, 500, 202]
    assert [r.json["dedup_key"] for r in app.pagerduty.event_requests] == [inc.id] * 3
    assert len(app.pagerduty.alerts) == 1 and len(app.pagerduty.open_alerts()) == 1
    [row] = await app.outbox(inc.id)
    assert (row.state, row.attempts, row.provider_id) == (OutboxState.SENT, 3, inc.id)
    deliveries = [m for m in await app.messages(inc.id) if m.startswith("page")]
    assert deliveries == [
        "page to pagerduty:core via pagerduty retry (attempt 1): "
        "PagerDuty answered HTTP 500: Internal Server Error: try again later",
        "page to pagerduty:core via pagerduty retry (attempt 2): "
        "PagerDuty answered HTTP 500: Internal Server Error: try again later",
        "page delivered to pagerduty:core via pagerduty",
    ]


async def test_429_retry_after_is_honoured(app: App) -> None:
    app.pagerduty.script_events(Scripted.rate_limited("30"))
    inc = await fire(app)
    await app.at(timedelta(0))
    await app.at(timedelta(seconds=29))
    assert len(app.pagerduty.event_requests) == 1  # not before PagerDuty's Retry-After

    await app.at(timedelta(seconds=31))
    assert [r.status for r in app.pagerduty.event_requests] == [429, 202]
    assert app.pagerduty.event_requests[0].answer_headers["Retry-After"] == "30"
    [row] = await app.outbox(inc.id)
    assert row.state == OutboxState.SENT


async def test_400_fails_visibly_and_is_not_retried(app: App) -> None:
    app.pagerduty.script_events(Scripted.invalid("'payload.source' is missing or blank"))
    inc = await fire(app)
    await app.at(timedelta(0))
    await app.at(timedelta(minutes=2))

    assert len(app.pagerduty.event_requests) == 1
    [row] = await app.outbox(inc.id)
    error = (
        "PagerDuty rejected the event (HTTP 400): Event object is invalid: "
        "'payload.source' is missing or blank"
    )
    assert (row.state, row.attempts, row.last_error) == (OutboxState.FAILED, 1, error)
    assert (
        f"page to pagerduty:core via pagerduty failed (attempt 1): {error}"
        in await app.messages(inc.id)
    )


async def test_all_alerts_resolved_sends_pagerduty_a_resolve(app: App) -> None:
    inc = await fire(app)
    await app.at(timedelta(0))
    await app.at(timedelta(minutes=1))
    await fire(app, "resolved")
    assert (await app.record(inc.id)).status == Status.RESOLVED
    await app.at(timedelta(minutes=1, seconds=1))

    assert [r.json["event_action"] for r in app.pagerduty.event_requests] == ["trigger", "resolve"]
    assert app.pagerduty.event_requests[1].json == {
        "routing_key": PD_CORE_KEY,
        "dedup_key": inc.id,
        "event_action": "resolve",
    }
    [alert] = app.pagerduty.alerts
    assert (alert.status, alert.actions) == ("resolved", ["trigger", "resolve"])
    assert app.pagerduty.dropped == []


async def test_no_secret_reaches_logs_api_responses_or_error_texts(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.pagerduty.script_events(Scripted.invalid(f"routing key {PD_CORE_KEY} is not enabled"))
    inc = await fire(app)
    await app.at(timedelta(0))  # a 400 that echoes the routing key
    pd_id = "QNOALERT1"  # the 400 opened no PagerDuty incident: the lookup answers 404
    forged = await send_webhook(
        app.client, incident_webhook("incident.acknowledged", pd_id), secrets=("not-the-secret",)
    )
    good = await send_webhook(
        app.client, incident_webhook("incident.resolved", pd_id), secrets=(PD_SECRET_B,)
    )
    assert (forged.status, good.status) == (403, 200)

    from adapters.pagerduty import OncallLookup, OncallLookupError

    section = app.rt.loaded.config.adapters.pagerduty
    assert section is not None
    # tls_ca_path is set here, not in the YAML: the loader reads any `*_file` key as a secret file.
    lookup = OncallLookup(
        section.model_copy(update={"tls_ca_path": app.pagerduty.ca_file}), app.rt.registry
    )
    app.pagerduty.api_token = "u+SomethingElseEntirely"  # PagerDuty now refuses our token
    with pytest.raises(OncallLookupError) as err:
        await lookup.oncall(schedule_id="PSCHED1")
    await lookup.close()

    texts: list[str] = [str(err.value), json.dumps(forged.body), json.dumps(good.body)]
    for path in (f"/api/v1/incidents/{inc.id}", "/api/v1/incidents", "/metrics"):
        resp = await app.client.get(path, headers=API)
        assert resp.status == 200
        texts.append(await resp.text())
    texts += [r.last_error for r in await app.outbox(inc.id)]
    texts += [str(r.__dict__) for r in caplog.records]
    texts += [r.getMessage() for r in caplog.records]

    assert "[redacted]" in "\n".join(texts)  # the 400's echoed key was seen, and hidden
    assert secrets_in(texts, SECRETS) == []


async def test_a_link_that_is_no_url_is_left_out_and_the_timeline_says_so(app: App) -> None:
    body = alertmanager()
    body["alerts"][0]["annotations"]["runbook_url"] = "ask the storage team"
    body["alerts"][0]["generatorURL"] = "/graph?g0.expr=disk"
    inc = await app.fire(body, headers=PD_AM)
    await app.at(timedelta(0))

    [req] = app.pagerduty.event_requests
    assert req.status == 202
    assert [link["text"] for link in req.json["links"]] == [f"tocsin incident #{inc.number}"]
    delivered = [m for m in await app.messages(inc.id) if m.startswith("page delivered")]
    assert delivered == [
        "page delivered to pagerduty:core via pagerduty; "
        "link 'Runbook' not sent to PagerDuty: contains whitespace or control characters; "
        "link 'Source' not sent to PagerDuty: a relative reference, not an absolute http(s) URL"
    ]


async def test_429s_without_retry_after_are_retried_to_the_deadline_and_the_page_goes(
    app: App,
) -> None:
    """PagerDuty's Events API sends no Retry-After on 429 and asks for a backoff of minutes:
    the page is still owed, so it is retried past max_attempts (6) until the deadline (15m)."""
    app.pagerduty.script_events(*[Scripted.rate_limited()] * 6)
    inc = await fire(app)
    await app.at(timedelta(0))
    await app.run_until(app.start + timedelta(minutes=15))

    assert [r.status for r in app.pagerduty.event_requests] == [429] * 6 + [202]
    # As PagerDuty's Events API: none of the 429s said when to come back.
    assert all(
        "Retry-After" not in r.answer_headers
        for r in app.pagerduty.event_requests
        if r.status == 429
    )
    [row] = [r for r in await app.outbox(inc.id) if r.channel == "pagerduty"]
    assert (row.state, row.attempts, row.provider_id) == (OutboxState.SENT, 7, inc.id)
    events = [e for e in await app.timeline(inc.id) if e.source == "pagerduty"]
    assert [e.message for e in events] == [
        f"page to pagerduty:core via pagerduty retry (attempt {n}): "
        "rate limited by PagerDuty (HTTP 429): Too many API calls at a time."
        for n in range(1, 7)
    ] + ["page delivered to pagerduty:core via pagerduty"]
    gaps = [(b.at - a.at).total_seconds() for a, b in pairwise(events)]
    assert min(gaps) >= 30  # rate_limit_backoff_initial, not the 1s of other failures
    assert events[-1].at <= row.created_at + timedelta(minutes=15)
