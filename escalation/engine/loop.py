"""The escalation engine: fires due steps and delivers the outbox, driven by a Clock.

It sleeps until the earliest due time the store reports (no sweeps over all incidents) and is
woken early when something earlier is scheduled. A due step re-checks its ``unless`` against the
incident as it is now, resolves its targets to people at that instant, and writes the outbox rows
in the same transaction that marks it fired. ``incidents.firing.decide_step`` is the pure part.

Due outbox rows are claimed here too, in a transaction that also hands them to delivery's
``prepare``; delivery itself lives outside escalation and is reached only through the small
``OutboxDelivery`` port (``ports.py``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from escalation.engine.clock import Clock
from escalation.engine.metrics import EscalationMetrics
from escalation.engine.oncall import live_directory
from escalation.engine.ports import OutboxDelivery
from escalation.incidents.directory import Directory
from escalation.incidents.firing import decide_step
from escalation.incidents.model import (
    Changes,
    IncidentRecord,
    OutboxRecord,
    StepRecord,
    StepState,
)
from escalation.store.base import Conflict, Store, StoreError

__all__ = ["DueHeartbeats", "Engine", "OutboxDelivery", "decide_step"]

log = logging.getLogger("tocsin.engine")

_PRUNE_EVERY = timedelta(minutes=1)


class DueHeartbeats(Protocol):
    """What fires heartbeats whose expiry has come (``engine.heartbeats``)."""

    async def expire_due(self, now: datetime, owner: str, lease: timedelta, batch: int) -> int: ...


class Engine:
    """Fires due heartbeats and steps and delivers due outbox rows until stopped."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        directory: Callable[[], Directory],
        delivery: OutboxDelivery[Any],
        metrics: EscalationMetrics,
        *,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=30),
        batch: int = 200,
        poll: timedelta = timedelta(seconds=5),
        replay_windows: Callable[[], Mapping[str, timedelta]] = dict,
    ) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.delivery = delivery
        self.metrics = metrics
        self.owner = owner or f"tocsin-{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.batch = batch
        self.poll = poll
        self.replay_windows = replay_windows
        self._next_prune: datetime | None = None
        self._wake = asyncio.Event()
        self._asleep_until: datetime | None = None  # while sleeping: when the sleep ends
        # While awake (ticking): the earliest due time ``wake`` was told of meanwhile; the sleep
        # after the tick ends no later than it.
        self._woken_due: datetime | None = None
        self._stopping = False
        self.on_change: Callable[[frozenset[str]], None] | None = None
        self.heartbeats: DueHeartbeats | None = None

    def wake(self, due: datetime | None = None) -> None:
        """Something may be due before the engine looks again (at ``due``, when known): re-read
        the next due time now. Work due no earlier than the current sleep's end waits for it,
        so a burst of ingests whose first tiers were paged at once costs the engine nothing."""
        if due is not None and self._asleep_until is None:
            # Mid-tick: the tick may have read the next due time before this work committed,
            # so the sleep after it must end by ``due``. Setting the event instead would tick
            # again at once, and under a steady stream of ingests (each waking it during the
            # previous tick) the engine ticked back to back: a store transaction every few
            # milliseconds for nothing (bench/alert_to_page.py counted 300 to 700 ticks in 10 s).
            if self._woken_due is None or due < self._woken_due:
                self._woken_due = due
            return
        if due is not None and self._asleep_until is not None and due >= self._asleep_until:
            return
        self._wake.set()

    async def tick(self) -> datetime | None:
        """Fire everything due now, deliver everything due now; return the next due time."""
        now = self.clock.now()
        # Expired heartbeats first: the incidents they open have steps due now, fired below.
        while self.heartbeats is not None:
            if (
                await self.heartbeats.expire_due(now, self.owner, self.lease, self.batch)
                < self.batch
            ):
                break
        while True:
            claimed = await self._claim_and_fire(now)
            if claimed < self.batch:
                break
        while True:
            async with self.store.transaction() as tx:
                rows = await tx.claim_outbox(now, self.owner, now + self.lease, self.batch)
                prepared = await self.delivery.prepare(tx, rows) if rows else None
            if rows:
                await self.delivery.finish(prepared)
            if len(rows) < self.batch:
                break
        await self._prune(now)
        return await self.store.next_due()

    async def _prune(self, now: datetime) -> None:
        """Forget inbound delivery ids past their source's window, once a minute.

        ``replay_windows`` names every source pruned and how long its ids are kept after they
        were stored: for a source whose deliveries carry a signed time, its replay window (a
        replay is then refused by its age); for one without (the phone providers' callbacks),
        a retention past the provider's retry horizon, so a retry still finds its id.
        """
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        for source, window in self.replay_windows().items():
            async with self.store.transaction() as tx:
                await tx.prune_deliveries(source, now - window)

    async def _claim_and_fire(self, now: datetime) -> int:
        """Claim due steps and fire them in the same transaction (one commit per batch).

        A step whose apply conflicts (another writer moved its incident) is retried on its own
        after the commit; if the whole batch rolls back (a deadlock), nothing was claimed and
        the next tick tries again.
        """
        fired: list[tuple[StepRecord, Changes, datetime]] = []
        retry: list[StepRecord] = []
        try:
            async with self.store.transaction() as tx:
                steps = await tx.claim_due_steps(now, self.owner, now + self.lease, self.batch)
                # Overrides made at run time count as soon as they commit, on every replica.
                d = await live_directory(tx, self.directory(), now) if steps else self.directory()
                # One lock order across replicas (by incident) so batches never deadlock.
                for step in sorted(steps, key=lambda s: (s.incident_id, s.due_at, s.id)):
                    at = self.clock.now()
                    inc, current, rows = await tx.step_context(step.id, step.incident_id)
                    ch = self._decide(step, inc, current, rows, d, at)
                    if ch is None:
                        continue
                    try:
                        await tx.apply(ch)
                    except Conflict:
                        retry.append(step)
                        continue
                    fired.append((current or step, ch, at))
        except Conflict:
            return 0
        for step, ch, at in fired:
            self._count(step, ch, at)
        for step in retry:
            await self._fire(step)
        return len(steps)

    def _decide(
        self,
        step: StepRecord,
        inc: IncidentRecord | None,
        current: StepRecord | None,
        rows: Sequence[OutboxRecord],
        d: Directory,
        now: datetime,
    ) -> Changes | None:
        """None when the step is no longer ours to fire (another replica fired, cancelled or
        moved it after our lease ran out); else what firing it writes."""
        if inc is not None:
            if current is None or current.state != StepState.PENDING or current.due_at > now:
                return None
            step = current
        return decide_step(step, inc, rows, d, now)

    async def _fire(self, step: StepRecord) -> None:
        for _ in range(8):
            now = self.clock.now()
            try:
                async with self.store.transaction() as tx:
                    # Row-locks the incident: firings of one incident's steps take turns.
                    inc, current, rows = await tx.step_context(step.id, step.incident_id)
                    d = await live_directory(tx, self.directory(), now)
                    ch = self._decide(step, inc, current, rows, d, now)
                    if ch is None:
                        return
                    await tx.apply(ch)
            except Conflict:
                continue
            self._count(current or step, ch, now)
            return
        log.error("step kept conflicting; will retry after its lease", extra={"step": step.id})

    def _count(self, step: StepRecord, ch: Changes, now: datetime) -> None:
        if any(s[1] == StepState.FIRED for s in ch.step_updates):
            self.metrics.steps_fired.labels(str(step.tier), step.kind).inc()
            self.metrics.lateness.observe(max(0.0, (now - step.due_at).total_seconds()))
        if self.on_change is not None and (ch.new_outbox or ch.updated_incidents):
            self.on_change(ch.incident_ids())

    async def run(self) -> None:
        """Loop until ``stop()``: tick, then sleep until the next due time or a wake-up."""
        failures = 0
        while not self._stopping:
            self._wake.clear()
            self._woken_due = None  # what committed before the tick reads, the tick sees
            # After a failure, retry at 1s, 2s, 4s … up to 15s: quick when the store comes
            # back, without a log line every second through a long outage.
            backoff = timedelta(seconds=min(15, 2 ** min(failures, 4)))
            try:
                nxt = await self.tick()
                failures = 0
            except StoreError as e:
                failures += 1
                self.metrics.engine_errors.inc()
                log.error(
                    "engine tick failed; retrying",
                    extra={"error": str(e), "retry_in": backoff.total_seconds()},
                )
                nxt = self.clock.now() + backoff
            except Exception:
                # Anything else is a bug (or an error a backend failed to translate); letting it
                # end this task would stop every page for good, silently. Log it loudly, retry.
                failures += 1
                self.metrics.engine_errors.inc()
                log.exception("engine tick failed unexpectedly; retrying")
                nxt = self.clock.now() + backoff
            await self._sleep(self._sleep_target(nxt))

    def _sleep_target(self, nxt: datetime | None) -> datetime:
        """The tick's next due time, what ``wake`` was told of during it, or a poll from now."""
        times = [self.clock.now() + self.poll, nxt, self._woken_due]
        return min(t for t in times if t is not None)

    async def _sleep(self, until: datetime) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep_until(until))
        waker = asyncio.ensure_future(self._wake.wait())
        self._asleep_until = until
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._asleep_until = None
            sleeper.cancel()
            waker.cancel()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
