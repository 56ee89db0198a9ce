"""The outbox dispatcher against a real SQLite store, a virtual clock and recording notifiers.

Notifiers here are tocsin's own ``Notifier`` protocol implemented by the test: each records
what it was asked to send and answers from a script (ok by default). Rows are claimed from the
store exactly as the engine does (``claim_outbox`` then ``dispatch``), so every assertion is on
what the store holds afterwards: state, attempts, not_before, provider id, timeline, new rows.
Jitter is pinned to zero so every retry delay is exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tenacity.wait
from prometheus_client import CollectorRegistry

from adapters.config import DispatchConfig
from adapters.delivery.dispatcher import OutboxDispatcher, Prepared
from adapters.delivery.limits import StoreRateLimits
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.delivery.policy import ConfiguredPolicy, SimplePolicy, store_policy
from adapters.delivery.stages import Bundle, Chain, OneAtATime, Round
from escalation.engine.clock import VirtualClock
from escalation.engine.loop import Engine
from escalation.engine.metrics import EscalationMetrics
from escalation.incidents.directory import Directory
from escalation.incidents.model import Changes, IncidentRecord, OutboxRecord, OutboxState, Status
from escalation.oncall.people import Person
from escalation.store.base import DeliveryState, RateSlot, Tx
from escalation.store.sqlite import SqliteStore
from rules.matrix import load_preset
from tests.driver.records import T0, incident, page

S = timedelta(seconds=1)
M = timedelta(minutes=1)

OK = DeliveryResult(ok=True)
RETRY = DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error="HTTP 503")
PERMANENT = DeliveryResult(ok=False, error="Twilio 21211: invalid 'To' number")
UNKNOWN = DeliveryResult(
    ok=False,
    reason=FailureReason.UNKNOWN_OUTCOME,
    error="timed out after the call was placed",
    provider_id="CA1",
)

PEOPLE = {
    # alice: phone first, then SMS, then email when a channel fails her.
    "alice": Person(
        name="Alice", phone="+15550001", channels=["phone"], fallback=["phone", "sms", "email"]
    ),
    # bob, dave: no fallback at all.
    "bob": Person(name="Bob", channels=["sms"]),
    "dave": Person(name="Dave", channels=["phone"]),
}

Script = DeliveryResult | Exception | Callable[[Delivery], Awaitable[DeliveryResult]]


@pytest.fixture(autouse=True)
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry delays are exactly initial * 2**(n-1)."""
    monkeypatch.setattr(tenacity.wait.random, "uniform", lambda a, b: a)


class Recorder:
    """A channel's notifier: records every delivery, answers from its script (else ok)."""

    def __init__(self, channel: str, clock: VirtualClock) -> None:
        self.channel = channel
        self.clock = clock
        self.calls: list[tuple[datetime, str, tuple[str, ...]]] = []
        self.deliveries: list[Delivery] = []
        self.script: deque[Script] = deque()

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        self.calls.append((self.clock.now(), delivery.row.id, tuple(r.id for r in delivery.bundle)))
        self.deliveries.append(delivery)
        answer = self.script.popleft() if self.script else OK
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return await answer(delivery)
        if answer.ok and not answer.provider_id:
            return replace(answer, provider_id=f"{self.channel}-{len(self.calls)}")
        return answer


