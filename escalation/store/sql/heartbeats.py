"""Queries on heartbeats (both dialects; see ``statement``).

A heartbeat's row is due like a step: claimed with the dialect's lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) by the engine, which fires it in the claiming transaction.
"""

from __future__ import annotations

from escalation.incidents.heartbeats import HeartbeatRecord
from escalation.store.sql.dialect import Dialect, cols
from escalation.store.sql.rows import Tables
from escalation.store.sql.statement import Query, execute, fetch

__all__ = ["HEARTBEAT_COLS", "get_heartbeat", "list_heartbeats", "put_heartbeat"]

HEARTBEAT_COLS = cols(HeartbeatRecord)
_NAMES = HEARTBEAT_COLS.split(", ")
# An upsert releases any lease: the row was decided on by its writer.
_PUT = (
    f"INSERT INTO heartbeats ({HEARTBEAT_COLS}, lease_owner, lease_until)"
    f" VALUES ({', '.join('?' * len(_NAMES))}, NULL, NULL) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _NAMES[1:])
    + ", lease_owner = NULL, lease_until = NULL"
)


def get_heartbeat(d: Dialect, t: Tables, name: str) -> Query[HeartbeatRecord | None]:
    """One heartbeat's row, locked for update where the dialect locks rows."""
    rows = yield from fetch(
        f"SELECT {HEARTBEAT_COLS} FROM heartbeats WHERE id = ?{d.for_update}", name
    )
    return t.heartbeat.read(rows[0]) if rows else None


_ADD = (
    f"INSERT INTO heartbeats ({HEARTBEAT_COLS}) VALUES ({', '.join('?' * len(_NAMES))})"
    " ON CONFLICT (id) DO NOTHING"
)


def put_heartbeat(t: Tables, rec: HeartbeatRecord, only_new: bool) -> Query[None]:
    yield from execute(_ADD if only_new else _PUT, *t.heartbeat.params(rec))


def list_heartbeats(t: Tables) -> Query[list[HeartbeatRecord]]:
    rows = yield from fetch(f"SELECT {HEARTBEAT_COLS} FROM heartbeats ORDER BY id")
    return [t.heartbeat.read(r) for r in rows]
