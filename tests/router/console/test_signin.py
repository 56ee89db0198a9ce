"""Who may see the console: the sign-in page for strangers, sessions for token holders."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest

from tests.driver.app import App, MakeApp
from tests.driver.config import READ_TOKEN, WRITE_TOKEN
from tests.driver.payloads import alert, notification
from tests.router.console.conftest import ALICE_TOKEN, console_config, csrf_of, sign_in


async def test_a_stranger_gets_the_sign_in_page_and_never_data(console: App) -> None:
    await console.post(notification([alert("SecretProjectDown")]))
    for path in ("/", "/board/rows", "/incidents/1", "/events"):
        r = await console.client.get(path)
        text = await r.text()
        assert r.status == 401, path
        assert "Sign in to tocsin" in text
        assert "SecretProjectDown" not in text
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await console.client.get(path)).status == 200


async def test_every_console_route_answers_a_stranger_with_the_sign_in_page(
    tmp_path: Path, make_app: MakeApp
) -> None:
    # Behind a proxy at /tocsin: every route exists twice, with and without the prefix.
    app = await make_app(console_config(tmp_path, public_url="http://ops.example.com/tocsin"))
    await app.post(notification([alert("SecretProjectDown")]))
    inc = await app.incident("1")
    csrf = csrf_of(await (await app.client.get("/signin")).text())
    values = {"id": inc["id"], "action": "ack", "schedule": "oncall"}
    gated = [
        r
        for r in app.client.server.app.router.routes()
        if getattr(r.handler, "__module__", "").startswith("router.console")
        and r.method != "HEAD"
        and not re.search(
            r"/(static/|signin$|signout$)", r.resource.canonical if r.resource else ""
        )
    ]
    seen = set()
    for route in gated:
        assert route.resource is not None
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values[m.group(1)], route.resource.canonical)
        r = await app.client.request(route.method, path, data={"csrf": csrf, "note": "x"})
        text = await r.text()
        assert r.status == 401, (route.method, path, r.status)
        assert "Sign in to tocsin" in text, path
        assert "SecretProjectDown" not in text, path
        seen.add(route.resource.canonical.removeprefix("/tocsin"))
    # Not vacuous: every page and every form is among them, at both roots.
    assert len(gated) == 2 * len(seen)
    assert {"/", "/board/rows", "/events", "/oncall", "/status", "/rules"} <= seen
    assert {"/incidents/{id}/{action}", "/oncall/{schedule}/overrides"} <= seen
    assert (await app.incident("1"))["status"] == "triggered"
    assert await app.rt.store.overrides() == []


async def test_the_session_cookie_is_secure_when_the_public_url_is_https(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await make_app(console_config(tmp_path, public_url="https://tocsin.example.com"))
    page = await app.client.get("/signin")
    r = await app.client.post(
        "/signin",
        data={"name": "alice", "token": ALICE_TOKEN, "csrf": csrf_of(await page.text())},
        # The client keeps Secure cookies to itself over http: hand this one over as a
        # browser on https would.
        cookies={"tocsin_csrf": page.cookies["tocsin_csrf"].value},
        allow_redirects=False,
    )
    assert r.status == 303
    assert page.cookies["tocsin_csrf"]["secure"]
    assert r.cookies["tocsin_session"]["secure"]


async def test_signing_in_gives_a_strict_session_cookie_and_the_board(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    page = await console.client.get("/signin")
    r = await console.client.post(
        "/signin",
        data={
            "name": "alice",
            "token": ALICE_TOKEN,
            "next": "/",
            "csrf": csrf_of(await page.text()),
        },
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = r.cookies["tocsin_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # the public URL is http here
    assert ALICE_TOKEN not in cookie.value
    board = await console.client.get("/")
    assert board.status == 200
    assert "DiskFull on db-1" in await board.text() or "DiskFull" in await board.text()


async def test_a_wrong_token_is_refused_and_never_logged(
    console: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    page = await console.client.get("/signin")
    wrong = "not-alices-token-but-close-0123"
    r = await console.client.post(
        "/signin", data={"name": wrong, "token": wrong, "csrf": csrf_of(await page.text())}
    )
    assert r.status == 401
    assert "do not match" in await r.text()
    assert wrong not in caplog.text
    assert (await console.client.get("/")).status == 401


async def test_the_sign_in_form_needs_its_csrf_token(console: App) -> None:
    await console.client.get("/signin")
    r = await console.client.post("/signin", data={"name": "alice", "token": ALICE_TOKEN})
    assert r.status == 403
    assert (await console.client.get("/")).status == 401


async def test_a_session_expires(console: App) -> None:
    await sign_in(console.client, "alice", ALICE_TOKEN)
    assert (await console.client.get("/")).status == 200
    console.clock.set(console.clock.now() + timedelta(hours=12, seconds=1))
    assert (await console.client.get("/")).status == 401


async def test_a_forged_session_cookie_is_refused(console: App) -> None:
    await sign_in(console.client, "alice", ALICE_TOKEN)
    jar = console.client.session.cookie_jar
    [cookie] = [c for c in jar if c.key == "tocsin_session"]
    body, _, sig = cookie.value.partition(".")
    for forged in (f"{body}x.{sig}", f"{body}.{sig[:-2]}AA", body):
        jar.clear()
        jar.update_cookies({"tocsin_session": forged})
        assert (await console.client.get("/")).status == 401
    jar.clear()
    jar.update_cookies({"tocsin_session": cookie.value})
    assert (await console.client.get("/")).status == 200


async def test_after_sign_in_the_visitor_returns_where_they_were_going_but_never_off_site(
    console: App,
) -> None:
    page = await console.client.get("/signin")
    token = csrf_of(await page.text())
    for wanted, landed in (("/incidents/1", "/incidents/1"), ("//evil.example/", "/")):
        r = await console.client.post(
            "/signin",
            data={"name": "alice", "token": ALICE_TOKEN, "next": wanted, "csrf": token},
            allow_redirects=False,
        )
        assert r.headers["Location"] == landed
        console.client.session.cookie_jar.clear(lambda c: c.key == "tocsin_session")


async def test_removing_or_demoting_a_token_ends_its_sessions_at_the_next_reload(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await make_app(console_config(tmp_path))
    await sign_in(app.client, "alice", ALICE_TOKEN)
    html = await (await app.client.get("/")).text()
    assert "alice <small>(write)</small>" in html
    demoted = {"users": [{"name": "alice", "token": ALICE_TOKEN, "scope": "read"}]}
    console_config(tmp_path, demoted)
    await app.rt.reload()
    assert "alice <small>(read)</small>" in await (await app.client.get("/")).text()
    rotated = {"users": [{"name": "alice", "token": "a-new-token-for-alice-0123456789"}]}
    console_config(tmp_path, rotated)
    await app.rt.reload()
    assert (await app.client.get("/")).status == 401


async def test_api_tokens_sign_in_with_their_scope_unless_the_config_says_not(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await make_app(console_config(tmp_path))
    for name, token, scope in (("writer", WRITE_TOKEN, "write"), ("reader", READ_TOKEN, "read")):
        await sign_in(app.client, name, token)
        assert f"{name} <small>({scope})</small>" in await (await app.client.get("/")).text()
        app.client.session.cookie_jar.clear(lambda c: c.key == "tocsin_session")
    users = [{"name": "alice", "token": ALICE_TOKEN, "scope": "write"}]
    console_config(tmp_path, {"users": users, "api_tokens": False})
    await app.rt.reload()
    page = await app.client.get("/signin")
    r = await app.client.post(
        "/signin",
        data={"name": "writer", "token": WRITE_TOKEN, "csrf": csrf_of(await page.text())},
    )
    assert r.status == 401 and "do not match" in await r.text()
    await sign_in(app.client, "alice", ALICE_TOKEN)  # the console's own users still may


async def test_every_console_form_is_refused_without_this_browsers_csrf_token(
    console: App,
) -> None:
    await console.post(notification([alert("DiskFull")]))
    inc = await console.incident("1")
    await sign_in(console.client, "alice", ALICE_TOKEN)
    values = {"id": inc["id"], "action": "ack", "schedule": "primary"}
    posts = [
        r.resource.canonical
        for r in console.client.server.app.router.routes()
        if getattr(r.handler, "__module__", "").startswith("router.console")
        and r.method == "POST"
        and r.resource is not None
    ]
    assert {"/signin", "/signout", "/incidents/{id}/{action}", "/oncall/calendars"} <= set(posts)
    for template in posts:
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values.get(m.group(1), "x"), template)
        for sent in ({}, {"csrf": "x" * 32}):
            form = sent | {"feed": "person:alice", "person": "bob", "until": "2026-12-01T00:00"}
            r = await console.client.post(path, data=form, allow_redirects=False)
            assert r.status == 403, (path, sent, r.status)
            assert "Form refused" in await r.text()
    assert (await console.incident("1"))["status"] == "triggered"
    assert await console.rt.schedules.calendar_tokens() == []
    assert (await console.client.get("/")).status == 200  # the sign-out was refused too
