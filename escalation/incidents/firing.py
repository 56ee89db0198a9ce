"""Firing one due step: the pure decision of what a step does to its incident right now.

A due step re-checks its ``unless`` against the incident as it is now, resolves its targets to
people at that instant, and returns the outbox rows and timeline events as one change set; the
engine applies it in the transaction that marks the step fired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from escalation.incidents.directory import Directory, Recipient
from escalation.incidents.model import (
    Changes,
    EventKind,
    IncidentRecord,
    OutboxKind,
    OutboxRecord,
    OutboxState,
    Status,
    StepKind,
    StepRecord,
    StepReschedule,
    StepState,
    StepUpdate,
    TimelineEvent,
    status_reached,
)
from escalation.incidents.policy import (
    PAGERDUTY_REOPENED,
    PolicySnapshot,
    plan_reminder,
    plan_steps,
)
from escalation.incidents.steps import Step
from escalation.oncall.calendars import active_maintenance
from escalation.oncall.targets import INCIDENT_ROOM

__all__ = ["LATE_AFTER", "decide_step"]

LATE_AFTER = timedelta(seconds=1)  # later than this is written into the timeline as "late"

# A page already sent to (person, channel) in this round of the escalation run.
_Paged = set[tuple[str, str, int]]


def _paged_since_ack(inc: IncidentRecord, rows: Sequence[OutboxRecord]) -> _Paged:
    # A run of the escalation restarts after an acknowledgement (a later page is a new call
    # for help) and after a resolve (a reopened incident pages its responders again; they were
    # told it was over). A severity raise continues the run: nobody is paged twice for it.
    marks = [r.created_at for r in rows if r.kind == OutboxKind.RESOLVE]
    if inc.acknowledged_at is not None:
        marks.append(inc.acknowledged_at)
    since = max(marks) if marks else None
    return {
        (r.person, r.channel, r.round)
        for r in rows
        if r.kind == OutboxKind.PAGE
        and r.state != OutboxState.CANCELLED
        and (since is None or r.created_at >= since)
    }


@dataclass
class _Firing:
    """One due step being fired: what it reads and the change set it writes."""

    step: StepRecord
    inc: IncidentRecord
    rows: Sequence[OutboxRecord]
    d: Directory
    now: datetime
    late_note: str
    ch: Changes = field(default_factory=Changes)

    def event(self, kind: EventKind, message: str, data: dict[str, Any]) -> None:
        self.ch.timeline.append(
            TimelineEvent(self.inc.id, self.now, kind, "tocsin", "engine", message, data)
        )

    def done(self, state: StepState, note: str) -> Changes:
        """The step reaches ``state`` now (fired or skipped)."""
        self.ch.step_updates.append(StepUpdate(self.step.id, state, self.now, note))
        return self.ch

    def move(self, when: datetime, note: str) -> Changes:
        """The step stays pending, due again at ``when``."""
        self.ch.step_reschedules.append(StepReschedule(self.step.id, when, note))
        return self.ch

    def row(
        self, target: str, person: str, channel: str, kind: OutboxKind, not_before: datetime
    ) -> OutboxRecord:
        """A notification for ``person`` over ``channel``, keyed by step, person and channel."""
        return OutboxRecord(
            id=f"{self.step.id}:{person}:{channel}",
            incident_id=self.inc.id,
            step_id=self.step.id,
            kind=kind,
            tier=self.step.tier,
            round=self.step.round,
            target=target,
            person=person,
            channel=channel,
            created_at=self.now,
            not_before=not_before,
        )


def _cancelled(ch: Changes, step: StepRecord, note: str) -> Changes:
    ch.step_updates.append(StepUpdate(step.id, StepState.CANCELLED, None, note))
    return ch


def decide_step(
    step: StepRecord,
    inc: IncidentRecord | None,
    rows: Sequence[OutboxRecord],
    d: Directory,
    now: datetime,
) -> Changes:
    """What firing ``step`` at ``now`` writes."""
    if inc is None:
        return _cancelled(Changes(), step, "incident not found")
    if step.epoch != inc.epoch:
        return _cancelled(Changes(), step, "superseded")
    if inc.status == Status.RESOLVED or (step.unless and status_reached(inc.status, step.unless)):
        return _cancelled(Changes(), step, f"incident {inc.status.value}")
    late = now - step.due_at
    f = _Firing(
        step, inc, rows, d, now, f"late by {late.total_seconds():.1f}s" if late > LATE_AFTER else ""
    )
    if f.late_note:
        f.event(
            EventKind.LATE,
            f"{step.kind} step (tier {step.tier}, round {step.round}) fired {f.late_note}",
            {"due": step.due_at.isoformat(), "late_seconds": late.total_seconds()},
        )
    if step.kind == StepKind.REMINDER:
        return _reminder(f)
    if step.kind == StepKind.ACK_TIMEOUT:
        return _ack_timeout(f)
    return _page(f)


def _page(f: _Firing) -> Changes:
    steps = PolicySnapshot.of(f.inc.policy).steps
    if f.step.tier >= len(steps):
        return f.done(StepState.SKIPPED, "no such tier in the policy snapshot")
    spec = steps[f.step.tier]
    label = f"tier {f.step.tier}" + (f" ({spec.name})" if spec.name else "")
    waiting = _outside_calendar(f, spec, label) or _in_maintenance(f, label)
    if waiting is not None:
        return waiting
    already = _paged_since_ack(f.inc, f.rows)
    created = 0
    for ref in spec.notify:
        recipients, problems = f.d.resolve(ref, f.now)
        for p in problems:
            f.event(EventKind.SKIP, f"{label}: {p}", {"tier": f.step.tier})
        for r in recipients:
            for channel in f.d.channels_for(r, spec.via):
                created += _page_one(f, label, r, channel, already)
    rooms = f.d.incident_rooms
    if created and rooms and f.inc.level.get("incident_channel"):
        # The incident's own channel hears of every tier (and invites whom it paged), so it is
        # told per step, never skipped as "already paged" like a person.
        room = Recipient(f"{rooms}:{INCIDENT_ROOM}", "incident channel", True, rooms)
        created += _page_one(f, label, room, rooms, set())
    return f.done(StepState.FIRED, f.late_note or f"{created} notification(s)")


def _outside_calendar(f: _Firing, spec: Step, label: str) -> Changes | None:
    """A step that only runs ``during`` a calendar waits for its next opening."""
    cal = f.d.calendars.get(spec.during) if spec.during else None
    if cal is None or cal.contains(f.now):
        return None
    when = cal.next_open(f.now)
    f.event(
        EventKind.DEFERRED,
        f"{label} deferred until {when.isoformat()} ({spec.during})",
        {"tier": f.step.tier, "until": when.isoformat()},
    )
    return f.move(when, f"deferred until {spec.during} opens")


def _in_maintenance(f: _Firing, label: str) -> Changes | None:
    """A maintenance window covering the incident drops the step or holds it to the end."""
    window = active_maintenance(f.d.maintenance, f.now, f.inc.labels)
    if window is None:
        return None
    if window.action == "drop":
        f.event(
            EventKind.SKIP,
            f"{label} dropped: maintenance window {window.name!r}",
            {"tier": f.step.tier},
        )
        return f.done(StepState.SKIPPED, f"maintenance {window.name}")
    until = window.ends_at(f.now) or f.now + timedelta(minutes=5)
    f.event(
        EventKind.HELD,
        f"{label} held until {until.isoformat()}: maintenance window {window.name!r}",
        {"tier": f.step.tier, "until": until.isoformat()},
    )
    return f.move(until, f"held by maintenance {window.name}")


def _page_one(f: _Firing, label: str, r: Recipient, channel: str, already: _Paged) -> int:
    """Page one person over one channel unless this run already did; 1 if a row was written."""
    if channel == "pagerduty" and _reopened_in_pagerduty(f, r.person):
        f.event(
            EventKind.SKIP,
            f"{label}: {r.person} already open in PagerDuty (reopened there)",
            {"tier": f.step.tier, "person": r.person, "channel": channel},
        )
        return 0
    if (r.person, channel, f.step.round) in already:
        f.event(
            EventKind.SKIP,
            f"{label}: {r.person} already paged via {channel}",
            {"tier": f.step.tier, "person": r.person, "channel": channel},
        )
        return 0
    already.add((r.person, channel, f.step.round))
    not_before = _quiet_until(f.d, r.person, f.inc, f.now)
    row = f.row(r.target, r.person, channel, OutboxKind.PAGE, not_before)
    f.ch.new_outbox.append(row)
    held = f", held for quiet hours until {not_before.isoformat()}" if not_before > f.now else ""
    f.event(
        EventKind.NOTIFY,
        f"{label}: page {r.person} via {channel} ({r.target}){held}",
        {
            "tier": f.step.tier,
            "round": f.step.round,
            "target": r.target,
            "person": r.person,
            "channel": channel,
            "outbox": row.id,
        },
    )
    return 1


def _reopened_in_pagerduty(f: _Firing, person: str) -> bool:
    """A run PagerDuty reopened, for a PagerDuty service tocsin triggered before."""
    return f.step.id.endswith(PAGERDUTY_REOPENED) and any(
        r.channel == "pagerduty"
        and r.person == person
        and r.kind == OutboxKind.PAGE
        and r.state in (OutboxState.SENT, OutboxState.UNKNOWN)
        for r in f.rows
    )


def _quiet_until(d: Directory, person: str, inc: IncidentRecord, now: datetime) -> datetime:
    p = d.people.get(person)
    if p is None or p.quiet_hours is None or inc.severity_info.rank == 0:
        return now  # P0 bypasses quiet hours
    if p.quiet_hours.contains(now):
        return p.quiet_hours.next_close(now) or now
    return now


def _reminder(f: _Firing) -> Changes:
    inc, now = f.inc, f.now
    during = inc.level.get("update_during")
    cal = f.d.calendars.get(during) if during else None
    if cal is not None and not cal.contains(now):
        return f.move(cal.next_open(now), f"deferred until {during} opens")
    responders: dict[tuple[str, str], OutboxRecord] = {}
    for r in f.rows:
        # PagerDuty runs its own reminders; a repeated trigger there would be folded or reopen.
        if r.channel == "pagerduty":
            continue
        if r.kind == OutboxKind.PAGE and r.state in (
            OutboxState.SENT,
            OutboxState.UNKNOWN,
            OutboxState.PENDING,
        ):
            responders.setdefault((r.person, r.channel), r)
    for (person, channel), r in responders.items():
        f.ch.new_outbox.append(f.row(r.target, person, channel, OutboxKind.REMINDER, now))
    who = ", ".join(sorted({p for p, _ in responders})) or "nobody paged yet"
    f.event(
        EventKind.REMINDER,
        f"status update #{f.step.round} due ({inc.severity_name}): reminded {who}",
        {"round": f.step.round},
    )
    nxt = plan_reminder(inc.id, inc.epoch, inc.level, inc.opened_at, f.step.round + 1)
    if nxt is not None:
        if nxt.due_at <= now:
            # This reminder fired late (deferred to a calendar opening, or after a restart): its
            # regular successors are already past. The next update is one cadence from now,
            # not a burst of every missed slot at once.
            nxt = replace(nxt, due_at=now + timedelta(seconds=float(inc.level["update_every"])))
        f.ch.new_steps.append(nxt)
    return f.done(StepState.FIRED, f.late_note)


def _next_reminder(inc: IncidentRecord, now: datetime) -> StepRecord | None:
    """The first status-update slot after ``now`` on the cadence counted from the open."""
    every = inc.level.get("update_every")
    if not every:
        return None
    first = inc.level.get("first_update") or every
    elapsed = (now - inc.opened_at).total_seconds() - float(first)
    n = 1 if elapsed < 0 else int(elapsed // float(every)) + 2
    return plan_reminder(inc.id, inc.epoch, inc.level, inc.opened_at, n)


def _ack_timeout(f: _Firing) -> Changes:
    inc, now, ch = f.inc, f.now, f.ch
    if inc.status != Status.ACKNOWLEDGED:
        return _cancelled(ch, f.step, f"incident {inc.status.value}")
    new = replace(inc, status=Status.TRIGGERED, epoch=inc.epoch + 1, updated_at=now)
    ch.updated_incidents.append(new)
    ch.supersede_steps(inc.id, "superseded: ack timeout")
    ch.new_steps.extend(plan_steps(new.id, new.epoch, new.policy, now, f.d.calendars))
    if PolicySnapshot.of(new.policy).reminders:
        # The pending reminder belonged to the superseded run: status updates go on at the
        # next slot of the incident's cadence.
        reminder = _next_reminder(new, now)
        if reminder is not None:
            ch.new_steps.append(reminder)
    f.event(
        EventKind.ACK_TIMEOUT,
        "acknowledged but neither mitigated nor resolved in time: escalating again",
        {},
    )
    return f.done(StepState.FIRED, f.late_note)
