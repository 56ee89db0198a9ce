"""The On-call page over HTTP: now and next in the viewer's zone and the schedule's, two weeks,
and overrides made and removed from the page (write scope, CSRF, the same service calls).

alice (a console user with scope write, living in Berlin) and bob rotate weekly on ``primary``
(London) from Monday 2026-01-05 09:00; at T0 (Tuesday 10:00 UTC) alice is on call.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar

from tests.driver.app import READ, App, MakeApp
from tests.driver.config import log_people
from tests.driver.payloads import alert, notification
from tests.driver.team import T0
from tests.router.console.conftest import (
    ALICE_TOKEN,
    VIEWER_TOKEN,
    console_config,
    csrf_of,
    sign_in,
)

pytestmark = pytest.mark.usefixtures("strict_logs")

SCHEDULES = {
    "primary": {
        "timezone": "Europe/London",
        "members": ["alice", "bob"],
        "start": "2026-01-05T09:00:00",
        "shift": "1w",
    }
}


def oncall_config(tmp: Path) -> Path:
    people = log_people(["alice", "bob", "carol"])
    people["alice"]["timezone"] = "Europe/Berlin"
    return console_config(
        tmp,
        people=people,
        schedules=SCHEDULES,
        roles={"oncall": ["schedule:primary"], "lead": ["person:carol"]},
    )


@pytest.fixture
async def app(tmp_path: Path, make_app: MakeApp) -> App:
    return await make_app(oncall_config(tmp_path), start=T0)


def now_line(html: str) -> str:
    m = re.search(r'<p class="now" data-schedule="primary">(.*?)</p>', html, re.S)
    assert m is not None, html
    return re.sub(r"<[^>]+>", "", " ".join(m.group(1).split()))


async def page(app: App, query: str = "") -> str:
    r = await app.client.get(f"/oncall{query}")
    assert r.status == 200, await r.text()
    return await r.text()


async def test_now_next_and_two_weeks_in_the_viewers_zone_and_the_schedules(app: App) -> None:
    await sign_in(app.client, "alice", ALICE_TOKEN)
    html = await page(app)
    # alice lives in Berlin: hand-offs in her zone first, then London's.
    assert now_line(html) == (
        "On call now: alice until Mon 12 Jan 10:00 (Europe/Berlin) · Mon 12 Jan 09:00 (Europe/London)"
    )
    assert "Next: <strong>bob</strong>" in html
    assert html.count("<tr><td><time") == 3  # alice's rest of week, bob's week, alice again
    html = await page(app, "?tz=UTC")
    assert "until Mon 12 Jan 09:00 (UTC) · Mon 12 Jan 09:00 (Europe/London)" in now_line(html)
    assert "<td>lead</td><td>carol</td>" in html


async def test_an_override_from_the_page_changes_who_is_on_call_and_can_be_removed(
    app: App,
) -> None:
    await sign_in(app.client, "alice", ALICE_TOKEN)
    html = await page(app)
    form = {
        "csrf": csrf_of(html),
        "person": "carol",
        "replaces": "",
        "from": "",
        "until": "2026-01-06T18:00",  # Berlin wall time: 17:00 UTC
        "zone": "Europe/Berlin",
    }
    r = await app.client.post("/oncall/primary/overrides", data=form, allow_redirects=False)
    assert r.status == 303, await r.text()
    assert r.headers["Location"] == "/oncall?done=created&tz=Europe%2FBerlin"
    [made] = await app.rt.store.overrides("primary")
    assert (made.person, made.ends_at, made.created_by) == (
        "carol",
        datetime(2026, 1, 6, 17, 0, tzinfo=UTC),
        "alice",
    )
    html = await page(app, "?done=created")
    assert now_line(html).startswith("On call now: carol until Tue 06 Jan 18:00 (Europe/Berlin)")
    assert "Override created." in html

    remove = re.search(r'action="(/oncall/primary/overrides/[^"]+/remove)"', html)
    assert remove is not None
    r = await app.client.post(
        remove.group(1), data={"csrf": csrf_of(html), "zone": "UTC"}, allow_redirects=False
    )
    assert r.status == 303
    assert now_line(await page(app)).startswith("On call now: alice")
    [gone] = await app.rt.store.overrides("primary", removed=True)
    assert (gone.removed_by, gone.removed_at) == ("alice", T0)


async def test_bad_or_overlapping_overrides_are_explained_on_the_page(app: App) -> None:
    await sign_in(app.client, "alice", ALICE_TOKEN)
    csrf = csrf_of(await page(app))
    base = {"csrf": csrf, "person": "bob", "replaces": "", "from": "", "zone": "UTC"}
    r = await app.client.post("/oncall/primary/overrides", data=base | {"until": "soon"})
    assert r.status == 400
    assert "until: expected a date and time" in await r.text()
    r = await app.client.post(
        "/oncall/primary/overrides", data=base | {"until": "2026-01-06T09:00"}
    )
    assert r.status == 400
    assert "has already passed" in await r.text()
    ok = await app.client.post(
        "/oncall/primary/overrides",
        data=base | {"until": "2026-01-06T15:00"},
        allow_redirects=False,
    )
    assert ok.status == 303
    r = await app.client.post(
        "/oncall/primary/overrides", data=base | {"person": "carol", "until": "2026-01-06T16:00"}
    )
    assert r.status == 409
    assert "remove it first" in await r.text()


async def test_read_only_viewers_see_no_form_and_forged_posts_are_refused(app: App) -> None:
    await sign_in(app.client, "vic", VIEWER_TOKEN)
    html = await page(app)
    assert "Create override" not in html and "Remove" not in html
    form = {"csrf": csrf_of(html), "person": "bob", "until": "2026-01-06T18:00", "zone": "UTC"}
    r = await app.client.post("/oncall/primary/overrides", data=form)
    assert r.status == 403
    assert await app.rt.store.overrides() == []


async def test_without_sign_in_or_csrf_nothing_is_shown_or_done(app: App) -> None:
    r = await app.client.get("/oncall")
    assert r.status == 401
    assert "alice" not in await r.text()
    await sign_in(app.client, "alice", ALICE_TOKEN)
    r = await app.client.post(
        "/oncall/primary/overrides",
        data={"csrf": "forged", "person": "bob", "until": "2026-01-06T18:00", "zone": "UTC"},
    )
    assert r.status == 403
    assert await app.rt.store.overrides() == []


def feed_url_in(html: str) -> str:
    m = re.search(r'<input id="feed-url" class="url" value="([^"]+)" readonly>', html)
    assert m is not None, "the page shows no feed URL"
    return m.group(1)


async def test_a_feed_asked_for_on_the_page_lists_the_next_shifts_and_can_be_revoked(
    app: App,
) -> None:
    await sign_in(app.client, "alice", ALICE_TOKEN)
    html = await page(app)
    assert "No feeds yet." in html
    r = await app.client.post(
        "/oncall/calendars", data={"csrf": csrf_of(html), "feed": "person:alice"}
    )
    assert r.status == 201
    shown = await r.text()
    url = feed_url_in(shown)
    assert url.startswith("http://tocsin.test/calendar/") and url.endswith(".ics")
    assert r.headers["Cache-Control"] == "no-store"
    feed = await app.client.get(url.removeprefix("http://tocsin.test"))
    assert feed.status == 200
    cal = Calendar.from_ical(await feed.read())
    shifts = [
        (
            str(e["SUMMARY"]),
            e.decoded("DTSTART").astimezone(UTC),
            e.decoded("DTEND").astimezone(UTC),
        )
        for e in cal.walk("VEVENT")
    ]
    # alice's weeks on primary: this one, then every other one (bob has those between).
    assert shifts[:2] == [
        ("On call: primary", utc(2026, 1, 5, 9), utc(2026, 1, 12, 9)),
        ("On call: primary", utc(2026, 1, 19, 9), utc(2026, 1, 26, 9)),
    ]
    # Later pages list the feed, never its URL; who asked for it is recorded.
    listed = await page(app)
    secret = url.rsplit("/", 1)[1].removesuffix(".ics")
    assert secret not in listed
    [made] = await app.rt.schedules.calendar_tokens()
    assert (made.kind, made.name, made.created_by) == ("person", "alice", "alice")
    assert f'<tr data-feed="{made.id}"><td>person alice</td><td>alice</td>' in listed
    r = await app.client.post(
        f"/oncall/calendars/{made.id}/revoke",
        data={"csrf": csrf_of(listed)},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/oncall?done=revoked"
    assert secret not in r.headers["Location"]
    assert (await app.client.get(url.removeprefix("http://tocsin.test"))).status == 404
    assert "Calendar feed revoked" in await page(app, "?done=revoked")
    assert await app.rt.schedules.calendar_tokens() == []


async def test_read_only_viewers_cannot_ask_for_a_feed(app: App) -> None:
    await sign_in(app.client, "vic", VIEWER_TOKEN)
    html = await page(app)
    assert "Get a calendar feed" not in html
    r = await app.client.post(
        "/oncall/calendars", data={"csrf": csrf_of(html), "feed": "schedule:primary"}
    )
    assert r.status == 403
    assert await app.rt.schedules.calendar_tokens() == []


def utc(year: int, month: int, day: int, hour: int) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


async def test_an_override_made_on_the_page_is_what_the_engine_pages_at_once(app: App) -> None:
    await sign_in(app.client, "alice", ALICE_TOKEN)
    form = {
        "csrf": csrf_of(await page(app)),
        "person": "carol",
        "replaces": "alice",
        "from": "",
        "until": "2026-01-06T18:00",
        "zone": "UTC",
    }
    r = await app.client.post("/oncall/primary/overrides", data=form, allow_redirects=False)
    assert r.status == 303
    # No reload, no restart: the next page on schedule:primary goes to carol.
    reply = await app.post(notification([alert("DiskFull", severity="critical")]))
    await app.run_until(T0 + timedelta(minutes=1))
    inc = await app.incident(reply["incidents"][0]["incident"])
    assert [(tier, person) for _, tier, person, _ in app.pages(inc)] == [(0, "carol")]
    status, body = await app.api("GET", "/api/v1/oncall", headers=READ)
    assert status == 200
    [primary] = body["schedules"]
    assert [s["person"] for s in primary["now"]] == ["carol"]
