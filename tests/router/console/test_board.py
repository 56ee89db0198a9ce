"""The board: open incidents first, filters in the URL, pages, and the live change stream."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

from tests.driver.app import App, MakeApp
from tests.driver.payloads import alert, notification
from tests.router.console.conftest import ALICE_TOKEN, VIEWER_TOKEN, console_config, sign_in


def _group(name: str) -> str:
    return f'{{}}:{{alertname="{name}"}}'


async def _open(app: App, name: str, severity: str = "critical", team: str = "") -> None:
    labels = {"team": team} if team else None
    body = notification([alert(name, severity=severity, labels=labels)], group_key=_group(name))
    await app.post(body)


def _titles(html: str) -> list[str]:
    return re.findall(r'class="title" href="[^"]+">#\d+ ([^<]+)</a>', html)


def _names(html: str) -> list[str]:
    """The alert names of the board's incidents, in order (titles start with the name)."""
    return [re.split(r"[\s:]", t)[0] for t in _titles(html)]


async def test_the_board_shows_open_incidents_with_severity_name_age_and_next_step(
    console: App,
) -> None:
    await _open(console, "DiskFull")
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    console.clock.set(console.clock.now() + timedelta(minutes=3))
    html = await (await console.client.get("/")).text()
    assert _names(html) == ["DiskFull"]
    assert console.rt.loaded.matrix.levels["P0"].name in html
    assert "3m</time> old" in html
    assert "next: tier" in html


async def test_triggered_come_before_acknowledged_and_resolved_show_apart(console: App) -> None:
    for name in ("First", "Second", "Third"):
        await _open(console, name)
    await console.act("1", "ack")  # First
    await console.act("3", "resolve")  # Third
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    html = await (await console.client.get("/")).text()
    open_part, _, recent_part = html.partition("Resolved lately")
    assert _names(open_part) == ["Second", "First"]
    assert _names(recent_part) == ["Third"]


async def test_filters_live_in_the_url(console: App) -> None:
    await _open(console, "ApiDown", team="api")
    await _open(console, "DbSlow", severity="warning", team="db")
    await sign_in(console.client, "vic", VIEWER_TOKEN)

    async def titles(query: str) -> list[str]:
        html = await (await console.client.get("/" + query)).text()
        return _names(html)

    assert sorted(await titles("")) == ["ApiDown", "DbSlow"]
    assert await titles("?team=api") == ["ApiDown"]
    assert await titles("?q=dbslow") == ["DbSlow"]
    level = console.rt.loaded.matrix.levels["P0"].name
    assert await titles(f"?severity={level}") == ["ApiDown"]
    assert await titles("?status=resolved") == []
    html = await (await console.client.get("/?severity=nonsense")).text()
    assert "unknown severity" in html


async def test_the_board_is_paginated(tmp_path: Path, make_app: MakeApp) -> None:
    app = await make_app(console_config(tmp_path))
    for i in range(53):
        await _open(app, f"Alert{i:02d}")
    await sign_in(app.client, "vic", VIEWER_TOKEN)
    first = await (await app.client.get("/")).text()
    second = await (await app.client.get("/?page=2")).text()
    assert "53 incidents open" in first
    assert len(_titles(first)) == 50 and len(_titles(second)) == 3
    assert "page 1 of 2" in first and 'href="/?page=2"' in first
    assert not set(_titles(first)) & set(_titles(second))


async def test_the_change_stream_tells_of_a_new_incident(console: App) -> None:
    await sign_in(console.client, "alice", ALICE_TOKEN)
    r = await console.client.get("/events")
    assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
    await _open(console, "DiskFull")
    line = await asyncio.wait_for(r.content.readline(), 10)
    assert line == b"event: change\n"
    r.close()


async def test_the_console_is_served_under_the_public_urls_path(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await make_app(console_config(tmp_path, public_url="http://ops.example.com/tocsin"))
    await _open(app, "DiskFull")
    await sign_in(app.client, "vic", VIEWER_TOKEN, prefix="/tocsin")
    html = await (await app.client.get("/tocsin/")).text()
    assert 'href="/tocsin/incidents/' in html
    assert 'src="/tocsin/static/htmx-2.0.11.min.js"' in html
    # A proxy that strips the prefix reaches the same console at "/" (the browser still sees
    # /tocsin, so its cookies, scoped to /tocsin, go along there).
    assert "Sign in to tocsin" in await (await app.client.get("/")).text()
