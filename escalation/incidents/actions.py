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
from escalation.incidents.notices import (
    message_acks,
    message_updates,
    pagerduty_acks,
    resolve_notices,
    ringing_stops,
    room_archives,
)
from escalation.incidents.policy import PAGERDUTY_REOPENED, PolicySnapshot, plan_steps, step_id

__all__ = ["Action", "IllegalTransition", "applies", "decide_action"]


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


def applies(action: Action, status: Status) -> bool:
    """Whether ``action`` may be taken on an incident in ``status`` (else IllegalTransition)."""
    return status in _ALLOWED[action]


@dataclass(frozen=True)
class _Act:
    """One action by one person: what it reads and the change set it writes."""

    inc: IncidentRecord
    now: datetime
    actor: str
    source: str
    note: str
    steps: Sequence[StepRecord]
    paged: Sequence[OutboxRecord]
    directory: Directory | None
    on_behalf_of: str = ""
    occurred_at: datetime | None = None
    ch: Changes = field(default_factory=Changes)

    @property
    def suffix(self) -> str:
        who = f" on behalf of {self.on_behalf_of}" if self.on_behalf_of else ""
        return who + (f": {self.note}" if self.note else "")

    def event(self, kind: EventKind, message: str, data: dict[str, Any] | None = None) -> None:
        # The actor is who authenticated; whom they claim to act for is only a note beside it.
        extra = {"on_behalf_of": self.on_behalf_of} if self.on_behalf_of else {}
        if self.occurred_at is not None:
            extra["occurred_at"] = self.occurred_at.isoformat()
        self.ch.timeline.append(
            TimelineEvent(
                self.inc.id, self.now, kind, self.actor, self.source, message, (data or {}) | extra
            )
        )


def decide_action(
    inc: IncidentRecord,
    action: Action,
    *,
    now: datetime,
    actor: str,
    source: str,
    note: str = "",
    steps: Sequence[StepRecord] = (),
    paged: Sequence[OutboxRecord] = (),
    directory: Directory | None = None,
    on_behalf_of: str = "",
    occurred_at: datetime | None = None,
) -> tuple[Changes, IncidentRecord]:
    """Changes for ``action`` by ``actor``; raises IllegalTransition when it does not apply.

    ``steps`` are the incident's steps, fired and cancelled ones too (escalate reads them).

    ``actor`` is the authenticated identity; ``on_behalf_of`` what the caller says about whom
    they act for (unverified, so it is recorded beside the actor, never instead of it).
    ``occurred_at``: when the source signed that it happened (a PagerDuty webhook's time),
    kept with the timeline events so later events are ordered by it, not by when tocsin applied
    it (a retry may be applied hours late).
    """
    if inc.status not in _ALLOWED[action]:
        raise IllegalTransition(
            f"cannot {action.value} incident {inc.id}: it is {inc.status.value}"
        )
    a = _Act(inc, now, actor, source, note, steps, paged, directory, on_behalf_of, occurred_at)
    if action == Action.NOTE:
        # A note changes nothing about the incident itself: only its timeline grows.
        a.event(EventKind.NOTE, note or "(empty note)")
        a.ch.new_outbox.extend(message_updates(inc, paged, now, action.value))
        return a.ch, inc
    new = replace(_DECIDE[action](a), updated_at=now)
    a.ch.updated_incidents.append(new)
    if action not in (Action.ACK, Action.RESOLVE):  # those send their own notices
        a.ch.new_outbox.extend(message_updates(new, paged, now, action.value))
    return a.ch, new


def _ack(a: _Act) -> IncidentRecord:
    inc = a.inc
    a.ch.cancel_moot(inc.id, Status.ACKNOWLEDGED, Status.ACKNOWLEDGED.value)
    a.event(EventKind.ACK, f"acknowledged by {a.actor}{a.suffix}")
    if a.source != "pagerduty":
        a.ch.new_outbox.extend(pagerduty_acks(inc, a.paged, a.now))
    a.ch.new_outbox.extend(message_acks(inc, a.paged, a.now))
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
    if a.inc.status == Status.TRIGGERED:  # no ack stopped what rings: this does
        a.ch.new_outbox.extend(ringing_stops(a.inc, a.paged, a.now))
    return replace(
        _settle(a, Status.MITIGATED, EventKind.MITIGATE, "mitigated"), mitigated_at=a.now
    )


