"""Time for the whole process: one ``Clock`` answers *now* and *sleep*.

Nothing in tocsin calls ``datetime.now()`` or ``asyncio.sleep()`` for domain time; tests and
``tocsin simulate`` drive a ``VirtualClock`` so a two-hour escalation runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "RealClock", "VirtualClock"]


class Clock(Protocol):
    """What every time-aware component asks."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at (or after) ``when``; cancellable."""
        ...


class RealClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """Time that moves only when told to; sleepers wake in due order as it advances."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        await fut

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (never backwards) without waking sleepers; for step-driven runs."""
        self._now = max(self._now, when)

    def next_wakeup(self) -> datetime | None:
        """The earliest pending sleeper's due time, if any."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, delta: timedelta) -> None:
        """Move time forward by ``delta``, waking each sleeper at its own due instant."""
        await self.advance_to(self._now + delta)

    async def advance_to(self, target: datetime) -> None:
        """Move time to ``target`` step by step so work scheduled on the way runs in order."""
        await _settle()
        while True:
            nxt = self.next_wakeup()
            if nxt is None or nxt > target:
                break
            self._now = max(self._now, nxt)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
            await _settle()
        self._now = max(self._now, target)
        await _settle()


async def _settle(rounds: int = 20) -> None:
    # Let woken tasks run to their next await; a handful of loop turns covers chained awaits.
    for _ in range(rounds):
        await asyncio.sleep(0)
