"""Heartbeat rows on both backends: stored as given, due like steps, claimed with leases."""

from __future__ import annotations

from dataclasses import replace

from escalation.incidents.heartbeats import EXPIRED, PENDING, HeartbeatRecord
from escalation.store.base import Store
from tests.escalation.store.records import m


def beat(name: str, due: float, **kw: object) -> HeartbeatRecord:
    return HeartbeatRecord(name, PENDING, armed_at=m(0), due_at=m(due), **kw)  # type: ignore[arg-type]


async def put(store: Store, *recs: HeartbeatRecord) -> None:
    async with store.transaction() as tx:
        for rec in recs:
            await tx.put_heartbeat(rec)


async def test_a_heartbeat_round_trips_and_is_replaced_by_name(store: Store) -> None:
    pinged = beat("nightly", 6, last_ping=m(1))
    await put(store, pinged, beat("hourly", 60))
    async with store.transaction() as tx:
        assert await tx.heartbeat("nightly") == pinged
        assert await tx.heartbeat("nope") is None
    expired = replace(pinged, state=EXPIRED, expired_at=m(6))
    await put(store, expired)
    assert [h.id for h in await store.heartbeats()] == ["hourly", "nightly"]
    assert (await store.heartbeats())[1] == expired


async def test_a_pending_heartbeat_is_due_and_claimed_once_until_its_lease_ends(
    store: Store,
) -> None:
    await put(store, beat("a", 6), beat("b", 10), replace(beat("gone", 1), state=EXPIRED))
    assert await store.next_due() == m(6)
    async with store.transaction() as tx:
        assert await tx.claim_due_heartbeats(m(5), "r1", m(7), 10) == []
        assert [h.id for h in await tx.claim_due_heartbeats(m(6), "r1", m(7), 10)] == ["a"]
    async with store.transaction() as tx:  # another replica: the lease is live
        assert await tx.claim_due_heartbeats(m(6), "r2", m(8), 10) == []
    assert await store.next_due() == m(7)  # the lease's end
    async with store.transaction() as tx:  # a dead replica's claim is taken over
        assert [h.id for h in await tx.claim_due_heartbeats(m(7), "r2", m(8), 10)] == ["a"]
        await tx.put_heartbeat(replace(beat("a", 6), state=EXPIRED, expired_at=m(7)))
    assert await store.next_due() == m(10)
    async with store.transaction() as tx:
        assert [h.id for h in await tx.claim_due_heartbeats(m(20), "r2", m(21), 10)] == ["b"]


async def test_arming_only_new_keeps_the_row_another_replica_wrote(store: Store) -> None:
    first = beat("nightly", 6, last_ping=m(1))
    await put(store, first)
    async with store.transaction() as tx:
        await tx.put_heartbeat(beat("nightly", 9), only_new=True)
        await tx.put_heartbeat(beat("fresh", 9), only_new=True)
        assert await tx.heartbeat("nightly") == first
        assert await tx.heartbeat("fresh") == beat("fresh", 9)
