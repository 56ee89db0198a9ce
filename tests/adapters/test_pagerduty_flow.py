"""The whole app with ``adapters.pagerduty`` pointed at the fake PagerDuty, on a virtual clock.

A P0 alert's policy notifies ``pagerduty:core`` first and a person five minutes later; the fake
records every event and keeps PagerDuty's alert state, and signed v3 webhooks come back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.load import load_config
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import IncidentRecord, OutboxRecord, OutboxState, Status
from escalation.store.base import IncidentFilter
from router.app import create_app
from router.runtime import Runtime
from tests.fakes.pagerduty import (
    FakePagerDuty,
    Scripted,
    incident_webhook,
    secrets_in,
    send_webhook,
)

START = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
PUBLIC = "https://tocsin.example.com"
CORE_KEY = "R0UT1NGk3yC0R3s3rv1c3xxxxxxxxx01"
SECRET_A = "whsec-current-0b4e6f1d"
SECRET_B = "whsec-previous-77c2a9e0"
API_TOKEN = "u+PdRestApiT0kenSecret"
RECEIVER_TOKEN = "am-bearer-token-1"
TOCSIN_API_TOKEN = "tocsin-api-write-token"
SECRETS = (CORE_KEY, SECRET_A, SECRET_B, API_TOKEN, RECEIVER_TOKEN, TOCSIN_API_TOKEN)
AM = {"Authorization": f"Bearer {RECEIVER_TOKEN}", "Content-Type": "application/json"}
API = {"Authorization": f"Bearer {TOCSIN_API_TOKEN}"}


def config_yaml(
    tmp_path: Path, fake: FakePagerDuty, secrets: Sequence[str] = (SECRET_A, SECRET_B)
) -> str:
    """A config paging ``pagerduty:core`` at once and Carol (log channel) after 5 minutes."""
    return f"""\
server:
  listen: "127.0.0.1:9095"
  public_url: "{PUBLIC}"
  log_format: text
auth:
  receiver:
    bearer_tokens: ["{RECEIVER_TOKEN}"]
  api_tokens:
    - {{name: ops, token: "{TOCSIN_API_TOKEN}", scope: write}}
store:
  backend: sqlite
  path: {json.dumps(str(tmp_path / "t.db"))}
matrix:
  preset: default
rules:
  files: []
  default:
    severity: P0
    policy: pd-first
people:
  carol: {{name: Carol Sato, email: carol@example.com, channels: [log]}}
policies:
  pd-first:
    steps:
      - {{name: pagerduty, after: 0, notify: ["pagerduty:core"]}}
      - {{name: lead, after: 5m, notify: ["person:carol"], via: [log]}}
adapters:
  pagerduty:
    events_url: "{fake.http_url}"
    api_url: "{fake.https_url}"
    api_token: "{API_TOKEN}"
    services:
      core: "{CORE_KEY}"
    webhook_secrets: {json.dumps(list(secrets))}
    timeout: 2s
  dispatch:
    backoff_initial: 1s
    backoff_max: 2s
