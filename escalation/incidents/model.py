"""Records the store keeps and the changes a decision asks it to make.

Plain frozen dataclasses: deciders (``incidents.ingest``, ``incidents.firing``) read them
and return a ``Changes``; a store backend applies a ``Changes`` in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from escalation.incidents.severity import Severity

__all__ = [
    "AlertRecord",
    "AlertStatus",
    "CancelOutbox",
    "CancelSteps",
    "Changes",
    "DeliveryOutcome",
    "EventKind",
    "IncidentRecord",
    "KeyAlias",
    "OutboxKind",
    "OutboxRecord",
    "OutboxState",
    "Status",
    "StepKind",
    "StepRecord",
    "StepReschedule",
    "StepState",
    "StepUpdate",
    "TimelineEvent",
    "status_reached",
]


class Status(StrEnum):
    """Incident lifecycle; order matters: a later status implies the earlier ones were passed."""

    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


_ORDER = {s: i for i, s in enumerate(Status)}


def status_reached(current: Status | str, wanted: Status | str) -> bool:
    """True when ``current`` is ``wanted`` or further along (resolved implies acknowledged)."""
    return _ORDER[Status(current)] >= _ORDER[Status(wanted)]


class StepState(StrEnum):
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class StepKind(StrEnum):
    """What a scheduled step does when it falls due."""

    PAGE = "page"  # a tier of the policy
    REMINDER = "reminder"  # a status-update reminder on the level's cadence
    ACK_TIMEOUT = "ack_timeout"  # acknowledged but not mitigated in time: escalate again


class OutboxKind(StrEnum):
    """What an outbox row tells its person."""

    PAGE = "page"
    REMINDER = "reminder"
    RESOLVE = "resolve"
    ACKNOWLEDGE = "acknowledge"  # an ack made elsewhere, told to PagerDuty
    UPDATE = "update"  # edit a message kept per incident (Slack's card) after a state change
    ARCHIVE = "archive"  # close the incident's own chat channel after its monitoring window


class EventKind(StrEnum):
    """What a timeline event records (the post-incident review's timeline reads these)."""

    OPEN = "open"
    ALERT = "alert"
    SEVERITY = "severity"
    REOPEN = "reopen"
    NOTIFY = "notify"
    REMINDER = "reminder"
    SKIP = "skip"
    LATE = "late"
    DEFERRED = "deferred"
    HELD = "held"
    DELIVERY = "delivery"
    FALLBACK = "fallback"
    ACK = "ack"
    ACK_TIMEOUT = "ack_timeout"
    MITIGATE = "mitigate"
    RESOLVE = "resolve"
    ESCALATE = "escalate"
    NOTE = "note"


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class IncidentRecord:
    """One incident as stored."""

    id: str
    number: int
    key: str
    status: Status
    severity: str
    title: str
    team: str | None
    policy_name: str
    policy: dict[str, Any]  # the snapshot taken at open (and on a severity raise)
    level: dict[str, Any]  # the matrix level's targets and cadences at open / raise
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    epoch: int = 0  # bumps on reopen / severity raise / ack timeout: a fresh escalation run
    receiver: str = ""
    group_key: str = ""
    rule: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # common labels, for links and maintenance
    version: int = 0

    def reopened(self) -> IncidentRecord:
        """Back to triggered for a fresh escalation run: a new epoch, acks and resolve cleared."""
        return replace(
            self,
            status=Status.TRIGGERED,
            epoch=self.epoch + 1,
            acknowledged_at=None,
            mitigated_at=None,
            resolved_at=None,
        )

    @property
    def severity_info(self) -> Severity:
        """The severity with the name the matrix gave it when the level was snapshotted."""
        return Severity.from_snapshot(self.severity, self.level)

    @property
    def severity_name(self) -> str:
        """What people call this incident's severity (``SEV-1``…)."""
        return self.severity_info.name


@dataclass(frozen=True)
class AlertRecord:
    """One firing occurrence of an alert (fingerprint, startsAt) inside an incident."""

    incident_id: str
    fingerprint: str
    starts_at: datetime
    status: AlertStatus
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    severity: str
    rule: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class StepRecord:
    """One scheduled escalation step (or reminder / ack timeout) of an incident."""

    id: str  # unique: f"{incident}:{epoch}:{kind}:{round}:{tier}"
    incident_id: str
    kind: StepKind
    epoch: int
    round: int
    tier: int
    due_at: datetime
    state: StepState = StepState.PENDING
    unless: str | None = None
    fired_at: datetime | None = None
    note: str = ""


@dataclass(frozen=True)
class OutboxRecord:
    """One notification to one person over one channel; idempotency key is the id."""

    id: str  # f"{step_id}:{person}:{channel}" or f"{incident}:{kind}:{...}"
    incident_id: str
    step_id: str | None
    kind: OutboxKind
    tier: int
    round: int
    target: str  # as named in config (role:lead, schedule:primary, ...)
    person: str
    channel: str
    created_at: datetime
    not_before: datetime
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    last_error: str = ""
    sent_at: datetime | None = None
    provider_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened to an incident, with who did it and through what."""

    incident_id: str
    at: datetime
    kind: EventKind
    actor: str  # a person, "tocsin", "alertmanager", a PagerDuty user, ...
    source: str  # alert | heartbeat | api | cli | pagerduty | phone | email | engine
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one delivery attempt, written onto its outbox row (lease released)."""

    outbox_id: str
    state: OutboxState
    attempts: int
    error: str = ""
    provider_id: str = ""  # empty keeps the stored one
    sent_at: datetime | None = None  # None keeps the stored one
    not_before: datetime | None = None  # None keeps the stored one


# The small change kinds below are NamedTuples rather than dataclasses: a store backend
# unpacks them positionally into statement parameters, and callers may still build them
# positionally; the names document what each position is.


class KeyAlias(NamedTuple):
    """Another incident key that leads to ``incident_id`` (e.g. a PagerDuty dedup key)."""

    key: str
    incident_id: str


class StepUpdate(NamedTuple):
    """A step reaches a final state (fired, cancelled, skipped); its lease is released."""

    step_id: str
    state: StepState
    fired_at: datetime | None
    note: str


class StepReschedule(NamedTuple):
    """A pending step moves to a new due time (deferred, held, or escalated now)."""

    step_id: str
    due_at: datetime
    note: str


class CancelSteps(NamedTuple):
    """Cancel an incident's pending steps whose ``unless`` is one of ``unless``.

    ``unless=None`` cancels every pending step of the incident, whatever its ``unless``.
    """

    incident_id: str
    unless: tuple[str | None, ...] | None
    note: str


class CancelOutbox(NamedTuple):
    """Cancel an incident's pending outbox rows of these ``kinds``."""

    incident_id: str
    kinds: tuple[OutboxKind, ...]


@dataclass
class Changes:
    """Everything one decision writes; applied atomically by the store."""

    new_incidents: list[IncidentRecord] = field(default_factory=list)
    updated_incidents: list[IncidentRecord] = field(
        default_factory=list
    )  # compare-and-set on version
    key_aliases: list[KeyAlias] = field(default_factory=list)
    upsert_alerts: list[AlertRecord] = field(default_factory=list)
    timeline: list[TimelineEvent] = field(default_factory=list)
    new_steps: list[StepRecord] = field(default_factory=list)  # insert; ignore if id exists
    step_updates: list[StepUpdate] = field(default_factory=list)
    step_reschedules: list[StepReschedule] = field(default_factory=list)
    cancel_steps_of: list[CancelSteps] = field(default_factory=list)
    new_outbox: list[OutboxRecord] = field(default_factory=list)  # insert; ignore if id exists
    cancel_outbox_of: list[CancelOutbox] = field(default_factory=list)
    deliveries: list[DeliveryOutcome] = field(default_factory=list)  # attempts' outcomes

    def __bool__(self) -> bool:
        return any(
            (
                self.new_incidents,
                self.updated_incidents,
                self.key_aliases,
                self.upsert_alerts,
                self.timeline,
                self.new_steps,
                self.step_updates,
                self.step_reschedules,
                self.cancel_steps_of,
                self.new_outbox,
                self.cancel_outbox_of,
                self.deliveries,
            )
        )

    def merge(self, other: Changes) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))

    def incident_ids(self) -> frozenset[str]:
        """The incidents these changes touch, as far as they name them (a bare step update or
        delivery outcome names none): what an open incident page listens for."""
        rows: list[Any] = [*self.new_incidents, *self.updated_incidents]
        named: list[Any] = [*self.key_aliases, *self.upsert_alerts, *self.timeline]
        named += [*self.new_steps, *self.cancel_steps_of, *self.new_outbox, *self.cancel_outbox_of]
        return frozenset([r.id for r in rows] + [c.incident_id for c in named])

    def supersede_steps(self, incident_id: str, note: str) -> None:
        """Cancel every pending step of the incident: a new escalation run replaces them."""
        self.cancel_steps_of.append(CancelSteps(incident_id, None, note))

    def cancel_moot(self, incident_id: str, status: Status, note: str) -> None:
        """Cancel the pending steps and unsent notifications that reaching ``status`` makes moot."""
        self.cancel_steps_of.append(CancelSteps(incident_id, _MOOT_STEPS[status], note))
        self.cancel_outbox_of.append(CancelOutbox(incident_id, _MOOT_OUTBOX[status]))


# What reaching a status makes moot: pending steps by their ``unless`` (None: every step), and
# unsent rows by kind (a "resolved" notice or a PagerDuty ack still has to go out).
_MOOT_STEPS: dict[Status, tuple[str | None, ...] | None] = {
    Status.ACKNOWLEDGED: ("acknowledged",),
    Status.MITIGATED: ("acknowledged", "mitigated"),
    Status.RESOLVED: None,
}
_MOOT_OUTBOX: dict[Status, tuple[OutboxKind, ...]] = {
    Status.ACKNOWLEDGED: (OutboxKind.PAGE,),
    Status.MITIGATED: (OutboxKind.PAGE,),
    Status.RESOLVED: (OutboxKind.PAGE, OutboxKind.REMINDER),
}
