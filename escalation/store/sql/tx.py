"""The ``Tx`` and read-side ``Store`` methods for any SQL backend, over the shared ``Queries``.

A backend supplies how a query runs (``_run`` inside its transaction, ``_read`` on committed
data) and its own ``lock_keys`` and ``apply``; everything else is written once, here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from escalation.incidents.heartbeats import HeartbeatRecord
from escalation.incidents.model import (
    AlertRecord,
    DeliveryOutcome,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    StepRecord,
    TimelineEvent,
)
from escalation.oncall.overrides import CalendarToken, StoredOverride
from escalation.store.base import BreakerRecord, IncidentFilter, IngestContext, RateSlot
from escalation.store.sql import heartbeats as hb
from escalation.store.sql import overrides as ov
from escalation.store.sql.queries import DeliveryState, Queries, StepContext
from escalation.store.sql.statement import Query

__all__ = ["SqlReads", "SqlTx"]

_T = TypeVar("_T")


class SqlTx(ABC):
    """``Tx`` over ``Queries``: reads inside the transaction lock rows where the dialect does."""

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    @abstractmethod
    async def _run(self, query: Query[_T]) -> _T:
        """Run ``query`` inside this transaction (StoreError once it has finished)."""

    @abstractmethod
    async def lock_keys(self, keys: Sequence[str]) -> None:
        """Serialise writers on ``keys`` until this transaction ends."""

    async def incidents_by_key(self, keys: Sequence[str]) -> dict[str, IncidentRecord]:
        """The latest incident each key (or key alias) points at."""
        return await self._run(self._q.incidents_by_key(keys))

    async def incidents_by_occurrence(
        self, occurrences: Sequence[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], str]:
        """(fingerprint, startsAt) → id of the newest incident holding that occurrence."""
        return await self._run(self._q.incidents_by_occurrence(occurrences))

    async def ingest_context(
        self, occurrences_by_key: dict[str, list[tuple[str, datetime]]]
    ) -> IngestContext:
        """What an ingest decides on (see ``Tx.ingest_context``)."""
        return await self._run(self._q.ingest_context(occurrences_by_key))

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident, locked for update until the transaction ends."""
        return await self._run(self._q.get_incident(incident_id, lock=True))

    async def alerts_of(self, incident_id: str) -> list[AlertRecord]:
        """Every occurrence recorded in the incident, by startsAt then fingerprint."""
        return await self._run(self._q.alerts_of(incident_id))

    async def steps_of(self, incident_id: str, *, pending_only: bool = False) -> list[StepRecord]:
        """Scheduled steps of the incident, ordered by due time."""
        return await self._run(self._q.steps_of(incident_id, pending_only))

    async def outbox_of(self, incident_id: str) -> list[OutboxRecord]:
        """Notifications of the incident, ordered by creation."""
        return await self._run(self._q.outbox_of(incident_id))

    async def delivery_state(
        self, incident_ids: Sequence[str], row_ids: Sequence[str], *, alerts: bool = False
    ) -> tuple[dict[str, IncidentRecord], dict[str, OutboxRecord], dict[str, list[AlertRecord]]]:
        """The existing incidents (locked, in id order), the outbox rows as stored now, and (if
        asked) each incident's alerts."""
        state: DeliveryState = await self._run(
            self._q.delivery_state(incident_ids, row_ids, alerts)
        )
        return state

    async def step_context(
        self, step_id: str, incident_id: str
    ) -> tuple[IncidentRecord | None, StepRecord | None, list[OutboxRecord]]:
        """The incident (locked), the step as stored now, and the incident's outbox rows."""
        context: StepContext = await self._run(self._q.step_context(step_id, incident_id))
        return context

    async def claim_due_steps(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[StepRecord]:
        """Pending steps due at ``now`` whose lease is free or expired; leased to ``owner``."""
        return await self._run(self._q.claim_due_steps(now, owner, lease_until, limit))

    async def claim_outbox(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[OutboxRecord]:
        """Pending outbox rows whose not_before has come and lease is free or expired."""
        return await self._run(self._q.claim_outbox(now, owner, lease_until, limit))

    async def lease_outbox(
        self, ids: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> list[OutboxRecord]:
        """The rows named by ``ids`` that are pending and due, leased to ``owner``; in ``ids``
        order."""
        return await self._run(self._q.lease_outbox(ids, now, owner, lease_until))

    async def lease_for_delivery(
        self, ids: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> tuple[list[OutboxRecord], DeliveryState]:
        """``lease_outbox``, then the leased rows' ``delivery_state`` with alerts: one trip."""
        return await self._run(self._q.lease_for_delivery(ids, now, owner, lease_until))

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
        """Write a delivery attempt's outcome and release the lease.

        ``provider_id``, ``sent_at`` and ``not_before`` keep their stored values when not given.
        """
        outcome = DeliveryOutcome(
            outbox_id, state, attempts, error, provider_id, sent_at, not_before
        )
        await self._run(self._q.record_delivery(outcome))

    async def seen_delivery(self, source: str, delivery_id: str, now: datetime) -> bool:
        """Remember an inbound delivery id; True if it was already seen."""
        return await self._run(self._q.seen_delivery(source, delivery_id, now))

    async def prune_deliveries(self, source: str, before: datetime) -> int:
        """Forget ``source``'s delivery ids seen before ``before``; how many were forgotten."""
        return await self._run(self._q.prune_deliveries(source, before))

    async def take_rate_slots(
        self, sends: Sequence[Sequence[RateSlot]], now: datetime
    ) -> list[datetime | None]:
        """Count each send against its slots if all have room, else say when they will."""
        keys = sorted({s.key for slots in sends for s in slots})
        if not keys:
            return [None] * len(sends)
        # Read-then-insert is a race between replicas unless each key is held while it runs.
        await self.lock_keys([f"rate:{k}" for k in keys])
        return await self._run(self._q.take_rate_slots(sends, now))

    async def overrides(
        self,
        schedule: str | None = None,
        *,
        ending_after: datetime | None = None,
        removed: bool = False,
    ) -> list[StoredOverride]:
        """Stored schedule overrides, oldest first (see ``Store.overrides``)."""
        q = self._q
        return await self._run(ov.list_overrides(q.d, q.t, schedule, ending_after, removed))

    async def add_override(self, override: StoredOverride) -> None:
        await self._run(ov.add_override(self._q.t, override))

    async def remove_override(
        self, schedule: str, override_id: str, at: datetime, by: str, on_behalf_of: str = ""
    ) -> StoredOverride | None:
        """Mark the override removed; None when there is no such live override."""
        q = self._q
        return await self._run(
            ov.remove_override(q.d, q.t, schedule, override_id, at, by, on_behalf_of)
        )

    async def add_calendar_token(self, token: CalendarToken) -> None:
        await self._run(ov.add_calendar_token(self._q.t, token))

    async def revoke_calendar_token(self, token_id: str, at: datetime, by: str) -> bool:
        """True if a live token by that id is now revoked."""
        return await self._run(ov.revoke_calendar_token(self._q.d, token_id, at, by))

    async def heartbeat(self, name: str) -> HeartbeatRecord | None:
        return await self._run(hb.get_heartbeat(self._q.d, self._q.t, name))

    async def put_heartbeat(self, rec: HeartbeatRecord, *, only_new: bool = False) -> None:
        await self._run(hb.put_heartbeat(self._q.t, rec, only_new))

    async def claim_due_heartbeats(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[HeartbeatRecord]:
        return await self._run(self._q.claim_due_heartbeats(now, owner, lease_until, limit))

    async def check_breaker(self, channel: str, now: datetime, reset: timedelta) -> datetime | None:
        """None if a send may go on ``channel`` now (perhaps as the one half-open probe)."""
        return await self._run(self._q.check_breaker(channel, now, reset))

    async def record_breaker_outcomes(
        self, outcomes: Sequence[tuple[str, bool]], now: datetime, failures: int
    ) -> None:
        """Feed the channels' breakers with sends' outcomes, in order."""
        if outcomes:
            await self._run(self._q.record_breaker_outcomes(outcomes, now, failures))

    async def take_bundle_window(
        self, person: str, channel: str, now: datetime, window: timedelta
    ) -> datetime | None:
        """Start a bundling window for ``person`` on ``channel``, or say when the open one ends."""
        # Read-then-write is a race between replicas unless the pair is held while it runs.
        await self.lock_keys([f"bundle:{person}|{channel}"])
        return await self._run(self._q.take_bundle_window(person, channel, now, window))

    async def release_bundle_window(self, person: str, channel: str, at: datetime) -> None:
        """Give back the window taken at ``at``."""
        await self._run(self._q.release_bundle_window(person, channel, at))


class SqlReads(ABC):
    """The read side of ``Store`` over ``Queries``: committed data only."""

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    @abstractmethod
    async def _read(self, query: Query[_T]) -> _T:
        """Run ``query`` outside any transaction, on committed data."""

    async def next_due(self) -> datetime | None:
        """Earliest due instant of pending steps and outbox rows (a live lease defers a row)."""
        return await self._read(self._q.next_due())

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident by id, as last committed."""
        return await self._read(self._q.get_incident(incident_id))

    async def find_incident(self, ref: str) -> IncidentRecord | None:
        """By id, by number (``42`` or ``#42``) or by key (the newest incident of that key)."""
        return await self._read(self._q.find_incident(ref))

    async def list_incidents(self, flt: IncidentFilter) -> list[IncidentRecord]:
        """Newest first (by opened_at, then number), filtered and limited."""
        return await self._read(self._q.list_incidents(flt))

    async def count_incidents(self, flt: IncidentFilter) -> int:
        """How many incidents ``flt`` matches, ignoring its limit and offset."""
        return await self._read(self._q.count_incidents(flt))

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """In time order (ties in insertion order)."""
        return await self._read(self._q.timeline(incident_id))

    async def counts(self) -> dict[tuple[str, str], int]:
        """(severity, status) → number of incidents not resolved."""
        return await self._read(self._q.counts())

    async def outbox_depth(self) -> dict[str, int]:
        """channel → pending rows (channels with none are absent)."""
        return await self._read(self._q.outbox_depth())

    async def breakers(self) -> list[BreakerRecord]:
        """Every channel's stored breaker, by channel."""
        return await self._read(self._q.breakers())

    async def overrides(
        self,
        schedule: str | None = None,
        *,
        ending_after: datetime | None = None,
        removed: bool = False,
    ) -> list[StoredOverride]:
        """Stored schedule overrides, oldest first (see ``Store.overrides``)."""
        q = self._q
        return await self._read(ov.list_overrides(q.d, q.t, schedule, ending_after, removed))

    async def calendar_token(self, token_hash: str) -> CalendarToken | None:
        """The live calendar token with that hash."""
        return await self._read(ov.calendar_token(self._q.t, token_hash))

    async def calendar_tokens(self) -> list[CalendarToken]:
        """Every live calendar token, oldest first."""
        return await self._read(ov.calendar_tokens(self._q.t))

    async def delivery_known(self, source: str, delivery_id: str) -> bool:
        """Whether an inbound delivery was already recorded (``Tx.seen_delivery``), committed."""
        return await self._read(self._q.delivery_known(source, delivery_id))

    async def heartbeats(self) -> list[HeartbeatRecord]:
        """Every stored heartbeat, by name."""
        return await self._read(hb.list_heartbeats(self._q.t))

    async def schema_versions(self) -> list[int]:
        """Versions recorded in ``schema_migrations``, ascending."""
        return await self._read(self._q.schema_versions())
