"""Calendar feeds (RFC 5545): a schedule's or a person's shifts, for Google Calendar / Outlook.

``GET /calendar/{token}.ics`` carries no Authorization header (calendar apps cannot send one):
the long random token in the URL is the credential, revocable through the API. An unknown or
revoked token is a 404 that says nothing about which tokens exist. The token never reaches a
log line or an error body: tocsin keeps no access log, and error lines and bodies show the path
with the token replaced (``router.errors.loggable_path``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web
from icalendar import Calendar, Event

from escalation.engine.oncall import Feed
from router.errors import ApiError
from router.keys import RUNTIME

__all__ = ["CALENDAR_PREFIX", "add_calendar_routes", "render_feed"]

CALENDAR_PREFIX = "/calendar/"
DEFAULT_WEEKS = 8
MAX_WEEKS = 52


def _uid(schedule: str, person: str, start: datetime) -> str:
    # Stable across refreshes (a calendar app updates the event rather than duplicating it);
    # hashed so names with odd characters make a clean UID.
    raw = f"{schedule}\x00{person}\x00{start.astimezone(UTC).isoformat()}"
    return f"{hashlib.sha256(raw.encode()).hexdigest()[:32]}@tocsin"


def render_feed(feed: Feed, now: datetime) -> bytes:
    """The feed as an iCalendar document; times in each schedule's zone (with VTIMEZONEs)."""
    cal = Calendar()
    cal.add("prodid", "-//tocsin//on-call feed//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    title = f"On call: {feed.name}"
    cal.add("x-wr-calname", title)
    cal.add("name", title)
    for schedule, person, start, end in feed.shifts:
        zone = ZoneInfo(feed.zones.get(schedule, "UTC"))
        ev = Event()
        ev.add("uid", _uid(schedule, person, start))
        ev.add("dtstamp", now.astimezone(UTC))
        ev.add("dtstart", start.astimezone(zone))
        ev.add("dtend", end.astimezone(zone))
        summary = f"On call: {schedule}" if feed.kind == "person" else f"{person} on call"
        ev.add("summary", summary)
        ev.add("description", f"{person} is on call for schedule {schedule}.")
        ev.add("transp", "TRANSPARENT")  # being on call does not make anyone busy
        cal.add_component(ev)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


async def calendar_feed(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    weeks = DEFAULT_WEEKS
    if "weeks" in request.query:
        try:
            weeks = int(request.query["weeks"])
        except ValueError:
            weeks = 0
        if not 1 <= weeks <= MAX_WEEKS:
            raise ApiError(400, "bad query", f"weeks must be 1 to {MAX_WEEKS}", "weeks")
    feed = await rt.schedules.feed(request.match_info["token"], weeks)
    if feed is None:
        raise ApiError(404, "not found", "no such calendar feed")
    body = render_feed(feed, rt.clock.now())
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Cache-Control": "private, max-age=300", "Referrer-Policy": "no-referrer"},
    )


def add_calendar_routes(app: web.Application) -> None:
    # Also under server.public_url's path, as the feed URLs tocsin hands out say: a proxy at
    # https://ops.example.com/tocsin/ that keeps the prefix must reach the feed too.
    base = urlsplit(app[RUNTIME].loaded.config.server.public_url).path.rstrip("/")
    for prefix in dict.fromkeys(("", base)):
        path = f"{prefix}{CALENDAR_PREFIX}{{token:[A-Za-z0-9_-]{{1,200}}}}.ics"
        app.router.add_get(path, calendar_feed)
