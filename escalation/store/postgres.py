"""PostgreSQL store backend: several replicas share one database.

- Connections come from an ``asyncpg`` pool; ``search_path`` is set per connection when a
  schema is configured, so every statement names bare tables.
- Migrations run at ``open()`` on a dedicated connection under ``pg_advisory_lock`` (see
  ``migrations``), so replicas starting together are safe.
- Writers on the same incident keys serialise through ``pg_advisory_xact_lock``
  (``Tx.lock_keys``); ``Tx.get_incident`` takes the row lock (``FOR UPDATE``); updated incidents
  are compare-and-set on ``version``.
- Due steps and outbox rows are claimed with ``FOR UPDATE SKIP LOCKED`` plus a lease
  (owner, expiry): two replicas never get the same row while its lease is live, and a dead
  replica's rows come back once their lease expires.
- A transaction that schedules steps or outbox rows sends ``pg_notify('tocsin_wakeup', schema)``
  (delivered at commit); ``wakeup_listener()`` gives each replica's engine the LISTEN side
  (``escalation.store.wakeup``).

Errors, as a tree::

    StoreError            asyncpg.PostgresError, asyncpg.InterfaceError, OSError (incl. timeouts)
    └── Conflict          a stale version in apply(), or TransactionRollbackError
                          (serialization failure, deadlock): retry the unit of work
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from escalation.incidents.model import (
    AlertRecord,
    Changes,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
    StepRecord,
    StepState,
    TimelineEvent,
)
from escalation.store.base import Conflict, IncidentFilter, IngestContext, StoreError, Tx
from escalation.store.migrations import migrate_postgres, quote_ident
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
    aware,
    cols,
    dumps,
)
from escalation.store.sql.rows import mappers
from escalation.store.wakeup import WAKEUP_CHANNEL, PgWakeupListener

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

_NUMBER_REF = re.compile(r"#?(\d+)")


_STEP_COLS_S = cols(StepRecord, "s.")
_OUTBOX_COLS_O = cols(OutboxRecord, "o.")


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Translate driver exceptions into the store's own (chained with ``from``)."""
    try:
        yield
    except StoreError:
        raise
    except asyncpg.TransactionRollbackError as e:
        raise Conflict(f"PostgreSQL {what}: {e}") from e
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        raise StoreError(f"PostgreSQL {what}: {type(e).__name__}: {e}") from e


def _identity(value: Any) -> Any:
    return value


def _aware_opt(dt: datetime | None) -> datetime | None:
    return None if dt is None else aware(dt)


POSTGRES = Dialect(
    name="postgres",
    time_out=aware,
    time_out_opt=_aware_opt,
    time_in=_identity,  # asyncpg returns timestamptz as aware datetimes
    time_in_opt=_identity,
    json_out=_identity,  # the connection's json codec encodes and decodes
    json_in=_identity,
    next_number="DEFAULT",  # an identity column
    outbox_seq="seq",
    for_update=" FOR UPDATE",
    arrays=True,
    max_list=1 << 30,  # an array parameter has no practical bound
)
_ROWS = mappers(POSTGRES)
_incident = _ROWS.incident
_alert = _ROWS.alert
_step = _ROWS.step
_outbox = _ROWS.outbox
_event = _ROWS.event
_aware = aware


def _count(status: str) -> int:
    # asyncpg returns the command tag: "UPDATE 3", "INSERT 0 1".
    return int(status.rsplit(" ", 1)[-1])


def _incident_args(i: IncidentRecord) -> tuple[Any, ...]:
    # Order of the $n placeholders in _INSERT_INCIDENT / _UPDATE_INCIDENT.
    return (
        i.id,
        i.key,
        Status(i.status).value,
        i.severity,
        i.title,
        i.team,
        i.policy_name,
        i.policy,
        i.level,
        _aware(i.opened_at),
        _aware(i.updated_at),
        _aware_opt(i.acknowledged_at),
        _aware_opt(i.mitigated_at),
        _aware_opt(i.resolved_at),
        i.epoch,
        i.receiver,
        i.group_key,
        i.rule,
        i.labels,
        i.version,
    )


