"""Rate limits counted in the store (``Tx.take_rate_slots``), on both backends.

Several replicas on one PostgreSQL store share these counts, so a limit holds for the cluster;
concurrent takers on one key are serialised, never both admitted past the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from escalation.store.base import RateSlot, Store
from escalation.store.postgres import PostgresStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)

PERSON = RateSlot("person:alice", 2, 10 * M)
SMS = RateSlot("channel:sms", 3, M)


async def take(store: Store, slots: Sequence[RateSlot], at: datetime) -> datetime | None:
    async with store.transaction() as tx:
        [answer] = await tx.take_rate_slots([slots], at)
        return answer


async def test_a_window_admits_count_sends_then_says_when_the_oldest_expires(
    store: Store,
) -> None:
    assert await take(store, [PERSON], T0) is None
    assert await take(store, [PERSON], T0 + M) is None
    assert await take(store, [PERSON], T0 + 2 * M) == T0 + 10 * M
    assert await take(store, [PERSON], T0 + 9 * M) == T0 + 10 * M  # refusals count nothing
    assert await take(store, [PERSON], T0 + 10 * M) is None  # T0's send left the window
    assert await take(store, [PERSON], T0 + 10 * M) == T0 + 11 * M
    # Another key has its own window.
    assert await take(store, [RateSlot("person:bob", 2, 10 * M)], T0 + 10 * M) is None


async def test_all_slots_or_none(store: Store) -> None:
    for i in range(3):
        assert await take(store, [RateSlot(f"person:p{i}", 5, M), SMS], T0) is None
    # The channel is full: alice's send is refused and her own window is not charged.
    assert await take(store, [PERSON, SMS], T0 + 30 * timedelta(seconds=1)) == T0 + M
    assert await take(store, [PERSON], T0 + M) is None
    assert await take(store, [PERSON], T0 + M) is None
    assert await take(store, [PERSON], T0 + M) == T0 + 11 * M
    assert await take(store, [], T0) is None


async def test_a_rolled_back_take_counts_nothing(store: Store) -> None:
    try:
        async with store.transaction() as tx:
            assert await tx.take_rate_slots([[RateSlot("person:carol", 1, M)]], T0) == [None]
            raise RuntimeError("the claim failed")
    except RuntimeError:
        pass
    assert await take(store, [RateSlot("person:carol", 1, M)], T0) is None


async def test_stores_sharing_one_database_share_the_limit(pg_schema: tuple[str, str]) -> None:
    """Three replicas' stores racing for one person's two slots: exactly two are admitted."""
    dsn, schema = pg_schema
    stores = [PostgresStore(dsn, schema=schema, pool_min=1, pool_max=4) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        answers = await asyncio.gather(*(take(stores[i % 3], [PERSON], T0) for i in range(12)))
        assert sorted(answers, key=lambda a: a is not None) == [None, None] + [T0 + 10 * M] * 10
    finally:
        for s in stores:
            await s.close()


async def test_one_call_counts_a_rounds_sends_in_order(store: Store) -> None:
    """A delivery round's sends in one call: each sees the ones before it, as separate calls
    would, and a refusal says when the send whose expiry makes room leaves the window."""
    pair = RateSlot("channel:pagerduty", 2, 10 * M)
    async with store.transaction() as tx:
        assert await tx.take_rate_slots([[pair]], T0) == [None]
    async with store.transaction() as tx:
        # One stored send (T0) and one counted here: the third waits for T0's to expire.
        assert await tx.take_rate_slots([[pair], [pair], [pair]], T0 + M) == [
            None,
            T0 + 10 * M,
            T0 + 10 * M,
        ]
    one = RateSlot("person:dave", 1, M)
    async with store.transaction() as tx:
        # The send this call counted is the one whose expiry makes room.
        assert await tx.take_rate_slots([[one], [one]], T0) == [None, T0 + M]
    assert await take(store, [one], T0 + M) is None


async def test_one_call_all_or_none_per_send(store: Store) -> None:
    sms = RateSlot("channel:sms", 2, M)
    erin, frank = RateSlot("person:erin", 1, M), RateSlot("person:frank", 2, M)
    async with store.transaction() as tx:
        answers = await tx.take_rate_slots(
            [[erin, sms], [erin, sms], [frank, sms], [frank, sms]], T0
        )
    # Erin's second send is refused and charges neither window; frank's first takes the
    # channel's second slot, his second finds the channel full.
    assert answers == [None, T0 + M, None, T0 + M]
    assert await take(store, [frank], T0) is None  # frank's window held one send, not two
    assert await take(store, [frank], T0) == T0 + M
    async with store.transaction() as tx:
        assert await tx.take_rate_slots([], T0) == []
        assert await tx.take_rate_slots([[], []], T0) == [None, None]
