"""The SQLite dialect: instants as INTEGER microseconds since the Unix epoch (UTC, exact and
ordered), JSON as TEXT, and the queries SQLite spells its own way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from escalation.store.sql.dialect import Dialect, dumps
from escalation.store.sql.queries import Queries, due_ids
from escalation.store.sql.statement import Query, fetch

__all__ = ["QUERIES", "SQLITE", "SqliteQueries"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


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
    for_update="",  # BEGIN IMMEDIATE already holds the database's one write lock
    arrays=False,
    max_list=500,  # keeps IN (...) lists well under SQLite's bound-parameter limit
)


class SqliteQueries(Queries):
    """What SQLite spells its own way."""

    # `+state` keeps SQLite on the per-incident index (the (state, due_at) one would scan all).
    pending_only = " AND +state = 'pending'"

    def claim_sql(
        self, table: str, columns: str, due: str, order: str, *, seq: bool = False
    ) -> str:
        returning = f"rowid AS seq, {columns}" if seq else columns
        return (
            f"UPDATE {table} SET lease_owner = ?, lease_until = ?"
            f" WHERE id IN ({due_ids(table, due, order)}) RETURNING {returning}"
        )

    def incidents_by_occurrence(
        self, occurrences: Sequence[tuple[str, datetime]]
    ) -> Query[dict[tuple[str, datetime], str]]:
        # One indexed query per chunk of fingerprints; the startsAt match is done here.
        wanted = {(fp, _us(at)): (fp, at) for fp, at in occurrences}
        newest: dict[tuple[str, int], tuple[int, str]] = {}
        for chunk in self._chunks(list(dict.fromkeys(fp for fp, _ in wanted))):
            condition, params = self.d.in_list("a.fingerprint", chunk)
            rows = yield from fetch(
                "SELECT a.fingerprint, a.starts_at, a.incident_id, i.number FROM alerts a"
                f" JOIN incidents i ON i.id = a.incident_id WHERE {condition}",
                *params,
            )
            for fp, at, incident_id, number in rows:
                if (fp, at) not in wanted:
                    continue
                best = newest.get((fp, at))
                if best is None or number > best[0]:
                    newest[(fp, at)] = (number, incident_id)
        return {wanted[occ]: incident_id for occ, (_, incident_id) in newest.items()}

    def next_due(self) -> Query[datetime | None]:
        # A leased row is not due again before its lease expires. Each part walks an index.
        parts = (
            "SELECT due_at AS t FROM steps WHERE state = 'pending' AND lease_until IS NULL"
            " ORDER BY due_at LIMIT 1",
            "SELECT max(due_at, lease_until) AS t FROM steps"
            " WHERE state = 'pending' AND lease_until IS NOT NULL ORDER BY t LIMIT 1",
            "SELECT not_before AS t FROM outbox WHERE state = 'pending' AND lease_until IS NULL"
            " ORDER BY not_before LIMIT 1",
            "SELECT max(not_before, lease_until) AS t FROM outbox"
            " WHERE state = 'pending' AND lease_until IS NOT NULL ORDER BY t LIMIT 1",
            # Heartbeats are few (one per configured name): one scan, leased or not.
            "SELECT min(max(due_at, coalesce(lease_until, 0))) AS t FROM heartbeats"
            " WHERE state = 'pending'",
        )
        found: list[int] = []
        for sql in parts:
            rows = yield from fetch(sql)
            found.extend(row["t"] for row in rows if row["t"] is not None)
        return _dt(min(found)) if found else None


QUERIES = SqliteQueries(SQLITE)
