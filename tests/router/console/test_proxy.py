"""Behind an auth proxy (oauth2-proxy): its headers name the visitor, only from trusted peers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.driver.app import App, MakeApp
from tests.driver.payloads import alert, notification
from tests.router.console.conftest import console_config, csrf_of


def _proxy(trusted: list[str], **more: Any) -> dict[str, Any]:
    return {"proxy": {"trusted_proxies": trusted, **more}}


async def _app(tmp: Path, make_app: MakeApp, trusted: list[str], **more: Any) -> App:
    app = await make_app(console_config(tmp, _proxy(trusted, **more)))
    await app.post(notification([alert("DiskFull")]))
    return app


ALICE = {"X-Forwarded-Email": "Alice@Example.com", "X-Forwarded-User": "alice-sso-id"}


async def test_a_trusted_proxys_email_is_mapped_to_a_person(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await _app(tmp_path, make_app, ["127.0.0.0/8"])
    r = await app.client.get("/", headers=ALICE)
    html = await r.text()
    assert r.status == 200
    assert "alice <small>(read)</small>" in html and "DiskFull" in html
    assert "Sign out" not in html  # the proxy owns the session


async def test_the_same_headers_from_an_untrusted_address_are_ignored(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await _app(tmp_path, make_app, ["10.0.0.0/8"])
    r = await app.client.get("/", headers=ALICE)
    assert r.status == 401
    text = await r.text()
    assert "Sign in to tocsin" in text and "DiskFull" not in text


async def test_someone_who_is_not_a_person_is_refused(tmp_path: Path, make_app: MakeApp) -> None:
    app = await _app(tmp_path, make_app, ["127.0.0.0/8"])
    r = await app.client.get("/", headers={"X-Forwarded-Email": "mallory@example.com"})
    assert r.status == 403
    assert "DiskFull" not in await r.text()


async def test_writers_may_act_and_are_recorded_by_person_name(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await _app(tmp_path, make_app, ["127.0.0.0/8"], writers=["alice"])
    inc = await app.incident("1")
    html = await (await app.client.get(f"/incidents/{inc['id']}", headers=ALICE)).text()
    assert "alice <small>(write)</small>" in html
    r = await app.client.post(
        f"/incidents/{inc['id']}/ack", data={"csrf": csrf_of(html)}, headers=ALICE
    )
    assert r.status == 200 and "Acknowledged." in await r.text()
    [ack] = [e for e in await app.timeline(inc["id"]) if e.kind.value == "ack"]
    assert ack.actor == "alice"
