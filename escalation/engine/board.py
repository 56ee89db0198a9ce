"""The board: open incidents in the order a responder works them, one page at a time.

Triggered first, then acknowledged, then mitigated (most severe first within each, then newest
first), then the ones resolved in the last ``RECENT`` when the board shows open incidents. Only
the page shown reads its incidents' steps and notifications: who was paged last and which step
is due next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from escalation.incidents.model import (
    IncidentRecord,
    OutboxKind,
    OutboxRecord,
    OutboxState,
    Status,
    StepRecord,
    StepState,
)
from escalation.store.base import IncidentFilter, Store

__all__ = ["OPEN", "RECENT", "BoardPage", "BoardQuery", "BoardRow", "read_board"]

OPEN = (Status.TRIGGERED, Status.ACKNOWLEDGED, Status.MITIGATED)
RECENT = timedelta(hours=24)  # how long a resolved incident stays on the open board
_RECENT_ROWS = 10


@dataclass(frozen=True)
class BoardQuery:
    """What the board shows: statuses (empty: open), severities as level keys, team, text."""

    status: Sequence[Status] = ()
    severity: Sequence[str] = ()
    team: str | None = None
    text: str = ""  # a case-insensitive part of the title, key or team, or the number
    page: int = 1
    per_page: int = 50

    def filter(self, status: Sequence[Status], **more: Any) -> IncidentFilter:
        return IncidentFilter(
            status=list(status),
            severity=self.severity,
            team=self.team,
            text=self.text.strip(),
            board_order=True,
            **more,
        )


@dataclass(frozen=True)
class BoardRow:
    incident: IncidentRecord
    paged: OutboxRecord | None  # the latest page sent (or being sent) to a person
    next_step: StepRecord | None  # the earliest pending step


@dataclass(frozen=True)
class BoardPage:
    rows: list[BoardRow]
    total: int  # incidents matching the query, over all pages
    page: int
    pages: int
    recent: list[BoardRow] = field(default_factory=list)  # resolved lately (open board only)


async def read_board(store: Store, q: BoardQuery, now: datetime) -> BoardPage:
    """One page of the board; filtering, ordering and paging happen in the store, so only the
    incidents shown are read (10,000 open incidents cost one count and one page)."""
    statuses = list(q.status) or list(OPEN)
    total = await store.count_incidents(q.filter(statuses))
    pages = max(1, -(-total // q.per_page))
    page = min(max(1, q.page), pages)
    shown = await store.list_incidents(
        q.filter(statuses, limit=q.per_page, offset=(page - 1) * q.per_page)
    )
    recent: list[IncidentRecord] = []
    if not q.status:
        # Newest opened first: an incident resolved lately was (almost always) opened lately.
        newest = q.filter([Status.RESOLVED], limit=_RECENT_ROWS * 20)
        resolved = await store.list_incidents(replace(newest, board_order=False))
        recent = sorted(
            (i for i in resolved if i.resolved_at is not None and now - i.resolved_at <= RECENT),
            key=lambda i: i.resolved_at or now,
            reverse=True,
        )[:_RECENT_ROWS]
    rows = await _rows(store, [*shown, *recent])
    return BoardPage(rows[: len(shown)], total, page, pages, rows[len(shown) :])


async def _rows(store: Store, incidents: list[IncidentRecord]) -> list[BoardRow]:
    out: list[BoardRow] = []
    async with store.transaction() as tx:
        for inc in incidents:
            steps = await tx.steps_of(inc.id)
            outbox = await tx.outbox_of(inc.id)
            pending = [s for s in steps if s.state == StepState.PENDING]
            out.append(BoardRow(inc, _last_page(outbox), min(pending, key=_due, default=None)))
    return out


def _due(s: StepRecord) -> datetime:
    return s.due_at


def _last_page(rows: list[OutboxRecord]) -> OutboxRecord | None:
    pages = [r for r in rows if r.kind == OutboxKind.PAGE and r.state != OutboxState.CANCELLED]
    return max(pages, key=lambda r: (r.sent_at or r.created_at, r.created_at), default=None)
