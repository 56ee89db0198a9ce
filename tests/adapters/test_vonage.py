"""Vonage end to end: the whole app calling and texting through the fake Vonage, Vonage's signed
webhooks back (keypress, call events, inbound texts), and failover from Twilio to Vonage.

The app's ``server.public_url`` is ``PUBLIC``; the fake delivers webhooks for it to the test
server, as a reverse proxy would. People as in test_phone_flow.py: everyone by ``phone`` with
``fallback: [phone, sms, log]``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.config import PhoneConfig
from adapters.phone import check
from adapters.phone.vonage import WEBHOOK_MAX_AGE, WEBHOOK_SKEW, app_jwt, verify_webhook
from escalation.incidents.model import IncidentRecord, OutboxState, Status
from tests.adapters.conftest import (
    _PHONE_PEOPLE,
    LEE_PHONE,
    OLLIE_PHONE,
    MakeAdapterApp,
    provider_outcomes,
)
from tests.driver.app import App, MakeApp
from tests.driver.config import LONDON_BUSINESS_HOURS, PUBLIC, phone_adapter, write_config
from tests.driver.payloads import sample_bytes
from tests.fakes.twilio import FakeTwilio, Scripted
from tests.fakes.vonage import (
    APPLICATION_ID,
    RATE_LIMITS,
    SIGNATURE_SECRET,
    VONAGE_NUMBER,
    FakeVonage,
    VonageScript,
    vonage_webhook_jwt,
)

FIRING = "alertmanager-0.25-firing.json"  # severity=critical → P0
INBOUND = f"{PUBLIC}/api/v1/phone/vonage/inbound"


def vonage_section(fake: FakeVonage) -> dict[str, Any]:
    return {
        "application_id": APPLICATION_ID,
        "private_key": fake.private_key_pem,
        "signature_secret": SIGNATURE_SECRET,
        "from_number": VONAGE_NUMBER,
        "base_url": fake.url,
        "timeout": "2s",
    }


@pytest.fixture
async def vonage() -> AsyncIterator[FakeVonage]:
    fake = await FakeVonage().start()
    yield fake
    await fake.close()


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = await FakeTwilio().start()
    yield fake
    await fake.close()


@pytest.fixture
def make_vonage_app(
    make_app: MakeApp, tmp_path: Path, vonage: FakeVonage, twilio: FakeTwilio
) -> MakeAdapterApp:
    async def make(providers: tuple[str, ...] = ("vonage",)) -> App:
        phone = phone_adapter(twilio.url)
        phone |= {"providers": list(providers), "vonage": vonage_section(vonage)}
        people = _PHONE_PEOPLE.format(
            lee_phone=LEE_PHONE, voice="phone", fallback="phone, sms, log"
        )
        path = write_config(tmp_path, LONDON_BUSINESS_HOURS, people, {"adapters": {"phone": phone}})
        app = await make_app(path, fakes=(vonage, twilio))
        vonage.clock = lambda: app.clock.now().timestamp()  # Vonage's clock agrees with ours
        base = str(app.client.make_url("/")).rstrip("/")
        vonage.route(PUBLIC, base)
        twilio.route(PUBLIC, base)
        return app

    return make


async def fire(app: App) -> IncidentRecord:
    return await app.fire(sample_bytes(FIRING))


async def paged(make_vonage_app: MakeAdapterApp) -> tuple[App, IncidentRecord]:
    """The app on Vonage with a P0 fired and ollie's call placed."""
    app = await make_vonage_app()
    inc = await fire(app)
    await app.tick()
    return app, inc


async def only_called_and_still_triggered(app: App, inc: IncidentRecord) -> None:
    """Nothing acted: the incident is still triggered and ollie was only called, not texted."""
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert [r.channel for r in await app.outbox(inc.id) if r.person == "ollie"] == ["phone"]


def only_call(vonage: FakeVonage) -> str:
    [ident] = vonage.calls
    return ident