"""


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


@dataclass
class App:
    """A started Runtime serving its app, the fake PagerDuty and the virtual clock."""

    rt: Runtime
    client: TestClient
    fake: FakePagerDuty
    clock: VirtualClock

    async def alert(self, status: str = "firing") -> IncidentRecord:
        resp = await self.client.post("/api/v1/alertmanager", json=alertmanager(status), headers=AM)
        assert resp.status == 200, await resp.text()
        [inc] = await self.rt.store.list_incidents(IncidentFilter())
        return inc

    async def at(self, delta: timedelta) -> None:
        """Move the clock to START + delta and let the engine do what is due."""
        self.clock.set(START + delta)
        await self.rt.engine.tick()

    async def incident(self, inc_id: str) -> IncidentRecord:
        inc = await self.rt.store.get_incident(inc_id)
        assert inc is not None
        return inc

    async def outbox(self, inc_id: str) -> list[OutboxRecord]:
        async with self.rt.store.transaction() as tx:
            return await tx.outbox_of(inc_id)

    async def timeline(self, inc_id: str) -> list[str]:
        return [e.message for e in await self.rt.store.timeline(inc_id)]


MakeApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[MakeApp]:
    started: list[tuple[Runtime, FakePagerDuty]] = []

    async def make(secrets: Sequence[str] = (SECRET_A, SECRET_B)) -> App:
        fake = await FakePagerDuty(tmp_path, api_token=API_TOKEN).start()
        path = tmp_path / "tocsin.yaml"
        path.write_text(config_yaml(tmp_path, fake, secrets))
        clock = VirtualClock(START)
        rt = Runtime(load_config(path, env={}), clock=clock)
        await rt.start(run_engine=False)
        started.append((rt, fake))
        client = await aiohttp_client(create_app(rt))
        return App(rt, client, fake, clock)

    yield make
    for rt, fake in started:
        await rt.stop()
        await fake.close()


@pytest.fixture
async def app(make_app: MakeApp) -> App:
    return await make_app()


async def test_p0_alert_triggers_one_pagerduty_alert_keyed_by_the_incident(app: App) -> None:
    inc = await app.alert()
    await app.at(timedelta(0))

    [req] = app.fake.event_requests
    assert req.status == 202
    body = req.json
    assert (body["routing_key"], body["dedup_key"], body["event_action"]) == (
        CORE_KEY,
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
    [alert] = app.fake.open_alerts()
    assert (alert.routing_key, alert.dedup_key) == (CORE_KEY, inc.id)
    [row] = await app.outbox(inc.id)
    assert (row.state, row.provider_id, row.attempts) == (OutboxState.SENT, inc.id, 1)


async def test_pagerduty_ack_webhook_stops_the_escalation(app: App) -> None:
    inc = await app.alert()
    await app.at(timedelta(0))

    reply = await send_webhook(
        app.client,
        incident_webhook("incident.acknowledged", inc.id, agent="Jane Responder"),
        secrets=(SECRET_A,),
    )
    assert (reply.status, reply.body["status"]) == (200, "applied")
    acked = await app.incident(inc.id)
    assert acked.status == Status.ACKNOWLEDGED
    assert "acknowledged by Jane Responder" in await app.timeline(inc.id)

    await app.at(timedelta(minutes=6))  # the lead tier was due at 5m
    rows = await app.outbox(inc.id)
    assert [r.person for r in rows] == ["pagerduty:core"]
    assert len(app.fake.event_requests) == 1


async def test_500_500_202_ends_with_one_alert_and_one_sent_delivery(app: App) -> None:
    app.fake.script_events(Scripted.error(500), Scripted.error(500))
    inc = await app.alert()
    await app.at(timedelta(0))
    [row] = await app.outbox(inc.id)
    assert (row.state, row.attempts) == (OutboxState.PENDING, 1)

    await app.at(timedelta(seconds=5))
    await app.at(timedelta(seconds=10))

    assert [r.status for r in app.fake.event_requests] == [500, 500, 202]
    assert [r.json["dedup_key"] for r in app.fake.event_requests] == [inc.id] * 3
    assert len(app.fake.alerts) == 1 and len(app.fake.open_alerts()) == 1
    [row] = await app.outbox(inc.id)
    assert (row.state, row.attempts, row.provider_id) == (OutboxState.SENT, 3, inc.id)
    deliveries = [m for m in await app.timeline(inc.id) if m.startswith("page")]
    assert deliveries == [
        "page to pagerduty:core via pagerduty retry (attempt 1): "
        "PagerDuty answered HTTP 500: Internal Server Error: try again later",
        "page to pagerduty:core via pagerduty retry (attempt 2): "
        "PagerDuty answered HTTP 500: Internal Server Error: try again later",
        "page delivered to pagerduty:core via pagerduty",
    ]


async def test_429_retry_after_is_honoured(app: App) -> None:
    app.fake.script_events(Scripted.rate_limited("30"))
    inc = await app.alert()
    await app.at(timedelta(0))
    await app.at(timedelta(seconds=29))
    assert len(app.fake.event_requests) == 1  # not before PagerDuty's Retry-After

    await app.at(timedelta(seconds=31))
    assert [r.status for r in app.fake.event_requests] == [429, 202]
    [row] = await app.outbox(inc.id)
    assert row.state == OutboxState.SENT


async def test_400_fails_visibly_and_is_not_retried(app: App) -> None:
    app.fake.script_events(Scripted.invalid("'payload.source' is missing or blank"))
    inc = await app.alert()
    await app.at(timedelta(0))
    await app.at(timedelta(minutes=2))

    assert len(app.fake.event_requests) == 1
    [row] = await app.outbox(inc.id)
    error = (
        "PagerDuty rejected the event (HTTP 400): Event object is invalid: "
        "'payload.source' is missing or blank"
    )
    assert (row.state, row.attempts, row.last_error) == (OutboxState.FAILED, 1, error)
    assert (
        f"page to pagerduty:core via pagerduty failed (attempt 1): {error}"
        in await app.timeline(inc.id)
    )


async def test_all_alerts_resolved_sends_pagerduty_a_resolve(app: App) -> None:
    inc = await app.alert()
    await app.at(timedelta(0))
    await app.at(timedelta(minutes=1))
    await app.alert("resolved")
    assert (await app.incident(inc.id)).status == Status.RESOLVED
    await app.at(timedelta(minutes=1, seconds=1))

    assert [r.json["event_action"] for r in app.fake.event_requests] == ["trigger", "resolve"]
    assert app.fake.event_requests[1].json == {
        "routing_key": CORE_KEY,
        "dedup_key": inc.id,
        "event_action": "resolve",
    }
    [alert] = app.fake.alerts
    assert (alert.status, alert.actions) == ("resolved", ["trigger", "resolve"])
    assert app.fake.dropped == []


async def test_no_secret_reaches_logs_api_responses_or_error_texts(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.fake.script_events(Scripted.invalid(f"routing key {CORE_KEY} is not enabled"))
    inc = await app.alert()
    await app.at(timedelta(0))  # a 400 that echoes the routing key
    forged = await send_webhook(
        app.client, incident_webhook("incident.acknowledged", inc.id), secrets=("not-the-secret",)
    )
    good = await send_webhook(
        app.client, incident_webhook("incident.resolved", inc.id), secrets=(SECRET_B,)
    )
    assert (forged.status, good.status) == (403, 200)

    from adapters.pagerduty import OncallLookup, OncallLookupError

    section = app.rt.loaded.config.adapters.pagerduty
    assert section is not None
    # tls_ca_path is set here, not in the YAML: the loader reads any `*_file` key as a secret file.
    lookup = OncallLookup(
        section.model_copy(update={"tls_ca_path": app.fake.ca_file}), app.rt.registry
    )
    app.fake.api_token = "u+SomethingElseEntirely"  # PagerDuty now refuses our token
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
