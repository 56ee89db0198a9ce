"""Concurrent ingests share one transaction: one read, one write and one commit for a batch.

Alertmanager sends many notifications at once (a storm, or many groups flushing together).
Each used to be its own unit of work: its own read of the incidents, its own write, its own
share of a commit, and several hand-offs to the store between them. Here a notification that
arrives while a batch is in the store waits for the next batch, which takes every notification
waiting by then (up to a bound), so under load the per-unit costs are paid once per batch; at
low load a batch is one notification and starts at once, as before.

What must hold, and how:
- Each caller still returns only once its notification's effects are committed, with its own
  outcomes.
- Notifications that share an incident key or an alert fingerprint (``intake.touches``) are
  never in one batch: the later one waits for the next batch, and so does every notification
  after it that shares one of its keys, so each key's notifications are decided in the order
  they arrived. One that would change an incident an earlier one of the batch changes (two keys
  leading to one incident) is deferred by ``ingest_many_in`` and runs first in the next batch.
- A batch that fails with something other than the store being unavailable is run again one
  notification at a time, so one notification's fault is its own.
- A caller that went away before its batch started is dropped (nothing of it is written, as
  before); one that goes away after is still committed (a retry then finds it a duplicate).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from escalation.engine.intake import Intake, touches
from escalation.engine.units import StoreUnavailable
from escalation.incidents.ingest import IngestOutcome

__all__ = ["IngestBatcher", "RunBatch"]

# Decides and commits a batch: each notification's outcomes, or None where it was deferred.
RunBatch = Callable[[Sequence[Intake]], Awaitable[list[list[IngestOutcome] | None]]]


@dataclass(slots=True)
class _Waiting:
    intake: Intake
    touches: frozenset[str]
    alerts: int
    done: asyncio.Future[list[IngestOutcome]]


class IngestBatcher:
    """Runs ingests in batches of concurrent notifications, one batch at a time."""

    def __init__(self, run: RunBatch, *, max_notifications: int = 64, max_alerts: int = 1000):
        self._run = run
        self.max_notifications = max_notifications
        self.max_alerts = max_alerts  # a batch stops growing here (its first is always taken)
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, intake: Intake) -> list[IngestOutcome]:
        """The notification's outcomes, once its batch has committed."""
        n, classified = intake
        done: asyncio.Future[list[IngestOutcome]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(intake, touches(n, classified), len(classified), done))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="tocsin-ingest-batches")
        return await done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                if batch:
                    await self._run_batch(batch)
        except BaseException as e:  # cancelled at shutdown: nobody is left waiting forever
            for w in self._waiting:
                _fail(w, StoreUnavailable(f"ingest stopped: {type(e).__name__}"))
            self._waiting.clear()
            raise
        finally:
            self._task = None

    def _take(self) -> list[_Waiting]:
        """The next batch, in arrival order; what is left keeps its order."""
        batch: list[_Waiting] = []
        left: collections.deque[_Waiting] = collections.deque()
        seen: set[str] = set()  # touched by anything taken or left before
        alerts = 0
        for w in self._waiting:
            if w.done.done():
                continue  # its caller went away before it ran: nothing of it is written
            fits = not batch or (
                len(batch) < self.max_notifications and alerts + w.alerts <= self.max_alerts
            )
            if fits and seen.isdisjoint(w.touches):
                batch.append(w)
                alerts += w.alerts
            else:
                left.append(w)
            seen |= w.touches
        self._waiting = left
        return batch

    async def _run_batch(self, batch: list[_Waiting]) -> None:
        try:
            results = await self._run([w.intake for w in batch])
        except asyncio.CancelledError:
            for w in batch:
                _fail(w, StoreUnavailable("ingest stopped"))
            raise
        except Exception as e:
            if len(batch) > 1 and not isinstance(e, StoreUnavailable):
                for w in batch:  # one notification's fault stays its own
                    await self._run_batch([w])
                return
            for w in batch:
                _fail(w, e)
            return
        deferred = [w for w, r in zip(batch, results, strict=True) if r is None]
        for w, r in zip(batch, results, strict=True):
            if r is not None and not w.done.done():
                w.done.set_result(r)
        self._waiting.extendleft(reversed(deferred))


def _fail(w: _Waiting, error: BaseException) -> None:
    if not w.done.done():
        w.done.set_exception(error)
