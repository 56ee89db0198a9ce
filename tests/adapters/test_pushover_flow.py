"""The whole app paging through Pushover (a fake Pushover API following its documented Message
API and receipts), on the driver's virtual clock.

A P0 goes to Alice as an emergency message (priority 2, ``retry``/``expire``, a signed
``callback``): Pushover answers with a receipt. When Alice acknowledges in the Pushover app,
Pushover POSTs the receipt to the callback, which acknowledges the tocsin incident as Alice and
stops the escalation. Acknowledged anywhere else, the receipt is cancelled so the phone stops
ringing. Lower levels are normal-priority messages, and a resolution a quiet one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from escalation.incidents.model import IncidentRecord, OutboxState, Status
from tests.adapters.conftest import push_config
from tests.driver.app import START, App, MakeApp
from tests.driver.config import PUBLIC
from tests.driver.payloads import sample_bytes
from tests.fakes.pushover import APP_TOKEN, FakePushover, user_key

CALLBACK_SECRET = "pushover-flow-callback-secret-0123"
ALICE, CAROL = user_key("alice"), user_key("carol")

POLICY = f"""\
people:
  alice: {{name: Alice Ng, pushover_user: {ALICE}, channels: [pushover]}}
  carol: {{name: Carol Sato, pushover_user: {CAROL}, channels: [pushover]}}
policies:
  push:
    steps:
      - {{name: on-call, after: 0, notify: ["person:alice"], via: [pushover]}}
      - {{name: lead, after: 5m, notify: ["person:carol"], via: [pushover]}}
"""


@pytest.fixture
async def pushover() -> AsyncIterator[FakePushover]:
    fake = await FakePushover(users=(ALICE, CAROL)).start()
    yield fake
    await fake.close()


async def start(
    tmp_path: Path,
    make_app: MakeApp,
    pushover: FakePushover,
    severity: str = "P0",
    store: dict[str, Any] | None = None,
) -> App:
    section = {
        "api_url": pushover.url,
        "token": APP_TOKEN,
        "callback_secret": CALLBACK_SECRET,
        "retry": "30s",
        "expire": "1h",
        "callback_ttl": "2h",
    }
    path = push_config(tmp_path, POLICY, {"pushover": section}, severity=severity, store=store)
    app = await make_app(path, fakes=(pushover,))
    pushover.clock = lambda: app.clock.now().timestamp()  # its 5-second rule on virtual time
    return app


@pytest.fixture
async def app(tmp_path: Path, make_app: MakeApp, pushover: FakePushover) -> App:
    return await start(tmp_path, make_app, pushover)


@pytest.fixture
async def app_on_each_store(
    tmp_path: Path,
    make_app: MakeApp,
    pushover: FakePushover,
    store_section: dict[str, Any] | None,
) -> App:
    """``app`` on SQLite, then on PostgreSQL: a receipt's one use is kept in the store."""
    return await start(tmp_path, make_app, pushover, store=store_section)


async def first(app: App, pushover: FakePushover) -> tuple[IncidentRecord, dict[str, str]]:
    inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
    await app.at(timedelta(0))
    [message] = pushover.messages
    return inc, message


