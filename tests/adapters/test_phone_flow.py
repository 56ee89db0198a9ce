"""The phone channel end to end: the whole app on the virtual clock against the fake Twilio.

The app is served in-process; its ``server.public_url`` is ``https://tocsin.example.com`` and
the fake Twilio delivers callbacks for that URL to the test server (as a reverse proxy would),
signed over the public URL. The people: ollie is on call, lee is the lead (default preset's
P0 ladder: on-call at 0, lead at 5m, manager at 15m, VP at 30m), everyone by ``phone`` with
``fallback: [phone, sms, email]``; no email adapter is configured.

Also holds the harness (``PhoneApp``, ``make_phone_app``) that test_phone_callbacks.py uses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp.test_utils import TestClient

from config.load import load_config
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import (
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
    TimelineEvent,
)
from escalation.store.base import IncidentFilter
from router.app import create_app
from router.runtime import Runtime
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER, FakeTwilio

START = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
PUBLIC = "https://tocsin.example.com"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIRING = "alertmanager-0.25-firing.json"  # severity=critical → P0
RECEIVER_HEADERS = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
OLLIE_PHONE = "+14155550100"
LEE_PHONE = "+14155550101"
DECL = '<?xml version="1.0" encoding="UTF-8"?>'

RULES_YAML = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity]
"""


def config_text(tmp_path: Path, twilio_url: str | None) -> str:
    """The harness config; ``twilio_url`` None leaves the phone adapter unconfigured."""
    phone = (
        f"""\
adapters:
  phone:
    base_url: {json.dumps(twilio_url)}
    account_sid: {ACCOUNT_SID}
    auth_token: {AUTH_TOKEN}
    from_number: "{TWILIO_NUMBER}"
    ring_timeout: 25s
    timeout: 2s
"""
        if twilio_url is not None
        else ""
    )
    return f"""\
server:
  listen: "127.0.0.1:9095"
  public_url: "{PUBLIC}"
  log_format: text
auth:
  receiver:
    bearer_tokens: ["tok"]
  api_tokens:
    - {{name: writer, token: api-write, scope: write}}
store:
  backend: sqlite
  path: {json.dumps(str(tmp_path / "t.db"))}
matrix:
  preset: default
rules:
  files: ["rules/*.yaml"]
  default:
    severity: P3
calendars:
  business-hours:
    timezone: Europe/London
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:30"
people:
  ollie:
    name: Ollie Oncall
    phone: "+1 415 555 0100"
    email: ollie@example.com
    channels: [phone]
    fallback: [phone, sms, email]
  lee:
    name: Lee Lead
    phone: "{LEE_PHONE}"
    channels: [phone]
    fallback: [phone, sms, email]
  max:
    phone: "+14155550102"
    channels: [phone]
  vic:
    phone: "+14155550103"
    channels: [phone]
roles:
  oncall: [ollie]
  lead: [lee]
  manager: [max]
  vp: [vic]
{phone}"""


@dataclass
class PhoneApp:
    """A started Runtime served in-process, its clock, and the fake Twilio it calls."""

    rt: Runtime
    client: TestClient
    clock: VirtualClock
    twilio: FakeTwilio

    async def fire(self, name: str = FIRING) -> IncidentRecord:
        """POST an Alertmanager sample; return the incident it opened."""
        body = (FIXTURES / name).read_bytes()
        resp = await self.client.post("/api/v1/alertmanager", data=body, headers=RECEIVER_HEADERS)
        assert resp.status == 200, await resp.text()
        [inc] = await self.rt.store.list_incidents(IncidentFilter())
        return inc

    async def tick(self, after: timedelta | None = None) -> None:
        """Move the clock (if asked) and let the engine fire and deliver what is due."""
        if after is not None:
            self.clock.set(self.clock.now() + after)
        await self.rt.engine.tick()

    async def incident(self, inc_id: str) -> IncidentRecord:
        inc = await self.rt.store.get_incident(inc_id)
        assert inc is not None
        return inc

    async def outbox(self, inc_id: str) -> list[OutboxRecord]:
        async with self.rt.store.transaction() as tx:
            return await tx.outbox_of(inc_id)

    async def timeline(self, inc_id: str) -> list[TimelineEvent]:
        return await self.rt.store.timeline(inc_id)

    def only_call(self) -> str:
        """The sid of the one call the fake received."""
        [sid] = self.twilio.calls
        return sid


MakePhoneApp = Callable[..., Awaitable[PhoneApp]]


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = await FakeTwilio(unsubscribed={OLLIE_PHONE}).start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_phone_app(
    tmp_path: Path, aiohttp_client: Any, twilio: FakeTwilio
) -> AsyncIterator[MakePhoneApp]:
    """Factory: the app with (or, ``phone=False``, without) the phone adapter."""
    started: list[Runtime] = []

    async def make(*, phone: bool = True) -> PhoneApp:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "main.yaml").write_text(RULES_YAML)
        path = tmp_path / "tocsin.yaml"
        path.write_text(config_text(tmp_path, twilio.url if phone else None))
        clock = VirtualClock(START)
        rt = Runtime(load_config(path, env={}), clock=clock)
        await rt.start(run_engine=False)
        started.append(rt)
        client = await aiohttp_client(create_app(rt))
        twilio.route(PUBLIC, str(client.make_url("/")).rstrip("/"))
        return PhoneApp(rt, client, clock, twilio)

    yield make
    for rt in started:
        await rt.stop()


