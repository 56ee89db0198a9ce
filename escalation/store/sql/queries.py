"""The store's reads and small writes as dialect-neutral queries (see ``query``).

``Queries`` holds what both dialects share; a backend subclasses it for what genuinely differs:
claiming with leases, finding incidents by alert occurrence, and the earliest due instant.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from escalation.incidents.heartbeats import HeartbeatRecord
from escalation.incidents.model import (
    AlertRecord,
    Changes,
    DeliveryOutcome,
    IncidentRecord,
    OutboxRecord,
    StepRecord,
    TimelineEvent,
)
from escalation.store.base import (
    BreakerRecord,
    DeliveryState,
    IncidentFilter,
    IngestContext,
    RateSlot,
    StoreError,
)
from escalation.store.sql.changes import RECORD_DELIVERY, apply_changes, delivery_params
from escalation.store.sql.dialect import (
    ALERT_COLS,
    INCIDENT_COLS,
    INCIDENT_COLS_I,
    OUTBOX_COLS,
    STEP_COLS,
    TIMELINE_COLS,
    Dialect,
    Row,
)
from escalation.store.sql.heartbeats import HEARTBEAT_COLS
from escalation.store.sql.rows import tables
from escalation.store.sql.statement import Query, execute, execute_many, fetch

__all__ = ["DeliveryState", "Queries", "StepContext", "due_ids"]

_T = TypeVar("_T")
_NUMBER_REF = re.compile(r"#?(\d+)")
# The board's status order: what needs someone first.
_BOARD_STATUS = (
    "CASE status WHEN 'triggered' THEN 0 WHEN 'acknowledged' THEN 1"
    " WHEN 'mitigated' THEN 2 ELSE 3 END"
)

StepContext = tuple[IncidentRecord | None, StepRecord | None, list[OutboxRecord]]


def due_ids(table: str, due: str, order: str) -> str:
    """The ids of ``table``'s first pending rows due (``due`` column) by now whose lease is free
    or expired; parameters: now, now, limit."""
    return (
        f"SELECT id FROM {table} WHERE state = 'pending' AND {due} <= ?"
        f" AND (lease_until IS NULL OR lease_until <= ?) ORDER BY {order} LIMIT ?"
    )


class Queries(ABC):
    """Every query of the store for one dialect."""

    # Narrows steps_of to pending steps.
    pending_only: ClassVar[str] = " AND state = 'pending'"

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        self.t = tables(dialect)
        self._claim_steps = self.claim_sql("steps", STEP_COLS, "due_at", "due_at, id")
        order = f"not_before, created_at, {dialect.outbox_seq}"
        self._claim_outbox = self.claim_sql("outbox", OUTBOX_COLS, "not_before", order, seq=True)
        self._claim_heartbeats = self.claim_sql(
            "heartbeats", HEARTBEAT_COLS, "due_at", "due_at, id"
        )

    def _chunks(self, items: Sequence[_T]) -> Iterator[Sequence[_T]]:
        step = self.d.max_list
        for start in range(0, len(items), step):
            yield items[start : start + step]

    # -- dialect-specific --

    @abstractmethod
    def claim_sql(
        self, table: str, columns: str, due: str, order: str, *, seq: bool = False
    ) -> str:
        """UPDATE … RETURNING ``columns`` (and ``seq``, the insertion order, if asked) that
        leases the rows ``due_ids(table, due, order)`` picks; parameters: owner, lease_until,
        then due_ids' (now, now, limit)."""

    @abstractmethod
    def incidents_by_occurrence(
        self, occurrences: Sequence[tuple[str, datetime]]
    ) -> Query[dict[tuple[str, datetime], str]]:
        """(fingerprint, startsAt) → id of the newest incident holding that occurrence."""

    @abstractmethod
    def next_due(self) -> Query[datetime | None]:
        """Earliest due instant of pending steps and outbox rows (a live lease defers a row)."""

    # -- inside a transaction --

    def get_incident(self, incident_id: str, *, lock: bool = False) -> Query[IncidentRecord | None]:
        lock_sql = self.d.for_update if lock else ""
        rows = yield from fetch(
            f"SELECT {INCIDENT_COLS} FROM incidents WHERE id = ?{lock_sql}", incident_id
        )
        return self.t.incident.read(rows[0]) if rows else None

    def incidents_by_key(self, keys: Sequence[str]) -> Query[dict[str, IncidentRecord]]:
        out: dict[str, IncidentRecord] = {}
        incident = self.t.incident.read
        for chunk in self._chunks(list(dict.fromkeys(keys))):
            condition, params = self.d.in_list("k.key", chunk)
            rows = yield from fetch(
                f"SELECT k.key AS lookup_key, {INCIDENT_COLS_I} FROM incident_keys k"
                f" JOIN incidents i ON i.id = k.incident_id WHERE {condition}",
                *params,
            )
            for row in rows:
                out[row["lookup_key"]] = incident(row)
        return out

    def ingest_context(
        self, occurrences_by_key: dict[str, list[tuple[str, datetime]]]
    ) -> Query[IngestContext]:
        """See ``Tx.ingest_context``; incidents found by occurrence are locked, in id order."""
        by_key = yield from self.incidents_by_key(list(occurrences_by_key))
        incidents = {inc.id: inc for inc in by_key.values()}
        by_occurrence: dict[str, str] = {}
        missing = {k: occ for k, occ in occurrences_by_key.items() if k not in by_key and occ}
        if missing:
            found = yield from self.incidents_by_occurrence(
                [o for occ in missing.values() for o in occ]
            )
            for key, occurrences in missing.items():
                hit = next((found[o] for o in occurrences if o in found), None)
                if hit is not None:
                    by_occurrence[key] = hit
        for incident_id in sorted(set(by_occurrence.values()) - set(incidents)):
            inc = yield from self.get_incident(incident_id, lock=True)
            if inc is not None:
                incidents[incident_id] = inc
        alerts = {}
        for incident_id in incidents:
            alerts[incident_id] = yield from self.alerts_of(incident_id)
        outbox = {}
        for incident_id in incidents:
            outbox[incident_id] = yield from self.outbox_of(incident_id)
        return IngestContext(
            by_key=by_key,
            by_occurrence={k: v for k, v in by_occurrence.items() if v in incidents},
            incidents=incidents,
            alerts=alerts,
            outbox=outbox,
        )

    def alerts_of(self, incident_id: str) -> Query[list[AlertRecord]]:
        rows = yield from fetch(
            f"SELECT {ALERT_COLS} FROM alerts WHERE incident_id = ?"
            " ORDER BY starts_at, fingerprint",
            incident_id,
        )
        return [self.t.alert.read(r) for r in rows]

    def steps_of(self, incident_id: str, pending_only: bool) -> Query[list[StepRecord]]:
        extra = self.pending_only if pending_only else ""
        rows = yield from fetch(
            f"SELECT {STEP_COLS} FROM steps WHERE incident_id = ?{extra} ORDER BY due_at, id",
            incident_id,
        )
        return [self.t.step.read(r) for r in rows]

    def outbox_of(self, incident_id: str) -> Query[list[OutboxRecord]]:
        rows = yield from fetch(
            f"SELECT {OUTBOX_COLS} FROM outbox WHERE incident_id = ?"
            f" ORDER BY created_at, {self.d.outbox_seq}",
            incident_id,
        )
        return [self.t.outbox.read(r) for r in rows]

    def step_context(self, step_id: str, incident_id: str) -> Query[StepContext]:
        inc = yield from self.get_incident(incident_id, lock=True)
        rows = yield from fetch(f"SELECT {STEP_COLS} FROM steps WHERE id = ?", step_id)
        outbox = (yield from self.outbox_of(incident_id)) if inc is not None else []
        return inc, (self.t.step.read(rows[0]) if rows else None), outbox

    def delivery_state(
        self, incident_ids: Sequence[str], row_ids: Sequence[str], alerts: bool
    ) -> Query[DeliveryState]:
        """Incidents are read (and locked, where rows lock) in id order, so two deliveries
        locking overlapping incidents cannot deadlock."""
        incidents: dict[str, IncidentRecord] = {}
        found_alerts: dict[str, list[AlertRecord]] = {}
        for incident_id in sorted(set(incident_ids)):
            inc = yield from self.get_incident(incident_id, lock=True)
            if inc is not None:
                incidents[incident_id] = inc
                if alerts:
                    found_alerts[incident_id] = yield from self.alerts_of(incident_id)
        found: dict[str, OutboxRecord] = {}
        for chunk in self._chunks(list(dict.fromkeys(row_ids))):
            condition, params = self.d.in_list("id", chunk)
            rows = yield from fetch(f"SELECT {OUTBOX_COLS} FROM outbox WHERE {condition}", *params)
            for o in map(self.t.outbox.read, rows):
                found[o.id] = o
        return incidents, found, found_alerts

    def _claim(
        self, sql: str, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> Query[list[Row]]:
        if limit <= 0:
            return []
        at = self.d.time_out
        return (yield from fetch(sql, owner, at(lease_until), at(now), at(now), limit))

    def claim_due_steps(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> Query[list[StepRecord]]:
        rows = yield from self._claim(self._claim_steps, now, owner, lease_until, limit)
        return sorted(map(self.t.step.read, rows), key=lambda s: (s.due_at, s.id))

    def claim_outbox(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> Query[list[OutboxRecord]]:
        rows = yield from self._claim(self._claim_outbox, now, owner, lease_until, limit)
        rows = sorted(rows, key=lambda r: (r["not_before"], r["created_at"], r["seq"]))
        return [self.t.outbox.read(r) for r in rows]

    def claim_due_heartbeats(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> Query[list[HeartbeatRecord]]:
        rows = yield from self._claim(self._claim_heartbeats, now, owner, lease_until, limit)
        return sorted(map(self.t.heartbeat.read, rows), key=lambda h: (h.due_at, h.id))

    def lease_outbox(
        self, ids: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> Query[list[OutboxRecord]]:
        found: dict[str, OutboxRecord] = {}
        at = self.d.time_out
        for chunk in self._chunks(list(dict.fromkeys(ids))):
            condition, params = self.d.in_list("id", chunk)
            rows = yield from fetch(
                f"UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE {condition}"
                f" AND state = 'pending' AND not_before <= ? RETURNING {OUTBOX_COLS}",
                owner,
                at(lease_until),
                *params,
                at(now),
            )
            for o in map(self.t.outbox.read, rows):
                found[o.id] = o
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def lease_for_delivery(
        self, ids: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> Query[tuple[list[OutboxRecord], DeliveryState]]:
        leased = yield from self.lease_outbox(ids, now, owner, lease_until)
        if not leased:
            return leased, ({}, {}, {})
        state = yield from self.delivery_state(
            [r.incident_id for r in leased], [r.id for r in leased], True
        )
        return leased, state

    def record_delivery(self, outcome: DeliveryOutcome) -> Query[None]:
        count = yield from execute(RECORD_DELIVERY, *delivery_params(self.d, outcome))
        if count != 1:
            raise StoreError(f"no outbox row {outcome.outbox_id!r} to record a delivery on")

    def seen_delivery(self, source: str, delivery_id: str, now: datetime) -> Query[bool]:
        count = yield from execute(
            "INSERT INTO inbound_deliveries (source, id, seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (source, id) DO NOTHING",
            source,
            delivery_id,
            self.d.time_out(now),
        )
        return count == 0

    def delivery_known(self, source: str, delivery_id: str) -> Query[bool]:
        rows = yield from fetch(
            "SELECT 1 FROM inbound_deliveries WHERE source = ? AND id = ?", source, delivery_id
        )
        return bool(rows)

    def prune_deliveries(self, source: str, before: datetime) -> Query[int]:
        count = yield from execute(
            "DELETE FROM inbound_deliveries WHERE source = ? AND seen_at < ?",
            source,
            self.d.time_out(before),
        )
        return count

    def take_rate_slots(
        self, sends: Sequence[Sequence[RateSlot]], now: datetime
    ) -> Query[list[datetime | None]]:
        """See ``Tx.take_rate_slots`` (the caller holds each key's lock).

        Each key's window is counted once (not read row by row): the statements per call are
        two per key plus one insert, however many sends it answers.
        """
        d = self.d
        stored: dict[str, int] = {}  # key -> sends in its window before this call
        for s in (s for slots in sends for s in slots if s.key not in stored):
            # What fell out of the window is never read again: keep the table small.
            yield from execute(
                "DELETE FROM rate_events WHERE key = ? AND at <= ?", s.key, d.time_out(now - s.per)
            )
            rows = yield from fetch("SELECT count(*) AS n FROM rate_events WHERE key = ?", s.key)
            stored[s.key] = int(rows[0]["n"])
        held = dict(stored)  # ... and with the sends this call has counted so far
        answers: list[datetime | None] = []
        for slots in sends:
            later: list[datetime] = []
            for s in slots:
                if held[s.key] >= s.count:
                    later.append((yield from self._room_at(s, held[s.key] - s.count, stored, now)))
            answers.append(max(later) if later else None)
            if not later:
                for s in slots:
                    held[s.key] += 1
        taken = [s.key for slots, a in zip(sends, answers, strict=True) if a is None for s in slots]
        if taken:
            yield from execute_many(
                "INSERT INTO rate_events (key, at) VALUES (?, ?)",
                [(key, d.time_out(now)) for key in taken],
            )
        return answers

    def _room_at(
        self, s: RateSlot, index: int, stored: Mapping[str, int], now: datetime
    ) -> Query[datetime]:
        """When ``s`` has room again: once the send at ``index`` (oldest first) of its window
        expires. Sends counted by this call come after the stored ones, all at ``now``."""
        if index >= stored[s.key]:
            return now + s.per
        d = self.d
        rows = yield from fetch(
            "SELECT at FROM rate_events WHERE key = ? ORDER BY at LIMIT 1 OFFSET ?", s.key, index
        )
        freed = rows[0]["at"]
        return (d.time_in(freed) if d.time_in else freed) + s.per

    def check_breaker(
        self, channel: str, now: datetime, reset: timedelta
    ) -> Query[datetime | None]:
        """See ``Tx.check_breaker``: one conditional UPDATE takes the probe, so of several
        callers past the cool-down exactly one matches (the others see the re-armed row)."""
        d = self.d
        probe = yield from execute(
            "UPDATE breakers SET opened_at = ? WHERE channel = ? AND opened_at <= ?",
            d.time_out(now),
            channel,
            d.time_out(now - reset),
        )
        if probe:
            return None
        rows = yield from fetch("SELECT opened_at FROM breakers WHERE channel = ?", channel)
        opened = rows[0]["opened_at"] if rows else None
        if opened is None:
            return None  # closed
        until: datetime = (d.time_in(opened) if d.time_in else opened) + reset
        return max(until, now)

    def record_breaker_outcomes(
        self, outcomes: Sequence[tuple[str, bool]], now: datetime, failures: int
    ) -> Query[None]:
        """See ``Tx.record_breaker_outcomes``."""
        at = self.d.time_out(now)
        for channel, ok in outcomes:
            if ok:
                # Most sends succeed on a closed breaker: then nothing is written.
                yield from execute(
                    "UPDATE breakers SET failures = 0, opened_at = NULL"
                    " WHERE channel = ? AND (failures <> 0 OR opened_at IS NOT NULL)",
                    channel,
                )
                continue
            yield from execute(
                "INSERT INTO breakers (channel, failures, opened_at) VALUES (?, 1, ?)"
                " ON CONFLICT (channel) DO UPDATE SET failures = breakers.failures + 1,"
                " opened_at = CASE WHEN breakers.failures + 1 >= ? THEN ?"
                " ELSE breakers.opened_at END",
                channel,
                at if failures <= 1 else None,
                failures,
                at,
            )

    def take_bundle_window(
        self, person: str, channel: str, now: datetime, window: timedelta
    ) -> Query[datetime | None]:
        """See ``Tx.take_bundle_window`` (the caller holds the pair's lock)."""
        d = self.d
        rows = yield from fetch(
            "SELECT sent_at FROM bundle_windows WHERE person = ? AND channel = ?", person, channel
        )
        if rows:
            sent = rows[0]["sent_at"]
            ends: datetime = (d.time_in(sent) if d.time_in else sent) + window
            if now < ends:
                return ends
        yield from execute(
            "INSERT INTO bundle_windows (person, channel, sent_at) VALUES (?, ?, ?)"
            " ON CONFLICT (person, channel) DO UPDATE SET sent_at = excluded.sent_at",
            person,
            channel,
            d.time_out(now),
        )
        return None

    def release_bundle_window(self, person: str, channel: str, at: datetime) -> Query[None]:
        """See ``Tx.release_bundle_window``: only the window taken at ``at`` (a later one was
        taken by a send that went)."""
        yield from execute(
            "DELETE FROM bundle_windows WHERE person = ? AND channel = ? AND sent_at = ?",
            person,
            channel,
            self.d.time_out(at),
        )

    def apply(self, changes: Changes) -> Query[None]:
        yield from apply_changes(self.d, self.t, changes)

    # -- reads of committed data --

    def find_incident(self, ref: str) -> Query[IncidentRecord | None]:
        ref = ref.strip()
        found = yield from self.get_incident(ref)
        if found is not None:
            return found
        m = _NUMBER_REF.fullmatch(ref)
        # 64-bit bound: a longer digit string cannot be a number we assigned.
        if m is not None and len(m.group(1)) <= 18:
            rows = yield from fetch(
                f"SELECT {INCIDENT_COLS} FROM incidents WHERE number = ?", int(m.group(1))
            )
            if rows:
                return self.t.incident.read(rows[0])
        by_key = yield from self.incidents_by_key([ref])
        if ref in by_key:
            return by_key[ref]
        rows = yield from fetch(
            f"SELECT {INCIDENT_COLS} FROM incidents WHERE key = ? ORDER BY number DESC LIMIT 1",
            ref,
        )
        return self.t.incident.read(rows[0]) if rows else None

    def _incident_where(self, flt: IncidentFilter) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        for column, values in (
            ("status", [str(s) for s in flt.status]),
            ("severity", flt.severity),
        ):
            if values:
                condition, params = self.d.in_list(column, list(values))
                where.append(condition)
                args.extend(params)
        if flt.team is not None:
            where.append("team = ?")
            args.append(flt.team)
        if flt.text:
            like = "%" + re.sub(r"([\\%_])", r"\\\1", flt.text.lower()) + "%"
            found = [f"lower({c}) LIKE ? ESCAPE '\\'" for c in ("title", "key", "team")]
            args.extend([like] * 3)
            m = _NUMBER_REF.fullmatch(flt.text.strip())
            if m is not None and len(m.group(1)) <= 18:
                found.append("number = ?")
                args.append(int(m.group(1)))
            where.append("(" + " OR ".join(found) + ")")
        return (" WHERE " + " AND ".join(where)) if where else "", args

    def list_incidents(self, flt: IncidentFilter) -> Query[list[IncidentRecord]]:
        where, args = self._incident_where(flt)
        order = "opened_at DESC, number DESC"
        if flt.board_order:
            order = f"{_BOARD_STATUS}, severity, {order}"
        # Order and page narrow rows (ids) first: sorting whole rows would drag every policy
        # snapshot through the sorter. Only the page's rows are then read in full.
        page = f"SELECT id FROM incidents{where} ORDER BY {order} LIMIT ? OFFSET ?"
        sql = f"SELECT {INCIDENT_COLS} FROM incidents WHERE id IN ({page}) ORDER BY {order}"
        args += [max(0, flt.limit), max(0, flt.offset)]
        rows = yield from fetch(sql, *args)
        return [self.t.incident.read(r) for r in rows]

    def count_incidents(self, flt: IncidentFilter) -> Query[int]:
        where, args = self._incident_where(flt)
        rows = yield from fetch(f"SELECT count(*) AS n FROM incidents{where}", *args)
        return int(rows[0]["n"])

    def timeline(self, incident_id: str) -> Query[list[TimelineEvent]]:
        rows = yield from fetch(
            f"SELECT {TIMELINE_COLS} FROM timeline WHERE incident_id = ? ORDER BY at, id",
            incident_id,
        )
        return [self.t.event.read(r) for r in rows]

    def counts(self) -> Query[dict[tuple[str, str], int]]:
        rows = yield from fetch(
            "SELECT severity, status, count(*) AS n FROM incidents"
            " WHERE status <> 'resolved' GROUP BY severity, status"
        )
        return {(r["severity"], r["status"]): r["n"] for r in rows}

    def outbox_depth(self) -> Query[dict[str, int]]:
        rows = yield from fetch(
            "SELECT channel, count(*) AS n FROM outbox WHERE state = 'pending' GROUP BY channel"
        )
        return {r["channel"]: r["n"] for r in rows}

    def breakers(self) -> Query[list[BreakerRecord]]:
        d = self.d
        # Sorted here, not by SQL: the two databases collate text differently.
        rows = yield from fetch("SELECT channel, failures, opened_at FROM breakers")
        out = []
        for r in rows:
            opened = r["opened_at"]
            if opened is not None and d.time_in:
                opened = d.time_in(opened)
            out.append(BreakerRecord(r["channel"], r["failures"], opened))
        return sorted(out, key=lambda b: b.channel)

    def schema_versions(self) -> Query[list[int]]:
        rows = yield from fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]
