"""What protects people and providers: bundling, retry spacing, rate limits, breakers.

The dispatcher's stages ask a ``DeliveryPolicy``; all limit state lives behind it.
``ConfiguredPolicy`` is the configured one (tenacity's jittered exponential backoff, sliding
windows per channel, per person and per Slack conversation, one breaker per channel, one
bundling window per person and channel); ``SimplePolicy`` has no limits. ``store_policy`` keeps
the breakers, bundling windows and rate limits in the store when several replicas share it
(PostgreSQL), so they hold for the cluster rather than for each process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import tenacity

from adapters.config import DispatchConfig
from adapters.delivery.limits import (
    Breakers,
    BundleWindows,
    LocalBreakers,
    LocalWindows,
    SharedRateLimits,
    SlidingWindow,
    StoreBreakers,
    StoreRateLimits,
    StoreWindows,
)
from adapters.delivery.notifier import DeliveryResult, FailureReason
from escalation.incidents.model import OutboxRecord
from escalation.oncall.targets import INCIDENT_ROOM, SERVICE_TARGETS
from escalation.store.base import RateSlot, Store

__all__ = [
    "ConfiguredPolicy",
    "DeliveryPolicy",
    "SimplePolicy",
    "slack_conversation",
    "store_policy",
]


class DeliveryPolicy(Protocol):
    """Decisions the dispatcher asks for; all in-process state lives behind this."""

    bundle_window: timedelta

    def bundles(self, channel: str) -> bool:
        """Whether pages to one person on ``channel`` may be folded into one message."""

    def retry_delay(
        self, row: OutboxRecord, attempts: int, result: DeliveryResult, now: datetime
    ) -> float | None:
        """Seconds until the next attempt, or None to give up (attempts or deadline spent)."""

    def admit(self, row: OutboxRecord, now: datetime) -> datetime | None:
        """None to send now; else the earliest instant a rate limit allows it."""

    def sent(self, row: OutboxRecord, now: datetime) -> None:
        """Count a send against the rate limits (called as the attempt starts)."""

    async def reserve(self, rows: Sequence[OutboxRecord], now: datetime) -> list[datetime | None]:
        """For the sends about to start, in order: counted (None), or when the limits admit it
        (not counted).

        ``admit`` and ``sent`` may not know every other sender; these answers are the ones that
        count. One call covers a whole delivery round (one store transaction, if any).
        """

    async def breaker(self, channel: str, now: datetime) -> datetime | None:
        """None if a send may go on ``channel`` now (perhaps as the one half-open probe); while
        its circuit breaker is open, when a try may go again."""

    async def outcomes(self, results: Sequence[tuple[str, bool]], now: datetime) -> None:
        """Feed the breakers with sends' outcomes (channel, ok), in order."""

    async def take_window(self, person: str, channel: str, now: datetime) -> datetime | None:
        """Start the bundling window of a message to ``person`` on ``channel`` now (None), or
        say when the open one ends (the message waits for it, to go with the others)."""

    async def release_window(self, person: str, channel: str, at: datetime) -> None:
        """Give back the window taken at ``at``: nothing reached the person after all."""


class SimplePolicy:
    """No limits, no bundling, exponential spacing up to five attempts (tests, simulate)."""

    bundle_window = timedelta(0)

    def __init__(self, max_attempts: int = 5) -> None:
        self.max_attempts = max_attempts

    def bundles(self, channel: str) -> bool:
        return False

    def retry_delay(
        self, row: OutboxRecord, attempts: int, result: DeliveryResult, now: datetime
    ) -> float | None:
        if attempts >= self.max_attempts:
            return None
        return result.retry_after if result.retry_after is not None else min(300.0, 2.0**attempts)

    def admit(self, row: OutboxRecord, now: datetime) -> datetime | None:
        return None

    def sent(self, row: OutboxRecord, now: datetime) -> None:
        return None

    async def reserve(self, rows: Sequence[OutboxRecord], now: datetime) -> list[datetime | None]:
        return [None] * len(rows)

    async def breaker(self, channel: str, now: datetime) -> datetime | None:
        return None

    async def outcomes(self, results: Sequence[tuple[str, bool]], now: datetime) -> None:
        return None

    async def take_window(self, person: str, channel: str, now: datetime) -> datetime | None:
        return None

    async def release_window(self, person: str, channel: str, at: datetime) -> None:
        return None


