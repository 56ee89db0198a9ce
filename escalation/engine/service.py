"""The service façade: every read and unit of work on incidents that routes and tools need.

Each write is one unit (``units.run_unit``): one store transaction, retried on a conflict. The
engine is woken when new work is scheduled, and listeners told which incidents a commit changed.
Every store failure leaves as ``StoreUnavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from escalation.engine.batching import IngestBatcher
from escalation.engine.board import BoardPage, BoardQuery, read_board
from escalation.engine.clock import Clock
from escalation.engine.immediate import Fired, PageAtOnce
from escalation.engine.intake import Intake, ingest_in, ingest_many_in
from escalation.engine.metrics import EscalationMetrics
from escalation.engine.units import (
    Acted,
    ActOn,
    Delivery,
    IncidentDetail,
    IncidentNotFound,
    Outcome,
    StoreUnavailable,
    run_unit,
    unavailable,
)
from escalation.incidents.actions import Action, IllegalTransition, decide_action
from escalation.incidents.directory import Directory
from escalation.incidents.fallback import fallback_row
from escalation.incidents.ingest import Classified, IngestOutcome
from escalation.incidents.model import (
    Changes,
    EventKind,
    KeyAlias,
    OutboxState,
    Status,
    TimelineEvent,
)
from escalation.store.base import IncidentFilter, Store, Tx
from rules.alerts import Notification

if TYPE_CHECKING:
    from escalation.incidents.model import IncidentRecord, OutboxRecord

__all__ = [
    "ActOn",
    "Acted",
    "Delivery",
    "EscalationService",
    "IncidentDetail",
    "IncidentNotFound",
    "Outcome",
    "StoreUnavailable",
]

log = logging.getLogger("tocsin.incidents")

_T = TypeVar("_T")


@dataclass
class _Decided:
    """One incident's action inside a unit: the record before, and what became of it."""

    before: IncidentRecord | None
    acted: Acted


