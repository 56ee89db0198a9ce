"""When a channel fails a person, the next one in their ``fallback`` order (phone → SMS → email)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from escalation.incidents.model import OutboxRecord, OutboxState
from escalation.oncall.people import Person

__all__ = ["fallback_row", "fallback_to", "tried_channels"]


def tried_channels(row: OutboxRecord) -> list[str]:
    """Channels already used in this row's fallback chain (ids chain as ``base>sms>email``)."""
    parts = row.id.split(">")
    first = parts[0].rsplit(":", 1)[-1]
    return [first, *parts[1:]]


def fallback_row(row: OutboxRecord, person: Person | None, now: datetime) -> OutboxRecord | None:
    """The next row to try for ``row``'s person, or None when the chain is exhausted."""
    if person is None or not person.fallback:
        return None
    tried = set(tried_channels(row))
    order = person.fallback
    start = order.index(row.channel) + 1 if row.channel in order else 0
    for channel in order[start:]:
        if channel not in tried:
            return fallback_to(row, channel, now)
    return None


def fallback_to(row: OutboxRecord, channel: str, now: datetime) -> OutboxRecord:
    """A fresh row carrying ``row``'s message over ``channel`` (the id records the chain)."""
    return replace(
        row,
        id=f"{row.id}>{channel}",
        channel=channel,
        created_at=now,
        not_before=now,
        state=OutboxState.PENDING,
        attempts=0,
        last_error="",
        sent_at=None,
        provider_id="",
    )
