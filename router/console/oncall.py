"""The On-call page: who is on call now and next, two weeks ahead, and overrides made here.

The override form and the remove buttons make the same service calls as the API
(``rt.schedules``), recorded under the signed-in viewer's name. Times are shown in the viewer's
zone (``?tz=``, else the viewer's own ``people:`` timezone, else UTC) and in each schedule's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from escalation.engine.oncall import OverrideNotFound, OverrideRefused, ScheduleNotFound
from escalation.incidents.oncall_view import ScheduleView
from escalation.oncall.calendars import get_zone, local_to_utc
from escalation.oncall.overrides import StoredOverride
from router.console.pages import Visit, error_page, page
from router.console.view import base_path, render, see_other
from router.keys import RUNTIME
from router.receiver import clean_text

__all__ = ["oncall_page", "override_create", "override_remove", "show_oncall"]

TWO_WEEKS = timedelta(days=14)
_DONE = {
    "created": "Override created.",
    "removed": "Override removed.",
    "revoked": "Calendar feed revoked: its URL no longer works.",
}


@dataclass(frozen=True)
class ScheduleBlock:
    """One schedule on the page: now and next, its two weeks, its overrides."""

    view: ScheduleView
    zone: ZoneInfo
    shifts: list[tuple[datetime, datetime, str]]
    overrides: list[StoredOverride]


def _viewer_zone(request: web.Request, visit: Visit) -> tuple[str, str]:
    """(zone name, problem): ``?tz=``, else the viewer's person's zone, else UTC."""
    asked = request.query.get("tz", "").strip()
    if asked:
        try:
            return get_zone(asked).key, ""
        except ValueError as e:
            return "UTC", str(e)
    people = request.app[RUNTIME].directory.people
    person = people.get(visit.viewer.name) if visit.viewer is not None else None
    return (person.timezone if person is not None else "UTC"), ""


async def show_oncall(
    request: web.Request,
    visit: Visit,
    *,
    status: int = 200,
    message: str = "",
    problem: str = "",
    form: dict[str, str] | None = None,
    feed: str = "",
) -> web.Response:
    """The page; ``feed`` is a calendar-feed URL the viewer just asked for (shown this once)."""
    rt = request.app[RUNTIME]
    zone_name, zone_problem = _viewer_zone(request, visit)
    now, schedules, roles = await rt.schedules.view()
    blocks = []
    for v in schedules:
        shifts = await rt.schedules.shifts(v.name, now, now + TWO_WEEKS)
        overrides = await rt.schedules.overrides(v.name)
        blocks.append(ScheduleBlock(v, ZoneInfo(v.timezone), shifts, overrides))
    viewer_zone = ZoneInfo(zone_name)

    def both(at: datetime | None, zone: ZoneInfo) -> str:
        """``at`` in the viewer's zone, and in ``zone`` when that differs."""
        if at is None:
            return "beyond what is shown"
        mine = at.astimezone(viewer_zone).strftime("%a %d %b %H:%M")
        text = f"{mine} ({zone_name})"
        if zone.key != zone_name:
            text += f" · {at.astimezone(zone).strftime('%a %d %b %H:%M')} ({zone.key})"
        return text

    return render(
        request,
        "oncall.html",
        status=status,
        blocks=blocks,
        roles=roles,
        both=both,
        viewer_zone=zone_name,
        viewer_tz=viewer_zone,
        people=sorted(rt.directory.people),
        message=message,
        problem=problem or (f"Ignored tz: {zone_problem}" if zone_problem else ""),
        form=form or {},
        quote=quote,
        feed=feed,
        feeds=await rt.schedules.calendar_tokens(),
    )


@page("read")
async def oncall_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    return await show_oncall(request, visit, message=_DONE.get(request.query.get("done", ""), ""))


def _instant(text: str, zone: ZoneInfo, what: str) -> datetime:
    """A form's ``datetime-local`` value (wall time in ``zone``) or an ISO instant."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{what}: expected a date and time, got {text[:40]!r}") from None
    return t if t.tzinfo is not None else local_to_utc(t, zone)


def _back(request: web.Request, done: str, zone: str) -> web.Response:
    query = urlencode({"done": done, "tz": zone})
    return see_other(f"{base_path(request)}/oncall?{query}")


@page("write")
async def override_create(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The override form: the viewer covers (or names someone to cover) until a time."""
    rt = request.app[RUNTIME]
    assert visit.viewer is not None  # the gate let a write viewer through
    name = request.match_info["schedule"]
    post = await request.post()
    form = {k: clean_text(str(post.get(k, ""))).strip()[:200] for k in _FIELDS}
    form["schedule"] = name
    try:
        zone = get_zone(form["zone"] or "UTC")
        end = _instant(form["until"], zone, "until")
        start = _instant(form["from"], zone, "from") if form["from"] else None
    except ValueError as e:
        return await show_oncall(request, visit, status=400, problem=str(e), form=form)
    try:
        await rt.schedules.create_override(
            name,
            form["person"],
            start,
            end,
            replaces=form["replaces"] or None,
            actor=visit.viewer.name,
        )
    except ScheduleNotFound:
        return error_page(request, 404, "No such schedule", f"No schedule {name[:100]!r}.")
    except OverrideRefused as e:
        status = 409 if any(p.conflict for p in e.problems) else 400
        problem = "Not created: " + "; ".join(f"{p.path}: {p.message}" for p in e.problems)
        return await show_oncall(request, visit, status=status, problem=problem, form=form)
    return _back(request, "created", zone.key)


_FIELDS = ("person", "from", "until", "replaces", "zone")


@page("write")
async def override_remove(request: web.Request, visit: Visit) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    assert visit.viewer is not None
    name, override_id = request.match_info["schedule"], request.match_info["id"]
    post = await request.post()
    try:
        await rt.schedules.remove_override(name, override_id, actor=visit.viewer.name)
    except ScheduleNotFound:
        return error_page(request, 404, "No such schedule", f"No schedule {name[:100]!r}.")
    except OverrideNotFound:
        problem = f"Override {override_id[:60]} is already gone."
        return await show_oncall(request, visit, status=404, problem=problem)
    return _back(request, "removed", str(post.get("zone", "UTC"))[:64])
