"""The PostgreSQL dialect: ``timestamptz`` and ``json`` columns (asyncpg converts both), array
parameters, row locks, and the queries PostgreSQL spells its own way."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from datetime import datetime

from escalation.incidents.model import Changes
from escalation.store.sql.dialect import Dialect, aware
from escalation.store.sql.queries import Queries, due_ids
from escalation.store.sql.statement import Query, execute, fetch
from escalation.store.wakeup import WAKEUP_CHANNEL

__all__ = ["POSTGRES", "QUERIES", "PostgresQueries", "numbered"]


def _aware_opt(dt: datetime | None) -> datetime | None:
    return None if dt is None else aware(dt)


POSTGRES = Dialect(
    name="postgres",
    time_out=aware,
    time_out_opt=_aware_opt,
    time_in=None,  # asyncpg returns timestamptz as aware datetimes
    time_in_opt=None,
    json_out=None,  # the connection's json codec encodes and decodes
    json_in=None,
    next_number="DEFAULT",  # an identity column
    outbox_seq="seq",
    for_update=" FOR UPDATE",
    arrays=True,
    max_list=1 << 30,  # an array parameter has no practical bound
)


class PostgresQueries(Queries):
    """What PostgreSQL spells its own way.

    Claims take ``FOR UPDATE SKIP LOCKED``: they pass over rows another claimer is leasing
    right now, so two replicas never wait on (or get) the same row.
    """

    def claim_sql(
        self, table: str, columns: str, due: str, order: str, *, seq: bool = False
    ) -> str:
        # The claimed table is aliased "x": the subquery's "id" would make bare names ambiguous.
        returning = ", ".join("x." + c for c in (["seq"] if seq else []) + columns.split(", "))
        return (
            f"UPDATE {table} x SET lease_owner = ?, lease_until = ?"
            f" FROM ({due_ids(table, due, order)} FOR UPDATE SKIP LOCKED) AS c"
            f" WHERE x.id = c.id RETURNING {returning}"
        )

    def incidents_by_occurrence(
        self, occurrences: Sequence[tuple[str, datetime]]
    ) -> Query[dict[tuple[str, datetime], str]]:
        if not occurrences:
            return {}
        # Aware datetimes compare and hash by instant, so rows map back to the caller's keys.
        wanted = {(fp, aware(at)): (fp, at) for fp, at in occurrences}
        rows = yield from fetch(
            "SELECT DISTINCT ON (a.fingerprint, a.starts_at)"
            " a.fingerprint, a.starts_at, a.incident_id"
            " FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            " JOIN unnest(?::text[], ?::timestamptz[]) AS o(fp, st)"
            " ON a.fingerprint = o.fp AND a.starts_at = o.st"
            " ORDER BY a.fingerprint, a.starts_at, i.number DESC",
            [fp for fp, _ in wanted],
            [at for _, at in wanted],
        )
        return {wanted[(r["fingerprint"], r["starts_at"])]: r["incident_id"] for r in rows}

    def next_due(self) -> Query[datetime | None]:
        # GREATEST ignores NULLs: an unleased row is due at its own time.
        # Each part walks an index (unleased rows in due order; leased ones are few).
        rows = yield from fetch(
            "SELECT min(t) AS t FROM ("
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
            "  WHERE state = 'pending' AND lease_until IS NOT NULL)"
            " UNION ALL"
            " (SELECT min(GREATEST(due_at, lease_until)) FROM heartbeats"
            "  WHERE state = 'pending')) AS due"
        )
        due: datetime | None = rows[0]["t"]
        return due

    def apply(self, changes: Changes) -> Query[None]:
        yield from super().apply(changes)
        if changes.new_steps or changes.new_outbox or changes.step_reschedules:
            # Wake the other replicas: delivered at commit (never for a rollback), so a listener
            # that reads next_due on receipt sees the rows. The payload names the schema.
            yield from execute(
                "SELECT pg_notify(?, coalesce(current_schema(), ''))", WAKEUP_CHANNEL
            )


QUERIES = PostgresQueries(POSTGRES)


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """Shared SQL's ``?`` placeholders as asyncpg's ``$1, $2, …`` (the texts are few: cached)."""
    n = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(n)}", sql)