class EscalationService:
    """The façade routes call: reads, ingest and actions, each write one transaction."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        directory: Callable[[], Directory],
        metrics: EscalationMetrics,
        wake: Callable[[datetime], None] = lambda due: None,
        page_at_once: PageAtOnce | None = None,
    ) -> None:
        self.store = store
        # Wired by a process that delivers (not `tocsin simulate`): due steps fire at ingest.
        self.page_at_once = page_at_once
        self.clock = clock
        self.directory = directory
        self.metrics = metrics
        self.wake = wake
        # Told after every commit that changed incidents, with their ids (the live console).
        self.on_change: Callable[[frozenset[str]], None] | None = None
        self.batcher = IngestBatcher(self._ingest_batch)

    async def settle(self) -> None:
        """Wait until the pages handed to delivery at ingest were sent and recorded."""
        if self.page_at_once is not None:
            await self.page_at_once.settle()

    # -- reads -------------------------------------------------------------------------------

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """By id only (an arbitrary string must never match a number or a key)."""
        with unavailable():
            return await self.store.get_incident(incident_id)

    async def delivery_seen(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` was already acted on (a read: it records nothing)."""
        with unavailable():
            return await self.store.delivery_known(delivery.source, delivery.id)

    async def find_incident(self, ref: str) -> IncidentRecord | None:
        """By id, by number (``42`` or ``#42``) or by key (or key alias)."""
        with unavailable():
            return await self.store.find_incident(ref)

    async def incidents_by_keys(self, keys: Sequence[str]) -> dict[str, IncidentRecord]:
        """The incident each key (or key alias) leads to; keys that lead nowhere are left out."""
        with unavailable():
            async with self.store.transaction() as tx:
                return await tx.incidents_by_key(keys)

    async def list_incidents(
        self,
        *,
        status: Sequence[str] = (),
        severity: Sequence[str] = (),
        team: str | None = None,
        limit: int = 100,
    ) -> list[IncidentRecord]:
        """Newest first."""
        flt = IncidentFilter(status=status, severity=severity, team=team, limit=limit)
        with unavailable():
            return await self.store.list_incidents(flt)

    async def detail(self, ref: str) -> IncidentDetail | None:
        """The incident by id, number or key, with its alerts, steps, outbox and timeline."""
        with unavailable():
            inc = await self.store.find_incident(ref)
            if inc is None:
                return None
            async with self.store.transaction() as tx:
                alerts = await tx.alerts_of(inc.id)
                steps = await tx.steps_of(inc.id)
                outbox = await tx.outbox_of(inc.id)
            timeline = await self.store.timeline(inc.id)
        return IncidentDetail(inc, alerts, steps, outbox, timeline)

    async def board(self, query: BoardQuery) -> BoardPage:
        """The console's board: one page of incidents with their last page and next step."""
        with unavailable():
            return await read_board(self.store, query, self.clock.now())

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """In time order."""
        with unavailable():
            return await self.store.timeline(incident_id)

    async def next_due(self) -> datetime | None:
        """When the engine has work next (a step or a held notification)."""
        with unavailable():
            return await self.store.next_due()

    async def outbox_rows(self, ids: Sequence[str]) -> list[OutboxRecord]:
        """The notifications named by ``ids`` that exist, in that order."""
        found: dict[str, OutboxRecord] = {}
        with unavailable():
            async with self.store.transaction() as tx:
                # An outbox id starts with its incident's id.
                for incident_id in dict.fromkeys(i.split(":", 1)[0] for i in ids):
                    found.update((r.id, r) for r in await tx.outbox_of(incident_id))
        return [found[i] for i in ids if i in found]

    async def latest_page(self, person: str, channels: Sequence[str]) -> list[str]:
        """Triggered incidents of the latest page that reached ``person`` through ``channels``.

        Several when that page was a bundle (its rows share the send time).
        """
        latest: datetime | None = None
        chosen: list[str] = []
        incidents = await self.list_incidents(status=(Status.TRIGGERED.value,), limit=500)
        with unavailable():
            async with self.store.transaction() as tx:
                paged = [(inc.id, await tx.outbox_of(inc.id)) for inc in incidents]
        for incident_id, rows in paged:
            for r in rows:
                if (
                    r.person != person
                    or r.channel not in channels
                    or r.kind != "page"
                    or r.sent_at is None
                    or r.state not in (OutboxState.SENT, OutboxState.UNKNOWN)
                ):
                    continue
                if latest is None or r.sent_at > latest:
                    latest, chosen = r.sent_at, [incident_id]
                elif r.sent_at == latest and incident_id not in chosen:
                    chosen.append(incident_id)
        return chosen

    # -- units of work -----------------------------------------------------------------------

    async def _unit(
        self,
        what: str,
        delivery: Delivery | None,
        body: Callable[[Tx, datetime], Awaitable[tuple[_T, Changes]]],
        then: Callable[[Tx, Changes, datetime], Awaitable[Changes]] | None = None,
    ) -> tuple[_T, Changes] | None:
        """``run_unit`` on this façade's store; listeners are told after the commit."""
        done = await run_unit(self.store, self.clock, what, delivery, body, then)
        if done is not None:
            self._after(done[1])
        return done

    async def ingest(
        self, n: Notification, classified: Sequence[Classified]
    ) -> list[IngestOutcome]:
        """Fold the notification's alerts into incidents; durable when this returns.

        Concurrent notifications share a transaction (``engine.batching``).
        """
        return await self.batcher.submit((n, classified))

    async def _ingest_batch(self, batch: Sequence[Intake]) -> list[list[IngestOutcome] | None]:
        """One unit for several notifications: each one's outcomes, None where deferred."""

        async def body(
            tx: Tx, now: datetime
        ) -> tuple[tuple[list[list[IngestOutcome] | None], datetime], Changes]:
            results, changes = await ingest_many_in(tx, now, batch, self.directory())
            return (results, now), changes

        fired: list[Fired] = []  # what the last attempt fired at once

        async def fire_due(tx: Tx, changes: Changes, now: datetime) -> Changes:
            fired.clear()
            if self.page_at_once is None or not changes.new_steps:
                return Changes()
            fired.append(await self.page_at_once.fire(tx, changes, now))
            return fired[0].left_to_engine()

        done = await self._unit("ingest", None, body, fire_due)
        assert done is not None  # no delivery: never refused as a replay
        (results, now), changes = done
        self.metrics.ingest_batch.observe(sum(r is not None for r in results))
        if fired and self.page_at_once is not None:
            self.page_at_once.committed(fired[0])
        self.ingested(changes, now, applied=False)
        return results

    def ingested(self, changes: Changes, now: datetime, *, applied: bool = True) -> None:
        """Count what a committed ingest did (and, if ``applied`` elsewhere, tell listeners)."""
        if applied:
            self._after(changes)
        for inc in changes.new_incidents:
            self.metrics.incidents.labels(inc.severity).inc()
        for inc in changes.updated_incidents:
            if inc.status == Status.RESOLVED and inc.resolved_at == now:
                self.metrics.observe_resolved(inc)

    async def ingest_in(
        self, tx: Tx, now: datetime, n: Notification, classified: Sequence[Classified]
    ) -> tuple[list[IngestOutcome], Changes]:
        """``ingest``'s decision inside the caller's transaction (the caller applies it)."""
        return await ingest_in(tx, now, n, classified, self.directory())

    async def act(
        self,
        ref: str,
        action: Action,
        *,
        actor: str,
        source: str,
        note: str = "",
        on_behalf_of: str = "",
    ) -> IncidentRecord:
        """Acknowledge / mitigate / resolve / escalate / note / reopen one incident.

        Raises IncidentNotFound, or IllegalTransition when the action does not apply.
        """
        acted = await self.act_once(
            None, [ActOn(ref, actor, note, on_behalf_of=on_behalf_of)], action, source=source
        )
        assert acted is not None  # no delivery: never refused as a replay
        [one] = acted
        if one.outcome == Outcome.MISSING:
            raise IncidentNotFound(ref)
        if one.outcome == Outcome.ILLEGAL:
            raise IllegalTransition(one.reason)
        assert one.incident is not None
        return one.incident

    async def act_once(
        self,
        delivery: Delivery | None,
        targets: Sequence[ActOn],
        action: Action,
        *,
        source: str,
        aliases: Sequence[KeyAlias] = (),
    ) -> list[Acted] | None:
        """Remember ``delivery`` and act on every target, all in one transaction.

        None when the delivery was seen before (nothing is done again). An incident named
        twice is acted on once. Each of ``aliases`` becomes a key alias of its incident in the
        same transaction, so a later delivery naming only the alias finds it.
        """
        with unavailable():
            found: dict[str, IncidentRecord | None] = {}
            for t in targets:
                if t.ref not in found:
                    found[t.ref] = await self.store.find_incident(t.ref)

        async def body(tx: Tx, now: datetime) -> tuple[list[_Decided], Changes]:
            return await self._act_in(tx, now, targets, found, action, source, aliases)

        done = await self._unit("action", delivery, body)
        if done is None:
            return None
        decided, _ = done
        for d in decided:
            if d.acted.outcome == Outcome.DONE and d.before is not None:
                assert d.acted.incident is not None
                self.metrics.observe_action(action, d.before, d.acted.incident)
        return [d.acted for d in decided]

    async def _act_in(
        self,
        tx: Tx,
        now: datetime,
        targets: Sequence[ActOn],
        found: dict[str, IncidentRecord | None],
        action: Action,
        source: str,
        aliases: Sequence[KeyAlias],
    ) -> tuple[list[_Decided], Changes]:
        changes = Changes()
        decided: list[_Decided] = []
        done: dict[str, _Decided] = {}
        for alias in aliases:
            await _alias_in(tx, alias.key, alias.incident_id, changes)
        for t in targets:
            hit = found.get(t.ref)
            inc = await tx.get_incident(hit.id) if hit is not None else None
            if inc is None:
                decided.append(_Decided(None, Acted(t.ref, Outcome.MISSING)))
                continue
            if t.epoch is not None and inc.epoch != t.epoch:
                stale = "the incident changed state after the event"
                decided.append(_Decided(None, Acted(t.ref, Outcome.ILLEGAL, inc, stale)))
                continue
            if inc.id in done:  # the same incident by two references: one action
                decided.append(_Decided(None, done[inc.id].acted))
                continue
            try:
                ch, new = await self._decide_action(tx, inc, action, now, t, source)
            except IllegalTransition as e:
                done[inc.id] = _Decided(None, Acted(t.ref, Outcome.ILLEGAL, inc, str(e)))
            else:
                changes.merge(ch)
                done[inc.id] = _Decided(inc, Acted(t.ref, Outcome.DONE, new))
            decided.append(done[inc.id])
        return decided, changes

    async def _decide_action(
        self, tx: Tx, inc: IncidentRecord, action: Action, now: datetime, t: ActOn, source: str
    ) -> tuple[Changes, IncidentRecord]:
        # Escalate reads fired and cancelled steps too: an ack cancels the tiers it escalates to.
        steps = await tx.steps_of(inc.id) if action == Action.ESCALATE else []
        # Every action reads what was paged: acks and resolves tell those paged, and every
        # change edits the messages chat channels keep per incident.
        paged = await tx.outbox_of(inc.id)
        return decide_action(
            inc,
            action,
            now=now,
            actor=t.actor,
            source=source,
            note=t.note,
            steps=steps,
            paged=paged,
            directory=self.directory(),
            on_behalf_of=t.on_behalf_of,
            occurred_at=t.occurred_at,
        )

    async def remember_aliases(self, aliases: Sequence[KeyAlias]) -> None:
        """Make each alias a key of its incident (a no-op for those that already are)."""

        async def body(tx: Tx, now: datetime) -> tuple[None, Changes]:
            changes = Changes()
            for alias in aliases:
                await _alias_in(tx, alias.key, alias.incident_id, changes)
            return None, changes

        await self._unit("alias", None, body)

    async def fallback(self, outbox_id: str, reason: str, *, source: str) -> OutboxRecord | None:
        """A delivered-but-unanswered (or failed) row: try the person's next fallback channel."""
        nxt = await self.fallback_once(None, [outbox_id], reason, source=source)
        assert nxt is not None  # no delivery: never refused as a replay
        return nxt[0]

    async def fallback_once(
        self, delivery: Delivery | None, outbox_ids: Sequence[str], reason: str, *, source: str
    ) -> list[OutboxRecord | None] | None:
        """Remember ``delivery`` and fall back from each row, in one transaction.

        None when the delivery was seen before; else the next row per id (None: no fallback,
        e.g. acknowledged meanwhile, or this fallback already happened).
        """

        async def body(tx: Tx, now: datetime) -> tuple[list[OutboxRecord | None], Changes]:
            changes = Changes()
            out = [await self._fallback_in(tx, now, i, reason, source, changes) for i in outbox_ids]
            return out, changes

        done = await self._unit("fallback", delivery, body)
        return None if done is None else done[0]

    async def _fallback_in(
        self, tx: Tx, now: datetime, outbox_id: str, reason: str, source: str, changes: Changes
    ) -> OutboxRecord | None:
        incident_id = outbox_id.split(":", 1)[0]
        rows = {r.id: r for r in await tx.outbox_of(incident_id)}
        row = rows.get(outbox_id)
        if row is None:
            return None
        inc = await tx.get_incident(incident_id)
        if inc is None or inc.status != Status.TRIGGERED or row.kind != "page":
            return None  # acknowledged meanwhile: nothing left to chase
        nxt = fallback_row(row, self.directory().people.get(row.person), now)
        if nxt is not None and (nxt.id in rows or nxt.id in {r.id for r in changes.new_outbox}):
            return None  # this fallback already happened (a callback delivered twice)
        changes.timeline.append(
            TimelineEvent(
                incident_id,
                now,
                EventKind.FALLBACK,
                "tocsin",
                source,
                f"{row.channel} to {row.person}: {reason}; "
                + (f"falling back to {nxt.channel}" if nxt else "no further fallback channel"),
                {"outbox": row.id, "next": nxt.id if nxt else None},
            )
        )
        changes.new_outbox.extend([nxt] if nxt else [])
        return nxt

    # -- after commit ------------------------------------------------------------------------

    def _after(self, ch: Changes) -> None:
        due = _next_due(ch)
        if due is not None:
            self.wake(due)
        if self.on_change is not None and ch:
            self.on_change(ch.incident_ids())


def _next_due(ch: Changes) -> datetime | None:
    """When the earliest work ``ch`` leaves to the engine is due (None: it leaves none)."""
    settled = {u.step_id for u in ch.step_updates}
    due = [s.due_at for s in ch.new_steps if s.id not in settled]
    due += [r.due_at for r in ch.step_reschedules]
    due += [r.not_before for r in ch.new_outbox if r.state == OutboxState.PENDING]
    return min(due, default=None)


async def _alias_in(tx: Tx, alias: str, incident_id: str, changes: Changes) -> None:
    known = (await tx.incidents_by_key([alias])).get(alias)
    if known is None or known.id != incident_id:
        changes.key_aliases.append(KeyAlias(alias, incident_id))
