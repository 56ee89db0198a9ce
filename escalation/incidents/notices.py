"""Telling the people already paged: "resolved" messages, acks made elsewhere to PagerDuty, and
acks to the channels that keep one message per incident (Slack), which edit that message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from escalation.incidents.model import IncidentRecord, OutboxKind, OutboxRecord, OutboxState
from escalation.oncall.targets import (
    EDITED_CHANNELS,
    INCIDENT_ROOM,
    RINGING_CHANNELS,
    UPDATED_CHANNELS,
)

__all__ = [
    "message_acks",
    "message_updates",
    "pagerduty_acks",
    "resolve_notices",
    "ringing_stops",
    "room_archives",
]

# A page that left (or may have left): its person knows about the incident.
_REACHED = (OutboxState.SENT, OutboxState.UNKNOWN)


def resolve_notices(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """A "resolved" message to everyone already paged, once per (person, channel) and resolve."""
    out: dict[tuple[str, str], OutboxRecord] = {}
    for row in paged:
        if row.kind in (OutboxKind.PAGE, OutboxKind.REMINDER) and row.state in _REACHED:
            pair = (row.person, row.channel)
            if pair not in out:
                out[pair] = _notice(inc, row, OutboxKind.RESOLVE, row.channel, now)
    return list(out.values())


def pagerduty_acks(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """Tell PagerDuty about an ack made elsewhere, once per PagerDuty alert tocsin triggered."""
    out: dict[str, OutboxRecord] = {}
    for row in paged:
        if row.channel == "pagerduty" and row.kind == OutboxKind.PAGE and row.state in _REACHED:
            if row.person not in out:
                out[row.person] = _notice(inc, row, OutboxKind.ACKNOWLEDGE, "pagerduty", now)
    return list(out.values())


def message_acks(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """An ack to each message a channel in ``UPDATED_CHANNELS`` keeps for the incident (once per
    place or person and channel): its card then shows who acknowledged, wherever they did."""
    out: dict[tuple[str, str], OutboxRecord] = {}
    for row in paged:
        if (
            row.channel.split(":", 1)[0] in UPDATED_CHANNELS  # teams:<name> too
            and row.kind == OutboxKind.PAGE
            and row.state in _REACHED
        ):
            pair = (row.person, row.channel)
            if pair not in out:
                out[pair] = _notice(inc, row, OutboxKind.ACKNOWLEDGE, row.channel, now)
    return list(out.values())


def ringing_stops(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """A mitigation made before any acknowledgement: the pages still ringing on a channel in
    ``RINGING_CHANNELS`` are stopped as the acknowledgement would have stopped them."""
    acks = message_acks(inc, paged, now)
    return [r for r in acks if r.channel.split(":", 1)[0] in RINGING_CHANNELS]


def message_updates(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime, what: str
) -> list[OutboxRecord]:
    """An edit of each message a channel in ``EDITED_CHANNELS`` keeps for the incident, after
    ``what`` (mitigate, escalate, reopen, a note) changed it."""
    out: dict[tuple[str, str], OutboxRecord] = {}
    stamp = int(now.timestamp() * 1000)
    for row in paged:
        if row.channel in EDITED_CHANNELS and row.kind == OutboxKind.PAGE and row.state in _REACHED:
            pair = (row.person, row.channel)
            if pair not in out:
                notice = _notice(inc, row, OutboxKind.UPDATE, row.channel, now)
                # Several changes in one escalation run: one edit each.
                out[pair] = replace(notice, id=f"{notice.id}:{what}:{stamp}")
    return list(out.values())


def room_archives(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """Archive the incident's own chat channel once its level's monitoring window is over."""
    window = timedelta(seconds=float(inc.level.get("monitoring_window") or 0))
    out: dict[str, OutboxRecord] = {}
    for row in paged:
        room = row.person.partition(":")[2] == INCIDENT_ROOM
        if room and row.kind == OutboxKind.PAGE and row.state in _REACHED:
            if row.channel not in out:
                notice = _notice(inc, row, OutboxKind.ARCHIVE, row.channel, now)
                out[row.channel] = replace(notice, not_before=now + window)
    return list(out.values())


def _notice(
    inc: IncidentRecord, row: OutboxRecord, kind: OutboxKind, channel: str, now: datetime
) -> OutboxRecord:
    # One per (kind, escalation run, person, channel): a retried decision inserts nothing new.
    return OutboxRecord(
        id=f"{inc.id}:{kind}:{inc.epoch}:{row.person}:{channel}",
        incident_id=inc.id,
        step_id=None,
        kind=kind,
        tier=row.tier,
        round=row.round,
        target=row.target,
        person=row.person,
        channel=channel,
        created_at=now,
        not_before=now,
    )
