"""Schedule overrides and calendar tokens in the store: conformance on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from escalation.oncall.overrides import CalendarToken, StoredOverride
from escalation.store.base import Store

T0 = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def override(id: str, schedule: str = "primary", start: int = 0, end: int = 4) -> StoredOverride:
    return StoredOverride(
        id=id,
        schedule=schedule,
        person="carol",
        starts_at=T0 + start * H,
        ends_at=T0 + end * H,
        replaces="alice" if id.endswith("r") else None,
        created_at=T0 + timedelta(seconds=int(id[1])),  # o1 first, then o2, o3
        created_by="writer",
        on_behalf_of="alice",
    )


async def test_overrides_round_trip_filter_and_remove_with_audit(store: Store) -> None:
    made = [override("o1"), override("o2r", start=4, end=8), override("o3", "secondary")]
    async with store.transaction() as tx:
        for o in made:
            await tx.add_override(o)
    assert await store.overrides() == made
    assert await store.overrides("primary") == made[:2]
    assert await store.overrides(ending_after=T0 + 4 * H) == [made[1]]

    async with store.transaction() as tx:
        gone = await tx.remove_override("primary", "o1", T0 + H, "reader", "bob")
        assert await tx.remove_override("secondary", "o2r", T0 + H, "reader") is None
    assert gone is not None
    assert (gone.removed_at, gone.removed_by, gone.removed_on_behalf_of) == (
        T0 + H,
        "reader",
        "bob",
    )
    assert await store.overrides("primary") == [made[1]]
    assert await store.overrides("primary", removed=True) == [gone, made[1]]
    async with store.transaction() as tx:
        assert await tx.remove_override("primary", "o1", T0 + 2 * H, "reader") is None
        assert await tx.overrides("primary") == [made[1]]


async def test_overrides_and_tokens_survive_reopening(make: Callable[[], Store]) -> None:
    first = make()
    await first.open()
    token = CalendarToken("cal-1", "schedule", "primary", "ab" * 32, T0, "writer")
    async with first.transaction() as tx:
        await tx.add_override(override("o1"))
        await tx.add_calendar_token(token)
    await first.close()
    second = make()
    await second.open()
    try:
        assert await second.overrides() == [override("o1")]
        assert await second.calendar_token("ab" * 32) == token
    finally:
        await second.close()


async def test_calendar_tokens_found_by_hash_until_revoked(store: Store) -> None:
    a = CalendarToken("cal-a", "schedule", "primary", "a" * 64, T0, "writer")
    b = CalendarToken("cal-b", "person", "alice", "b" * 64, T0 + H, "writer")
    async with store.transaction() as tx:
        await tx.add_calendar_token(a)
        await tx.add_calendar_token(b)
    assert await store.calendar_token("b" * 64) == b
    assert await store.calendar_token("c" * 64) is None
    assert await store.calendar_tokens() == [a, b]
    async with store.transaction() as tx:
        assert await tx.revoke_calendar_token("cal-a", T0 + 2 * H, "writer")
        assert not await tx.revoke_calendar_token("cal-a", T0 + 2 * H, "writer")
    assert await store.calendar_token("a" * 64) is None
    assert await store.calendar_tokens() == [b]


async def test_live_overrides_read_in_a_transaction_follow_writes_and_rollbacks(
    store: Store,
) -> None:
    """What the engine reads per step it fires (live overrides, in its transaction) is always
    what is stored: a write shows in the next read, a rolled-back write never does, even when
    it was read inside its own transaction (SQLite answers these reads from a cache)."""

    class Undo(Exception):
        pass

    async def live() -> list[str]:
        async with store.transaction() as tx:
            return [o.id for o in await tx.overrides(ending_after=T0 + H)]

    assert await live() == []
    async with store.transaction() as tx:
        await tx.add_override(override("o1"))
    assert await live() == ["o1"]
    try:
        async with store.transaction() as tx:
            await tx.add_override(override("o2"))
            assert [o.id for o in await tx.overrides(ending_after=T0 + H)] == ["o1", "o2"]
            await tx.remove_override("primary", "o1", T0 + H, "reader")
            assert [o.id for o in await tx.overrides(ending_after=T0 + H)] == ["o2"]
            raise Undo
    except Undo:
        pass
    assert await live() == ["o1"]
    async with store.transaction() as tx:
        assert [o.id for o in await tx.overrides(ending_after=T0 + 5 * H)] == []
        assert [o.id for o in await tx.overrides("secondary", ending_after=T0 + H)] == []
        await tx.remove_override("primary", "o1", T0 + H, "reader")
    assert await live() == []
