"""Versioned schema migrations for both store backends, applied at ``open()``.

Each ``Migration`` carries the statements for SQLite and for PostgreSQL that produce the same
logical schema. Applied versions are recorded in ``schema_migrations(version, applied_at)``;
a migration and its bookkeeping row commit together, so a crash mid-way leaves either the old
or the new schema, never half of one.

Concurrency: PostgreSQL migrates under a session-level ``pg_advisory_lock`` so several replicas
starting at once take turns (the first one migrates, the others find nothing to do). SQLite is
single-process by construction (the backend holds an exclusive lock file) and migrates inside
``BEGIN IMMEDIATE``.

Append new migrations at the end with the next version; never edit a released one.

Storage conventions: SQLite keeps instants as INTEGER microseconds since the Unix epoch (UTC),
which orders correctly and round-trips exactly; PostgreSQL uses ``timestamptz``. JSON columns
are TEXT in SQLite and ``json`` (not ``jsonb``) in PostgreSQL so key order survives a round trip,
as a snapshot shown in the API should.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "MIGRATIONS",
    "PG_MIGRATION_LOCK",
    "Migration",
    "latest_version",
    "migrate_postgres",
    "migrate_sqlite",
    "quote_ident",
]

log = logging.getLogger(__name__)

# Advisory-lock key for migrations ("tocsin" in ASCII); one per database, shared by all schemas,
# which only means two schemas in one database migrate one after the other.
PG_MIGRATION_LOCK = 0x746F6373696E


@dataclass(frozen=True)
class Migration:
    """One schema version: the statements that take the schema from ``version - 1`` to it."""

    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_SQLITE_V1: tuple[str, ...] = (
    """
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        number INTEGER NOT NULL UNIQUE,
        key TEXT NOT NULL,
        status TEXT NOT NULL,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        team TEXT,
        policy_name TEXT NOT NULL,
        policy TEXT NOT NULL,
        level TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        acknowledged_at INTEGER,
        mitigated_at INTEGER,
        resolved_at INTEGER,
        epoch INTEGER NOT NULL,
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        rule TEXT NOT NULL,
        labels TEXT NOT NULL,
        version INTEGER NOT NULL
    )
    """,
    "CREATE INDEX incidents_opened ON incidents (opened_at DESC, number DESC)",
    "CREATE INDEX incidents_key ON incidents (key)",
    "CREATE INDEX incidents_status ON incidents (status, severity)",
    """
    CREATE TABLE incident_keys (
        key TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE alerts (
        incident_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        ends_at INTEGER,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        generator_url TEXT NOT NULL,
        severity TEXT NOT NULL,
        rule TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (incident_id, fingerprint, starts_at)
    )
    """,
    "CREATE INDEX alerts_occurrence ON alerts (fingerprint, starts_at)",
    """
    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT NOT NULL
    )
    """,
    "CREATE INDEX timeline_incident ON timeline (incident_id, at, id)",
    """
    CREATE TABLE steps (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        round INTEGER NOT NULL,
        tier INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        unless TEXT,
        fired_at INTEGER,
        note TEXT NOT NULL,
        lease_owner TEXT,
        lease_until INTEGER
    )
    """,
    "CREATE INDEX steps_incident ON steps (incident_id, due_at)",
    "CREATE INDEX steps_due ON steps (state, due_at)",
    """
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        step_id TEXT,
        kind TEXT NOT NULL,
        tier INTEGER NOT NULL,
        round INTEGER NOT NULL,
        target TEXT NOT NULL,
        person TEXT NOT NULL,
        channel TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        not_before INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        sent_at INTEGER,
        provider_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        lease_owner TEXT,
        lease_until INTEGER
    )
    """,
    "CREATE INDEX outbox_due ON outbox (state, not_before)",
    "CREATE INDEX outbox_incident ON outbox (incident_id, created_at)",
    """
    CREATE TABLE inbound_deliveries (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (source, id)
    )
    """,
    # One row rewritten by ping(): proves a write reaches the disk now.
    """
    CREATE TABLE store_health (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pinged INTEGER NOT NULL
    )
    """,
)

_POSTGRES_V1: tuple[str, ...] = (
    """
    CREATE TABLE incidents (
        id text PRIMARY KEY,
        number bigint GENERATED BY DEFAULT AS IDENTITY UNIQUE,
        key text NOT NULL,
        status text NOT NULL,
        severity text NOT NULL,
        title text NOT NULL,
        team text,
        policy_name text NOT NULL,
        policy json NOT NULL,
        level json NOT NULL,
        opened_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        acknowledged_at timestamptz,
        mitigated_at timestamptz,
        resolved_at timestamptz,
        epoch bigint NOT NULL,
        receiver text NOT NULL,
        group_key text NOT NULL,
        rule text NOT NULL,
        labels json NOT NULL,
        version bigint NOT NULL
    )
    """,
    "CREATE INDEX incidents_opened ON incidents (opened_at DESC, number DESC)",
    "CREATE INDEX incidents_key ON incidents (key)",
    "CREATE INDEX incidents_status ON incidents (status, severity)",
    """
    CREATE TABLE incident_keys (
        key text PRIMARY KEY,
        incident_id text NOT NULL
    )
    """,
    """
    CREATE TABLE alerts (
        incident_id text NOT NULL,
        fingerprint text NOT NULL,
        starts_at timestamptz NOT NULL,
        status text NOT NULL,
        ends_at timestamptz,
        labels json NOT NULL,
        annotations json NOT NULL,
        generator_url text NOT NULL,
        severity text NOT NULL,
        rule text NOT NULL,
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        PRIMARY KEY (incident_id, fingerprint, starts_at)
    )
    """,
    "CREATE INDEX alerts_occurrence ON alerts (fingerprint, starts_at)",
    """
    CREATE TABLE timeline (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        incident_id text NOT NULL,
        at timestamptz NOT NULL,
        kind text NOT NULL,
        actor text NOT NULL,
        source text NOT NULL,
        message text NOT NULL,
        data json NOT NULL
    )
    """,
    "CREATE INDEX timeline_incident ON timeline (incident_id, at, id)",
    """
    CREATE TABLE steps (
        id text PRIMARY KEY,
        incident_id text NOT NULL,
        kind text NOT NULL,
        epoch bigint NOT NULL,
        round bigint NOT NULL,
        tier bigint NOT NULL,
        due_at timestamptz NOT NULL,
        state text NOT NULL,
        unless text,
        fired_at timestamptz,
        note text NOT NULL,
        lease_owner text,
        lease_until timestamptz
    )
    """,
    "CREATE INDEX steps_incident ON steps (incident_id, due_at)",
    "CREATE INDEX steps_due ON steps (state, due_at)",
    """
    CREATE TABLE outbox (
        id text PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        incident_id text NOT NULL,
        step_id text,
        kind text NOT NULL,
        tier bigint NOT NULL,
        round bigint NOT NULL,
        target text NOT NULL,
        person text NOT NULL,
        channel text NOT NULL,
        created_at timestamptz NOT NULL,
        not_before timestamptz NOT NULL,
        state text NOT NULL,
        attempts bigint NOT NULL,
        last_error text NOT NULL,
        sent_at timestamptz,
        provider_id text NOT NULL,
        payload json NOT NULL,
        lease_owner text,
        lease_until timestamptz
    )
    """,
    "CREATE INDEX outbox_due ON outbox (state, not_before)",
    "CREATE INDEX outbox_incident ON outbox (incident_id, created_at, seq)",
    """
    CREATE TABLE inbound_deliveries (
        source text NOT NULL,
        id text NOT NULL,
        seen_at timestamptz NOT NULL,
        PRIMARY KEY (source, id)
    )
    """,
)

# next_due() must stay O(log n) with 100k incidents pending: unleased rows are read in due order
# from the (state, due) indexes; leased rows (few: in flight right now) from these partial ones.
_LEASED_INDEXES: tuple[str, ...] = (
    "CREATE INDEX steps_leased ON steps (lease_until)"
    " WHERE state = 'pending' AND lease_until IS NOT NULL",
    "CREATE INDEX outbox_leased ON outbox (lease_until)"
    " WHERE state = 'pending' AND lease_until IS NOT NULL",
)

# Sends counted against rate limits, shared by every replica (one row per send and limit key;
# rows past their window are deleted as the key is next used).
_SQLITE_RATE_EVENTS: tuple[str, ...] = (
    "CREATE TABLE rate_events (key TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE INDEX rate_events_key_at ON rate_events (key, at)",
)
_POSTGRES_RATE_EVENTS: tuple[str, ...] = (
    "CREATE TABLE rate_events (key text NOT NULL, at timestamptz NOT NULL)",
    "CREATE INDEX rate_events_key_at ON rate_events (key, at)",
)

# Overrides made at run time and calendar-feed tokens (hashed), each with its audit trail: a
# removed override or revoked token keeps its row.
_OVERRIDES_AND_CALENDARS = (
    """
    CREATE TABLE schedule_overrides (
        id {text} PRIMARY KEY,
        schedule {text} NOT NULL,
        person {text} NOT NULL,
        starts_at {time} NOT NULL,
        ends_at {time} NOT NULL,
        replaces {text},
        created_at {time} NOT NULL,
        created_by {text} NOT NULL,
        on_behalf_of {text} NOT NULL,
        removed_at {time},
        removed_by {text} NOT NULL,
        removed_on_behalf_of {text} NOT NULL
    )
