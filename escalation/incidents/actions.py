"""People acting on an incident: acknowledge, mitigate, resolve, escalate, note, reopen.

``decide_action`` is pure: it checks the transition is legal and returns the Changes that
cancel whatever the action makes moot (pending steps, unsent pages) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from escalation.incidents.directory import Directory
from escalation.incidents.ingest import resolve_notices
from escalation.incidents.model import (
    CancelOutbox,
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
    TimelineEvent,
)
from escalation.incidents.policy import plan_steps, step_id

__all__ = ["Action", "IllegalTransition", "decide_action"]


class Action(StrEnum):
    ACK = "ack"
    MITIGATE = "mitigate"
    RESOLVE = "resolve"
    ESCALATE = "escalate"
    NOTE = "notes"
    REOPEN = "reopen"


class IllegalTransition(Exception):
    """The action does not apply to the incident's current status (HTTP 409)."""


_ALLOWED: dict[Action, tuple[Status, ...]] = {
    Action.ACK: (Status.TRIGGERED,),
    Action.MITIGATE: (Status.TRIGGERED, Status.ACKNOWLEDGED),
    Action.RESOLVE: (Status.TRIGGERED, Status.ACKNOWLEDGED, Status.MITIGATED),
    Action.ESCALATE: (Status.TRIGGERED, Status.ACKNOWLEDGED, Status.MITIGATED),
    Action.NOTE: tuple(Status),
    Action.REOPEN: (Status.ACKNOWLEDGED, Status.MITIGATED, Status.RESOLVED),
}

# Which pending steps each new status makes moot (by their `unless`).
_MOOT: dict[Status, tuple[str | None, ...] | None] = {
    Status.ACKNOWLEDGED: ("acknowledged",),
    Status.MITIGATED: ("acknowledged", "mitigated"),
    Status.RESOLVED: None,
}


def decide_action(
    inc: IncidentRecord,
    action: Action,
    *,
    now: datetime,
    actor: str,
    source: str,
    note: str = "",
    pending: Sequence[StepRecord] = (),
    paged: Sequence[OutboxRecord] = (),
    directory: Directory | None = None,
) -> tuple[Changes, IncidentRecord]:
    """Changes for ``action`` by ``actor``; raises IllegalTransition when it does not apply."""
    if inc.status not in _ALLOWED[action]:
        raise IllegalTransition(
            f"cannot {action.value} incident {inc.id}: it is {inc.status.value}"
        )
    ch = Changes()
    new = inc
    suffix = f": {note}" if note else ""
    if action == Action.ACK:
        new = replace(inc, status=Status.ACKNOWLEDGED, acknowledged_at=now)
        _moot(ch, inc, Status.ACKNOWLEDGED)
        ch.timeline.append(
            TimelineEvent(
                inc.id, now, EventKind.ACK, actor, source, f"acknowledged by {actor}{suffix}"
            )
        )
        if source != "pagerduty":
            ch.new_outbox.extend(_pagerduty_acks(inc, paged, now))
        timeout = inc.policy.get("ack_timeout")
        if timeout:
            ch.new_steps.append(
                StepRecord(
                    id=step_id(inc.id, inc.epoch, StepKind.ACK_TIMEOUT, int(now.timestamp()), 0),
                    incident_id=inc.id,
                    kind=StepKind.ACK_TIMEOUT,
                    epoch=inc.epoch,
                    round=0,
                    tier=0,
                    due_at=now + timedelta(seconds=float(timeout)),
                    unless="mitigated",
                )
            )
    elif action == Action.MITIGATE:
        new = replace(
            inc,
            status=Status.MITIGATED,
            mitigated_at=now,
            acknowledged_at=inc.acknowledged_at or now,
        )
        _moot(ch, inc, Status.MITIGATED)
        ch.timeline.append(
            TimelineEvent(
                inc.id, now, EventKind.MITIGATE, actor, source, f"mitigated by {actor}{suffix}"
            )
        )
    elif action == Action.RESOLVE:
        new = replace(
            inc,
            status=Status.RESOLVED,
            resolved_at=now,
            acknowledged_at=inc.acknowledged_at or now,
        )
        _moot(ch, inc, Status.RESOLVED)
        ch.timeline.append(
            TimelineEvent(
                inc.id, now, EventKind.RESOLVE, actor, source, f"resolved by {actor}{suffix}"
            )
        )
        ch.new_outbox.extend(resolve_notices(new, paged, now))
    elif action == Action.ESCALATE:
        # The next tier not yet due: a tier already brought forward (or due anyway) is about to
        # fire, so escalating again goes one further.
        nxt = next(
            (
                s
                for s in sorted(pending, key=lambda s: (s.due_at, s.round, s.tier))
                if s.kind == StepKind.PAGE and s.state == StepState.PENDING and s.due_at > now
            ),
            None,
        )
        if nxt is None:
            raise IllegalTransition(f"incident {inc.id} has no further tier to escalate to")
        if inc.status != Status.TRIGGERED:
            new = replace(inc, status=Status.TRIGGERED)
        ch.step_reschedules.append(StepReschedule(nxt.id, now, f"escalated now by {actor}"))
        ch.timeline.append(
            TimelineEvent(
                inc.id,
                now,
                EventKind.ESCALATE,
                actor,
                source,
                f"escalated to tier {nxt.tier} now by {actor}{suffix}",
                {"tier": nxt.tier},
            )
        )
    elif action == Action.NOTE:
        ch.timeline.append(
            TimelineEvent(inc.id, now, EventKind.NOTE, actor, source, note or "(empty note)")
        )
        return ch, inc
    elif action == Action.REOPEN:
        new = replace(
            inc,
            status=Status.TRIGGERED,
            epoch=inc.epoch + 1,
            acknowledged_at=None,
            mitigated_at=None,
            resolved_at=None,
        )
        ch.cancel_steps_of.append(CancelSteps(inc.id, None, "superseded: reopened"))
        ch.timeline.append(
            TimelineEvent(
                inc.id,
                now,
                EventKind.REOPEN,
                actor,
                source,
                f"back to triggered by {actor}{suffix}",
            )
        )
        if directory is not None:
            ch.new_steps.extend(plan_steps(new.id, new.epoch, new.policy, now, directory.calendars))
    new = replace(new, updated_at=now)
    ch.updated_incidents.append(new)
    return ch, new


def _pagerduty_acks(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """Tell PagerDuty about an ack made elsewhere, once per PagerDuty alert tocsin triggered."""
    out: dict[str, OutboxRecord] = {}
    for row in paged:
        if (
            row.channel != "pagerduty"
            or row.kind != OutboxKind.PAGE
            or row.state not in (OutboxState.SENT, OutboxState.UNKNOWN)
        ):
            continue
        out.setdefault(
            row.person,
            OutboxRecord(
                id=f"{inc.id}:acknowledge:{inc.epoch}:{row.person}:pagerduty",
                incident_id=inc.id,
                step_id=None,
                kind=OutboxKind.ACKNOWLEDGE,
                tier=row.tier,
                round=row.round,
                target=row.target,
                person=row.person,
                channel="pagerduty",
                created_at=now,
                not_before=now,
            ),
        )
    return list(out.values())


def _moot(ch: Changes, inc: IncidentRecord, status: Status) -> None:
    ch.cancel_steps_of.append(CancelSteps(inc.id, _MOOT[status], f"{status.value}"))
    kinds = (
        (OutboxKind.PAGE, OutboxKind.REMINDER) if status == Status.RESOLVED else (OutboxKind.PAGE,)
    )
    ch.cancel_outbox_of.append(CancelOutbox(inc.id, kinds))
