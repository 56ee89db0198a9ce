"""High availability: several replicas on one PostgreSQL; SQLite refuses a second one.

- The wake-up channel itself (``escalation.store.wakeup``): a store transaction that schedules work
  notifies at commit only; listeners ignore other schemas; a lost LISTEN connection comes back.
- A replica that claimed a step and stalled past its lease, while another replica took the step
  over and fired it, fires nothing when it resumes (SQLite and PostgreSQL).
- An idle replica whose poll is far away fires a step another replica scheduled (and then died)
  on time: the notification woke it, not the poll.
- Three ``tocsin serve`` processes, a storm of escalating incidents posted round-robin, one
  process SIGKILLed mid-escalation: every step fires exactly once, within the lease plus a
  margin of its due time, and every page is delivered.
- Three processes starting together on an empty schema migrate it exactly once.
- Limits hold for the cluster: one person's ``person_rate``; a channel's circuit breaker (opened
  by failures one replica saw, one half-open probe at a time); one bundling window per person.
- A second process on the same SQLite file is refused with the single-replica message.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from escalation.engine.loop import Engine
from escalation.incidents.model import Changes, IncidentRecord, Status, StepRecord
from escalation.store.migrations import MIGRATIONS
from escalation.store.postgres import PostgresStore
from escalation.store.sqlite import SINGLE_REPLICA_MESSAGE
from escalation.store.wakeup import WAKEUP_CHANNEL, NullWakeup, PgWakeupListener, listener_for
from rules.alerts import Notification
from tests.driver.app import MakeApp
from tests.driver.payloads import am_body
from tests.driver.process import (
    ServeProc,
    http_status,
    post_alert,
    serve_config,
    start_serve,
    wait_for,
)
from tests.driver.threaded import ThreadedPagerDuty
from tests.fakes.pagerduty import Scripted
from tests.reliability.conftest import (
    ladder_config,
    metric_value,
    postgres_backend,
    sqlite_backend,
    unfinished,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- the wake-up channel ------------------------------------------------------------------------


class Wakes:
    """Counts on_wake calls and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def next(self, within: float = 5.0) -> None:
        """Wait (at most ``within`` seconds) for a wake-up not yet consumed."""
        async with asyncio.timeout(within):
            await self.event.wait()
        self.event.clear()

    async def none_within(self, seconds: float) -> bool:
        """True if no wake-up arrives within ``seconds`` (a short negative check)."""
        before = self.count
        await asyncio.sleep(seconds)
        return self.count == before


@pytest.fixture
async def pg_store(pg_schema: tuple[str, str]) -> AsyncIterator[PostgresStore]:
    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema, pool_min=1, pool_max=3)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def listening(pg_store: PostgresStore) -> AsyncIterator[tuple[PgWakeupListener, Wakes]]:
    wakes = Wakes()
    listener = listener_for(pg_store, wakes)
    assert isinstance(listener, PgWakeupListener)
    await listener.start()
    assert listener.connected  # start() returns once the first attempt has ended
    await wakes.next()  # the catch-up wake-up every (re)connect makes
    assert wakes.count == 1
    yield listener, wakes
    await listener.stop()
    assert not listener.connected


def _incident(iid: str) -> IncidentRecord:
    return IncidentRecord(
        id=iid,
        number=0,
        key=f"key-{iid}",
        status=Status.TRIGGERED,
        severity="P1",
        title=iid,
        team=None,
        policy_name="ladder",
        policy={"steps": [{"after": "0s", "notify": ["person:p0"]}]},
        level={},
        opened_at=T0,
        updated_at=T0,
    )


def _step(iid: str, tier: int) -> StepRecord:
    return StepRecord(
        id=f"{iid}:0:page:0:{tier}",
        incident_id=iid,
        kind="page",
        epoch=0,
        round=0,
        tier=tier,
        due_at=T0 + timedelta(minutes=tier),
    )


