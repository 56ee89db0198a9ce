"""A shared read-only snapshot is stored as the same JSON text a plain dict always was.

Snapshots are built once per configured value and shared by the incidents that open with them
(``escalation.incidents.policy``); the store encodes each such object once. The text is what
existing databases hold and tests compare: compact, key order kept, non-ASCII as written.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from escalation.incidents.model import IncidentRecord
from escalation.incidents.policy import level_snapshot, policy_snapshot
from escalation.incidents.readonly import ReadOnlyDict
from escalation.incidents.steps import Policy
from escalation.store.postgres import PostgresStore
from escalation.store.sql.dialect import dumps
from escalation.store.sqlite import SqliteStore
from rules.matrix import load_preset
from tests.escalation.store.records import apply, incident

POLICY = Policy.model_validate(
    {
        "steps": [
            {"name": "Rufbereitschaft (Nürnberg) ✓", "notify": ["role:oncall"]},
            {"after": "10m", "notify": ["role:lead"], "unless": "regardless"},
        ],
        "repeat": {"times": 1, "every": "30m"},
        "ack_timeout": "15m",
    }
)


def _shared() -> list[IncidentRecord]:
    matrix = load_preset("default")
    name, snap = policy_snapshot(matrix, {"db": POLICY}, "P1", "db")
    level = level_snapshot(matrix, "P1")
    assert isinstance(snap, ReadOnlyDict) and isinstance(level, ReadOnlyDict)
    return [
        replace(incident(iid), policy_name=name, policy=snap, level=level) for iid in ("a", "b")
    ]


def _plain_text(value: Any) -> str:
    """The text the store wrote for a plain dict before snapshots were shared."""
    return json.dumps(copy.deepcopy(value), ensure_ascii=False, separators=(",", ":"))


def test_a_shared_snapshot_encodes_once_to_the_plain_text() -> None:
    inc = _shared()[0]
    text = dumps(inc.policy)
    assert text == _plain_text(inc.policy)
    assert "Nürnberg" in text and '"name":"db"' in text
    assert dumps(inc.policy) is text  # encoded once, the same text from then on
    assert dumps(inc.level) == _plain_text(inc.level)


async def _stored_back(store: SqliteStore | PostgresStore, records: list[IncidentRecord]) -> None:
    for got, inc in [(await store.get_incident(r.id), r) for r in records]:
        assert got is not None
        assert (got.policy, got.level) == (inc.policy, inc.level)
        assert type(got.policy) is dict  # read back as an ordinary value


async def test_sqlite_stores_a_shared_snapshot_as_plain_text(tmp_path: Path) -> None:
    records = _shared()
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:
        await apply(store, new_incidents=records)
        await _stored_back(store, records)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        rows = conn.execute("SELECT policy, level FROM incidents ORDER BY id").fetchall()
    finally:
        conn.close()
    want = (_plain_text(records[0].policy), _plain_text(records[0].level))
    assert rows == [want, want]


async def test_postgres_stores_a_shared_snapshot_as_plain_text(
    pg_store: PostgresStore, pg_schema: tuple[str, str]
) -> None:
    records = _shared()
    await apply(pg_store, new_incidents=records)
    await _stored_back(pg_store, records)
    dsn, schema = pg_schema
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT policy::text AS p, level::text AS l FROM "{schema}".incidents ORDER BY id'
        )
    finally:
        await conn.close()
    want = (_plain_text(records[0].policy), _plain_text(records[0].level))
    assert [(r["p"], r["l"]) for r in rows] == [want, want]
