"""The incident page and its buttons: the same service calls as the API, as the viewer."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from escalation.engine.service import IncidentDetail, IncidentNotFound
from escalation.incidents.actions import Action, IllegalTransition, applies
from escalation.incidents.model import StepState
from router.console.events import incident_event
from router.console.pages import Visit, error_page, page
from router.console.view import base_path, render, see_other
from router.keys import RUNTIME
from router.receiver import clean_text

__all__ = ["act", "incident_live", "incident_page", "is_web_link"]

log = logging.getLogger("tocsin.console")

_MAX_NOTE = 4000
# The buttons, in the order a responder reaches for them: action → label.
BUTTONS = {
    Action.ACK: "Acknowledge",
    Action.MITIGATE: "Mitigate",
    Action.RESOLVE: "Resolve",
    Action.ESCALATE: "Escalate now",
}
_DONE = {
    Action.ACK: "Acknowledged.",
    Action.MITIGATE: "Marked mitigated.",
    Action.RESOLVE: "Resolved.",
    Action.ESCALATE: "Escalated to the next tier.",
    Action.NOTE: "Note added.",
}
# The audit log line each action writes (as overrides and calendar feeds write theirs).
_AUDIT = {
    Action.ACK: "incident acknowledged",
    Action.MITIGATE: "incident mitigated",
    Action.RESOLVE: "incident resolved",
    Action.ESCALATE: "incident escalated",
    Action.NOTE: "incident note added",
}


def is_web_link(value: str) -> bool:
    """Only http(s) URLs become links: a ``javascript:`` or ``data:`` annotation stays text."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _context(request: web.Request, d: IncidentDetail) -> dict[str, Any]:
    """What the incident page and its live part show of ``d``."""
    here = f"{base_path(request)}/incidents/{quote(d.incident.id, safe='')}"
    event = incident_event(d.incident.id)
    return {
        "d": d,
        "pending": [s for s in d.steps if s.state == StepState.PENDING],
        "policy": json.dumps(d.incident.policy, indent=2, sort_keys=True, default=str),
        # Only the buttons that apply now; an older page's button still gets a clear 409.
        "buttons": {a: label for a, label in BUTTONS.items() if applies(a, d.incident.status)},
        "is_web_link": is_web_link,
        "here": here,
        # This incident's own change events, and those that may concern any incident.
        "listen": ", ".join(dict.fromkeys(f"sse:{e}" for e in (event, "incidents"))),
    }


async def _show(
    request: web.Request, ref: str, *, status: int = 200, message: str = "", problem: str = ""
) -> web.Response:
    rt = request.app[RUNTIME]
    d = await rt.service.detail(ref)
    if d is None:
        return error_page(request, 404, "No such incident", f"No incident {ref[:100]!r}.")
    context = _context(request, d)
    return render(
        request,
        "incident.html",
        status=status,
        message=message,
        problem=problem,
        live=False,
        **context,
    )


@page("read")
async def incident_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    done = request.query.get("done", "")
    message = _DONE.get(Action(done), "") if done in Action.__members__.values() else ""
    return await _show(request, request.match_info["id"], message=message)


@page("read")
async def incident_live(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The page's changing part alone (steps, timeline, alerts, notifications, and by id the
    status and buttons), for htmx to swap in when the change stream names the incident."""
    ref = request.match_info["id"]
    d = await request.app[RUNTIME].service.detail(ref)
    if d is None:
        return error_page(request, 404, "No such incident", f"No incident {ref[:100]!r}.")
    return render(request, "incident_live.html", live=True, **_context(request, d))


@page("write")
async def act(request: web.Request, visit: Visit) -> web.StreamResponse:
    """A button: act as the signed-in viewer, then show the incident (409: say why not)."""
    rt = request.app[RUNTIME]
    assert visit.viewer is not None  # the gate let a write viewer through
    ref = request.match_info["id"]
    try:
        action = Action(request.match_info["action"])
    except ValueError:
        action = Action.REOPEN  # refused just below, as any action without a button
    if action not in BUTTONS and action != Action.NOTE:
        return error_page(request, 404, "No such action", "That action has no button here.")
    form = await request.post()
    note = clean_text(str(form.get("note", "")))
    if len(note) > _MAX_NOTE or (action == Action.NOTE and not note.strip()):
        problem = f"A note needs some text (at most {_MAX_NOTE} characters)."
        return await _show(request, ref, status=400, problem=problem)
    try:
        inc = await rt.service.act(
            ref, action, actor=visit.viewer.name, source="console", note=note
        )
    except IncidentNotFound:
        return error_page(request, 404, "No such incident", f"No incident {ref[:100]!r}.")
    except IllegalTransition as e:
        problem = f"Not done: {e}"
        return await _show(request, ref, status=409, problem=problem)
    # Who did what, in the log as well as the timeline (the note's text stays in the timeline).
    extra = {"incident": inc.id, "number": inc.number, "actor": visit.viewer.name}
    log.info(_AUDIT[action], extra=extra | {"source": "console", "status": inc.status.value})
    where = f"{base_path(request)}/incidents/{quote(inc.id, safe='')}?done={action.value}"
    return see_other(where)
