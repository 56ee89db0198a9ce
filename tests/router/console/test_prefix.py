"""Behind a proxy at ``https://ops.example.com/tocsin/``: every URL a page hands the browser —
links, form actions, htmx requests, the SSE stream, static files, redirects, cookies — carries
``server.public_url``'s path, so nothing escapes to the proxy's root."""

from __future__ import annotations

import re
from pathlib import Path

from tests.driver.app import App, MakeApp
from tests.driver.payloads import alert, notification
from tests.driver.team import T0
from tests.router.console.conftest import ALICE_TOKEN, console_config, csrf_of, sign_in
from tests.router.console.test_oncall_page import SCHEDULES, feed_url_in

PREFIX = "/tocsin"
# Every attribute through which a page makes the browser request something.
_URL_ATTRS = re.compile(r'\s(href|src|action|hx-get|hx-post|sse-connect)="([^"]*)"')


def urls(html: str) -> list[tuple[str, str]]:
    found = _URL_ATTRS.findall(html)
    assert found, "the page has no URL at all"
    return found


def outside_the_prefix(html: str) -> list[tuple[str, str]]:
    """The page's own URLs (not the alert's http(s) links) that miss the prefix."""
    return [
        (attr, url)
        for attr, url in urls(html)
        if not re.match(r"https?://", url) and not url.startswith(f"{PREFIX}/")
    ]


async def _app(tmp: Path, make_app: MakeApp) -> App:
    # http, not https: the test client keeps Secure cookies to itself over plain http.
    path = console_config(
        tmp,
        public_url=f"http://ops.example.com{PREFIX}/",
        schedules=SCHEDULES,
        roles={"oncall": ["schedule:primary"], "lead": ["bob"]},
    )
    app = await make_app(path, start=T0)
    one = alert("DiskFull")
    one["annotations"]["runbook_url"] = "https://runbooks.example.com/disk"
    await app.post(notification([one]))
    await app.tick()
    return app


async def test_every_url_on_every_page_carries_the_public_urls_path(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await _app(tmp_path, make_app)
    signin = await app.client.get(f"{PREFIX}/")
    assert signin.status == 401
    assert outside_the_prefix(await signin.text()) == []
    assert signin.cookies["tocsin_csrf"]["path"] == PREFIX
    await sign_in(app.client, "alice", ALICE_TOKEN, prefix=PREFIX)
    [session] = [c for c in app.client.session.cookie_jar if c.key == "tocsin_session"]
    assert session["path"] == PREFIX
    inc = await app.incident("1")
    board = await (await app.client.get(f"{PREFIX}/")).text()
    # Made an override, so the On-call page has its remove form as well as the create form.
    form = {"csrf": csrf_of(board), "person": "bob", "until": "2026-01-06T18:00", "zone": "UTC"}
    made = await app.client.post(
        f"{PREFIX}/oncall/primary/overrides", data=form, allow_redirects=False
    )
    assert made.status == 303 and made.headers["Location"].startswith(f"{PREFIX}/oncall?")
    pages = {
        "board": board,
        "rows": await (await app.client.get(f"{PREFIX}/board/rows")).text(),
        "incident": await (await app.client.get(f"{PREFIX}/incidents/{inc['id']}")).text(),
        "oncall": await (await app.client.get(f"{PREFIX}/oncall")).text(),
        "status": await (await app.client.get(f"{PREFIX}/status")).text(),
        "rules": await (
            await app.client.get(f"{PREFIX}/rules", params={"labels": "alertname=DiskFull"})
        ).text(),
    }
    for name, html in pages.items():
        assert outside_the_prefix(html) == [], name
    # Not vacuous: the board's live parts and each page's forms are among the URLs checked.
    board_urls = dict(urls(board))
    assert board_urls["sse-connect"] == f"{PREFIX}/events"
    assert board_urls["hx-get"].startswith(f"{PREFIX}/board/rows")
    assert ("action", f"{PREFIX}/incidents/{inc['id']}/ack") in urls(pages["incident"])
    assert re.search(rf'action="{PREFIX}/oncall/primary/overrides/[^"]+/remove"', pages["oncall"])
    assert ("href", "https://runbooks.example.com/disk") in urls(pages["incident"])

    # The forms work where they point, and answer with a URL under the prefix.
    acked = await app.client.post(
        f"{PREFIX}/incidents/{inc['id']}/ack",
        data={"csrf": csrf_of(pages["incident"])},
        allow_redirects=False,
    )
    assert acked.status == 303
    assert acked.headers["Location"].startswith(f"{PREFIX}/incidents/")
    assert (await app.incident("1"))["status"] == "acknowledged"
    events = await app.client.get(f"{PREFIX}/events")
    assert events.status == 200 and events.headers["Content-Type"] == "text/event-stream"
    events.close()
    # A feed asked for here is served where its URL says, under the prefix too.
    asked = await app.client.post(
        f"{PREFIX}/oncall/calendars", data={"csrf": csrf_of(board), "feed": "schedule:primary"}
    )
    assert asked.status == 201
    url = feed_url_in(await asked.text())
    assert url.startswith(f"http://ops.example.com{PREFIX}/calendar/")
    feed = await app.client.get(url.removeprefix("http://ops.example.com"))
    assert feed.status == 200 and feed.content_type == "text/calendar"
    out = await app.client.post(
        f"{PREFIX}/signout", data={"csrf": csrf_of(board)}, allow_redirects=False
    )
    assert out.headers["Location"] == f"{PREFIX}/signin"