async def test_scheduling_notifies_at_commit_and_never_for_a_rollback(
    pg_store: PostgresStore, listening: tuple[PgWakeupListener, Wakes]
) -> None:
    listener, wakes = listening
    # An incident alone schedules nothing: no wake-up.
    async with pg_store.transaction() as tx:
        await tx.apply(Changes(new_incidents=[_incident("inc-1")]))
    assert await wakes.none_within(0.3)

    async with pg_store.transaction() as tx:
        await tx.apply(Changes(new_steps=[_step("inc-1", 0)]))
        assert await wakes.none_within(0.3), "notified before the commit"
    await wakes.next()
    assert (wakes.count, listener.received) == (2, 1)

    with pytest.raises(RuntimeError):
        async with pg_store.transaction() as tx:
            await tx.apply(Changes(new_steps=[_step("inc-1", 1)]))
            raise RuntimeError("roll back")
    assert await wakes.none_within(0.3)
    assert [s.id for s in await _pending(pg_store, "inc-1")] == ["inc-1:0:page:0:0"]

    async with pg_store.transaction() as tx:
        await tx.apply(Changes(step_reschedules=[("inc-1:0:page:0:0", T0, "moved")]))
    await wakes.next()
    assert (wakes.count, listener.received) == (3, 2)


async def _pending(store: PostgresStore, iid: str) -> list[StepRecord]:
    async with store.transaction() as tx:
        return await tx.steps_of(iid, pending_only=True)


async def test_listener_ignores_other_schemas(
    pg_schema: tuple[str, str], listening: tuple[PgWakeupListener, Wakes]
) -> None:
    dsn, schema = pg_schema
    listener, wakes = listening
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", WAKEUP_CHANNEL, f"{schema}_other")
        await conn.execute("SELECT pg_notify($1, $2)", WAKEUP_CHANNEL, "public")
        assert await wakes.none_within(0.3)
        await conn.execute("SELECT pg_notify($1, $2)", WAKEUP_CHANNEL, schema)
        await wakes.next()
    finally:
        await conn.close()
    assert (wakes.count, listener.received) == (2, 1)


async def test_listener_reconnects_after_losing_its_connection(
    pg_schema: tuple[str, str],
    pg_store: PostgresStore,
    listening: tuple[PgWakeupListener, Wakes],
) -> None:
    dsn, _ = pg_schema
    listener, wakes = listening
    first_pid = listener.backend_pid
    assert first_pid is not None
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", first_pid) is True
    finally:
        await conn.close()
    # The reconnect wakes the engine (notifications sent meanwhile are lost).
    await wakes.next(within=10)
    assert listener.connects == 2 and listener.connected
    assert listener.backend_pid not in (None, first_pid)
    async with pg_store.transaction() as tx:
        await tx.apply(Changes(new_incidents=[_incident("inc-2")], new_steps=[_step("inc-2", 0)]))
    await wakes.next()
    assert (wakes.count, listener.received) == (3, 1)


async def test_listener_survives_an_unreachable_server_and_sqlite_has_none(tmp_path: Path) -> None:
    from escalation.store.sqlite import SqliteStore

    assert isinstance(listener_for(SqliteStore(tmp_path / "t.db"), lambda: None), NullWakeup)
    wakes = Wakes()
    # Nothing listens on port 1: every attempt fails fast; the listener keeps trying quietly.
    listener = PgWakeupListener(
        "postgresql://postgres@127.0.0.1:1/test", wakes, connect_timeout=1, retry_min=0.05
    )
    await listener.start()
    assert not listener.connected
    await asyncio.sleep(0.3)
    assert (listener.connects, wakes.count, listener.connected) == (0, 0, False)
    await listener.stop()


# -- a replica that claimed a step and stalled past its lease ------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The ``store:`` section for each backend."""
    if request.param == "sqlite":
        return sqlite_backend(tmp_path)[0]
    dsn, schema = request.getfixturevalue("pg_schema")
    return postgres_backend(dsn, schema)[0]


