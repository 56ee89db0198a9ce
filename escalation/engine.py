"""The escalation engine: fires due steps and delivers the outbox, driven by a Clock.

It sleeps until the earliest due time the store reports (no sweeps over all incidents) and is
woken early when something earlier is scheduled. A due step re-checks its ``unless`` against the
incident as it is now, resolves its targets to people at that instant, and writes the outbox rows
in the same transaction that marks it fired. ``decide_step`` is the pure part.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from escalation.calendars import active_maintenance
from escalation.clock import Clock
from escalation.directory import Directory
from escalation.dispatch import DeliveryPolicy, OutboxDispatcher
from escalation.metrics import EscalationMetrics
from escalation.model import (
    Changes,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
    StepRecord,
    StepState,
    TimelineEvent,
    status_reached,
)
from escalation.notifier import Notifier
from escalation.policy import plan_reminder, plan_steps, snapshot_steps
from escalation.store.base import Conflict, Store, StoreError

__all__ = ["Engine", "decide_step"]

log = logging.getLogger("tocsin.engine")

LATE_AFTER = timedelta(seconds=1)  # later than this is written into the timeline as "late"


def _paged_since_ack(
    inc: IncidentRecord, rows: Sequence[OutboxRecord]
) -> set[tuple[str, str, int]]:
    # A run of the escalation restarts after an acknowledgement (a later page is a new call
    # for help) and after a resolve (a reopened incident pages its responders again; they were
    # told it was over). A severity raise continues the run: nobody is paged twice for it.
    marks = [r.created_at for r in rows if r.kind == "resolve"]
    if inc.acknowledged_at is not None:
        marks.append(inc.acknowledged_at)
    since = max(marks) if marks else None
    return {
        (r.person, r.channel, r.round)
        for r in rows
        if r.kind == "page"
        and r.state != OutboxState.CANCELLED
        and (since is None or r.created_at >= since)
    }


def decide_step(
    step: StepRecord,
    inc: IncidentRecord | None,
    rows: Sequence[OutboxRecord],
    d: Directory,
    now: datetime,
) -> Changes:
    """What firing ``step`` at ``now`` writes."""
    ch = Changes()
    if inc is None:
        ch.step_updates.append((step.id, StepState.CANCELLED, None, "incident not found"))
        return ch
    if step.epoch != inc.epoch:
        ch.step_updates.append((step.id, StepState.CANCELLED, None, "superseded"))
        return ch
    if inc.status == Status.RESOLVED or (step.unless and status_reached(inc.status, step.unless)):
        ch.step_updates.append((step.id, StepState.CANCELLED, None, f"incident {inc.status.value}"))
        return ch
    late = now - step.due_at
    late_note = f"late by {late.total_seconds():.1f}s" if late > LATE_AFTER else ""
    if late_note:
        ch.timeline.append(
            TimelineEvent(
                inc.id,
                now,
                "late",
                "tocsin",
                "engine",
                f"{step.kind} step (tier {step.tier}, round {step.round}) fired {late_note}",
                {"due": step.due_at.isoformat(), "late_seconds": late.total_seconds()},
            )
        )
    if step.kind == "reminder":
        return _reminder(step, inc, rows, d, now, ch, late_note)
    if step.kind == "ack_timeout":
        return _ack_timeout(step, inc, d, now, ch, late_note)
    return _page(step, inc, rows, d, now, ch, late_note)


def _page(
    step: StepRecord,
    inc: IncidentRecord,
    rows: Sequence[OutboxRecord],
    d: Directory,
    now: datetime,
    ch: Changes,
    late_note: str,
) -> Changes:
    steps = snapshot_steps(inc.policy)
    if step.tier >= len(steps):
        ch.step_updates.append(
            (step.id, StepState.SKIPPED, now, "no such tier in the policy snapshot")
        )
        return ch
    spec = steps[step.tier]
    label = f"tier {step.tier}" + (f" ({spec.name})" if spec.name else "")
    if spec.during:
        cal = d.calendars.get(spec.during)
        if cal is not None and not cal.contains(now):
            when = cal.next_open(now)
            ch.step_reschedules.append((step.id, when, f"deferred until {spec.during} opens"))
            ch.timeline.append(
                TimelineEvent(
                    inc.id,
                    now,
                    "deferred",
                    "tocsin",
                    "engine",
                    f"{label} deferred until {when.isoformat()} ({spec.during})",
                    {"tier": step.tier, "until": when.isoformat()},
                )
            )
            return ch
    window = active_maintenance(d.maintenance, now, inc.labels)
    if window is not None:
        if window.action == "drop":
            ch.step_updates.append((step.id, StepState.SKIPPED, now, f"maintenance {window.name}"))
            ch.timeline.append(
                TimelineEvent(
                    inc.id,
                    now,
                    "skip",
                    "tocsin",
                    "engine",
                    f"{label} dropped: maintenance window {window.name!r}",
                    {"tier": step.tier},
                )
            )
            return ch
        until = window.ends_at(now) or now + timedelta(minutes=5)
        ch.step_reschedules.append((step.id, until, f"held by maintenance {window.name}"))
        ch.timeline.append(
            TimelineEvent(
                inc.id,
                now,
                "held",
                "tocsin",
                "engine",
                f"{label} held until {until.isoformat()}: maintenance window {window.name!r}",
                {"tier": step.tier, "until": until.isoformat()},
            )
        )
        return ch
    already = _paged_since_ack(inc, rows)
    created = 0
    for ref in spec.notify:
        recipients, problems = d.resolve(ref, now)
        for p in problems:
            ch.timeline.append(
                TimelineEvent(
                    inc.id, now, "skip", "tocsin", "engine", f"{label}: {p}", {"tier": step.tier}
                )
            )
        for r in recipients:
            for channel in d.channels_for(r.person, spec.via):
                if (r.person, channel, step.round) in already:
                    ch.timeline.append(
                        TimelineEvent(
                            inc.id,
                            now,
                            "skip",
                            "tocsin",
                            "engine",
                            f"{label}: {r.person} already paged via {channel}",
                            {"tier": step.tier, "person": r.person, "channel": channel},
                        )
                    )
                    continue
                already.add((r.person, channel, step.round))
                not_before = _quiet_until(d, r.person, inc, now)
                row = _row(step, inc, r.target, r.person, channel, "page", now, not_before)
                ch.new_outbox.append(row)
                created += 1
                held = (
                    f", held for quiet hours until {not_before.isoformat()}"
                    if not_before > now
                    else ""
                )
                ch.timeline.append(
                    TimelineEvent(
                        inc.id,
                        now,
                        "notify",
                        "tocsin",
                        "engine",
                        f"{label}: page {r.person} via {channel} ({r.target}){held}",
                        {
                            "tier": step.tier,
                            "round": step.round,
                            "target": r.target,
                            "person": r.person,
                            "channel": channel,
                            "outbox": row.id,
                        },
                    )
                )
    ch.step_updates.append(
        (step.id, StepState.FIRED, now, late_note or f"{created} notification(s)")
    )
    return ch


def _quiet_until(d: Directory, person: str, inc: IncidentRecord, now: datetime) -> datetime:
    p = d.people.get(person)
    if p is None or p.quiet_hours is None or inc.severity == "P0":
        return now  # P0 bypasses quiet hours
    if p.quiet_hours.contains(now):
        return p.quiet_hours.next_close(now) or now
    return now


def _row(
    step: StepRecord,
    inc: IncidentRecord,
    target: str,
    person: str,
    channel: str,
    kind: str,
    now: datetime,
    not_before: datetime,
) -> OutboxRecord:
    return OutboxRecord(
        id=f"{step.id}:{person}:{channel}",
        incident_id=inc.id,
        step_id=step.id,
        kind=kind,
        tier=step.tier,
        round=step.round,
        target=target,
        person=person,
        channel=channel,
        created_at=now,
        not_before=not_before,
    )


def _reminder(
    step: StepRecord,
    inc: IncidentRecord,
    rows: Sequence[OutboxRecord],
    d: Directory,
    now: datetime,
    ch: Changes,
    late_note: str,
) -> Changes:
    during = inc.level.get("update_during")
    cal = d.calendars.get(during) if during else None
    if cal is not None and not cal.contains(now):
        ch.step_reschedules.append((step.id, cal.next_open(now), f"deferred until {during} opens"))
        return ch
    responders: dict[tuple[str, str], OutboxRecord] = {}
    for r in rows:
        # PagerDuty runs its own reminders; a repeated trigger there would be folded or reopen.
        if r.channel == "pagerduty":
            continue
        if r.kind == "page" and r.state in (
            OutboxState.SENT,
            OutboxState.UNKNOWN,
            OutboxState.PENDING,
        ):
            responders.setdefault((r.person, r.channel), r)
    for (person, channel), r in responders.items():
        ch.new_outbox.append(_row(step, inc, r.target, person, channel, "reminder", now, now))
    who = ", ".join(sorted({p for p, _ in responders})) or "nobody paged yet"
    ch.timeline.append(
        TimelineEvent(
            inc.id,
            now,
            "reminder",
            "tocsin",
            "engine",
            f"status update #{step.round} due ({inc.level.get('name', inc.severity)}): "
            f"reminded {who}",
            {"round": step.round},
        )
    )
    nxt = plan_reminder(inc.id, inc.epoch, inc.level, inc.opened_at, step.round + 1)
    if nxt is not None:
        if nxt.due_at <= now:
            # This reminder fired late (deferred to a calendar opening, or after a restart): its
            # regular successors are already past. The next update is one cadence from now,
            # not a burst of every missed slot at once.
            nxt = replace(nxt, due_at=now + timedelta(seconds=float(inc.level["update_every"])))
        ch.new_steps.append(nxt)
    ch.step_updates.append((step.id, StepState.FIRED, now, late_note))
    return ch


def _next_reminder(inc: IncidentRecord, now: datetime) -> StepRecord | None:
    """The first status-update slot after ``now`` on the cadence counted from the open."""
    every = inc.level.get("update_every")
    if not every:
        return None
    first = inc.level.get("first_update") or every
    elapsed = (now - inc.opened_at).total_seconds() - float(first)
    n = 1 if elapsed < 0 else int(elapsed // float(every)) + 2
    return plan_reminder(inc.id, inc.epoch, inc.level, inc.opened_at, n)


def _ack_timeout(
    step: StepRecord, inc: IncidentRecord, d: Directory, now: datetime, ch: Changes, late_note: str
) -> Changes:
    if inc.status != Status.ACKNOWLEDGED:
        ch.step_updates.append((step.id, StepState.CANCELLED, None, f"incident {inc.status.value}"))
        return ch
    new = replace(inc, status=Status.TRIGGERED, epoch=inc.epoch + 1, updated_at=now)
    ch.updated_incidents.append(new)
    ch.cancel_steps_of.append((inc.id, None, "superseded: ack timeout"))
    ch.new_steps.extend(plan_steps(new.id, new.epoch, new.policy, now, d.calendars))
    if new.policy.get("reminders", True):
        # The pending reminder belonged to the superseded run: status updates go on at the
        # next slot of the incident's cadence.
        reminder = _next_reminder(new, now)
        if reminder is not None:
            ch.new_steps.append(reminder)
    ch.timeline.append(
        TimelineEvent(
            inc.id,
            now,
            "ack_timeout",
            "tocsin",
            "engine",
            "acknowledged but neither mitigated nor resolved in time: escalating again",
            {},
        )
    )
    ch.step_updates.append((step.id, StepState.FIRED, now, late_note))
    return ch


class Engine:
    """Fires due steps and delivers due outbox rows until stopped."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        directory: Callable[[], Directory],
        notifiers: Callable[[], Mapping[str, Notifier]],
        metrics: EscalationMetrics,
        *,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=30),
        batch: int = 200,
        poll: timedelta = timedelta(seconds=5),
        person_details: Callable[[str], dict[str, Any]] | None = None,
        links: Callable[[IncidentRecord, OutboxRecord], dict[str, str]] | None = None,
        policy: Callable[[], DeliveryPolicy] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.notifiers = notifiers
        self.metrics = metrics
        self.owner = owner or f"tocsin-{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.batch = batch
        self.poll = poll
        self.dispatcher = OutboxDispatcher(
            store, clock, notifiers, directory, metrics, policy, person_details, links
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self.on_change: Callable[[], None] | None = None

    def wake(self) -> None:
        """Something earlier may be due: re-read the next due time now."""
        self._wake.set()

    async def tick(self) -> datetime | None:
        """Fire everything due now, deliver everything due now; return the next due time."""
        now = self.clock.now()
        while True:
            claimed = await self._claim_and_fire(now)
            if claimed < self.batch:
                break
        while True:
            async with self.store.transaction() as tx:
                rows = await tx.claim_outbox(now, self.owner, now + self.lease, self.batch)
                prepared = await self.dispatcher.prepare(tx, rows) if rows else None
            if prepared is not None:
                await self.dispatcher.finish(prepared)
            if len(rows) < self.batch:
                break
        return await self.store.next_due()

    async def _claim_and_fire(self, now: datetime) -> int:
        """Claim due steps and fire them in the same transaction (one commit per batch).

        A step whose apply conflicts (another writer moved its incident) is retried on its own
        after the commit; if the whole batch rolls back (a deadlock), nothing was claimed and
        the next tick tries again.
        """
        d = self.directory()
        fired: list[tuple[StepRecord, Changes, datetime]] = []
        retry: list[StepRecord] = []
        try:
            async with self.store.transaction() as tx:
                steps = await tx.claim_due_steps(now, self.owner, now + self.lease, self.batch)
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
                    ch = self._decide(step, inc, current, rows, self.directory(), now)
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
            self.on_change()

    async def run(self) -> None:
        """Loop until ``stop()``: tick, then sleep until the next due time or a wake-up."""
        failures = 0
        while not self._stopping:
            self._wake.clear()
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
            ceiling = self.clock.now() + self.poll
            await self._sleep(min(nxt, ceiling) if nxt else ceiling)

    async def _sleep(self, until: datetime) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep_until(until))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
