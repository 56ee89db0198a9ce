"""On-call lookups through python-pagerduty against the fake's TLS REST API, with the TTL cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters.config import PagerDutyConfig
from adapters.pagerduty import OncallLookup, OncallLookupError
from escalation.engine.clock import VirtualClock
from tests.fakes.pagerduty import FakePagerDuty, Scripted

T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
TOKEN = "u+Zx9fakeRestToken4y"


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakePagerDuty]:
    pd = await FakePagerDuty(tmp_path, api_token=TOKEN).start()
    pd.add_oncall(
        "alice@example.com",
        name="Alice",
        schedule_id="PSCHED1",
        escalation_policy_id="PEP1",
        level=1,
    )
    pd.add_oncall(
        "bob@example.com", name="Bob", schedule_id="PSCHED2", escalation_policy_id="PEP1", level=2
    )
    pd.add_oncall(
        "carol@example.com", name="Carol", schedule_id=None, escalation_policy_id="PEP1", level=1
    )
    yield pd
    await pd.close()


class Env:
    def __init__(self, fake: FakePagerDuty) -> None:
        self.fake = fake
        self.registry = CollectorRegistry()
        self.clock = VirtualClock(T0)
        self.lookups: list[OncallLookup] = []

    def lookup(self, **overrides: Any) -> OncallLookup:
        kw = {k: overrides.pop(k) for k in ("max_429_retries", "retry_delay") if k in overrides}
        fields: dict[str, Any] = {
            "api_url": self.fake.https_url,
            "api_token": TOKEN,
            "tls_ca_path": self.fake.ca_file,
            "oncall_cache_ttl": 60,
            "timeout": 5,
        } | overrides
        lk = OncallLookup(
            PagerDutyConfig.model_validate(fields),
            self.registry,
            clock=self.clock,
            retry_delay=kw.get("retry_delay", 0.01),
            max_429_retries=kw.get("max_429_retries", 2),
        )
        self.lookups.append(lk)
        return lk

    def metric(self, name: str) -> float:
        value = self.registry.get_sample_value(name)
        return 0.0 if value is None else value


@pytest.fixture
async def env(fake: FakePagerDuty) -> AsyncIterator[Env]:
    e = Env(fake)
    yield e
    for lk in e.lookups:
        await lk.close()


async def test_schedule_lookup_sends_the_documented_request(env: Env, fake: FakePagerDuty) -> None:
    emails = await env.lookup().oncall(schedule_id="PSCHED1")

    assert emails == ["alice@example.com"]
    [req] = fake.requests
    assert (req.method, req.path, req.status, req.secure) == ("GET", "/oncalls", 200, True)
    assert sorted(req.query) == sorted(
        [
            ("include[]", "users"),
            ("schedule_ids[]", "PSCHED1"),
            ("limit", "100"),
            ("offset", "0"),
            ("total", "false"),
        ]
    )
    assert req.headers["Authorization"] == f"Token token={TOKEN}"
    assert req.headers["Accept"] == "application/vnd.pagerduty+json;version=2"


async def test_escalation_policy_lookup_returns_its_first_level(env: Env) -> None:
    assert await env.lookup().oncall(escalation_policy_id="PEP1") == [
        "alice@example.com",
        "carol@example.com",
    ]


async def test_ttl_cache_counts_hits_and_misses(env: Env, fake: FakePagerDuty) -> None:
    lk = env.lookup()
    assert await lk.oncall(schedule_id="PSCHED1") == ["alice@example.com"]
    assert await lk.oncall(schedule_id="PSCHED1") == ["alice@example.com"]
    assert len(fake.requests) == 1
    assert env.metric("tocsin_pagerduty_oncall_cache_hits_total") == 1
    assert env.metric("tocsin_pagerduty_oncall_cache_misses_total") == 1

    await lk.oncall(schedule_id="PSCHED2")  # another key: its own miss
    assert env.metric("tocsin_pagerduty_oncall_cache_misses_total") == 2

    env.clock.set(T0 + timedelta(seconds=59))
    await lk.oncall(schedule_id="PSCHED1")
    assert len(fake.requests) == 2
    env.clock.set(T0 + timedelta(seconds=61))  # past oncall_cache_ttl: ask PagerDuty again
    await lk.oncall(schedule_id="PSCHED1")
    assert len(fake.requests) == 3
    assert env.metric("tocsin_pagerduty_oncall_cache_hits_total") == 2
    assert env.metric("tocsin_pagerduty_oncall_cache_misses_total") == 3


async def test_concurrent_lookups_of_one_key_share_one_request(
    env: Env, fake: FakePagerDuty
) -> None:
    fake.script_rest(Scripted.slow(0.3))
    lk = env.lookup()
    results = await asyncio.gather(*(lk.oncall(schedule_id="PSCHED1") for _ in range(5)))

    assert results == [["alice@example.com"]] * 5
    assert len(fake.requests) == 1
    assert env.metric("tocsin_pagerduty_oncall_cache_misses_total") == 1
    assert env.metric("tocsin_pagerduty_oncall_cache_hits_total") == 4


async def test_a_second_lookup_on_the_same_registry_shares_the_counters(env: Env) -> None:
    await env.lookup().oncall(schedule_id="PSCHED1")
    await env.lookup().oncall(schedule_id="PSCHED1")  # a reload: new lookup, empty cache
    assert env.metric("tocsin_pagerduty_oncall_cache_misses_total") == 2


async def test_pagination_follows_more(env: Env, fake: FakePagerDuty) -> None:
    for i in range(130):
        fake.add_oncall(f"user{i:03d}@example.com", schedule_id="PBIG", escalation_policy_id="PEP9")
    emails = await env.lookup().oncall(schedule_id="PBIG")

    assert emails == [f"user{i:03d}@example.com" for i in range(130)]
    assert [dict(r.query)["offset"] for r in fake.requests] == ["0", "100"]


async def test_wrong_token_is_an_error_without_the_token_and_is_not_cached(
    env: Env, fake: FakePagerDuty
) -> None:
    lk = env.lookup(api_token="u+WRONGfakeToken0000")
    with pytest.raises(OncallLookupError) as err:
        await lk.oncall(schedule_id="PSCHED1")
    assert str(err.value) == "PagerDuty GET /oncalls failed: HTTP 401"
    assert "u+WRONG" not in str(err.value) and TOKEN not in str(err.value)
    assert fake.requests[0].status == 401
    with pytest.raises(OncallLookupError):
        await lk.oncall(schedule_id="PSCHED1")
    assert len(fake.requests) == 2
    assert env.metric("tocsin_pagerduty_oncall_errors_total") == 2
    assert env.metric("tocsin_pagerduty_oncall_cache_hits_total") == 0


async def test_429_retries_are_bounded(env: Env, fake: FakePagerDuty) -> None:
    fake.script_rest(
        *[Scripted(429, {"error": {"message": "Rate Limit Exceeded", "code": 2020}})] * 6
    )
    with pytest.raises(OncallLookupError) as err:
        await env.lookup(max_429_retries=2).oncall(schedule_id="PSCHED1")
    assert str(err.value) == "PagerDuty GET /oncalls failed: HTTP 429"
    assert [r.status for r in fake.requests] == [429, 429, 429]


async def test_a_429_then_success_answers(env: Env, fake: FakePagerDuty) -> None:
    fake.script_rest(Scripted(429))
    assert await env.lookup().oncall(schedule_id="PSCHED1") == ["alice@example.com"]
    assert [r.status for r in fake.requests] == [429, 200]


async def test_a_429_waits_for_ratelimit_reset(env: Env, fake: FakePagerDuty) -> None:
    fake.script_rest(Scripted.rest_rate_limited(reset=0))
    assert await env.lookup().oncall(schedule_id="PSCHED1") == ["alice@example.com"]
    assert [r.status for r in fake.requests] == [429, 200]


async def test_a_ratelimit_reset_past_the_budget_is_not_waited_for(
    env: Env, fake: FakePagerDuty
) -> None:
    # timeout 5 s, 2 retries: a call may take 15 s; PagerDuty asks for an hour.
    fake.script_rest(Scripted.rest_rate_limited(reset=3600))
    with pytest.raises(OncallLookupError) as err:
        await env.lookup().oncall(schedule_id="PSCHED1")
    assert str(err.value) == "PagerDuty GET /oncalls failed: HTTP 429"
    assert [r.status for r in fake.requests] == [429]


async def test_tls_without_the_test_ca_fails(env: Env, fake: FakePagerDuty) -> None:
    with pytest.raises(OncallLookupError) as err:
        await env.lookup(tls_ca_path=None).oncall(schedule_id="PSCHED1")
    assert str(err.value) == "PagerDuty GET /oncalls failed (Error)"
    assert fake.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"api_token": None}, "adapters.pagerduty.api_token is needed for on-call lookups"),
        (
            {"api_url": "http://127.0.0.1:1"},
            "adapters.pagerduty.api_url must use https:// (PagerDuty's REST API)",
        ),
    ],
)
def test_construction_problems_are_value_errors(fields: dict[str, Any], message: str) -> None:
    cfg = PagerDutyConfig.model_validate({"api_token": TOKEN} | fields)
    with pytest.raises(ValueError) as err:
        OncallLookup(cfg, CollectorRegistry())
    assert str(err.value) == message


async def test_a_lookup_needs_a_schedule_or_a_policy(env: Env) -> None:
    with pytest.raises(ValueError):
        await env.lookup().oncall()