class ConfiguredPolicy:
    """A DeliveryPolicy built from the ``adapters.dispatch`` configuration section."""

    def __init__(
        self,
        cfg: DispatchConfig,
        shared: SharedRateLimits | None = None,
        *,
        breakers: Breakers | None = None,
        windows: BundleWindows | None = None,
    ) -> None:
        self.cfg = cfg
        self.shared = shared
        self.bundle_window = cfg.bundle_window
        self._bundle_channels = set(cfg.bundle_channels)
        # ``multiplier`` is the first delay (tenacity deprecated ``initial`` for it).
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=cfg.backoff_initial.total_seconds(),
            max=cfg.backoff_max.total_seconds(),
            jitter=cfg.backoff_initial.total_seconds(),
        )
        self._wait_rate_limited = tenacity.wait_exponential_jitter(
            multiplier=cfg.rate_limit_backoff_initial.total_seconds(),
            max=cfg.rate_limit_backoff_max.total_seconds(),
            jitter=cfg.rate_limit_backoff_initial.total_seconds(),
        )
        self._channel = {c: SlidingWindow(limit) for c, limit in cfg.channel_rate.items()}
        self._person = SlidingWindow(cfg.person_rate)
        self._conversation = SlidingWindow(cfg.slack_conversation_rate)
        self.breakers = breakers or LocalBreakers(cfg.breaker_failures, cfg.breaker_reset)
        self.windows = windows or LocalWindows(cfg.bundle_window)

    def bundles(self, channel: str) -> bool:
        """Pages on ``channel`` (or its kind, for ``webhook:ops``) may be bundled."""
        return self.bundle_window > timedelta(0) and (
            channel in self._bundle_channels or _kind(channel) in self._bundle_channels
        )

    def retry_delay(
        self, row: OutboxRecord, attempts: int, result: DeliveryResult, now: datetime
    ) -> float | None:
        deadline = _per_channel(self.cfg.deadline, row.channel)
        if result.reason == FailureReason.RATE_LIMITED and deadline is not None:
            return self._rate_limited_delay(attempts, result, now, row.created_at + deadline)
        if attempts >= self.cfg.max_attempts:
            return None
        delay = self._wait(_attempt(attempts))
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)  # the provider said when; never sooner
        if deadline is not None and now + timedelta(seconds=delay) > row.created_at + deadline:
            return None
        return delay

    def _rate_limited_delay(
        self, attempts: int, result: DeliveryResult, now: datetime, until: datetime
    ) -> float | None:
        """A 429: the page is still owed, so no attempt budget, and the last try lands on the
        deadline rather than giving up early because the next wait overshoots. Without a
        Retry-After (PagerDuty's Events API sends none), a slower backoff of its own."""
        left = (until - now).total_seconds()
        if left <= 0:
            return None
        if result.retry_after is not None:
            # The provider said when: that, not our guess (and no try before it).
            return result.retry_after if result.retry_after <= left else None
        return min(self._wait_rate_limited(_attempt(attempts)), left)

    def admit(self, row: OutboxRecord, now: datetime) -> datetime | None:
        if self.shared is not None:
            return None  # only the shared count knows what the other replicas sent: reserve()
        waits = []
        limiter = _per_channel(self._channel, row.channel)
        if limiter is not None:
            waits.append(limiter.next_slot(row.channel, now))
        if _personal(row):
            waits.append(self._person.next_slot(row.person, now))
        conversation = slack_conversation(row)
        if conversation is not None:
            waits.append(self._conversation.next_slot(conversation, now))
        later = [w for w in waits if w is not None]
        return max(later) if later else None

    def sent(self, row: OutboxRecord, now: datetime) -> None:
        if self.shared is not None:
            return  # counted in the shared store by reserve()
        limiter = _per_channel(self._channel, row.channel)
        if limiter is not None:
            limiter.add(row.channel, now)
        if _personal(row):
            self._person.add(row.person, now)
        conversation = slack_conversation(row)
        if conversation is not None:
            self._conversation.add(conversation, now)

    async def reserve(self, rows: Sequence[OutboxRecord], now: datetime) -> list[datetime | None]:
        if self.shared is None:
            return [None] * len(rows)  # ``sent`` counted each, right after ``admit`` said yes
        sends = [self._slots(r) for r in rows]
        if not any(sends):
            return [None] * len(rows)  # no limit applies: nothing to count, no store trip
        return await self.shared.take(sends, now)

    def _slots(self, row: OutboxRecord) -> list[RateSlot]:
        slots = []
        limit = _per_channel(self.cfg.channel_rate, row.channel)
        if limit is not None:
            slots.append(RateSlot(f"channel:{row.channel}", limit.count, limit.per))
        if _personal(row):
            rate = self.cfg.person_rate
            slots.append(RateSlot(f"person:{row.person}", rate.count, rate.per))
        conversation = slack_conversation(row)
        if conversation is not None:
            rate = self.cfg.slack_conversation_rate
            slots.append(RateSlot(f"conversation:{conversation}", rate.count, rate.per))
        return slots

    async def breaker(self, channel: str, now: datetime) -> datetime | None:
        return await self.breakers.check(channel, now)

    async def outcomes(self, results: Sequence[tuple[str, bool]], now: datetime) -> None:
        await self.breakers.outcomes(results, now)

    async def take_window(self, person: str, channel: str, now: datetime) -> datetime | None:
        return await self.windows.take(person, channel, now)

    async def release_window(self, person: str, channel: str, at: datetime) -> None:
        await self.windows.release(person, channel, at)


