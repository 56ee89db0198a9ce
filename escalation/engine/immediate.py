"""Paging at once: the steps an ingest makes due now fire in the ingest's own transaction.

A new incident's first tier is due the instant it opens. Left to the engine, it would wait for
the engine to wake, claim and fire it in one transaction, then claim the outbox rows in another,
each a commit, before anything is sent. Here the ingest's transaction does what the engine
would: each due step is fired through the same pure ``decide_step`` on the incident as the
ingest leaves it (read back inside the transaction, so cancellations the ingest wrote count),
its outbox rows are leased to this process as ``claim_outbox`` would lease them, and delivery's
``prepare`` runs on them before the commit. ``finish`` (the send) runs in a task after the
commit, so the HTTP answer does not wait for the provider.

Every guarantee of the engine's path holds, because it is the same path: a crash after the
commit leaves leased rows whose lease runs out, and the engine sends them (at least once);
other replicas see the rows only leased; ``prepare`` and the final record re-check the
incident, so an acknowledgement still cancels what was not sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from escalation.engine.metrics import EscalationMetrics
from escalation.engine.ports import OutboxDelivery
from escalation.incidents.directory import Directory
from escalation.incidents.firing import decide_step
from escalation.incidents.model import Changes, StepState
from escalation.store.base import Tx

__all__ = ["Fired", "PageAtOnce"]

log = logging.getLogger("tocsin.engine")


@dataclass
class Fired:
    """What one ingest fired at once: the changes (applied), the steps fired (tier, kind) and
    what ``prepare`` made of the rows leased for delivery."""

    changes: Changes
    steps: list[tuple[int, str]] = field(default_factory=list)
    prepared: Any = None
    sends: bool = False
    leased: set[str] = field(default_factory=set)

    def left_to_engine(self) -> Changes:
        """The changes without the rows leased here: what the engine has yet to do (a leased
        row is the engine's again only if its send never records, and the engine looks at the
        store at least every ``engine.poll``, well within a lease)."""
        out = Changes()
        out.merge(self.changes)
        out.new_outbox = [r for r in out.new_outbox if r.id not in self.leased]
        return out


@dataclass
class PageAtOnce:
    """Fires an ingest's due steps inside its transaction and delivers their rows after it."""

    delivery: OutboxDelivery[Any]
    metrics: EscalationMetrics
    # Who is on call as the engine sees it: the configured directory with the overrides made
    # at run time, read in the transaction (``engine.oncall.live_directory``).
    directory: Callable[[Tx, datetime], Awaitable[Directory]]
    owner: Callable[[], str]  # the engine's: a lease taken here is the engine's lease
    lease: Callable[[], timedelta]
    # Sends handed over and not yet recorded above which an ingest leaves its steps to the
    # engine. Paging at once costs a prepare and a record per ingest; in a storm the engine's
    # batches (one claim, one prepare, one record for many incidents) keep up where one
    # delivery per ingest would queue every request behind the single SQLite writer.
    max_in_flight: int = 4
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def fire(self, tx: Tx, ingested: Changes, now: datetime) -> Fired:
        """After ``ingested`` was applied in ``tx``: fire its steps due by ``now`` (applied
        here too) and prepare the rows due now for delivery."""
        fired = Fired(Changes())
        due = [s for s in ingested.new_steps if s.state == StepState.PENDING and s.due_at <= now]
        if not due or self.busy:
            return fired  # the engine fires them, woken by the commit
        d = await self.directory(tx, now)
        for step in sorted(due, key=lambda s: (s.incident_id, s.due_at, s.id)):
            inc, current, rows = await tx.step_context(step.id, step.incident_id)
            if current is None or current.state != StepState.PENDING:
                continue  # an ingest never plans a step it cancels; stay safe all the same
            ch = decide_step(current, inc, rows, d, now)
            await tx.apply(ch)
            fired.changes.merge(ch)
            if any(u.state == StepState.FIRED for u in ch.step_updates):
                fired.steps.append((current.tier, current.kind))
        ids = [r.id for r in fired.changes.new_outbox]
        if not ids:
            return fired
        # The lease and what prepare reads, in one round trip.
        leased, state = await tx.lease_for_delivery(ids, now, self.owner(), now + self.lease())
        fired.leased = {r.id for r in leased}
        if leased:
            fired.prepared = await self.delivery.prepare(tx, leased, state)
            fired.sends = True
        return fired

    @property
    def busy(self) -> bool:
        """Enough sends are in flight that the engine's batches would serve better."""
        return len(self._tasks) >= self.max_in_flight

    def committed(self, fired: Fired) -> None:
        """``fire``'s transaction committed: count its steps, hand its rows to delivery."""
        for tier, kind in fired.steps:
            self.metrics.steps_fired.labels(str(tier), kind).inc()
            self.metrics.lateness.observe(0.0)
        if not fired.sends:
            return
        task = asyncio.create_task(self._finish(fired.prepared), name="tocsin-page-at-once")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for every send handed over so far (tests; a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _finish(self, prepared: Any) -> None:
        try:
            await self.delivery.finish(prepared)
        except Exception:
            # The rows stay leased: when the lease runs out the engine sends them again.
            self.metrics.engine_errors.inc()
            log.exception("delivering at once failed; the engine retries after the lease")