@dataclass
class World:
    store: SqliteStore
    clock: VirtualClock
    registry: CollectorRegistry
    notifiers: dict[str, Recorder]
    dispatcher: OutboxDispatcher
    config: dict[str, Any] = field(default_factory=dict)

    def configure(self, **kw: Any) -> None:
        """Replace the delivery policy as a reload does on SQLite: fresh in-memory counters,
        breakers and bundling windows (on PostgreSQL they are the store's: test_shared_breakers)."""
        self.config = {**self.config, **kw}
        policy = store_policy(DispatchConfig.model_validate(self.config), self.store, shared=False)
        self.dispatcher.policy = lambda: policy

    async def add(self, *records: IncidentRecord | OutboxRecord) -> None:
        ch = Changes()
        for r in records:
            (ch.new_incidents if isinstance(r, IncidentRecord) else ch.new_outbox).append(r)
        async with self.store.transaction() as tx:
            await tx.apply(ch)

    async def claim(self) -> list[OutboxRecord]:
        now = self.clock.now()
        async with self.store.transaction() as tx:
            return await tx.claim_outbox(now, "test", now + 30 * S, 200)

    async def tick(self, at: datetime | None = None) -> list[str]:
        """Claim what is due (at ``at``) and dispatch it, as Engine.tick does; the claimed ids."""
        if at is not None:
            self.clock.set(at)
        rows = await self.claim()
        if rows:
            await self.dispatcher.dispatch(rows)
        return [r.id for r in rows]

    async def rows(self, incident_id: str = "inc1") -> dict[str, OutboxRecord]:
        async with self.store.transaction() as tx:
            return {r.id: r for r in await tx.outbox_of(incident_id)}

    async def row(self, row_id: str) -> OutboxRecord:
        return (await self.rows(row_id.split(":", 1)[0]))[row_id]

    async def timeline(self, incident_id: str = "inc1") -> list[tuple[float, str, str]]:
        return [
            ((e.at - T0).total_seconds(), e.kind, e.message)
            for e in await self.store.timeline(incident_id)
        ]

    def count(self, channel: str, outcome: str) -> float:
        v = self.registry.get_sample_value(
            "tocsin_notifications_total", {"channel": channel, "outcome": outcome}
        )
        return v or 0.0

    async def ack(self, incident_id: str) -> None:
        """What an acknowledgement writes: the incident acked, its pending pages cancelled."""
        inc = await self.store.get_incident(incident_id)
        assert inc is not None
        now = self.clock.now()
        new = replace(inc, status=Status.ACKNOWLEDGED, acknowledged_at=now, updated_at=now)
        async with self.store.transaction() as tx:
            await tx.apply(
                Changes(updated_incidents=[new], cancel_outbox_of=[(incident_id, ("page",))])
            )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    clock = VirtualClock(T0)
    registry = CollectorRegistry()
    notifiers = {c: Recorder(c, clock) for c in ("phone", "sms", "email", "webhook", "pagerduty")}
    directory = Directory(matrix=load_preset("default"), people=PEOPLE)
    dispatcher = OutboxDispatcher(
        store,
        clock,
        lambda: notifiers,
        lambda: directory,
        EscalationMetrics(registry),
        person_details=lambda p: {"name": PEOPLE[p].name} if p in PEOPLE else {},
    )
    w = World(store, clock, registry, notifiers, dispatcher)
    w.configure(
        backoff_initial="2s",
        backoff_max="1m",
        max_attempts=4,
        bundle_window="30s",
        bundle_channels=["sms"],
        person_rate={"count": 100, "per": "10m"},
        channel_rate={},
        breaker_failures=5,
        breaker_reset="1m",
    )
    yield w
    await store.close()


ALICE_PHONE = "inc1:0:page:0:0:alice:phone"
BOB_SMS = "inc1:0:page:0:0:bob:sms"


# -- one attempt, three outcomes ----------------------------------------------------------------


async def test_ok_is_sent_once_with_a_delivered_event(world: World) -> None:
    await world.add(incident(), page("bob", "sms"))
    assert await world.tick() == [BOB_SMS]
    assert world.notifiers["sms"].calls == [(T0, BOB_SMS, ())]
    d = world.notifiers["sms"].deliveries[0]
    assert (d.incident.id, d.person, d.bundle) == ("inc1", {"name": "Bob"}, ())
    r = await world.row(BOB_SMS)
    assert (r.state, r.attempts, r.provider_id, r.sent_at, r.last_error) == (
        OutboxState.SENT,
        1,
        "sms-1",
        T0,
        "",
    )
    assert await world.timeline() == [(0.0, "delivery", "page delivered to bob via sms")]
    assert world.count("sms", "sent") == 1
    # Sent rows are never claimed again.
    assert await world.tick(T0 + 10 * M) == []
    assert len(world.notifiers["sms"].calls) == 1


async def test_retryable_failure_is_retried_after_the_policy_delay(world: World) -> None:
    await world.add(incident(), page("bob", "sms"))
    world.notifiers["sms"].script.extend([RETRY, RETRY])
    await world.tick()
    r = await world.row(BOB_SMS)
    assert (r.state, r.attempts, r.not_before, r.last_error) == (
        OutboxState.PENDING,
        1,
        T0 + 2 * S,
        "HTTP 503",
    )
    # One attempt per claim: nothing before not_before.
    assert await world.tick(T0 + 1 * S) == []
    assert await world.tick(T0 + 2 * S) == [BOB_SMS]
    r = await world.row(BOB_SMS)
    assert (r.state, r.attempts, r.not_before) == (OutboxState.PENDING, 2, T0 + 6 * S)
    assert await world.tick(T0 + 6 * S) == [BOB_SMS]
    r = await world.row(BOB_SMS)
    assert (r.state, r.attempts, r.provider_id, r.sent_at) == (
        OutboxState.SENT,
        3,
        "sms-3",
        T0 + 6 * S,
    )
    assert [c[0] for c in world.notifiers["sms"].calls] == [T0, T0 + 2 * S, T0 + 6 * S]
    assert await world.timeline() == [
        (0.0, "delivery", "page to bob via sms retry (attempt 1): HTTP 503"),
        (2.0, "delivery", "page to bob via sms retry (attempt 2): HTTP 503"),
        (6.0, "delivery", "page delivered to bob via sms"),
    ]
    assert (world.count("sms", "retry"), world.count("sms", "sent")) == (2, 1)


async def test_retry_after_is_honoured(world: World) -> None:
    await world.add(incident(), page("bob", "sms"))
    world.notifiers["sms"].script.append(
        DeliveryResult(
            ok=False, reason=FailureReason.RATE_LIMITED, error="HTTP 429", retry_after=90.0
        )
    )
    await world.tick()
    assert (await world.row(BOB_SMS)).not_before == T0 + 90 * S
    assert await world.tick(T0 + 89 * S) == []
    assert await world.tick(T0 + 90 * S) == [BOB_SMS]
    assert (await world.row(BOB_SMS)).state == OutboxState.SENT


