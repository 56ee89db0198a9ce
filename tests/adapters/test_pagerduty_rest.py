"""The shared REST client's rate-limit reading, and the incident-alerts lookup's cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.config import PagerDutyConfig
from adapters.pagerduty.alerts import AlertLookupError, IncidentAlerts
from adapters.pagerduty.rest import reset_seconds
from escalation.engine.clock import VirtualClock
from tests.fakes.pagerduty import FakePagerDuty, Scripted

TOKEN = "u+fakeRestApiToken00"
T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"ratelimit-reset": "20"}, 20.0),
        ({"ratelimit-reset": "0"}, 0.0),
        ({"ratelimit-reset": "-3"}, 0.0),
        ({"ratelimit-reset": "soon"}, None),
        ({"ratelimit-reset": "nan"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_ratelimit_reset_is_read_as_seconds(
    headers: dict[str, str] | None, seconds: float | None
) -> None:
    assert reset_seconds(headers) == seconds


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakePagerDuty]:
    pd = await FakePagerDuty(tmp_path, api_token=TOKEN).start()
    yield pd
    await pd.close()


def lookup(fake: FakePagerDuty, clock: VirtualClock) -> IncidentAlerts:
    cfg = PagerDutyConfig.model_validate(
        {"api_url": fake.https_url, "api_token": TOKEN, "tls_ca_path": fake.ca_file, "timeout": 5}
    )
    return IncidentAlerts(cfg, clock=clock, retry_delay=0.01)


async def test_answers_are_cached_for_a_few_minutes_and_failures_are_not(
    fake: FakePagerDuty,
) -> None:
    clock = VirtualClock(T0)
    alerts = lookup(fake, clock)
    try:
        fake.script_rest(Scripted.error(502))
        with pytest.raises(AlertLookupError, match="HTTP 502"):
            await alerts.alert_keys("QNOSUCH")
        assert await alerts.alert_keys("QNOSUCH") == ()  # 404: none, so not ours
        assert await alerts.alert_keys("QNOSUCH") == ()
        assert [r.status for r in fake.rest_requests] == [502, 404]

        clock.set(T0 + timedelta(minutes=6))
        assert await alerts.alert_keys("QNOSUCH") == ()
        assert len(fake.rest_requests) == 3
        assert await alerts.alert_keys("../oncalls") == ()  # not a PagerDuty id: never asked
        assert len(fake.rest_requests) == 3
    finally:
        await alerts.close()
