"""Delivering the outbox: bundle, admit (rate limits, breakers), send one attempt, record.

Delivery is three stages kept apart so a crash re-sends rather than loses: rows are claimed
(leased) from the store, sent through their channel's Notifier, and only then recorded. What
protects people and providers (rate limits, bundling, breakers, retry spacing) is a
``DeliveryPolicy``; ``adapters.dispatch`` builds the configured one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from escalation.clock import Clock
from escalation.directory import Directory
from escalation.fallback import fallback_row
from escalation.metrics import EscalationMetrics
from escalation.model import Changes, IncidentRecord, OutboxRecord, OutboxState, Status, TimelineEvent
from escalation.notifier import Delivery, DeliveryResult, Notifier
from escalation.store.base import Store

__all__ = ["DeliveryPolicy", "OutboxDispatcher", "SimplePolicy"]

log = logging.getLogger("tocsin.dispatch")

_BUNDLED_KINDS = ("page", "reminder")


class DeliveryPolicy(Protocol):
    """Decisions the dispatcher asks for; all in-process state lives behind this."""

    bundle_window: timedelta

    def bundles(self, channel: str) -> bool:
        """Whether pages to one person on ``channel`` may be folded into one message."""

    def retry_delay(self, row: OutboxRecord, attempts: int, result: DeliveryResult, now: datetime) -> float | None:
        """Seconds until the next attempt, or None to give up (attempts or deadline spent)."""

    def admit(self, row: OutboxRecord, now: datetime) -> datetime | None:
        """None to send now; else the earliest instant a rate limit allows it."""

    def sent(self, row: OutboxRecord, now: datetime) -> None:
        """Count a send against the rate limits."""

    def available(self, channel: str, now: datetime) -> bool:
        """False while the channel's circuit breaker is open."""

    def outcome(self, channel: str, ok: bool, now: datetime) -> None:
        """Feed the breaker."""


class SimplePolicy:
    """No limits, no bundling, exponential spacing up to five attempts (tests, simulate)."""

    bundle_window = timedelta(0)

    def __init__(self, max_attempts: int = 5) -> None:
        self.max_attempts = max_attempts

    def bundles(self, channel: str) -> bool:
        return False

    def retry_delay(self, row: OutboxRecord, attempts: int, result: DeliveryResult, now: datetime) -> float | None:
        if attempts >= self.max_attempts:
            return None
        return result.retry_after if result.retry_after is not None else min(300.0, 2.0**attempts)

    def admit(self, row: OutboxRecord, now: datetime) -> datetime | None:
        return None

    def sent(self, row: OutboxRecord, now: datetime) -> None:
        return None

    def available(self, channel: str, now: datetime) -> bool:
        return True

    def outcome(self, channel: str, ok: bool, now: datetime) -> None:
        return None