async def test_retries_stop_at_max_attempts_and_fail_visibly(world: World) -> None:
    world.configure(max_attempts=2)
    await world.add(incident(), page("bob", "sms"))
    world.notifiers["sms"].script.extend([RETRY, RETRY, RETRY])
    await world.tick()
    await world.tick(T0 + 2 * S)
    r = await world.row(BOB_SMS)
    assert (r.state, r.attempts, r.last_error) == (OutboxState.FAILED, 2, "HTTP 503")
    assert await world.tick(T0 + 1 * M) == []
    assert len(world.notifiers["sms"].calls) == 2
    # bob has no fallback: nothing else is written.
    assert list(await world.rows()) == [BOB_SMS]
    assert (await world.timeline())[-1] == (
        2.0,
        "delivery",
        "page to bob via sms failed (attempt 2): HTTP 503",
    )
    assert world.count("sms", "failed") == 1


async def test_retries_stop_at_the_channel_deadline(world: World) -> None:
    world.configure(max_attempts=50, deadline={"sms": "10s"})
    await world.add(incident(), page("bob", "sms"))
    world.notifiers["sms"].script.extend([RETRY] * 5)
    for at in (T0, T0 + 2 * S, T0 + 6 * S):  # next would be 6s + 8s = 14s > 10s
        assert await world.tick(at) == [BOB_SMS]
    r = await world.row(BOB_SMS)
    assert (r.state, r.attempts) == (OutboxState.FAILED, 3)


async def test_permanent_failure_falls_back_phone_then_sms_then_email(world: World) -> None:
    await world.add(incident(), page("alice", "phone"))
    world.notifiers["phone"].script.append(PERMANENT)
    world.notifiers["sms"].script.append(PERMANENT)
    await world.tick()
    rows = await world.rows()
    assert {k: (v.channel, v.state, v.attempts) for k, v in rows.items()} == {
        ALICE_PHONE: ("phone", OutboxState.FAILED, 1),
        f"{ALICE_PHONE}>sms": ("sms", OutboxState.PENDING, 0),
    }
    assert rows[f"{ALICE_PHONE}>sms"].not_before == T0  # at once, not after a backoff
    await world.tick(T0 + S)
    await world.tick(T0 + 2 * S)
    rows = await world.rows()
    assert {k: (v.channel, v.state, v.attempts) for k, v in rows.items()} == {
        ALICE_PHONE: ("phone", OutboxState.FAILED, 1),
        f"{ALICE_PHONE}>sms": ("sms", OutboxState.FAILED, 1),
        f"{ALICE_PHONE}>sms>email": ("email", OutboxState.SENT, 1),
    }
    assert [c[1] for c in world.notifiers["phone"].calls] == [ALICE_PHONE]
    assert [c[1] for c in world.notifiers["sms"].calls] == [f"{ALICE_PHONE}>sms"]
    assert [c[1] for c in world.notifiers["email"].calls] == [f"{ALICE_PHONE}>sms>email"]
    err = PERMANENT.error
    assert await world.timeline() == [
        (0.0, "delivery", f"page to alice via phone failed (attempt 1): {err}"),
        (0.0, "fallback", "phone to alice failed; falling back to sms"),
        (1.0, "delivery", f"page to alice via sms failed (attempt 1): {err}"),
        (1.0, "fallback", "sms to alice failed; falling back to email"),
        (2.0, "delivery", "page delivered to alice via email"),
    ]


async def test_fallback_chain_ends_after_the_last_channel(world: World) -> None:
    await world.add(incident(), page("alice", "sms"))
    world.notifiers["sms"].script.append(PERMANENT)
    world.notifiers["email"].script.append(PERMANENT)
    await world.tick()
    await world.tick(T0 + S)
    rows = await world.rows()
    # sms is second in alice's order: email is next, and nothing after email.
    assert {k: v.state for k, v in rows.items()} == {
        "inc1:0:page:0:0:alice:sms": OutboxState.FAILED,
        "inc1:0:page:0:0:alice:sms>email": OutboxState.FAILED,
    }
    assert [e[1] for e in await world.timeline()] == ["delivery", "fallback", "delivery"]


async def test_retries_exhausted_also_fall_back(world: World) -> None:
    world.configure(max_attempts=1)
    await world.add(incident(), page("alice", "phone"))
    world.notifiers["phone"].script.append(RETRY)
    await world.tick()
    rows = await world.rows()
    assert {k: v.state for k, v in rows.items()} == {
        ALICE_PHONE: OutboxState.FAILED,
        f"{ALICE_PHONE}>sms": OutboxState.PENDING,
    }