async def test_a_p0_call_through_vonage_and_pressing_1_acknowledges(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage
) -> None:
    app, inc = await paged(make_vonage_app)

    [req] = vonage.requests
    row = f"{inc.id}:0:page:0:0:ollie:phone"
    assert req.path == "/v1/calls"
    assert req.body["to"] == [{"type": "phone", "number": OLLIE_PHONE.removeprefix("+")}]
    assert req.body["from"] == {"type": "phone", "number": "447700900001"}
    assert req.body["event_url"] == [f"{PUBLIC}/api/v1/phone/vonage/event?row={row}"]
    assert req.body["ringing_timer"] == 25
    talk, gather = req.body["ncco"]
    assert talk["bargeIn"] is True and talk["loop"] == 2
    assert talk["text"].startswith(f"Tocsin alert. Severity SEV-1 P0. Incident {inc.number}:")
    assert talk["text"].endswith(
        "Press 1 to acknowledge. Press 2 to escalate to the next tier now."
    )
    assert gather == {
        "action": "input",
        "type": ["dtmf"],
        "dtmf": {"maxDigits": 1, "timeOut": 10},
        "eventUrl": [f"{PUBLIC}/api/v1/phone/vonage/input?row={row}"],
        "eventMethod": "POST",
    }
    [sent] = [r for r in await app.outbox(inc.id) if r.person == "ollie"]
    assert sent.state == OutboxState.SENT and sent.provider_id == only_call(vonage)

    # An unknown key asks again; 1 acknowledges, said back to the caller as an NCCO.
    status, again = await vonage.press(only_call(vonage), "7")
    assert status == 200 and again[1]["action"] == "input"
    assert again[0]["text"].startswith("Sorry, 7 is not an option.")
    status, ncco = await vonage.press(only_call(vonage), "1")
    assert (status, ncco) == (
        200,
        [{"action": "talk", "text": f"Incident {inc.number} acknowledged. Thank you. Goodbye."}],
    )
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
    acks = [(e.actor, e.source, e.message) for e in await app.timeline(inc.id) if e.kind == "ack"]
    assert acks == [("ollie", "phone", "acknowledged by ollie: pressed 1 on the phone call")]


async def test_no_key_pressed_says_goodbye_and_the_page_stays_open(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage
) -> None:
    app, inc = await paged(make_vonage_app)
    status, ncco = await vonage.press(only_call(vonage), "")  # the input timed out
    assert (status, ncco) == (
        200,
        [
            {
                "action": "talk",
                "text": "No key pressed. The alert stays open and will escalate. Goodbye.",
            }
        ],
    )
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert (await vonage.play_status(only_call(vonage), "completed"))[0] == 204
    assert [r.channel for r in await app.outbox(inc.id) if r.person == "ollie"] == ["phone"]


async def test_forged_or_tampered_webhooks_change_nothing(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage
) -> None:
    app, inc = await paged(make_vonage_app)
    ident = only_call(vonage)
    assert (await vonage.press(ident, "1", forge=True))[0] == 401
    assert (await vonage.press(ident, "2", tamper=True))[0] == 401  # signed "2", delivered "1"
    assert (await vonage.play_status(ident, "unanswered", forge=True))[0] == 401
    assert (await vonage.text_in(INBOUND, OLLIE_PHONE, f"ACK {inc.number}", forge=True))[0] == 401
    await only_called_and_still_triggered(app, inc)


async def test_a_webhook_signed_too_long_ago_is_refused_as_a_replay(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage
) -> None:
    # A keypress captured and sent again six minutes later: its signature and body are genuine,
    # its iat is too old. Nothing changes; a fresh one (within the window) acts.
    app, inc = await paged(make_vonage_app)
    ident = only_call(vonage)
    assert (await vonage.press(ident, "1", age=6 * 60 + 1))[0] == 401
    assert (await vonage.play_status(ident, "unanswered", age=6 * 60 + 1))[0] == 401
    stale = await vonage.text_in(INBOUND, OLLIE_PHONE, f"ACK {inc.number}", age=6 * 60 + 1)
    assert stale[0] == 401
    assert (await vonage.press(ident, "1", age=-2 * 60))[0] == 401  # from the future
    await only_called_and_still_triggered(app, inc)
    assert (await vonage.press(ident, "1", age=4 * 60))[0] == 200  # late, but within the window
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_an_unanswered_call_texts_and_a_reply_acknowledges(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage
) -> None:
    app, inc = await paged(make_vonage_app)
    assert (await vonage.play_status(only_call(vonage), "unanswered"))[0] == 204
    await app.tick()
    [text] = vonage.messages.values()
    assert text["to"] == OLLIE_PHONE.removeprefix("+")
    assert f"reply ACK {inc.number} (or 1)" in text["text"]

    status, answer = await vonage.text_in(INBOUND, OLLIE_PHONE, f"ack {inc.number}")
    assert (status, answer) == (200, {"reply": f"tocsin: #{inc.number} acknowledged."})
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_twilio_5xx_fails_over_to_vonage_for_the_call(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage, twilio: FakeTwilio
) -> None:
    app = await make_vonage_app(("twilio", "vonage"))
    twilio.script("Calls", Scripted(status=500, code=20500, message="Internal Server Error"))
    inc = await fire(app)
    await app.tick()
    assert [r.status for r in twilio.requests_to("Calls")] == [500]
    ident = only_call(vonage)
    [row] = [r for r in await app.outbox(inc.id) if r.person == "ollie"]
    assert (row.state, row.attempts, row.provider_id) == (OutboxState.SENT, 1, ident)
    assert provider_outcomes(await app.timeline(inc.id)) == [
        [("twilio", "retryable"), ("vonage", "delivered")]
    ]
    await vonage.press(ident, "1")
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_a_call_that_may_be_ringing_is_not_dialled_again_on_vonage(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage, twilio: FakeTwilio
) -> None:
    app = await make_vonage_app(("twilio", "vonage"))
    twilio.script("Calls", Scripted(drop=True))  # created at Twilio, the answer never comes
    inc = await fire(app)
    await app.tick()
    assert len(twilio.calls) == 1
    assert vonage.calls == {}  # never re-dialled elsewhere
    [row] = [r for r in await app.outbox(inc.id) if r.person == "ollie"]
    assert row.state == OutboxState.UNKNOWN
    assert provider_outcomes(await app.timeline(inc.id)) == [[("twilio", "unknown outcome")]]


