"""The whole app paging through ntfy (a fake ntfy server following ntfy's documented publish
contract), on the driver's virtual clock.

A P0 publishes to Alice's topic at once with ntfy's top priority and two ``http`` action buttons
(POST, no confirmation page: what the ntfy app does when the button is pressed), and to Carol's
five minutes later. Pressing Acknowledge acknowledges as Alice with source ``ntfy`` and stops
the escalation; the same POST again, an expired one, or a forged one changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from adapters.ntfy.notifier import MESSAGE_LIMIT, _cut_bytes
from config.errors import ConfigError
from config.load import load_config
from escalation.engine.service import ActOn, Delivery
from escalation.incidents.actions import Action
from escalation.incidents.model import IncidentRecord, OutboxState, Status
from tests.adapters.conftest import push_config
from tests.driver.app import START, App, MakeApp
from tests.driver.config import PUBLIC, write_config
from tests.driver.payloads import sample_bytes
from tests.fakes.ntfy import NTFY_TOKEN, FakeNtfy

LINK_SECRET = "ntfy-flow-link-secret-0123456789"

POLICY = """\
people:
  alice: {name: Alice Ng, ntfy_topic: alice-pager_7f3a, channels: [ntfy]}
  carol: {name: Carol Sato, ntfy_topic: carol-pager_91bc, channels: [ntfy], fallback: [log]}
policies:
  push:
    steps:
      - {name: on-call, after: 0, notify: ["person:alice"], via: [ntfy]}
      - {name: lead, after: 5m, notify: ["person:carol"], via: [ntfy]}
"""


@pytest.fixture
async def ntfy() -> AsyncIterator[FakeNtfy]:
    fake = await FakeNtfy().start()
    yield fake
    await fake.close()


async def start(
    tmp_path: Path,
    make_app: MakeApp,
    ntfy: FakeNtfy,
    *,
    severity: str = "P0",
    store: dict[str, Any] | None = None,
    **over: Any,
) -> App:
    section = {
        "server_url": ntfy.url,
        "access_token": NTFY_TOKEN,
        "link_secret": LINK_SECRET,
        "link_ttl": "1h",
        **over,
    }
    path = push_config(tmp_path, POLICY, {"ntfy": section}, severity=severity, store=store)
    return await make_app(path, fakes=(ntfy,))


@pytest.fixture
async def app(tmp_path: Path, make_app: MakeApp, ntfy: FakeNtfy) -> App:
    return await start(tmp_path, make_app, ntfy)


@pytest.fixture
async def app_on_each_store(
    tmp_path: Path, make_app: MakeApp, ntfy: FakeNtfy, store_section: dict[str, Any] | None
) -> App:
    """``app`` on SQLite, then on PostgreSQL: a button's single use is kept in the store."""
    return await start(tmp_path, make_app, ntfy, store=store_section)


async def fired(app: App, at: timedelta = timedelta(0)) -> IncidentRecord:
    """The sample P0 fired, and the engine run at ``START + at``."""
    inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
    await app.at(at)
    return inc


async def first(app: App, ntfy: FakeNtfy) -> tuple[IncidentRecord, dict[str, Any]]:
    inc = await fired(app)
    [message] = ntfy.messages
    return inc, message


def button(message: dict[str, Any], label: str) -> tuple[str, str]:
    """(path, token) of the ``http`` action ``label``, checked to POST under public_url."""
    [action] = [a for a in message["actions"] if a["label"] == label]
    assert (action["action"], action["method"]) == ("http", "POST")
    parts = urlsplit(action["url"])
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    return parts.path, parse_qs(parts.query)["token"][0]


async def press(app: App, path: str, token: str) -> tuple[int, str]:
    # The ntfy app's http action: a POST to the URL, no body, no confirmation.
    resp = await app.client.post(path, params={"token": token})
    return resp.status, await resp.text()


async def test_a_p0_is_published_to_the_persons_topic_at_top_priority(
    app: App, ntfy: FakeNtfy
) -> None:
    inc, message = await first(app, ntfy)
    assert message["topic"] == "alice-pager_7f3a"
    assert message["priority"] == 5  # max / urgent
    assert message["title"].startswith("[SEV-1] #1 HighErrorRate on api")
    assert message["message"].startswith("Paging Alice Ng")
    assert message["click"] == f"{PUBLIC}/incidents/{inc.id}"
    assert [a["label"] for a in message["actions"]] == ["Acknowledge", "Resolve", "Runbook"]
    assert button(message, "Acknowledge")[0] == "/api/v1/ntfy/ack"
    assert button(message, "Resolve")[0] == "/api/v1/ntfy/resolve"
    headers, _ = ntfy.requests[0]
    assert headers["Authorization"] == f"Bearer {NTFY_TOKEN}"
    [row] = await app.outbox(inc.id)
    assert (row.channel, row.state, row.provider_id) == ("ntfy", OutboxState.SENT, message["id"])