""",
    "CREATE INDEX schedule_overrides_ends ON schedule_overrides (schedule, ends_at)",
    """
    CREATE TABLE calendar_tokens (
        id {text} PRIMARY KEY,
        kind {text} NOT NULL,
        name {text} NOT NULL,
        token_hash {text} NOT NULL UNIQUE,
        created_at {time} NOT NULL,
        created_by {text} NOT NULL,
        revoked_at {time},
        revoked_by {text} NOT NULL
    )
""",
)
_SQLITE_OVERRIDES = tuple(s.format(text="TEXT", time="INTEGER") for s in _OVERRIDES_AND_CALENDARS)
_POSTGRES_OVERRIDES = tuple(
    s.format(text="text", time="timestamptz") for s in _OVERRIDES_AND_CALENDARS
)

# Circuit breakers and bundling windows, shared by every replica: one row per channel (its run
# of consecutive failures; opened_at is set while it is open, and re-set by the half-open probe)
# and one per (person, channel) that bundles (when the last message to them went or is going).
_SQLITE_BREAKERS_WINDOWS: tuple[str, ...] = (
    "CREATE TABLE breakers (channel TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
    " opened_at INTEGER)",
    "CREATE TABLE bundle_windows (person TEXT NOT NULL, channel TEXT NOT NULL,"
    " sent_at INTEGER NOT NULL, PRIMARY KEY (person, channel))",
)
_POSTGRES_BREAKERS_WINDOWS: tuple[str, ...] = (
    "CREATE TABLE breakers (channel text PRIMARY KEY, failures integer NOT NULL,"
    " opened_at timestamptz)",
    "CREATE TABLE bundle_windows (person text NOT NULL, channel text NOT NULL,"
    " sent_at timestamptz NOT NULL, PRIMARY KEY (person, channel))",
)

# Heartbeats: one row per configured name, due like a step (``due_at``, claimed with a lease) and
# kept across restarts, so an expiry while tocsin was down fires once it is back.
_HEARTBEATS = (
    """
    CREATE TABLE heartbeats (
        id {text} PRIMARY KEY,
        state {text} NOT NULL,
        armed_at {time} NOT NULL,
        due_at {time} NOT NULL,
        last_ping {time},
        expired_at {time},
        lease_owner {text},
        lease_until {time}
    )
