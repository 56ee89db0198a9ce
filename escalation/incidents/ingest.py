"""Deciding what a notification does to incidents: open, join, reopen, raise, resolve.

Pure: ``decide_ingest`` takes what the store holds about one incident key plus the new alerts,
and returns the ``Changes`` to write. Every duplicate Alertmanager produces (repeats, whole-group
re-sends, retries, HA peers, ``continue`` routes) maps to an occurrence already recorded and so
changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from escalation.incidents.directory import Directory
from escalation.incidents.model import (
    AlertRecord,
    AlertStatus,
    CancelOutbox,
    CancelSteps,
    Changes,
    EventKind,
    IncidentRecord,
    OutboxKind,
    OutboxRecord,
    OutboxState,
    Status,
    TimelineEvent,
)
from escalation.incidents.policy import level_snapshot, plan_reminder, plan_steps, policy_snapshot
from rules.alerts import Alert
from rules.classifier import Classification
from rules.matrix import rank

__all__ = [
    "Classified",
    "IngestOutcome",
    "decide_ingest",
    "default_key",
    "new_incident_id",
    "resolve_notices",
]


@dataclass(frozen=True)
class Classified:
    """One alert of a notification with its verdict."""

    alert: Alert
    verdict: Classification


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one incident key (echoed to Alertmanager's caller and tests)."""

    key: str
    action: str  # opened | joined | reopened | raised | resolved | unchanged | ignored
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
    """Random, URL-safe, short enough for PagerDuty's 255-character dedup_key."""
    return uuid.uuid4().hex[:20]


def _worst(items: Sequence[Classified]) -> Classified:
    return min(items, key=lambda c: rank(c.verdict.severity))


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
    known = {(a.fingerprint, a.starts_at): a for a in alerts}
    fresh_firing = [
        c for c in items if c.alert.firing and (c.alert.fingerprint, c.alert.starts_at) not in known
    ]

    if incident is None or (
        incident.status == Status.RESOLVED and not _within_window(incident, now)
    ):
        if not fresh_firing:
            return ch, IngestOutcome(key, "ignored")
        return _open(
            key, items, fresh_firing, ch, now, directory, receiver, group_key, common_labels, new_id
        )

    inc = incident
    action = "unchanged"
    if inc.status == Status.RESOLVED:
        if not fresh_firing:
            return ch, IngestOutcome(key, "unchanged", inc.id, inc.severity, inc.status)
        inc = _reopen(inc, ch, now, directory)
        action = "reopened"

    # Occurrences: new ones and firing → resolved are recorded; anything else is a duplicate.
    current = dict(known)
    for c in items:
        a = c.alert
        occ = (a.fingerprint, a.starts_at)
        old = current.get(occ)
        if old is None:
            rec = _alert_record(inc.id, c, now)
            ch.upsert_alerts.append(rec)
            current[occ] = rec
            ch.timeline.append(_alert_event(inc.id, c, now))
            if action == "unchanged":
                action = "joined"
        elif old.status == AlertStatus.FIRING and not a.firing:
            rec = replace(old, status=AlertStatus.RESOLVED, ends_at=a.ends_at, last_seen=now)
            ch.upsert_alerts.append(rec)
            current[occ] = rec
            ch.timeline.append(_alert_event(inc.id, c, now))
            if action == "unchanged":
                action = "joined"

    # Severity only ever rises automatically.
    firing_new = [
        c for c in items if c.alert.firing and (c.alert.fingerprint, c.alert.starts_at) in current
    ]
    if firing_new:
        worst = _worst(firing_new)
        if rank(worst.verdict.severity) < rank(inc.severity):
            inc = _raise(inc, worst, ch, now, directory)
            action = "raised" if action != "reopened" else action

    if _all_resolved(current.values()) and inc.policy.get("auto_resolve", True):
        if inc.status != Status.RESOLVED:
            inc = _resolve(inc, ch, now, "alertmanager", "alert", "all alerts resolved", paged)
            action = "resolved"

    if inc is not incident or ch:
        ch.updated_incidents.append(replace(inc, updated_at=now))
    return ch, IngestOutcome(key, action, inc.id, inc.severity, str(inc.status))


def _within_window(inc: IncidentRecord, now: datetime) -> bool:
    window = float(inc.level.get("monitoring_window") or 0)
    return inc.resolved_at is not None and now - inc.resolved_at <= timedelta(seconds=window)