async def test_pressing_acknowledge_acts_once_and_stops_escalation(
    app_on_each_store: App, ntfy: FakeNtfy
) -> None:
    app = app_on_each_store
    inc, message = await first(app, ntfy)
    path, token = button(message, "Acknowledge")
    before = await app.timeline(inc.id)

    # Forged (one character changed) or sent to the other action: refused, nothing changes.
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await press(app, path, forged))[0] == 403
    assert (await press(app, "/api/v1/ntfy/resolve", token))[0] == 403
    assert await app.timeline(inc.id) == before

    status, html = await press(app, path, token)
    assert (status, "<h1>Incident #1 acknowledged</h1>" in html) == (200, True)
    acked = await app.record(inc.id)
    assert (acked.status, acked.acknowledged_at) == (Status.ACKNOWLEDGED, START)
    events = await app.timeline(inc.id)
    assert [(e.kind, e.actor, e.source) for e in events[len(before) :]] == [
        ("ack", "alice", "ntfy")
    ]

    # Replayed (the same button again, or the request captured and re-sent): nothing happens.
    assert (await press(app, path, token))[0] in (200, 409)
    assert await app.timeline(inc.id) == events

    # Escalation stopped: Carol is never paged.
    await app.at(timedelta(minutes=10))
    assert [m["topic"] for m in ntfy.messages] == ["alice-pager_7f3a"]


async def test_a_pressed_button_is_remembered_so_it_never_acts_again(
    app_on_each_store: App, ntfy: FakeNtfy
) -> None:
    app = app_on_each_store
    inc, message = await first(app, ntfy)
    path, token = button(message, "Resolve")
    assert (await press(app, path, token))[0] == 200
    assert (await app.record(inc.id)).status == Status.RESOLVED
    events = await app.timeline(inc.id)
    # The use was stored with the action (one transaction): the same token as an inbound
    # delivery is a replay to the façade itself, whatever state the incident is in later.
    seen = Delivery("ntfy", hashlib.sha256(token.encode()).hexdigest())
    again = await app.rt.service.act_once(seen, [ActOn(inc.id, "alice")], Action.REOPEN, source="x")
    assert again is None
    status, html = await press(app, path, token)
    assert (status, "already resolved" in html) == (200, True)
    assert await app.timeline(inc.id) == events


async def test_a_pressed_button_stays_used_after_the_incident_is_escalated_back(
    app_on_each_store: App, ntfy: FakeNtfy
) -> None:
    app = app_on_each_store
    # Escalating through the API makes the incident triggered again in the same run, so the
    # token is still signed, unexpired and of the current run: only its remembered use keeps
    # the same POST from acknowledging a second time.
    inc, message = await first(app, ntfy)
    path, token = button(message, "Acknowledge")
    assert (await press(app, path, token))[0] == 200
    await app.act(inc.id, "escalate", actor="bob")
    again = await app.record(inc.id)
    assert (again.status, again.epoch) == (Status.TRIGGERED, inc.epoch)

    status, html = await press(app, path, token)
    assert (status, "This link was already used" in html) == (409, True)
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    acks = [(e.actor, e.source) for e in await app.timeline(inc.id) if e.kind == "ack"]
    assert acks == [("alice", "ntfy")]


async def test_two_presses_at_once_act_once(app_on_each_store: App, ntfy: FakeNtfy) -> None:
    app = app_on_each_store
    inc, message = await first(app, ntfy)
    path, token = button(message, "Acknowledge")
    answers = await asyncio.gather(press(app, path, token), press(app, path, token))
    assert sorted(status for status, _ in answers)[0] == 200
    assert [e.kind for e in await app.timeline(inc.id)].count("ack") == 1


async def test_an_expired_button_does_nothing(app: App, ntfy: FakeNtfy) -> None:
    inc, message = await first(app, ntfy)
    before = await app.timeline(inc.id)
    app.clock.set(START + timedelta(hours=1))  # buttons live exactly link_ttl
    for label in ("Acknowledge", "Resolve"):
        status, html = await press(app, *button(message, label))
        assert (status, "<h1>This link has expired</h1>" in html) == (403, True)
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before


@pytest.mark.parametrize(("severity", "priority"), [("P1", 4), ("P2", 3), ("P3", 2)])
async def test_lower_levels_ring_less(
    tmp_path: Path, make_app: MakeApp, ntfy: FakeNtfy, severity: str, priority: int
) -> None:
    app = await start(tmp_path, make_app, ntfy, severity=severity)
    _, message = await first(app, ntfy)
    assert message["priority"] == priority


