"""Schedules backed by PagerDuty: who is on call comes from its REST API, matched by email."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from config.errors import ConfigError
from config.load import load_config
from escalation.incidents.model import OutboxRecord, TimelineEvent
from escalation.store.base import IncidentFilter
from router.receiver import parse_notification
from router.runtime import Runtime
from tests.driver.app import MakeApp
from tests.driver.config import write_config
from tests.fakes.pagerduty import FakePagerDuty

T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
TOKEN = "u+Zx9fakeRestToken4y"
PAYLOAD = b"""{"version":"4","receiver":"tocsin","status":"firing","groupKey":"{}:{alertname=\\"Down\\"}",
"alerts":[{"status":"firing","labels":{"alertname":"Down","severity":"critical"},
"startsAt":"2026-11-22T12:59:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"0000000000000001"}]}"""


def _config(
    tmp: Path, fake: FakePagerDuty, *, token: bool = True, schedule: str = "PSCHED1"
) -> Path:
    api = {"api_url": fake.https_url, "tls_ca_path": str(fake.ca_file), "oncall_cache_ttl": "60s"}
    if token:
        api["api_token"] = TOKEN
    return write_config(
        tmp,
        {"server": None, "matrix": None, "auth": {"receiver": {"bearer_tokens": ["x"]}}},
        {"rules": {"files": ["rules/*.yaml"]}},
        f"""\
people:
  alice: {{email: Alice@Example.com, channels: [log]}}
  bob: {{email: bob@example.com, channels: [log]}}
schedules:
  primary: {{pagerduty: {{schedule_id: {schedule}}}}}
roles: {{oncall: ["schedule:primary"], lead: [bob], manager: [bob], vp: [bob]}}
""",
        {"adapters": {"pagerduty": api}},
        rules="rules:\n  - {name: trust, match: 'severity=~\".+\"', severity_from: [severity]}\n",
    )


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakePagerDuty]:
    pd = await FakePagerDuty(tmp_path, api_token=TOKEN).start()
    pd.add_oncall("alice@example.com", schedule_id="PSCHED1", escalation_policy_id="PEP1")
    pd.add_oncall("stranger@example.com", schedule_id="PSCHED2", escalation_policy_id="PEP2")
    yield pd
    await pd.close()


async def _page(
    make_app: MakeApp, tmp_path: Path, fake: FakePagerDuty, schedule: str
) -> tuple[Runtime, list[OutboxRecord], list[TimelineEvent]]:
    path = _config(tmp_path, fake, schedule=schedule)
    app = await make_app(path, start=T0, registry=CollectorRegistry(), fakes=(fake,))
    rt = app.rt
    await rt.pipeline.submit(parse_notification(PAYLOAD))
    await rt.engine.tick()
    (inc,) = await rt.store.list_incidents(IncidentFilter())
    async with rt.store.transaction() as tx:
        rows = await tx.outbox_of(inc.id)
    return rt, rows, await rt.store.timeline(inc.id)


async def test_the_pagerduty_on_call_is_paged(
    make_app: MakeApp, tmp_path: Path, fake: FakePagerDuty
) -> None:
    rt, rows, _ = await _page(make_app, tmp_path, fake, "PSCHED1")
    assert [(r.tier, r.target, r.person, r.channel) for r in rows] == [
        (0, "role:oncall", "alice", "log")
    ]
    oncall_requests = [r for r in fake.rest_requests if r.path == "/oncalls"]
    assert len(oncall_requests) == 1
    assert ("schedule_ids[]", "PSCHED1") in oncall_requests[0].query
    # Answered from the TTL cache now: no second request, a hit counted.
    await rt.oncall.refresh()
    assert len([r for r in fake.rest_requests if r.path == "/oncalls"]) == 1
    assert rt.registry.get_sample_value("tocsin_pagerduty_oncall_cache_hits_total") == 1.0


async def test_an_on_call_who_is_not_a_person_is_a_visible_skip(
    make_app: MakeApp, tmp_path: Path, fake: FakePagerDuty
) -> None:
    _, rows, timeline = await _page(make_app, tmp_path, fake, "PSCHED2")
    assert rows == []
    skips = [e.message for e in timeline if e.kind == "skip"]
    assert skips == [
        "tier 0 (on-call): role:oncall: PagerDuty's on-call stranger@example.com"
        " is not a person in `people:`"
    ]


async def test_a_pagerduty_schedule_needs_the_api_token(
    tmp_path: Path, fake: FakePagerDuty
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, fake, token=False))
    assert [p.path for p in caught.value.problems] == ["schedules.primary.pagerduty"]
    assert "needs adapters.pagerduty.api_token" in caught.value.problems[0].message