""",
    "CREATE INDEX heartbeats_due ON heartbeats (state, due_at)",
)
_SQLITE_HEARTBEATS = tuple(s.format(text="TEXT", time="INTEGER") for s in _HEARTBEATS)
_POSTGRES_HEARTBEATS = tuple(s.format(text="text", time="timestamptz") for s in _HEARTBEATS)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, name="initial schema", sqlite=_SQLITE_V1, postgres=_POSTGRES_V1),
    Migration(
        version=2, name="leased-row indexes", sqlite=_LEASED_INDEXES, postgres=_LEASED_INDEXES
    ),
    Migration(
        version=3,
        name="shared rate-limit events",
        sqlite=_SQLITE_RATE_EVENTS,
        postgres=_POSTGRES_RATE_EVENTS,
    ),
    Migration(
        version=4,
        name="schedule overrides and calendar tokens",
        sqlite=_SQLITE_OVERRIDES,
        postgres=_POSTGRES_OVERRIDES,
    ),
    Migration(
        version=5,
        name="shared breakers and bundling windows",
        sqlite=_SQLITE_BREAKERS_WINDOWS,
        postgres=_POSTGRES_BREAKERS_WINDOWS,
    ),
    Migration(
        version=6, name="heartbeats", sqlite=_SQLITE_HEARTBEATS, postgres=_POSTGRES_HEARTBEATS
    ),
)


def latest_version() -> int:
    """The schema version this code writes."""
    return MIGRATIONS[-1].version


def _check_order() -> None:
    # A mis-numbered migration would silently skip or re-run DDL: refuse at import.
    versions = [m.version for m in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must be 1..n in order, got {versions}")


_check_order()


def _warn_if_newer(found: set[int]) -> None:
    unknown = sorted(v for v in found if v > latest_version())
    if unknown:
        # A newer tocsin migrated this database (a rollback of the deployment, most likely).
        # Migrations only add, so keep going rather than block the rollback; but say so.
        log.warning(
            "store schema has versions %s newer than this tocsin knows (%d); running anyway",
            unknown,
            latest_version(),
        )


_SQLITE_NOW_US = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"


def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply pending migrations on an autocommit (``isolation_level=None``) connection.

    Synchronous: call it on the store's worker thread. Returns the versions applied now.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    applied: list[int] = []
    for migration in MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone()
            if row is None:
                for statement in migration.sqlite:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at)"
                    f" VALUES (?, {_SQLITE_NOW_US})",
                    (migration.version,),
                )
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    _warn_if_newer({r[0] for r in conn.execute("SELECT version FROM schema_migrations")})
    return applied


def quote_ident(name: str) -> str:
    """Quote a PostgreSQL identifier (schema name) for use in SQL text."""
    return '"' + name.replace('"', '""') + '"'


async def migrate_postgres(conn: asyncpg.Connection, schema: str | None = None) -> list[int]:
    """Apply pending migrations, creating ``schema`` first when given.

    Holds ``pg_advisory_lock(PG_MIGRATION_LOCK)`` throughout, so replicas starting together
    migrate one at a time; each migration commits with its ``schema_migrations`` row.
    Use a dedicated connection and close it afterwards (a session lock must never go back into
    a pool). Returns the versions applied now.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", PG_MIGRATION_LOCK)
    try:
        if schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[int] = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            async with conn.transaction():
                for statement in migration.postgres:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                    migration.version,
                )
            applied.append(migration.version)
        _warn_if_newer(done)
        return applied
    finally:
        # Callers migrate on a dedicated connection and close it afterwards, which releases the
        # lock even if this unlock fails; a failure here must not mask the real error.
        if not conn.is_closed():
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", PG_MIGRATION_LOCK)
            except Exception:
                log.warning("could not release the migration lock (closing does)", exc_info=True)
