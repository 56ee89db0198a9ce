"""Delivering the outbox: bundle, admit (rate limits, breakers), send one attempt, record.

Delivery is three stages kept apart so a crash re-sends rather than loses: rows are claimed
(leased) from the store, sent through their channel's Notifier, and only then recorded. What
protects people and providers (rate limits, bundling, breakers, retry spacing) is a
``DeliveryPolicy``; ``adapters.dispatch`` builds the configured one.

Every write re-reads the rows in its own transaction: a row an acknowledgement cancelled after
the claim is neither sent, nor held (which would revive it), nor retried or fallen back. Rate
limit slots are taken before the first await of a send, so rows delivered concurrently from one
claim cannot all pass the same limit check.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from escalation.engine.clock import Clock
from escalation.engine.metrics import EscalationMetrics
from escalation.engine.notifier import Delivery, DeliveryResult, Notifier
from escalation.incidents.directory import Directory
from escalation.incidents.fallback import fallback_row
from escalation.incidents.model import (
    AlertRecord,
    Changes,
    DeliveryOutcome,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
    TimelineEvent,
)
from escalation.store.base import Store, Tx

__all__ = ["DeliveryPolicy", "OutboxDispatcher", "SimplePolicy"]

log = logging.getLogger("tocsin.dispatch")

_BUNDLED_KINDS = ("page", "reminder")
_MOOT = "(cancelled meanwhile: no retry, no fallback)"
_WHAT = {"page": "page", "resolve": "resolved notice", "reminder": "reminder"}
# How long to hold rows when the breaker is open but the policy cannot say until when.
_BREAKER_RECHECK = timedelta(seconds=30)


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

    def available(self, channel: str, now: datetime) -> bool:
        """False while the channel's circuit breaker is open (True may take the half-open probe)."""

    def outcome(self, channel: str, ok: bool, now: datetime) -> None:
        """Feed the breaker."""

    def reopens_at(self, channel: str, now: datetime) -> datetime | None:
        """While the breaker is open, when a try may go again (None: unknown or now)."""


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

    def available(self, channel: str, now: datetime) -> bool:
        return True

    def outcome(self, channel: str, ok: bool, now: datetime) -> None:
        return None

    def reopens_at(self, channel: str, now: datetime) -> datetime | None:
        return None


@dataclass
class _Prepared:
    """What ``prepare`` read for one claim."""

    rows: Sequence[OutboxRecord]
    batches: list[list[OutboxRecord]]
    incidents: dict[str, IncidentRecord]
    stored: dict[str, OutboxRecord]
    alerts: dict[str, list[AlertRecord]]
    skip: set[str]
    policy: DeliveryPolicy
    now: datetime


