"""The incident page and its buttons: the same actions as the API, recorded as the viewer."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.driver.app import START, App
from tests.driver.payloads import alert, notification
from tests.router.console.conftest import ALICE_TOKEN, VIEWER_TOKEN, csrf_of, sign_in


async def _incident_page(app: App, ref: str = "1") -> tuple[str, str]:
    inc = await app.incident(ref)
    r = await app.client.get(f"/incidents/{inc['id']}")
    assert r.status == 200
    return inc["id"], await r.text()


def _pending_pages(html: str) -> int:
    pending = html.partition('id="pending"')[2].partition("</section>")[0]
    return len(re.findall(r"<td>\d+</td><td>page</td>", pending))


async def test_acknowledge_from_the_page_is_recorded_as_the_signed_in_person(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await sign_in(console.client, "alice", ALICE_TOKEN)
    inc_id, html = await _incident_page(console)
    assert _pending_pages(html) == 3  # tier 0 paged at ingest; the later tiers wait
    r = await console.client.post(
        f"/incidents/{inc_id}/ack", data={"csrf": csrf_of(html)}, allow_redirects=False
    )
    assert r.status == 303
    after = await (await console.client.get(r.headers["Location"])).text()
    assert "Acknowledged." in after and _pending_pages(after) == 0
    assert "Acknowledge</button>" not in after  # no longer applies
    [event] = [e for e in await console.timeline(inc_id) if e.kind.value == "ack"]
    assert (event.actor, event.source) == ("alice", "console")


async def test_an_illegal_transition_is_a_clear_409(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await console.act("1", "resolve")
    await sign_in(console.client, "alice", ALICE_TOKEN)
    inc_id, html = await _incident_page(console)
    r = await console.client.post(f"/incidents/{inc_id}/ack", data={"csrf": csrf_of(html)})
    assert r.status == 409
    assert "Not done:" in await r.text()


async def test_a_note_is_added_as_the_viewer(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await sign_in(console.client, "alice", ALICE_TOKEN)
    inc_id, html = await _incident_page(console)
    note = "restarted <b>db-1</b>"
    r = await console.client.post(
        f"/incidents/{inc_id}/notes", data={"csrf": csrf_of(html), "note": note}
    )
    text = await r.text()
    assert r.status == 200 and "Note added." in text
    assert "restarted &lt;b&gt;db-1&lt;/b&gt;" in text  # escaped, never markup


async def test_a_read_only_viewer_sees_no_buttons_and_a_forged_post_is_refused(
    console: App,
) -> None:
    await console.post(notification([alert("DiskFull")]))
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    inc_id, html = await _incident_page(console)
    assert "Acknowledge</button>" not in html and "Add note" not in html
    r = await console.client.post(f"/incidents/{inc_id}/ack", data={"csrf": csrf_of(html)})
    assert r.status == 403
    assert (await console.incident(inc_id))["status"] == "triggered"


async def test_a_post_without_this_browsers_csrf_token_is_refused(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await sign_in(console.client, "alice", ALICE_TOKEN)
    inc_id, html = await _incident_page(console)
    token = csrf_of(html)
    # The last character changed (to "A", or to "B" when it was "A": then it would be the same).
    wrong = token[:-1] + ("B" if token.endswith("A") else "A")
    for sent in ({}, {"csrf": "x" * 43}, {"csrf": wrong}):
        r = await console.client.post(f"/incidents/{inc_id}/ack", data=sent)
        assert r.status == 403
    assert (await console.incident(inc_id))["status"] == "triggered"


async def test_only_http_links_become_links(console: App) -> None:
    one = alert("DiskFull")
    one["annotations"] = {
        "runbook_url": "https://runbooks.example.com/disk",
        "dashboard": "javascript:alert(1)",
    }
    one["generatorURL"] = "javascript:alert(2)"
    await console.post(notification([one]))
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    _, html = await _incident_page(console)
    assert '<a href="https://runbooks.example.com/disk"' in html
    assert not re.search(r'href="javascript:', html)
    assert "javascript:alert(1)" in html  # shown as text
    assert "Source (generatorURL)" not in html


def _section(html: str, name: str) -> str:
    return html.partition(f'id="{name}"')[2].partition("</section>")[0]


def _rows(html: str, name: str) -> list[list[str]]:
    """The cells of a section's table, tags stripped, one list per row."""
    body = _section(html, name).partition("<tbody>")[2]
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