@pytest.fixture
async def app(make_phone_app: MakePhoneApp) -> PhoneApp:
    return await make_phone_app()


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Callable[[], None]:
    """Strictness: call at the end of a test to fail it if anything was logged at ERROR."""
    caplog.set_level(logging.INFO)

    def check() -> None:
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]

    return check


def form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def events(timeline: list[TimelineEvent], *kinds: str) -> list[tuple[str, str, str, str]]:
    """(kind, actor, source, message) of the events of ``kinds``, in order."""
    return [(e.kind, e.actor, e.source, e.message) for e in timeline if e.kind in kinds]


# -- the flows ---------------------------------------------------------------------------------


async def test_a_p0_page_rings_the_oncall_and_pressing_1_acknowledges(
    app: PhoneApp, no_errors: Callable[[], None]
) -> None:
    app.twilio.unsubscribed.clear()
    inc = await app.fire()
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
    sid = app.only_call()
    [row] = await app.outbox(inc.id)
    assert (row.id, row.state, row.provider_id) == (row_id, OutboxState.SENT, sid)

    # The callee presses 1.
    reply = await app.twilio.press(sid, "1")
    assert reply.status == 200
    assert reply.text == (
        f"{DECL}<Response><Say>Incident {inc.number} acknowledged. Thank you. Goodbye.</Say>"
        "<Hangup /></Response>"
    )
    acked = await app.incident(inc.id)
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


async def test_pressing_2_escalates_to_the_next_tier_now(app: PhoneApp) -> None:
    inc = await app.fire()
    await app.tick()
    reply = await app.twilio.press(app.only_call(), "2")
    assert reply.text == (
        f"{DECL}<Response><Say>Incident {inc.number} escalated to the next tier. Goodbye.</Say>"
        "<Hangup /></Response>"
    )
    await app.tick()  # no time has passed: the lead's step was moved to now
    calls = app.twilio.requests_to("Calls")
    assert [form(r.body)["To"] for r in calls] == [OLLIE_PHONE, LEE_PHONE]
    assert (await app.incident(inc.id)).status == Status.TRIGGERED
    assert events(await app.timeline(inc.id), "escalate") == [
        (
            "escalate",
            "ollie",
            "phone",
            "escalated to tier 1 now by ollie: pressed 2 on the phone call",
        )
    ]


async def test_no_answer_falls_back_to_sms_then_email_all_on_the_timeline(
    app: PhoneApp, no_errors: Callable[[], None]
) -> None:
    inc = await app.fire()
    await app.tick()
    sid = app.only_call()
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

    # ... so email is next; there is no email adapter, so it fails too, visibly.
    await app.tick()
    rows = {r.id: r for r in await app.outbox(inc.id)}
    email_row = f"{sms_row}>email"
    assert sorted(rows) == [call_row, sms_row, email_row]
    assert rows[sms_row].state == OutboxState.FAILED
    assert (
        rows[sms_row].last_error
        == "twilio sms 400 21610: Attempt to send to unsubscribed recipient"
    )
    assert rows[email_row].channel == "email"
    assert rows[email_row].state == OutboxState.FAILED
    assert rows[email_row].last_error == "no adapter is configured for channel 'email'"

    timeline = await app.timeline(inc.id)
    assert events(timeline, "fallback") == [
        (
            "fallback",
            "tocsin",
            "phone",
            "phone to ollie: call ended no-answer; falling back to sms",
        ),
        ("fallback", "tocsin", "engine", "sms to ollie failed; falling back to email"),
    ]
    assert [e.data["outbox"] for e in timeline if e.kind == "delivery"] == [
        call_row,
        sms_row,
        email_row,
    ]
    assert [e.data["outcome"] for e in timeline if e.kind == "delivery"] == [
        "sent",
        "failed",
        "failed",
    ]
    assert (await app.incident(inc.id)).status == Status.TRIGGERED  # still escalating
    no_errors()


async def test_replying_ack_with_the_code_acknowledges(make_phone_app: MakePhoneApp) -> None:
    app = await make_phone_app()
    app.twilio.unsubscribed.clear()  # ollie can receive texts here
    inc = await app.fire()
    await app.tick()
    await app.twilio.play_status(app.only_call(), "busy")
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
    acked = await app.incident(inc.id)
    assert acked.status == Status.ACKNOWLEDGED
    assert events(await app.timeline(inc.id), "ack") == [
        ("ack", "ollie", "sms", "acknowledged by ollie: replied by text")
    ]
    await app.tick(timedelta(minutes=30))
    assert len(app.twilio.requests_to("Calls")) == 1  # nobody else was rung


async def test_replying_1_acknowledges_what_was_last_texted(make_phone_app: MakePhoneApp) -> None:
    app = await make_phone_app()
    app.twilio.unsubscribed.clear()
    inc = await app.fire()
    await app.tick()
    await app.twilio.play_status(app.only_call(), "no-answer")
    await app.tick()
    reply = await app.twilio.text_in(f"{PUBLIC}/api/v1/phone/twilio/sms", OLLIE_PHONE, "1")
    assert reply.text == (
        f"{DECL}<Response><Message>tocsin: #{inc.number} acknowledged.</Message></Response>"
    )
    assert (await app.incident(inc.id)).status == Status.ACKNOWLEDGED
