"""The console adds no secret to any page, log line, header or URL — except the calendar-feed
URL, in the one answer to the person who asked for it.

Every console route is driven, at the root and behind a proxy at ``/tocsin``, signed in
with a console token and with an API token, signing in wrongly too (a token typed into the name
field), acting, making and removing an override, asking for a feed, fetching and revoking it,
signing out. Every log record at every level, every response (status line's body, ``Location``,
``Set-Cookie`` and every other header) and ``/metrics`` are searched for each secret, raw and
base64-encoded.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from config.load import load_config
from router.serve import runner_options
from tests.driver.app import App, Client, start_app
from tests.driver.config import READ_TOKEN, RECEIVER_TOKEN, WRITE_TOKEN
from tests.driver.logs import EveryLine
from tests.driver.payloads import alert, notification
from tests.driver.team import T0
from tests.router.console.conftest import ALICE_TOKEN, VIEWER_TOKEN, console_config, csrf_of
from tests.router.console.test_oncall_page import SCHEDULES, feed_url_in

SESSION_SECRET = "console-session-secret-0123456789abcdef"
SECRETS = [ALICE_TOKEN, VIEWER_TOKEN, SESSION_SECRET, WRITE_TOKEN, READ_TOKEN, RECEIVER_TOKEN]
HOST = "http://ops.example.com"


def forms(secret: str) -> list[str]:
    """The secret as it would show: raw, or base64 (standard or URL-safe, unpadded)."""
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


class Browser:
    """The test client as a browser: every answer kept, in full, to be searched."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.answers: list[tuple[str, str]] = []  # (what was asked, everything answered)

    async def go(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        kw.setdefault("allow_redirects", False)
        r = await self.app.client.request(method, path, **kw)
        body = "" if r.content_type == "text/event-stream" else await r.text()
        r.close()
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.answers.append((f"{method} {path}", f"{r.status}\n{headers}\n\n{body}"))
        return r.status, body

    async def sign_in(self, base: str, name: str, token: str) -> str:
        _, page = await self.go("GET", f"{base}/signin")
        status, _ = await self.go(
            "POST",
            f"{base}/signin",
            data={"name": name, "token": token, "next": f"{base}/", "csrf": csrf_of(page)},
        )
        assert status == 303
        return csrf_of((await self.go("GET", f"{base}/oncall"))[1])


async def _app(tmp: Path, base: str) -> App:
    console = {
        "users": [
            {"name": "alice", "token": ALICE_TOKEN, "scope": "write"},
            {"name": "vic", "token": VIEWER_TOKEN, "scope": "read"},
        ],
        "session_secret": SESSION_SECRET,
    }
    path = console_config(
        tmp,
        console,
        public_url=f"{HOST}{base}",
        schedules=SCHEDULES,
        roles={"oncall": ["schedule:primary"], "lead": ["bob"]},
    )
    # Served as `tocsin serve` serves it (no access log), not as the test server would.
    options = runner_options(load_config(path).config.server)
    options.pop("handler_cancellation")  # the test server sets it itself

    async def serve(app: web.Application) -> Client:
        server = TestServer(app)
        await server.start_server(**options)
        client: Client = TestClient(server)
        await client.start_server()
        return client

    return await start_app(path, serve=serve, start=T0)


async def _drive(b: Browser, base: str) -> list[str]:
    """Everything a responder does, at ``base``; returns the feed URLs it was shown."""
    await b.go("GET", f"{base}/")
    _, page = await b.go("GET", f"{base}/signin")
    for name, token in ((ALICE_TOKEN, "wrong"), ("alice", VIEWER_TOKEN), ("vic", WRITE_TOKEN)):
        await b.go(
            "POST", f"{base}/signin", data={"name": name, "token": token, "csrf": csrf_of(page)}
        )
    feeds = []
    for name, token in (("alice", ALICE_TOKEN), ("writer", WRITE_TOKEN)):
        csrf = await b.sign_in(base, name, token)
        inc = await b.app.incident("1")
        for path in ("/", "/board/rows", f"/incidents/{inc['id']}", "/status", "/events"):
            await b.go("GET", f"{base}{path}")
        await b.go("GET", f"{base}/rules", params={"labels": "alertname=DiskFull"})
        for action in ("notes", "ack", "escalate"):
            await b.go(
                "POST", f"{base}/incidents/{inc['id']}/{action}", data={"csrf": csrf, "note": "x"}
            )
        form = {"csrf": csrf, "person": "bob", "until": "2026-01-06T18:00", "zone": "UTC"}
        await b.go("POST", f"{base}/oncall/primary/overrides", data=form)
        _, page = await b.go("GET", f"{base}/oncall")
        remove = re.search(r'action="([^"]+/remove)"', page)
        assert remove is not None
        await b.go("POST", remove.group(1), data={"csrf": csrf})
        status, shown = await b.go(
            "POST", f"{base}/oncall/calendars", data={"csrf": csrf, "feed": "schedule:primary"}
        )
        assert status == 201
        feeds.append(feed_url_in(shown))
        path = feeds[-1].removeprefix(HOST)
        assert (await b.go("GET", path))[0] == 200
        assert (await b.go("GET", path.replace(".ics", "x.ics")))[0] == 404
        _, page = await b.go("GET", f"{base}/oncall")
        revoke = re.search(r'action="([^"]+/revoke)"', page)
        assert revoke is not None
        await b.go("POST", revoke.group(1), data={"csrf": csrf})
        await b.go("POST", f"{base}/signout", data={"csrf": csrf})
    csrf = await b.sign_in(base, "vic", VIEWER_TOKEN)
    await b.go("POST", f"{base}/oncall/calendars", data={"csrf": csrf, "feed": "person:vic"})
    await b.go("POST", f"{base}/signout", data={"csrf": csrf})
    return feeds


@pytest.mark.parametrize("base", ["", "/tocsin"])
async def test_the_console_shows_logs_and_sends_no_secret_but_the_feed_asked_for(
    tmp_path: Path, every_log_line: EveryLine, base: str
) -> None:
    app = await _app(tmp_path, base)
    try:
        await app.post(notification([alert("DiskFull")]))
        b = Browser(app)
        feeds = await _drive(b, base)
        metrics = await (await app.client.get("/metrics")).text()
    finally:
        await app.client.close()
        await app.rt.stop()

    assert len(b.answers) > 30 and any("console sign-in" in line for line in every_log_line.lines)
    for secret in SECRETS:
        for form in forms(secret):
            logged = [line[:300] for line in every_log_line.lines if form in line]
            assert not logged, f"{secret!r} was logged:\n" + "\n".join(logged)
            sent = [asked for asked, answer in b.answers if form in answer]
            assert not sent, f"{secret!r} was sent in answer to {sent}"
            assert form not in metrics
    # Each feed's token: in the answer to the request for it (and the feed's own URL), nowhere else.
    assert len(feeds) == 2
    for url in feeds:
        token = url.rsplit("/", 1)[1].removesuffix(".ics")
        assert not [line for line in every_log_line.lines if token in line]
        carriers = [asked for asked, answer in b.answers if token in answer]
        assert len(carriers) == 1 and carriers[0].endswith("/oncall/calendars"), carriers
        assert token not in metrics
