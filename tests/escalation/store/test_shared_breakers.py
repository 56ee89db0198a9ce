"""Circuit breakers and bundling windows kept in the store, on both backends.

Several replicas on one PostgreSQL store share them: failures seen by any replica open a
channel's breaker for all, exactly one replica gets the half-open probe, and one bundling
window per person and channel holds for the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from adapters.delivery.limits import breaker_state
from escalation.store.base import BreakerRecord, Store
from escalation.store.postgres import PostgresStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)


async def check(store: Store, channel: str, at: datetime, reset: timedelta = M) -> datetime | None:
    async with store.transaction() as tx:
        return await tx.check_breaker(channel, at, reset)


async def outcomes(
    store: Store, results: Sequence[tuple[str, bool]], at: datetime, failures: int = 3
) -> None:
    async with store.transaction() as tx:
        await tx.record_breaker_outcomes(results, at, failures)


async def take(
    store: Store, person: str, channel: str, at: datetime, window: timedelta = 30 * S
) -> datetime | None:
    async with store.transaction() as tx:
        return await tx.take_bundle_window(person, channel, at, window)


async def release(store: Store, person: str, channel: str, at: datetime) -> None:
    async with store.transaction() as tx:
        await tx.release_bundle_window(person, channel, at)


# -- breakers -----------------------------------------------------------------------------------


async def test_a_breaker_opens_after_failures_in_a_row_and_a_success_clears_the_run(
    store: Store,
) -> None:
    assert await check(store, "phone", T0) is None  # never seen: closed
    await outcomes(store, [("phone", False), ("phone", False), ("phone", True)], T0)
    assert await check(store, "phone", T0) is None  # the success broke the run
    await outcomes(store, [("phone", False), ("sms", False), ("phone", False)], T0 + S)
    assert await check(store, "phone", T0 + S) is None  # two in a row, three needed
    await outcomes(store, [("phone", False)], T0 + 2 * S)
    assert await check(store, "phone", T0 + 3 * S) == T0 + 2 * S + M
    assert await check(store, "phone", T0 + 50 * S) == T0 + 2 * S + M  # no side effect
    assert await check(store, "sms", T0 + 3 * S) is None  # each channel its own


async def test_the_stored_breakers_can_be_read_for_the_status_page(store: Store) -> None:
    assert await store.breakers() == []  # no channel ever failed
    await outcomes(store, [("sms", False), ("phone", False), ("phone", False)], T0)
    await outcomes(store, [("phone", False)], T0 + S)
    assert await store.breakers() == [
        BreakerRecord("phone", 3, T0 + S),
        BreakerRecord("sms", 1, None),
    ]
    assert breaker_state((await store.breakers())[0], T0 + M, M) == "open"
    assert breaker_state((await store.breakers())[0], T0 + S + M, M) == "half-open"
    await outcomes(store, [("phone", True)], T0 + 2 * M)
    [phone, _] = await store.breakers()
    assert phone == BreakerRecord("phone", 0, None)
    assert breaker_state(phone, T0 + 2 * M, M) == "closed"


async def test_one_failure_opens_a_breaker_of_one(store: Store) -> None:
    await outcomes(store, [("webhook:ops", False)], T0, failures=1)
    assert await check(store, "webhook:ops", T0 + S) == T0 + M


async def test_half_open_the_first_caller_probes_and_the_rest_hold_until_its_outcome(
    store: Store,
) -> None:
    await outcomes(store, [("phone", False)] * 3, T0)
    assert await check(store, "phone", T0 + M) is None  # the probe
    assert await check(store, "phone", T0 + M) == T0 + 2 * M  # re-armed for everyone else
    assert await check(store, "phone", T0 + M + 30 * S) == T0 + 2 * M
    # The probe failed: open for another reset, from its outcome.
    await outcomes(store, [("phone", False)], T0 + M + S)
    assert await check(store, "phone", T0 + M + 2 * S) == T0 + 2 * M + S
    # The next probe succeeds: closed, and the run of failures starts again from zero.
    assert await check(store, "phone", T0 + 2 * M + S) is None
    await outcomes(store, [("phone", True)], T0 + 2 * M + 2 * S)
    assert await check(store, "phone", T0 + 2 * M + 2 * S) is None
    await outcomes(store, [("phone", False)] * 2, T0 + 3 * M)
    assert await check(store, "phone", T0 + 3 * M) is None


async def test_a_probe_that_never_reports_lets_another_try_after_reset(store: Store) -> None:
    await outcomes(store, [("email", False)] * 3, T0)
    assert await check(store, "email", T0 + M) is None  # the probe's sender dies
    assert await check(store, "email", T0 + 2 * M - S) == T0 + 2 * M
    assert await check(store, "email", T0 + 2 * M) is None


async def test_a_rolled_back_probe_takes_nothing(store: Store) -> None:
    await outcomes(store, [("sms", False)] * 3, T0)
    try:
        async with store.transaction() as tx:
            assert await tx.check_breaker("sms", T0 + M, M) is None
            raise RuntimeError("the round failed")
    except RuntimeError:
        pass
    assert await check(store, "sms", T0 + M) is None


# -- bundling windows -----------------------------------------------------------------------------


async def test_a_window_holds_the_next_message_until_it_ends(store: Store) -> None:
    assert await take(store, "alice", "sms", T0) is None
    assert await take(store, "alice", "sms", T0 + S) == T0 + 30 * S
    assert await take(store, "alice", "sms", T0 + 29 * S) == T0 + 30 * S  # refusals take none
    assert await take(store, "alice", "email", T0 + S) is None  # per channel
    assert await take(store, "bob", "sms", T0 + S) is None  # per person
    assert await take(store, "alice", "sms", T0 + 30 * S) is None  # a new window
    assert await take(store, "alice", "sms", T0 + 31 * S) == T0 + M


async def test_a_released_window_is_gone_but_a_later_one_stays(store: Store) -> None:
    assert await take(store, "alice", "sms", T0) is None
    await release(store, "alice", "sms", T0)  # that send failed: nothing reached alice
    assert await take(store, "alice", "sms", T0 + S) is None
    await release(store, "alice", "sms", T0)  # an older window: not this one
    assert await take(store, "alice", "sms", T0 + 2 * S) == T0 + 31 * S


# -- several replicas on one PostgreSQL ---------------------------------------------------------


async def _stores(dsn: str, schema: str) -> list[PostgresStore]:
    stores = [PostgresStore(dsn, schema=schema, pool_min=1, pool_max=4) for _ in range(3)]
    for s in stores:
        await s.open()
    return stores


async def test_replicas_share_one_breaker_and_exactly_one_gets_the_probe(
    pg_schema: tuple[str, str],
) -> None:
    stores = await _stores(*pg_schema)
    try:
        # Each replica sees one failure: together they open the breaker for all three.
        await asyncio.gather(*(outcomes(s, [("pagerduty", False)], T0) for s in stores))
        for s in stores:
            assert await check(s, "pagerduty", T0 + S) == T0 + M
        # Twelve callers past the cool-down at once: one probe cluster-wide.
        answers = await asyncio.gather(
            *(check(stores[i % 3], "pagerduty", T0 + M) for i in range(12))
        )
        assert sorted(answers, key=lambda a: a is not None) == [None] + [T0 + 2 * M] * 11
    finally:
        for s in stores:
            await s.close()


async def test_replicas_share_one_bundling_window(pg_schema: tuple[str, str]) -> None:
    stores = await _stores(*pg_schema)
    try:
        answers = await asyncio.gather(
            *(take(stores[i % 3], "alice", "sms", T0) for i in range(12))
        )
        assert sorted(answers, key=lambda a: a is not None) == [None] + [T0 + 30 * S] * 11
    finally:
        for s in stores:
            await s.close()
