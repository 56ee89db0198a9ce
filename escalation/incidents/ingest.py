"""Deciding what a notification does to incidents: open, join, reopen, raise, resolve.

Pure: ``decide_ingest`` takes what the store holds about one incident key plus the new alerts,
and returns the ``Changes`` to write. Every duplicate Alertmanager produces (repeats, whole-group
re-sends, retries, HA peers, ``continue`` routes) maps to an occurrence already recorded and so
changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from escalation.incidents.directory import Directory
from escalation.incidents.model import (
    AlertRecord,
    AlertStatus,
    Changes,
    EventKind,
    IncidentRecord,
    OutboxRecord,
    Status,
    TimelineEvent,
)
from escalation.incidents.notices import message_updates, resolve_notices, room_archives
from escalation.incidents.policy import (
    PolicySnapshot,
    level_snapshot,
    plan_reminder,
    plan_steps,
    policy_snapshot,
)
from rules.alerts import Alert
from rules.classifier import Classification
from rules.matrix import rank

__all__ = [
    "Classified",
    "IngestAction",
    "IngestOutcome",
    "decide_ingest",
    "default_key",
    "new_incident_id",
]

# One firing of one alert: (fingerprint, startsAt). A repeat of it is a duplicate.
Occurrence = tuple[str, datetime | None]


# Classified and IngestOutcome are made for every alert and key a notification brings; nothing
# hashes them or changes them after, so they skip frozen's per-field object.__setattr__.
@dataclass(slots=True)
class Classified:
    """One alert of a notification with its verdict."""

    alert: Alert
    verdict: Classification

    @property
    def occurrence(self) -> Occurrence:
        return (self.alert.fingerprint, self.alert.starts_at)


class IngestAction(StrEnum):
    """What a notification did to the incident behind one key."""

    OPENED = "opened"
    JOINED = "joined"
    REOPENED = "reopened"
    RAISED = "raised"
    RESOLVED = "resolved"
    UNCHANGED = "unchanged"
    IGNORED = "ignored"


@dataclass(slots=True)
class IngestOutcome:
    """What happened to one incident key (echoed to Alertmanager's caller and tests)."""

    key: str
    action: IngestAction
    incident_id: str | None = None
    severity: str | None = None
    status: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "action": self.action,
            "incident": self.incident_id,
            "severity": self.severity,
            "status": self.status,
        }


def default_key(receiver: str, group_key: str) -> str:
    """receiver + groupKey: one incident per Alertmanager group (externalURL left out: HA peers)."""
    return f"{receiver}/{group_key}"


def new_incident_id() -> str:
    """Random, URL-safe, short enough for PagerDuty's 255-character dedup_key.

    20 lowercase hex characters (80 random bits), as ``uuid4().hex[:20]`` gave, for less work.
    """
    return secrets.token_hex(10)


def _worst(items: Sequence[Classified]) -> Classified:
    return min(items, key=lambda c: rank(c.verdict.severity))


def _event(
    incident_id: str, now: datetime, kind: EventKind, message: str, data: dict[str, Any]
) -> TimelineEvent:
    """A timeline event caused by Alertmanager's notification."""
    return TimelineEvent(incident_id, now, kind, "alertmanager", "alert", message, data)


def decide_ingest(
    key: str,
    items: Sequence[Classified],
    incident: IncidentRecord | None,
    alerts: Sequence[AlertRecord],
    paged: Sequence[OutboxRecord],
    *,
    now: datetime,
    directory: Directory,
    receiver: str,
    group_key: str,
    common_labels: dict[str, str],
    new_id: Callable[[], str] = new_incident_id,
) -> tuple[Changes, IngestOutcome]:
    """The changes ``items`` make to the incident behind ``key`` (``incident`` if any)."""
    ch = Changes()
    known: dict[Occurrence, AlertRecord] = {(a.fingerprint, a.starts_at): a for a in alerts}
    fresh_firing = [c for c in items if c.alert.firing and c.occurrence not in known]
    if incident is None or (
        incident.status == Status.RESOLVED and not _within_window(incident, now)
    ):
        if not fresh_firing:
            return ch, IngestOutcome(key, IngestAction.IGNORED)
        return _open(
            key, items, fresh_firing, ch, now, directory, receiver, group_key, common_labels, new_id
        )
    if incident.status == Status.RESOLVED and not fresh_firing:
        return ch, IngestOutcome(
            key, IngestAction.UNCHANGED, incident.id, incident.severity, incident.status
        )
    inc, action = _update(incident, items, known, paged, ch, now, directory)
    if action in (IngestAction.JOINED, IngestAction.RAISED, IngestAction.REOPENED):
        # Its alerts, severity or state changed: the chat cards kept for it show them.
        ch.new_outbox.extend(message_updates(inc, paged, now, action.value))
    if inc is not incident or ch:
        ch.updated_incidents.append(replace(inc, updated_at=now))
    return ch, IngestOutcome(key, action, inc.id, inc.severity, str(inc.status))


