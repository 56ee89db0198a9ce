"""Calendar feeds from the On-call page: ask for a schedule's or a person's ICS feed, see its
URL once, revoke it.

The same service calls as ``POST /api/v1/calendars`` and ``DELETE /api/v1/calendars/{id}``,
recorded under the signed-in viewer's name. The feed's URL (its token the only credential a
calendar app can send) is in the body of the one answer to the viewer's own request, sent
``no-store``; it is never put in a redirect, a link of another page, or a log line.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from escalation.engine.oncall import OverrideRefused, ScheduleNotFound
from router.console.oncall import show_oncall
from router.console.pages import Visit, error_page, page
from router.console.view import base_path, see_other
from router.keys import RUNTIME
from router.oncall_api import feed_url

__all__ = ["calendar_create", "calendar_revoke"]

_KINDS: tuple[Literal["schedule", "person"], ...] = ("schedule", "person")


@page("write")
async def calendar_create(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The feed form: ``feed`` is ``schedule:<name>`` or ``person:<name>``."""
    rt = request.app[RUNTIME]
    assert visit.viewer is not None  # the gate let a write viewer through
    post = await request.post()
    kind, _, name = str(post.get("feed", "")).partition(":")
    if kind not in _KINDS or not name:
        return await show_oncall(request, visit, status=400, problem="Choose a feed.")
    of: Literal["schedule", "person"] = "schedule" if kind == "schedule" else "person"
    try:
        _, secret = await rt.schedules.create_calendar_token(of, name, actor=visit.viewer.name)
    except ScheduleNotFound:
        return error_page(request, 404, f"No such {of}", f"No {of} {name[:100]!r}.")
    except OverrideRefused as e:
        problem = "No feed: " + "; ".join(p.message for p in e.problems)
        return await show_oncall(request, visit, status=400, problem=problem)
    return await show_oncall(request, visit, status=201, feed=feed_url(rt, secret))


@page("write")
async def calendar_revoke(request: web.Request, visit: Visit) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    assert visit.viewer is not None
    token_id = request.match_info["id"]
    if not await rt.schedules.revoke_calendar_token(token_id, actor=visit.viewer.name):
        problem = f"Calendar feed {token_id[:60]} is already revoked or never was."
        return await show_oncall(request, visit, status=404, problem=problem)
    return see_other(f"{base_path(request)}/oncall?done=revoked")
