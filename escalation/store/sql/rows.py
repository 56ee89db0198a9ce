"""Rows to records and records to parameters, for any dialect, from one description per table.

Each table's columns are its record's fields, in field order; ``_KINDS`` names the fields that
need converting (instants, JSON, enums), and the dialect says how. Only those fields pay for a
conversion, so a mapper costs no more than a hand-written one (less where the driver already
returns the right type, as asyncpg does for instants and JSON).

A record becomes its parameters in one generated expression, ``(r.a, conv(r.b), ...)``, as
``dataclasses`` generates ``__init__``: the ingest hot path writes a dozen rows per request, and
going through ``attrgetter``'s tuple, a list copy and a loop over the converters cost more than
the conversions themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Generic, TypeVar, cast

from escalation.incidents import model
from escalation.incidents.heartbeats import HeartbeatRecord
from escalation.oncall.overrides import CalendarToken, StoredOverride
from escalation.store.sql.dialect import Dialect, Row

__all__ = ["INCIDENT_VALUE_COLS", "Table", "Tables", "tables"]

_R = TypeVar("_R")
_Convert = Callable[[Any], Any]

# "time" is a required instant, "time?" an optional one; an Enum class is stored as its value.
_Kind = str | type[Enum]

_INCIDENT: dict[str, _Kind] = {
    "status": model.Status,
    "policy": "json",
    "level": "json",
    "opened_at": "time",
    "updated_at": "time",
    "acknowledged_at": "time?",
    "mitigated_at": "time?",
    "resolved_at": "time?",
    "labels": "json",
}
_ALERT: dict[str, _Kind] = {
    "status": model.AlertStatus,
    "starts_at": "time",
    "ends_at": "time?",
    "labels": "json",
    "annotations": "json",
    "first_seen": "time",
    "last_seen": "time",
}
_STEP: dict[str, _Kind] = {
    "kind": model.StepKind,
    "due_at": "time",
    "state": model.StepState,
    "fired_at": "time?",
}
_OUTBOX: dict[str, _Kind] = {
    "kind": model.OutboxKind,
    "created_at": "time",
    "not_before": "time",
    "state": model.OutboxState,
    "sent_at": "time?",
    "payload": "json",
}
_EVENT: dict[str, _Kind] = {"at": "time", "kind": model.EventKind, "data": "json"}
_OVERRIDE: dict[str, _Kind] = {
    "starts_at": "time",
    "ends_at": "time",
    "created_at": "time",
    "removed_at": "time?",
}
_CALENDAR_TOKEN: dict[str, _Kind] = {"created_at": "time", "revoked_at": "time?"}
_HEARTBEAT: dict[str, _Kind] = {
    "armed_at": "time",
    "due_at": "time",
    "last_ping": "time?",
    "expired_at": "time?",
}

# The incident columns a statement binds besides id, number and version (which an insert and a
# compare-and-set place differently).
INCIDENT_VALUE_COLS = tuple(
    f.name for f in fields(model.IncidentRecord) if f.name not in ("id", "number", "version")
)


@dataclass(frozen=True, slots=True)
class Table(Generic[_R]):
    """One table's two directions."""

    read: Callable[[Row], _R]  # a row (selected by column name) → its record
    params: Callable[[_R], tuple[Any, ...]]  # a record → its columns' parameters, in field order


@dataclass(frozen=True, slots=True)
class Tables:
    incident: Table[model.IncidentRecord]
    alert: Table[model.AlertRecord]
    step: Table[model.StepRecord]
    outbox: Table[model.OutboxRecord]
    event: Table[model.TimelineEvent]
    override: Table[StoredOverride]
    calendar_token: Table[CalendarToken]
    heartbeat: Table[HeartbeatRecord]


def tables(d: Dialect) -> Tables:
    """Every table's mappers for dialect ``d``."""
    return Tables(
        incident=_table(d, model.IncidentRecord, _INCIDENT),
        alert=_table(d, model.AlertRecord, _ALERT),
        step=_table(d, model.StepRecord, _STEP),
        outbox=_table(d, model.OutboxRecord, _OUTBOX),
        event=_table(d, model.TimelineEvent, _EVENT),
        override=_table(d, StoredOverride, _OVERRIDE),
        calendar_token=_table(d, CalendarToken, _CALENDAR_TOKEN),
        heartbeat=_table(d, HeartbeatRecord, _HEARTBEAT),
    )