def _update(
    incident: IncidentRecord,
    items: Sequence[Classified],
    known: Mapping[Occurrence, AlertRecord],
    paged: Sequence[OutboxRecord],
    ch: Changes,
    now: datetime,
    d: Directory,
) -> tuple[IncidentRecord, IngestAction]:
    """An open incident (or one resolved within its monitoring window) takes the alerts."""
    inc, action = incident, IngestAction.UNCHANGED
    if inc.status == Status.RESOLVED:
        inc, action = _reopen(inc, ch, now, d), IngestAction.REOPENED
    current = _record_occurrences(inc.id, items, known, ch, now)
    if ch.upsert_alerts and action == IngestAction.UNCHANGED:
        action = IngestAction.JOINED
    # Severity only ever rises automatically. Every item's occurrence is recorded by now.
    firing = [c for c in items if c.alert.firing]
    if firing:
        worst = _worst(firing)
        if rank(worst.verdict.severity) < rank(inc.severity):
            inc = _raise(inc, worst, ch, now, d)
            if action != IngestAction.REOPENED:
                action = IngestAction.RAISED
    if (
        _all_resolved(current.values())
        and PolicySnapshot.of(inc.policy).auto_resolve
        and inc.status != Status.RESOLVED
    ):
        inc, action = _resolve(inc, ch, now, paged), IngestAction.RESOLVED
    return inc, action


def _record_occurrences(
    incident_id: str,
    items: Sequence[Classified],
    known: Mapping[Occurrence, AlertRecord],
    ch: Changes,
    now: datetime,
) -> dict[Occurrence, AlertRecord]:
    """Record new occurrences and firing → resolved; anything else is a duplicate."""
    current = dict(known)
    for c in items:
        old = current.get(c.occurrence)
        if old is None:
            rec = _alert_record(incident_id, c, now)
        elif old.status == AlertStatus.FIRING and not c.alert.firing:
            rec = replace(old, status=AlertStatus.RESOLVED, ends_at=c.alert.ends_at, last_seen=now)
        else:
            continue
        ch.upsert_alerts.append(rec)
        current[c.occurrence] = rec
        ch.timeline.append(_alert_event(incident_id, c, now))
    return current


def _within_window(inc: IncidentRecord, now: datetime) -> bool:
    window = float(inc.level.get("monitoring_window") or 0)
    return inc.resolved_at is not None and now - inc.resolved_at <= timedelta(seconds=window)


def _all_resolved(records: Iterable[AlertRecord]) -> bool:
    latest: dict[str, AlertRecord] = {}
    for r in records:
        cur = latest.get(r.fingerprint)
        if cur is None or r.starts_at > cur.starts_at:
            latest[r.fingerprint] = r
    return bool(latest) and all(r.status == AlertStatus.RESOLVED for r in latest.values())


def _alert_record(incident_id: str, c: Classified, now: datetime) -> AlertRecord:
    # The record shares the decoded alert's label and annotation dicts: neither is changed
    # after decoding (the alert is a frozen model), and copying them was per-alert work that
    # bought nothing on the way to the SQL parameters.
    a = c.alert
    assert a.starts_at is not None
    return AlertRecord(
        incident_id=incident_id,
        fingerprint=a.fingerprint,
        starts_at=a.starts_at,
        status=AlertStatus(a.status),
        ends_at=a.ends_at,
        labels=a.labels,
        annotations=a.annotations,
        generator_url=a.generator_url,
        severity=c.verdict.severity,
        rule=c.verdict.rule,
        first_seen=now,
        last_seen=now,
    )


def _alert_event(incident_id: str, c: Classified, now: datetime) -> TimelineEvent:
    a = c.alert
    name = a.labels.get("alertname", a.fingerprint)
    verb = "firing" if a.firing else "resolved"
    return _event(
        incident_id,
        now,
        EventKind.ALERT,
        f"{name} {verb} ({c.verdict.severity_name}, rule {c.verdict.rule})",
        {"fingerprint": a.fingerprint, "status": a.status, "severity": c.verdict.severity},
    )


