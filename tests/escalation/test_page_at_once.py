"""A new incident's due first tier fires inside the ingest's transaction, its rows leased.

Run on both backends: on PostgreSQL a second replica meets the leased rows in the database.
The delivery port here is implemented by the test (the engine's ``OutboxDelivery``): it records
what ``prepare`` saw inside the ingest's transaction and what ``finish`` got after the commit;
``finish`` can be held back, standing in for a process that dies between commit and send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from escalation.engine.clock import VirtualClock
from escalation.engine.immediate import PageAtOnce
from escalation.engine.loop import Engine
from escalation.engine.metrics import EscalationMetrics
from escalation.engine.oncall import live_directory
from escalation.engine.service import EscalationService
from escalation.incidents.actions import Action
from escalation.incidents.directory import Directory
from escalation.incidents.ingest import Classified
from escalation.incidents.model import OutboxRecord, OutboxState, StepKind, StepState
from escalation.oncall.calendars import QuietHours
from escalation.oncall.people import Person
from escalation.store.base import DeliveryState, Store, Tx
from escalation.store.postgres import PostgresStore
from escalation.store.sqlite import SqliteStore
from rules.alerts import Alert, Notification
from rules.classifier import Classification
from rules.matrix import load_preset
from tests.escalation.store.conftest import fresh_schema

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
MATRIX = load_preset("default")
DIRECTORY = Directory(
    matrix=MATRIX,
    people={
        "alice": Person(name="Alice"),
        # Quiet from 09:00 to 11:00: a P1 page to bob waits until then.
        "bob": Person(name="Bob", quiet_hours=QuietHours(hours="09:00-11:00")),
    },
    roles={"oncall": ["alice", "bob"], "lead": ["alice"], "manager": ["alice"]},
)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "tocsin.db")
        await s.open()
        yield s
        await s.close()
        return
    async with fresh_schema() as (dsn, schema):
        s = PostgresStore(dsn, schema=schema, pool_min=1, pool_max=5)
        await s.open()
        yield s
        await s.close()


class Port:
    """The delivery port: records ``prepare`` and ``finish``; ``finish`` waits for ``go``."""

    def __init__(self) -> None:
        self.prepared: list[list[OutboxRecord]] = []
        self.finished: list[list[OutboxRecord]] = []
        self.go = asyncio.Event()
        self.go.set()

    async def prepare(
        self, tx: Tx, rows: Sequence[OutboxRecord], state: DeliveryState | None = None
    ) -> list[OutboxRecord]:
        self.prepared.append(list(rows))
        return list(rows)

    async def finish(self, prepared: list[OutboxRecord]) -> None:
        await self.go.wait()
        self.finished.append(prepared)


def _service(
    store: Store, clock: VirtualClock, port: Port | None, woken: list[datetime] | None = None
) -> EscalationService:
    metrics = EscalationMetrics(CollectorRegistry())
    fast = None
    if port is not None:
        fast = PageAtOnce(
            port,
            metrics,
            lambda tx, now: live_directory(tx, DIRECTORY, now),
            owner=lambda: "replica-a",
            lease=lambda: LEASE,
        )
    wake = (lambda due: None) if woken is None else woken.append
    return EscalationService(store, clock, lambda: DIRECTORY, metrics, wake=wake, page_at_once=fast)


def _engine(store: Store, clock: VirtualClock, owner: str, port: Port) -> Engine:
    metrics = EscalationMetrics(CollectorRegistry())
    return Engine(store, clock, lambda: DIRECTORY, port, metrics, owner=owner, lease=LEASE)


def _notification(group: str = "{}:{}") -> tuple[Notification, list[Classified]]:
    alert = Alert(
        status="firing",
        labels={"alertname": "DiskFull"},
        starts_at=T0,
        fingerprint=f"fp-{group}",
    )
    n = Notification(
        version="4", receiver="web.hook", status="firing", alerts=[alert], groupKey=group
    )
    verdict = Classification(
        severity="P1",
        severity_name=MATRIX.levels["P1"].name,
        policy=None,
        team=None,
        incident_key=None,
        title="DiskFull",
        rule="disk",
        matched=("disk",),
        reasons=(),
    )
    return n, [Classified(alert, verdict)]


async def _ingest(svc: EscalationService) -> str:
    [outcome] = await svc.ingest(*_notification())
    return outcome.incident_id


async def _rows(store: Store, incident_id: str) -> dict[str, OutboxRecord]:
    async with store.transaction() as tx:
        return {r.person: r for r in await tx.outbox_of(incident_id)}


async def test_the_due_tier_fires_at_ingest_and_its_rows_go_to_delivery_after_commit(
    store: Store,
) -> None:
    clock, port = VirtualClock(T0), Port()
    svc = _service(store, clock, port)
    inc = await _ingest(svc)

    async with store.transaction() as tx:
        steps = [s for s in await tx.steps_of(inc) if s.kind == StepKind.PAGE]
    assert [(s.tier, s.state) for s in steps] == [
        (0, StepState.FIRED),
        (1, StepState.PENDING),
        (2, StepState.PENDING),
    ]
    assert steps[0].fired_at == T0
    rows = await _rows(store, inc)
    assert set(rows) == {"alice", "bob"}
    # prepare ran inside the ingest's transaction on the row due now, as the store holds it
    # (bob is in quiet hours: his row waits for the engine, unleased).
    assert [[r.id for r in p] for p in port.prepared] == [[rows["alice"].id]]
    await svc.settle()
    assert [[r.id for r in p] for p in port.finished] == [[rows["alice"].id]]
    timeline = [e.kind.value for e in await store.timeline(inc)]
    assert "notify" in timeline and "late" not in timeline


async def test_leased_rows_wait_for_their_lease_on_every_replica_then_are_sent(
    store: Store,
) -> None:
    """A process that dies after the commit, before the send: its lease runs out and the
    engine (here another replica's) sends the row. Nothing is lost, nothing goes twice early."""
    clock, port = VirtualClock(T0), Port()
    port.go.clear()  # the send never happens in this process
    svc = _service(store, clock, port)
    inc = await _ingest(svc)
    alice = (await _rows(store, inc))["alice"]

    other = Port()
    replica_b = _engine(store, clock, "replica-b", other)
    clock.set(T0 + LEASE - timedelta(seconds=1))
    await replica_b.tick()
    assert other.prepared == []  # alice's row is leased; bob's is still held for quiet hours
    clock.set(T0 + LEASE)
    await replica_b.tick()
    assert [[r.id for r in p] for p in other.prepared] == [[alice.id]]
    assert other.finished == other.prepared
    port.go.set()
    await svc.settle()


async def test_without_a_delivery_port_the_engine_fires_the_tier(store: Store) -> None:
    clock, port = VirtualClock(T0), Port()
    svc = _service(store, clock, None)
    inc = await _ingest(svc)
    async with store.transaction() as tx:
        [first] = [s for s in await tx.steps_of(inc) if s.kind == StepKind.PAGE and s.tier == 0]
    assert first.state == StepState.PENDING
    assert await _rows(store, inc) == {}

    await _engine(store, clock, "replica-a", port).tick()
    assert [[r.person for r in p] for p in port.prepared] == [["alice"]]


async def test_an_ack_after_the_commit_cancels_the_leased_rows_not_yet_sent(
    store: Store,
) -> None:
    """An ack between the commit and the send cancels every unsent page: the rows are pending
    (leased) until delivery records them, so the ack's cancellation reaches them."""
    clock, port = VirtualClock(T0), Port()
    port.go.clear()
    svc = _service(store, clock, port)
    inc = await _ingest(svc)
    await svc.act(inc, Action.ACK, actor="alice", source="api")
    rows = await _rows(store, inc)
    assert {p: r.state for p, r in rows.items()} == {
        "alice": OutboxState.CANCELLED,
        "bob": OutboxState.CANCELLED,
    }
    port.go.set()
    await svc.settle()


async def test_the_engine_is_woken_for_what_is_left_to_it_not_for_what_was_sent(
    store: Store,
) -> None:
    clock = VirtualClock(T0)
    with_port: list[datetime] = []
    await _ingest(_service(store, clock, Port(), with_port))
    # bob's page waits for his quiet hours to end at 11:00; the lead's tier is due at 15m.
    assert with_port == [T0 + timedelta(minutes=15)]

    without: list[datetime] = []
    other = _notification('{}:{alertname="Other"}')
    await _service(store, clock, None, without).ingest(*other)
    assert without == [T0]  # no port: the first tier is the engine's, due now

    later = VirtualClock(T0)
    engine = _engine(store, later, "replica-a", Port())
    asleep = asyncio.create_task(engine._sleep(T0 + timedelta(seconds=5)))
    await asyncio.sleep(0)
    engine.wake(T0 + timedelta(minutes=15))  # due after the engine looks again anyway
    await asyncio.sleep(0)
    assert not asleep.done()
    engine.wake(T0)  # due before: the engine looks now
    await asyncio.wait_for(asleep, timeout=10)


async def test_a_wake_during_a_tick_sets_when_the_next_sleep_ends_not_another_tick_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingests committing while the engine ticks used to make it tick again at once, and a
    steady stream of them kept it ticking back to back; now the sleep after the tick ends by
    the earliest time they named."""
    clock = VirtualClock(T0)
    engine = _engine(store, clock, "replica-a", Port())
    ticks: list[datetime] = []
    real_tick = engine.tick

    async def tick() -> datetime | None:
        ticks.append(clock.now())
        nxt = await real_tick()
        if len(ticks) == 1:  # ingests commit while the first tick runs
            engine.wake(T0 + timedelta(minutes=15))
            engine.wake(T0 + timedelta(seconds=2))
            engine.wake(T0 + timedelta(minutes=1))
        return nxt

    async def _settle() -> None:  # the store's trips run on threads: give them real time
        for _ in range(10):
            await asyncio.sleep(0.02)

    monkeypatch.setattr(engine, "tick", tick)
    running = asyncio.create_task(engine.run())
    await _settle()
    assert ticks == [T0]  # asleep, not ticking again
    await clock.advance(timedelta(seconds=1))
    await _settle()
    assert ticks == [T0]
    await clock.advance(timedelta(seconds=1))
    await _settle()
    assert ticks == [T0, T0 + timedelta(seconds=2)]  # the earliest named, before the poll's 5 s
    await clock.advance(timedelta(seconds=5))
    await _settle()
    assert ticks == [T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=7)]  # then polls
    engine.stop()
    await asyncio.wait_for(running, timeout=10)


async def test_with_enough_sends_in_flight_an_ingest_leaves_its_tier_to_the_engine(
    store: Store,
) -> None:
    """In a storm one delivery per ingest would queue every request behind the store; past
    ``max_in_flight`` unfinished sends, the engine's batches take the new tiers."""
    clock, port = VirtualClock(T0), Port()
    port.go.clear()  # the sends handed over stay in flight
    svc = _service(store, clock, port)
    fast = svc.page_at_once
    assert fast is not None
    incidents = []
    for i in range(fast.max_in_flight + 1):
        [outcome] = await svc.ingest(*_notification(f"{{}}:{{g{i}}}"))
        incidents.append(outcome.incident_id)
    for inc in incidents[:-1]:
        async with store.transaction() as tx:
            [first] = [s for s in await tx.steps_of(inc) if s.kind == StepKind.PAGE and s.tier == 0]
        assert first.state == StepState.FIRED
    async with store.transaction() as tx:
        last = incidents[-1]
        [first] = [s for s in await tx.steps_of(last) if s.kind == StepKind.PAGE and s.tier == 0]
    assert first.state == StepState.PENDING  # left to the engine
    assert len(port.prepared) == fast.max_in_flight
    port.go.set()
    await svc.settle()
    await _engine(store, clock, "replica-a", port).tick()
    assert [r.person for r in port.prepared[-1]] == ["alice"]