async def test_a_replica_whose_lease_ran_out_does_not_fire_the_step_again(
    make_app: MakeApp, tmp_path: Path, store_section: dict[str, Any]
) -> None:
    config = ladder_config(tmp_path, store_section, tiers=[("1m", ["p0", "p1"])], lease="10s")
    app = await make_app(config, start=datetime.now(UTC).replace(microsecond=0))
    rt, clock = app.rt, app.clock
    await rt.pipeline.submit(Notification.model_validate(am_body("Stalled")))
    clock.set(clock.now() + timedelta(minutes=1))
    due = clock.now()
    # A slow replica claims the due step, then stalls for longer than its lease...
    async with rt.store.transaction() as tx:
        (claimed,) = await tx.claim_due_steps(due, "slow", due + timedelta(seconds=10), 10)
    clock.set(due + timedelta(seconds=11))
    # ...so this replica takes the step over and fires it.
    await rt.engine.tick()
    inc = claimed.incident_id
    timeline = await rt.store.timeline(inc)
    assert sorted(e.data["person"] for e in timeline if e.kind == "notify") == ["p0", "p1"]
    fired = rt.registry.get_sample_value(
        "tocsin_escalation_steps_fired_total", {"tier": "0", "kind": "page"}
    )
    assert fired == 1

    # The slow replica wakes up and fires what it claimed: nothing happens.
    slow = Engine(
        rt.store, clock, lambda: rt.directory, rt.dispatcher, rt.esc_metrics, owner="slow"
    )
    clock.set(due + timedelta(seconds=12))
    await slow._fire(claimed)  # the stalled replica's next statement after its claim
    assert await rt.store.timeline(inc) == timeline
    assert (
        rt.registry.get_sample_value(
            "tocsin_escalation_steps_fired_total", {"tier": "0", "kind": "page"}
        )
        == fired
    )
    async with rt.store.transaction() as tx:
        (step,) = await tx.steps_of(inc)
    assert (step.state, step.fired_at) == ("fired", due + timedelta(seconds=11))


# -- processes on one PostgreSQL ----------------------------------------------------------------


def test_an_idle_replica_is_woken_to_fire_what_another_replica_scheduled(
    tmp_path: Path, procs: list[ServeProc], pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    store, db = postgres_backend(dsn, schema)
    # A 60 s poll: without a notification the idle replica would not look again for a minute.
    config = ladder_config(tmp_path, store, tiers=[("3s", ["p0"])], lease="2s", poll="60s")
    busy = start_serve(procs, "busy", config, tmp_path)
    idle = start_serve(procs, "idle", config, tmp_path)
    assert post_alert(busy.url, am_body("WakeMe")) == 200
    busy.kill()  # the replica that scheduled the step is gone before it comes due

    (step,) = db.steps()
    assert step["state"] == "pending"
    wait_for(
        lambda: not unfinished(db),
        timeout=max(0.0, (step["due_at"] - datetime.now(UTC)).total_seconds()) + 5,
        what="the idle replica firing the step and sending the page",
        describe=lambda: unfinished(db),
    )
    (fired,) = db.steps()
    assert fired["fired_at"] - fired["due_at"] < timedelta(seconds=2)
    assert [(r["person"], r["state"]) for r in db.outbox()] == [("p0", "sent")]
    assert idle.alive()


HA_TIERS = [("0s", ["a1", "a2"]), ("3s", ["b1", "b2"]), ("6s", ["c1", "c2"]), ("9s", ["d1", "d2"])]
STORM = 36
LEASE = timedelta(seconds=2)
MARGIN = timedelta(seconds=3)


@pytest.fixture
def ha_pagerduty(tmp_path: Path) -> Iterator[ThreadedPagerDuty]:
    pd = ThreadedPagerDuty(tmp_path)
    yield pd
    pd.close()


def storm_three_replicas(
    procs: list[ServeProc], config: Path, tmp_path: Path, name: str, count: int
) -> list[ServeProc]:
    """Start three replicas of ``config``; post ``count`` alerts (one incident each) round-robin,
    six at a time, every one accepted."""
    replicas = [start_serve(procs, f"replica-{n}", config, tmp_path, wait=False) for n in range(3)]
    for r in replicas:
        r.wait_ready()

    def post(i: int) -> int:
        return post_alert(replicas[i % 3].url, am_body(f"{name}{i:02d}"))

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(post, range(count))) == [200] * count
    return replicas


