"""Heartbeats (dead-man's switches): the configured ones, as stored, and the pure decisions.

A heartbeat is armed once (its row's ``due_at`` is ``expect_every + grace`` after that) and
re-armed by every ping. Its expiry is a due row in the store like an escalation step, so it
survives restarts and, claimed with a lease, fires once across replicas. On expiry it becomes a
firing alert of its own (``heartbeat_alert``) that opens an incident through the ordinary ingest
decision, so the severity's policy pages as usual; the next ping resolves that alert.

A heartbeat never pinged is "unknown", not "ok": nothing has been heard yet, and it expires
only once the first ``expect_every + grace`` since it was armed has passed without a ping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from escalation.incidents.ingest import Classified
from rules.alerts import Alert, Notification
from rules.classifier import Classification
from rules.durations import Duration
from rules.matrix import Matrix

__all__ = [
    "EXPIRED",
    "HEARTBEAT_RECEIVER",
    "PENDING",
    "RETIRED",
    "Heartbeat",
    "HeartbeatRecord",
    "HeartbeatState",
    "arm",
    "decide_expiry",
    "decide_ping",
    "heartbeat_alert",
    "heartbeat_key",
    "retire",
    "state_of",
]

HEARTBEAT_RECEIVER = "tocsin-heartbeats"
"""The receiver name heartbeat alerts carry (no Alertmanager sends under it)."""

PENDING = "pending"  # armed: waiting for a ping or its due time
EXPIRED = "expired"  # fired: its incident is open until the next ping
RETIRED = "retired"  # no longer configured: never fires

HeartbeatState = Literal["unknown", "ok", "expired"]


class Heartbeat(BaseModel):
    """One entry of the ``heartbeats:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expect_every: Duration
    grace: Duration = timedelta(0)
    severity: str = Field(min_length=1)
    policy: str | None = None
    team: str | None = None
    title: str | None = None

    @field_validator("expect_every")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be positive")
        return v

    @field_validator("grace")
    @classmethod
    def _not_negative(cls, v: timedelta) -> timedelta:
        if v < timedelta(0):
            raise ValueError("must not be negative")
        return v

    @property
    def window(self) -> timedelta:
        """How long after arming or a ping it expires."""
        return self.expect_every + self.grace


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    """One heartbeat as stored (the ``heartbeats`` table; ``id`` is its configured name)."""

    id: str
    state: str  # PENDING, EXPIRED or RETIRED
    armed_at: datetime
    due_at: datetime
    last_ping: datetime | None = None
    expired_at: datetime | None = None  # when it last expired: its alert's startsAt


def heartbeat_key(name: str) -> str:
    """The incident key of a heartbeat's incidents."""
    return f"heartbeat/{name}"


def state_of(rec: HeartbeatRecord | None) -> HeartbeatState:
    """What the API, console and metrics show."""
    if rec is not None and rec.state == EXPIRED:
        return "expired"
    if rec is None or rec.last_ping is None:
        return "unknown"
    return "ok"


def arm(
    name: str, hb: Heartbeat, rec: HeartbeatRecord | None, now: datetime
) -> HeartbeatRecord | None:
    """The row to write for a configured heartbeat at start or reload; None: keep the stored one.

    A stored heartbeat keeps its due time across restarts: one that expired while tocsin was
    down fires as soon as it is back. One no longer configured and configured again is armed
    afresh.
    """
    if rec is not None and rec.state != RETIRED:
        return None
    return HeartbeatRecord(name, PENDING, armed_at=now, due_at=now + hb.window)


def retire(rec: HeartbeatRecord) -> HeartbeatRecord | None:
    """The row of a heartbeat no longer configured: a pending one never fires; None: keep it.

    An expired one stays expired (its incident is still open; it is resolved by hand).
    """
    return replace(rec, state=RETIRED) if rec.state == PENDING else None


def decide_ping(
    name: str, hb: Heartbeat, rec: HeartbeatRecord | None, now: datetime
) -> tuple[HeartbeatRecord, datetime | None]:
    """(the re-armed row, the expiry to resolve or None) for a ping at ``now``."""
    armed_at = rec.armed_at if rec is not None and rec.state != RETIRED else now
    after = HeartbeatRecord(name, PENDING, armed_at, now + hb.window, last_ping=now)
    if rec is not None and rec.state == EXPIRED and rec.expired_at is not None:
        return replace(after, expired_at=rec.expired_at), rec.expired_at
    return after, None


def decide_expiry(
    hb: Heartbeat | None, rec: HeartbeatRecord, now: datetime
) -> HeartbeatRecord | None:
    """The expired (or, unconfigured, retired) row for a claimed heartbeat; None if not due."""
    if rec.state != PENDING or rec.due_at > now:
        return None  # pinged (or fired by another replica) since it was claimed
    if hb is None:
        return replace(rec, state=RETIRED)
    return replace(rec, state=EXPIRED, expired_at=now)


def heartbeat_alert(
    name: str, hb: Heartbeat, rec: HeartbeatRecord, matrix: Matrix, *, resolved_at: datetime | None
) -> tuple[Notification, list[Classified]]:
    """The alert a heartbeat's expiry raises (firing), or the ping that ends it (resolved).

    Its occurrence is the expiry (``startsAt`` = ``expired_at``), so the resolution finds the
    incident the expiry opened, and a second expiry after a ping opens or reopens one anew.
    """
    assert rec.expired_at is not None
    status = "firing" if resolved_at is None else "resolved"
    since = f"since {rec.last_ping.isoformat()}" if rec.last_ping else "since it was armed"
    title = hb.title or f"Heartbeat {name} stopped"
    alert = Alert.model_validate(
        {
            "status": status,
            "labels": {"alertname": "TocsinHeartbeat", "heartbeat": name},
            "annotations": {
                "summary": title,
                "description": f"No ping {since}; expected every {hb.expect_every} "
                f"with {hb.grace} grace.",
            },
            "startsAt": rec.expired_at,
            "endsAt": resolved_at,
        }
    )
    key = heartbeat_key(name)
    severity = matrix.resolve(hb.severity) or hb.severity
    verdict = Classification(
        severity=severity,
        severity_name=matrix.level(severity).name,
        policy=hb.policy,
        team=hb.team,
        incident_key=key,
        title=title,
        rule=f"heartbeat:{name}",
        matched=(),
        reasons=(f"heartbeat {name} expired",),
    )
    notification = Notification.model_validate(
        {
            "version": "4",
            "receiver": HEARTBEAT_RECEIVER,
            "status": status,
            "alerts": [alert],
            "groupKey": key,
            "commonLabels": dict(alert.labels),
        }
    )
    return notification, [Classified(alert, verdict)]
