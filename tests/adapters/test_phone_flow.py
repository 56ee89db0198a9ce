"""The phone channel end to end: the whole app on the virtual clock against the fake Twilio.

The app is served in-process; its ``server.public_url`` is ``https://tocsin.example.com`` and
the fake Twilio delivers callbacks for that URL to the test server (as a reverse proxy would),
signed over the public URL. The people: ollie is on call, lee is the lead (default preset's
P0 ladder: on-call at 0, lead at 5m, manager at 15m, VP at 30m), everyone by ``phone`` with
``fallback: [phone, sms, log]`` (the ``log`` channel: no email adapter is configured, and
``check`` refuses a fallback on a channel without one).

The app comes from ``make_phone_app`` (tests/adapters/conftest.py), shared with
test_phone_callbacks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qsl

import pytest

from escalation.incidents.model import IncidentRecord, OutboxState, Status, TimelineEvent
from tests.adapters.conftest import LEE_PHONE, OLLIE_PHONE, MakeAdapterApp, only_call
from tests.driver.app import START, App
from tests.driver.config import PUBLIC
from tests.driver.payloads import sample_bytes
from tests.fakes.twilio import ACCOUNT_SID, TWILIO_NUMBER

FIRING = "alertmanager-0.25-firing.json"  # severity=critical → P0
DECL = '<?xml version="1.0" encoding="UTF-8"?>'


@pytest.fixture
async def app(make_phone_app: MakeAdapterApp) -> App:
    return await make_phone_app()


async def fire(app: App, name: str = FIRING) -> IncidentRecord:
    """POST an Alertmanager sample; return the incident it opened."""
    return await app.fire(sample_bytes(name))


def form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def events(timeline: list[TimelineEvent], *kinds: str) -> list[tuple[str, str, str, str]]:
    """(kind, actor, source, message) of the events of ``kinds``, in order."""
    return [(e.kind, e.actor, e.source, e.message) for e in timeline if e.kind in kinds]


# -- the flows ---------------------------------------------------------------------------------


async def test_a_p0_page_rings_the_oncall_and_pressing_1_acknowledges(
    app: App, no_errors: Callable[[], None]
) -> None:
    app.twilio.unsubscribed.clear()
    inc = await fire(app)
    assert inc.severity == "P0"
    await app.tick()

    # Exactly one call, to the on-call, with the page read out and the menu.
    [req] = app.twilio.requests
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    sent = form(req.body)
    row_id = f"{inc.id}:0:page:0:0:ollie:phone"
    assert sent["To"] == OLLIE_PHONE
    assert sent["From"] == TWILIO_NUMBER
    assert sent["StatusCallback"] == f"{PUBLIC}/api/v1/phone/twilio/status?row={row_id}"
    assert sent["Timeout"] == "25"
    assert sent["Twiml"] == (
        f'{DECL}<Response><Gather input="dtmf" numDigits="1" method="POST" timeout="10" '
        f'action="{PUBLIC}/api/v1/phone/twilio/gather?row={row_id}">'
        f'<Say loop="2">Tocsin alert. Severity SEV-1 P0. Incident {inc.number}: {inc.title}. '
        "Press 1 to acknowledge. Press 2 to escalate to the next tier now.</Say></Gather>"
        "<Say>No key pressed. The alert stays open and will escalate. Goodbye.</Say>"
        "<Hangup /></Response>"
    )
    sid = only_call(app)
    [row] = await app.outbox(inc.id)
    assert (row.id, row.state, row.provider_id) == (row_id, OutboxState.SENT, sid)

    # The callee presses 1.
    reply = await app.twilio.press(sid, "1")
    assert reply.status == 200
    assert reply.text == (
        f"{DECL}<Response><Say>Incident {inc.number} acknowledged. Thank you. Goodbye.</Say>"
        "<Hangup /></Response>"
    )
    acked = await app.record(inc.id)
    assert acked.status == Status.ACKNOWLEDGED
    assert acked.acknowledged_at == START
    assert events(await app.timeline(inc.id), "ack") == [
        ("ack", "ollie", "phone", "acknowledged by ollie: pressed 1 on the phone call")
    ]

    # The call completes; the ladder's later tiers never page anyone. (The P0 level asks the
    # responder for a status update every 30 minutes: those reminders are texts to ollie.)
    done = await app.twilio.play_status(sid, "completed", duration=21)
    assert (done.status, done.text) == (200, f"{DECL}<Response />")
    for minutes in (5, 15, 30, 45, 60):
        app.clock.set(START + timedelta(minutes=minutes))
        await app.tick()
    assert len(app.twilio.requests_to("Calls")) == 1
    assert [
        (form(r.body)["To"], form(r.body)["Body"]) for r in app.twilio.requests_to("Messages")
    ] == [(OLLIE_PHONE, f"[SEV-1 P0] #{inc.number} still open, status update due: {inc.title}")] * 2
    assert [(r.kind, r.person, r.channel) for r in await app.outbox(inc.id)] == [
        ("page", "ollie", "phone"),
        ("reminder", "ollie", "phone"),
        ("reminder", "ollie", "phone"),
    ]
    no_errors()


async def test_pressing_2_escalates_to_the_next_tier_now(app: App) -> None:
    inc = await fire(app)
    await app.tick()
    reply = await app.twilio.press(only_call(app), "2")
    assert reply.text == (
        f"{DECL}<Response><Say>Incident {inc.number} escalated to the next tier. Goodbye.</Say>"
        "<Hangup /></Response>"
    )
    await app.tick()  # no time has passed: the lead's step was moved to now
    calls = app.twilio.requests_to("Calls")
    assert [form(r.body)["To"] for r in calls] == [OLLIE_PHONE, LEE_PHONE]
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert events(await app.timeline(inc.id), "escalate") == [
        (
            "escalate",
            "ollie",
            "phone",
            "escalated to tier 1 now by ollie: pressed 2 on the phone call",
        )
    ]


async def test_no_answer_falls_back_to_sms_then_log_all_on_the_timeline(
    app: App, no_errors: Callable[[], None]
) -> None:
    inc = await fire(app)
    await app.tick()
    sid = only_call(app)
    call_row = f"{inc.id}:0:page:0:0:ollie:phone"

    # Nobody picks up.
    reply = await app.twilio.play_status(sid, "no-answer")
    assert (reply.status, reply.text) == (200, f"{DECL}<Response />")
    sms_row = f"{call_row}>sms"
    assert [(r.id, r.channel, r.state) for r in await app.outbox(inc.id)] == [
        (call_row, "phone", OutboxState.SENT),
        (sms_row, "sms", OutboxState.PENDING),
    ]

    # The text goes out; Twilio refuses it permanently (21610: ollie unsubscribed).
    await app.tick()
    [text] = app.twilio.requests_to("Messages")
    assert form(text.body) == {
        "To": OLLIE_PHONE,
        "From": TWILIO_NUMBER,
        "Body": (
            f"[SEV-1 P0] #{inc.number} {inc.title} - reply ACK {inc.number} (or 1) to acknowledge"
        ),
    }
    assert text.status == 400

    # ... so the log channel, last in ollie's order, carries the page.
    await app.tick()
    rows = {r.id: r for r in await app.outbox(inc.id)}
    log_row = f"{sms_row}>log"
    assert sorted(rows) == [call_row, sms_row, log_row]
    assert rows[sms_row].state == OutboxState.FAILED
    assert (
        rows[sms_row].last_error
        == "twilio sms 400 21610: Attempt to send to unsubscribed recipient"
    )
    assert (rows[log_row].channel, rows[log_row].state) == ("log", OutboxState.SENT)

    timeline = await app.timeline(inc.id)
    assert events(timeline, "fallback") == [
        (
            "fallback",
            "tocsin",
            "phone",
            "phone to ollie: call ended no-answer; falling back to sms",
        ),
        ("fallback", "tocsin", "engine", "sms to ollie failed; falling back to log"),
    ]
    assert [e.data["outbox"] for e in timeline if e.kind == "delivery"] == [
        call_row,
        sms_row,
        log_row,
    ]
    assert [e.data["outcome"] for e in timeline if e.kind == "delivery"] == [
        "sent",
        "failed",
        "sent",
    ]
    assert (await app.record(inc.id)).status == Status.TRIGGERED  # still escalating
    no_errors()


async def test_replying_ack_with_the_code_acknowledges(make_phone_app: MakeAdapterApp) -> None:
    app = await make_phone_app()
    app.twilio.unsubscribed.clear()  # ollie can receive texts here
    inc = await fire(app)
    await app.tick()
    await app.twilio.play_status(only_call(app), "busy")
    await app.tick()
    [text] = app.twilio.requests_to("Messages")
    assert f"reply ACK {inc.number} (or 1)" in form(text.body)["Body"]

    reply = await app.twilio.text_in(
        f"{PUBLIC}/api/v1/phone/twilio/sms", OLLIE_PHONE, f"ack {inc.number}"
    )
    assert (reply.status, reply.text) == (
        200,
        f"{DECL}<Response><Message>tocsin: #{inc.number} acknowledged.</Message></Response>",
    )
    acked = await app.record(inc.id)
    assert acked.status == Status.ACKNOWLEDGED
    assert events(await app.timeline(inc.id), "ack") == [
        ("ack", "ollie", "sms", "acknowledged by ollie: replied by text")
    ]
    await app.tick(timedelta(minutes=30))
    assert len(app.twilio.requests_to("Calls")) == 1  # nobody else was rung


async def test_replying_1_acknowledges_what_was_last_texted(make_phone_app: MakeAdapterApp) -> None:
    app = await make_phone_app()
    app.twilio.unsubscribed.clear()
    inc = await fire(app)
    await app.tick()
    await app.twilio.play_status(only_call(app), "no-answer")
    await app.tick()
    reply = await app.twilio.text_in(f"{PUBLIC}/api/v1/phone/twilio/sms", OLLIE_PHONE, "1")
    assert reply.text == (
        f"{DECL}<Response><Message>tocsin: #{inc.number} acknowledged.</Message></Response>"
    )
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