async def test_unknown_outcome_is_recorded_not_retried_and_not_fallen_back(world: World) -> None:
    await world.add(incident(), page("alice", "phone"))
    world.notifiers["phone"].script.append(UNKNOWN)
    await world.tick()
    r = await world.row(ALICE_PHONE)
    assert (r.state, r.attempts, r.provider_id, r.last_error) == (
        OutboxState.UNKNOWN,
        1,
        "CA1",
        UNKNOWN.error,
    )
    for at in (T0 + S, T0 + M, T0 + 10 * M):
        assert await world.tick(at) == []
    assert len(world.notifiers["phone"].calls) == 1
    assert list(await world.rows()) == [ALICE_PHONE]
    assert await world.timeline() == [
        (0.0, "delivery", f"page to alice via phone unknown (attempt 1): {UNKNOWN.error}")
    ]
    assert world.count("phone", "unknown") == 1


async def test_a_channel_without_an_adapter_fails_and_falls_back(world: World) -> None:
    del world.notifiers["phone"]
    await world.add(incident(), page("alice", "phone"))
    await world.tick()
    rows = await world.rows()
    assert rows[ALICE_PHONE].state == OutboxState.FAILED
    assert rows[ALICE_PHONE].last_error == (
        "no adapter is configured for channel 'phone' (configured: pagerduty, email, sms, webhook)"
    )
    await world.tick(T0 + S)
    assert (await world.row(f"{ALICE_PHONE}>sms")).state == OutboxState.SENT
    assert world.count("phone", "undeliverable") == 0  # alice's own fallback carried it