_INSERT_INCIDENT = (
    "INSERT INTO incidents (id, key, status, severity, title, team, policy_name, policy, level,"
    " opened_at, updated_at, acknowledged_at, mitigated_at, resolved_at, epoch, receiver,"
    " group_key, rule, labels, version)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
    " $19, $20)"
)

_UPDATE_INCIDENT = (
    "UPDATE incidents SET key = $2, status = $3, severity = $4, title = $5, team = $6,"
    " policy_name = $7, policy = $8, level = $9, opened_at = $10, updated_at = $11,"
    " acknowledged_at = $12, mitigated_at = $13, resolved_at = $14, epoch = $15,"
    " receiver = $16, group_key = $17, rule = $18, labels = $19, version = version + 1"
    " WHERE id = $1 AND version = $20"
)

_UPSERT_KEY = (
    "INSERT INTO incident_keys (key, incident_id) VALUES ($1, $2)"
    " ON CONFLICT (key) DO UPDATE SET incident_id = EXCLUDED.incident_id"
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json (not jsonb) columns: key order survives, and Python objects go in and come out.
    await conn.set_type_codec("json", encoder=dumps, decoder=json.loads, schema="pg_catalog")


async def _get_incident(conn: asyncpg.Connection, incident_id: str) -> IncidentRecord | None:
    row = await conn.fetchrow(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = $1", incident_id)
    return None if row is None else _incident(row)


async def _incidents_by_key(
    conn: asyncpg.Connection, keys: Sequence[str]
) -> dict[str, IncidentRecord]:
    rows = await conn.fetch(
        f"SELECT k.key AS lookup_key, {_INCIDENT_COLS_I} FROM incident_keys k"
        " JOIN incidents i ON i.id = k.incident_id WHERE k.key = ANY($1::text[])",
        list(keys),
    )
    return {r["lookup_key"]: _incident(r) for r in rows}


class _PgTx:
    """One transaction on one pooled connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.done = False

    def _c(self) -> asyncpg.Connection:
        if self.done:
            raise StoreError("transaction already finished")
        return self._conn

    async def lock_keys(self, keys: Sequence[str]) -> None:
        """Serialise writers on the same incident keys with transaction-scoped advisory locks.

        Locks are taken in hash order so two writers with overlapping keys cannot deadlock.
        """
        conn = self._c()
        if not keys:
            return
        with _errors("lock_keys"):
            await conn.execute(
                "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h"
                " FROM unnest($1::text[]) AS k ORDER BY h) AS ordered",
                list(keys),
            )

    async def incidents_by_key(self, keys: Sequence[str]) -> dict[str, IncidentRecord]:
        """The latest incident each key (or key alias) points at."""
        conn = self._c()
        with _errors("incidents_by_key"):
            return await _incidents_by_key(conn, keys)

    async def incidents_by_occurrence(
        self, occurrences: Sequence[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], str]:
        """(fingerprint, startsAt) → id of the newest incident holding that occurrence."""
        conn = self._c()
        if not occurrences:
            return {}
        # Aware datetimes compare and hash by instant, so rows map back to the caller's keys.
        wanted = {(fp, _aware(at)): (fp, at) for fp, at in occurrences}
        with _errors("incidents_by_occurrence"):
            rows = await conn.fetch(
                "SELECT DISTINCT ON (a.fingerprint, a.starts_at)"
                " a.fingerprint, a.starts_at, a.incident_id"
                " FROM alerts a JOIN incidents i ON i.id = a.incident_id"
                " JOIN unnest($1::text[], $2::timestamptz[]) AS o(fp, st)"
                " ON a.fingerprint = o.fp AND a.starts_at = o.st"
                " ORDER BY a.fingerprint, a.starts_at, i.number DESC",
                [fp for fp, _ in wanted],
                [at for _, at in wanted],
            )
        return {wanted[(r["fingerprint"], r["starts_at"])]: r["incident_id"] for r in rows}

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident, row-locked (``FOR UPDATE``) until the transaction ends."""
        conn = self._c()
        with _errors("get_incident"):
            row = await conn.fetchrow(
                f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = $1 FOR UPDATE", incident_id
            )
        return None if row is None else _incident(row)

    async def alerts_of(self, incident_id: str) -> list[AlertRecord]:
        """Every occurrence recorded in the incident, by startsAt then fingerprint."""
        conn = self._c()
        with _errors("alerts_of"):
            rows = await conn.fetch(
                f"SELECT {_ALERT_COLS} FROM alerts WHERE incident_id = $1"
                " ORDER BY starts_at, fingerprint",
                incident_id,
            )
        return [_alert(r) for r in rows]

    async def steps_of(self, incident_id: str, *, pending_only: bool = False) -> list[StepRecord]:
        """Scheduled steps of the incident, ordered by due time."""
        conn = self._c()
        with _errors("steps_of"):
            rows = await conn.fetch(
                f"SELECT {_STEP_COLS} FROM steps WHERE incident_id = $1"
                " AND (NOT $2 OR state = 'pending') ORDER BY due_at, id",
                incident_id,
                pending_only,
            )
        return [_step(r) for r in rows]

    async def delivery_state(
        self, incident_ids: Sequence[str], row_ids: Sequence[str], *, alerts: bool = False
    ) -> tuple[dict[str, IncidentRecord], dict[str, OutboxRecord], dict[str, list[AlertRecord]]]:
        """The incidents (row-locked, in id order), the outbox rows as stored now, and (if
        asked) each incident's alerts."""
        incidents: dict[str, IncidentRecord] = {}
        found_alerts: dict[str, list[AlertRecord]] = {}
        for incident_id in sorted(set(incident_ids)):
            inc = await self.get_incident(incident_id)
            if inc is not None:
                incidents[incident_id] = inc
                if alerts:
                    found_alerts[incident_id] = await self.alerts_of(incident_id)
        conn = self._c()
        with _errors("delivery_state"):
            recs = await conn.fetch(
                f"SELECT {_OUTBOX_COLS} FROM outbox WHERE id = ANY($1::text[])",
                list(dict.fromkeys(row_ids)),
            )
        return incidents, {o.id: o for o in map(_outbox, recs)}, found_alerts

    async def ingest_context(
        self, occurrences_by_key: dict[str, list[tuple[str, datetime]]]
    ) -> IngestContext:
        """What an ingest decides on (see ``Tx.ingest_context``); found-by-occurrence
        incidents are row-locked."""
        by_key = await self.incidents_by_key(list(occurrences_by_key))
        incidents = {inc.id: inc for inc in by_key.values()}
        by_occurrence: dict[str, str] = {}
        missing = {k: occ for k, occ in occurrences_by_key.items() if k not in by_key and occ}
        if missing:
            found = await self.incidents_by_occurrence([o for occ in missing.values() for o in occ])
            for key, occurrences in missing.items():
                hit = next((found[o] for o in occurrences if o in found), None)
                if hit is not None:
                    by_occurrence[key] = hit
        for incident_id in sorted(set(by_occurrence.values()) - set(incidents)):
            inc = await self.get_incident(incident_id)
            if inc is not None:
                incidents[incident_id] = inc
        return IngestContext(
            by_key=by_key,
            by_occurrence={k: v for k, v in by_occurrence.items() if v in incidents},
            incidents=incidents,
            alerts={i: await self.alerts_of(i) for i in incidents},
            outbox={i: await self.outbox_of(i) for i in incidents},
        )

    async def step_context(
        self, step_id: str, incident_id: str
    ) -> tuple[IncidentRecord | None, StepRecord | None, list[OutboxRecord]]:
        """The incident (row-locked), the step as stored now, and the incident's outbox rows."""
        inc = await self.get_incident(incident_id)
        conn = self._c()
        with _errors("step_context"):
            row = await conn.fetchrow(f"SELECT {_STEP_COLS} FROM steps WHERE id = $1", step_id)
        outbox = await self.outbox_of(incident_id) if inc is not None else []
        return inc, (_step(row) if row is not None else None), outbox

    async def outbox_of(self, incident_id: str) -> list[OutboxRecord]:
        """Notifications of the incident, ordered by creation."""
        conn = self._c()
        with _errors("outbox_of"):
            rows = await conn.fetch(
                f"SELECT {_OUTBOX_COLS} FROM outbox WHERE incident_id = $1"
                " ORDER BY created_at, seq",
                incident_id,
            )
        return [_outbox(r) for r in rows]

    async def claim_due_steps(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[StepRecord]:
        """Pending steps due at ``now`` whose lease is free or expired; leased to ``owner``.

        ``SKIP LOCKED`` passes over rows another claimer is leasing right now.
        """
        conn = self._c()
        if limit <= 0:
            return []
        with _errors("claim_due_steps"):
            rows = await conn.fetch(
                f"UPDATE steps s SET lease_owner = $2, lease_until = $3 FROM ("
                " SELECT id FROM steps WHERE state = 'pending' AND due_at <= $1"
                " AND (lease_until IS NULL OR lease_until <= $1)"
                " ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) AS c"
                f" WHERE s.id = c.id RETURNING {_STEP_COLS_S}",
                _aware(now),
                owner,
                _aware(lease_until),
                limit,
            )
        return sorted((_step(r) for r in rows), key=lambda s: (s.due_at, s.id))

    async def claim_outbox(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[OutboxRecord]:
        """Pending outbox rows whose not_before has come and lease is free or expired."""
        conn = self._c()
        if limit <= 0:
            return []
        with _errors("claim_outbox"):
            rows = await conn.fetch(
                "UPDATE outbox o SET lease_owner = $2, lease_until = $3 FROM ("
                " SELECT id FROM outbox WHERE state = 'pending' AND not_before <= $1"
                " AND (lease_until IS NULL OR lease_until <= $1)"
                " ORDER BY not_before, created_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED) AS c"
                f" WHERE o.id = c.id RETURNING o.seq, {_OUTBOX_COLS_O}",
                _aware(now),
                owner,
                _aware(lease_until),
                limit,
            )
        rows = sorted(rows, key=lambda r: (r["not_before"], r["created_at"], r["seq"]))
        return [_outbox(r) for r in rows]

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
        conn = self._c()
        with _errors("record_delivery"):
            status = await conn.execute(
                "UPDATE outbox SET state = $2, attempts = $3, last_error = $4,"
                " provider_id = CASE WHEN $5 = '' THEN provider_id ELSE $5 END,"
                " sent_at = COALESCE($6, sent_at), not_before = COALESCE($7, not_before),"
                " lease_owner = NULL, lease_until = NULL WHERE id = $1",
                outbox_id,
                OutboxState(state).value,
                attempts,
                error,
                provider_id,
                _aware_opt(sent_at),
                _aware_opt(not_before),
            )
        if _count(status) != 1:
            raise StoreError(f"no outbox row {outbox_id!r} to record a delivery on")

    async def seen_delivery(self, source: str, delivery_id: str, now: datetime) -> bool:
        """Remember an inbound delivery id; True if it was already seen."""
        conn = self._c()
        with _errors("seen_delivery"):
            status = await conn.execute(
                "INSERT INTO inbound_deliveries (source, id, seen_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (source, id) DO NOTHING",
                source,
                delivery_id,
                _aware(now),
            )
        return _count(status) == 0

    async def apply(self, changes: Changes) -> None:
        """Write ``changes`` all-or-nothing; raises Conflict if an updated incident moved."""
        conn = self._c()
        with _errors("apply"):
            # A savepoint: apply stays all-or-nothing even if the caller catches Conflict.
            async with conn.transaction():
                await _apply_changes(conn, changes)


async def _apply_changes(conn: asyncpg.Connection, ch: Changes) -> None:
    # Order matters: cancellations run before inserts so a decision that cancels the old
    # escalation and schedules a new one (reopen, severity raise) keeps the new steps.
    for inc in ch.new_incidents:
        await conn.execute(_INSERT_INCIDENT, *_incident_args(inc))
        await conn.execute(_UPSERT_KEY, inc.key, inc.id)
    for inc in ch.updated_incidents:
        status = await conn.execute(_UPDATE_INCIDENT, *_incident_args(inc))
        if _count(status) != 1:
            raise Conflict(f"incident {inc.id} is no longer at version {inc.version}")
    for key, incident_id in ch.key_aliases:
        await conn.execute(_UPSERT_KEY, key, incident_id)
    if ch.upsert_alerts:
        await conn.executemany(
            f"INSERT INTO alerts ({_ALERT_COLS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            " ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET"
            " status = EXCLUDED.status, ends_at = EXCLUDED.ends_at,"
            " last_seen = EXCLUDED.last_seen, annotations = EXCLUDED.annotations,"
            " severity = EXCLUDED.severity, rule = EXCLUDED.rule",
            [
                (
                    a.incident_id,
                    a.fingerprint,
                    _aware(a.starts_at),
                    a.status,
                    _aware_opt(a.ends_at),
                    a.labels,
                    a.annotations,
                    a.generator_url,
                    a.severity,
                    a.rule,
                    _aware(a.first_seen),
                    _aware(a.last_seen),
                )
                for a in ch.upsert_alerts
            ],
        )
    if ch.timeline:
        await conn.executemany(
            f"INSERT INTO timeline ({_TIMELINE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                (e.incident_id, _aware(e.at), e.kind, e.actor, e.source, e.message, e.data)
                for e in ch.timeline
            ],
        )
    for incident_id, unless, note in ch.cancel_steps_of:
        values = [] if unless is None else [u for u in unless if u is not None]
        await conn.execute(
            "UPDATE steps SET state = 'cancelled', note = $2, lease_owner = NULL,"
            " lease_until = NULL WHERE incident_id = $1 AND state = 'pending'"
            " AND ($3 OR unless = ANY($4::text[]) OR ($5 AND unless IS NULL))",
            incident_id,
            note,
            unless is None,
            values,
            unless is not None and None in unless,
        )
    if ch.step_updates:
        await conn.executemany(
            "UPDATE steps SET state = $2, fired_at = $3, note = $4, lease_owner = NULL,"
            " lease_until = NULL WHERE id = $1",
            [
                (step_id, StepState(state).value, _aware_opt(fired_at), note)
                for step_id, state, fired_at, note in ch.step_updates
            ],
        )
    if ch.step_reschedules:
        # Only a pending step moves: a step an ack cancelled meanwhile stays cancelled.
        await conn.executemany(
            "UPDATE steps SET due_at = $2, note = $3, lease_owner = NULL, lease_until = NULL"
            " WHERE id = $1 AND state = 'pending'",
            [(step_id, _aware(due), note) for step_id, due, note in ch.step_reschedules],
        )
    if ch.new_steps:
        await conn.executemany(
            f"INSERT INTO steps ({_STEP_COLS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
            [
                (
                    s.id,
                    s.incident_id,
                    s.kind,
                    s.epoch,
                    s.round,
                    s.tier,
                    _aware(s.due_at),
                    StepState(s.state).value,
                    s.unless,
                    _aware_opt(s.fired_at),
                    s.note,
                )
                for s in ch.new_steps
            ],
        )
    for incident_id, kinds in ch.cancel_outbox_of:
        await conn.execute(
            "UPDATE outbox SET state = 'cancelled', lease_owner = NULL, lease_until = NULL"
            " WHERE incident_id = $1 AND state = 'pending' AND kind = ANY($2::text[])",
            incident_id,
            list(kinds),
        )
    if ch.new_outbox:
        await conn.executemany(
            f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
            " $10, $11, $12, $13, $14, $15, $16, $17) ON CONFLICT (id) DO NOTHING",
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
                    _aware(o.created_at),
                    _aware(o.not_before),
                    OutboxState(o.state).value,
                    o.attempts,
                    o.last_error,
                    _aware_opt(o.sent_at),
                    o.provider_id,
                    o.payload,
                )
                for o in ch.new_outbox
            ],
        )
    if ch.new_steps or ch.new_outbox or ch.step_reschedules:
        # Wake the other replicas: delivered at commit (never for a rollback), so a listener
        # that reads next_due on receipt sees the rows. The payload names the schema.
        await conn.execute("SELECT pg_notify($1, coalesce(current_schema(), ''))", WAKEUP_CHANNEL)
    if ch.deliveries:
        await conn.executemany(
            "UPDATE outbox SET state = $2, attempts = $3, last_error = $4,"
            " provider_id = CASE WHEN $5 = '' THEN provider_id ELSE $5 END,"
            " sent_at = COALESCE($6, sent_at), not_before = COALESCE($7, not_before),"
            " lease_owner = NULL, lease_until = NULL WHERE id = $1",
            [
                (
                    d.outbox_id,
                    OutboxState(d.state).value,
                    d.attempts,
                    d.error,
                    d.provider_id,
                    _aware_opt(d.sent_at),
                    _aware_opt(d.not_before),
                )
                for d in ch.deliveries
            ],
        )


class PostgresStore:
    """The shared store for several replicas (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        schema: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._schema = schema
        self._timeout = connect_timeout
        self._settings = {"application_name": "tocsin"}
        if schema:
            self._settings["search_path"] = quote_ident(schema)
        self._pool: asyncpg.Pool | None = None

    def __repr__(self) -> str:
        # Never the DSN: it may carry a password.
        return f"PostgresStore(schema={self._schema!r})"

    @property
    def schema(self) -> str | None:
        """The configured schema (``search_path``), if any."""
        return self._schema

    def wakeup_listener(self, on_wake: Callable[[], None]) -> PgWakeupListener:
        """A LISTEN connection on this store's database and schema calling ``on_wake``.

        Every transaction that schedules steps or outbox rows sends the notification (see
        ``escalation.store.wakeup``); start the listener after ``open()``.
        """
        settings = {**self._settings, "application_name": "tocsin-wakeup"}
        return PgWakeupListener(
            self._dsn, on_wake, server_settings=settings, connect_timeout=self._timeout
        )

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("PostgreSQL store is not open")
        return self._pool

    async def open(self) -> None:
        """Migrate (on a dedicated connection, under the advisory lock), then start the pool."""
        if self._pool is not None:
            raise StoreError("PostgreSQL store is already open")
        with _errors("open"):
            conn = await asyncpg.connect(
                self._dsn, timeout=self._timeout, server_settings=self._settings
            )
            try:
                await migrate_postgres(conn, self._schema)
            finally:
                # Closing the session also drops the session-level migration lock.
                await conn.close(timeout=self._timeout)
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._pool_min,
                max_size=self._pool_max,
                init=_init_connection,
                timeout=self._timeout,
                server_settings=self._settings,
            )

    async def close(self) -> None:
        """Wait for connections in use to come back, then close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with _errors("close"):
                await pool.close()

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A unit of work on one connection; commit on exit, roll back on exception."""
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        pool = self._require_pool()
        with _errors("acquire"):
            conn = await pool.acquire(timeout=self._timeout)
        try:
            tr = conn.transaction()
            with _errors("begin"):
                await tr.start()
            tx = _PgTx(conn)
            try:
                yield tx
            except BaseException:
                tx.done = True
                try:
                    await tr.rollback()
                except Exception:
                    # The original error matters more; the pool resets the connection anyway.
                    log.warning("PostgreSQL rollback failed", exc_info=True)
                raise
            tx.done = True
            with _errors("commit"):
                await tr.commit()
        finally:
            try:
                await pool.release(conn)
            except Exception:
                log.warning("releasing a PostgreSQL connection failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def _read(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        pool = self._require_pool()
        with _errors(what):
            async with pool.acquire(timeout=self._timeout) as conn:
                yield conn

    async def ping(self) -> None:
        """StoreError unless a connection is available and the server accepts writes."""
        async with self._read("ping") as conn:
            row = await conn.fetchrow(
                "SELECT pg_is_in_recovery() AS standby,"
                " current_setting('transaction_read_only') AS read_only"
            )
        if row is None or row["standby"] or row["read_only"] == "on":
            raise StoreError("PostgreSQL is read-only (a standby, or read-only transactions)")

    async def next_due(self) -> datetime | None:
        """Earliest due instant of pending steps and outbox rows (a live lease defers a row)."""
        async with self._read("next_due") as conn:
            # GREATEST ignores NULLs: an unleased row is due at its own time.
            # Each part walks an index (unleased rows in due order; leased ones are few).
            due: datetime | None = await conn.fetchval(
                "SELECT min(t) FROM ("
                " (SELECT due_at AS t FROM steps WHERE state = 'pending' AND lease_until IS NULL"
                "  ORDER BY due_at LIMIT 1)"
                " UNION ALL"
                " (SELECT min(GREATEST(due_at, lease_until)) FROM steps"
                "  WHERE state = 'pending' AND lease_until IS NOT NULL)"
                " UNION ALL"
                " (SELECT not_before FROM outbox WHERE state = 'pending' AND lease_until IS NULL"
                "  ORDER BY not_before LIMIT 1)"
                " UNION ALL"
                " (SELECT min(GREATEST(not_before, lease_until)) FROM outbox"
                "  WHERE state = 'pending' AND lease_until IS NOT NULL)) AS due"
            )
        return due

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident by id, as last committed."""
        async with self._read("get_incident") as conn:
            return await _get_incident(conn, incident_id)

    async def find_incident(self, ref: str) -> IncidentRecord | None:
        """By id, by number (``42`` or ``#42``) or by key (the newest incident of that key)."""
        ref = ref.strip()
        async with self._read("find_incident") as conn:
            found = await _get_incident(conn, ref)
            if found is not None:
                return found
            m = _NUMBER_REF.fullmatch(ref)
            # bigint bound: a longer digit string cannot be a number we assigned.
            if m is not None and len(m.group(1)) <= 18:
                row = await conn.fetchrow(
                    f"SELECT {_INCIDENT_COLS} FROM incidents WHERE number = $1", int(m.group(1))
                )
                if row is not None:
                    return _incident(row)
            by_key = await _incidents_by_key(conn, [ref])
            if ref in by_key:
                return by_key[ref]
            row = await conn.fetchrow(
                f"SELECT {_INCIDENT_COLS} FROM incidents WHERE key = $1"
                " ORDER BY number DESC LIMIT 1",
                ref,
            )
            return None if row is None else _incident(row)

    async def list_incidents(self, flt: IncidentFilter) -> list[IncidentRecord]:
        """Newest first (by opened_at, then number), filtered and limited."""
        async with self._read("list_incidents") as conn:
            rows = await conn.fetch(
                f"SELECT {_INCIDENT_COLS} FROM incidents"
                " WHERE (cardinality($1::text[]) = 0 OR status = ANY($1::text[]))"
                " AND (cardinality($2::text[]) = 0 OR severity = ANY($2::text[]))"
                " AND ($3::text IS NULL OR team = $3)"
                " ORDER BY opened_at DESC, number DESC LIMIT $4",
                [str(s) for s in flt.status],
                list(flt.severity),
                flt.team,
                max(0, flt.limit),
            )
        return [_incident(r) for r in rows]

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """In time order (ties in insertion order)."""
        async with self._read("timeline") as conn:
            rows = await conn.fetch(
                f"SELECT {_TIMELINE_COLS} FROM timeline WHERE incident_id = $1 ORDER BY at, id",
                incident_id,
            )
        return [_event(r) for r in rows]

    async def counts(self) -> dict[tuple[str, str], int]:
        """(severity, status) → number of incidents not resolved."""
        async with self._read("counts") as conn:
            rows = await conn.fetch(
                "SELECT severity, status, count(*) AS n FROM incidents"
                " WHERE status <> 'resolved' GROUP BY severity, status"
            )
        return {(r["severity"], r["status"]): r["n"] for r in rows}

    async def outbox_depth(self) -> dict[str, int]:
        """channel → pending rows (channels with none are absent)."""
        async with self._read("outbox_depth") as conn:
            rows = await conn.fetch(
                "SELECT channel, count(*) AS n FROM outbox WHERE state = 'pending' GROUP BY channel"
            )
        return {r["channel"]: r["n"] for r in rows}

    async def schema_versions(self) -> list[int]:
        """Versions recorded in ``schema_migrations``, ascending."""
        async with self._read("schema_versions") as conn:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]
