"""The shared SQL layer on its own, without a database: dialects, row mappers, change sets as
statements, and the query protocol both backends drive."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from typing import Any

import pytest

from escalation.incidents.model import (
    AlertStatus,
    Changes,
    DeliveryOutcome,
    EventKind,
    OutboxKind,
    OutboxState,
    Status,
    StepKind,
    StepState,
)
from escalation.store.base import Conflict
from escalation.store.sql.dialect import Dialect
from escalation.store.sql.postgres import POSTGRES, numbered
from escalation.store.sql.postgres import QUERIES as PG_QUERIES
from escalation.store.sql.rows import Table, tables
from escalation.store.sql.sqlite import QUERIES as SQLITE_QUERIES
from escalation.store.sql.sqlite import SQLITE
from escalation.store.sql.statement import Mode, Query, Statement, Steps, execute, fetch
from tests.escalation.store.records import T0, alert, event, incident, m, outbox, step


def drive(query: Query[Any], answer: Any = None) -> tuple[list[Statement], Any]:
    """Run ``query`` against no database: every statement gets ``answer`` (``[]`` for a fetch)."""
    steps = Steps(query)
    seen: list[Statement] = []
    result: Any = None
    while (stmt := steps.next(result)) is not None:
        seen.append(stmt)
        result = [] if stmt.mode is Mode.FETCH else answer
    return seen, steps.answer


def test_numbered_placeholders_follow_the_text_order() -> None:
    sql = "UPDATE t SET a = ?, b = ? WHERE c = ANY(?::text[]) AND d = ?"
    assert numbered(sql) == "UPDATE t SET a = $1, b = $2 WHERE c = ANY($3::text[]) AND d = $4"


@pytest.mark.parametrize(
    ("dialect", "sql", "params"),
    [
        (SQLITE, "kind IN (?, ?)", ["page", "reminder"]),
        (POSTGRES, "kind = ANY(?::text[])", [["page", "reminder"]]),
    ],
)
def test_in_list_binds_items_or_one_array(dialect: Dialect, sql: str, params: list[Any]) -> None:
    assert dialect.in_list("kind", ("page", "reminder")) == (sql, params)


def test_steps_drive_a_composed_query_to_its_answer() -> None:
    def inner() -> Query[int]:
        count = yield from execute("UPDATE t SET x = ?", 1)
        return count + 1

    def outer() -> Query[tuple[int, int]]:
        rows = yield from fetch("SELECT x FROM t WHERE y = ?", "y")
        got = yield from inner()
        return len(rows), got

    steps = Steps(outer())
    assert steps.name == "outer"
    first = steps.next(None)
    assert first == Statement("SELECT x FROM t WHERE y = ?", ("y",), Mode.FETCH)
    second = steps.next([{"x": 1}, {"x": 2}])
    assert second == Statement("UPDATE t SET x = ?", (1,), Mode.COUNT)
    assert steps.next(3) is None
    assert steps.answer == (2, 4)


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_every_record_survives_params_then_read(dialect: Dialect) -> None:
    t = tables(dialect)
    records: list[tuple[Table[Any], Any]] = [
        (t.incident, incident("a", acknowledged_at=m(3), labels={"team": "db"})),
        (t.alert, alert("a", "fp-1", ends_at=m(4))),
        (t.step, step("s1", "a", due=m(5), state=StepState.FIRED, fired_at=m(5))),
        (t.outbox, outbox("o1", "a", state=OutboxState.SENT, sent_at=m(6))),
        (t.event, event("a", m(7), "open", "opened")),
    ]
    for table, record in records:
        names = [f.name for f in fields(record)]
        row = dict(zip(names, table.params(record), strict=True))
        assert table.read(row) == record


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_kinds_and_statuses_read_back_as_their_enums(dialect: Dialect) -> None:
    # The database hands back plain strings; records carry the domain's enums, not look-alikes.
    t = tables(dialect)
    cases: list[tuple[Table[Any], Any, str, type[Enum]]] = [
        (t.incident, incident("a"), "status", Status),
        (t.alert, alert("a", "fp-1"), "status", AlertStatus),
        (t.step, step("s1", "a", due=m(5)), "kind", StepKind),
        (t.step, step("s1", "a", due=m(5)), "state", StepState),
        (t.outbox, outbox("o1", "a"), "kind", OutboxKind),
        (t.outbox, outbox("o1", "a"), "state", OutboxState),
        (t.event, event("a", m(7), "open", "opened"), "kind", EventKind),
    ]
    for table, record, name, enum in cases:
        names = [f.name for f in fields(record)]
        row = dict(zip(names, table.params(record), strict=True))
        row = {k: v.value if isinstance(v, Enum) else v for k, v in row.items()}
        assert type(getattr(table.read(row), name)) is enum, (table, name)


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_enum_columns_bind_their_plain_values_from_a_member_or_its_string(
    dialect: Dialect,
) -> None:
    t = tables(dialect)
    names = [f.name for f in fields(outbox("o1", "a"))]
    for state in (OutboxState.SENT, "sent"):
        row = dict(zip(names, t.outbox.params(outbox("o1", "a", state=state)), strict=True))
        assert type(row["state"]) is str and row["state"] == "sent"
        assert type(row["kind"]) is str and row["kind"] == "page"


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_a_state_outside_its_enum_never_reaches_the_table(dialect: Dialect) -> None:
    t = tables(dialect)
    with pytest.raises(ValueError, match=r"OutboxRecord\.state: 'sending' is not a OutboxState"):
        t.outbox.params(outbox("o1", "a", state="sending"))
    with pytest.raises(ValueError, match=r"StepRecord\.kind: 'nap' is not a StepKind"):
        t.step.params(step("s1", "a", due=m(5), kind="nap"))


def test_sqlite_params_store_instants_as_microseconds_and_json_as_text() -> None:
    params = tables(SQLITE).event.params(event("a", T0, "open", "opened"))
    assert params[1] == 1_772_366_400_000_000
    assert params[-1] == "{}"


def test_a_change_set_becomes_statements_cancellations_before_inserts() -> None:
    ch = Changes(
        new_incidents=[incident("a")],
        key_aliases=[("alias", "a")],
        upsert_alerts=[alert("a", "fp-1")],
        timeline=[event("a", T0, "open")],
        cancel_steps_of=[("a", ("acknowledged", None), "acked")],
        step_updates=[("s0", StepState.FIRED, T0, "")],
        step_reschedules=[("s1", m(1), "later")],
        new_steps=[step("s2", "a")],
        cancel_outbox_of=[("a", ("page",))],
        new_outbox=[outbox("o1", "a")],
        deliveries=[DeliveryOutcome("o0", OutboxState.SENT, 1)],
    )
    seen, _ = drive(SQLITE_QUERIES.apply(ch), answer=1)
    heads = [" ".join(s.sql.split()[:3]) for s in seen]
    assert heads == [
        "INSERT INTO incidents",
        "INSERT INTO incident_keys",
        "INSERT INTO incident_keys",
        "INSERT INTO alerts",
        "INSERT INTO timeline",
        "UPDATE steps SET",  # the cancellation
        "UPDATE steps SET",
        "UPDATE steps SET",
        "INSERT INTO steps",
        "UPDATE outbox SET",  # the cancellation
        "INSERT INTO outbox",
        "UPDATE outbox SET",
    ]
    assert "unless IN (?) OR unless IS NULL" in seen[5].sql
    assert [s.mode for s in seen].count(Mode.MANY) == 9


@pytest.mark.parametrize("queries", [SQLITE_QUERIES, PG_QUERIES], ids=["sqlite", "postgres"])
def test_the_incidents_a_batch_opens_are_one_statement_and_their_keys_another(
    queries: Any,
) -> None:
    # On PostgreSQL each statement is a round trip: a batch of new incidents must not cost two
    # per incident.
    ch = Changes(new_incidents=[incident(i) for i in "abc"])
    seen, _ = drive(queries.apply(ch), answer=1)
    writes = [s for s in seen if "pg_notify" not in s.sql]
    assert [(" ".join(s.sql.split()[:3]), s.mode) for s in writes] == [
        ("INSERT INTO incidents", Mode.MANY),
        ("INSERT INTO incident_keys", Mode.MANY),
    ]
    assert [row[0] for row in writes[0].params] == ["a", "b", "c"]
    assert [tuple(row) for row in writes[1].params] == [(f"key-{i}", i) for i in "abc"]


@pytest.mark.parametrize(
    ("ch", "notifies"),
    [
        (Changes(new_steps=[step("s1", "a")]), True),
        (Changes(new_outbox=[outbox("o1", "a")]), True),
        (Changes(step_reschedules=[("s1", m(1), "")]), True),
        (Changes(timeline=[event("a", T0, "note")]), False),
    ],
)
def test_postgres_wakes_other_replicas_only_for_new_work(ch: Changes, notifies: bool) -> None:
    seen, _ = drive(PG_QUERIES.apply(ch), answer=1)
    assert any("pg_notify" in s.sql for s in seen) == notifies
    assert not any("pg_notify" in s.sql for s in drive(SQLITE_QUERIES.apply(ch), answer=1)[0])


def test_a_stale_compare_and_set_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="no longer at version 0"):
        drive(SQLITE_QUERIES.apply(Changes(updated_incidents=[incident("a")])), answer=0)


def test_empty_cancellations_write_nothing() -> None:
    ch = Changes(cancel_steps_of=[("a", (), "")], cancel_outbox_of=[("a", ())])
    assert drive(SQLITE_QUERIES.apply(ch))[0] == []
