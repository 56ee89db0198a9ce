"""Downstream protection: sliding-window rate limits and circuit breakers.

``SlidingWindow`` and ``CircuitBreaker`` count in process. That is exact for one process (SQLite
is single-replica), but N replicas would allow N x each limit; so with a shared store the rate
limits are counted there instead (``StoreRateLimits``: one row per send, each key locked while
it is checked, one transaction for all the sends of a delivery round), and every replica sees
every other's sends. Breakers stay per process.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from adapters.config import RateLimit
from escalation.store.base import RateSlot, Store

__all__ = ["CircuitBreaker", "SharedRateLimits", "SlidingWindow", "StoreRateLimits"]


class SharedRateLimits(Protocol):
    """Rate limits counted where every replica sees them."""

    async def take(
        self, sends: Sequence[Sequence[RateSlot]], now: datetime
    ) -> list[datetime | None]:
        """For each send in order: counted against all its slots (None), or when all have room
        (nothing counted)."""


class StoreRateLimits:
    """``SharedRateLimits`` in the store: one short transaction per delivery round, none when
    no send of the round is limited."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def take(
        self, sends: Sequence[Sequence[RateSlot]], now: datetime
    ) -> list[datetime | None]:
        if not any(sends):
            return [None] * len(sends)
        async with self.store.transaction() as tx:
            return await tx.take_rate_slots(sends, now)


class SlidingWindow:
    """At most ``count`` events per ``per``; tells when the next one fits."""

    def __init__(self, limit: RateLimit) -> None:
        self.count = limit.count
        self.per = limit.per
        self._events: dict[str, deque[datetime]] = defaultdict(deque)

    def next_slot(self, key: str, now: datetime) -> datetime | None:
        """None if an event may happen now, else when the oldest counted one expires."""
        q = self._events[key]
        while q and q[0] <= now - self.per:
            q.popleft()
        if len(q) < self.count:
            return None
        return q[0] + self.per

    def add(self, key: str, now: datetime) -> None:
        self._events[key].append(now)


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; lets one try through after ``reset``.

    Half-open: the first ``available`` call after ``reset`` is the probe and re-arms the
    breaker, so everyone else keeps waiting until the probe's outcome closes it (success) or
    opens it for another ``reset`` (failure). A probe that never reports re-arms after ``reset``.
    """

    def __init__(self, failures: int, reset: timedelta) -> None:
        self.failures = failures
        self.reset = reset
        self._count: dict[str, int] = defaultdict(int)
        self._opened: dict[str, datetime] = {}

    def available(self, channel: str, now: datetime) -> bool:
        """May a send go out on ``channel`` now? (Takes the probe slot when half-open.)"""
        opened = self._opened.get(channel)
        if opened is None:
            return True
        if now < opened + self.reset:
            return False
        self._opened[channel] = now  # this caller is the probe; the rest wait for its outcome
        return True

    def outcome(self, channel: str, ok: bool, now: datetime) -> None:
        """Record a send's result: success closes the breaker, a run of failures opens it."""
        if ok:
            self._count[channel] = 0
            self._opened.pop(channel, None)
            return
        self._count[channel] += 1
        if self._count[channel] >= self.failures:
            self._opened[channel] = now

    def is_open(self, channel: str, now: datetime) -> bool:
        """True while sends on ``channel`` are held (no side effect, unlike ``available``)."""
        return self.reopens_at(channel, now) is not None

    def reopens_at(self, channel: str, now: datetime) -> datetime | None:
        """When the next try may go while the breaker is open; None when one may go now."""
        opened = self._opened.get(channel)
        if opened is None or now >= opened + self.reset:
            return None
        return opened + self.reset
