"""The store conformance suite: every test runs against SQLite and against PostgreSQL.

Whatever a caller may rely on (``escalation.store.base``) is tested here, once, for both
backends; what only one backend does lives in ``test_sqlite.py`` / ``test_postgres.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from escalation.incidents.model import (
    Changes,
    IncidentRecord,
    OutboxState,
    Status,
    StepState,
    TimelineEvent,
)
from escalation.store import postgres as postgres_backend
from escalation.store import sqlite as sqlite_backend
from escalation.store.base import Conflict, IncidentFilter, Store, StoreError, Tx
from escalation.store.migrations import latest_version
from escalation.store.postgres import PostgresStore
from escalation.store.sqlite import SqliteStore
from tests.escalation.store.records import (
    ALL_VERSIONS,
    CEST,
    T0,
    alert,
    apply,
    claim_outbox,
    claim_steps,
    event,
    incident,
    m,
    outbox,
    outbox_of,
    states,
    step,
    steps_of,
)


async def test_round_trip_of_every_record_type(store: Store) -> None:
    inc = IncidentRecord(
        id="inc-1",
        number=77,  # ignored: the store assigns numbers
        key='am/receiver:{}/{alertname="HighLatency"}',
        status=Status.ACKNOWLEDGED,
        severity="P0",
        title="Latency ✓ über 9000",
        team="database",
        policy_name="critical",
        policy={
            "steps": [{"after": "5m", "unless": "acknowledged", "notify": ["role:lead"]}],
            "repeat": 2,
            "a_last_key": None,
            "float": 1.5,
        },
        level={"name": "SEV-1", "ack": "5m", "update_every": "30m"},
        opened_at=T0,
        updated_at=datetime(2026, 3, 1, 14, 5, 7, 123456, tzinfo=CEST),  # = 12:05:07.123456Z
        acknowledged_at=m(3),
        mitigated_at=m(10),
        resolved_at=m(20),
        epoch=2,
        receiver="pagerduty-critical",
        group_key='{}:{alertname="HighLatency"}',
        rule="latency-rule",
        labels={"service": "api", "alertname": "HighLatency"},
        version=3,
    )
    al = alert(
        "inc-1",
        "fp1",
        ends_at=m(19),
        status="resolved",
        annotations={"summary": "p99 > 2s", "runbook": "https://wiki/rb"},
    )
    steps = [
        step(
            "inc-1:2:page:0:0",
            unless="acknowledged",
            due=m(0),
            state=StepState.FIRED,
            fired_at=m(0.5),
            note="fired late",
            epoch=2,
        ),
        step("inc-1:2:page:0:1", unless=None, due=m(5), kind="reminder", round=1, tier=1, epoch=2),
    ]
    ob = outbox(
        "inc-1:2:page:0:0:alice:email",
        step_id="inc-1:2:page:0:0",
        kind="page",
        tier=1,
        round=2,
        target="role:lead",
        person="alice",
        channel="email",
        created_at=m(0.5),
        not_before=m(1),
        state=OutboxState.UNKNOWN,
        attempts=4,
        last_error="timeout",
        sent_at=m(1.5),
        provider_id="msg-123",
        payload={"subject": "SEV-1 ✓", "to": ["a@x"], "n": {"deep": [1, 2.5, None]}},
    )
    ev = TimelineEvent(
        incident_id="inc-1",
        at=m(0),
        kind="open",
        actor="alertmanager",
        source="alert",
        message="opened",
        data={"rule": "latency", "n": [1, 2]},
    )

    await apply(
        store,
        new_incidents=[inc],
        upsert_alerts=[al],
        new_steps=steps,
        new_outbox=[ob],
        timeline=[ev],
    )

    got = await store.get_incident("inc-1")
    assert got == replace(inc, number=1)
    assert list(got.policy) == ["steps", "repeat", "a_last_key", "float"]  # key order kept
    assert got.updated_at.utcoffset() == timedelta(0)
    assert got.updated_at == datetime(2026, 3, 1, 12, 5, 7, 123456, tzinfo=UTC)
    assert isinstance(got.status, Status)
    async with store.transaction() as tx:
        assert await tx.get_incident("inc-1") == replace(inc, number=1)
        assert await tx.alerts_of("inc-1") == [al]
        assert await tx.steps_of("inc-1") == steps
        assert await tx.outbox_of("inc-1") == [ob]
        assert await tx.get_incident("nope") is None
        assert await tx.alerts_of("nope") == []
    assert await store.timeline("inc-1") == [ev]
    for value in (got.opened_at, got.acknowledged_at, got.resolved_at):
        assert value is not None and value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


async def test_numbers_are_assigned_in_order_and_record_numbers_ignored(store: Store) -> None:
    await apply(store, new_incidents=[incident("a", number=50)])
    await apply(store, new_incidents=[incident("b", number=50), incident("c", number=0)])
    assert [(await store.get_incident(i)).number for i in "abc"] == [1, 2, 3]  # type: ignore[union-attr]
    assert (await store.find_incident("#3")).id == "c"  # type: ignore[union-attr]


async def test_update_keeps_the_assigned_number(store: Store) -> None:
    await apply(store, new_incidents=[incident("a"), incident("b")])
    b = await store.get_incident("b")
    assert b is not None
    await apply(store, updated_incidents=[replace(b, number=999, title="renamed")])
    assert await store.get_incident("b") == replace(b, title="renamed", version=1)


async def test_keys_and_aliases_point_at_the_newest_incident(store: Store) -> None:
    await apply(store, new_incidents=[incident("a", key="k")])
    async with store.transaction() as tx:
        found = await tx.incidents_by_key(["k", "missing"])
    assert list(found) == ["k"]
    assert found["k"] == await store.get_incident("a")

    await apply(store, key_aliases=[("alias", "a")])
    await apply(store, new_incidents=[incident("b", key="k", opened=m(5))])
    async with store.transaction() as tx:
        found = await tx.incidents_by_key(["k", "alias", "k"])
    assert {k: v.id for k, v in found.items()} == {"k": "b", "alias": "a"}
    assert found["k"].number == 2

    await apply(store, key_aliases=[("alias", "b")])
    async with store.transaction() as tx:
        assert (await tx.incidents_by_key(["alias"]))["alias"].id == "b"
        assert await tx.incidents_by_key([]) == {}


async def test_occurrence_lookup_returns_the_newest_holder(store: Store) -> None:
    await apply(store, new_incidents=[incident("old", opened=T0), incident("new", opened=m(30))])
    await apply(
        store,
        upsert_alerts=[
            alert("old", "fp1", T0),
            alert("new", "fp1", T0),
            alert("new", "fp2", m(1)),
            alert("old", "fp3", m(2)),
        ],
    )
    shifted = m(1).astimezone(CEST)  # same instant, another zone: the caller's key comes back
    async with store.transaction() as tx:
        found = await tx.incidents_by_occurrence(
            [("fp1", T0), ("fp2", shifted), ("fp3", m(2)), ("fp1", m(1)), ("fp9", T0)]
        )
        assert await tx.incidents_by_occurrence([]) == {}
    assert found == {("fp1", T0): "new", ("fp2", shifted): "new", ("fp3", m(2)): "old"}


async def test_alert_upsert_replaces_only_the_changing_fields(store: Store) -> None:
    await apply(store, new_incidents=[incident("a")])
    first = alert("a", "fp1", T0)
    await apply(store, upsert_alerts=[first, alert("a", "fp1", m(60))])
    changed = replace(
        first,
        status="resolved",
        ends_at=m(9),
        last_seen=m(10),
        annotations={"summary": "recovered"},
        severity="P2",
        rule="other-rule",
        labels={"changed": "yes"},  # kept: identity of the occurrence
        generator_url="http://elsewhere",  # kept
        first_seen=m(5),  # kept
    )
    await apply(store, upsert_alerts=[changed])
    async with store.transaction() as tx:
        got = await tx.alerts_of("a")
    assert got == [
        replace(
            changed,
            labels=first.labels,
            generator_url=first.generator_url,
            first_seen=first.first_seen,
        ),
        alert("a", "fp1", m(60)),
    ]


async def test_cas_update_bumps_version_and_stale_update_conflicts(store: Store) -> None:
    await apply(store, new_incidents=[incident("a")])
    v0 = await store.get_incident("a")
    assert v0 is not None and v0.version == 0
    acked = replace(v0, status=Status.ACKNOWLEDGED, acknowledged_at=m(2), updated_at=m(2))
    await apply(store, updated_incidents=[acked])
    assert await store.get_incident("a") == replace(acked, version=1)

    with pytest.raises(Conflict) as caught:
        await apply(
            store,
            updated_incidents=[replace(v0, title="stale writer")],
            timeline=[event("a", m(3), "note")],
        )
    assert isinstance(caught.value, StoreError)
    assert await store.get_incident("a") == replace(acked, version=1)
    assert await store.timeline("a") == []

    with pytest.raises(Conflict):
        await apply(store, updated_incidents=[incident("ghost")])


async def test_new_steps_and_outbox_are_insert_or_ignore(store: Store) -> None:
    s = step("s1", due=m(5), note="original")
    o = outbox("o1", not_before=m(5), person="alice")
    await apply(store, new_steps=[s], new_outbox=[o])
    await apply(
        store,
        new_steps=[replace(s, due_at=m(99), note="second"), step("s2", due=m(6))],
        new_outbox=[replace(o, person="mallory", not_before=m(99))],
    )
    assert await steps_of(store, "inc-1") == [s, step("s2", due=m(6))]
    assert await outbox_of(store, "inc-1") == [o]


CANCEL_CASES: list[tuple[tuple[str | None, ...] | None, set[str]]] = [
    (("acknowledged",), {"s-ack"}),
    (("acknowledged", "mitigated"), {"s-ack", "s-mit"}),
    ((None,), {"s-none"}),
    (("resolved", None), {"s-res", "s-none"}),
    ((), set()),
    (None, {"s-ack", "s-mit", "s-res", "s-none"}),
]


@pytest.mark.parametrize(("unless", "cancelled"), CANCEL_CASES)
async def test_cancel_steps_of_by_unless(
    store: Store, unless: tuple[str | None, ...] | None, cancelled: set[str]
) -> None:
    steps = [
        step("s-ack", unless="acknowledged", due=m(1)),
        step("s-mit", unless="mitigated", due=m(2)),
        step("s-res", unless="resolved", due=m(3)),
        step("s-none", unless=None, due=m(4)),
        step(
            "s-fired",
            unless="acknowledged",
            due=m(0),
            state=StepState.FIRED,
            fired_at=m(0),
            note="done",
        ),
        step("s-skipped", unless=None, due=m(0), state=StepState.SKIPPED, note="quiet"),
    ]
    other = step("other", "inc-2", unless="acknowledged", due=m(1))
    await apply(store, new_steps=[*steps, other])
    await apply(store, cancel_steps_of=[("inc-1", unless, "acknowledged by alice")])

    got = {s.id: s for s in await steps_of(store, "inc-1")}
    for s in steps:
        if s.id in cancelled:
            assert got[s.id] == replace(s, state=StepState.CANCELLED, note="acknowledged by alice")
        else:
            assert got[s.id] == s
    assert await steps_of(store, "inc-2") == [other]
    pending = {s.id for s in await steps_of(store, "inc-1", pending_only=True)}
    assert pending == {"s-ack", "s-mit", "s-res", "s-none"} - cancelled


async def test_cancel_outbox_of_cancels_pending_rows_of_those_kinds(store: Store) -> None:
    rows = [
        outbox("page", kind="page"),
        outbox("reminder", kind="reminder", created_at=m(1)),
        outbox("resolve", kind="resolve", created_at=m(2)),
        outbox("page-sent", kind="page", created_at=m(3), state=OutboxState.SENT, sent_at=m(3)),
    ]
    other = outbox("other", "inc-2", kind="page")
    await apply(store, new_outbox=[*rows, other])
    await apply(store, cancel_outbox_of=[("inc-1", ("page", "reminder")), ("inc-1", ())])
    assert states(await outbox_of(store, "inc-1")) == {
        "page": "cancelled",
        "reminder": "cancelled",
        "resolve": "pending",
        "page-sent": "sent",
    }
    assert states(await outbox_of(store, "inc-2")) == {"other": "pending"}


async def test_cancellations_apply_before_inserts_of_the_same_changes(store: Store) -> None:
    # A reopen / severity raise cancels the old run and schedules a new one in one decision.
    await apply(store, new_steps=[step("e0", due=m(5))], new_outbox=[outbox("o-e0")])
    await apply(
        store,
        cancel_steps_of=[("inc-1", None, "superseded")],
        new_steps=[step("e1", due=m(6), epoch=1)],
        cancel_outbox_of=[("inc-1", ("page",))],
        new_outbox=[outbox("o-e1", created_at=m(1))],
    )
    assert states(await steps_of(store, "inc-1")) == {"e0": "cancelled", "e1": "pending"}
    assert states(await outbox_of(store, "inc-1")) == {"o-e0": "cancelled", "o-e1": "pending"}


async def test_step_updates_set_state_and_clear_the_lease(store: Store) -> None:
    await apply(store, new_steps=[step("s1", due=m(0)), step("s2", due=m(0))])
    assert await claim_steps(store, m(1), "a", m(10)) == ["s1", "s2"]
    await apply(
        store,
        step_updates=[
            ("s1", StepState.FIRED, m(1), "paged alice"),
            ("s2", StepState.PENDING, None, "retry"),
        ],
    )
    got = {s.id: s for s in await steps_of(store, "inc-1")}
    assert got["s1"] == step(
        "s1", due=m(0), state=StepState.FIRED, fired_at=m(1), note="paged alice"
    )
    assert got["s2"] == step("s2", due=m(0), note="retry")
    # s2's lease was released: another replica may take it before the old lease would expire.
    assert await claim_steps(store, m(2), "b", m(12)) == ["s2"]


async def test_reschedule_moves_a_pending_step_and_clears_its_lease(store: Store) -> None:
    await apply(store, new_steps=[step("s1", due=m(0)), step("gone", due=m(0))])
    assert await claim_steps(store, m(1), "a", m(10)) == ["gone", "s1"]  # same due: by id
    await apply(store, cancel_steps_of=[("inc-1", None, "acked")])
    await apply(store, new_steps=[step("s3", due=m(0))])
    await apply(
        store,
        step_reschedules=[("s3", m(30), "quiet hours until 12:30"), ("gone", m(30), "late")],
    )
    got = {s.id: s for s in await steps_of(store, "inc-1")}
    assert got["s3"] == step("s3", due=m(30), note="quiet hours until 12:30")
    assert got["gone"] == step("gone", due=m(0), state=StepState.CANCELLED, note="acked")
    assert await store.next_due() == m(30)
    assert await claim_steps(store, m(29), "b", m(40)) == []
    assert await claim_steps(store, m(30), "b", m(40)) == ["s3"]


async def test_claim_due_steps_respects_due_time_state_lease_and_limit(store: Store) -> None:
    await apply(
        store,
        new_steps=[
            step("s2", due=m(1)),
            step("s1", due=m(0)),
            step("future", due=m(10)),
            step("fired", due=m(0), state=StepState.FIRED, fired_at=m(0)),
            step("cancelled", due=m(0), state=StepState.CANCELLED),
        ],
    )
    async with store.transaction() as tx:
        claimed = await tx.claim_due_steps(m(5), "replica-a", m(6), 10)
        assert await tx.claim_due_steps(m(5), "replica-a", m(6), 0) == []
    assert claimed == [step("s1", due=m(0)), step("s2", due=m(1))]
    assert await claim_steps(store, m(5), "replica-b", m(7)) == []  # leases are live
    just_before_expiry = m(6) - timedelta(microseconds=1)
    assert await claim_steps(store, just_before_expiry, "replica-b", m(7)) == []
    # At expiry the lease is free again: a dead replica's work is picked up.
    assert await claim_steps(store, m(6), "replica-b", m(8), limit=1) == ["s1"]
    assert await claim_steps(store, m(6), "replica-c", m(8)) == ["s2"]
    assert await claim_steps(store, m(10), "replica-c", m(11)) == ["s1", "s2", "future"]


async def test_claim_outbox_respects_not_before_state_lease_and_limit(store: Store) -> None:
    await apply(
        store,
        new_outbox=[
            outbox("o2", not_before=m(1)),
            outbox("o1", not_before=m(0)),
            outbox("o1b", not_before=m(0), created_at=m(0.5)),
            outbox("later", not_before=m(10)),
            outbox("sent", not_before=m(0), state=OutboxState.SENT, sent_at=m(0)),
        ],
    )
    async with store.transaction() as tx:
        claimed = await tx.claim_outbox(m(5), "a", m(6), 2)
    assert claimed == [
        outbox("o1", not_before=m(0)),
        outbox("o1b", not_before=m(0), created_at=m(0.5)),
    ]
    assert await claim_outbox(store, m(5), "b", m(7)) == ["o2"]
    assert await claim_outbox(store, m(5), "c", m(7)) == []
    assert await claim_outbox(store, m(6), "c", m(8)) == ["o1", "o1b"]
    assert await claim_outbox(store, m(10), "c", m(11)) == ["o1", "o1b", "o2", "later"]


async def test_record_delivery_writes_outcome_and_releases_lease(store: Store) -> None:
    await apply(store, new_outbox=[outbox("o1")])
    assert await claim_outbox(store, m(1), "a", m(10)) == ["o1"]
    async with store.transaction() as tx:
        await tx.record_delivery(
            "o1", OutboxState.PENDING, attempts=1, error="HTTP 503", not_before=m(2)
        )
    assert await outbox_of(store, "inc-1") == [
        outbox("o1", attempts=1, last_error="HTTP 503", not_before=m(2))
    ]
    assert await claim_outbox(store, m(2), "b", m(12)) == ["o1"]  # lease released
    async with store.transaction() as tx:
        await tx.record_delivery(
            "o1", OutboxState.SENT, attempts=2, provider_id="pd-1", sent_at=m(2.5)
        )
    sent = outbox(
        "o1",
        attempts=2,
        not_before=m(2),
        state=OutboxState.SENT,
        sent_at=m(2.5),
        provider_id="pd-1",
    )
    assert await outbox_of(store, "inc-1") == [sent]
    async with store.transaction() as tx:
        # Empty provider id / no sent_at keep what is stored.
        await tx.record_delivery("o1", OutboxState.SENT, attempts=3, error="")
    assert await outbox_of(store, "inc-1") == [replace(sent, attempts=3)]
    assert await claim_outbox(store, m(60), "c", m(70)) == []  # not pending any more
    with pytest.raises(StoreError, match="no outbox row 'missing'"):
        async with store.transaction() as tx:
            await tx.record_delivery("missing", OutboxState.SENT, attempts=1)


async def test_concurrent_claimers_never_share_a_row(store: Store) -> None:
    await apply(
        store,
        new_steps=[step(f"s{i:02}", due=m(i / 10)) for i in range(12)],
        new_outbox=[outbox(f"o{i:02}", not_before=m(i / 10)) for i in range(12)],
    )
    step_claims = await asyncio.gather(
        *(claim_steps(store, m(5), f"r{i}", m(6), 3) for i in range(6))
    )
    out_claims = await asyncio.gather(
        *(claim_outbox(store, m(5), f"r{i}", m(6), 3) for i in range(6))
    )
    for claims, prefix in ((step_claims, "s"), (out_claims, "o")):
        flat = [c for batch in claims for c in batch]
        assert sorted(flat) == [f"{prefix}{i:02}" for i in range(12)]  # each exactly once
        # SKIP LOCKED may hand a claimer fewer rows than its limit while others hold some
        # locked, so only the bound is exact; the sharing-free property is the line above.
        assert all(len(b) <= 3 for b in claims)


async def test_lock_keys_serialises_writers_on_one_key(store: Store) -> None:
    order: list[str] = []
    locked = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            await tx.lock_keys(["k1", "k2"])
            order.append("first locked")
            locked.set()
            await release.wait()
            order.append("first done")

    async def second() -> None:
        async with store.transaction() as tx:
            await tx.lock_keys(["k2"])
            order.append("second locked")

    t1 = asyncio.create_task(first())
    await locked.wait()
    t2 = asyncio.create_task(second())
    await asyncio.sleep(0.2)
    assert order == ["first locked"]  # second waits on k2
    release.set()
    await asyncio.gather(t1, t2)
    assert order == ["first locked", "first done", "second locked"]


async def test_next_due(store: Store) -> None:
    assert await store.next_due() is None
    await apply(
        store,
        new_steps=[
            step("s", due=m(5)),
            step("fired", due=m(1), state=StepState.FIRED, fired_at=m(1)),
            step("cancelled", due=m(0), state=StepState.CANCELLED),
        ],
        new_outbox=[
            outbox("o", not_before=m(3)),
            outbox("sent", not_before=m(0), state=OutboxState.SENT),
        ],
    )
    assert await store.next_due() == m(3)
    assert await claim_outbox(store, m(3), "a", m(20)) == ["o"]
    assert await store.next_due() == m(5)  # the leased outbox row waits for its lease
    assert await claim_steps(store, m(5), "a", m(6)) == ["s"]
    assert await store.next_due() == m(6)  # a leased step is due again when its lease expires
    await apply(store, step_updates=[("s", StepState.FIRED, m(5), "")])
    assert await store.next_due() == m(20)
    async with store.transaction() as tx:
        await tx.record_delivery("o", OutboxState.SENT, attempts=1, sent_at=m(4))
    assert await store.next_due() is None


async def test_seen_delivery(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.seen_delivery("pagerduty", "d-1", T0) is False
        assert await tx.seen_delivery("pagerduty", "d-1", T0) is True
    async with store.transaction() as tx:
        assert await tx.seen_delivery("pagerduty", "d-1", m(1)) is True
        assert await tx.seen_delivery("phone", "d-1", m(1)) is False
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            assert await tx.seen_delivery("email", "d-2", m(1)) is False
            raise RuntimeError("handler failed")
    async with store.transaction() as tx:
        # Rolled back with the failed unit: the retry is processed, not dropped as a duplicate.
        assert await tx.seen_delivery("email", "d-2", m(2)) is False


async def test_prune_deliveries_forgets_one_source_past_its_window(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.seen_delivery("pagerduty", "old", T0)
        await tx.seen_delivery("pagerduty", "new", m(10))
        await tx.seen_delivery("twilio-sms", "old", T0)
    async with store.transaction() as tx:
        assert await tx.prune_deliveries("pagerduty", m(5)) == 1
    async with store.transaction() as tx:
        # Forgotten: seen again as new. The newer id and the other source's are still known.
        assert await tx.seen_delivery("pagerduty", "old", m(11)) is False
        assert await tx.seen_delivery("pagerduty", "new", m(11)) is True
        assert await tx.seen_delivery("twilio-sms", "old", m(11)) is True


async def _three_incidents(store: Store) -> None:
    await apply(
        store,
        new_incidents=[
            incident("a", key="ka", opened=T0, severity="P1", team="db"),
            incident(
                "b", key="kb", opened=m(60), severity="P2", team="web", status=Status.ACKNOWLEDGED
            ),
            incident(
                "c", key="kc", opened=m(120), severity="P1", team="db", status=Status.RESOLVED
            ),
            incident("d", key="kd", opened=m(120), severity="P3", team=None),
        ],
        key_aliases=[("alias-of-b", "b")],
    )


async def test_find_incident_by_id_number_and_key(store: Store) -> None:
    await _three_incidents(store)

    async def find(ref: str) -> str | None:
        found = await store.find_incident(ref)
        return None if found is None else found.id

    assert await find("a") == "a"
    assert await find("2") == "b"
    assert await find("#3") == "c"
    assert await find(" #3 ") == "c"
    assert await find("kb") == "b"
    assert await find("alias-of-b") == "b"
    assert await find("#99") is None
    assert await find("99999999999999999999999999") is None
    assert await find("nope") is None
    assert await find("") is None
    assert await store.get_incident("nope") is None


async def test_list_incidents_newest_first_with_filters(store: Store) -> None:
    await _three_incidents(store)

    async def ids(**kw: Any) -> list[str]:
        return [i.id for i in await store.list_incidents(IncidentFilter(**kw))]

    assert await ids() == ["d", "c", "b", "a"]  # same opened_at: the later number first
    assert await ids(status=["triggered", "acknowledged"]) == ["d", "b", "a"]
    assert await ids(status=[Status.RESOLVED]) == ["c"]
    assert await ids(severity=["P1"]) == ["c", "a"]
    assert await ids(severity=["P1", "P2"], status=["triggered"]) == ["a"]
    assert await ids(team="db") == ["c", "a"]
    assert await ids(team="nobody") == []
    assert await ids(limit=2) == ["d", "c"]
    assert await ids(limit=0) == []


async def test_list_incidents_in_board_order_by_text_and_by_page(store: Store) -> None:
    await _three_incidents(store)

    async def ids(**kw: Any) -> list[str]:
        return [i.id for i in await store.list_incidents(IncidentFilter(**kw))]

    async def count(**kw: Any) -> int:
        return await store.count_incidents(IncidentFilter(**kw))

    # Triggered (most severe first), acknowledged, then resolved.
    assert await ids(board_order=True) == ["a", "d", "b", "c"]
    assert await ids(board_order=True, limit=2, offset=1) == ["d", "b"]
    assert await ids(board_order=True, offset=9) == []
    assert await ids(text="TITLE B") == ["b"]  # title, any case
    assert await ids(text="kc") == ["c"]  # key
    assert await ids(text="we") == ["b"]  # team
    assert await ids(text="#4") == ["d"]  # number
    assert await ids(text="%") == [] and await ids(text="_") == []  # no wildcards
    assert await count() == 4
    assert await count(status=["triggered"], limit=1, offset=1) == 2
    assert await count(text="title", team="db") == 2
    assert await count(text="nothing like it") == 0


async def test_counts_and_outbox_depth(store: Store) -> None:
    assert await store.counts() == {}
    assert await store.outbox_depth() == {}
    await _three_incidents(store)
    await apply(store, new_incidents=[incident("e", severity="P1")])
    await apply(
        store,
        new_outbox=[
            outbox("o1", channel="pagerduty"),
            outbox("o2", channel="pagerduty"),
            outbox("o3", channel="email"),
            outbox("o4", channel="sms", state=OutboxState.SENT),
            outbox("o5", channel="email", state=OutboxState.CANCELLED),
        ],
    )
    assert await store.counts() == {
        ("P1", "triggered"): 2,
        ("P2", "acknowledged"): 1,
        ("P3", "triggered"): 1,
    }
    assert await store.outbox_depth() == {"pagerduty": 2, "email": 1}


async def test_timeline_in_time_order_with_ties_in_insertion_order(store: Store) -> None:
    e1 = event("a", m(5), "notify", "first at 5")
    e2 = event("a", m(5), "notify", "second at 5")
    e0 = event("a", m(1), "open", "earlier, written later")
    await apply(store, timeline=[e1, e2])
    await apply(store, timeline=[e0, event("b", m(0), "open")])
    assert await store.timeline("a") == [e0, e1, e2]
    assert await store.timeline("none") == []


async def test_outbox_of_orders_by_creation_then_insertion(store: Store) -> None:
    await apply(store, new_outbox=[outbox("z", created_at=m(1)), outbox("y", created_at=m(0))])
    await apply(store, new_outbox=[outbox("x", created_at=m(1))])
    assert [o.id for o in await outbox_of(store, "inc-1")] == ["y", "z", "x"]


async def test_exception_rolls_back_everything(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction() as tx:
            await tx.apply(
                Changes(
                    new_incidents=[incident("a")],
                    upsert_alerts=[alert("a", "fp")],
                    timeline=[event("a", T0, "open")],
                    new_steps=[step("s", "a")],
                    new_outbox=[outbox("o", "a")],
                    key_aliases=[("alias", "a")],
                )
            )
            raise RuntimeError("boom")
    assert await store.get_incident("a") is None
    assert await store.find_incident("alias") is None
    assert await store.timeline("a") == []
    assert await store.next_due() is None
    assert await store.list_incidents(IncidentFilter()) == []
    async with store.transaction() as tx:
        assert await tx.alerts_of("a") == []
        assert await tx.steps_of("a") == []
        assert await tx.outbox_of("a") == []


async def test_failed_apply_writes_nothing_even_if_the_caller_goes_on(store: Store) -> None:
    await apply(store, new_incidents=[incident("a")])
    stale = await store.get_incident("a")
    assert stale is not None
    await apply(store, updated_incidents=[replace(stale, title="moved on")])
    async with store.transaction() as tx:
        with pytest.raises(Conflict):
            await tx.apply(
                Changes(
                    new_incidents=[incident("b")],
                    timeline=[event("a", m(1), "note", "half")],
                    updated_incidents=[replace(stale, title="stale")],
                )
            )
        await tx.apply(Changes(timeline=[event("a", m(2), "note", "after")]))
    assert await store.get_incident("b") is None
    assert [e.message for e in await store.timeline("a")] == ["after"]
    assert (await store.get_incident("a")).title == "moved on"  # type: ignore[union-attr]


async def test_driver_errors_surface_as_store_error(store: Store, backend_name: str) -> None:
    await apply(store, new_incidents=[incident("a")])
    with pytest.raises(StoreError) as caught:
        await apply(store, new_incidents=[incident("a", key="other")])
    assert not isinstance(caught.value, Conflict)
    cause = caught.value.__cause__
    expected = sqlite3.IntegrityError if backend_name == "sqlite" else asyncpg.UniqueViolationError
    assert isinstance(cause, expected)
    # The store is still usable after the failed unit.
    assert (await store.get_incident("a")).key == "key-a"  # type: ignore[union-attr]


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        await apply(store, new_steps=[step("s", due=datetime(2026, 1, 1))])
    assert await steps_of(store, "inc-1") == []


async def test_tx_is_unusable_after_its_block(store: Store) -> None:
    async with store.transaction() as tx:
        pass
    with pytest.raises(StoreError, match="finished"):
        await tx.get_incident("a")


async def test_migrations_are_idempotent_on_reopen(make: Callable[[], Store]) -> None:
    first = make()
    await first.open()
    await apply(first, new_incidents=[incident("a")])
    assert await first.schema_versions() == ALL_VERSIONS  # type: ignore[attr-defined]
    await first.close()
    second = make()
    await second.open()
    try:
        assert await second.schema_versions() == ALL_VERSIONS  # type: ignore[attr-defined]
        assert (await second.get_incident("a")).number == 1  # type: ignore[union-attr]
        await apply(second, new_incidents=[incident("b")])
        assert (await second.get_incident("b")).number == 2  # type: ignore[union-attr]
    finally:
        await second.close()
    assert latest_version() == ALL_VERSIONS[-1]


async def test_ping_and_closed_store(store: Store) -> None:
    await store.ping()
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()
    with pytest.raises(StoreError):
        async with store.transaction():
            pass
    with pytest.raises(StoreError):
        await store.get_incident("a")


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(getattr(cls, name))
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name))
    }


@pytest.mark.parametrize(
    ("protocol", "impl"),
    [
        (Store, SqliteStore),
        (Store, PostgresStore),
        (Tx, sqlite_backend._SqliteTx),
        (Tx, postgres_backend._PgTx),
    ],
)
def test_backends_implement_the_protocols_exactly(protocol: type, impl: type) -> None:
    wanted = _public_methods(protocol)
    got = _public_methods(impl)
    for name, signature in wanted.items():
        assert name in got, f"{impl.__name__} lacks {name}"
        assert list(got[name].parameters.values()) == list(signature.parameters.values()), name
        assert inspect.iscoroutinefunction(getattr(impl, name)) == inspect.iscoroutinefunction(
            getattr(protocol, name)
        ), name
