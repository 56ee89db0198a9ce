"""SQLite store backend: the embedded default, one file, one process.

Threading: ``sqlite3`` blocks, so every database call runs on ONE dedicated worker thread
(``ThreadPoolExecutor(max_workers=1)``) through ``loop.run_in_executor``; the event loop never
touches the database. Each ``Tx`` method is a single hop to that thread. Because the worker is a
FIFO, a rollback queued after a cancelled call still runs after it, never before.

Durability: WAL journal with ``synchronous=FULL``, so a committed transaction survives power
loss (a 2xx means committed). Writers take ``BEGIN IMMEDIATE`` and an ``asyncio.Lock``
serialises transactions in-process. Reads outside a transaction use a second connection, so
they see committed data only, even while a transaction is open.

Single replica: an exclusive, non-blocking ``flock`` on ``<path>.lock``, held for the store's
lifetime, refuses a second process (or a second store in this one) on the same file.

Errors: ``sqlite3.Error`` and ``OSError`` surface as ``StoreError`` (chained with ``from``);
``Conflict`` stays distinct.

Instants are stored as INTEGER microseconds since the Unix epoch (UTC): exact, and ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from escalation.incidents.model import (
    AlertRecord,
    Changes,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    StepRecord,
    StepState,
    TimelineEvent,
)
from escalation.store.base import Conflict, IncidentFilter, IngestContext, StoreError, Tx
from escalation.store.migrations import migrate_sqlite
from escalation.store.sql.dialect import (
    ALERT_COLS as _ALERT_COLS,
)
from escalation.store.sql.dialect import (
    INCIDENT_COLS as _INCIDENT_COLS,
)
from escalation.store.sql.dialect import (
    INCIDENT_COLS_I as _INCIDENT_COLS_I,
)
from escalation.store.sql.dialect import (
    OUTBOX_COLS as _OUTBOX_COLS,
)
from escalation.store.sql.dialect import (
    STEP_COLS as _STEP_COLS,
)
from escalation.store.sql.dialect import (
    TIMELINE_COLS as _TIMELINE_COLS,
)
from escalation.store.sql.dialect import (
    Dialect,
    dumps,
)
from escalation.store.sql.rows import incident_values, mappers

__all__ = ["SINGLE_REPLICA_MESSAGE", "SqliteStore"]

log = logging.getLogger(__name__)

SINGLE_REPLICA_MESSAGE = "SQLite is single-replica; use PostgreSQL for several replicas"

_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_CHUNK = 500  # keeps IN (...) lists well under SQLite's bound-parameter limit
_NUMBER_REF = re.compile(r"#?(\d+)")


# -- value conversion ---------------------------------------------------------------------------


def _us(dt: datetime) -> int:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: the store only keeps timezone-aware instants")
    return (dt - _EPOCH) // _ONE_US


def _us_opt(dt: datetime | None) -> int | None:
    return None if dt is None else _us(dt)


def _dt(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _dt_opt(value: int | None) -> datetime | None:
    return None if value is None else _dt(value)


SQLITE = Dialect(
    name="sqlite",
    time_out=_us,
    time_out_opt=_us_opt,
    time_in=_dt,
    time_in_opt=_dt_opt,
    json_out=dumps,
    json_in=json.loads,
    next_number="(SELECT COALESCE(MAX(number), 0) + 1 FROM incidents)",
    outbox_seq="rowid",
    for_update="",  # BEGIN IMMEDIATE already holds the one write lock
    arrays=False,
    max_list=500,  # keeps IN (...) lists well under SQLite's bound-parameter limit
)
_ROWS = mappers(SQLITE)
_incident = _ROWS.incident
_alert = _ROWS.alert
_step = _ROWS.step
_outbox = _ROWS.outbox
_event = _ROWS.event
_dumps = dumps
_INCIDENT_SET = tuple(c for c in _INCIDENT_COLS.split(", ") if c not in ("id", "number", "version"))


def _incident_params(i: IncidentRecord) -> dict[str, Any]:
    params = dict(zip(_INCIDENT_SET, incident_values(SQLITE, i), strict=True))
    params.update(id=i.id, version=i.version)
    return params


def _chunks(items: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# -- queries (run on the worker thread) ------------------------------------------------------------


def _q_get_incident(conn: sqlite3.Connection, incident_id: str) -> IncidentRecord | None:
    row = conn.execute(
        f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    return None if row is None else _incident(row)


def _q_incidents_by_key(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, IncidentRecord]:
    out: dict[str, IncidentRecord] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        rows = conn.execute(
            f"SELECT k.key AS lookup_key, {_INCIDENT_COLS_I} FROM incident_keys k"
            f" JOIN incidents i ON i.id = k.incident_id WHERE k.key IN ({_marks(len(chunk))})",
            tuple(chunk),
        )
        for row in rows:
            out[row["lookup_key"]] = _incident(row)
    return out


def _q_incidents_by_occurrence(
    conn: sqlite3.Connection, occurrences: Sequence[tuple[str, datetime]]
) -> dict[tuple[str, datetime], str]:
    # One indexed query per chunk of fingerprints; the startsAt match is done here.
    wanted = {(fp, _us(at)): (fp, at) for fp, at in occurrences}
    newest: dict[tuple[str, int], tuple[int, str]] = {}
    fingerprints = list(dict.fromkeys(fp for fp, _ in wanted))
    for chunk in _chunks(fingerprints):
        rows = conn.execute(
            "SELECT a.fingerprint, a.starts_at, a.incident_id, i.number FROM alerts a"
            " JOIN incidents i ON i.id = a.incident_id"
            f" WHERE a.fingerprint IN ({_marks(len(chunk))})",
            tuple(chunk),
        )
        for fp, at, incident_id, number in rows:
            if (fp, at) not in wanted:
                continue
            best = newest.get((fp, at))
            if best is None or number > best[0]:
                newest[(fp, at)] = (number, incident_id)
    return {wanted[occ]: incident_id for occ, (_, incident_id) in newest.items()}


def _q_ingest_context(
    conn: sqlite3.Connection, occurrences_by_key: dict[str, list[tuple[str, datetime]]]
) -> IngestContext:
    by_key = _q_incidents_by_key(conn, list(occurrences_by_key))
    incidents = {inc.id: inc for inc in by_key.values()}
    by_occurrence: dict[str, str] = {}
    for key, occurrences in occurrences_by_key.items():
        if key in by_key or not occurrences:
            continue
        found = _q_incidents_by_occurrence(conn, occurrences)
        for occ in occurrences:
            if occ in found:
                by_occurrence[key] = found[occ]
                break
    for incident_id in set(by_occurrence.values()) - set(incidents):
        inc = _q_get_incident(conn, incident_id)
        if inc is not None:
            incidents[incident_id] = inc
    return IngestContext(
        by_key=by_key,
        by_occurrence={k: v for k, v in by_occurrence.items() if v in incidents},
        incidents=incidents,
        alerts={i: _q_alerts_of(conn, i) for i in incidents},
        outbox={i: _q_outbox_of(conn, i) for i in incidents},
    )


def _q_alerts_of(conn: sqlite3.Connection, incident_id: str) -> list[AlertRecord]:
    rows = conn.execute(
        f"SELECT {_ALERT_COLS} FROM alerts WHERE incident_id = ? ORDER BY starts_at, fingerprint",
        (incident_id,),
    )
    return [_alert(r) for r in rows]


def _q_steps_of(conn: sqlite3.Connection, incident_id: str, pending_only: bool) -> list[StepRecord]:
    # `+state` keeps SQLite on the per-incident index (the (state, due_at) one would scan all).
    extra = " AND +state = 'pending'" if pending_only else ""
    rows = conn.execute(
        f"SELECT {_STEP_COLS} FROM steps WHERE incident_id = ?{extra} ORDER BY due_at, id",
        (incident_id,),
    )
    return [_step(r) for r in rows]


def _q_step_context(
    conn: sqlite3.Connection, step_id: str, incident_id: str
) -> tuple[IncidentRecord | None, StepRecord | None, list[OutboxRecord]]:
    inc = _q_get_incident(conn, incident_id)
    row = conn.execute(f"SELECT {_STEP_COLS} FROM steps WHERE id = ?", (step_id,)).fetchone()
    outbox = _q_outbox_of(conn, incident_id) if inc is not None else []
    return inc, (_step(row) if row is not None else None), outbox


def _q_outbox_of(conn: sqlite3.Connection, incident_id: str) -> list[OutboxRecord]:
    rows = conn.execute(
        f"SELECT {_OUTBOX_COLS} FROM outbox WHERE incident_id = ? ORDER BY created_at, rowid",
        (incident_id,),
    )
    return [_outbox(r) for r in rows]


def _q_claim_steps(
    conn: sqlite3.Connection, now: datetime, owner: str, lease_until: datetime, limit: int
) -> list[StepRecord]:
    if limit <= 0:
        return []
    now_us = _us(now)
    rows = conn.execute(
        f"UPDATE steps SET lease_owner = ?, lease_until = ? WHERE id IN ("
        " SELECT id FROM steps WHERE state = 'pending' AND due_at <= ?"
        " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY due_at, id LIMIT ?)"
        f" RETURNING {_STEP_COLS}",
        (owner, _us(lease_until), now_us, now_us, limit),
    ).fetchall()
    return sorted((_step(r) for r in rows), key=lambda s: (s.due_at, s.id))


def _q_claim_outbox(
    conn: sqlite3.Connection, now: datetime, owner: str, lease_until: datetime, limit: int
) -> list[OutboxRecord]:
    if limit <= 0:
        return []
    now_us = _us(now)
    rows = conn.execute(
        f"UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id IN ("
        " SELECT id FROM outbox WHERE state = 'pending' AND not_before <= ?"
        " AND (lease_until IS NULL OR lease_until <= ?)"
        " ORDER BY not_before, created_at, rowid LIMIT ?)"
        f" RETURNING rowid AS seq, {_OUTBOX_COLS}",
        (owner, _us(lease_until), now_us, now_us, limit),
    ).fetchall()
    rows.sort(key=lambda r: (r["not_before"], r["created_at"], r["seq"]))
    return [_outbox(r) for r in rows]


def _q_record_delivery(
    conn: sqlite3.Connection,
    outbox_id: str,
    state: OutboxState,
    attempts: int,
    error: str,
    provider_id: str,
    sent_at: datetime | None,
    not_before: datetime | None,
) -> None:
    cur = conn.execute(
        "UPDATE outbox SET state = ?, attempts = ?, last_error = ?,"
        " provider_id = CASE WHEN ? = '' THEN provider_id ELSE ? END,"
        " sent_at = COALESCE(?, sent_at), not_before = COALESCE(?, not_before),"
        " lease_owner = NULL, lease_until = NULL WHERE id = ?",
        (
            OutboxState(state).value,
            attempts,
            error,
            provider_id,
            provider_id,
            _us_opt(sent_at),
            _us_opt(not_before),
            outbox_id,
        ),
    )
    if cur.rowcount != 1:
        raise StoreError(f"no outbox row {outbox_id!r} to record a delivery on")


def _q_seen_delivery(
    conn: sqlite3.Connection, source: str, delivery_id: str, now: datetime
) -> bool:
    cur = conn.execute(
        "INSERT INTO inbound_deliveries (source, id, seen_at) VALUES (?, ?, ?)"
        " ON CONFLICT (source, id) DO NOTHING",
        (source, delivery_id, _us(now)),
    )
    return cur.rowcount == 0


def _upsert_key(conn: sqlite3.Connection, key: str, incident_id: str) -> None:
    conn.execute(
        "INSERT INTO incident_keys (key, incident_id) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET incident_id = excluded.incident_id",
        (key, incident_id),
    )


def _apply_changes(conn: sqlite3.Connection, ch: Changes) -> None:
    # Order matters: cancellations run before inserts so a decision that cancels the old
    # escalation and schedules a new one (reopen, severity raise) keeps the new steps.
    for inc in ch.new_incidents:
        params = _incident_params(inc)
        conn.execute(
            f"INSERT INTO incidents ({_INCIDENT_COLS}) VALUES (:id,"
            " (SELECT COALESCE(MAX(number), 0) + 1 FROM incidents),"
            " :key, :status, :severity, :title, :team, :policy_name, :policy, :level,"
            " :opened_at, :updated_at, :acknowledged_at, :mitigated_at, :resolved_at, :epoch,"
            " :receiver, :group_key, :rule, :labels, :version)",
            params,
        )
        _upsert_key(conn, inc.key, inc.id)
    for inc in ch.updated_incidents:
        cur = conn.execute(
            "UPDATE incidents SET key = :key, status = :status, severity = :severity,"
            " title = :title, team = :team, policy_name = :policy_name, policy = :policy,"
            " level = :level, opened_at = :opened_at, updated_at = :updated_at,"
            " acknowledged_at = :acknowledged_at, mitigated_at = :mitigated_at,"
            " resolved_at = :resolved_at, epoch = :epoch, receiver = :receiver,"
            " group_key = :group_key, rule = :rule, labels = :labels, version = version + 1"
            " WHERE id = :id AND version = :version",
            _incident_params(inc),
        )
        if cur.rowcount != 1:
            raise Conflict(f"incident {inc.id} is no longer at version {inc.version}")
    for key, incident_id in ch.key_aliases:
        _upsert_key(conn, key, incident_id)
    if ch.upsert_alerts:
        conn.executemany(
            f"INSERT INTO alerts ({_ALERT_COLS}) VALUES (:incident_id, :fingerprint, :starts_at,"
            " :status, :ends_at, :labels, :annotations, :generator_url, :severity, :rule,"
            " :first_seen, :last_seen)"
            " ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET"
            " status = excluded.status, ends_at = excluded.ends_at,"
            " last_seen = excluded.last_seen, annotations = excluded.annotations,"
            " severity = excluded.severity, rule = excluded.rule",
            [
                {
                    "incident_id": a.incident_id,
                    "fingerprint": a.fingerprint,
                    "starts_at": _us(a.starts_at),
                    "status": a.status,
                    "ends_at": _us_opt(a.ends_at),
                    "labels": _dumps(a.labels),
                    "annotations": _dumps(a.annotations),
                    "generator_url": a.generator_url,
                    "severity": a.severity,
                    "rule": a.rule,
                    "first_seen": _us(a.first_seen),
                    "last_seen": _us(a.last_seen),
                }
                for a in ch.upsert_alerts
            ],
        )
    if ch.timeline:
        conn.executemany(
            f"INSERT INTO timeline ({_TIMELINE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (e.incident_id, _us(e.at), e.kind, e.actor, e.source, e.message, _dumps(e.data))
                for e in ch.timeline
            ],
        )
    for incident_id, unless, note in ch.cancel_steps_of:
        where = "incident_id = ? AND state = 'pending'"
        args: list[Any] = [note, incident_id]
        if unless is not None:
            values = [u for u in unless if u is not None]
            alternatives = []
            if values:
                alternatives.append(f"unless IN ({_marks(len(values))})")
                args.extend(values)
            if None in unless:
                alternatives.append("unless IS NULL")
            if not alternatives:
                continue  # an empty tuple cancels nothing
            where += " AND (" + " OR ".join(alternatives) + ")"
        conn.execute(
            "UPDATE steps SET state = 'cancelled', note = ?, lease_owner = NULL,"
            f" lease_until = NULL WHERE {where}",
            args,
        )
    if ch.step_updates:
        conn.executemany(
            "UPDATE steps SET state = ?, fired_at = ?, note = ?, lease_owner = NULL,"
            " lease_until = NULL WHERE id = ?",
            [
                (StepState(state).value, _us_opt(fired_at), note, step_id)
                for step_id, state, fired_at, note in ch.step_updates
            ],
        )
    if ch.step_reschedules:
        # Only a pending step moves: a step an ack cancelled meanwhile stays cancelled.
        conn.executemany(
            "UPDATE steps SET due_at = ?, note = ?, lease_owner = NULL, lease_until = NULL"
            " WHERE id = ? AND state = 'pending'",
            [(_us(due), note, step_id) for step_id, due, note in ch.step_reschedules],
        )
    if ch.new_steps:
        conn.executemany(
            f"INSERT INTO steps ({_STEP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            [
                (
                    s.id,
                    s.incident_id,
                    s.kind,
                    s.epoch,
                    s.round,
                    s.tier,
                    _us(s.due_at),
                    StepState(s.state).value,
                    s.unless,
                    _us_opt(s.fired_at),
                    s.note,
                )
                for s in ch.new_steps
            ],
        )
    for incident_id, kinds in ch.cancel_outbox_of:
        if not kinds:
            continue
        conn.execute(
            "UPDATE outbox SET state = 'cancelled', lease_owner = NULL, lease_until = NULL"
            f" WHERE incident_id = ? AND state = 'pending' AND kind IN ({_marks(len(kinds))})",
            (incident_id, *kinds),
        )
    if ch.new_outbox:
        conn.executemany(
            f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            [
                (
                    o.id,
                    o.incident_id,
                    o.step_id,
                    o.kind,
                    o.tier,
                    o.round,
                    o.target,
                    o.person,
                    o.channel,
                    _us(o.created_at),
                    _us(o.not_before),
                    OutboxState(o.state).value,
                    o.attempts,
                    o.last_error,
                    _us_opt(o.sent_at),
                    o.provider_id,
                    _dumps(o.payload),
                )
                for o in ch.new_outbox
            ],
        )
    if ch.deliveries:
        conn.executemany(
            "UPDATE outbox SET state = ?, attempts = ?, last_error = ?,"
            " provider_id = CASE WHEN ? = '' THEN provider_id ELSE ? END,"
            " sent_at = COALESCE(?, sent_at), not_before = COALESCE(?, not_before),"
            " lease_owner = NULL, lease_until = NULL WHERE id = ?",
            [
                (
                    OutboxState(d.state).value,
                    d.attempts,
                    d.error,
                    d.provider_id,
                    d.provider_id,
                    _us_opt(d.sent_at),
                    _us_opt(d.not_before),
                    d.outbox_id,
                )
                for d in ch.deliveries
            ],
        )


def _q_delivery_state(
    conn: sqlite3.Connection, incident_ids: Sequence[str], row_ids: Sequence[str], alerts: bool
) -> tuple[dict[str, IncidentRecord], dict[str, OutboxRecord], dict[str, list[AlertRecord]]]:
    incidents: dict[str, IncidentRecord] = {}
    found_alerts: dict[str, list[AlertRecord]] = {}
    for incident_id in dict.fromkeys(incident_ids):
        inc = _q_get_incident(conn, incident_id)
        if inc is not None:
            incidents[incident_id] = inc
            if alerts:
                found_alerts[incident_id] = _q_alerts_of(conn, incident_id)
    rows: dict[str, OutboxRecord] = {}
    ids = list(dict.fromkeys(row_ids))
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE id IN ({marks})", chunk):
            o = _outbox(r)
            rows[o.id] = o
    return incidents, rows, found_alerts


def _q_apply(conn: sqlite3.Connection, ch: Changes) -> None:
    # A savepoint makes apply all-or-nothing even if the caller catches Conflict and commits.
    conn.execute("SAVEPOINT apply_changes")
    try:
        _apply_changes(conn, ch)
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO apply_changes")
                conn.execute("RELEASE apply_changes")
        raise
    conn.execute("RELEASE apply_changes")


def _q_find_incident(conn: sqlite3.Connection, ref: str) -> IncidentRecord | None:
    ref = ref.strip()
    found = _q_get_incident(conn, ref)
    if found is not None:
        return found
    m = _NUMBER_REF.fullmatch(ref)
    # 64-bit bound: a longer digit string cannot be a number we assigned.
    if m is not None and len(m.group(1)) <= 18:
        row = conn.execute(
            f"SELECT {_INCIDENT_COLS} FROM incidents WHERE number = ?", (int(m.group(1)),)
        ).fetchone()
        if row is not None:
            return _incident(row)
    by_key = _q_incidents_by_key(conn, [ref])
    if ref in by_key:
        return by_key[ref]
    row = conn.execute(
        f"SELECT {_INCIDENT_COLS} FROM incidents WHERE key = ? ORDER BY number DESC LIMIT 1",
        (ref,),
    ).fetchone()
    return None if row is None else _incident(row)


def _q_list_incidents(conn: sqlite3.Connection, flt: IncidentFilter) -> list[IncidentRecord]:
    where: list[str] = []
    args: list[Any] = []
    if flt.status:
        where.append(f"status IN ({_marks(len(flt.status))})")
        args.extend(str(s) for s in flt.status)
    if flt.severity:
        where.append(f"severity IN ({_marks(len(flt.severity))})")
        args.extend(flt.severity)
    if flt.team is not None:
        where.append("team = ?")
        args.append(flt.team)
    sql = f"SELECT {_INCIDENT_COLS} FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at DESC, number DESC LIMIT ?"
    args.append(max(0, flt.limit))
    return [_incident(r) for r in conn.execute(sql, args)]


def _q_timeline(conn: sqlite3.Connection, incident_id: str) -> list[TimelineEvent]:
    rows = conn.execute(
        f"SELECT {_TIMELINE_COLS} FROM timeline WHERE incident_id = ? ORDER BY at, id",
        (incident_id,),
    )
    return [_event(r) for r in rows]


def _q_next_due(conn: sqlite3.Connection) -> datetime | None:
    # A leased row is not due again before its lease expires. Each part walks an index.
    parts = (
        "SELECT due_at FROM steps WHERE state = 'pending' AND lease_until IS NULL"
        " ORDER BY due_at LIMIT 1",
        "SELECT max(due_at, lease_until) AS t FROM steps"
        " WHERE state = 'pending' AND lease_until IS NOT NULL ORDER BY t LIMIT 1",
        "SELECT not_before FROM outbox WHERE state = 'pending' AND lease_until IS NULL"
        " ORDER BY not_before LIMIT 1",
        "SELECT max(not_before, lease_until) AS t FROM outbox"
        " WHERE state = 'pending' AND lease_until IS NOT NULL ORDER BY t LIMIT 1",
    )
    found = [row[0] for sql in parts for row in conn.execute(sql) if row[0] is not None]
    return _dt_opt(min(found)) if found else None


def _q_counts(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT severity, status, count(*) FROM incidents WHERE status <> 'resolved'"
        " GROUP BY severity, status"
    )
    return {(r[0], r[1]): r[2] for r in rows}


def _q_outbox_depth(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT channel, count(*) FROM outbox WHERE state = 'pending' GROUP BY channel"
    )
    return {r[0]: r[1] for r in rows}


def _q_schema_versions(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def _begin(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # Left over from a BEGIN whose caller was cancelled before it could roll back.
        log.warning("SQLite connection was still in a transaction; rolling it back")
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


_MAX_BATCH = 128  # units per group commit at most


@dataclasses.dataclass
class _Batch:
    done: asyncio.Future[None]
    units: int = 0


def _with_prelude(
    conn: sqlite3.Connection,
    prelude: list[str | Changes],
    fn: Callable[..., _T],
    args: tuple[Any, ...],
) -> _T:
    for item in prelude:
        if isinstance(item, Changes):
            _q_apply(conn, item)
        elif item == "BEGIN IMMEDIATE":
            _begin(conn)
        else:
            conn.execute(item)
    return fn(conn, *args)


def _noop(conn: sqlite3.Connection) -> None:
    return None


def _rollback_unit(conn: sqlite3.Connection) -> bool:
    """Undo the current unit only; False if SQLite had to abandon the whole transaction."""
    if not conn.in_transaction:
        return False
    conn.execute("ROLLBACK TO unit")
    conn.execute("RELEASE unit")
    return conn.in_transaction


# -- the store ----------------------------------------------------------------------------------


class _SqliteTx:
    """One write transaction on the store's writer connection."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.done = False

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self.done:
            raise StoreError("transaction already finished")
        return await self._store._run_in_tx(fn, *args)

    async def lock_keys(self, keys: Sequence[str]) -> None:
        """No-op: ``BEGIN IMMEDIATE`` plus the in-process lock already serialise every writer."""
        if self.done:
            raise StoreError("transaction already finished")

    async def incidents_by_key(self, keys: Sequence[str]) -> dict[str, IncidentRecord]:
        """The latest incident each key (or key alias) points at."""
        return await self._call(_q_incidents_by_key, list(keys))

    async def incidents_by_occurrence(
        self, occurrences: Sequence[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], str]:
        """(fingerprint, startsAt) → id of the newest incident holding that occurrence."""
        return await self._call(_q_incidents_by_occurrence, list(occurrences))

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident (the write lock is already held for the whole transaction)."""
        return await self._call(_q_get_incident, incident_id)

    async def alerts_of(self, incident_id: str) -> list[AlertRecord]:
        """Every occurrence recorded in the incident, by startsAt then fingerprint."""
        return await self._call(_q_alerts_of, incident_id)

    async def steps_of(self, incident_id: str, *, pending_only: bool = False) -> list[StepRecord]:
        """Scheduled steps of the incident, ordered by due time."""
        return await self._call(_q_steps_of, incident_id, pending_only)

    async def ingest_context(
        self, occurrences_by_key: dict[str, list[tuple[str, datetime]]]
    ) -> IngestContext:
        """What an ingest decides on, in one trip (see ``Tx.ingest_context``)."""
        return await self._call(_q_ingest_context, occurrences_by_key)

    async def step_context(
        self, step_id: str, incident_id: str
    ) -> tuple[IncidentRecord | None, StepRecord | None, list[OutboxRecord]]:
        """The incident, the step as stored now, and the incident's outbox rows (one trip)."""
        return await self._call(_q_step_context, step_id, incident_id)

    async def delivery_state(
        self, incident_ids: Sequence[str], row_ids: Sequence[str], *, alerts: bool = False
    ) -> tuple[dict[str, IncidentRecord], dict[str, OutboxRecord], dict[str, list[AlertRecord]]]:
        """The incidents (existing ones), the outbox rows as stored now, and (if asked) each
        incident's alerts — what a delivery decides on, in one trip."""
        return await self._call(_q_delivery_state, list(incident_ids), list(row_ids), alerts)

    async def outbox_of(self, incident_id: str) -> list[OutboxRecord]:
        """Notifications of the incident, ordered by creation."""
        return await self._call(_q_outbox_of, incident_id)

    async def claim_due_steps(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[StepRecord]:
        """Pending steps due at ``now`` whose lease is free or expired; leased to ``owner``."""
        return await self._call(_q_claim_steps, now, owner, lease_until, limit)

    async def claim_outbox(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[OutboxRecord]:
        """Pending outbox rows whose not_before has come and lease is free or expired."""
        return await self._call(_q_claim_outbox, now, owner, lease_until, limit)

    async def record_delivery(
        self,
        outbox_id: str,
        state: OutboxState,
        *,
        attempts: int,
        error: str = "",
        provider_id: str = "",
        sent_at: datetime | None = None,
        not_before: datetime | None = None,
    ) -> None:
        """Write a delivery attempt's outcome and release the lease.

        ``provider_id``, ``sent_at`` and ``not_before`` keep their stored values when not given.
        """
        await self._call(
            _q_record_delivery, outbox_id, state, attempts, error, provider_id, sent_at, not_before
        )

    async def seen_delivery(self, source: str, delivery_id: str, now: datetime) -> bool:
        """Remember an inbound delivery id; True if it was already seen."""
        return await self._call(_q_seen_delivery, source, delivery_id, now)

    async def apply(self, changes: Changes) -> None:
        """Write ``changes`` all-or-nothing; raises Conflict if an updated incident moved.

        Changes without a compare-and-set ride along with the unit's next trip to the worker
        thread (a later read in the same unit, or the unit's release/commit), so their errors
        surface there at the latest; a compare-and-set runs at once so Conflict comes from here.
        """
        if self.done:
            raise StoreError("transaction already finished")
        if changes.updated_incidents:
            await self._call(_q_apply, changes)  # a compare-and-set may raise Conflict: now
        else:
            self._store._prelude.append(changes)


class SqliteStore:
    """The embedded store: one SQLite file, one process (see the module docstring).

    ``path`` may be ``":memory:"`` for a throw-away store (tests, ``tocsin simulate``): then one
    connection serves reads and writes, and there is no lock file.
    """

    def __init__(
        self, path: str | os.PathLike[str] = "tocsin.db", *, busy_timeout: float = 5.0
    ) -> None:
        self._path = os.fspath(path)
        self._memory = self._path == ":memory:"
        self._busy_ms = int(busy_timeout * 1000)
        self._lock = asyncio.Lock()
        self._queued = 0
        self._batch: _Batch | None = None
        self._prelude: list[str | Changes] = []
        self._unit_started = False  # the current unit's SAVEPOINT has reached the database
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        # Owned by the worker thread once open.
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    @property
    def path(self) -> str:
        """The database file (or ``:memory:``)."""
        return self._path

    # -- plumbing --

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        executor = self._executor
        if executor is None or self._closing:
            raise StoreError(f"SQLite store {self._path} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"SQLite {self._path}: {e}") from e

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreError(f"SQLite store {self._path} is not open")
        return self._writer

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreError(f"SQLite store {self._path} is not open")
        return self._reader

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_ms / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        return conn

    def _take_lock_file(self) -> None:
        lock_path = Path(self._path + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreError(f"cannot create lock file {lock_path}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"{self._path} is in use (lock {lock_path} held by pid {holder}): "
                + SINGLE_REPLICA_MESSAGE
            ) from e
        except OSError as e:
            os.close(fd)
            raise StoreError(f"cannot lock {lock_path}: {e.strerror or e}") from e
        # Who holds it, for the message a second process prints.
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _open_sync(self) -> None:
        if not self._memory:
            self._take_lock_file()
        writer = self._connect()
        self._writer = writer
        if not self._memory:
            mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"SQLite {self._path}: cannot use WAL journal (got {mode!r})")
        writer.execute("PRAGMA synchronous = FULL")
        migrate_sqlite(writer)
        if self._memory:
            self._reader = writer
        else:
            reader = self._connect()
            reader.execute("PRAGMA query_only = ON")
            self._reader = reader
            st = os.stat(self._path)
            self._inode = (st.st_dev, st.st_ino)

    def _close_sync(self) -> None:
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("closing SQLite connection failed", exc_info=True)
        self._reader = self._writer = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _ping_sync(self, conn: sqlite3.Connection) -> None:
        if self._inode is not None:
            try:
                st = os.stat(self._path)
            except OSError as e:
                raise StoreError(f"SQLite file {self._path} is gone: {e.strerror or e}") from e
            if (st.st_dev, st.st_ino) != self._inode:
                raise StoreError(f"SQLite file {self._path} was replaced since the store opened")
        conn.execute(
            "INSERT INTO store_health (id, pinged) VALUES (1, 1)"
            " ON CONFLICT (id) DO UPDATE SET pinged = pinged + 1"
        )

    # -- Store --

    async def open(self) -> None:
        """Take the lock file, connect, set WAL/FULL, and apply pending migrations."""
        if self._executor is not None:
            raise StoreError(f"SQLite store {self._path} is already open")
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tocsin-sqlite")
        try:
            await self._call(self._open_sync)
        except BaseException:
            await self._shutdown()
            raise

    async def _shutdown(self) -> None:
        executor = self._executor
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close_sync)
        finally:
            self._executor = None
            # The worker is idle now (our close ran last), so this returns at once.
            executor.shutdown(wait=False)

    async def close(self) -> None:
        """Wait for the running transaction, then close connections and release the lock file."""
        if self._executor is None:
            return
        async with self._lock:
            self._closing = True
            await self._shutdown()

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A write unit of work (``BEGIN IMMEDIATE``); commit on exit, roll back on exception."""
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        # Group commit: units run one after another inside one SQLite transaction, each in its own
        # savepoint; the last unit of a burst commits for all, and every unit returns only after
        # that COMMIT (fsync), so "returned" still means "durable" but a burst pays one fsync.
        # Statements that open and close units ride along with the unit's first real call
        # (`_prelude`), so a unit costs no extra trips to the worker thread.
        if self._executor is None or self._closing:
            raise StoreError(f"SQLite store {self._path} is not open")
        self._queued += 1
        batch: _Batch | None = None
        try:
            async with self._lock:
                self._queued -= 1
                batch = self._batch
                if batch is None:
                    batch = self._batch = _Batch(asyncio.get_running_loop().create_future())
                    self._prelude.append("BEGIN IMMEDIATE")
                mark = len(self._prelude)
                self._prelude.append("SAVEPOINT unit")
                self._unit_started = False
                batch.units += 1
                tx = _SqliteTx(self)
                try:
                    yield tx
                except BaseException:
                    tx.done = True
                    if not self._unit_started:
                        del self._prelude[mark:]  # nothing of this unit reached the database
                    else:
                        await self._undo_unit(batch)
                    raise
                tx.done = True
                writes = any(isinstance(x, Changes) for x in self._prelude)
                if not self._unit_started and not writes:
                    del self._prelude[mark:]  # the unit never touched the database
                else:
                    self._prelude.append("RELEASE unit")
                commit_now = self._queued == 0 or batch.units >= _MAX_BATCH
                if commit_now:
                    await self._commit_batch(batch)
                elif writes:
                    # Write now (the next unit commits for us) so this unit's errors are its own.
                    try:
                        await self._run_in_tx(_noop)
                    except BaseException:
                        await self._undo_unit(batch)
                        raise
        except BaseException:
            if batch is None:
                self._queued -= 1
            raise
        while not commit_now and not batch.done.done():
            try:
                await asyncio.wait_for(asyncio.shield(batch.done), timeout=0.05)
            except TimeoutError:
                # The unit expected to commit next went away (cancelled while queued): commit.
                async with self._lock:
                    if self._batch is batch:
                        await self._commit_batch(batch)
        if not commit_now:
            batch.done.result()

    async def _run_in_tx(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run pending unit statements, then ``fn``, in one trip to the worker thread."""
        prelude, self._prelude = self._prelude, []
        if prelude:
            self._unit_started = True
        return await self._call(_with_prelude, self._writer_conn(), prelude, fn, args)

    async def _commit_batch(self, batch: _Batch) -> None:
        self._batch = None
        prelude, self._prelude = self._prelude, []
        try:
            # A batch whose BEGIN never ran and that holds no write has nothing to commit.
            if "BEGIN IMMEDIATE" not in prelude or any(isinstance(x, Changes) for x in prelude):
                await self._call(_with_prelude, self._writer_conn(), prelude, _commit, ())
        except BaseException as e:
            await self._rollback_quietly()
            err = (
                e
                if isinstance(e, StoreError)
                else StoreError(f"SQLite {self._path}: commit failed: {e}")
            )
            if not batch.done.done():
                batch.done.set_exception(err)
                batch.done.exception()  # retrieved: the units awaiting it re-raise it
            raise
        if not batch.done.done():
            batch.done.set_result(None)

    async def _undo_unit(self, batch: _Batch) -> None:
        try:
            still_open = await self._run_in_tx(_rollback_unit)
        except StoreError:
            log.warning("SQLite savepoint rollback failed", exc_info=True)
            still_open = False
        if not still_open:
            # The whole transaction is gone: earlier units of this batch were not committed.
            self._batch = None
            self._prelude = []
            await self._rollback_quietly()
            if not batch.done.done():
                batch.done.set_exception(
                    StoreError(f"SQLite {self._path}: transaction rolled back")
                )
                batch.done.exception()
        elif self._queued == 0:
            await self._commit_batch(batch)

    async def _rollback_quietly(self) -> None:
        # The original exception matters more than a failed rollback; _begin cleans up later.
        try:
            await self._call(_rollback, self._writer_conn())
        except StoreError:
            log.warning("SQLite rollback failed", exc_info=True)

    async def ping(self) -> None:
        """Commit a tiny write now; StoreError if the file is gone, replaced or unwritable."""
        async with self.transaction():
            await self._run_in_tx(self._ping_sync)

    async def next_due(self) -> datetime | None:
        """Earliest due instant of pending steps and outbox rows (a live lease defers a row)."""
        return await self._call(_q_next_due, self._reader_conn())

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident by id, as last committed."""
        return await self._call(_q_get_incident, self._reader_conn(), incident_id)

    async def find_incident(self, ref: str) -> IncidentRecord | None:
        """By id, by number (``42`` or ``#42``) or by key (the newest incident of that key)."""
        return await self._call(_q_find_incident, self._reader_conn(), ref)

    async def list_incidents(self, flt: IncidentFilter) -> list[IncidentRecord]:
        """Newest first (by opened_at, then number), filtered and limited."""
        return await self._call(_q_list_incidents, self._reader_conn(), flt)

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """In time order (ties in insertion order)."""
        return await self._call(_q_timeline, self._reader_conn(), incident_id)

    async def counts(self) -> dict[tuple[str, str], int]:
        """(severity, status) → number of incidents not resolved."""
        return await self._call(_q_counts, self._reader_conn())

    async def outbox_depth(self) -> dict[str, int]:
        """channel → pending rows (channels with none are absent)."""
        return await self._call(_q_outbox_depth, self._reader_conn())

    async def schema_versions(self) -> list[int]:
        """Versions recorded in ``schema_migrations``, ascending."""
        return await self._call(_q_schema_versions, self._reader_conn())
