"""What differs between the SQL dialects in values and small fragments, in one place.

SQLite keeps instants as INTEGER microseconds since the Unix epoch and JSON as TEXT; PostgreSQL
keeps ``timestamptz`` and ``json`` (its connections encode and decode JSON through a type codec,
so Python objects go in and come out). Shared SQL is written with ``?`` placeholders; a backend
whose driver wants another style rewrites them once per statement text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol

from escalation.incidents.model import (
    AlertRecord,
    IncidentRecord,
    OutboxRecord,
    StepRecord,
    TimelineEvent,
)
from escalation.incidents.readonly import ReadOnlyDict

__all__ = [
    "ALERT_COLS",
    "INCIDENT_COLS",
    "INCIDENT_COLS_I",
    "OUTBOX_COLS",
    "STEP_COLS",
    "TIMELINE_COLS",
    "Dialect",
    "Row",
    "aware",
    "cols",
    "dumps",
]


class Row(Protocol):
    """A result row by column name: ``sqlite3.Row`` and ``asyncpg.Record`` both are."""

    def __getitem__(self, key: str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


def cols(record: type, prefix: str = "") -> str:
    """The record's fields as a column list (the tables name columns after the fields)."""
    return ", ".join(prefix + f.name for f in fields(record))


INCIDENT_COLS = cols(IncidentRecord)
INCIDENT_COLS_I = cols(IncidentRecord, "i.")
ALERT_COLS = cols(AlertRecord)
STEP_COLS = cols(StepRecord)
OUTBOX_COLS = cols(OutboxRecord)
TIMELINE_COLS = cols(TimelineEvent)

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_encode = _ENCODER.encode


def dumps(obj: Any) -> str:
    """Compact JSON, key order kept; one encoder for all (json.dumps builds one per call).

    A read-only snapshot (shared by every incident of a severity) is encoded once.
    """
    if isinstance(obj, ReadOnlyDict):
        return obj.memo(_encode)
    return _encode(obj)


def aware(dt: datetime) -> datetime:
    """``dt`` itself; ValueError if it is naive (an instant without a zone is ambiguous)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: the store only keeps timezone-aware instants")
    return dt


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one backend stores values and spells the few fragments that differ.

    The ``*_opt`` converters pass ``None`` through. A converter that is ``None`` is not
    needed: the driver already converts (asyncpg's codecs do, for instants and JSON).
    """

    name: str
    time_out: Callable[[datetime], Any]  # aware datetime → column value
    time_out_opt: Callable[[datetime | None], Any]
    time_in: Callable[[Any], datetime] | None  # column value → aware datetime
    time_in_opt: Callable[[Any], datetime | None] | None
    json_out: Callable[[Any], Any] | None  # Python object → column value
    json_in: Callable[[Any], Any] | None  # column value → Python object
    next_number: str  # SQL giving a new incident its number
    outbox_seq: str  # column holding outbox insertion order
    for_update: str  # suffix row-locking what a transaction reads ("" where writers serialise)
    arrays: bool  # a list binds as one array parameter (else one placeholder per item)
    max_list: int  # most items bound in one IN list

    def in_list(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: (SQL condition, its parameters)."""
        if self.arrays:
            return f"{column} = ANY(?::text[])", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)
