"""PagerDuty is down for minutes: pages queue, fallbacks run, everything arrives when it is back.

The whole app runs in-process on a virtual clock (``tests/driver``) with the
``pagerduty`` adapter pointed at the fake PagerDuty through a fault: an HTTP gate answering 503,
or a TCP proxy that was cut (connection refused). The policy pages ``pagerduty:core`` at once,
Alice five minutes later (her channel is ``pagerduty``, her ``fallback`` is ``[pagerduty, log]``)
and Bob (``log``) at seven minutes.

With the breaker on (five failures open it for a minute), PagerDuty down for twelve minutes:
- the service pages wait in the outbox (``tocsin_outbox_depth{channel="pagerduty"}`` counts
  them), retried at the spacing the dispatch policy sets (exponential, jittered, capped);
- Alice's PagerDuty page fails over to ``log`` as soon as the breaker is open; Bob is paged on
  time; an incident resolved during the outage never reaches PagerDuty at all;
- when PagerDuty returns, every pending page is delivered, exactly one trigger per dedup_key,
  and the depth gauge reads 0.

With the breaker out of the way, past the channel's deadline: the service page fails for good,
visibly (timeline, ``tocsin_notifications_total{outcome="failed"}``), Alice's page falls back
when its deadline runs out, and nothing is sent late when PagerDuty returns.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.driver.app import READ, App
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp
from tests.fakes.pagerduty import FakePagerDuty
from tests.reliability.conftest import metric_value
from tests.reliability.faultkit import HttpGate, TcpProxy

pytestmark = pytest.mark.usefixtures("strict_logs")

M = timedelta(minutes=1)
KEY = "d0wn5tr3am0ut4g3000000000000core"
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 60.0
EPS = 1e-5  # stored instants are whole microseconds

PEOPLE = """\
  alice: {name: Alice, channels: [pagerduty], fallback: [pagerduty, log]}
  bob: {name: Bob, channels: [log]}
  carol: {name: Carol, channels: [log]}
  dave: {name: Dave, channels: [log]}
  erin: {name: Erin, channels: [log]}
"""
RULES = """\
  - name: everything
    match: 'alertname=~".+"'
    policy: pd-outage
"""
POLICIES = """\
  pd-outage:
    reminders: false
    steps:
      - {name: service, after: 0, notify: ["pagerduty:core"]}
      - {name: primary, after: 5m, notify: ["person:alice"]}
      - {name: lead, after: 7m, notify: ["person:bob"]}
  pd-together:
    reminders: false
    steps:
      - {name: everyone, after: 0, notify: ["pagerduty:core", "person:alice"]}
"""


def adapters(url: str, *, breaker_failures: int, deadline: str) -> str:
    """The ``adapters:`` section: PagerDuty at ``url``, the dispatch policy under test."""
    return f"""\
adapters:
  pagerduty:
    events_url: "{url}"
    allow_insecure_events_url: true  # a local fake (behind a gate) over plain http
    services: {{core: "{KEY}"}}
    default_service: core
    timeout: 2s
  dispatch:
    max_attempts: 100
    backoff_initial: {BACKOFF_INITIAL:g}s
    backoff_max: {BACKOFF_MAX:g}s
    breaker_failures: {breaker_failures}
    breaker_reset: 1m
    deadline: {{pagerduty: {deadline}, log: 1m}}