async def test_escalate_now_pages_the_next_tier_at_once(console: App) -> None:
    """Tier 0 (the on-call, alice) is paged at ingest; tier 1 (the lead, bob) would wait 5
    minutes. Escalate now makes it due on the spot and the engine pages bob without the clock
    moving."""
    await console.post(notification([alert("DiskFull")]))
    await sign_in(console.client, "alice", ALICE_TOKEN)
    inc_id, html = await _incident_page(console)
    assert [r[:2] for r in _rows(html, "notifications")] == [["page (tier 0)", "alice via log"]]
    assert _rows(html, "pending")[0][:3] == ["1", "page", "2026-11-22 13:05:00 UTC (in 5m)"]
    r = await console.client.post(
        f"/incidents/{inc_id}/escalate",
        data={"csrf": csrf_of(html), "note": "need the lead"},
        allow_redirects=False,
    )
    assert r.status == 303
    after = await (await console.client.get(r.headers["Location"])).text()
    assert "Escalated to the next tier." in after
    assert _rows(after, "pending")[0][:3] == ["1", "page", "2026-11-22 13:00:00 UTC (due)"]

    await console.tick()  # the engine does what is due; the clock has not moved
    html = await (await console.client.get(f"/incidents/{inc_id}")).text()
    assert [r[:2] for r in _rows(html, "notifications")] == [
        ["page (tier 0)", "alice via log"],
        ["page (tier 1)", "bob via log"],
    ]
    assert "1" not in [r[0] for r in _rows(html, "pending") if r[1] == "page"]
    events = [
        (e.kind.value, e.actor, e.source, e.at, e.message)
        for e in await console.timeline(inc_id)
        if e.kind.value in ("escalate", "notify")
    ]
    assert events == [
        ("notify", "tocsin", "engine", START, "tier 0 (on-call): page alice via log (role:oncall)"),
        ("escalate", "alice", "console", START, "escalated to tier 1 now by alice: need the lead"),
        ("notify", "tocsin", "engine", START, "tier 1 (team lead): page bob via log (role:lead)"),
    ]
    assert "escalated to tier 1 now by alice: need the lead" in _section(html, "timeline")


async def _event_names(stream: Any, until: str) -> list[str]:
    """The names of the events ``stream`` sends, up to the first named ``until``."""
    names: list[str] = []
    while until not in names:
        line = await asyncio.wait_for(stream.content.readline(), 10)  # a hang, not a threshold
        if line.startswith(b"event: "):
            names.append(line.decode().removeprefix("event: ").strip())
    return names


async def test_the_change_stream_names_the_incident_that_changed(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await console.post(notification([alert("ApiDown")], group_key='{}:{alertname="ApiDown"}'))
    disk, api = await console.incident("1"), await console.incident("2")
    assert disk["id"] != api["id"]
    await console.rt.service.settle()
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    stream = await console.client.get("/events")
    await console.act("1", "ack")
    names = await _event_names(stream, f"incident-{disk['id']}")
    assert names == ["change", f"incident-{disk['id']}"]  # the board's, then the page's own
    await console.act("2", "ack")
    assert await _event_names(stream, f"incident-{api['id']}") == [
        "change",
        f"incident-{api['id']}",
    ]
    stream.close()


async def test_the_live_part_shows_the_incident_as_it_is_now_with_its_status_and_buttons(
    console: App,
) -> None:
    await console.post(notification([alert("DiskFull")]))
    await sign_in(console.client, "alice", ALICE_TOKEN)
    inc_id, html = await _incident_page(console)
    # The page listens for its own incident's events (and for "any incident").
    assert (
        f'hx-get="/incidents/{inc_id}/live" hx-trigger="sse:incident-{inc_id}, sse:incidents"'
        in html
    )
    await console.act("1", "ack")  # someone else, through the API
    r = await console.client.get(f"/incidents/{inc_id}/live")
    assert r.status == 200
    part = await r.text()
    assert '<span class="status" id="status" hx-swap-oob="true">acknowledged</span>' in part
    assert _pending_pages(part) == 0
    assert "Acknowledge</button>" not in part and "Resolve</button>" in part
    assert [e for e in _section(part, "timeline").split("<li>") if "<strong>ack</strong>" in e]
    assert "<html" not in part  # a part, not a page