def test_three_replicas_a_storm_and_one_killed_fire_every_step_exactly_once(
    tmp_path: Path,
    procs: list[ServeProc],
    pg_schema: tuple[str, str],
    ha_pagerduty: ThreadedPagerDuty,
) -> None:
    dsn, schema = pg_schema
    store, db = postgres_backend(dsn, schema)
    pd = ha_pagerduty
    config = ladder_config(
        tmp_path, store, tiers=HA_TIERS, lease="2s", poll="1s", pagerduty_url=pd.http_url
    )
    replicas = storm_three_replicas(procs, config, tmp_path, "Storm", STORM)
    incidents = {r["id"] for r in db.incidents()}
    assert len(incidents) == STORM

    # Kill one replica while tier 1 is being fired: it may hold leases on steps and rows.
    wait_for(lambda: any(r["tier"] == 1 for r in db.outbox()), timeout=15, what="tier 1 firing")
    victim, survivors = replicas[0], replicas[1:]
    victim.kill()

    last_due = max(s["due_at"] for s in db.steps())
    wait_for(
        lambda: not unfinished(db),
        timeout=max(0.0, (last_due - datetime.now(UTC)).total_seconds()) + 15,
        what="every step fired and every page sent",
        describe=lambda: unfinished(db),
    )
    assert all(r.alive() for r in survivors)

    expected = sorted(
        (i, t, person, "log")
        for i in incidents
        for t, (_, people) in enumerate(HA_TIERS)
        for person in people
    )
    # Each step exactly once, each within the lease plus a margin of its due time.
    steps = db.steps()
    assert Counter((s["incident_id"], s["id"]) for s in steps) == Counter(
        {(i, f"{i}:0:page:0:{t}"): 1 for i in incidents for t in range(len(HA_TIERS) + 1)}
    )
    late = [
        (s["id"], s["fired_at"] - s["due_at"])
        for s in steps
        if s["fired_at"] - s["due_at"] > LEASE + MARGIN
    ]
    assert late == []
    # At the fake PagerDuty: exactly one alert per incident (dedup_key = incident id), all
    # triggered; a repeated trigger request is possible only from the killed replica
    # (at-least-once), and PagerDuty folds it into the same alert.
    snap = pd.snapshot()
    assert sorted(a.dedup_key for a in snap.alerts) == sorted(incidents)
    assert {a.status for a in snap.alerts} == {"triggered"}
    pd_rows = [r for r in db.outbox() if r["channel"] == "pagerduty"]
    assert sorted(r["incident_id"] for r in pd_rows) == sorted(incidents)
    assert {(r["kind"], r["state"]) for r in pd_rows} == {("page", "sent")}

    # One outbox row per (incident, step, person, channel), all sent.
    outbox = [r for r in db.outbox() if r["channel"] == "log"]
    assert (
        sorted((r["incident_id"], r["tier"], r["person"], r["channel"]) for r in outbox) == expected
    )
    assert (
        Counter((r["step_id"], r["person"], r["channel"]) for r in outbox).most_common(1)[0][1] == 1
    )
    assert {(r["kind"], r["state"]) for r in outbox} == {("page", "sent")}
    # One notify event per page in the timeline.
    notify = sorted(
        (e["incident_id"], e["data"]["tier"], e["data"]["person"], e["data"]["channel"])
        for e in db.timeline()
        if e["kind"] == "notify" and e["data"]["channel"] == "log"
    )
    assert notify == expected

    # Delivered: every page reached the log channel of some replica; a page went out twice
    # only if the killed replica sent it and died before recording that (at-least-once).
    def sent_by(p: ServeProc) -> Counter[tuple[str, int, str]]:
        return Counter(
            (line["incident"], line["tier"], line["person"])
            for line in p.json_lines()
            if line.get("msg") == "notification" and line.get("channel") == "log"
        )

    by_victim = sent_by(victim)
    total = by_victim + sent_by(survivors[0]) + sent_by(survivors[1])
    assert set(total) == {(i, t, person) for i, t, person, _ in expected}
    assert {k for k, n in total.items() if n > 1} <= set(by_victim)
    assert sum(by_victim.values()) > 0, "the killed replica took part before it died"


