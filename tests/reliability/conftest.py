"""Real ``tocsin serve`` processes (the whole-app driver's), killed and restarted, against
SQLite and PostgreSQL.

Helpers here: ``ladder_config`` (a ladder policy whose tiers fire seconds apart, the ``log``
channel), the store sections with ``Db``, a backend-agnostic reader of what the store holds
(steps, outbox, timeline, migrations), so the tests check the store itself rather than what a
process says about it.

PostgreSQL tests need ``TOCSIN_TEST_POSTGRES_DSN`` (e.g.
``postgresql://postgres@127.0.0.1:5432/test``) and skip, naming it, when it is unset; each test
gets its own schema, dropped afterwards. Every wait is bounded and polls.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.driver import metrics
from tests.driver.config import postgres_store, sqlite_store
from tests.driver.process import serve_config

DSN_ENV = "TOCSIN_TEST_POSTGRES_DSN"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- PostgreSQL ---------------------------------------------------------------------------------


def pg_dsn() -> str:
    """The test DSN, or skip naming the variable."""
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        pytest.skip(f"set {DSN_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) to run")
    return dsn


async def _pg_fetch(dsn: str, schema: str | None, sql: str, *args: Any) -> list[asyncpg.Record]:
    settings = {"search_path": f'"{schema}"'} if schema else {}
    conn = await asyncpg.connect(dsn, timeout=10, server_settings=settings)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def pg_fetch(dsn: str, schema: str | None, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one query on a fresh connection (tests are synchronous; subprocesses do the work)."""
    return [dict(r) for r in asyncio.run(_pg_fetch(dsn, schema, sql, *args))]


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """(dsn, a fresh schema name); dropped after the test (its processes are stopped first)."""
    dsn = pg_dsn()
    name = f"tocsin_rel_{uuid.uuid4().hex[:12]}"
    yield dsn, name
    pg_fetch(dsn, None, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# -- reading the store --------------------------------------------------------------------------


@dataclass(frozen=True)
class Db:
    """Read-only view of one store: ``sqlite_path`` or (``dsn``, ``schema``)."""

    sqlite_path: Path | None = None
    dsn: str | None = None
    schema: str | None = None

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        if self.sqlite_path is not None:
            conn = sqlite3.connect(self.sqlite_path, timeout=10)
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute(sql)]
            finally:
                conn.close()
        assert self.dsn is not None
        return pg_fetch(self.dsn, self.schema, sql)

    def _time(self, v: Any) -> datetime | None:
        if v is None or isinstance(v, datetime):
            return v
        return _EPOCH + timedelta(microseconds=int(v))  # SQLite: µs since the epoch

    def _json(self, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    def steps(self) -> list[dict[str, Any]]:
        """Every step: id, incident_id, kind, tier, round, due_at, state, fired_at, note."""
        rows = self._rows(
            "SELECT id, incident_id, kind, tier, round, due_at, state, fired_at, note FROM steps"
            " ORDER BY due_at, id"
        )
        for r in rows:
            r["due_at"], r["fired_at"] = self._time(r["due_at"]), self._time(r["fired_at"])
        return rows

    def outbox(self) -> list[dict[str, Any]]:
        """Every outbox row: id, incident_id, step_id, kind, tier, round, person, channel, ..."""
        rows = self._rows(
            "SELECT id, incident_id, step_id, kind, tier, round, person, channel, state, attempts,"
            " created_at, sent_at FROM outbox ORDER BY created_at, id"
        )
        for r in rows:
            r["created_at"], r["sent_at"] = self._time(r["created_at"]), self._time(r["sent_at"])
        return rows

    def timeline(self) -> list[dict[str, Any]]:
        """Every timeline event: incident_id, at, kind, message, data (decoded)."""
        data = "data" if self.sqlite_path is not None else "data::text AS data"
        rows = self._rows(
            f"SELECT incident_id, at, kind, message, {data} FROM timeline ORDER BY at, id"
        )
        for r in rows:
            r["at"], r["data"] = self._time(r["at"]), self._json(r["data"])
        return rows

    def incidents(self) -> list[dict[str, Any]]:
        """id, number, key of every incident."""
        return self._rows("SELECT id, number, key FROM incidents ORDER BY number")

    def heartbeats(self) -> list[dict[str, Any]]:
        """id, state, last_ping, due_at, expired_at of every stored heartbeat."""
        rows = self._rows(
            "SELECT id, state, last_ping, due_at, expired_at FROM heartbeats ORDER BY id"
        )
        for r in rows:
            for k in ("last_ping", "due_at", "expired_at"):
                r[k] = self._time(r[k])
        return rows

    def migrations(self) -> list[int]:
        """Versions in schema_migrations, one per row (duplicates would show)."""
        return [r["version"] for r in self._rows("SELECT version FROM schema_migrations")]


def unfinished(db: Db) -> list[tuple[str, str, str]]:
    """Steps not fired and outbox rows not sent: (table, id, state)."""
    return [("steps", s["id"], s["state"]) for s in db.steps() if s["state"] != "fired"] + [
        ("outbox", r["id"], r["state"]) for r in db.outbox() if r["state"] != "sent"
    ]


# -- config -------------------------------------------------------------------------------------


def ladder_config(
    tmp: Path,
    store: dict[str, Any],
    *,
    tiers: Sequence[tuple[str, Sequence[str]]],
    lease: str = "2s",
    poll: str = "1s",
    pagerduty_url: str | None = None,
) -> Path:
    """``serve_config`` with a ladder: ``tiers`` = [(after, [people...]), ...], each via ``log``.

    With ``pagerduty_url``, one more step (after the ladder, at 0s) triggers the PagerDuty
    service ``svc`` at that (fake) Events API.
    """
    steps: list[dict[str, Any]] = [
        {"after": after, "notify": [f"person:{p}" for p in who], "via": ["log"]}
        for after, who in tiers
    ]
    pagerduty = None
    if pagerduty_url is not None:
        steps.append({"after": "0s", "notify": ["pagerduty:svc"]})
        pagerduty = {
            "events_url": pagerduty_url,
            "allow_insecure_events_url": True,  # a local fake over plain http
            "services": {"svc": "hafakeroutingkey0000000000000001"},
        }
    people = sorted({p for _, who in tiers for p in who})
    return serve_config(
        tmp, store, steps=steps, people=people, pagerduty=pagerduty, lease=lease, poll=poll
    )


def sqlite_backend(tmp: Path) -> tuple[dict[str, Any], Db]:
    """(the ``store:`` section, its reader) for a SQLite file in ``tmp``."""
    path = tmp / "tocsin.db"
    return sqlite_store(path), Db(sqlite_path=path)


def postgres_backend(dsn: str, schema: str, pool_max: int = 5) -> tuple[dict[str, Any], Db]:
    """(the ``store:`` section, its reader) for PostgreSQL at ``dsn`` in ``schema``."""
    return postgres_store(dsn, schema, pool_max), Db(dsn=dsn, schema=schema)


# -- metrics ------------------------------------------------------------------------------------

# The reliability tests read one sample by the labels that matter to them.
metric_value = functools.partial(metrics.metric_value, exact=False)
