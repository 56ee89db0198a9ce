"""Firing one due step: the pure decision of what a step does to its incident right now.

A due step re-checks its ``unless`` against the incident as it is now, resolves its targets to
people at that instant, and returns the outbox rows and timeline events as one change set; the
engine applies it in the transaction that marks the step fired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from escalation.incidents.directory import Directory
from escalation.incidents.model import (
    CancelSteps,
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
from escalation.incidents.policy import plan_reminder, plan_steps, snapshot_steps
from escalation.oncall.calendars import active_maintenance

__all__ = ["LATE_AFTER", "decide_step"]

LATE_AFTER = timedelta(seconds=1)  # later than this is written into the timeline as "late"


def _paged_since_ack(
    inc: IncidentRecord, rows: Sequence[OutboxRecord]
) -> set[tuple[str, str, int]]:
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
        ch.step_updates.append(StepUpdate(step.id, StepState.CANCELLED, None, "incident not found"))
        return ch
    if step.epoch != inc.epoch:
        ch.step_updates.append(StepUpdate(step.id, StepState.CANCELLED, None, "superseded"))
        return ch
    if inc.status == Status.RESOLVED or (step.unless and status_reached(inc.status, step.unless)):
        ch.step_updates.append(
            StepUpdate(step.id, StepState.CANCELLED, None, f"incident {inc.status.value}")
        )
        return ch
    late = now - step.due_at
    late_note = f"late by {late.total_seconds():.1f}s" if late > LATE_AFTER else ""
    if late_note:
        ch.timeline.append(
            TimelineEvent(
                inc.id,
                now,
                EventKind.LATE,
                "tocsin",
                "engine",
                f"{step.kind} step (tier {step.tier}, round {step.round}) fired {late_note}",
                {"due": step.due_at.isoformat(), "late_seconds": late.total_seconds()},
            )
        )
    if step.kind == StepKind.REMINDER:
        return _reminder(step, inc, rows, d, now, ch, late_note)
    if step.kind == StepKind.ACK_TIMEOUT:
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
            StepUpdate(step.id, StepState.SKIPPED, now, "no such tier in the policy snapshot")
        )
        return ch
    spec = steps[step.tier]
    label = f"tier {step.tier}" + (f" ({spec.name})" if spec.name else "")
    if spec.during:
        cal = d.calendars.get(spec.during)
        if cal is not None and not cal.contains(now):
            when = cal.next_open(now)
            ch.step_reschedules.append(
                StepReschedule(step.id, when, f"deferred until {spec.during} opens")
            )
            ch.timeline.append(
                TimelineEvent(
                    inc.id,
                    now,
                    EventKind.DEFERRED,
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
            ch.step_updates.append(
                StepUpdate(step.id, StepState.SKIPPED, now, f"maintenance {window.name}")
            )
            ch.timeline.append(
                TimelineEvent(
                    inc.id,
                    now,
                    EventKind.SKIP,
                    "tocsin",
                    "engine",
                    f"{label} dropped: maintenance window {window.name!r}",
                    {"tier": step.tier},
                )
            )
            return ch
        until = window.ends_at(now) or now + timedelta(minutes=5)
        ch.step_reschedules.append(
            StepReschedule(step.id, until, f"held by maintenance {window.name}")
        )
        ch.timeline.append(
            TimelineEvent(
                inc.id,
                now,
                EventKind.HELD,
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
                    inc.id,
                    now,
                    EventKind.SKIP,
                    "tocsin",
                    "engine",
                    f"{label}: {p}",
                    {"tier": step.tier},
                )
            )
        for r in recipients:
            for channel in d.channels_for(r.person, spec.via):
                if (r.person, channel, step.round) in already:
                    ch.timeline.append(
                        TimelineEvent(
                            inc.id,
                            now,
                            EventKind.SKIP,
                            "tocsin",
                            "engine",
                            f"{label}: {r.person} already paged via {channel}",
                            {"tier": step.tier, "person": r.person, "channel": channel},
                        )
                    )
                    continue
                already.add((r.person, channel, step.round))
                not_before = _quiet_until(d, r.person, inc, now)
                row = _row(step, inc, r.target, r.person, channel, OutboxKind.PAGE, now, not_before)
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
                        EventKind.NOTIFY,
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
        StepUpdate(step.id, StepState.FIRED, now, late_note or f"{created} notification(s)")
    )
    return ch


def _quiet_until(d: Directory, person: str, inc: IncidentRecord, now: datetime) -> datetime:
    p = d.people.get(person)
    if p is None or p.quiet_hours is None or inc.severity_info.rank == 0:
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
    kind: OutboxKind,
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
        ch.step_reschedules.append(
            StepReschedule(step.id, cal.next_open(now), f"deferred until {during} opens")
        )
        return ch
    responders: dict[tuple[str, str], OutboxRecord] = {}
    for r in rows:
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
        ch.new_outbox.append(
            _row(step, inc, r.target, person, channel, OutboxKind.REMINDER, now, now)
        )
    who = ", ".join(sorted({p for p, _ in responders})) or "nobody paged yet"
    ch.timeline.append(
        TimelineEvent(
            inc.id,
            now,
            EventKind.REMINDER,
            "tocsin",
            "engine",
            f"status update #{step.round} due ({inc.severity_name}): reminded {who}",
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
    ch.step_updates.append(StepUpdate(step.id, StepState.FIRED, now, late_note))
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
        ch.step_updates.append(
            StepUpdate(step.id, StepState.CANCELLED, None, f"incident {inc.status.value}")
        )
        return ch
    new = replace(inc, status=Status.TRIGGERED, epoch=inc.epoch + 1, updated_at=now)
    ch.updated_incidents.append(new)
    ch.cancel_steps_of.append(CancelSteps(inc.id, None, "superseded: ack timeout"))
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
            EventKind.ACK_TIMEOUT,
            "tocsin",
            "engine",
            "acknowledged but neither mitigated nor resolved in time: escalating again",
            {},
        )
    )
    ch.step_updates.append(StepUpdate(step.id, StepState.FIRED, now, late_note))
    return ch
