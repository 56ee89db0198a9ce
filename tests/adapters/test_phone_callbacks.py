"""Twilio's callbacks into tocsin: signatures on every route, the status table, keypresses, texts.

Uses the whole app with the fake Twilio (``make_phone_app``, tests/adapters/conftest.py). Requests here are either played by the fake
Twilio (signed over the public URL) or built by hand to forge, replay or tamper with one.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import yaml

from escalation.incidents.model import OutboxState, Status
from escalation.store.base import IncidentFilter
from tests.adapters.conftest import LEE_PHONE, OLLIE_PHONE, MakeAdapterApp, only_call
from tests.adapters.test_phone_flow import DECL, FIRING, events, fire, form
from tests.driver.app import AM, App
from tests.driver.config import PUBLIC
from tests.driver.payloads import sample
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER, twilio_signature

GATHER = "/api/v1/phone/twilio/gather"
STATUS = "/api/v1/phone/twilio/status"
SMS = "/api/v1/phone/twilio/sms"
CALL_SID = "CA" + "1" * 32


@pytest.fixture
async def app(make_phone_app: MakeAdapterApp) -> App:
    return await make_phone_app()


def call_params(status: str, **extra: str) -> list[tuple[str, str]]:
    return [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", CALL_SID),
        ("CallStatus", status),
        ("Direction", "outbound-api"),
        ("From", TWILIO_NUMBER),
        ("To", OLLIE_PHONE),
        *extra.items(),
    ]


def sms_params(
    body: str, sender: str = OLLIE_PHONE, sid: str = "SM" + "2" * 32
) -> list[tuple[str, str]]:
    return [
        ("AccountSid", ACCOUNT_SID),
        ("Body", body),
        ("From", sender),
        ("MessageSid", sid),
        ("To", TWILIO_NUMBER),
    ]


async def post(
    app: App,
    path_qs: str,
    params: list[tuple[str, str]],
    *,
    signature: str | None = "sign",
    token: str = AUTH_TOKEN,
    signed_url: str | None = None,
) -> tuple[int, str]:
    """POST ``params`` to ``path_qs``, signed over the public URL unless told otherwise."""
    headers = {}
    if signature == "sign":
        signature = twilio_signature(token, signed_url or PUBLIC + path_qs, params)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    resp = await app.client.post(path_qs, data=params, headers=headers)
    return resp.status, await resp.text()


async def paged(app: App) -> tuple[str, str]:
    """Fire the P0 sample and deliver its call; (incident id, call row id)."""
    inc = await fire(app)
    await app.tick()
    return inc.id, f"{inc.id}:0:page:0:0:ollie:phone"


async def snapshot(app: App, inc_id: str) -> tuple[Any, ...]:
    inc = await app.record(inc_id)
    rows = [(r.id, r.state) for r in await app.outbox(inc_id)]
    return inc.status, inc.version, rows, len(await app.timeline(inc_id))


# -- signatures --------------------------------------------------------------------------------

FORGERIES: dict[str, dict[str, Any]] = {
    "missing": {"signature": None},
    "empty": {"signature": ""},
    "wrong-token": {"token": "not-the-auth-token"},
    "garbage": {"signature": "bm90IGEgc2lnbmF0dXJl"},
    # Signed over the address tocsin listens on, not the public URL Twilio was given.
    "internal-url": {"signed_url": "internal"},
    # Signed over another row's URL: the query is part of what is signed.
    "other-row": {"signed_url": "other-row"},
}


@pytest.mark.parametrize("route", ["gather", "status", "sms"])
@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_unsigned_or_wrongly_signed_callbacks_are_403_and_change_nothing(
    app: App, route: str, forgery: str
) -> None:
    inc_id, row_id = await paged(app)
    path_qs, params = {
        "gather": (f"{GATHER}?row={row_id}", call_params("in-progress", Digits="1")),
        "status": (f"{STATUS}?row={row_id}", call_params("no-answer")),
        "sms": (SMS, sms_params(f"ACK {(await app.record(inc_id)).number}")),
    }[route]
    kw: dict[str, Any] = dict(FORGERIES[forgery])
    if kw.get("signed_url") == "internal":
        kw["signed_url"] = str(app.client.make_url(path_qs))
    elif kw.get("signed_url") == "other-row":
        other = path_qs.replace(row_id, row_id + "x") if "?" in path_qs else path_qs + "?row=x"
        kw["signed_url"] = PUBLIC + other
    before = await snapshot(app, inc_id)
    status, text = await post(app, path_qs, params, **kw)
    assert status == 403
    assert json.loads(text) == {
        "error": "forbidden",
        "detail": "X-Twilio-Signature is missing or does not match",
        "path": path_qs.split("?")[0],
    }
    assert await snapshot(app, inc_id) == before

    # The same request, correctly signed, does act: the 403 was the signature's doing.
    status, _ = await post(app, path_qs, params)
    assert status == 200
    assert await snapshot(app, inc_id) != before


@pytest.mark.parametrize("route", [GATHER, STATUS, SMS])
async def test_a_tampered_parameter_breaks_the_signature(app: App, route: str) -> None:
    inc_id, row_id = await paged(app)
    path_qs = route if route == SMS else f"{route}?row={row_id}"
    signed = call_params("in-progress", Digits="9") if route != SMS else sms_params("hello")
    sent = [(k, "1" if k in ("Digits", "Body") else v) for k, v in signed]
    sent = [(k, "no-answer" if k == "CallStatus" and route == STATUS else v) for k, v in sent]
    before = await snapshot(app, inc_id)
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, PUBLIC + path_qs, signed)}
    resp = await app.client.post(path_qs, data=sent, headers=headers)
    assert resp.status == 403
    assert await snapshot(app, inc_id) == before


@pytest.mark.parametrize("route", [GATHER, STATUS, SMS])
async def test_without_a_phone_adapter_the_routes_are_404(
    make_phone_app: MakeAdapterApp, route: str
) -> None:
    app = await make_phone_app(phone=False)
    status, text = await post(app, f"{route}?row=x", call_params("no-answer"))
    assert status == 404
    assert json.loads(text)["error"] == "phone is not configured"


# -- status callbacks --------------------------------------------------------------------------


@pytest.mark.parametrize("call_status", ["no-answer", "busy", "failed", "canceled"])
async def test_a_call_nobody_heard_falls_back_to_the_next_channel(
    app: App, call_status: str
) -> None:
    inc_id, row_id = await paged(app)
    reply = await app.twilio.play_status(only_call(app), call_status)
    assert (reply.status, reply.text) == (200, f"{DECL}<Response />")
    assert [(r.id, r.channel, r.state) for r in await app.outbox(inc_id)] == [
        (row_id, "phone", OutboxState.SENT),
        (f"{row_id}>sms", "sms", OutboxState.PENDING),
    ]
    assert events(await app.timeline(inc_id), "fallback") == [
        (
            "fallback",
            "tocsin",
            "phone",
            f"phone to ollie: call ended {call_status}; falling back to sms",
        )
    ]


@pytest.mark.parametrize("call_status", ["completed", "in-progress", "ringing", "initiated"])
async def test_a_call_that_was_answered_or_is_still_going_changes_nothing(
    app: App, call_status: str
) -> None:
    inc_id, row_id = await paged(app)
    before = await snapshot(app, inc_id)
    status, text = await post(app, f"{STATUS}?row={row_id}", call_params(call_status))
    assert (status, text) == (200, f"{DECL}<Response />")
    assert await snapshot(app, inc_id) == before


async def test_a_status_callback_delivered_twice_falls_back_once(app: App) -> None:
    inc_id, row_id = await paged(app)
    for _ in range(2):
        status, _ = await post(app, f"{STATUS}?row={row_id}", call_params("busy"))
        assert status == 200
    assert [r.id for r in await app.outbox(inc_id)] == [row_id, f"{row_id}>sms"]
    assert len(events(await app.timeline(inc_id), "fallback")) == 1


async def test_no_answer_after_an_acknowledgement_chases_nobody(app: App) -> None:
    inc_id, row_id = await paged(app)
    sid = only_call(app)
    await app.twilio.press(sid, "1")
    await app.twilio.play_status(sid, "canceled")
    assert [r.id for r in await app.outbox(inc_id)] == [row_id]
    assert events(await app.timeline(inc_id), "fallback") == []


async def test_a_person_without_a_fallback_order_gets_a_timeline_event_only(app: App) -> None:
    inc_id, _ = await paged(app)
    sid = only_call(app)
    await app.twilio.press(sid, "2")  # escalate: lee is rung; lee's fallback is phone, sms, log
    await app.tick()
    # max (tier 2) has no fallback order: escalate again and let max's call go unanswered.
    lee_sid = next(s for s, c in app.twilio.calls.items() if c["resource"]["to"] == LEE_PHONE)
    await app.twilio.press(lee_sid, "2")
    await app.tick()
    max_sid = next(s for s, c in app.twilio.calls.items() if c["resource"]["to"] == "+14155550102")
    await app.twilio.play_status(max_sid, "no-answer")
    assert events(await app.timeline(inc_id), "fallback") == [
        (
            "fallback",
            "tocsin",
            "phone",
            "phone to max: call ended no-answer; no further fallback channel",
        )
    ]
    assert not [r for r in await app.outbox(inc_id) if r.person == "max" and r.channel != "phone"]


# -- keypresses --------------------------------------------------------------------------------


async def test_any_other_key_asks_again_and_changes_nothing(app: App) -> None:
    inc_id, row_id = await paged(app)
    before = await snapshot(app, inc_id)
    reply = await app.twilio.press(only_call(app), "9")
    assert reply.text == (
        f'{DECL}<Response><Gather input="dtmf" numDigits="1" method="POST" timeout="10" '
        f'action="{PUBLIC}{GATHER}?row={row_id}"><Say>Sorry, 9 is not an option. '
        "Press 1 to acknowledge. Press 2 to escalate to the next tier now.</Say></Gather>"
        "<Say>Goodbye.</Say><Hangup /></Response>"
    )
    assert await snapshot(app, inc_id) == before


async def test_the_same_keypress_delivered_twice_acts_once(app: App) -> None:
    inc_id, row_id = await paged(app)
    params = call_params("in-progress", Digits="2")
    first = await post(app, f"{GATHER}?row={row_id}", params)
    second = await post(app, f"{GATHER}?row={row_id}", params)
    assert first[0] == second[0] == 200
    assert "escalated to the next tier" in first[1]
    assert second[1] == (
        f"{DECL}<Response><Say>Your choice was already recorded. Goodbye.</Say>"
        "<Hangup /></Response>"
    )
    assert len(events(await app.timeline(inc_id), "escalate")) == 1


async def test_pressing_1_on_an_already_acknowledged_incident(app: App) -> None:
    inc_id, _ = await paged(app)
    number = (await app.record(inc_id)).number
    resp = await app.client.post(
        f"/api/v1/incidents/{inc_id}/ack", headers={"Authorization": "Bearer api-write"}
    )
    assert resp.status == 200
    reply = await app.twilio.press(only_call(app), "1")
    assert reply.text == (
        f"{DECL}<Response><Say>Incident {number} is no longer waiting for an acknowledgement. "
        "Goodbye.</Say><Hangup /></Response>"
    )
    assert [e[1] for e in events(await app.timeline(inc_id), "ack")] == ["writer"]


async def test_a_keypress_for_an_unknown_row(app: App) -> None:
    await paged(app)
    status, text = await post(
        app, f"{GATHER}?row=nope:0:page", call_params("in-progress", Digits="1")
    )
    assert (status, text) == (
        200,
        f"{DECL}<Response><Say>This alert is no longer known to tocsin. Goodbye.</Say>"
        "<Hangup /></Response>",
    )


async def test_pressing_2_on_the_last_tier_says_there_is_none(app: App) -> None:
    inc_id, _ = await paged(app)
    number = (await app.record(inc_id)).number
    for _ in range(3):  # ollie → lee → max → vic, each escalating from the newest call
        sid = list(app.twilio.calls)[-1]
        await app.twilio.press(sid, "2")
        await app.tick()
    calls = app.twilio.requests_to("Calls")
    assert [form(r.body)["To"] for r in calls] == [
        OLLIE_PHONE,
        LEE_PHONE,
        "+14155550102",
        "+14155550103",
    ]
    reply = await app.twilio.press(list(app.twilio.calls)[-1], "2")
    assert reply.text == (
        f"{DECL}<Response><Say>Incident {number} has no further tier to escalate to. Goodbye.</Say>"
        "<Hangup /></Response>"
    )


async def test_one_keypress_acknowledges_every_incident_of_a_bundled_call(app: App) -> None:
    first = sample(FIRING)
    resp = await app.client.post("/api/v1/alertmanager", data=json.dumps(first), headers=AM)
    assert resp.status == 200
    await app.settle()  # the first page calls ollie at once and opens his bundling window
    [alone] = app.twilio.calls
    assert (app.twilio.gather_of(alone).get("action") or "").count("row=") == 1
    for name, fp in (("DiskFull", "0123456789abcdef"), ("DiskSlow", "fedcba9876543210")):
        other = json.loads(json.dumps(first))
        other["groupKey"] = f'{{}}:{{alertname="{name}"}}'
        other["groupLabels"] = {"alertname": name}
        other["alerts"][0]["labels"]["alertname"] = name
        other["alerts"][0]["fingerprint"] = fp
        resp = await app.client.post("/api/v1/alertmanager", data=json.dumps(other), headers=AM)
        assert resp.status == 200
    await app.settle()
    incidents = await app.rt.store.list_incidents(IncidentFilter())
    assert len(incidents) == 3 and list(app.twilio.calls) == [alone]  # held for the window
    await app.advance(timedelta(seconds=30))
    [sid] = [s for s in app.twilio.calls if s != alone]  # both held pages travel as one call
    action = app.twilio.gather_of(sid).get("action") or ""
    assert action.count("row=") == 2
    assert "&amp;row=" in app.twilio.calls[sid]["twiml"]  # escaped in the XML, '&' once parsed
    reply = await app.twilio.press(sid, "1")
    opened_first = min(incidents, key=lambda i: i.number)
    bundled = [i for i in incidents if i.id != opened_first.id]
    assert len(bundled) == 2
    numbers = sorted(i.number for i in bundled)
    assert all(f"Incident {n} acknowledged." in reply.text for n in numbers)
    for inc in bundled:
        assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
    assert (await app.record(opened_first.id)).status == Status.TRIGGERED  # not in that call


# -- texts -------------------------------------------------------------------------------------


async def test_a_text_from_an_unknown_number_is_ignored(app: App) -> None:
    inc_id, _ = await paged(app)
    before = await snapshot(app, inc_id)
    reply = await app.twilio.text_in(f"{PUBLIC}{SMS}", "+14155550999", "1")
    assert (reply.status, reply.text) == (200, f"{DECL}<Response />")
    assert await snapshot(app, inc_id) == before


@pytest.mark.parametrize(
    ("sender", "body", "answer"),
    [
        (
            "+1 415 555 0100",
            "hello?",
            "tocsin: reply ACK &lt;incident number&gt;, or 1, to acknowledge.",
        ),
        ("+1 415 555 0100", "ACK 999", "tocsin: no incident #999."),
        (LEE_PHONE, "1", "tocsin: no open incident was paged to you."),  # lee was not paged
    ],
)
async def test_texts_that_acknowledge_nothing(
    app: App, sender: str, body: str, answer: str
) -> None:
    inc_id, _ = await paged(app)
    before = await snapshot(app, inc_id)
    reply = await app.twilio.text_in(f"{PUBLIC}{SMS}", sender, body)
    assert reply.text == f"{DECL}<Response><Message>{answer}</Message></Response>"
    assert await snapshot(app, inc_id) == before


async def test_the_same_text_delivered_twice_acts_once(app: App) -> None:
    inc_id, _ = await paged(app)
    number = (await app.record(inc_id)).number
    params = sms_params(f"ACK {number}")
    first = await post(app, SMS, params)
    second = await post(app, SMS, params)
    assert first == (
        200,
        f"{DECL}<Response><Message>tocsin: #{number} acknowledged.</Message></Response>",
    )
    assert second == (200, f"{DECL}<Response />")
    assert len(events(await app.timeline(inc_id), "ack")) == 1


async def test_replying_1_after_a_missed_call_acknowledges_that_page(app: App) -> None:
    inc_id, _ = await paged(app)
    number = (await app.record(inc_id)).number
    reply = await app.twilio.text_in(f"{PUBLIC}{SMS}", OLLIE_PHONE, "ACK")
    assert reply.text == (
        f"{DECL}<Response><Message>tocsin: #{number} acknowledged.</Message></Response>"
    )
    assert events(await app.timeline(inc_id), "ack") == [
        ("ack", "ollie", "sms", "acknowledged by ollie: replied by text")
    ]


# -- the store unavailable --------------------------------------------------------------------


async def test_while_the_store_is_down_callers_are_told_and_nothing_is_remembered(
    app: App,
) -> None:
    inc_id, row_id = await paged(app)
    press = call_params("in-progress", Digits="1")
    await app.rt.store.close()
    keypress = await post(app, f"{GATHER}?row={row_id}", press)
    status = await post(app, f"{STATUS}?row={row_id}", call_params("no-answer"))
    text = await post(app, SMS, sms_params("1"))
    await app.rt.store.open()

    # The caller is on the line: an apology, not a 503 Twilio would end the call on.
    assert keypress == (
        200,
        f"{DECL}<Response><Say>Sorry, tocsin could not record that. Please try the API or the "
        "web.</Say><Hangup /></Response>",
    )
    # Twilio retries the others.
    for path, (code, body) in ((STATUS, status), (SMS, text)):
        assert code == 503
        assert json.loads(body) == {
            "error": "store unavailable",
            "detail": "retry later",
            "path": path,
        }
    # The failed keypress was not remembered: the same one again acts.
    again = await post(app, f"{GATHER}?row={row_id}", press)
    assert "acknowledged. Thank you." in again[1]
    assert (await app.record(inc_id)).status == Status.ACKNOWLEDGED


async def test_ack_by_number_from_a_person_not_paged_for_it_is_refused(app: App) -> None:
    # Incident numbers are sequential: lee (configured, with a phone) was not paged for this one.
    inc_id, _ = await paged(app)
    number = (await app.record(inc_id)).number
    before = await snapshot(app, inc_id)

    reply = await app.twilio.text_in(f"{PUBLIC}{SMS}", LEE_PHONE, f"ACK {number}")

    assert reply.text == (
        f"{DECL}<Response><Message>tocsin: #{number} was not paged to you.</Message></Response>"
    )
    assert await snapshot(app, inc_id) == before
    assert (await app.record(inc_id)).status == Status.TRIGGERED


async def test_a_configured_responder_role_may_ack_any_incident_by_number(app: App) -> None:
    inc_id, _ = await paged(app)
    number = (await app.record(inc_id)).number
    cfg = yaml.safe_load(app.path.read_text())
    cfg["adapters"]["phone"]["sms_responders"] = ["lead"]  # roles: lead: [lee]
    app.path.write_text(yaml.safe_dump(cfg))
    await app.rt.reload()

    reply = await app.twilio.text_in(f"{PUBLIC}{SMS}", LEE_PHONE, f"ACK {number}")

    assert reply.text == (
        f"{DECL}<Response><Message>tocsin: #{number} acknowledged.</Message></Response>"
    )
    assert events(await app.timeline(inc_id), "ack") == [
        ("ack", "lee", "sms", "acknowledged by lee: replied by text")
    ]