@pytest.mark.parametrize("kind", ["page", "resolve"])
async def test_what_no_channel_can_carry_goes_to_log_with_an_error_line(
    world: World, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    world.notifiers["log"] = Recorder("log", world.clock)
    del world.notifiers["phone"]
    row = page("dave", "phone", kind=kind)  # dave has no fallback
    await world.add(incident(), row)
    caplog.set_level(logging.INFO)
    await world.tick()
    rows = await world.rows()
    assert (rows[row.id].state, rows[f"{row.id}>log"].state) == (
        OutboxState.FAILED,
        OutboxState.PENDING,
    )
    assert world.count("phone", "undeliverable") == 1
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    what = "page" if kind == "page" else "resolved notice"
    assert error.getMessage() == (
        f"{what} to dave is undeliverable: no configured channel can carry it; "
        "writing it to the log channel"
    )
    assert (error.__dict__["incident"], error.__dict__["channel"]) == ("inc1", "phone")
    await world.tick(T0 + S)
    assert (await world.row(f"{row.id}>log")).state == OutboxState.SENT
    assert [c[1] for c in world.notifiers["log"].calls] == [f"{row.id}>log"]
    assert [e[1:] for e in await world.timeline()][1] == (
        "fallback",
        "phone to dave failed; falling back to log",
    )


async def test_without_a_log_channel_an_undeliverable_page_is_still_an_error(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    del world.notifiers["phone"]
    await world.add(incident(), page("dave", "phone"))
    caplog.set_level(logging.INFO)
    await world.tick()
    await world.tick(T0 + S)
    rows = await world.rows()
    log_row = f"{page('dave', 'phone').id}>log"
    assert {k: v.state for k, v in rows.items()} == {
        page("dave", "phone").id: OutboxState.FAILED,
        log_row: OutboxState.FAILED,
    }
    assert (world.count("phone", "undeliverable"), world.count("log", "undeliverable")) == (1, 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "page to dave is undeliverable: no configured channel can carry it; "
        "writing it to the log channel",
        "page to dave is undeliverable: no configured channel can carry it; "
        "the log channel is not configured",
    ]


# -- circuit breaker ----------------------------------------------------------------------------


async def _open_phone_breaker(world: World) -> None:
    """Two failing calls to dave (no fallback) at T0 open the phone breaker (2 failures)."""
    world.configure(breaker_failures=2)
    await world.add(incident("inc9", number=9), page("dave", "phone", iid="inc9"))
    await world.add(page("dave", "phone", iid="inc9", kind="reminder"))
    world.notifiers["phone"].script.extend([RETRY, RETRY])
    assert len(await world.tick()) == 2
    assert len(world.notifiers["phone"].calls) == 2


async def test_open_breaker_falls_back_at_once_when_the_person_has_a_fallback(world: World) -> None:
    await _open_phone_breaker(world)
    await world.add(incident(), page("alice", "phone", at=T0 + S))
    await world.tick(T0 + S)
    assert len(world.notifiers["phone"].calls) == 2  # the breaker kept the call from being made
    rows = await world.rows()
    assert rows[ALICE_PHONE].state == OutboxState.FAILED
    assert rows[ALICE_PHONE].last_error == "circuit breaker open for phone"
    assert rows[f"{ALICE_PHONE}>sms"].not_before == T0 + S
    await world.tick(T0 + S)
    assert (await world.row(f"{ALICE_PHONE}>sms")).state == OutboxState.SENT
    assert await world.timeline() == [
        (
            1.0,
            "delivery",
            "page to alice via phone failed (attempt 1): circuit breaker open for phone",
        ),
        (1.0, "fallback", "phone to alice failed; falling back to sms"),
        (1.0, "delivery", "page delivered to alice via sms"),
    ]


async def test_open_breaker_holds_rows_without_a_fallback_until_it_half_opens(world: World) -> None:
    await _open_phone_breaker(world)
    await world.add(incident(), page("dave", "phone", at=T0 + S))
    dave = "inc1:0:page:0:0:dave:phone"
    await world.tick(T0 + S)
    r = await world.row(dave)
    # Held, not failed, and no attempt spent: no call was made.
    assert (r.state, r.attempts, r.not_before, r.last_error) == (
        OutboxState.PENDING,
        0,
        T0 + M,
        "circuit breaker open for phone",
    )
    assert await world.timeline() == [
        (
            1.0,
            "delivery",
            "page to dave via phone held until 2026-03-02T09:01:00+00:00:"
            " circuit breaker open for phone",
        ),
    ]
    assert world.count("phone", "breaker_open") == 1
    # dave's first two rows were due again at T0+2s (retry): the breaker holds them too.
    assert len(await world.tick(T0 + 59 * S)) == 2
    assert len(world.notifiers["phone"].calls) == 2
    assert {(r.not_before, r.attempts) for r in (await world.rows("inc9")).values()} == {
        (T0 + M, 1)
    }
    # Half-open at T0+1m: exactly one probe goes out; the others wait for its outcome.
    claimed = await world.tick(T0 + M)
    assert len(claimed) == 3
    assert len(world.notifiers["phone"].calls) == 3
    states = {k: v.state for k, v in (await world.rows("inc9")).items()} | {
        dave: (await world.row(dave)).state
    }
    assert sorted(states.values()) == [OutboxState.PENDING, OutboxState.PENDING, OutboxState.SENT]
    # The probe succeeded: the breaker is closed and the rest go when next due.
    await world.tick(T0 + 2 * M)
    assert len(world.notifiers["phone"].calls) == 5
    assert all(
        r.state == OutboxState.SENT
        for r in [*(await world.rows("inc9")).values(), await world.row(dave)]
    )


# -- cancelled rows -----------------------------------------------------------------------------


async def test_a_row_cancelled_before_its_claim_is_never_sent(world: World) -> None:
    await world.add(incident(), page("bob", "sms", at=T0 + M))
    await world.ack("inc1")
    assert await world.tick(T0 + M) == []
    assert world.notifiers["sms"].calls == []
    assert (await world.row(BOB_SMS)).state == OutboxState.CANCELLED


async def test_a_row_cancelled_after_its_claim_is_not_sent(world: World) -> None:
    await world.add(incident(), page("bob", "sms"), page("alice", "phone"))
    rows = await world.claim()
    await world.ack("inc1")  # lands between the claim and the send
    await world.dispatcher.dispatch(rows)
    assert world.notifiers["sms"].calls == []
    assert world.notifiers["phone"].calls == []
    assert {k: v.state for k, v in (await world.rows()).items()} == {
        BOB_SMS: OutboxState.CANCELLED,
        ALICE_PHONE: OutboxState.CANCELLED,
    }


async def test_a_held_row_cancelled_after_its_claim_stays_cancelled(world: World) -> None:
    world.configure(person_rate={"count": 1, "per": "10m"})
    await world.add(incident("inc0", number=0), page("bob", "email", iid="inc0"))
    await world.tick()
    await world.add(incident(), page("bob", "webhook", at=T0 + S))
    world.clock.set(T0 + S)
    rows = await world.claim()
    await world.ack("inc1")
    await world.dispatcher.dispatch(rows)  # rate limited: would be held until T0+10m
    assert (await world.row("inc1:0:page:0:0:bob:webhook")).state == OutboxState.CANCELLED
    assert await world.tick(T0 + 10 * M) == []
    assert world.notifiers["webhook"].calls == []


async def test_an_ack_during_a_failing_send_stops_retry_and_fallback(world: World) -> None:
    await world.add(incident(), page("alice", "phone"), page("bob", "sms"))

    acked = asyncio.Event()

    async def acked_while_ringing(d: Delivery) -> DeliveryResult:
        await world.ack("inc1")
        acked.set()
        return PERMANENT

    async def acked_then_retry(d: Delivery) -> DeliveryResult:
        await asyncio.wait_for(acked.wait(), 5)
        return RETRY

    world.notifiers["phone"].script.append(acked_while_ringing)
    world.notifiers["sms"].script.append(acked_then_retry)
    await world.tick()
    assert (len(world.notifiers["phone"].calls), len(world.notifiers["sms"].calls)) == (1, 1)
    rows = await world.rows()
    # Both stay cancelled: no retry of bob's, no SMS fallback for alice's.
    assert {k: v.state for k, v in rows.items()} == {
        ALICE_PHONE: OutboxState.CANCELLED,
        BOB_SMS: OutboxState.CANCELLED,
    }
    assert await world.tick(T0 + M) == []
    kinds = [e[1] for e in await world.timeline()]
    assert "fallback" not in kinds
    moot = "(cancelled meanwhile: no retry, no fallback)"
    assert sorted(m for _, k, m in await world.timeline() if k == "delivery") == [
        f"page to alice via phone failed (attempt 1): {PERMANENT.error} {moot}",
        f"page to bob via sms failed (attempt 1): HTTP 503 {moot}",
    ]


async def test_a_message_that_went_out_before_the_ack_is_recorded_as_sent(world: World) -> None:
    await world.add(incident(), page("bob", "sms"))

    async def acked_in_flight(d: Delivery) -> DeliveryResult:
        await world.ack("inc1")
        return DeliveryResult(ok=True, provider_id="SM1")

    world.notifiers["sms"].script.append(acked_in_flight)
    await world.tick()
    r = await world.row(BOB_SMS)
    assert (r.state, r.provider_id) == (OutboxState.SENT, "SM1")


# -- errors and odd rows ------------------------------------------------------------------------


async def test_a_notifier_exception_is_contained_logged_and_retried(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.add(incident(), page("alice", "phone"), page("bob", "sms"))
    world.notifiers["phone"].script.append(RuntimeError("adapter bug"))
    with caplog.at_level(logging.ERROR, logger="tocsin.dispatch"):
        await world.tick()
    rows = await world.rows()
    assert (rows[ALICE_PHONE].state, rows[ALICE_PHONE].attempts, rows[ALICE_PHONE].not_before) == (
        OutboxState.PENDING,
        1,
        T0 + 2 * S,
    )
    assert rows[ALICE_PHONE].last_error == "RuntimeError: adapter bug"
    assert rows[BOB_SMS].state == OutboxState.SENT  # everything else still went out
    [rec] = [
        r for r in caplog.records if r.name == "tocsin.dispatch" and r.levelno >= logging.ERROR
    ]
    assert rec.getMessage() == "notifier raised"
    assert rec.exc_info is not None and isinstance(rec.exc_info[1], RuntimeError)
    assert (rec.__dict__["channel"], rec.__dict__["outbox"]) == ("phone", ALICE_PHONE)
    await world.tick(T0 + 2 * S)
    assert (await world.row(ALICE_PHONE)).state == OutboxState.SENT


async def test_rows_of_a_missing_incident_fail_without_a_send_or_fallback(world: World) -> None:
    await world.add(page("alice", "phone", iid="ghost"))
    await world.tick()
    rows = await world.rows("ghost")
    assert list(rows) == ["ghost:0:page:0:0:alice:phone"]
    r = rows["ghost:0:page:0:0:alice:phone"]
    assert (r.state, r.attempts, r.last_error) == (OutboxState.FAILED, 1, "incident not found")
    assert world.notifiers["phone"].calls == []
    assert world.count("phone", "failed") == 1


async def test_a_resolved_incident_gets_its_resolved_notice_but_no_page(world: World) -> None:
    await world.add(
        incident(status=Status.RESOLVED),
        page("bob", "sms"),
        page("alice", "email", kind="resolve"),
    )
    await world.tick()
    rows = await world.rows()
    assert rows[BOB_SMS].state == OutboxState.CANCELLED
    assert rows[BOB_SMS].last_error == "incident resolved"
    assert rows["inc1:resolve:0:alice:email"].state == OutboxState.SENT
    assert world.notifiers["sms"].calls == []
    assert [c[1] for c in world.notifiers["email"].calls] == ["inc1:resolve:0:alice:email"]
    assert await world.timeline() == [
        (0.0, "delivery", "resolved notice delivered to alice via email")
    ]


# -- concurrency, bundling, rate limits ---------------------------------------------------------


async def test_rows_are_delivered_concurrently(world: World) -> None:
    """A slow channel does not hold up the others: the phone call waits for the SMS to go."""
    await world.add(incident(), page("alice", "phone"), page("bob", "sms"))
    sms_sent = asyncio.Event()

    async def slow_call(d: Delivery) -> DeliveryResult:
        await asyncio.wait_for(sms_sent.wait(), 5)
        return DeliveryResult(ok=True, provider_id="CA9")

    async def quick_sms(d: Delivery) -> DeliveryResult:
        sms_sent.set()
        return DeliveryResult(ok=True, provider_id="SM9")

    world.notifiers["phone"].script.append(slow_call)
    world.notifiers["sms"].script.append(quick_sms)
    await world.tick()
    rows = await world.rows()
    assert (rows[ALICE_PHONE].provider_id, rows[BOB_SMS].provider_id) == ("CA9", "SM9")


async def test_pages_to_one_person_on_a_bundling_channel_travel_as_one_message(
    world: World,
) -> None:
    await world.add(
        incident("inc1"),
        incident("inc2", number=2),
        incident("inc3", number=3),
        incident("inc4", number=4),
        page("bob", "sms", iid="inc1"),
        page("bob", "sms", iid="inc2"),
    )
    await world.tick()
    sms = world.notifiers["sms"]
    assert sms.calls == [(T0, "inc1:0:page:0:0:bob:sms", ("inc2:0:page:0:0:bob:sms",))]
    assert set(sms.deliveries[0].bundle_incidents) == {"inc2"}
    for iid in ("inc1", "inc2"):
        r = await world.row(f"{iid}:0:page:0:0:bob:sms")
        assert (r.state, r.provider_id) == (OutboxState.SENT, "sms-1")
        assert await world.timeline(iid) == [
            (0.0, "delivery", "page delivered to bob via sms (bundle of 2)")
        ]
    # Another page 5s later is held to the end of the bundle window, then joined by one more.
    await world.add(page("bob", "sms", iid="inc3", at=T0 + 5 * S))
    await world.tick(T0 + 5 * S)
    r3 = await world.row("inc3:0:page:0:0:bob:sms")
    assert (r3.state, r3.attempts, r3.not_before, r3.last_error) == (
        OutboxState.PENDING,
        0,
        T0 + 30 * S,
        "bundling",
    )
    await world.add(page("bob", "sms", iid="inc4", at=T0 + 20 * S))
    await world.tick(T0 + 20 * S)
    await world.tick(T0 + 30 * S)
    assert sms.calls[1:] == [(T0 + 30 * S, "inc3:0:page:0:0:bob:sms", ("inc4:0:page:0:0:bob:sms",))]
    # Pages on a channel that does not bundle (phone) and resolved notices go one by one.
    await world.add(page("alice", "phone", iid="inc3"), page("alice", "phone", iid="inc4"))
    await world.tick(T0 + 31 * S)
    assert [c[2] for c in world.notifiers["phone"].calls] == [(), ()]


async def test_rate_limited_rows_are_held_without_spending_an_attempt(world: World) -> None:
    world.configure(person_rate={"count": 1, "per": "10m"})
    await world.add(incident(), page("bob", "email"), page("bob", "webhook", at=T0 + M))
    await world.tick()
    await world.tick(T0 + M)
    r = await world.row("inc1:0:page:0:0:bob:webhook")
    assert (r.state, r.attempts, r.not_before, r.last_error) == (
        OutboxState.PENDING,
        0,
        T0 + 10 * M,
        "rate limited",
    )
    assert world.count("webhook", "rate_limited") == 1
    await world.tick(T0 + 10 * M)
    assert (await world.row("inc1:0:page:0:0:bob:webhook")).state == OutboxState.SENT


async def test_the_person_limit_holds_within_one_claim(world: World) -> None:
    """Rows claimed together are admitted one by one: four webhooks to bob, limit two."""
    world.configure(person_rate={"count": 2, "per": "10m"})
    incs = [incident(f"inc{i}", number=i) for i in range(1, 5)]
    await world.add(*incs, *(page("bob", "webhook", iid=i.id) for i in incs))
    assert len(await world.tick()) == 4
    assert len(world.notifiers["webhook"].calls) == 2
    held = []
    for i in incs:
        r = await world.row(f"{i.id}:0:page:0:0:bob:webhook")
        if r.state == OutboxState.PENDING:
            held.append((r.not_before, r.attempts))
    assert held == [(T0 + 10 * M, 0), (T0 + 10 * M, 0)]


async def test_the_channel_limit_holds_within_one_claim(world: World) -> None:
    world.configure(channel_rate={"pagerduty": {"count": 3, "per": "1m"}})
    incs = [incident(f"inc{i}", number=i) for i in range(1, 6)]
    await world.add(*incs, *(page("pagerduty:payments", "pagerduty", iid=i.id) for i in incs))
    await world.tick()
    assert len(world.notifiers["pagerduty"].calls) == 3
    await world.tick(T0 + M)
    assert len(world.notifiers["pagerduty"].calls) == 5


class CountedStoreLimits:
    """``StoreRateLimits`` (the store's own count, as replicas share it), noting each call."""

    def __init__(self, store: SqliteStore) -> None:
        self.inner = StoreRateLimits(store)
        self.calls: list[int] = []  # how many sends each call counted

    async def take(
        self, sends: Sequence[Sequence[RateSlot]], now: datetime
    ) -> list[datetime | None]:
        self.calls.append(len(sends))
        return await self.inner.take(sends, now)


async def test_limits_shared_through_the_store_are_taken_once_per_claim(world: World) -> None:
    """Replicas' shared limits cost one store transaction per claim, not one per send, and
    still hold within the claim; with no limit on the channel, none at all."""
    limits = CountedStoreLimits(world.store)
    cfg = DispatchConfig.model_validate(
        {**world.config, "channel_rate": {"pagerduty": {"count": 3, "per": "1m"}}}
    )
    policy = ConfiguredPolicy(cfg, limits)
    world.dispatcher.policy = lambda: policy
    incs = [incident(f"inc{i}", number=i) for i in range(1, 6)]
    await world.add(*incs, *(page("pagerduty:payments", "pagerduty", iid=i.id) for i in incs))
    await world.tick()
    assert limits.calls == [5]
    assert len(world.notifiers["pagerduty"].calls) == 3
    assert world.count("pagerduty", "rate_limited") == 2
    await world.tick(T0 + M)
    assert limits.calls == [5, 2]
    assert len(world.notifiers["pagerduty"].calls) == 5
    # No limit applies to a PagerDuty service's webhook channel: no store transaction.
    policy = ConfiguredPolicy(DispatchConfig.model_validate(world.config), limits)
    world.dispatcher.policy = lambda: policy
    more = [incident(f"inc{i}", number=i) for i in range(6, 8)]
    await world.add(*more, *(page("pagerduty:payments", "webhook", iid=i.id) for i in more))
    await world.tick(T0 + 2 * M)
    assert len(world.notifiers["webhook"].calls) == 2
    assert limits.calls == [5, 2]


# -- the chain of stages ------------------------------------------------------------------------


def test_the_stages_run_in_delivery_order(world: World) -> None:
    assert world.dispatcher.stages.names() == [
        "DropMoot",
        "HoldForBundling",
        "RateLimit",
        "Route",
        "Breaker",
        "Reserve",
        "ReserveShared",
        "Compose",
        "Send",
        "Classify",
        "Retry",
        "Record",
    ]


class Tagger:
    """A stage that notes which bundles it saw, in a log shared by the stages of one test."""

    def __init__(self, name: str, seen: list[tuple[str, str]]) -> None:
        self.name = name
        self.seen = seen

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        self.seen += [(self.name, b.head.id) for b in bundles]
        return bundles


async def test_gates_take_one_bundle_at_a_time_and_the_rest_take_them_all() -> None:
    seen: list[tuple[str, str]] = []
    chain = Chain(
        OneAtATime(Chain(Tagger("limit", seen), Tagger("breaker", seen))),
        Tagger("send", seen),
    )
    a, b = page("alice", "sms"), page("bob", "sms")
    rnd = Round({}, {}, {}, set(), SimplePolicy(), T0)
    out = await chain(rnd, [Bundle([a]), Bundle([b])])
    assert [x.head.id for x in out] == [a.id, b.id]
    # Each bundle passes every gate before the next one starts (so it sees the slots the
    # previous one reserved); the send stage then gets them all at once.
    assert seen == [
        ("limit", a.id),
        ("breaker", a.id),
        ("limit", b.id),
        ("breaker", b.id),
        ("send", a.id),
        ("send", b.id),
    ]
    assert chain.names() == ["Tagger", "Tagger", "Tagger"]


async def test_a_held_bundle_passes_the_later_gates_untouched(world: World) -> None:
    # Rate limited first: no adapter lookup, no breaker probe, no slot reserved, no send.
    world.configure(person_rate={"count": 1, "per": "10m"})
    b = Bundle([page("bob", "sms")])
    rnd = Round({}, {}, {}, set(), world.dispatcher.policy(), T0)
    rnd.policy.sent(b.head, T0)
    stages = world.dispatcher.stages.stages[0]
    assert isinstance(stages, OneAtATime)
    (after,) = await Chain(*stages.chain.stages[1:])(rnd, [b])
    assert after.hold is not None and after.hold.why == "rate limited"
    assert (after.notifier, after.delivery, after.result) == (None, None, None)


# -- the engine's port ------------------------------------------------------------------------


class Port:
    """The dispatcher behind the engine's port, noting what another replica could claim when
    ``finish`` starts (nothing, once the claim has committed) and able to crash there."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.log: list[tuple[str, list[str]]] = []
        self.crash = False

    async def prepare(
        self, tx: Tx, rows: Sequence[OutboxRecord], state: DeliveryState | None = None
    ) -> Prepared:
        self.log.append(("prepare", [r.id for r in rows]))
        return await self.world.dispatcher.prepare(tx, rows, state)

    async def finish(self, prepared: Prepared) -> None:
        now = self.world.clock.now()
        async with self.world.store.transaction() as tx:
            others = await tx.claim_outbox(now, "other", now + 30 * S, 200)
        self.log.append(("finish", [r.id for r in others]))
        if self.crash:
            raise RuntimeError("the process died between the claim and the send")
        await self.world.dispatcher.finish(prepared)


def engine(world: World, port: Port) -> Engine:
    directory = Directory(matrix=load_preset("default"), people=PEOPLE)
    metrics = EscalationMetrics(CollectorRegistry())
    return Engine(world.store, world.clock, lambda: directory, port, metrics, lease=30 * S)


async def test_the_engine_claims_prepares_and_hands_over_after_commit(world: World) -> None:
    await world.add(incident(), page("bob", "sms"))
    port = Port(world)
    await engine(world, port).tick()
    assert port.log == [("prepare", [BOB_SMS]), ("finish", [])]
    assert (await world.row(BOB_SMS)).state == OutboxState.SENT


async def test_a_crash_between_claim_and_send_sends_again_after_the_lease(world: World) -> None:
    await world.add(incident(), page("bob", "sms"))
    port = Port(world)
    eng = engine(world, port)
    port.crash = True
    with pytest.raises(RuntimeError):
        await eng.tick()
    r = await world.row(BOB_SMS)
    assert (r.state, r.attempts, world.notifiers["sms"].calls) == (OutboxState.PENDING, 0, [])
    port.crash = False
    world.clock.set(T0 + 10 * S)
    await eng.tick()  # still leased to the dead claim
    assert world.notifiers["sms"].calls == []
    world.clock.set(T0 + 31 * S)
    await eng.tick()
    assert world.notifiers["sms"].calls == [(T0 + 31 * S, BOB_SMS, ())]
    assert (await world.row(BOB_SMS)).state == OutboxState.SENT