@dataclass
class _Plan:
    """What one dispatch decided and what its sends returned, written in one transaction."""

    held: list[tuple[list[OutboxRecord], datetime, str, bool]] = field(default_factory=list)
    results: list[tuple[list[OutboxRecord], DeliveryResult]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.held or self.results)


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
        """Deliver rows claimed together; rows to one person and channel travel as one bundle.

        Four steps: read what the rows' incidents and rows are now (one transaction); decide
        for every bundle in turn, with no await in between, whether it is held, fails at once
        or is sent (so concurrent bundles see each other in the limits and the breaker); send
        concurrently; record every outcome in one transaction. A crash before that record
        re-sends rather than loses.
        """
        async with self.store.transaction() as tx:
            prepared = await self.prepare(tx, rows)
        await self.finish(prepared)

    async def prepare(self, tx: Tx, rows: Sequence[OutboxRecord]) -> _Prepared:
        """The read (and moot cancellations) of ``dispatch``, inside the caller's transaction."""
        policy = self.policy()
        now = self.clock.now()
        groups: dict[tuple[str, str], list[OutboxRecord]] = defaultdict(list)
        batches: list[list[OutboxRecord]] = []
        for r in sorted(rows, key=lambda r: (r.not_before, r.created_at, r.id)):
            if policy.bundles(r.channel) and r.kind in _BUNDLED_KINDS:
                groups[(r.person, r.channel)].append(r)
            else:
                batches.append([r])
        batches += list(groups.values())

        incidents, stored, alerts = await self._current(tx, rows, alerts=True)
        moot = [
            r
            for r in rows
            if _pending(stored.get(r.id))
            and r.kind in _BUNDLED_KINDS
            and r.incident_id in incidents
            and incidents[r.incident_id].status == Status.RESOLVED
        ]
        if moot:
            # A page about an incident that is over is moot; its "resolved" notice is not.
            await tx.apply(
                Changes(
                    deliveries=[
                        DeliveryOutcome(
                            r.id, OutboxState.CANCELLED, r.attempts, "incident resolved"
                        )
                        for r in moot
                    ]
                )
            )
        return _Prepared(
            rows, batches, incidents, stored, alerts, {r.id for r in moot}, policy, now
        )

    async def finish(self, p: _Prepared) -> None:
        """Decide, send and record what ``prepare`` read (after its transaction committed)."""
        batches, incidents, stored, alerts, policy, now = (
            p.batches,
            p.incidents,
            p.stored,
            p.alerts,
            p.policy,
            p.now,
        )
        skip = p.skip

        plan = _Plan()
        sends: list[tuple[list[OutboxRecord], Notifier, Delivery]] = []
        for batch in batches:
            # Rows cancelled (an ack) or settled elsewhere since the claim are not sent.
            batch = [r for r in batch if _pending(stored.get(r.id)) and r.id not in skip]
            if not batch:
                continue
            gone = [r for r in batch if r.incident_id not in incidents]
            if gone:
                plan.results.append((gone, DeliveryResult(ok=False, error="incident not found")))
            live = [r for r in batch if r.incident_id in incidents]
            if live:
                send = self._decide(live, incidents, alerts, policy, now, plan)
                if send is not None:
                    sends.append((live, *send))

        async def one(live: list[OutboxRecord], notifier: Notifier, delivery: Delivery) -> None:
            head = live[0]
            try:
                result = await notifier.notify(delivery)
            except Exception as e:  # an adapter bug must not stop delivery of everything else
                log.exception("notifier raised", extra={"channel": head.channel, "outbox": head.id})
                result = DeliveryResult(ok=False, retryable=True, error=f"{type(e).__name__}: {e}")
            policy.outcome(head.channel, result.ok, now)
            if result.ok or result.unknown:
                self._last_sent[(head.person, head.channel)] = now
            plan.results.append((live, result))

        if sends:
            await asyncio.gather(*(one(*s) for s in sends))
        if plan:
            await self._write(plan, policy, now)

    async def _current(
        self, tx: Tx, rows: Sequence[OutboxRecord], *, alerts: bool = False
    ) -> tuple[dict[str, IncidentRecord], dict[str, OutboxRecord], dict[str, list[AlertRecord]]]:
        """The rows' incidents and the rows as stored now, read inside ``tx`` in one trip.

        Reading the incident takes its lock (PostgreSQL), so an acknowledgement cannot cancel
        these rows between this read and the writes that follow in the same ``tx``.
        """
        return await tx.delivery_state(
            [r.incident_id for r in rows], [r.id for r in rows], alerts=alerts
        )

    def _decide(
        self,
        live: list[OutboxRecord],
        incidents: Mapping[str, IncidentRecord],
        alerts: Mapping[str, list[AlertRecord]],
        policy: DeliveryPolicy,
        now: datetime,
        plan: _Plan,
    ) -> tuple[Notifier, Delivery] | None:
        """Hold, fail or send one bundle; a send's slot in the limits is reserved here."""
        head = live[0]
        if policy.bundles(head.channel) and head.kind in _BUNDLED_KINDS:
            last = self._last_sent.get((head.person, head.channel))
            if last is not None and now < last + policy.bundle_window:
                # Something went to this person moments ago: hold these and send them together.
                plan.held.append((live, last + policy.bundle_window, "bundling", False))
                return None
        until = policy.admit(head, now)
        if until is not None:
            self.metrics.notifications.labels(head.channel, "rate_limited").inc()
            plan.held.append((live, until, "rate limited", False))
            return None
        notifier = self.notifiers().get(head.channel)
        if notifier is None:
            error = f"no adapter is configured for channel {head.channel!r}"
            plan.results.append((live, DeliveryResult(ok=False, error=error)))
            return None
        if not policy.available(head.channel, now):
            # Breaker open: fall back at once where the person has a next channel; hold the
            # rest (no attempt spent) until the breaker lets a try through again.
            why = f"circuit breaker open for {head.channel}"
            now_fb = [r for r in live if self._falls_back(r, incidents[r.incident_id], now)]
            held = [r for r in live if r not in now_fb]
            if held:
                self.metrics.notifications.labels(head.channel, "breaker_open").inc()
                reopen = policy.reopens_at(head.channel, now) or now + _BREAKER_RECHECK
                plan.held.append((held, reopen, why, True))
            if now_fb:
                plan.results.append((now_fb, DeliveryResult(ok=False, error=why)))
            return None
        policy.sent(head, now)  # reserve the slot before any await
        inc = incidents[head.incident_id]
        others = {r.incident_id for r in live[1:]} - {inc.id}
        delivery = Delivery(
            head,
            inc,
            self.person_details(head.person),
            self.links(inc, head),
            bundle=tuple(live[1:]),
            bundle_incidents={i: incidents[i] for i in others},
            alerts=tuple(alerts.get(inc.id, ())),
        )
        return notifier, delivery

    async def _write(self, plan: _Plan, policy: DeliveryPolicy, now: datetime) -> None:
        """Record every hold and every attempt's outcome in one transaction."""
        touched = [r for rows, *_ in plan.held for r in rows]
        touched += [r for rows, _ in plan.results for r in rows]
        async with self.store.transaction() as tx:
            current, stored, _ = await self._current(tx, touched)
            ch = Changes()
            for rows, until, why, note in plan.held:
                self._hold(ch, rows, stored, until, why, note, now)
            for rows, result in plan.results:
                self._record(ch, rows, result, current, stored, policy, now)
            if ch:
                await tx.apply(ch)

    def _hold(
        self,
        ch: Changes,
        rows: Sequence[OutboxRecord],
        stored: Mapping[str, OutboxRecord],
        until: datetime,
        why: str,
        note: bool,
        now: datetime,
    ) -> None:
        """Hold rows until ``until`` without spending an attempt (none was made)."""
        for r in rows:
            if not _pending(stored.get(r.id)):
                continue  # cancelled meanwhile (an ack): holding it would revive it
            ch.deliveries.append(
                DeliveryOutcome(r.id, OutboxState.PENDING, r.attempts, why, not_before=until)
            )
            if note:
                what, when = _WHAT.get(r.kind, r.kind), until.isoformat()
                ch.timeline.append(
                    TimelineEvent(
                        r.incident_id,
                        now,
                        "delivery",
                        "tocsin",
                        r.channel,
                        f"{what} to {r.person} via {r.channel} held until {when}: {why}",
                        {"outbox": r.id, "outcome": "held", "until": when},
                    )
                )

    def _record(
        self,
        ch: Changes,
        rows: Sequence[OutboxRecord],
        result: DeliveryResult,
        current: Mapping[str, IncidentRecord],
        stored: Mapping[str, OutboxRecord],
        policy: DeliveryPolicy,
        now: datetime,
    ) -> None:
        """One attempt's outcome on its rows; fall back on failure while still triggered."""
        head = rows[0]
        attempts = head.attempts + 1
        delay = None
        if result.ok:
            state, outcome = OutboxState.SENT, "sent"
        elif result.unknown:
            state, outcome = OutboxState.UNKNOWN, "unknown"
        else:
            delay = policy.retry_delay(head, attempts, result, now) if result.retryable else None
            state, outcome = (
                (OutboxState.PENDING, "retry")
                if delay is not None
                else (OutboxState.FAILED, "failed")
            )
        self.metrics.notifications.labels(head.channel, outcome).inc()
        if not result.ok:
            log.warning(
                "delivery %s",
                outcome,
                extra={
                    "channel": head.channel,
                    "outbox": head.id,
                    "error": result.error,
                    "rows": len(rows),
                },
            )
        not_before = (
            now + timedelta(seconds=delay)
            if state == OutboxState.PENDING and delay is not None
            else None
        )
        bundled = f" (bundle of {len(rows)})" if len(rows) > 1 else ""
        for r in rows:
            what = _WHAT.get(r.kind, r.kind)
            tried = f"{what} to {r.person} via {r.channel}"
            attempt = f"(attempt {r.attempts + 1}): {result.error}"
            data = {
                "outbox": r.id,
                "outcome": outcome,
                "attempt": r.attempts + 1,
                "provider_id": result.provider_id,
            }
            if not _pending(stored.get(r.id)) and state in (
                OutboxState.PENDING,
                OutboxState.FAILED,
            ):
                # Cancelled while the attempt was in flight (an ack): a failed attempt is
                # noted, but neither retried nor fallen back, and the row stays cancelled.
                ch.timeline.append(
                    TimelineEvent(
                        r.incident_id,
                        now,
                        "delivery",
                        "tocsin",
                        r.channel,
                        f"{tried} failed {attempt} {_MOOT}",
                        {**data, "outcome": "failed"},
                    )
                )
                continue
            # What went out (or may have) is recorded as such even if cancelled meanwhile.
            ch.deliveries.append(
                DeliveryOutcome(
                    r.id,
                    state,
                    r.attempts + 1,
                    result.error,
                    result.provider_id,
                    sent_at=now if result.ok else None,
                    not_before=not_before,
                )
            )
            if result.ok:
                msg = f"{what} delivered to {r.person} via {r.channel}{bundled}"
            else:
                msg = f"{tried} {outcome} {attempt}"
            ch.timeline.append(
                TimelineEvent(r.incident_id, now, "delivery", "tocsin", r.channel, msg, data)
            )
            # The incident as it is now: no fallback once someone has acknowledged.
            r_inc = current.get(r.incident_id)
            if (
                state == OutboxState.FAILED
                and r_inc is not None
                and r.kind == "page"
                and r_inc.status == Status.TRIGGERED
            ):
                nxt = fallback_row(r, self.directory().people.get(r.person), now)
                if nxt is not None:
                    ch.new_outbox.append(nxt)
                    ch.timeline.append(
                        TimelineEvent(
                            r.incident_id,
                            now,
                            "fallback",
                            "tocsin",
                            "engine",
                            f"{r.channel} to {r.person} failed; falling back to {nxt.channel}",
                            {"outbox": r.id, "next": nxt.id},
                        )
                    )

    def _falls_back(self, row: OutboxRecord, inc: IncidentRecord, now: datetime) -> bool:
        """Would failing ``row`` now write a fallback row (see ``_record``)?"""
        return (
            row.kind == "page"
            and inc.status == Status.TRIGGERED
            and fallback_row(row, self.directory().people.get(row.person), now) is not None
        )


def _pending(row: OutboxRecord | None) -> bool:
    return row is not None and row.state == OutboxState.PENDING
