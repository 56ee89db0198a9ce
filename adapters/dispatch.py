"""The configured delivery policy: retry spacing (tenacity), rate limits, bundling, breakers.

All counters here are per process: with several replicas each one enforces the limits on what it
sends, so the effective ceiling is replicas x limit (documented in the README).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TypeVar

import tenacity

from adapters.config import DispatchConfig, RateLimit
from escalation.engine.notifier import DeliveryResult
from escalation.incidents.model import OutboxRecord

__all__ = ["CircuitBreaker", "ConfiguredPolicy", "SlidingWindow"]


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


class ConfiguredPolicy:
    """A DeliveryPolicy built from ``adapters.dispatch``."""

    def __init__(self, cfg: DispatchConfig) -> None:
        self.cfg = cfg
        self.bundle_window = cfg.bundle_window
        self._bundle_channels = set(cfg.bundle_channels)
        # ``multiplier`` is the first delay (tenacity deprecated ``initial`` for it).
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=cfg.backoff_initial.total_seconds(),
            max=cfg.backoff_max.total_seconds(),
            jitter=cfg.backoff_initial.total_seconds(),
        )
        self._channel = {c: SlidingWindow(limit) for c, limit in cfg.channel_rate.items()}
        self._person = SlidingWindow(cfg.person_rate)
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_reset)

    def bundles(self, channel: str) -> bool:
        """Pages on ``channel`` (or its kind, for ``webhook:ops``) may be bundled."""
        return self.bundle_window > timedelta(0) and (
            channel in self._bundle_channels or _kind(channel) in self._bundle_channels
        )

    def retry_delay(
        self, row: OutboxRecord, attempts: int, result: DeliveryResult, now: datetime
    ) -> float | None:
        if attempts >= self.cfg.max_attempts:
            return None
        state = tenacity.RetryCallState(
            retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={}
        )
        state.attempt_number = attempts
        delay = self._wait(state)
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)  # the provider said when; never sooner
        deadline = _per_channel(self.cfg.deadline, row.channel)
        if deadline is not None and now + timedelta(seconds=delay) > row.created_at + deadline:
            return None
        return delay

    def admit(self, row: OutboxRecord, now: datetime) -> datetime | None:
        waits = []
        limiter = _per_channel(self._channel, row.channel)
        if limiter is not None:
            waits.append(limiter.next_slot(row.channel, now))
        if _personal(row):
            waits.append(self._person.next_slot(row.person, now))
        later = [w for w in waits if w is not None]
        return max(later) if later else None

    def sent(self, row: OutboxRecord, now: datetime) -> None:
        limiter = _per_channel(self._channel, row.channel)
        if limiter is not None:
            limiter.add(row.channel, now)
        if _personal(row):
            self._person.add(row.person, now)

    def available(self, channel: str, now: datetime) -> bool:
        return self.breaker.available(channel, now)

    def outcome(self, channel: str, ok: bool, now: datetime) -> None:
        self.breaker.outcome(channel, ok, now)

    def reopens_at(self, channel: str, now: datetime) -> datetime | None:
        return self.breaker.reopens_at(channel, now)


def _kind(channel: str) -> str:
    return channel.split(":", 1)[0]


_V = TypeVar("_V")


def _per_channel(table: Mapping[str, _V], channel: str) -> _V | None:
    # ``webhook:ops`` takes its own entry if configured, else its kind's (``webhook``).
    found = table.get(channel)
    return found if found is not None else table.get(_kind(channel))


def _personal(row: OutboxRecord) -> bool:
    # PagerDuty service targets are not people; their channel limit protects them.
    return row.kind in ("page", "reminder") and not row.person.startswith("pagerduty:")
