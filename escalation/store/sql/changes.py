"""A change set as statements: what ``Tx.apply`` writes, the same for every dialect.

Order matters: cancellations run before inserts so a decision that cancels the old escalation
and schedules a new one (reopen, severity raise) keeps the new steps. Batches of rows go through
one executemany each, as the ingest and dispatch hot paths need.
"""

from __future__ import annotations

from typing import Any

from escalation.incidents.model import Changes, DeliveryOutcome, OutboxState, StepState
from escalation.store.base import Conflict
from escalation.store.sql.dialect import (
    ALERT_COLS,
    INCIDENT_COLS,
    OUTBOX_COLS,
    STEP_COLS,
    TIMELINE_COLS,
    Dialect,
)
from escalation.store.sql.rows import INCIDENT_VALUE_COLS, Tables
from escalation.store.sql.statement import Query, execute, execute_many

__all__ = ["RECORD_DELIVERY", "apply_changes", "delivery_params"]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


_UPDATE_INCIDENT = (
    "UPDATE incidents SET "
    + ", ".join(f"{c} = ?" for c in INCIDENT_VALUE_COLS)
    + ", version = version + 1 WHERE id = ? AND version = ?"
)
_UPSERT_KEY = (
    "INSERT INTO incident_keys (key, incident_id) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET incident_id = excluded.incident_id"
)
_UPSERT_ALERT = (
    f"INSERT INTO alerts ({ALERT_COLS}) VALUES ({_marks(len(ALERT_COLS.split(', ')))})"
    " ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET"
    " status = excluded.status, ends_at = excluded.ends_at,"
    " last_seen = excluded.last_seen, annotations = excluded.annotations,"
    " severity = excluded.severity, rule = excluded.rule"
)
_INSERT_EVENT = (
    f"INSERT INTO timeline ({TIMELINE_COLS}) VALUES ({_marks(len(TIMELINE_COLS.split(', ')))})"
)
_UPDATE_STEP = (
    "UPDATE steps SET state = ?, fired_at = ?, note = ?, lease_owner = NULL,"
    " lease_until = NULL WHERE id = ?"
)
# Only a pending step moves: a step an ack cancelled meanwhile stays cancelled.
_RESCHEDULE_STEP = (
    "UPDATE steps SET due_at = ?, note = ?, lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'pending'"
)
_INSERT_STEP = (
    f"INSERT INTO steps ({STEP_COLS}) VALUES ({_marks(len(STEP_COLS.split(', ')))})"
    " ON CONFLICT (id) DO NOTHING"
)
_INSERT_OUTBOX = (
    f"INSERT INTO outbox ({OUTBOX_COLS}) VALUES ({_marks(len(OUTBOX_COLS.split(', ')))})"
    " ON CONFLICT (id) DO NOTHING"
)
RECORD_DELIVERY = (
    "UPDATE outbox SET state = ?, attempts = ?, last_error = ?,"
    " provider_id = CASE WHEN ? = '' THEN provider_id ELSE ? END,"
    " sent_at = COALESCE(?, sent_at), not_before = COALESCE(?, not_before),"
    " lease_owner = NULL, lease_until = NULL WHERE id = ?"
)


def _insert_incident(d: Dialect) -> str:
    values = _marks(len(INCIDENT_VALUE_COLS))
    return f"INSERT INTO incidents ({INCIDENT_COLS}) VALUES (?, {d.next_number}, {values}, ?)"


def delivery_params(d: Dialect, o: DeliveryOutcome) -> tuple[Any, ...]:
    """Parameters of ``RECORD_DELIVERY``: an empty provider id and ``None`` instants keep the
    stored values."""
    return (
        OutboxState(o.state).value,
        o.attempts,
        o.error,
        o.provider_id,
        o.provider_id,
        d.time_out_opt(o.sent_at),
        d.time_out_opt(o.not_before),
        o.outbox_id,
    )