async def callback(app: App, url: str, form: dict[str, str]) -> tuple[int, Any]:
    """Pushover's callback POST, made to the app (its public URL is the test client's)."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    resp = await app.client.post(f"{parts.path}?{parts.query}", data=form)
    return resp.status, await resp.json()


async def test_a_p0_is_an_emergency_message_with_a_signed_callback(
    app: App, pushover: FakePushover
) -> None:
    inc, message = await first(app, pushover)
    assert (message["user"], message["priority"]) == (ALICE, "2")
    assert (message["retry"], message["expire"]) == ("30", "3600")
    assert message["title"].startswith("[SEV-1] #1 HighErrorRate on api")
    assert message["url"] == f"{PUBLIC}/incidents/{inc.id}"
    parts = urlsplit(message["callback"])
    assert parts.path == "/api/v1/pushover/callback" and "token" in parse_qs(parts.query)
    [receipt] = pushover.receipts
    [row] = await app.outbox(inc.id)
    assert (row.state, row.provider_id) == (OutboxState.SENT, f"receipt:{receipt}")


async def test_acknowledging_in_the_app_acknowledges_the_incident_once(
    app_on_each_store: App, pushover: FakePushover
) -> None:
    app = app_on_each_store
    inc, _ = await first(app, pushover)
    [receipt] = pushover.receipts
    url, form = pushover.acknowledge(receipt, ALICE)
    before = await app.timeline(inc.id)

    # A forged token, or none, or the genuine URL with a receipt that is not this page's:
    # refused, nothing changes.
    assert (await callback(app, url.replace("token=", "token=x"), form))[0] == 403
    assert (await callback(app, url.split("?")[0] + "?", form))[0] == 403
    assert (await callback(app, url, {**form, "receipt": "Q" * 30}))[0] == 403
    assert await app.timeline(inc.id) == before

    status, body = await callback(app, url, form)
    assert (status, body["status"]) == (200, "acknowledged")
    acked = await app.record(inc.id)
    assert (acked.status, acked.acknowledged_at) == (Status.ACKNOWLEDGED, START)
    events = await app.timeline(inc.id)
    assert [(e.kind, e.actor, e.source) for e in events[len(before) :]] == [
        ("ack", "alice", "pushover")
    ]
    # Pushover calling back again with the same receipt: a replay, nothing happens.
    status, body = await callback(app, url, form)
    assert (status, body["status"]) == (200, "replay")
    assert await app.timeline(inc.id) == events

    # Escalation stopped: Carol is never paged.
    await app.at(timedelta(minutes=10))
    assert [m["user"] for m in pushover.messages] == [ALICE]


async def test_acknowledged_elsewhere_the_receipt_is_cancelled(
    app: App, pushover: FakePushover
) -> None:
    inc, _ = await first(app, pushover)
    [receipt] = pushover.receipts
    await app.act(inc.id, "ack", actor="bob")
    await app.at(timedelta(seconds=1))
    assert pushover.cancels == [receipt]  # Alice's phone stops ringing
    assert pushover.receipts[receipt].acknowledged_at == 0
    ack_rows = [r for r in await app.outbox(inc.id) if r.kind == "acknowledge"]
    assert [(r.channel, r.person, r.state) for r in ack_rows] == [
        ("pushover", "alice", OutboxState.SENT)
    ]
    await app.at(timedelta(minutes=10))
    assert [m["user"] for m in pushover.messages] == [ALICE]  # no new message, no Carol


async def test_an_expired_callback_token_does_nothing(app: App, pushover: FakePushover) -> None:
    inc, _ = await first(app, pushover)
    [receipt] = pushover.receipts
    url, form = pushover.acknowledge(receipt, ALICE)
    await app.act(inc.id, "ack", actor="bob")
    await app.act(inc.id, "resolve", actor="bob")
    before = await app.timeline(inc.id)
    app.clock.set(START + timedelta(hours=2))  # callback_ttl
    assert (await callback(app, url, form))[0] == 403
    assert await app.timeline(inc.id) == before


async def test_resolving_cancels_and_tells_quietly(app: App, pushover: FakePushover) -> None:
    inc, _ = await first(app, pushover)
    [receipt] = pushover.receipts
    await app.act(inc.id, "resolve", actor="bob")
    await app.at(timedelta(seconds=1))
    assert receipt in pushover.cancels
    resolved = pushover.messages[-1]
    assert (resolved["user"], resolved["priority"]) == (ALICE, "-1")
    assert "callback" not in resolved and resolved["message"].startswith("Resolved")


@pytest.mark.parametrize("severity", ["P0", "P1"])
async def test_the_default_emergency_levels_ring_until_acknowledged(
    tmp_path: Path, make_app: MakeApp, pushover: FakePushover, severity: str
) -> None:
    app = await start(tmp_path, make_app, pushover, severity=severity)
    section = app.rt.loaded.config.adapters.pushover
    assert section is not None and section.emergency == ["P0", "P1"]  # not set: the default
    inc, message = await first(app, pushover)
    assert (message["priority"], message["retry"], message["expire"]) == ("2", "30", "3600")
    assert urlsplit(message["callback"]).path == "/api/v1/pushover/callback"
    [receipt] = pushover.receipts
    [row] = await app.outbox(inc.id)
    assert row.provider_id == f"receipt:{receipt}"


async def test_a_p2_is_a_normal_priority_message_without_a_receipt(
    tmp_path: Path, make_app: MakeApp, pushover: FakePushover
) -> None:
    app = await start(tmp_path, make_app, pushover, severity="P2")
    inc, message = await first(app, pushover)
    assert message["priority"] == "0" and "callback" not in message and "retry" not in message
    assert pushover.receipts == {}
    [row] = await app.outbox(inc.id)
    assert row.state == OutboxState.SENT and not row.provider_id.startswith("receipt:")


async def test_pushovers_monthly_limit_is_waited_out(
    tmp_path: Path, make_app: MakeApp, pushover: FakePushover
) -> None:
    pushover.remaining = 0
    app = await start(tmp_path, make_app, pushover)
    inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
    await app.at(timedelta(0))
    [row] = await app.outbox(inc.id)
    assert row.state == OutboxState.PENDING and "HTTP 429" in row.last_error
    pushover.remaining = 100
    await app.at(timedelta(minutes=2))
    assert [m["user"] for m in pushover.messages] == [ALICE]
    assert APP_TOKEN not in row.last_error


async def test_pushover_in_trouble_is_retried_no_sooner_than_it_asks(
    app: App, pushover: FakePushover
) -> None:
    # Two 5xx answers: the page waits and goes once Pushover answers. A retry within 5 seconds
    # of a 5xx would be a violation of Pushover's rules (the fixture's close() fails on it).
    pushover.fail("messages", 500, 503)
    inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
    await app.at(timedelta(0))
    [row] = await app.outbox(inc.id)
    assert (row.state, row.last_error) == (OutboxState.PENDING, "pushover: HTTP 500")
    await app.advance(timedelta(minutes=1))
    assert pushover.failed == [("messages", 500), ("messages", 503)]
    [message] = pushover.messages
    [receipt] = pushover.receipts
    [row] = await app.outbox(inc.id)
    assert (row.state, row.attempts, row.provider_id) == (
        OutboxState.SENT,
        3,
        f"receipt:{receipt}",
    )
    assert message["user"] == ALICE and message["priority"] == "2"


@pytest.mark.parametrize("status", [503, 429])
async def test_a_cancel_pushover_cannot_take_now_is_retried_until_it_stops_the_ringing(
    app: App, pushover: FakePushover, status: int
) -> None:
    inc, _ = await first(app, pushover)
    [receipt] = pushover.receipts
    pushover.fail("cancel", status)
    await app.act(inc.id, "ack", actor="bob")
    await app.at(timedelta(seconds=1))
    assert pushover.failed == [("cancel", status)] and pushover.cancels == []
    [ack] = [r for r in await app.outbox(inc.id) if r.kind == "acknowledge"]
    assert ack.state == OutboxState.PENDING
    assert ack.last_error.startswith(f"pushover cancel: HTTP {status}")

    await app.advance(timedelta(minutes=3))
    assert pushover.cancels == [receipt]  # nothing lost: the phone stops ringing after all
    [ack] = [r for r in await app.outbox(inc.id) if r.kind == "acknowledge"]
    assert (ack.state, ack.attempts) == (OutboxState.SENT, 2)
    assert [m["user"] for m in pushover.messages] == [ALICE]  # no Carol, no second message
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_an_unknown_user_key_fails_permanently_with_pushovers_words(
    tmp_path: Path, make_app: MakeApp
) -> None:
    fake = await FakePushover(users=(CAROL,)).start()  # Alice's key is not a Pushover user
    try:
        app = await start(tmp_path, make_app, fake)
        inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
        await app.at(timedelta(minutes=1))
        [row] = [r for r in await app.outbox(inc.id) if r.person == "alice"]
        assert (row.state, row.attempts) == (OutboxState.FAILED, 1)
        assert "HTTP 400: user identifier is invalid" in row.last_error
    finally:
        await fake.close()


async def test_the_fake_follows_pushovers_contract(pushover: FakePushover) -> None:
    pushover.expect_violations()
    base = {"token": APP_TOKEN, "user": ALICE, "message": "m"}
    async with aiohttp.ClientSession() as http:

        async def post(path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
            async with http.post(pushover.url + path, data=form) as resp:
                return resp.status, await resp.json()

        status, body = await post("/1/messages.json", {**base, "token": "x" * 30})
        assert (status, body["status"], body["token"]) == (400, 0, "invalid")
        status, body = await post("/1/messages.json", {**base, "priority": "2"})
        assert status == 400 and any("retry" in e for e in body["errors"])
        emergency = {**base, "priority": "2", "retry": "30", "expire": "10800"}
        status, body = await post("/1/messages.json", {**emergency, "expire": "10801"})
        assert status == 400 and any("expire" in e for e in body["errors"])
        status, body = await post("/1/messages.json", {**base, "message": "x" * 1025})
        assert status == 400
        status, body = await post("/1/messages.json", emergency)
        assert status == 200 and body["status"] == 1 and len(body["receipt"]) == 30
        receipt = body["receipt"]
        async with http.get(
            f"{pushover.url}/1/receipts/{receipt}.json", params={"token": APP_TOKEN}
        ) as resp:
            assert (await resp.json())["acknowledged"] == 0
        status, body = await post(f"/1/receipts/{receipt}/cancel.json", {"token": APP_TOKEN})
        assert (status, body["status"]) == (200, 1)
        status, body = await post(f"/1/receipts/{'q' * 30}/cancel.json", {"token": APP_TOKEN})
        assert (status, body["status"]) == (400, 0)


async def test_mitigating_before_any_ack_also_stops_the_ringing(
    app: App, pushover: FakePushover
) -> None:
    inc, _ = await first(app, pushover)
    [receipt] = pushover.receipts
    await app.act(inc.id, "mitigate", actor="bob")
    await app.at(timedelta(seconds=1))
    assert pushover.cancels == [receipt]
    assert [m["user"] for m in pushover.messages] == [ALICE]  # cancelled, not messaged
