"""The store interface every backend implements, and the errors it raises.

A unit of work is ``async with store.transaction() as tx``: reads, then one ``tx.apply(changes)``;
leaving the block commits, an exception rolls back. Deciding lives elsewhere (pure code);
backends only read and write.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from escalation.incidents.heartbeats import HeartbeatRecord
from escalation.incidents.model import (
    AlertRecord,
    Changes,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    StepRecord,
    TimelineEvent,
)
from escalation.oncall.overrides import CalendarToken, StoredOverride

__all__ = [
    "BreakerRecord",
    "Conflict",
    "DeliveryState",
    "IncidentFilter",
    "IngestContext",
    "RateSlot",
    "Store",
    "StoreError",
    "Tx",
]


# What a delivery decides on (``Tx.delivery_state``): the incidents, the outbox rows as stored
# now, and each incident's alerts (when asked).
DeliveryState = tuple[
    dict[str, IncidentRecord], dict[str, OutboxRecord], dict[str, list[AlertRecord]]
]


class StoreError(Exception):
    """The store could not do what was asked (unreachable, unwritable, corrupt)."""


class Conflict(StoreError):
    """An optimistic-concurrency check failed (another writer got there first): retry the unit."""


@dataclass(frozen=True)
class IncidentFilter:
    status: Sequence[str] = ()
    severity: Sequence[str] = ()
    team: str | None = None
    limit: int = 100
    # Case-insensitive (ASCII) substring of the title, key or team, or the number (``42``/``#42``).
    text: str = ""
    offset: int = 0
    # The console board's order: triggered, acknowledged, mitigated, resolved; then by level
    # (P0 first), then newest. Otherwise newest first.
    board_order: bool = False


@dataclass(frozen=True)
class IngestContext:
    """Everything deciding an ingest needs, read in one round trip."""

    by_key: dict[str, IncidentRecord]  # key (or alias) → the latest incident it points at
    by_occurrence: dict[str, str]  # key without an incident → incident holding one of its alerts
    incidents: dict[str, IncidentRecord]  # every incident named above, by id
    alerts: dict[str, list[AlertRecord]]  # incident id → its alert occurrences
    outbox: dict[str, list[OutboxRecord]]  # incident id → its notifications


@dataclass(frozen=True)
class BreakerRecord:
    """One channel's stored circuit breaker: sends failed in a row, and when it last opened
    (or was re-armed for a probe); ``opened_at`` None means closed."""

    channel: str
    failures: int
    opened_at: datetime | None


@dataclass(frozen=True)
class RateSlot:
    """One sliding-window limit a send counts against: at most ``count`` per ``per`` on ``key``."""

    key: str
    count: int
    per: timedelta


class Tx(Protocol):
    """Operations inside one transaction."""

    async def lock_keys(self, keys: Sequence[str]) -> None:
        """Serialise writers working on the same incident keys (PG: advisory xact locks)."""

    async def incidents_by_key(self, keys: Sequence[str]) -> dict[str, IncidentRecord]:
        """The latest incident each key (or key alias) points at."""

    async def incidents_by_occurrence(
        self, occurrences: Sequence[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], str]:
        """(fingerprint, startsAt) → id of the newest incident holding that occurrence."""

    async def ingest_context(
        self, occurrences_by_key: dict[str, list[tuple[str, datetime]]]
    ) -> IngestContext:
        """For each key: its latest incident, else the newest incident holding one of the
        key's (fingerprint, startsAt) occurrences; with those incidents' alerts and outbox."""

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident, locked for update on backends that lock rows."""

    async def alerts_of(self, incident_id: str) -> list[AlertRecord]:
        """Every occurrence recorded in the incident."""

    async def steps_of(self, incident_id: str, *, pending_only: bool = False) -> list[StepRecord]:
        """Scheduled steps of the incident, ordered by due time."""

    async def outbox_of(self, incident_id: str) -> list[OutboxRecord]:
        """Notifications of the incident, ordered by creation."""

    async def delivery_state(
        self, incident_ids: Sequence[str], row_ids: Sequence[str], *, alerts: bool = False
    ) -> tuple[dict[str, IncidentRecord], dict[str, OutboxRecord], dict[str, list[AlertRecord]]]:
        """What a delivery decides on, in one round trip: the existing incidents (locked for
        update on backends that lock rows), the outbox rows as stored now, and (if asked)
        each incident's alerts."""

    async def step_context(
        self, step_id: str, incident_id: str
    ) -> tuple[IncidentRecord | None, StepRecord | None, list[OutboxRecord]]:
        """What firing a step needs, in one round trip: the incident (locked for update on
        backends that lock rows), the step as stored now, and the incident's outbox rows."""

    async def claim_due_steps(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[StepRecord]:
        """Pending steps due at ``now`` whose lease is free or expired; leased to ``owner``."""

    async def claim_outbox(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[OutboxRecord]:
        """Pending outbox rows whose not_before has come and lease is free or expired."""

    async def lease_outbox(
        self, ids: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> list[OutboxRecord]:
        """Lease the rows named by ``ids`` (written in this transaction) to ``owner``, as
        ``claim_outbox`` would: only pending rows whose not_before has come; in ``ids`` order."""

    async def lease_for_delivery(
        self, ids: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> tuple[list[OutboxRecord], DeliveryState]:
        """``lease_outbox`` and then ``delivery_state`` of the leased rows (with alerts), in
        one round trip: what paging at once hands to delivery's ``prepare``."""

    async def record_delivery(
        self,
        outbox_id: str,
        state: OutboxState,
        *,
        attempts: int,
        error: str = "",
        provider_id: str = "",
        sent_at: datetime | None = None,
        not_before: datetime | None = None,
    ) -> None:
        """Write the outcome of a delivery attempt and release the row's lease."""

    async def seen_delivery(self, source: str, delivery_id: str, now: datetime) -> bool:
        """Remember an inbound delivery id; True if it was already seen (dedup of webhooks)."""

    async def prune_deliveries(self, source: str, before: datetime) -> int:
        """Forget ``source``'s delivery ids seen before ``before`` (past its replay window)."""

    async def take_rate_slots(
        self, sends: Sequence[Sequence[RateSlot]], now: datetime
    ) -> list[datetime | None]:
        """Count sends at ``now``, in order, each against every limit in its slots, all or none.

        One answer per send: None when each of its limits had room (the send is counted, and
        the sends after it see it); else the earliest instant all of them will have room, and
        nothing is counted for it. Serialised per key across every process sharing the store,
        so replicas together honour each limit once. One call answers a whole delivery round.
        """

    async def check_breaker(self, channel: str, now: datetime, reset: timedelta) -> datetime | None:
        """May a send go out on ``channel`` now? None if so; else when a try may go again.

        While the breaker is open nothing goes; once ``reset`` has passed since it opened, the
        first caller (in every process sharing the store) gets the half-open probe, which
        re-arms the breaker for another ``reset``: everyone else keeps holding.
        """

    async def record_breaker_outcomes(
        self, outcomes: Sequence[tuple[str, bool]], now: datetime, failures: int
    ) -> None:
        """Feed the breakers, in order: a success closes the channel's breaker and clears its
        run of failures; the ``failures``-th failure in a row opens it at ``now``."""

    async def take_bundle_window(
        self, person: str, channel: str, now: datetime, window: timedelta
    ) -> datetime | None:
        """Start a bundling window for a message to ``person`` on ``channel`` (None), or say when
        the current one, begun by any process sharing the store, ends (nothing taken)."""

    async def release_bundle_window(self, person: str, channel: str, at: datetime) -> None:
        """Give back the window taken at ``at`` (nothing reached the person after all)."""

    async def apply(self, changes: Changes) -> None:
        """Write ``changes``; raises Conflict if an updated incident's version moved."""

    async def overrides(
        self,
        schedule: str | None = None,
        *,
        ending_after: datetime | None = None,
        removed: bool = False,
    ) -> list[StoredOverride]:
        """Stored schedule overrides, oldest first (filters as ``Store.overrides``)."""

    async def add_override(self, override: StoredOverride) -> None:
        """Store a new override."""

    async def remove_override(
        self, schedule: str, override_id: str, at: datetime, by: str, on_behalf_of: str = ""
    ) -> StoredOverride | None:
        """Mark ``schedule``'s override removed (kept for the audit trail); None when there is
        no such override not yet removed."""

    async def add_calendar_token(self, token: CalendarToken) -> None:
        """Store a new calendar-feed token (its hash only)."""

    async def revoke_calendar_token(self, token_id: str, at: datetime, by: str) -> bool:
        """Revoke a live token; False when there is none by that id."""

    async def heartbeat(self, name: str) -> HeartbeatRecord | None:
        """One heartbeat's row, locked for update on backends that lock rows."""

    async def put_heartbeat(self, rec: HeartbeatRecord, *, only_new: bool = False) -> None:
        """Insert or replace a heartbeat's row (releasing any lease on it); ``only_new``:
        insert it only if no row has that name (a replica arming at the same time wins)."""

    async def claim_due_heartbeats(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[HeartbeatRecord]:
        """Pending heartbeats due at ``now`` whose lease is free or expired; leased to ``owner``."""


class Store(Protocol):
    """A durable backend."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations (safe with several processes at once)."""

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A unit of work; commit on normal exit, roll back on exception."""

    async def ping(self) -> None:
        """Raise StoreError unless the store can take writes now (for /readyz)."""

    async def next_due(self) -> datetime | None:
        """Earliest due_at of pending steps and heartbeats and not_before of pending outbox
        rows."""

    async def heartbeats(self) -> list[HeartbeatRecord]:
        """Every stored heartbeat, by name."""

    async def get_incident(self, incident_id: str) -> IncidentRecord | None: ...

    async def find_incident(self, ref: str) -> IncidentRecord | None:
        """By id, by number (``42`` or ``#42``) or by key."""

    async def list_incidents(self, flt: IncidentFilter) -> list[IncidentRecord]:
        """Newest first."""

    async def count_incidents(self, flt: IncidentFilter) -> int:
        """How many incidents ``flt`` matches, ignoring its limit and offset."""

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """In time order (ties in insertion order)."""

    async def counts(self) -> dict[tuple[str, str], int]:
        """(severity, status) → number of incidents not resolved."""

    async def outbox_depth(self) -> dict[str, int]:
        """channel → pending rows."""

    async def breakers(self) -> list[BreakerRecord]:
        """Every channel's stored breaker, by channel (a channel never failed has none)."""

    async def overrides(
        self,
        schedule: str | None = None,
        *,
        ending_after: datetime | None = None,
        removed: bool = False,
    ) -> list[StoredOverride]:
        """Stored schedule overrides, oldest first: ``schedule``'s only if given, those ending
        after ``ending_after`` only if given, removed ones too only if ``removed``."""

    async def calendar_token(self, token_hash: str) -> CalendarToken | None:
        """The live (not revoked) calendar token with that hash."""

    async def calendar_tokens(self) -> list[CalendarToken]:
        """Every live calendar token, oldest first."""

    async def delivery_known(self, source: str, delivery_id: str) -> bool:
        """Whether an inbound delivery was already recorded (``Tx.seen_delivery``), committed."""