class OutboxDispatcher:
    """Sends claimed outbox rows and records every attempt on the row and the timeline."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        notifiers: Callable[[], Mapping[str, Notifier]],
        directory: Callable[[], Directory],
        metrics: EscalationMetrics,
        policy: Callable[[], DeliveryPolicy] | None = None,
        person_details: Callable[[str], dict[str, Any]] | None = None,
        links: Callable[[IncidentRecord, OutboxRecord], dict[str, str]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.notifiers = notifiers
        self.directory = directory
        self.metrics = metrics
        _simple = SimplePolicy()
        self.policy = policy or (lambda: _simple)
        self.person_details = person_details or (lambda _p: {})
        self.links = links or (lambda _i, _r: {})
        self._last_sent: dict[tuple[str, str], datetime] = {}

    async def dispatch(self, rows: Sequence[OutboxRecord]) -> None:
        """Deliver rows claimed together; rows to the same person and channel travel as one bundle."""
        policy = self.policy()
        now = self.clock.now()
        groups: dict[tuple[str, str], list[OutboxRecord]] = defaultdict(list)
        singles: list[list[OutboxRecord]] = []
        for r in sorted(rows, key=lambda r: (r.not_before, r.created_at, r.id)):
            if policy.bundles(r.channel) and r.kind in _BUNDLED_KINDS:
                groups[(r.person, r.channel)].append(r)
            else:
                singles.append([r])
        batches = singles + list(groups.values())
        await asyncio.gather(*(self._deliver(batch, policy, now) for batch in batches))

    async def _postpone(self, rows: Sequence[OutboxRecord], until: datetime, why: str) -> None:
        async with self.store.transaction() as tx:
            for r in rows:
                await tx.record_delivery(r.id, OutboxState.PENDING, attempts=r.attempts, error=why, not_before=until)

    async def _deliver(self, batch: list[OutboxRecord], policy: DeliveryPolicy, now: datetime) -> None:
        head = batch[0]
        pair = (head.person, head.channel)
        window = policy.bundle_window
        if policy.bundles(head.channel) and head.kind in _BUNDLED_KINDS:
            last = self._last_sent.get(pair)
            if last is not None and now < last + window:
                # Something went to this person moments ago: hold these and send them together.
                await self._postpone(batch, last + window, "bundling")
                return
        until = policy.admit(head, now)
        if until is not None:
            self.metrics.notifications.labels(head.channel, "rate_limited").inc()
            await self._postpone(batch, until, "rate limited")
            return
        incidents: dict[str, IncidentRecord] = {}
        for r in batch:
            if r.incident_id not in incidents:
                inc = await self.store.get_incident(r.incident_id)
                if inc is not None:
                    incidents[inc.id] = inc
        live = [r for r in batch if r.incident_id in incidents]
        if not live:
            await self._record(batch, None, DeliveryResult(ok=False, error="incident not found"), policy, now)
            return
        head = live[0]
        inc = incidents[head.incident_id]
        notifier = self.notifiers().get(head.channel)
        if notifier is None:
            result = DeliveryResult(ok=False, error=f"no adapter is configured for channel {head.channel!r}")
        elif not policy.available(head.channel, now):
            result = DeliveryResult(ok=False, retryable=True, error=f"circuit breaker open for {head.channel}")
        else:
            async with self.store.transaction() as tx:
                alerts = await tx.alerts_of(inc.id)
            delivery = Delivery(
                head, inc, self.person_details(head.person), self.links(inc, head),
                bundle=tuple(live[1:]),
                bundle_incidents={k: v for k, v in incidents.items() if k != inc.id},
                alerts=tuple(alerts),
            )
            try:
                result = await notifier.notify(delivery)
            except Exception as e:  # an adapter bug must not stop delivery of everything else
                log.exception("notifier raised", extra={"channel": head.channel, "outbox": head.id})
                result = DeliveryResult(ok=False, retryable=True, error=f"{type(e).__name__}: {e}")
            policy.outcome(head.channel, result.ok, now)
            if result.ok or result.unknown:
                policy.sent(head, now)
                self._last_sent[(head.person, head.channel)] = now
        await self._record(live, inc, result, policy, now, incidents)
        gone = [r for r in batch if r.incident_id not in incidents]
        if gone:
            await self._record(gone, None, DeliveryResult(ok=False, error="incident not found"), policy, now)

    async def _record(
        self,
        rows: Sequence[OutboxRecord],
        inc: IncidentRecord | None,
        result: DeliveryResult,
        policy: DeliveryPolicy,
        now: datetime,
        incidents: Mapping[str, IncidentRecord] | None = None,
    ) -> None:
        incidents = incidents or {}
        head = rows[0]
        attempts = head.attempts + 1
        breaker_open = not result.ok and result.error.startswith("circuit breaker open")
        delay = None
        if result.ok:
            state, outcome = OutboxState.SENT, "sent"
        elif result.unknown:
            state, outcome = OutboxState.UNKNOWN, "unknown"
        else:
            delay = policy.retry_delay(head, attempts, result, now) if result.retryable else None
            state, outcome = (OutboxState.PENDING, "retry") if delay is not None else (OutboxState.FAILED, "failed")
        if breaker_open and state == OutboxState.PENDING and self._has_fallback(head):
            state, outcome = OutboxState.FAILED, "failed"  # don't wait for the breaker: fall back now
        self.metrics.notifications.labels(head.channel, outcome).inc()
        not_before = now + timedelta(seconds=delay) if state == OutboxState.PENDING and delay is not None else None
        bundled = f" (bundle of {len(rows)})" if len(rows) > 1 else ""
        async with self.store.transaction() as tx:
            ch = Changes()
            for r in rows:
                await tx.record_delivery(
                    r.id, state, attempts=r.attempts + 1, error=result.error, provider_id=result.provider_id,
                    sent_at=now if result.ok else None, not_before=not_before,
                )
                what = {"page": "page", "resolve": "resolved notice", "reminder": "reminder"}.get(r.kind, r.kind)
                if result.ok:
                    msg = f"{what} delivered to {r.person} via {r.channel}{bundled}"
                else:
                    msg = f"{what} to {r.person} via {r.channel} {outcome} (attempt {r.attempts + 1}): {result.error}"
                ch.timeline.append(TimelineEvent(
                    r.incident_id, now, "delivery", "tocsin", r.channel, msg,
                    {"outbox": r.id, "outcome": outcome, "attempt": r.attempts + 1, "provider_id": result.provider_id},
                ))
                r_inc = incidents.get(r.incident_id, inc)
                if (
                    state == OutboxState.FAILED and r.kind == "page" and r_inc is not None
                    and r_inc.status == Status.TRIGGERED
                ):
                    nxt = fallback_row(r, self.directory().people.get(r.person), now)
                    if nxt is not None:
                        ch.new_outbox.append(nxt)
                        ch.timeline.append(TimelineEvent(
                            r.incident_id, now, "fallback", "tocsin", "engine",
                            f"{r.channel} to {r.person} failed; falling back to {nxt.channel}",
                            {"outbox": r.id, "next": nxt.id},
                        ))
            if ch:
                await tx.apply(ch)

    def _has_fallback(self, row: OutboxRecord) -> bool:
        return fallback_row(row, self.directory().people.get(row.person), self.clock.now()) is not None