def _open(
    key: str,
    items: Sequence[Classified],
    fresh: Sequence[Classified],
    ch: Changes,
    now: datetime,
    d: Directory,
    receiver: str,
    group_key: str,
    common_labels: dict[str, str],
    new_id: Callable[[], str],
) -> tuple[Changes, IngestOutcome]:
    worst = _worst(fresh)
    v = worst.verdict
    inc_id = new_id()
    pname, psnap = policy_snapshot(d.matrix, d.policies, v.severity, v.policy)
    inc = IncidentRecord(
        id=inc_id,
        number=0,
        key=key,
        status=Status.TRIGGERED,
        severity=v.severity,
        title=v.title,
        team=v.team,
        policy_name=pname,
        policy=psnap,
        level=level_snapshot(d.matrix, v.severity),
        opened_at=now,
        updated_at=now,
        receiver=receiver,
        group_key=group_key,
        rule=v.rule,
        labels=dict(common_labels) or dict(worst.alert.labels),
    )
    ch.new_incidents.append(inc)
    ch.timeline.append(
        _event(
            inc_id,
            now,
            EventKind.OPEN,
            f"incident opened: {v.title} ({v.severity_name}, rule {v.rule}, policy {pname})",
            {"severity": v.severity, "key": key, "policy": pname},
        )
    )
    for c in items:
        ch.upsert_alerts.append(_alert_record(inc_id, c, now))
        ch.timeline.append(_alert_event(inc_id, c, now))
    _schedule(inc, ch, now, d, reminders_from=now)
    return ch, IngestOutcome(key, IngestAction.OPENED, inc_id, inc.severity, str(inc.status))


def _schedule(
    inc: IncidentRecord,
    ch: Changes,
    start: datetime,
    d: Directory,
    reminders_from: datetime,
    not_before: datetime | None = None,
) -> None:
    steps = plan_steps(inc.id, inc.epoch, inc.policy, start, d.calendars)
    if not_before is not None:
        # Tiers already past are due now, not overdue: they are not "late" (that word is kept
        # for steps the engine could not fire in time).
        steps = [s if s.due_at >= not_before else replace(s, due_at=not_before) for s in steps]
    ch.new_steps.extend(steps)
    if PolicySnapshot.of(inc.policy).reminders:
        r = plan_reminder(inc.id, inc.epoch, inc.level, reminders_from, 1)
        if r is not None:
            ch.new_steps.append(r)


def _reopen(inc: IncidentRecord, ch: Changes, now: datetime, d: Directory) -> IncidentRecord:
    new = inc.reopened()
    ch.timeline.append(
        _event(
            inc.id,
            now,
            EventKind.REOPEN,
            "an alert fired again within the monitoring window: incident reopened",
            {"resolved_at": inc.resolved_at.isoformat() if inc.resolved_at else None},
        )
    )
    _schedule(new, ch, now, d, reminders_from=now)
    return new


def _raise(
    inc: IncidentRecord, worst: Classified, ch: Changes, now: datetime, d: Directory
) -> IncidentRecord:
    v = worst.verdict
    pname, psnap = policy_snapshot(d.matrix, d.policies, v.severity, v.policy)
    was_acked = inc.status in (Status.ACKNOWLEDGED, Status.MITIGATED)
    new = replace(
        inc,
        severity=v.severity,
        policy_name=pname,
        policy=psnap,
        level=level_snapshot(d.matrix, v.severity),
        epoch=inc.epoch + 1,
        status=Status.TRIGGERED if was_acked else inc.status,
    )
    ch.supersede_steps(inc.id, f"superseded: severity raised to {v.severity}")
    name = worst.alert.labels.get("alertname", "")
    msg = (
        f"severity raised {inc.severity} -> {v.severity} ({v.severity_name}) by {name}"
        f" (rule {v.rule}); policy {pname}"
    )
    if was_acked:
        msg += "; escalation restarts (was acknowledged)"
    ch.timeline.append(
        _event(
            inc.id,
            now,
            EventKind.SEVERITY,
            msg,
            {"from": inc.severity, "to": v.severity, "policy": pname},
        )
    )
    # Steps are due relative to the incident's start: tiers already past fire at once, and
    # people already paged are not paged again (the engine skips them).
    _schedule(new, ch, inc.opened_at, d, reminders_from=now, not_before=now)
    return new


def _resolve(
    inc: IncidentRecord, ch: Changes, now: datetime, paged: Sequence[OutboxRecord]
) -> IncidentRecord:
    """Every alert has resolved: so has the incident, and the people paged are told."""
    new = replace(inc, status=Status.RESOLVED, resolved_at=now)
    ch.cancel_moot(inc.id, Status.RESOLVED, "incident resolved")
    ch.timeline.append(
        _event(inc.id, now, EventKind.RESOLVE, "incident resolved: all alerts resolved", {})
    )
    ch.new_outbox.extend(resolve_notices(new, paged, now))
    ch.new_outbox.extend(room_archives(new, paged, now))
    return new