def test_three_replicas_starting_together_migrate_the_schema_once(
    tmp_path: Path, procs: list[ServeProc], pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    store, db = postgres_backend(dsn, schema)
    config = ladder_config(tmp_path, store, tiers=[("0s", ["p0"])])
    replicas = [start_serve(procs, f"replica-{n}", config, tmp_path, wait=False) for n in range(3)]
    for r in replicas:
        r.wait_ready()
    assert sorted(db.migrations()) == [m.version for m in MIGRATIONS]
    for n, r in enumerate(replicas):
        assert post_alert(r.url, am_body(f"Together{n}")) == 200
    wait_for(lambda: len(db.outbox()) == 3, timeout=10, what="each replica's incident paged")
    assert sorted(r["person"] for r in db.outbox()) == ["p0", "p0", "p0"]


RATE_STORM = 12


def test_three_replicas_honour_one_persons_rate_limit_together(
    tmp_path: Path, procs: list[ServeProc], pg_schema: tuple[str, str]
) -> None:
    """``person_rate`` is for the cluster: three replicas page one person twice an hour, not 6x."""
    dsn, schema = pg_schema
    store, db = postgres_backend(dsn, schema)
    config = serve_config(
        tmp_path,
        store,
        steps=[{"after": "0s", "notify": ["person:p0"], "via": ["log"]}],
        people=["p0"],
        dispatch={"person_rate": {"count": 2, "per": "1h"}},
    )
    replicas = storm_three_replicas(procs, config, tmp_path, "Rate", RATE_STORM)

    def sent() -> list[dict[str, Any]]:
        return [r for r in db.outbox() if r["state"] == "sent"]

    def held() -> float:
        labels = {"channel": "log", "outcome": "rate_limited"}
        return sum(
            metric_value(r.metrics(), "tocsin_notifications_total", labels) or 0 for r in replicas
        )

    # Every page either went or was held for the next hour (a held row is not tried again
    # before then, so each is counted once).
    wait_for(
        lambda: len(sent()) + held() == RATE_STORM,
        timeout=30,
        what="every page sent or held by the rate limit",
        describe=lambda: (len(sent()), held()),
    )
    assert len(sent()) == 2
    pages = [
        line
        for p in replicas
        for line in p.json_lines()
        if line.get("msg") == "notification" and line.get("person") == "p0"
    ]
    assert len(pages) == 2


BREAKER_RESET = timedelta(seconds=4)
SVC_KEY = "hafakeroutingkey0000000000000001"


def test_a_breaker_opened_on_one_replica_holds_the_others_and_one_probe_goes_at_a_time(
    tmp_path: Path,
    procs: list[ServeProc],
    pg_schema: tuple[str, str],
    ha_pagerduty: ThreadedPagerDuty,
) -> None:
    """PagerDuty fails: two failures seen by one replica open its breaker for the cluster.

    Replicas started afterwards hold their pages too; while it is open the cluster tries
    PagerDuty once per ``breaker_reset`` (one half-open probe), not once per replica; when a
    probe succeeds the breaker closes for everyone and every page goes, once.
    """
    dsn, schema = pg_schema
    store, db = postgres_backend(dsn, schema)
    pd = ha_pagerduty
    # Two failures open the breaker; the next three probes fail too; then PagerDuty is back.
    pd.thread.call(lambda: pd.fake.script_events(*[Scripted.error(503)] * 5))
    config = serve_config(
        tmp_path,
        store,
        steps=[{"after": "0s", "notify": ["pagerduty:svc"]}],
        people=["p0"],
        pagerduty={
            "events_url": pd.http_url,
            "allow_insecure_events_url": True,  # a local fake over plain http
            "services": {"svc": SVC_KEY},
        },
        dispatch={"breaker_failures": 2, "breaker_reset": "4s", "max_attempts": 100},
    )

    def attempts() -> list[datetime]:
        """When each attempt was made (the instant its replica's round began), in order."""
        return sorted(
            e["at"] for e in db.timeline() if e["kind"] == "delivery" and "attempt" in e["data"]
        )

    first = start_serve(procs, "replica-0", config, tmp_path)
    for n in range(2):
        assert post_alert(first.url, am_body(f"Opens{n}")) == 200
    wait_for(lambda: len(attempts()) == 2, timeout=15, what="two failed pages on replica-0")
    late = [start_serve(procs, f"replica-{n}", config, tmp_path) for n in (1, 2)]
    for n in range(4):
        assert post_alert(late[n % 2].url, am_body(f"Held{n}")) == 200

    wait_for(
        lambda: len(db.outbox()) == 6 and all(r["state"] == "sent" for r in db.outbox()),
        timeout=60,
        what="every page sent once PagerDuty is back",
        describe=lambda: ([(r["state"], r["attempts"]) for r in db.outbox()], attempts()),
    )
    tried = attempts()
    # Once open (at the second failure), one try per reset for the whole cluster: three failed
    # probes, then the one that closed the breaker; then everything else went.
    probes = tried[2:6]
    gaps = [b - a for a, b in zip(tried[1:5], probes, strict=True)]
    assert all(g >= BREAKER_RESET for g in gaps), gaps
    snap = pd.snapshot()
    assert len(snap.events) == len(tried) == 5 + 6  # every request was an attempt, none lost
    assert sorted(a.dedup_key for a in snap.alerts) == sorted(r["id"] for r in db.incidents())
    held = {"channel": "pagerduty", "outcome": "breaker_open"}
    assert sum(metric_value(r.metrics(), "tocsin_notifications_total", held) or 0 for r in procs)


BUNDLE_WINDOW = timedelta(seconds=3)
BUNDLE_STORM = 9


def test_three_replicas_send_one_person_one_message_per_bundling_window(
    tmp_path: Path, procs: list[ServeProc], pg_schema: tuple[str, str]
) -> None:
    """Pages to one person posted to three replicas at once: one message per window for the
    cluster (the rest wait and go together), not one per replica."""
    dsn, schema = pg_schema
    store, db = postgres_backend(dsn, schema)
    config = serve_config(
        tmp_path,
        store,
        steps=[{"after": "0s", "notify": ["person:p0"], "via": ["log"]}],
        people=["p0"],
        dispatch={"bundle_window": "3s", "bundle_channels": ["log"]},
    )
    replicas = storm_three_replicas(procs, config, tmp_path, "Bundle", BUNDLE_STORM)
    wait_for(
        lambda: [r["state"] for r in db.outbox()] == ["sent"] * BUNDLE_STORM,
        timeout=30,
        what="every page sent",
        describe=lambda: [(r["state"], r["sent_at"]) for r in db.outbox()],
    )
    # The rows of one message share its instant; messages are a window apart or more.
    messages = sorted({r["sent_at"] for r in db.outbox()})
    gaps = [b - a for a, b in pairwise(messages)]
    assert all(g >= BUNDLE_WINDOW for g in gaps), gaps
    assert 1 < len(messages) < BUNDLE_STORM
    lines = [
        line
        for p in replicas
        for line in p.json_lines()
        if line.get("msg") == "notification" and line.get("person") == "p0"
    ]
    assert len(lines) == len(messages)
    # Every page is in one message, as its head or among the pages bundled into it.
    told = [line["incident"] for line in lines]
    told += [b["incident"] for line in lines for b in line["bundled"]]
    assert sorted(told) == sorted(r["incident_id"] for r in db.outbox())


# -- SQLite -------------------------------------------------------------------------------------


def test_a_second_replica_on_sqlite_is_refused_with_a_clear_message(
    tmp_path: Path, procs: list[ServeProc]
) -> None:
    store, db = sqlite_backend(tmp_path)
    config = ladder_config(tmp_path, store, tiers=[("0s", ["p0"])])
    first = start_serve(procs, "first", config, tmp_path)
    second = start_serve(procs, "second", config, tmp_path, wait=False)
    wait_for(lambda: not second.alive(), timeout=30, what="the second replica to exit")
    assert second.p.returncode == 1
    out = second.output()
    assert SINGLE_REPLICA_MESSAGE in out
    assert f"{db.sqlite_path} is in use" in out
    assert f"held by pid {first.p.pid}" in out
    assert http_status(f"{second.url}/healthz") == 0  # it never listened
    # The first replica carries on undisturbed.
    assert http_status(f"{first.url}/readyz") == 200
    assert post_alert(first.url, am_body("StillServing")) == 200
    wait_for(
        lambda: [(r["person"], r["state"]) for r in db.outbox()] == [("p0", "sent")],
        timeout=10,
        what="the first replica paging",
    )