def store_policy(cfg: DispatchConfig, store: Store, *, shared: bool) -> ConfiguredPolicy:
    """The configured policy; with ``shared`` (several replicas on one store), its breakers,
    bundling windows and rate limits are kept in ``store`` so they hold for the cluster rather
    than for each process. Without it (one process: SQLite's lock file allows no other) they are
    kept in memory, exact and without a store transaction per send."""
    if not shared:
        return ConfiguredPolicy(cfg)
    return ConfiguredPolicy(
        cfg,
        StoreRateLimits(store),
        breakers=StoreBreakers(store, cfg.breaker_failures, cfg.breaker_reset),
        windows=StoreWindows(store, cfg.bundle_window),
    )


def _attempt(attempts: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempts
    return state


def _kind(channel: str) -> str:
    return channel.split(":", 1)[0]


_V = TypeVar("_V")


def _per_channel(table: Mapping[str, _V], channel: str) -> _V | None:
    # ``webhook:ops`` takes its own entry if configured, else its kind's (``webhook``).
    found = table.get(channel)
    return found if found is not None else table.get(_kind(channel))


def slack_conversation(row: OutboxRecord) -> str | None:
    """The Slack conversation ``row`` posts into, as a rate-limit key (None: not Slack).

    A place (``slack:#incidents``) is one channel for every incident; ``slack:@incident`` is
    each incident's own channel; a person is their direct messages with the app. A channel
    named two ways (``slack:ops`` for ``#ops`` and ``slack:#ops``) counts as two.
    """
    if row.channel != "slack":
        return None
    if row.person.partition(":")[2] == INCIDENT_ROOM:
        return f"slack:{row.person}:{row.incident_id}"
    return f"slack:{row.person}"


def _personal(row: OutboxRecord) -> bool:
    # PagerDuty services and Slack channels are not people; their channel limit protects them.
    place = row.person.split(":", 1)[0] if ":" in row.person else ""
    return row.kind in ("page", "reminder") and place not in SERVICE_TARGETS
