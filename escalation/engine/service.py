"""Units of work on incidents: ingest a classified notification, act on an incident.

Each call is one store transaction (retried on a concurrency conflict): read what the store
holds, decide with the pure functions, apply. The engine is woken when new work is scheduled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from escalation.engine.clock import Clock
from escalation.engine.metrics import EscalationMetrics
from escalation.incidents.actions import Action, decide_action
from escalation.incidents.directory import Directory
from escalation.incidents.fallback import fallback_row
from escalation.incidents.ingest import Classified, IngestOutcome, decide_ingest, default_key
from escalation.incidents.model import Changes, IncidentRecord, OutboxRecord, Status, TimelineEvent
from escalation.store.base import Conflict, Store, StoreError
from rules.alerts import Notification

__all__ = ["EscalationService", "IncidentNotFound"]

log = logging.getLogger("tocsin.incidents")

_RETRIES = 8


class IncidentNotFound(LookupError):
    """No incident has that id, number or key."""


@dataclass
class _Group:
    key: str
    items: list[Classified]


class EscalationService:
    """Ingest and actions, each one transaction."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        directory: Callable[[], Directory],
        metrics: EscalationMetrics,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.metrics = metrics
        self.wake = wake

    async def ingest(
        self, n: Notification, classified: Sequence[Classified]
    ) -> list[IngestOutcome]:
        """Fold the notification's alerts into incidents; durable when this returns."""
        receiver = n.receiver_name
        groups: dict[str, _Group] = {}
        for c in classified:
            key = c.verdict.incident_key or default_key(receiver, n.group_key)
            groups.setdefault(key, _Group(key, [])).items.append(c)
        for _ in range(_RETRIES):
            try:
                outcomes, changes = await self._ingest_once(n, receiver, groups)
            except Conflict:
                continue
            self._after(changes)
            return outcomes
        raise StoreError("ingest kept conflicting with concurrent writers")

    async def _ingest_once(
        self, n: Notification, receiver: str, groups: dict[str, _Group]
    ) -> tuple[list[IngestOutcome], Changes]:
        d = self.directory()
        now = self.clock.now()
        all_changes = Changes()
        outcomes: list[IngestOutcome] = []
        async with self.store.transaction() as tx:
            keys = sorted(groups)
            await tx.lock_keys(keys)
            ctx = await tx.ingest_context(
                {
                    k: [
                        (c.alert.fingerprint, c.alert.starts_at)
                        for c in groups[k].items
                        if c.alert.starts_at is not None
                    ]
                    for k in keys
                }
            )
            # Resolve each key to an incident; keys landing on the same incident decide together.
            target: dict[str, IncidentRecord | None] = {}
            for k in keys:
                inc = ctx.by_key.get(k)
                if inc is None and k in ctx.by_occurrence:
                    inc = ctx.incidents[ctx.by_occurrence[k]]
                    # A `continue: true` route or a second receiver: same alerts, same incident.
                    all_changes.key_aliases.append((k, inc.id))
                target[k] = inc
            merged: dict[str, tuple[str, list[Classified], IncidentRecord | None]] = {}
            for k in keys:
                inc = target[k]
                slot = inc.id if inc is not None else f"new:{k}"
                if slot in merged:
                    merged[slot][1].extend(groups[k].items)
                else:
                    merged[slot] = (k, list(groups[k].items), inc)
            for key, items, inc in merged.values():
                alerts = ctx.alerts.get(inc.id, []) if inc is not None else []
                paged = ctx.outbox.get(inc.id, []) if inc is not None else []
                ch, outcome = decide_ingest(
                    key,
                    items,
                    inc,
                    alerts,
                    paged,
                    now=now,
                    directory=d,
                    receiver=receiver,
                    group_key=n.group_key,
                    common_labels=dict(n.common_labels),
                )
                all_changes.merge(ch)
                outcomes.append(outcome)
            if all_changes:
                await tx.apply(all_changes)
        for inc in all_changes.new_incidents:
            self.metrics.incidents.labels(inc.severity).inc()
        for inc in all_changes.updated_incidents:
            if inc.status == Status.RESOLVED and inc.resolved_at == now:
                self._observe_resolved(inc)
        return outcomes, all_changes

    async def act(
        self, ref: str, action: Action, *, actor: str, source: str, note: str = ""
    ) -> IncidentRecord:
        """Acknowledge / mitigate / resolve / escalate / note / reopen one incident."""
        found = await self.store.find_incident(ref)
        if found is None:
            raise IncidentNotFound(ref)
        for _ in range(_RETRIES):
            now = self.clock.now()
            try:
                async with self.store.transaction() as tx:
                    inc = await tx.get_incident(found.id)
                    if inc is None:
                        raise IncidentNotFound(ref)
                    pending = (
                        await tx.steps_of(inc.id, pending_only=True)
                        if action == Action.ESCALATE
                        else []
                    )
                    paged = (
                        await tx.outbox_of(inc.id) if action in (Action.RESOLVE, Action.ACK) else []
                    )
                    ch, new = decide_action(
                        inc,
                        action,
                        now=now,
                        actor=actor,
                        source=source,
                        note=note,
                        pending=pending,
                        paged=paged,
                        directory=self.directory(),
                    )
                    await tx.apply(ch)
            except Conflict:
                continue
            if action == Action.ACK or (
                action in (Action.MITIGATE, Action.RESOLVE) and inc.acknowledged_at is None
            ):
                self._observe_ack(new)
            if action == Action.RESOLVE:
                self._observe_resolved(new)
            self._after(ch)
            return new
        raise StoreError("action kept conflicting with concurrent writers")

    async def fallback(self, outbox_id: str, reason: str, *, source: str) -> OutboxRecord | None:
        """A delivered-but-unanswered (or failed) row: try the person's next fallback channel."""
        incident_id = outbox_id.split(":", 1)[0]
        now = self.clock.now()
        async with self.store.transaction() as tx:
            rows = {r.id: r for r in await tx.outbox_of(incident_id)}
            row = rows.get(outbox_id)
            if row is None:
                return None
            inc = await tx.get_incident(incident_id)
            if inc is None or inc.status != Status.TRIGGERED or row.kind != "page":
                return None  # acknowledged meanwhile: nothing left to chase
            nxt = fallback_row(row, self.directory().people.get(row.person), now)
            events = [
                TimelineEvent(
                    incident_id,
                    now,
                    "fallback",
                    "tocsin",
                    source,
                    f"{row.channel} to {row.person}: {reason}; "
                    + (f"falling back to {nxt.channel}" if nxt else "no further fallback channel"),
                    {"outbox": row.id, "next": nxt.id if nxt else None},
                )
            ]
            if nxt is not None and nxt.id in rows:
                return None  # this fallback already happened (a callback delivered twice)
            await tx.apply(Changes(timeline=events, new_outbox=[nxt] if nxt else []))
        if nxt is not None:
            self.wake()
        return nxt

    def _observe_ack(self, inc: IncidentRecord) -> None:
        if inc.acknowledged_at is None:
            return
        took = (inc.acknowledged_at - inc.opened_at).total_seconds()
        self.metrics.ack_seconds.labels(inc.severity).observe(took)
        target = inc.level.get("ack_target")
        if target is not None and took > float(target):
            self.metrics.sla_breaches.labels("ack", inc.severity).inc()

    def _observe_resolved(self, inc: IncidentRecord) -> None:
        if inc.resolved_at is None:
            return
        took = (inc.resolved_at - inc.opened_at).total_seconds()
        self.metrics.resolution_seconds.labels(inc.severity).observe(took)
        target = inc.level.get("resolve_target")
        if target is not None and took > float(target):
            self.metrics.sla_breaches.labels("resolve", inc.severity).inc()

    def _after(self, ch: Changes) -> None:
        if ch.new_steps or ch.new_outbox or ch.step_reschedules:
            self.wake()
