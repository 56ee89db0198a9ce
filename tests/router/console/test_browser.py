"""The console in a real browser, as a responder uses it.

Sign in; see an incident appear on the board the moment Alertmanager posts it; open it and
acknowledge; look around as a read-only viewer; use the board on a phone-sized screen. Every
page is checked with axe-core (no serious or critical violation) and must not trip the
Content-Security-Policy.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.driver.app import AM, READ, App, MakeApp
from tests.driver.payloads import alert, notification
from tests.router.console.browser import axe_violations, describe, launch, screenshot
from tests.router.console.conftest import ALICE_TOKEN, VIEWER_TOKEN, console_config

WAIT = 15_000  # ms: how long a wait for the page may take on a loaded machine (not a threshold)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async for b in launch():
        yield b


# The Status page lists them (one never pinged, so "unknown"; one pinged by a test).
HEARTBEATS = {
    "backup": {"expect_every": "1h", "grace": "5m", "severity": "P2"},
    "watchdog": {"expect_every": "1m", "severity": "P1"},
}


@pytest.fixture
async def app(tmp_path: Path, make_app: MakeApp) -> App:
    return await make_app(console_config(tmp_path, heartbeats=HEARTBEATS))


class Tab:
    """One browser page on the app, remembering every CSP violation it reports."""

    def __init__(self, page: Any, app: App) -> None:
        self.page = page
        self.app = app
        self.csp: list[str] = []
        page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            self.csp.append(msg.text)

    def url(self, path: str) -> str:
        return str(self.app.client.make_url(path))

    async def sign_in(self, name: str, token: str) -> None:
        await self.page.goto(self.url("/"))
        await self.page.get_by_label("Name").fill(name)
        await self.page.get_by_label("Token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.get_by_role("heading", name="Incidents", exact=True).wait_for(timeout=WAIT)

    async def accessible(self) -> None:
        found = await axe_violations(self.page)
        assert found == [], describe(found)
        assert self.csp == []


async def _tab(browser: Any, app: App, **context: Any) -> Tab:
    ctx = await browser.new_context(**context)
    return Tab(await ctx.new_page(), app)


def _group(name: str) -> str:
    return f'{{}}:{{alertname="{name}"}}'


async def _fire(app: App, name: str, severity: str = "critical", team: str = "") -> None:
    labels = {"team": team} if team else None
    one = alert(name, severity=severity, labels=labels, instance=f"{name.lower()}-1")
    one["annotations"]["runbook_url"] = f"https://runbooks.example.com/{name}"
    await app.post(notification([one], group_key=_group(name)))


async def test_sign_in_and_a_new_incident_appears_live(browser: Any, app: App) -> None:
    tab = await _tab(browser, app)
    page = tab.page
    await page.goto(tab.url("/"))
    await page.get_by_role("heading", name="Sign in to tocsin").wait_for(timeout=WAIT)
    await tab.accessible()
    await tab.sign_in("alice", ALICE_TOKEN)
    await page.get_by_text("0 incidents open").wait_for(timeout=WAIT)
    await page.wait_for_function("() => window.htmx !== undefined", timeout=WAIT)
    # Mark this document: a reload would lose the mark.
    await page.evaluate("window.sameDocument = true")
    await _fire(app, "DiskFull", team="db")
    await page.get_by_role("link", name=re.compile("DiskFull")).wait_for(timeout=WAIT)
    assert await page.evaluate("window.sameDocument === true"), "the page was reloaded"
    await page.get_by_text("1 incident open").wait_for(timeout=WAIT)
    for name, severity, team in (("ApiLatency", "warning", "api"), ("QueueBacklog", "info", "")):
        await _fire(app, name, severity, team)
    await page.get_by_text("3 incidents open").wait_for(timeout=WAIT)
    await app.act("3", "ack")
    await app.tick()  # the first tiers fire: the board says who was paged
    await page.get_by_text("paged alice").first.wait_for(timeout=WAIT)
    # The ack has reached the board too: the screenshot shows the board settled.
    acked = page.locator("li.inc.st-acknowledged", has_text="QueueBacklog")
    await acked.wait_for(timeout=WAIT)
    await tab.accessible()
    await screenshot(page, "console-board")


async def test_open_an_incident_and_acknowledge_it(browser: Any, app: App) -> None:
    await _fire(app, "DiskFull", team="db")
    await app.tick()  # tier 0 pages the on-call; tiers 1-3 wait
    tab = await _tab(browser, app)
    page = tab.page
    await tab.sign_in("alice", ALICE_TOKEN)
    await page.get_by_role("link", name=re.compile("DiskFull")).click()
    await page.get_by_role("heading", name="Pending steps").wait_for(timeout=WAIT)
    pending = page.locator("#pending tbody tr", has_text="page")
    events = page.locator("#timeline li")
    assert await pending.count() == 3
    assert await page.locator("#notifications tbody tr").count() == 1
    before = await events.count()
    runbook = page.get_by_role("link", name="https://runbooks.example.com/DiskFull")
    assert await runbook.get_attribute("href") == "https://runbooks.example.com/DiskFull"
    await tab.accessible()
    await screenshot(page, "console-incident")
    await page.get_by_role("button", name="Acknowledge").click()
    await page.get_by_role("status").filter(has_text="Acknowledged.").wait_for(timeout=WAIT)
    assert await pending.count() == 0
    assert await events.count() == before + 1
    assert "by alice" in await events.last.inner_text()
    await tab.accessible()


# Counts the change streams this document opened (htmx's SSE extension says when one is open).
SSE_OPENS = "document.addEventListener('htmx:sseOpen', () => { window.sseOpens = (window.sseOpens || 0) + 1 })"


async def test_the_incident_page_shows_a_step_firing_and_someone_elses_ack_live(
    browser: Any, app: App
) -> None:
    await _fire(app, "DiskFull", team="db")  # tier 0 pages alice at once; tier 1 waits 5 min
    tab = await _tab(browser, app)
    page = tab.page
    await page.add_init_script(SSE_OPENS)
    await tab.sign_in("alice", ALICE_TOKEN)
    await page.get_by_role("link", name=re.compile("DiskFull")).click()
    await page.get_by_role("heading", name="Pending steps").wait_for(timeout=WAIT)
    await page.wait_for_function("() => window.sseOpens > 0", timeout=WAIT)
    # Mark this document: a reload would lose the mark.
    await page.evaluate("window.sameDocument = true")
    notified = page.locator("#notifications tbody tr")
    assert await notified.count() == 1
    events = page.locator("#timeline li")
    before = await events.count()

    await app.tick(timedelta(minutes=5))  # the engine pages tier 1: bob
    await notified.filter(has_text="bob via log").wait_for(timeout=WAIT)
    assert await notified.count() == 2
    await events.filter(has_text="tier 1").first.wait_for(timeout=WAIT)
    assert await events.count() > before

    await app.act("1", "ack")  # someone else acknowledges, through the API
    await page.locator("#status", has_text="acknowledged").wait_for(timeout=WAIT)
    assert await page.locator("#pending tbody tr", has_text="page").count() == 0
    assert "acknowledged" in await events.filter(has_text="ack by writer").last.inner_text()
    assert await page.get_by_role("button", name="Acknowledge").count() == 0
    assert await page.get_by_role("button", name="Resolve").count() == 1
    assert await page.evaluate("window.sameDocument === true"), "the page was reloaded"
    assert await page.get_by_label("Note").count() == 1  # the note form stays as it was
    await tab.accessible()


async def test_a_read_only_viewer_sees_no_buttons_and_cannot_forge_one(
    browser: Any, app: App
) -> None:
    await _fire(app, "DiskFull")
    tab = await _tab(browser, app)
    page = tab.page
    await tab.sign_in("vic", VIEWER_TOKEN)
    await page.get_by_role("link", name=re.compile("DiskFull")).click()
    await page.get_by_role("heading", name="Timeline").wait_for(timeout=WAIT)
    for label in ("Acknowledge", "Mitigate", "Resolve", "Escalate now", "Add note"):
        assert await page.get_by_role("button", name=label).count() == 0
    # The form token this browser holds (the sign-out form carries it), posted by hand.
    csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
    inc = await app.incident("1")
    r = await page.request.post(tab.url(f"/incidents/{inc['id']}/ack"), form={"csrf": csrf})
    assert r.status == 403
    assert (await app.incident("1"))["status"] == "triggered"
    await tab.accessible()


async def test_the_console_works_without_javascript(browser: Any, app: App) -> None:
    await _fire(app, "DiskFull", team="db")
    await _fire(app, "ApiLatency", "warning", "api")
    await app.tick()
    tab = await _tab(browser, app, java_script_enabled=False)
    page = tab.page
    await tab.sign_in("alice", ALICE_TOKEN)
    await page.get_by_text("2 incidents open").wait_for(timeout=WAIT)
    await page.get_by_label("Search").fill("diskfull")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"q=diskfull"), timeout=WAIT)
    assert await page.get_by_role("link", name=re.compile("ApiLatency")).count() == 0
    await page.get_by_role("link", name=re.compile("DiskFull")).click()
    await page.get_by_role("button", name="Acknowledge").click()
    await page.get_by_role("status").filter(has_text="Acknowledged.").wait_for(timeout=WAIT)
    assert (await app.incident("1"))["status"] == "acknowledged"
    for link, heading in (("On call", "On call"), ("Status", "Status"), ("Rules", "Rules")):
        await page.get_by_role("link", name=link, exact=True).click()
        await page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=WAIT)
    await page.get_by_label("Alert labels").fill("alertname=DiskFull\nseverity=critical")
    await page.get_by_role("button", name="Explain").click()
    await page.get_by_role("img", name=re.compile("Escalation of this alert")).wait_for(
        timeout=WAIT
    )


async def test_the_board_is_usable_on_a_phone(browser: Any, app: App) -> None:
    await _fire(app, "DiskFullOnAVeryLongHostNameThatWouldOverflowANarrowScreen", team="db")
    tab = await _tab(browser, app, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = tab.page
    await tab.sign_in("alice", ALICE_TOKEN)
    overflow = "() => document.documentElement.scrollWidth - window.innerWidth"
    assert await page.evaluate(overflow) <= 0, "the board scrolls sideways at 390 px"
    await page.get_by_label("Search").fill("diskfull")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"q=diskfull"), timeout=WAIT)
    await page.get_by_role("link", name=re.compile("DiskFull")).click()
    await page.get_by_role("button", name="Acknowledge").wait_for(timeout=WAIT)
    assert await page.evaluate(overflow) <= 0, "the incident page scrolls sideways at 390 px"
    await tab.accessible()


async def test_the_on_call_page_is_accessible_and_fits_a_phone(
    browser: Any, tmp_path: Path, make_app: MakeApp
) -> None:
    from tests.driver.team import T0
    from tests.router.console.test_oncall_page import oncall_config

    app = await make_app(oncall_config(tmp_path), start=T0)
    tab = await _tab(browser, app, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = tab.page
    await tab.sign_in("alice", ALICE_TOKEN)
    await page.goto(tab.url("/oncall"))
    await page.locator('p.now[data-schedule="primary"]').wait_for(timeout=WAIT)
    overflow = "() => document.documentElement.scrollWidth - window.innerWidth"
    assert await page.evaluate(overflow) <= 0, "the on-call page scrolls sideways at 390 px"
    await tab.accessible()


async def _on_call_now(app: App) -> list[str]:
    status, body = await app.api("GET", "/api/v1/oncall", headers=READ)
    assert status == 200, body
    [primary] = [s for s in body["schedules"] if s["schedule"] == "primary"]
    return [s["person"] for s in primary["now"]]


async def test_cover_someone_from_the_on_call_page_and_remove_it(
    browser: Any, tmp_path: Path, make_app: MakeApp
) -> None:
    from tests.driver.team import T0
    from tests.router.console.test_oncall_page import oncall_config

    # At T0 (Tuesday 10:00 UTC) alice is on call for primary; bob covers her until 18:00 UTC.
    app = await make_app(oncall_config(tmp_path), start=T0)
    tab = await _tab(browser, app)
    page = tab.page
    await tab.sign_in("alice", ALICE_TOKEN)
    await page.get_by_role("link", name="On call").click()
    now = page.locator('p.now[data-schedule="primary"]')
    await now.wait_for(timeout=WAIT)
    assert (await now.inner_text()).startswith("On call now: alice until")
    await page.get_by_label("Show times in").fill("UTC")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(re.compile(r"tz=UTC"), timeout=WAIT)
    await page.get_by_label("Who covers").select_option("bob")
    await page.get_by_label("Only while this person is on call").select_option("alice")
    await page.get_by_label("Until (UTC)").fill("2026-01-06T18:00")
    await page.get_by_role("button", name="Create override").click()
    await page.get_by_role("status").filter(has_text="Override created.").wait_for(timeout=WAIT)
    text = await now.inner_text()
    assert text.startswith("On call now: bob until Tue 06 Jan 18:00 (UTC)"), text
    # Stored and in force for everyone at once: the API says so too.
    assert await _on_call_now(app) == ["bob"]
    await tab.accessible()
    await page.get_by_role("button", name=re.compile("Remove the override of bob")).click()
    await page.get_by_role("status").filter(has_text="Override removed.").wait_for(timeout=WAIT)
    assert (await now.inner_text()).startswith("On call now: alice until")
    assert await page.get_by_role("button", name=re.compile("Remove the override")).count() == 0
    assert await _on_call_now(app) == ["alice"]
    await tab.accessible()


async def test_get_a_calendar_feed_from_the_on_call_page_and_read_its_shifts(
    browser: Any, tmp_path: Path, make_app: MakeApp
) -> None:
    from icalendar import Calendar

    from tests.driver.team import T0
    from tests.router.console.test_oncall_page import oncall_config

    app = await make_app(oncall_config(tmp_path), start=T0)
    tab = await _tab(browser, app)
    page = tab.page
    await tab.sign_in("alice", ALICE_TOKEN)
    await page.get_by_role("link", name="On call").click()
    await page.get_by_label("Feed of").select_option(label="schedule primary")
    await page.get_by_role("button", name="Get a calendar feed").click()
    url = await page.get_by_label("Feed URL").input_value(timeout=WAIT)
    assert url.startswith("http://tocsin.test/calendar/")
    await tab.accessible()
    # What a calendar app does with it: fetch (no cookie, no header) and parse.
    feed = await app.client.get(url.removeprefix("http://tocsin.test"))
    assert feed.status == 200 and feed.content_type == "text/calendar"
    cal = Calendar.from_ical(await feed.read())
    shifts = [(str(e["SUMMARY"]), e.decoded("DTSTART").astimezone(UTC)) for e in cal.walk("VEVENT")]
    # alice's week (from Monday 09:00 London), then bob's, then alice's again.
    assert shifts[:3] == [
        ("alice on call", datetime(2026, 1, 5, 9, tzinfo=UTC)),
        ("bob on call", datetime(2026, 1, 12, 9, tzinfo=UTC)),
        ("alice on call", datetime(2026, 1, 19, 9, tzinfo=UTC)),
    ]
    await page.goto(tab.url("/oncall"))
    assert url not in await page.content()  # shown once, to the one who asked
    await page.get_by_role("button", name=re.compile("Revoke the feed of schedule primary")).click()
    await page.get_by_role("status").filter(has_text="Calendar feed revoked").wait_for(timeout=WAIT)
    assert (await app.client.get(url.removeprefix("http://tocsin.test"))).status == 404
    await tab.accessible()


async def test_the_status_and_error_pages_are_accessible(browser: Any, app: App) -> None:
    await _fire(app, "DiskFull")
    await app.tick()
    tab = await _tab(browser, app)
    await tab.sign_in("vic", VIEWER_TOKEN)
    r = await app.client.get("/api/v1/heartbeats/backup/ping", headers=AM)
    assert r.status == 200
    await tab.page.get_by_role("link", name="Status").click()
    await tab.page.get_by_role("heading", name="Engine").wait_for(timeout=WAIT)
    beats = tab.page.get_by_role("heading", name="Heartbeats")
    await beats.wait_for(timeout=WAIT)
    row = tab.page.get_by_role("row").filter(has_text="backup")
    assert "ok" in await row.inner_text()
    assert "unknown" in await tab.page.get_by_role("row").filter(has_text="watchdog").inner_text()
    await tab.accessible()
    # The error page too (what a mistyped or stale link lands on).
    await tab.page.goto(tab.url("/incidents/999999"))
    await tab.page.get_by_role("heading", name="No such incident").wait_for(timeout=WAIT)
    await tab.accessible()


async def test_the_rules_page_explains_and_charts_accessibly(
    browser: Any, tmp_path: Path, make_app: MakeApp
) -> None:
    roles = {"oncall": ["alice"], "lead": ["bob"], "manager": ["bob"], "vp": ["alice"]}
    # A Monday afternoon: the default matrix's manager and VP tiers run in business hours.
    monday = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    app = await make_app(console_config(tmp_path, roles=roles), start=monday)
    tab = await _tab(browser, app)
    page = tab.page
    await tab.sign_in("vic", VIEWER_TOKEN)
    await page.get_by_role("link", name="Rules").click()
    await page.get_by_label("Alert labels").fill("alertname=DiskFull\nseverity=critical")
    await page.get_by_role("button", name="Explain").click()
    chart = page.get_by_role("img", name=re.compile("Escalation of this alert"))
    await chart.wait_for(timeout=WAIT)
    bars = page.locator("#simulation rect.bar")
    tiers = app.rt.loaded.matrix.levels["P0"].tiers
    assert [await b.get_attribute("data-tier") for b in await bars.all()] == [
        str(i) for i in range(len(tiers))
    ]
    assert await page.locator("#simulation line.marker").count() == 0
    await tab.accessible()
    await page.get_by_label("Acknowledged after").fill("10")
    await page.get_by_role("button", name="Explain").click()
    await page.locator('#simulation line.marker[data-kind="ack"]').wait_for(
        state="attached", timeout=WAIT
    )
    # The matrix pages tier 1 at +5m; the ack at +10m stops the rest.
    assert [await b.get_attribute("data-tier") for b in await bars.all()] == ["0", "1"]
    # Mitigated at +10m instead of acknowledged: the same stop, its own marker.
    await page.get_by_label("Acknowledged after").fill("")
    await page.get_by_label("Mitigated after").fill("10")
    await page.get_by_role("button", name="Explain").click()
    await page.locator('#simulation line.marker[data-kind="mitigate"]').wait_for(
        state="attached", timeout=WAIT
    )
    assert await page.locator('#simulation line.marker[data-kind="ack"]').count() == 0
    assert [await b.get_attribute("data-tier") for b in await bars.all()] == ["0", "1"]
    await tab.accessible()
