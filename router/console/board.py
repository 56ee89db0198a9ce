"""The board page (``/``), its rows as an htmx fragment, and the live change stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from escalation.engine.board import BoardQuery
from escalation.incidents.model import Status
from router.console.events import stream_changes
from router.console.pages import Visit, page
from router.console.view import console_of, render
from router.keys import RUNTIME

__all__ = ["board", "board_rows", "events"]

_STATUSES = ("open", *(s.value for s in Status))


@dataclass(frozen=True)
class Filters:
    """The board's filters as the URL carries them (``?status=&severity=&team=&q=&page=``)."""

    status: str = "open"
    severity: str = ""
    team: str = ""
    q: str = ""
    page: int = 1
    problem: str = ""  # a filter value we could not use, said on the page

    @classmethod
    def of(cls, request: web.Request) -> Filters:
        q = request.query
        problem = ""
        status = q.get("status", "open") or "open"
        if status not in _STATUSES:
            problem, status = f"unknown status {status[:40]!r}", "open"
        severity = q.get("severity", "").strip()
        if severity and request.app[RUNTIME].loaded.matrix.resolve(severity) is None:
            problem, severity = f"unknown severity {severity[:40]!r}", ""
        try:
            number = max(1, int(q.get("page", "1")))
        except ValueError:
            number = 1
        team, text = q.get("team", "").strip()[:200], q.get("q", "").strip()[:200]
        return cls(status, severity, team, text, number, problem)

    def query(self, request: web.Request) -> BoardQuery:
        matrix = request.app[RUNTIME].loaded.matrix
        level = matrix.resolve(self.severity) if self.severity else None
        return BoardQuery(
            status=() if self.status == "open" else (Status(self.status),),
            severity=(level,) if level else (),
            team=self.team or None,
            text=self.q,
            page=self.page,
        )

    def url(self, **change: str | int) -> str:
        """This board's query string with ``change`` applied (defaults left out)."""
        values = {
            "status": self.status,
            "severity": self.severity,
            "team": self.team,
            "q": self.q,
            "page": self.page,
        } | change
        kept = {k: v for k, v in values.items() if v not in ("", 1, "open")}
        return "?" + urlencode(kept) if kept else "?"


async def _context(request: web.Request) -> dict[str, Any]:
    rt = request.app[RUNTIME]
    filters = Filters.of(request)
    result = await rt.service.board(filters.query(request))
    matrix = rt.loaded.matrix
    return {
        "filters": filters,
        "result": result,
        "statuses": _STATUSES,
        "levels": [(key, level.name) for key, level in matrix.levels.items()],
    }


@page("read")
async def board(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The board: open incidents, filters, and the rows htmx refreshes on every change."""
    return render(request, "board.html", **await _context(request))


@page("read")
async def board_rows(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The board's rows alone, for htmx to swap in when the change stream says so."""
    return render(request, "board_rows.html", **await _context(request))


@page("read")
async def events(request: web.Request, visit: Visit) -> web.StreamResponse:
    """``text/event-stream``: a ``change`` event per change to any incident (the board's),
    with an ``incident-<id>`` event per incident it changed (that incident page's)."""
    return await stream_changes(request, console_of(request).feed)
