"""People acting on an incident: acknowledge, mitigate, resolve, escalate, note, reopen.

``decide_action`` is pure: it checks the transition is legal and returns the Changes that
cancel whatever the action makes moot (pending steps, unsent pages) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from escalation.incidents.directory import Directory
from escalation.incidents.model import (
    Changes,
    EventKind,
    IncidentRecord,
    OutboxRecord,
    Status,
    StepKind,
    StepRecord,
    StepReschedule,
    StepState,
    TimelineEvent,
)
from escalation.incidents.notices import pagerduty_acks, resolve_notices
from escalation.incidents.policy import PolicySnapshot, plan_steps, step_id

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


@dataclass(frozen=True)
class _Act:
    """One action by one person: what it reads and the change set it writes."""

    inc: IncidentRecord
    now: datetime
    actor: str
    source: str
    note: str
    pending: Sequence[StepRecord]
    paged: Sequence[OutboxRecord]
    directory: Directory | None
    ch: Changes = field(default_factory=Changes)

    @property
    def suffix(self) -> str:
        return f": {self.note}" if self.note else ""

    def event(self, kind: EventKind, message: str, data: dict[str, Any] | None = None) -> None:
        self.ch.timeline.append(
            TimelineEvent(self.inc.id, self.now, kind, self.actor, self.source, message, data or {})
        )


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
    a = _Act(inc, now, actor, source, note, pending, paged, directory)
    if action == Action.NOTE:
        # A note changes nothing about the incident itself: only its timeline grows.
        a.event(EventKind.NOTE, note or "(empty note)")
        return a.ch, inc
    new = replace(_DECIDE[action](a), updated_at=now)
    a.ch.updated_incidents.append(new)
    return a.ch, new


def _ack(a: _Act) -> IncidentRecord:
    inc = a.inc
    a.ch.cancel_moot(inc.id, Status.ACKNOWLEDGED, Status.ACKNOWLEDGED.value)
    a.event(EventKind.ACK, f"acknowledged by {a.actor}{a.suffix}")
    if a.source != "pagerduty":
        a.ch.new_outbox.extend(pagerduty_acks(inc, a.paged, a.now))
    timeout = PolicySnapshot.of(inc.policy).ack_timeout
    if timeout:
        a.ch.new_steps.append(
            StepRecord(
                id=step_id(inc.id, inc.epoch, StepKind.ACK_TIMEOUT, int(a.now.timestamp()), 0),
                incident_id=inc.id,
                kind=StepKind.ACK_TIMEOUT,
                epoch=inc.epoch,
                round=0,
                tier=0,
                due_at=a.now + timeout,
                unless="mitigated",
            )
        )
    return replace(inc, status=Status.ACKNOWLEDGED, acknowledged_at=a.now)


def _mitigate(a: _Act) -> IncidentRecord:
    return replace(
        _settle(a, Status.MITIGATED, EventKind.MITIGATE, "mitigated"), mitigated_at=a.now
    )


def _resolve(a: _Act) -> IncidentRecord:
    new = replace(_settle(a, Status.RESOLVED, EventKind.RESOLVE, "resolved"), resolved_at=a.now)
    a.ch.new_outbox.extend(resolve_notices(new, a.paged, a.now))
    return new


def _settle(a: _Act, status: Status, kind: EventKind, verb: str) -> IncidentRecord:
    """Mitigate or resolve: someone is on it (an ack implied), and what that makes moot stops."""
    a.ch.cancel_moot(a.inc.id, status, status.value)
    a.event(kind, f"{verb} by {a.actor}{a.suffix}")
    return replace(a.inc, status=status, acknowledged_at=a.inc.acknowledged_at or a.now)


def _escalate(a: _Act) -> IncidentRecord:
    # The next tier not yet due: a tier already brought forward (or due anyway) is about to
    # fire, so escalating again goes one further.
    nxt = next(
        (
            s
            for s in sorted(a.pending, key=lambda s: (s.due_at, s.round, s.tier))
            if s.kind == StepKind.PAGE and s.state == StepState.PENDING and s.due_at > a.now
        ),
        None,
    )
    if nxt is None:
        raise IllegalTransition(f"incident {a.inc.id} has no further tier to escalate to")
    a.ch.step_reschedules.append(StepReschedule(nxt.id, a.now, f"escalated now by {a.actor}"))
    a.event(
        EventKind.ESCALATE,
        f"escalated to tier {nxt.tier} now by {a.actor}{a.suffix}",
        {"tier": nxt.tier},
    )
    return a.inc if a.inc.status == Status.TRIGGERED else replace(a.inc, status=Status.TRIGGERED)


def _reopen(a: _Act) -> IncidentRecord:
    new = a.inc.reopened()
    a.ch.supersede_steps(a.inc.id, "superseded: reopened")
    a.event(EventKind.REOPEN, f"back to triggered by {a.actor}{a.suffix}")
    if a.directory is not None:
        a.ch.new_steps.extend(
            plan_steps(new.id, new.epoch, new.policy, a.now, a.directory.calendars)
        )
    return new


_DECIDE: dict[Action, Callable[[_Act], IncidentRecord]] = {
    Action.ACK: _ack,
    Action.MITIGATE: _mitigate,
    Action.RESOLVE: _resolve,
    Action.ESCALATE: _escalate,
    Action.REOPEN: _reopen,
}
