"""The board: open incidents in the order a responder works them, one page at a time.

Triggered first, then acknowledged, then mitigated (most severe first within each, then
newest first), then the ones
resolved in the last ``RECENT`` when the board shows open incidents. Only the page shown reads
its incidents' steps and notifications: who was paged last and which step is due next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
_ORDER = {s: i for i, s in enumerate((*OPEN, Status.RESOLVED))}
_ALL = 1_000_000  # the store's limit when the board reads every incident it filters


@dataclass(frozen=True)
class BoardQuery:
    """What the board shows: statuses (empty: open), severities as level keys, team, text."""

    status: Sequence[Status] = ()
    severity: Sequence[str] = ()
    team: str | None = None
    text: str = ""
    page: int = 1
    per_page: int = 50

    def matches(self, inc: IncidentRecord) -> bool:
        if not self.text:
            return True
        needle = self.text.casefold()
        hay = (inc.title, inc.key, inc.team or "", f"#{inc.number}", inc.severity_name)
        return any(needle in h.casefold() for h in hay)


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
    statuses = list(q.status) or list(OPEN)
    found = await store.list_incidents(
        IncidentFilter(status=statuses, severity=q.severity, team=q.team, limit=_ALL)
    )
    found = [i for i in found if q.matches(i)]
    # Stable sort: the store's newest-first order is kept within a status and level (level keys
    # P0 … P4 sort most severe first).
    found.sort(key=lambda i: (_ORDER[i.status], i.severity))
    pages = max(1, -(-len(found) // q.per_page))
    page = min(max(1, q.page), pages)
    shown = found[(page - 1) * q.per_page : page * q.per_page]
    recent: list[IncidentRecord] = []
    if not q.status:
        resolved = await store.list_incidents(
            IncidentFilter(status=[Status.RESOLVED], severity=q.severity, team=q.team, limit=200)
        )
        recent = [
            i
            for i in resolved
            if i.resolved_at is not None and now - i.resolved_at <= RECENT and q.matches(i)
        ][:_RECENT_ROWS]
    rows = await _rows(store, [*shown, *recent])
    return BoardPage(rows[: len(shown)], len(found), page, pages, rows[len(shown) :])


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