"""


@dataclass
class Downstream:
    """The fake PagerDuty behind a fault that ``down()`` switches on and ``up()`` off."""

    fake: FakePagerDuty
    url: str
    kind: str
    gate: HttpGate | None = None
    proxy: TcpProxy | None = None

    async def down(self) -> None:
        if self.gate is not None:
            self.gate.down = True
        else:
            assert self.proxy is not None
            await self.proxy.cut()

    async def up(self) -> None:
        if self.gate is not None:
            self.gate.down = False
        else:
            assert self.proxy is not None
            await self.proxy.restore()


@pytest.fixture(params=["503", "refused"])
async def downstream(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Downstream]:
    fake = await FakePagerDuty(tmp_path).start()
    if request.param == "503":
        gate = await HttpGate(fake.http_url).start()
        ds = Downstream(fake, gate.url, "503", gate=gate)
    else:
        port = int(fake.http_url.rsplit(":", 1)[1])
        proxy = await TcpProxy("127.0.0.1", port).start()
        ds = Downstream(fake, proxy.url, "refused", proxy=proxy)
    yield ds
    if ds.gate is not None:
        await ds.gate.close()
    if ds.proxy is not None:
        await ds.proxy.close()
    await fake.close()


def firing(name: str, **kw: Any) -> dict[str, Any]:
    return notification([alert(name, **kw)], group_key=f'{{}}:{{alertname="{name}"}}')


async def depth(app: App) -> dict[str, float | None]:
    r = await app.client.get("/metrics")
    text = await r.text()
    return {
        c: metric_value(text, "tocsin_outbox_depth", {"channel": c}) for c in ("pagerduty", "log")
    }


async def notifications(app: App) -> dict[tuple[str, str], float | None]:
    r = await app.client.get("/metrics")
    text = await r.text()
    out = {}
    for channel in ("pagerduty", "log"):
        for outcome in ("sent", "retry", "failed"):
            out[(channel, outcome)] = metric_value(
                text, "tocsin_notifications_total", {"channel": channel, "outcome": outcome}
            )
    return out


def secs(t: str) -> float:
    return (datetime.fromisoformat(t) - T0).total_seconds()


def attempts(inc: dict[str, Any], row_id: str) -> list[tuple[float, int, str]]:
    """(seconds after T0, attempt, outcome) of every delivery attempt of one outbox row."""
    return [
        (secs(e["at"]), e["data"]["attempt"], e["data"]["outcome"])
        for e in inc["timeline"]
        if e["kind"] == "delivery" and e["data"]["outbox"] == row_id and "attempt" in e["data"]
    ]


def holds(inc: dict[str, Any], row_id: str) -> list[tuple[float, float]]:
    """(seconds after T0, held until) of every time the row was held without an attempt."""
    return [
        (secs(e["at"]), secs(e["data"]["until"]))
        for e in inc["timeline"]
        if e["kind"] == "delivery"
        and e["data"]["outbox"] == row_id
        and e["data"]["outcome"] == "held"
    ]


def assert_spaced_by_policy(inc: dict[str, Any], row_id: str) -> list[tuple[float, int, str]]:
    """Attempt k+1 comes initial·2^(k-1) (+ up to ``initial`` of jitter, capped) after attempt
    k — or later, only when the open breaker held the row, and then exactly when the hold ends.
    Returns the attempts."""
    tries = attempts(inc, row_id)
    held = holds(inc, row_id)
    assert [n for _, n, _ in tries] == list(range(1, len(tries) + 1))
    for (t1, k, _), (t2, _, _) in itertools.pairwise(tries):
        base = BACKOFF_INITIAL * 2 ** (k - 1)
        low, high = min(base, BACKOFF_MAX), min(base + BACKOFF_INITIAL, BACKOFF_MAX)
        assert t2 - t1 >= low - EPS, (k, t2 - t1, tries)
        if t2 - t1 > high + EPS:
            between = [until for at, until in held if t1 < at < t2]
            assert between and abs(between[-1] - t2) < EPS, (k, t2 - t1, tries, held)
    return tries


async def test_pagerduty_down_for_minutes_queues_falls_back_and_delivers_once_back(
    make_team_app: MakeTeamApp, downstream: Downstream
) -> None:
    ds = downstream
    app = await make_team_app(
        people=PEOPLE,
        rules=RULES,
        policies=POLICIES,
        extra=adapters(ds.url, breaker_failures=5, deadline="20m"),
    )
    await ds.down()
    for name in ("ApiDown", "DbDown", "CacheDown"):
        await app.post(firing(name))
    [inc3, inc2, inc1] = [i["id"] for i in await app.incidents()]  # newest first
    await app.run_until(T0 + 3 * M)
    await app.post(firing("CacheDown", status="resolved", ends=T0 + 3 * M))
    await app.run_until(T0 + 6 * M)

    # Queued: the two live incidents' service pages wait; Alice has fallen back to log.
    assert await depth(app) == {"pagerduty": 2.0, "log": 0.0}
    for inc_id in (inc1, inc2):
        inc = await app.incident(inc_id)
        rows = {(n["tier"], n["person"], n["channel"]): n for n in inc["notifications"]}
        assert sorted(rows) == [
            (0, "pagerduty:core", "pagerduty"),
            (1, "alice", "log"),
            (1, "alice", "pagerduty"),
        ]
        assert rows[(0, "pagerduty:core", "pagerduty")]["state"] == "pending"
        pd_alice = rows[(1, "alice", "pagerduty")]
        assert pd_alice["state"] == "failed"
        assert pd_alice["last_error"] == "circuit breaker open for pagerduty"
        assert pd_alice["attempts"] in (1, 2)  # 2 if the first try met a half-open breaker
        assert rows[(1, "alice", "log")]["state"] == "sent"
        fallbacks = [e for e in inc["timeline"] if e["kind"] == "fallback"]
        assert [(e["message"], e["data"]["outbox"]) for e in fallbacks] == [
            ("pagerduty to alice failed; falling back to log", pd_alice["id"])
        ]
        assert 5 * 60 <= secs(fallbacks[0]["at"]) <= 5 * 60 + 20
    resolved = await app.incident(inc3)
    assert resolved["status"] == "resolved"
    assert [(n["person"], n["state"]) for n in resolved["notifications"]] == [
        ("pagerduty:core", "cancelled")
    ]

    await app.run_until(T0 + 12 * M)
    assert await depth(app) == {"pagerduty": 2.0, "log": 0.0}
    assert ds.fake.requests == []  # nothing got through
    if ds.gate is not None:
        assert ds.gate.answered_503 > 0

    await ds.up()
    await app.run_until(T0 + 16 * M)

    # Back: every pending page delivered, one trigger per dedup_key, the queue empty.
    assert await depth(app) == {"pagerduty": 0.0, "log": 0.0}
    events = ds.fake.event_requests
    assert sorted(
        (r.status, r.json["event_action"], r.json["dedup_key"]) for r in events
    ) == sorted([(202, "trigger", inc1), (202, "trigger", inc2)])
    assert sorted((a.dedup_key, a.status, tuple(a.actions)) for a in ds.fake.alerts) == sorted(
        [(inc1, "triggered", ("trigger",)), (inc2, "triggered", ("trigger",))]
    )
    for inc_id in (inc1, inc2):
        inc = await app.incident(inc_id)
        rows = {(n["tier"], n["person"], n["channel"]): n for n in inc["notifications"]}
        assert {k: v["state"] for k, v in rows.items()} == {
            (0, "pagerduty:core", "pagerduty"): "sent",
            (1, "alice", "pagerduty"): "failed",
            (1, "alice", "log"): "sent",
            (2, "bob", "log"): "sent",
        }
        service = rows[(0, "pagerduty:core", "pagerduty")]
        tries = assert_spaced_by_policy(inc, service["id"])
        assert tries[-1][2] == "sent" and {o for _, _, o in tries[:-1]} == {"retry"}
        assert tries[-1][0] >= 12 * 60  # not before PagerDuty was back
        assert service["attempts"] == len(tries) >= 2  # failed while down, then sent
        bob = rows[(2, "bob", "log")]
        assert (secs(bob["created_at"]), secs(bob["sent_at"])) == (7 * 60, 7 * 60)
    # Every attempt is counted: the metric agrees with the timelines, retry for retry.
    retries = 0
    for inc_id in (inc1, inc2, inc3):
        inc = await app.incident(inc_id)
        for n in inc["notifications"]:
            if n["channel"] == "pagerduty":
                retries += sum(1 for *_, o in attempts(inc, n["id"]) if o == "retry")
    counts = await notifications(app)
    assert counts == {
        ("pagerduty", "sent"): 2,
        ("pagerduty", "retry"): retries,
        ("pagerduty", "failed"): 2,  # Alice's, fallen back
        ("log", "sent"): 4,  # Alice's two fallbacks, Bob's two pages
        ("log", "retry"): None,
        ("log", "failed"): None,
    }
    assert retries >= 6


async def test_pagerduty_down_past_the_deadline_fails_visibly_and_falls_back(
    make_team_app: MakeTeamApp, tmp_path: Path
) -> None:
    fake = await FakePagerDuty(tmp_path).start()
    gate = await HttpGate(fake.http_url).start()
    try:
        rules = RULES.replace("pd-outage", "pd-together")
        app = await make_team_app(
            people=PEOPLE,
            rules=rules,
            policies=POLICIES,
            extra=adapters(gate.url, breaker_failures=1000, deadline="4m"),
        )
        gate.down = True
        await app.post(firing("ApiDown"))
        [summary] = await app.incidents()
        await app.run_until(T0 + 3 * M)
        assert await depth(app) == {"pagerduty": 2.0, "log": 0.0}
        await app.run_until(T0 + 10 * M)
        # Both PagerDuty rows ran out of time while it was down: nothing waits for it any more.
        assert await depth(app) == {"pagerduty": 0.0, "log": 0.0}
        gate.down = False
        await app.run_until(T0 + 15 * M)
    finally:
        await gate.close()
        await fake.close()

    assert fake.requests == []  # a row past its deadline is not sent late
    assert gate.answered_503 > 0
    inc = await app.incident(summary["id"])
    rows = {(n["person"], n["channel"]): n for n in inc["notifications"]}
    assert {k: v["state"] for k, v in rows.items()} == {
        ("pagerduty:core", "pagerduty"): "failed",
        ("alice", "pagerduty"): "failed",
        ("alice", "log"): "sent",
    }
    for key in (("pagerduty:core", "pagerduty"), ("alice", "pagerduty")):
        tries = assert_spaced_by_policy(inc, rows[key]["id"])
        assert tries[-1][2] == "failed" and {o for _, _, o in tries[:-1]} == {"retry"}
        assert holds(inc, rows[key]["id"]) == []  # the breaker never opened
        # It gave up at the last attempt whose successor would have been past the deadline.
        last, k = tries[-1][0], tries[-1][1]
        longest = min(BACKOFF_INITIAL * 2 ** (k - 1) + BACKOFF_INITIAL, BACKOFF_MAX)
        assert last <= 4 * 60 < last + longest + EPS
        assert rows[key]["last_error"].startswith("PagerDuty answered HTTP 503")
    [fallback] = [e for e in inc["timeline"] if e["kind"] == "fallback"]
    assert fallback["data"]["outbox"] == rows[("alice", "pagerduty")]["id"]
    assert secs(fallback["at"]) == attempts(inc, rows[("alice", "pagerduty")]["id"])[-1][0]
    assert secs(rows[("alice", "log")]["sent_at"]) == secs(fallback["at"])
    counts = await notifications(app)
    assert (counts[("pagerduty", "failed")], counts[("log", "sent")]) == (2, 1)
    assert counts[("pagerduty", "sent")] is None
    status, body = await app.api("GET", "/api/v1/incidents?limit=10", headers=READ)
    assert status == 200 and [i["status"] for i in body["incidents"]] == ["triggered"]