async def test_a_refused_token_fails_visibly_and_falls_back(
    tmp_path: Path, make_app: MakeApp, ntfy: FakeNtfy
) -> None:
    app = await start(tmp_path, make_app, ntfy, access_token="tk_revoked0000000000000000000000")
    inc = await fired(app, timedelta(minutes=5))
    assert ntfy.messages == []
    rows = {r.person: r for r in await app.outbox(inc.id) if r.channel == "ntfy"}
    assert rows["alice"].state == OutboxState.FAILED
    assert "HTTP 401: 40101 unauthorized" in rows["alice"].last_error
    assert NTFY_TOKEN not in rows["alice"].last_error
    # Carol's fallback carries her page when ntfy refuses it.
    assert any(r.channel == "log" and r.person == "carol" for r in await app.outbox(inc.id))


async def test_ntfys_rate_limit_is_waited_out(
    tmp_path: Path, make_app: MakeApp, ntfy: FakeNtfy
) -> None:
    ntfy.limit(0)
    app = await start(tmp_path, make_app, ntfy)
    inc = await fired(app)
    [row] = await app.outbox(inc.id)
    assert row.state == OutboxState.PENDING and "42901" in row.last_error
    ntfy.limit(10)
    await app.at(timedelta(minutes=4))
    assert [m["topic"] for m in ntfy.messages] == ["alice-pager_7f3a"]


async def test_a_resolution_is_told_quietly_without_buttons(app: App, ntfy: FakeNtfy) -> None:
    inc, _ = await first(app, ntfy)
    await app.act(inc.id, "resolve", actor="bob")
    await app.at(timedelta(seconds=1))
    [_, resolved] = ntfy.messages
    assert (resolved["topic"], resolved["priority"]) == ("alice-pager_7f3a", 2)
    assert resolved["message"].startswith("Resolved")
    assert [a["action"] for a in resolved.get("actions", [])] == ["view"]


async def test_without_a_token_a_deny_all_server_refuses_and_nothing_is_retried(
    tmp_path: Path, make_app: MakeApp, ntfy: FakeNtfy
) -> None:
    app = await start(tmp_path, make_app, ntfy, access_token=None)
    inc = await fired(app, timedelta(minutes=1))
    [row] = [r for r in await app.outbox(inc.id) if r.person == "alice"]
    assert (row.state, row.attempts) == (OutboxState.FAILED, 1)
    assert "HTTP 403: 40301 forbidden" in row.last_error
    assert "Authorization" not in ntfy.requests[0][0]


def test_a_long_message_is_cut_to_ntfys_limit_on_a_character_boundary() -> None:
    text = "é" * 5000  # two bytes each
    cut = _cut_bytes(text, MESSAGE_LIMIT)
    assert len(cut.encode()) <= MESSAGE_LIMIT and cut.endswith("…")
    assert _cut_bytes("short", MESSAGE_LIMIT) == "short"


async def test_the_fake_refuses_what_ntfy_refuses(ntfy: FakeNtfy) -> None:
    ntfy.expect_violations()
    auth = {"Authorization": f"Bearer {NTFY_TOKEN}"}
    bad = [
        ({"topic": "a/b"}, 400, 40009),
        ({"topic": "t", "priority": 6}, 400, 40007),
        ({"topic": "t", "message": "x" * 4097}, 400, 40014),
        ({"topic": "t", "actions": [{"action": "view", "label": "v", "url": "u"}] * 4}, 400, 40018),
        ({"topic": "t", "actions": [{"action": "http", "label": "h"}]}, 400, 40018),
    ]
    async with aiohttp.ClientSession() as http:
        for doc, status, code in bad:
            async with http.post(ntfy.url + "/", json=doc, headers=auth) as resp:
                assert (resp.status, (await resp.json())["code"]) == (status, code), doc
        async with http.post(ntfy.url + "/", data=b"{", headers=auth) as resp:
            assert (await resp.json())["code"] == 40024
        async with http.post(ntfy.url + "/", json={"topic": "t"}) as resp:
            assert (resp.status, await resp.json()) == (
                403,
                {
                    "code": 40301,
                    "http": 403,
                    "error": "forbidden",
                    "link": "https://ntfy.sh/docs/publish/#authentication",
                },
            )
        async with http.post(ntfy.url + "/", json={"topic": "t"}, headers=auth) as resp:
            ok = await resp.json()
            assert (resp.status, ok["event"], ok["message"]) == (200, "message", "triggered")


@pytest.mark.parametrize(
    ("person", "message"),
    [
        ("{channels: [ntfy]}", "channel 'ntfy' needs ntfy_topic"),
        ("{fallback: [pushover]}", "channel 'pushover' needs pushover_user"),
        ("{ntfy_topic: 'has space'}", "an ntfy topic is 1 to 64 of A-Z"),
        ("{pushover_user: short}", "a Pushover user or group key is 30 letters and digits"),
    ],
)
def test_check_refuses_a_push_address_that_cannot_work(
    tmp_path: Path, person: str, message: str
) -> None:
    path = write_config(tmp_path, f"people:\n  dana: {person}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value)
