"""Queries on schedule overrides and calendar-feed tokens (both dialects; see ``statement``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from escalation.oncall.overrides import CalendarToken, StoredOverride
from escalation.store.base import StoreError
from escalation.store.sql.dialect import Dialect, cols
from escalation.store.sql.rows import Tables
from escalation.store.sql.statement import Query, execute, fetch

__all__ = [
    "add_calendar_token",
    "add_override",
    "calendar_token",
    "calendar_tokens",
    "list_overrides",
    "remove_override",
    "revoke_calendar_token",
]

OVERRIDE_COLS = cols(StoredOverride)
TOKEN_COLS = cols(CalendarToken)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def add_override(t: Tables, o: StoredOverride) -> Query[None]:
    params = t.override.params(o)
    yield from execute(
        f"INSERT INTO schedule_overrides ({OVERRIDE_COLS}) VALUES ({_marks(len(params))})",
        *params,
    )


def list_overrides(
    d: Dialect,
    t: Tables,
    schedule: str | None,
    ending_after: datetime | None,
    removed: bool,
) -> Query[list[StoredOverride]]:
    """Oldest first; only ``schedule``'s if given, only those ending after ``ending_after`` if
    given, and removed ones only if ``removed``."""
    where: list[str] = []
    args: list[Any] = []
    if schedule is not None:
        where.append("schedule = ?")
        args.append(schedule)
    if ending_after is not None:
        where.append("ends_at > ?")
        args.append(d.time_out(ending_after))
    if not removed:
        where.append("removed_at IS NULL")
    sql = f"SELECT {OVERRIDE_COLS} FROM schedule_overrides"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = yield from fetch(sql + " ORDER BY created_at, id", *args)
    return [t.override.read(r) for r in rows]


def remove_override(
    d: Dialect, t: Tables, schedule: str, override_id: str, at: datetime, by: str, behalf: str
) -> Query[StoredOverride | None]:
    """Mark the override removed; None if ``schedule`` has no such override not yet removed."""
    count = yield from execute(
        "UPDATE schedule_overrides SET removed_at = ?, removed_by = ?, removed_on_behalf_of = ?"
        " WHERE id = ? AND schedule = ? AND removed_at IS NULL",
        d.time_out(at),
        by,
        behalf,
        override_id,
        schedule,
    )
    if count == 0:
        return None
    rows = yield from fetch(
        f"SELECT {OVERRIDE_COLS} FROM schedule_overrides WHERE id = ?", override_id
    )
    if not rows:
        raise StoreError(f"override {override_id!r} vanished while being removed")
    return t.override.read(rows[0])


def add_calendar_token(t: Tables, token: CalendarToken) -> Query[None]:
    params = t.calendar_token.params(token)
    yield from execute(
        f"INSERT INTO calendar_tokens ({TOKEN_COLS}) VALUES ({_marks(len(params))})", *params
    )


def calendar_token(t: Tables, token_hash: str) -> Query[CalendarToken | None]:
    """The token with that hash, unless revoked."""
    rows = yield from fetch(
        f"SELECT {TOKEN_COLS} FROM calendar_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        token_hash,
    )
    return t.calendar_token.read(rows[0]) if rows else None


def calendar_tokens(t: Tables) -> Query[list[CalendarToken]]:
    """Every token not revoked, oldest first."""
    rows = yield from fetch(
        f"SELECT {TOKEN_COLS} FROM calendar_tokens WHERE revoked_at IS NULL ORDER BY created_at, id"
    )
    return [t.calendar_token.read(r) for r in rows]


def revoke_calendar_token(d: Dialect, token_id: str, at: datetime, by: str) -> Query[bool]:
    """True if a token by that id was live and is now revoked."""
    count = yield from execute(
        "UPDATE calendar_tokens SET revoked_at = ?, revoked_by = ?"
        " WHERE id = ? AND revoked_at IS NULL",
        d.time_out(at),
        by,
        token_id,
    )
    return count == 1