def _all_resolved(records: Any) -> bool:
    latest: dict[str, AlertRecord] = {}
    for r in records:
        cur = latest.get(r.fingerprint)
        if cur is None or r.starts_at > cur.starts_at:
            latest[r.fingerprint] = r
    return bool(latest) and all(r.status == AlertStatus.RESOLVED for r in latest.values())


def _alert_record(incident_id: str, c: Classified, now: datetime) -> AlertRecord:
    a = c.alert
    assert a.starts_at is not None
    return AlertRecord(
        incident_id=incident_id,
        fingerprint=a.fingerprint,
        starts_at=a.starts_at,
        status=AlertStatus(a.status),
        ends_at=a.ends_at,
        labels=dict(a.labels),
        annotations=dict(a.annotations),
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
    return TimelineEvent(
        incident_id,
        now,
        EventKind.ALERT,
        "alertmanager",
        "alert",
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
        TimelineEvent(
            inc_id,
            now,
            EventKind.OPEN,
            "alertmanager",
            "alert",
            f"incident opened: {v.title} ({v.severity_name}, rule {v.rule}, policy {pname})",
            {"severity": v.severity, "key": key, "policy": pname},
        )
    )
    for c in items:
        ch.upsert_alerts.append(_alert_record(inc_id, c, now))
        ch.timeline.append(_alert_event(inc_id, c, now))
    _schedule(inc, ch, now, d, reminders_from=now)
    return ch, IngestOutcome(key, "opened", inc_id, inc.severity, str(inc.status))


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
    if inc.policy.get("reminders", True):
        r = plan_reminder(inc.id, inc.epoch, inc.level, reminders_from, 1)
        if r is not None:
            ch.new_steps.append(r)


def _reopen(inc: IncidentRecord, ch: Changes, now: datetime, d: Directory) -> IncidentRecord:
    new = replace(
        inc,
        status=Status.TRIGGERED,
        epoch=inc.epoch + 1,
        acknowledged_at=None,
        mitigated_at=None,
        resolved_at=None,
    )
    ch.timeline.append(
        TimelineEvent(
            inc.id,
            now,
            EventKind.REOPEN,
            "alertmanager",
            "alert",
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
    ch.cancel_steps_of.append(
        CancelSteps(inc.id, None, f"superseded: severity raised to {v.severity}")
    )
    name = worst.alert.labels.get("alertname", "")
    msg = (
        f"severity raised {inc.severity} -> {v.severity} ({v.severity_name}) by {name}"
        f" (rule {v.rule}); policy {pname}"
    )
    if was_acked:
        msg += "; escalation restarts (was acknowledged)"
    ch.timeline.append(
        TimelineEvent(
            inc.id,
            now,
            EventKind.SEVERITY,
            "alertmanager",
            "alert",
            msg,
            {"from": inc.severity, "to": v.severity, "policy": pname},
        )
    )
    # Steps are due relative to the incident's start: tiers already past fire at once, and
    # people already paged are not paged again (the engine skips them).
    _schedule(new, ch, inc.opened_at, d, reminders_from=now, not_before=now)
    return new


def _resolve(
    inc: IncidentRecord,
    ch: Changes,
    now: datetime,
    actor: str,
    source: str,
    why: str,
    paged: Sequence[OutboxRecord],
) -> IncidentRecord:
    new = replace(inc, status=Status.RESOLVED, resolved_at=now)
    ch.cancel_steps_of.append(CancelSteps(inc.id, None, "incident resolved"))
    ch.cancel_outbox_of.append(CancelOutbox(inc.id, (OutboxKind.PAGE, OutboxKind.REMINDER)))
    ch.timeline.append(
        TimelineEvent(
            inc.id, now, EventKind.RESOLVE, actor, source, f"incident resolved: {why}", {}
        )
    )
    ch.new_outbox.extend(resolve_notices(new, paged, now))
    return new


def resolve_notices(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """A "resolved" message to everyone already paged, once per (person, channel) and resolve."""
    out: dict[tuple[str, str], OutboxRecord] = {}
    for row in paged:
        if row.kind not in (OutboxKind.PAGE, OutboxKind.REMINDER) or row.state not in (
            OutboxState.SENT,
            OutboxState.UNKNOWN,
        ):
            continue
        pair = (row.person, row.channel)
        if pair in out:
            continue
        out[pair] = OutboxRecord(
            id=f"{inc.id}:resolve:{inc.epoch}:{row.person}:{row.channel}",
            incident_id=inc.id,
            step_id=None,
            kind=OutboxKind.RESOLVE,
            tier=row.tier,
            round=row.round,
            target=row.target,
            person=row.person,
            channel=row.channel,
            created_at=now,
            not_before=now,
        )
    return list(out.values())
