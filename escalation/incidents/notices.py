"""Telling the people already paged: "resolved" messages, acks made elsewhere to PagerDuty, and
acks to the channels that keep one message per incident (Slack), which edit that message."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from escalation.incidents.model import IncidentRecord, OutboxKind, OutboxRecord, OutboxState
from escalation.oncall.targets import (
    EDITED_CHANNELS,
    INCIDENT_ROOM,
    RINGING_CHANNELS,
    SERVICE_TARGETS,
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
    rows = _first_reached(
        paged, _per_place, kinds=(OutboxKind.PAGE, OutboxKind.REMINDER), waiting=True
    )
    return [_notice(inc, row, OutboxKind.RESOLVE, row.channel, now) for row in rows]


def pagerduty_acks(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """Tell PagerDuty about an ack made elsewhere, once per PagerDuty alert tocsin triggered."""
    pd = [row for row in paged if row.channel == "pagerduty"]
    rows = _first_reached(pd, lambda row: row.person)
    return [_notice(inc, row, OutboxKind.ACKNOWLEDGE, "pagerduty", now) for row in rows]


def message_acks(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """An ack to each message a channel in ``UPDATED_CHANNELS`` keeps for the incident (once per
    place or person and channel): its card then shows who acknowledged, wherever they did."""
    # By the channel's kind: each ``teams:<name>`` webhook is its own place.
    kept = [row for row in paged if row.channel.split(":", 1)[0] in UPDATED_CHANNELS]
    rows = _first_reached(kept, _per_place, waiting=True)
    return [_notice(inc, row, OutboxKind.ACKNOWLEDGE, row.channel, now) for row in rows]


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
    stamp = int(now.timestamp() * 1000)
    out: list[OutboxRecord] = []
    edited = [r for r in paged if r.channel in EDITED_CHANNELS]
    for row in _first_reached(edited, _per_place, waiting=True):
        notice = _notice(inc, row, OutboxKind.UPDATE, row.channel, now)
        # Several changes in one escalation run: one edit each.
        out.append(replace(notice, id=f"{notice.id}:{what}:{stamp}"))
    return out


def room_archives(
    inc: IncidentRecord, paged: Sequence[OutboxRecord], now: datetime
) -> list[OutboxRecord]:
    """Archive the incident's own chat channel once its level's monitoring window is over."""
    window = timedelta(seconds=float(inc.level.get("monitoring_window") or 0))
    rooms = [row for row in paged if row.person.partition(":")[2] == INCIDENT_ROOM]
    return [
        replace(_notice(inc, row, OutboxKind.ARCHIVE, row.channel, now), not_before=now + window)
        for row in _first_reached(rooms, lambda row: row.channel)
    ]


def _per_place(row: OutboxRecord) -> tuple[str, str]:
    return (row.person, row.channel)


def _first_reached(
    rows: Sequence[OutboxRecord],
    key: Callable[[OutboxRecord], Hashable],
    kinds: tuple[OutboxKind, ...] = (OutboxKind.PAGE,),
    *,
    waiting: bool = False,
) -> list[OutboxRecord]:
    """The first of ``rows`` per ``key`` among those of ``kinds`` that reached someone, in
    order: one notice per place however many pages went there. With ``waiting``, a channel
    card still waiting for its slot (``_card_waiting``) counts as reached."""
    first: dict[Hashable, OutboxRecord] = {}
    for row in rows:
        if row.kind in kinds and (row.state in _REACHED or (waiting and _card_waiting(row))):
            first.setdefault(key(row), row)
    return list(first.values())


def _card_waiting(row: OutboxRecord) -> bool:
    """A card for a chat channel target (``slack:#incidents``) not posted yet: the channel's
    rate limit holds it while other incidents' cards go (a storm). What happens meanwhile is
    told to it as if it had gone, so each change makes a row that edits it and threads the
    news once it is there, and an acknowledgement or resolve that cancels the page still posts
    the card (showing that state) rather than leaving the channel without the incident. People
    (a page not sent is moot once acknowledged) and an incident's own channel (made with its
    first row, which no other incident's delays) are not such cards."""
    place, _, name = row.person.partition(":")
    return (
        row.state == OutboxState.PENDING
        and row.channel in EDITED_CHANNELS
        and place in SERVICE_TARGETS
        and name != INCIDENT_ROOM
    )


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
