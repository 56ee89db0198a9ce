"""Calendar feeds: ICS (RFC 5545) per schedule and per person, opened by a revocable token.

The team's ``primary`` rotation hands off every Monday 09:00 London. Across the change to summer
time (Sunday 2026-03-29) the hand-off moves from 09:00 UTC to 08:00 UTC; the feed must say so.
Every feed is parsed with the ``icalendar`` library, as a calendar app would read it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from icalendar import Calendar

from tests.driver.app import READ, App
from tests.driver.team import MakeTeamApp

pytestmark = pytest.mark.usefixtures("strict_logs")

NOW = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def subscribe(app: App, **body: str) -> dict[str, Any]:
    status, made = await app.api("POST", "/api/v1/calendars", json=body)
    assert status == 201, made
    assert made["url"].startswith("http://tocsin.test/calendar/")
    return dict(made)


async def feed(app: App, url: str, query: str = "") -> tuple[int, bytes]:
    r = await app.client.get(url.removeprefix("http://tocsin.test") + query)
    return r.status, await r.read()


def events(body: bytes) -> list[tuple[str, datetime, datetime]]:
    cal = Calendar.from_ical(body)
    out = [
        (
            str(ev["SUMMARY"]),
            ev.decoded("DTSTART").astimezone(UTC),
            ev.decoded("DTEND").astimezone(UTC),
        )
        for ev in cal.walk("VEVENT")
    ]
    return sorted(out, key=lambda e: e[1])


async def test_schedule_feed_lists_shifts_and_overrides_across_the_dst_change(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app(start=NOW)
    status, _ = await app.api(
        "POST",
        "/api/v1/schedules/primary/overrides",
        json={"person": "carol", "start": "2026-03-28T10:00:00Z", "end": "2026-03-28T20:00:00Z"},
    )
    assert status == 201
    made = await subscribe(app, schedule="primary")
    status, body = await feed(app, made["url"], "?weeks=2")
    assert status == 200
    assert events(body) == [
        ("alice on call", NOW - timedelta(days=7), utc("2026-03-23T09:00")),
        ("bob on call", utc("2026-03-23T09:00"), utc("2026-03-28T10:00")),
        ("carol on call", utc("2026-03-28T10:00"), utc("2026-03-28T20:00")),
        ("bob on call", utc("2026-03-28T20:00"), utc("2026-03-30T08:00")),  # 09:00 BST
        ("alice on call", utc("2026-03-30T08:00"), utc("2026-04-06T08:00")),
        ("bob on call", utc("2026-04-06T08:00"), NOW + timedelta(weeks=2)),
    ]
    cal = Calendar.from_ical(body)
    # Times are written in the schedule's zone, with its VTIMEZONE, so calendars show 09:00.
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/London"]
    starts = [ev.decoded("DTSTART") for ev in cal.walk("VEVENT")]
    assert {(s.hour, s.minute) for s in starts[1:]} >= {(9, 0)}
    uids = [str(ev["UID"]) for ev in cal.walk("VEVENT")]
    assert len(set(uids)) == len(uids)


async def test_person_feed_lists_only_that_persons_shifts(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(start=NOW)
    made = await subscribe(app, person="alice")
    status, body = await feed(app, made["url"], "?weeks=2")
    assert status == 200
    assert events(body) == [
        ("On call: primary", NOW - timedelta(days=7), utc("2026-03-23T09:00")),
        ("On call: primary", utc("2026-03-30T08:00"), utc("2026-04-06T08:00")),
    ]


async def test_revoked_or_unknown_token_is_404_and_listing_never_shows_a_token(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app(start=NOW)
    made = await subscribe(app, schedule="primary")
    status, listed = await app.api("GET", "/api/v1/calendars", headers=READ)
    assert status == 200
    assert [c["id"] for c in listed["calendars"]] == [made["id"]]
    assert made["token"] not in str(listed)

    status, _ = await feed(app, "/calendar/" + "x" * 43 + ".ics")
    assert status == 404
    status, reply = await app.api("DELETE", f"/api/v1/calendars/{made['id']}", headers=READ)
    assert status == 403
    status, reply = await app.api("DELETE", f"/api/v1/calendars/{made['id']}")
    assert status == 200, reply
    status, body = await feed(app, made["url"])
    assert status == 404
    assert made["token"].encode() not in body
    status, _ = await app.api("DELETE", f"/api/v1/calendars/{made['id']}")
    assert status == 404


async def test_feed_requests_are_checked(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(start=NOW)
    made = await subscribe(app, schedule="primary")
    assert (await feed(app, made["url"], "?weeks=0"))[0] == 400
    assert (await feed(app, made["url"], "?weeks=many"))[0] == 400
    status, reply = await app.api("POST", "/api/v1/calendars", json={"schedule": "nope"})
    assert (status, reply["path"]) == (404, "schedule")
    status, reply = await app.api(
        "POST", "/api/v1/calendars", json={"schedule": "primary", "person": "alice"}
    )
    assert status == 400
    status, _ = await app.api("POST", "/api/v1/calendars", json={"person": "bob"}, headers=READ)
    assert status == 403