def apply_changes(d: Dialect, t: Tables, ch: Changes) -> Query[None]:
    """Write ``ch``; raises Conflict if an updated incident's version moved."""
    yield from _incidents(d, t, ch)
    if ch.upsert_alerts:
        yield from execute_many(_UPSERT_ALERT, [t.alert.params(a) for a in ch.upsert_alerts])
    if ch.timeline:
        yield from execute_many(_INSERT_EVENT, [t.event.params(e) for e in ch.timeline])
    yield from _steps(d, t, ch)
    yield from _outbox(d, t, ch)


def _incidents(d: Dialect, t: Tables, ch: Changes) -> Query[None]:
    # Parameters come in field order: id, number, INCIDENT_VALUE_COLS…, version.
    if ch.new_incidents:
        # One executemany each for every incident a batch opens and for their keys: on
        # PostgreSQL that is one round trip instead of two per incident (asyncpg pipelines an
        # executemany). SQLite evaluates the number subquery row by row, so numbers still
        # follow the incidents' order.
        rows = [t.incident.params(inc) for inc in ch.new_incidents]
        yield from execute_many(_insert_incident(d), [(p[0], *p[2:]) for p in rows])
        yield from execute_many(_UPSERT_KEY, [(inc.key, inc.id) for inc in ch.new_incidents])
    for inc in ch.updated_incidents:
        p = t.incident.params(inc)
        count = yield from execute(_UPDATE_INCIDENT, *p[2:-1], p[0], p[-1])
        if count != 1:
            raise Conflict(f"incident {inc.id} is no longer at version {inc.version}")
    for key, incident_id in ch.key_aliases:
        yield from execute(_UPSERT_KEY, key, incident_id)


def _steps(d: Dialect, t: Tables, ch: Changes) -> Query[None]:
    for incident_id, unless, note in ch.cancel_steps_of:
        where = "incident_id = ? AND state = 'pending'"
        args: list[Any] = [note, incident_id]
        if unless is not None:
            values = [u for u in unless if u is not None]
            alternatives = []
            if values:
                condition, params = d.in_list("unless", values)
                alternatives.append(condition)
                args.extend(params)
            if None in unless:
                alternatives.append("unless IS NULL")
            if not alternatives:
                continue  # an empty tuple cancels nothing
            where += " AND (" + " OR ".join(alternatives) + ")"
        yield from execute(
            "UPDATE steps SET state = 'cancelled', note = ?, lease_owner = NULL,"
            f" lease_until = NULL WHERE {where}",
            *args,
        )
    if ch.step_updates:
        yield from execute_many(
            _UPDATE_STEP,
            [
                (StepState(state).value, d.time_out_opt(fired_at), note, step_id)
                for step_id, state, fired_at, note in ch.step_updates
            ],
        )
    if ch.step_reschedules:
        yield from execute_many(
            _RESCHEDULE_STEP,
            [(d.time_out(due), note, step_id) for step_id, due, note in ch.step_reschedules],
        )
    if ch.new_steps:
        yield from execute_many(_INSERT_STEP, [t.step.params(s) for s in ch.new_steps])


def _outbox(d: Dialect, t: Tables, ch: Changes) -> Query[None]:
    for incident_id, kinds in ch.cancel_outbox_of:
        if not kinds:
            continue  # no kinds cancels nothing
        condition, params = d.in_list("kind", kinds)
        yield from execute(
            "UPDATE outbox SET state = 'cancelled', lease_owner = NULL, lease_until = NULL"
            f" WHERE incident_id = ? AND state = 'pending' AND {condition}",
            incident_id,
            *params,
        )
    if ch.new_outbox:
        yield from execute_many(_INSERT_OUTBOX, [t.outbox.params(o) for o in ch.new_outbox])
    if ch.deliveries:
        yield from execute_many(RECORD_DELIVERY, [delivery_params(d, o) for o in ch.deliveries])