async def test_vonage_errors_map_like_twilios(
    make_vonage_app: MakeAdapterApp, vonage: FakeVonage
) -> None:
    app = await make_vonage_app()
    vonage.script(
        "calls", VonageScript(status=429, title="Throttled", headers={"Retry-After": "9"})
    )
    inc = await fire(app)
    await app.tick()
    [row] = [r for r in await app.outbox(inc.id) if r.person == "ollie"]
    assert row.state == OutboxState.PENDING
    assert row.last_error == "vonage call 429: Throttled: Throttled"


ALL_HANDS = """\
people:
  ann: {phone: "+14155550110", channels: [phone]}
  ben: {phone: "+14155550111", channels: [phone]}
  cat: {phone: "+14155550112", channels: [phone]}
  dan: {phone: "+14155550113", channels: [phone]}
policies:
  all-hands:
    steps:
      - name: everyone
        after: 0
        notify: ["person:ann", "person:ben", "person:cat", "person:dan"]
        via: [phone]
"""
ALL_HANDS_RULE = """\
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    severity: P0
    policy: all-hands
"""


async def test_vonages_own_calls_per_second_limit_is_waited_out(
    make_app: MakeApp, tmp_path: Path, vonage: FakeVonage
) -> None:
    # Four people paged in the same second: Vonage creates three calls and refuses the fourth
    # with its 429 (no Retry-After), which tocsin retries after its rate-limit backoff.
    adapters = {"adapters": {"phone": {"provider": "vonage", "vonage": vonage_section(vonage)}}}
    path = write_config(tmp_path, ALL_HANDS, adapters, rules=ALL_HANDS_RULE)
    app = await make_app(path, fakes=(vonage,))
    vonage.clock = lambda: app.clock.now().timestamp()  # its window on the app's virtual time
    inc = await fire(app)
    await app.tick()

    assert (len(vonage.calls), vonage.throttled) == (RATE_LIMITS["calls"], ["calls"])
    [waiting] = [r for r in await app.outbox(inc.id) if r.state == OutboxState.PENDING]
    assert waiting.last_error == (
        "vonage call 429: Rate Limit Hit: Please wait, then retry your request"
    )
    # Not hammered: the rate-limit backoff (dispatch.rate_limit_backoff_initial, 30s) first.
    await app.tick(timedelta(seconds=29))
    assert len(vonage.requests) == RATE_LIMITS["calls"] + 1
    await app.advance(timedelta(minutes=2))

    rows = {r.person: r for r in await app.outbox(inc.id) if r.kind == "page"}
    assert {p: r.state for p, r in rows.items()} == dict.fromkeys(
        ("ann", "ben", "cat", "dan"), OutboxState.SENT
    )
    assert rows[waiting.person].attempts == 2
    called = sorted(c["to"][0]["number"] for c in vonage.calls.values())
    assert called == ["14155550110", "14155550111", "14155550112", "14155550113"]
    assert vonage.throttled == ["calls"]  # one call each, the fourth once it was let through