def _resolve(a: _Act) -> IncidentRecord:
    new = replace(_settle(a, Status.RESOLVED, EventKind.RESOLVE, "resolved"), resolved_at=a.now)
    a.ch.new_outbox.extend(resolve_notices(new, a.paged, a.now))
    a.ch.new_outbox.extend(room_archives(new, a.paged, a.now))
    return new


def _settle(a: _Act, status: Status, kind: EventKind, verb: str) -> IncidentRecord:
    """Mitigate or resolve: someone is on it (an ack implied), and what that makes moot stops."""
    a.ch.cancel_moot(a.inc.id, status, status.value)
    a.event(kind, f"{verb} by {a.actor}{a.suffix}")
    return replace(a.inc, status=status, acknowledged_at=a.inc.acknowledged_at or a.now)


def _escalate(a: _Act) -> IncidentRecord:
    """Page the tier after the furthest one reached, now.

    Reached: fired, or already brought forward (due, about to fire), so escalating again goes
    one further. That tier's step is brought forward while pending; when an acknowledgement or
    mitigation cancelled it, it is planned anew (the person asking to escalate wants it paged).
    """
    inc = a.inc
    pages = [s for s in a.steps if s.kind == StepKind.PAGE and s.epoch == inc.epoch]
    pending = sorted(
        (s for s in pages if s.state == StepState.PENDING), key=lambda s: (s.round, s.tier)
    )
    reached = [
        s for s in pages if s.state == StepState.FIRED or (s in pending and s.due_at <= a.now)
    ]
    rnd = max((s.round for s in reached), default=0)
    tier = max((s.tier for s in reached if s.round == rnd), default=-1) + 1
    later = [s for s in pending if s.due_at > a.now and (s.round, s.tier) >= (rnd, tier)]
    if tier < len(PolicySnapshot.of(inc.policy).steps):
        same = [s for s in later if (s.round, s.tier) == (rnd, tier)]
        nxt = same[0] if same else _replan(a, rnd, tier)
    elif later:  # the last tier of this round was reached: the next round's first step
        nxt = later[0]
    else:
        raise IllegalTransition(f"incident {inc.id} has no further tier to escalate to")
    if nxt in pending:
        a.ch.step_reschedules.append(StepReschedule(nxt.id, a.now, f"escalated now by {a.actor}"))
    a.event(
        EventKind.ESCALATE,
        f"escalated to tier {nxt.tier} now by {a.actor}{a.suffix}",
        {"tier": nxt.tier},
    )
    return inc if inc.status == Status.TRIGGERED else replace(inc, status=Status.TRIGGERED)


def _replan(a: _Act, rnd: int, tier: int) -> StepRecord:
    """A new step for a tier whose step was cancelled, due now (its own id: ids are unique)."""
    base = step_id(a.inc.id, a.inc.epoch, StepKind.PAGE, rnd, tier)
    spec = PolicySnapshot.of(a.inc.policy).steps[tier]
    step = StepRecord(
        id=f"{base}:escalated@{a.now.isoformat()}",
        incident_id=a.inc.id,
        kind=StepKind.PAGE,
        epoch=a.inc.epoch,
        round=rnd,
        tier=tier,
        due_at=a.now,
        unless=spec.unless,
        note=f"escalated now by {a.actor}",
    )
    a.ch.new_steps.append(step)
    return step


def _reopen(a: _Act) -> IncidentRecord:
    new = a.inc.reopened()
    a.ch.supersede_steps(a.inc.id, "superseded: reopened")
    a.event(EventKind.REOPEN, f"back to triggered by {a.actor}{a.suffix}")
    if a.directory is not None:
        steps = plan_steps(new.id, new.epoch, new.policy, a.now, a.directory.calendars)
        if a.source == "pagerduty":
            steps = [replace(s, id=s.id + PAGERDUTY_REOPENED) for s in steps]
        a.ch.new_steps.extend(steps)
    return new


_DECIDE: dict[Action, Callable[[_Act], IncidentRecord]] = {
    Action.ACK: _ack,
    Action.MITIGATE: _mitigate,
    Action.RESOLVE: _resolve,
    Action.ESCALATE: _escalate,
    Action.REOPEN: _reopen,
}