class _EnumValues(dict[Any, Any]):
    """An enum's stored values, looked up by member or by value: one dict lookup inside the
    generated parameters expression instead of ``Enum(v).value``'s two Python-level calls."""

    def __init__(self, enum: type[Enum]) -> None:
        super().__init__({m.value: m.value for m in enum})
        self.update({m: m.value for m in enum})
        self.enum = enum


def _converters(
    d: Dialect, names: tuple[str, ...], kinds: Mapping[str, _Kind], incoming: bool
) -> tuple[tuple[int, _Convert | _EnumValues], ...]:
    out: list[tuple[int, _Convert | _EnumValues]] = []
    for name, kind in kinds.items():
        convert: _Convert | _EnumValues | None
        if not isinstance(kind, str):
            convert = kind if incoming else _EnumValues(kind)
        elif kind == "json":
            convert = d.json_in if incoming else d.json_out
        elif kind == "time":
            convert = d.time_in if incoming else d.time_out
        else:
            convert = d.time_in_opt if incoming else d.time_out_opt
        if convert is not None:  # None: the driver already hands over the right type
            out.append((names.index(name), convert))
    return tuple(out)


def _table(d: Dialect, record: type[_R], kinds: Mapping[str, _Kind]) -> Table[_R]:
    names = tuple(f.name for f in fields(record))  # type: ignore[arg-type]
    unknown = set(kinds) - set(names)
    if unknown:
        raise RuntimeError(f"{record.__name__} has no fields {sorted(unknown)}")
    incoming = cast(tuple[tuple[int, _Convert], ...], _converters(d, names, kinds, incoming=True))

    def read(r: Row) -> _R:
        values = [r[name] for name in names]
        for i, convert in incoming:
            values[i] = convert(values[i])
        return record(*values)

    outgoing = _converters(d, names, kinds, incoming=False)
    return Table(read=read, params=_params(record.__name__, names, outgoing))


def _params(
    table: str, names: tuple[str, ...], outgoing: tuple[tuple[int, _Convert | _EnumValues], ...]
) -> Callable[[Any], tuple[Any, ...]]:
    """``lambda r: (r.a, convert_b(r.b), enum_c[r.c], ...)`` for these fields, generated once.

    The source is built only from dataclass field names (identifiers, checked) and indices; no
    value from a request or a config file reaches it.
    """
    if not all(name.isidentifier() for name in names):
        raise RuntimeError(f"{table}: not field names: {names}")
    converted = dict(outgoing)
    namespace: dict[str, Any] = {f"_c{i}": convert for i, convert in outgoing}
    columns = [
        (f"_c{i}[r.{name}]" if isinstance(converted[i], _EnumValues) else f"_c{i}(r.{name})")
        if i in converted
        else f"r.{name}"
        for i, name in enumerate(names)
    ]
    enums = {names[i]: c for i, c in outgoing if isinstance(c, _EnumValues)}
    namespace["_bad"] = lambda rec: ValueError(_bad_enum(table, rec, enums))
    exec(
        "def params(r):\n"
        "    try:\n"
        f"        return ({', '.join(columns)},)\n"
        "    except KeyError:\n"  # only an enum lookup raises it
        "        raise _bad(r) from None\n",
        namespace,
    )
    params: Callable[[Any], tuple[Any, ...]] = namespace["params"]
    return params


def _bad_enum(table: str, rec: Any, enums: Mapping[str, _EnumValues]) -> str:
    """Which enum column holds a value its enum does not have (a bad state never reaches the
    table)."""
    for name, values in enums.items():
        value = getattr(rec, name)
        if value not in values:
            return f"{table}.{name}: {value!r} is not a {values.enum.__name__}"
    return f"{table}: a value is not its column's enum"
