"""Every console action is recorded under the signed-in identity: in the incident's timeline
(``actor``, source ``console``, as the API shows it), in the overrides' and feeds' audit trail
(as the API lists them), and in the log lines that say what was done."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tests.driver.app import READ, MakeApp
from tests.driver.payloads import alert, notification
from tests.driver.team import T0
from tests.router.console.conftest import ALICE_TOKEN, csrf_of, sign_in
from tests.router.console.test_oncall_page import oncall_config


async def test_every_console_action_is_recorded_with_the_signed_in_identity(
    tmp_path: Path, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = await make_app(oncall_config(tmp_path), start=T0)
    await app.post(notification([alert("DiskFull")]))
    inc = await app.incident("1")
    await sign_in(app.client, "alice", ALICE_TOKEN)
    csrf = csrf_of(await (await app.client.get("/oncall")).text())

    for action in ("notes", "ack", "escalate", "mitigate", "resolve"):
        r = await app.client.post(
            f"/incidents/{inc['id']}/{action}", data={"csrf": csrf, "note": "on it"}
        )
        assert r.status == 200, (action, await r.text())
    status, seen = await app.api("GET", f"/api/v1/incidents/{inc['id']}", headers=READ)
    assert status == 200
    by_console = [(e["kind"], e["actor"]) for e in seen["timeline"] if e["source"] == "console"]
    assert by_console == [
        ("note", "alice"),
        ("ack", "alice"),
        ("escalate", "alice"),
        ("mitigate", "alice"),
        ("resolve", "alice"),
    ]

    form = {"csrf": csrf, "person": "bob", "until": "2026-01-06T18:00", "zone": "UTC"}
    assert (await app.client.post("/oncall/primary/overrides", data=form)).status == 200
    status, listed = await app.api("GET", "/api/v1/schedules/primary/overrides", headers=READ)
    [made] = listed["overrides"]
    assert made["created_by"] == "alice"
    page = await (await app.client.get("/oncall")).text()
    remove = re.search(r'action="(/oncall/primary/overrides/[^"]+/remove)"', page)
    assert remove is not None
    assert (await app.client.post(remove.group(1), data={"csrf": csrf})).status == 200
    [gone] = await app.rt.store.overrides("primary", removed=True)
    assert (gone.id, gone.removed_by) == (made["id"], "alice")

    feed = {"csrf": csrf, "feed": "schedule:primary"}
    assert (await app.client.post("/oncall/calendars", data=feed)).status == 201
    status, feeds = await app.api("GET", "/api/v1/calendars", headers=READ)
    [cal] = feeds["calendars"]
    assert cal["created_by"] == "alice"
    r = await app.client.post(f"/oncall/calendars/{cal['id']}/revoke", data={"csrf": csrf})
    assert r.status == 200

    # One audit line per action, each naming who did it (and, for an incident, which).
    said = [
        (r.getMessage(), getattr(r, "actor", None), getattr(r, "incident", None))
        for r in caplog.records
        if r.getMessage().startswith(("incident", "schedule override", "calendar feed"))
    ]
    assert said == [
        ("incident note added", "alice", inc["id"]),
        ("incident acknowledged", "alice", inc["id"]),
        ("incident escalated", "alice", inc["id"]),
        ("incident mitigated", "alice", inc["id"]),
        ("incident resolved", "alice", inc["id"]),
        ("schedule override created", "alice", None),
        ("schedule override removed", "alice", None),
        ("calendar feed token created", "alice", None),
        ("calendar feed token revoked", "alice", None),
    ]
