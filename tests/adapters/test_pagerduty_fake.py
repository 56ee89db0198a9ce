"""The fake PagerDuty behaves as PagerDuty documents and as real deliveries show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.pagerduty import FakePagerDuty, Scripted
from tests.fakes.pagerduty_rest import rest_violations
from tests.fakes.pagerduty_webhooks import captured_delivery

TOKEN = "u+fakeRestApiToken00"
KEY = "R0UT1NGk3yC0R3s3rv1c3xxxxxxxxx01"
AUTH = {"Authorization": f"Token token={TOKEN}"}


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakePagerDuty]:
    pd = await FakePagerDuty(tmp_path, api_token=TOKEN).start()
    yield pd
    await pd.close()


async def _trigger(session: aiohttp.ClientSession, fake: FakePagerDuty, dedup: str) -> None:
    event = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {"summary": f"{dedup} down", "source": "db-1", "severity": "critical"},
    }
    async with session.post(f"{fake.http_url}/v2/enqueue", json=event) as resp:
        assert resp.status == 202


async def _get(
    session: aiohttp.ClientSession, fake: FakePagerDuty, path: str, **params: str
) -> tuple[int, dict[str, str], Any]:
    ssl = fake.client_ssl_context()
    async with session.get(f"{fake.https_url}{path}", params=params, headers=AUTH, ssl=ssl) as r:
        return r.status, dict(r.headers), await r.json()


async def test_a_delivery_is_the_captured_shape_with_a_null_incident_key(
    fake: FakePagerDuty,
) -> None:
    async with aiohttp.ClientSession() as s:
        await _trigger(s, fake, "inc-1")
    doc = fake.delivery("incident.acknowledged", "inc-1", occurred_at="2026-11-22T13:01:00Z")

    captured = captured_delivery()
    assert doc.keys() == captured.keys()
    assert doc["event"].keys() == captured["event"].keys()
    assert doc["event"]["data"].keys() == captured["event"]["data"].keys()
    data = doc["event"]["data"]
    assert data["incident_key"] is None
    assert (data["id"], data["status"]) == (fake.incident_of("inc-1"), "acknowledged")
    assert data["self"].endswith("/incidents/" + data["id"])


async def test_each_new_alert_opens_its_own_incident_listed_over_rest(
    fake: FakePagerDuty,
) -> None:
    async with aiohttp.ClientSession() as s:
        await _trigger(s, fake, "inc-1")
        await _trigger(s, fake, "inc-1")  # deduplicated into the open alert
        await _trigger(s, fake, "inc-2")
        assert fake.incident_of("inc-1") != fake.incident_of("inc-2")
        status, _, body = await _get(s, fake, f"/incidents/{fake.incident_of('inc-1')}/alerts")
        missing, _, _ = await _get(s, fake, "/incidents/QNOTOURS/alerts")

    assert status == 200
    assert [a["alert_key"] for a in body["alerts"]] == ["inc-1"]
    assert (body["limit"], body["offset"], body["more"]) == (25, 0, False)
    assert missing == 404


async def test_alerts_are_paginated_with_limit_offset_more(fake: FakePagerDuty) -> None:
    async with aiohttp.ClientSession() as s:
        await _trigger(s, fake, "inc-1")
        pd_id = fake.incident_of("inc-1")
        for _ in range(2):  # PagerDuty can merge alerts into one incident
            await _trigger(s, fake, f"merged-{_}")
            fake.alerts[-1].incident_id = pd_id
        first = (await _get(s, fake, f"/incidents/{pd_id}/alerts", limit="2"))[2]
        second = (await _get(s, fake, f"/incidents/{pd_id}/alerts", limit="2", offset="2"))[2]

    assert ([a["alert_key"] for a in first["alerts"]], first["more"]) == (
        ["inc-1", "merged-0"],
        True,
    )
    assert ([a["alert_key"] for a in second["alerts"]], second["more"]) == (["merged-1"], False)


async def test_a_scripted_rest_429_carries_the_ratelimit_headers(fake: FakePagerDuty) -> None:
    fake.script_rest(Scripted.rest_rate_limited(reset=7))
    async with aiohttp.ClientSession() as s:
        status, headers, body = await _get(s, fake, "/oncalls")

    assert status == 429
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == ("960", "0")
    assert headers["ratelimit-reset"] == "7"
    assert body == {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
    assert rest_violations("/oncalls", 429, body) == []


async def test_oncalls_honour_since_and_until(fake: FakePagerDuty) -> None:
    t0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    fake.add_oncall("day@example.com", schedule_id="PS1", start=t0, end=t0 + timedelta(hours=8))
    fake.add_oncall(
        "night@example.com",
        schedule_id="PS1",
        start=t0 + timedelta(hours=8),
        end=t0 + timedelta(hours=24),
    )

    async def who(**window: datetime) -> list[str]:
        params = {k: v.isoformat() for k, v in window.items()}
        async with aiohttp.ClientSession() as s:
            _, _, body = await _get(s, fake, "/oncalls", **params)
        return [o["user"]["summary"] for o in body["oncalls"]]

    assert await who(since=t0 + timedelta(hours=1)) == ["day"]
    assert await who(since=t0 + timedelta(hours=9)) == ["night"]
    assert await who(since=t0, until=t0 + timedelta(hours=12)) == ["day", "night"]
    assert await who(since=t0 + timedelta(days=2)) == []


def test_the_rest_document_refuses_a_wrong_alert_list() -> None:
    wrong = {"alerts": [{"id": "P1", "type": "incident", "status": "acknowledged"}], "more": "no"}
    errors = rest_violations("/incidents/{id}/alerts", 200, wrong)
    assert any("more" in e for e in errors)
    assert any("alerts.0.type" in e for e in errors)
    assert any("alerts.0.status" in e for e in errors)
    assert rest_violations("/incidents/{id}/alerts", 200, {"more": False}) != []
