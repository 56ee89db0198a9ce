"""Downstream protection: sliding-window rate limits, circuit breakers, bundling windows.

``SlidingWindow`` and ``CircuitBreaker`` count in process. That is exact for one process (SQLite
is single-replica), but N replicas would allow N x each limit and try a failing channel N times;
so the store keeps them instead (``Store*``), and every replica sees every other's sends:
rate limits (one row per send, each key locked while it is checked, one transaction for all the
sends of a delivery round) on PostgreSQL, breakers (one row per channel, the half-open probe
taken by one conditional update) and bundling windows (one row per person and channel) on both
backends.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol

from adapters.config import RateLimit
from escalation.store.base import BreakerRecord, RateSlot, Store

__all__ = [
    "BREAKER_STATES",
    "BreakerState",
    "Breakers",
    "BundleWindows",
    "CircuitBreaker",
    "LocalBreakers",
    "LocalWindows",
    "SharedRateLimits",
    "SlidingWindow",
    "StoreBreakers",
    "StoreRateLimits",
    "StoreWindows",
    "breaker_state",
]

BreakerState = Literal["closed", "open", "half-open"]
BREAKER_STATES: tuple[BreakerState, ...] = ("closed", "open", "half-open")


def breaker_state(stored: BreakerRecord | None, now: datetime, reset: timedelta) -> BreakerState:
    """What a stored breaker means now: ``open`` while sends are held, ``half-open`` once
    ``reset`` has passed (the next send is the probe), ``closed`` otherwise. While a probe
    travels the row is re-armed, so it reads ``open`` until the probe's outcome."""
    if stored is None or stored.opened_at is None:
        return "closed"
    return "open" if now < stored.opened_at + reset else "half-open"


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


class Breakers(Protocol):
    """One circuit breaker per channel."""

    async def check(self, channel: str, now: datetime) -> datetime | None:
        """None if a send may go (perhaps as the one half-open probe); else when to try again."""

    async def outcomes(self, results: Sequence[tuple[str, bool]], now: datetime) -> None:
        """Feed the breakers with sends' outcomes (channel, ok), in order."""

    async def records(self) -> list[BreakerRecord]:
        """Every breaker that ever saw a failure, by channel (for /metrics and the console)."""


class BundleWindows(Protocol):
    """When the last message to a person on a channel went: the next waits out the window."""

    async def take(self, person: str, channel: str, now: datetime) -> datetime | None:
        """Start a window for a message now (None), or say when the open one ends."""

    async def release(self, person: str, channel: str, at: datetime) -> None:
        """Give back the window taken at ``at``: nothing reached the person after all."""


class StoreBreakers:
    """``Breakers`` in the store: failures seen by any replica open the breaker for all, and
    one replica in the cluster gets the half-open probe."""

    def __init__(self, store: Store, failures: int, reset: timedelta) -> None:
        self.store = store
        self.failures = failures
        self.reset = reset

    async def check(self, channel: str, now: datetime) -> datetime | None:
        async with self.store.transaction() as tx:
            return await tx.check_breaker(channel, now, self.reset)

    async def outcomes(self, results: Sequence[tuple[str, bool]], now: datetime) -> None:
        if not results:
            return
        async with self.store.transaction() as tx:
            await tx.record_breaker_outcomes(results, now, self.failures)

    async def records(self) -> list[BreakerRecord]:
        return await self.store.breakers()


class StoreWindows:
    """``BundleWindows`` in the store: one window per person and channel for the cluster."""

    def __init__(self, store: Store, window: timedelta) -> None:
        self.store = store
        self.window = window

    async def take(self, person: str, channel: str, now: datetime) -> datetime | None:
        async with self.store.transaction() as tx:
            return await tx.take_bundle_window(person, channel, now, self.window)

    async def release(self, person: str, channel: str, at: datetime) -> None:
        async with self.store.transaction() as tx:
            await tx.release_bundle_window(person, channel, at)


class LocalBreakers:
    """``Breakers`` in this process (a policy without a store: tests, tools)."""

    def __init__(self, failures: int, reset: timedelta) -> None:
        self.breaker = CircuitBreaker(failures, reset)

    async def check(self, channel: str, now: datetime) -> datetime | None:
        if self.breaker.available(channel, now):
            return None
        return self.breaker.reopens_at(channel, now)

    async def outcomes(self, results: Sequence[tuple[str, bool]], now: datetime) -> None:
        for channel, ok in results:
            self.breaker.outcome(channel, ok, now)

    async def records(self) -> list[BreakerRecord]:
        return self.breaker.records()


class LocalWindows:
    """``BundleWindows`` in this process."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._taken: dict[tuple[str, str], datetime] = {}

    async def take(self, person: str, channel: str, now: datetime) -> datetime | None:
        last = self._taken.get((person, channel))
        if last is not None and now < last + self.window:
            return last + self.window
        self._taken[(person, channel)] = now
        return None

    async def release(self, person: str, channel: str, at: datetime) -> None:
        if self._taken.get((person, channel)) == at:
            del self._taken[(person, channel)]


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

    def records(self) -> list[BreakerRecord]:
        """Each channel that ever failed: its failures in a row and when it opened, if open."""
        channels = sorted(set(self._count) | set(self._opened))
        return [BreakerRecord(c, self._count.get(c, 0), self._opened.get(c)) for c in channels]

    def is_open(self, channel: str, now: datetime) -> bool:
        """True while sends on ``channel`` are held (no side effect, unlike ``available``)."""
        return self.reopens_at(channel, now) is not None

    def reopens_at(self, channel: str, now: datetime) -> datetime | None:
        """When the next try may go while the breaker is open; None when one may go now."""
        opened = self._opened.get(channel)
        if opened is None or now >= opened + self.reset:
            return None
        return opened + self.reset