async def test_the_fakes_messages_limit_answers_as_vonage_does(vonage: FakeVonage) -> None:
    now = [1_700_000_000.0]
    vonage.clock = lambda: now[0]
    key = serialization.load_pem_private_key(vonage.private_key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    text = {"message_type": "text", "channel": "sms", "to": "447700900123"}
    text |= {"from": "447700900001", "text": "x"}

    async def send() -> tuple[int, dict[str, Any], Any]:
        auth = {"Authorization": f"Bearer {app_jwt(APPLICATION_ID, key, time.time())}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{vonage.url}/v1/messages", json=text, headers=auth) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.json()

    for _ in range(RATE_LIMITS["messages"]):
        assert (await send())[0] == 202
    status, headers, body = await send()
    assert status == 429 and "Retry-After" not in headers
    assert (body["title"], body["type"]) == (
        "Rate Limit Hit",
        "https://developer.vonage.com/api-errors#rate-limit",
    )
    now[0] += 1.0  # a rolling second later
    assert (await send())[0] == 202
    assert vonage.throttled == ["messages"]


# -- the signature, without the app -------------------------------------------------------------


def _token(header: dict[str, Any], claims: dict[str, Any], secret: str) -> str:
    def enc(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    h, c = enc(header), enc(claims)
    mac = hmac.new(secret.encode(), f"{h}.{c}".encode(), hashlib.sha256).digest()
    return f"{h}.{c}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_verify_webhook() -> None:
    body = b'{"status": "completed"}'
    t = 1_700_000_000
    good = vonage_webhook_jwt(SIGNATURE_SECRET, body, t)
    assert verify_webhook(SIGNATURE_SECRET, f"Bearer {good}", body, t)
    assert not verify_webhook(SIGNATURE_SECRET, f"Bearer {good}", body + b" ", t)  # payload_hash
    assert not verify_webhook("other", f"Bearer {good}", body, t)
    assert not verify_webhook(SIGNATURE_SECRET, None, body, t)
    assert not verify_webhook(SIGNATURE_SECRET, "Bearer a.b", body, t)
    digest = hashlib.sha256(body).hexdigest()
    unsigned = _token({"alg": "none"}, {"payload_hash": digest, "iat": t}, SIGNATURE_SECRET)
    assert not verify_webhook(SIGNATURE_SECRET, f"Bearer {unsigned}", body, t)
    no_hash = _token({"alg": "HS256"}, {"iat": t}, SIGNATURE_SECRET)
    assert not verify_webhook(SIGNATURE_SECRET, f"Bearer {no_hash}", body, t)


@pytest.mark.parametrize(
    ("claims", "now", "ok"),
    [
        ({}, 0, True),
        ({}, WEBHOOK_MAX_AGE + WEBHOOK_SKEW, True),  # the last second of the window
        ({}, WEBHOOK_MAX_AGE + WEBHOOK_SKEW + 1, False),  # older: a replay
        ({}, -WEBHOOK_SKEW, True),
        ({}, -WEBHOOK_SKEW - 1, False),  # signed in the future, beyond the clocks' skew
        ({"iat": None}, 0, False),
        ({"iat": "1700000000"}, 0, False),
        ({"iat": True}, 0, False),
        ({"exp": 1_700_000_000 - WEBHOOK_SKEW - 1}, 0, False),  # expired
        ({"exp": 1_700_000_000 + 60}, 0, True),
        ({"exp": "never"}, 0, False),
    ],
)
def test_a_webhook_token_must_be_fresh(claims: dict[str, Any], now: int, ok: bool) -> None:
    body = b'{"status": "completed"}'
    t = 1_700_000_000
    digest = hashlib.sha256(body).hexdigest()
    token = _token({"alg": "HS256"}, {"iat": t, "payload_hash": digest, **claims}, SIGNATURE_SECRET)
    assert verify_webhook(SIGNATURE_SECRET, f"Bearer {token}", body, t + now) is ok


def test_check_refuses_a_private_key_that_cannot_sign() -> None:
    cfg = PhoneConfig(
        provider="vonage",
        vonage={
            "application_id": APPLICATION_ID,
            "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
            "signature_secret": "s",
            "from_number": VONAGE_NUMBER,
        },
    )
    [(loc, message)] = check(cfg)
    assert loc == ("vonage", "private_key")
    assert "not a PEM private key" in message
