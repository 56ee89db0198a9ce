"""The ``phone`` and ``sms`` channels against the fake Twilio: exact requests, TwiML, decisions.

Also the signature function, checked against twilio-python's published test vectors for
``RequestValidator`` (token ``12345``, ``https://mycompany.com/myapp.php?foo=1&bar=2``) and
against the fake's own, independent signing.
"""

from __future__ import annotations

import base64
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.config import AdaptersConfig, PhoneConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.phone import CallNotifier, SmsNotifier, build
from adapters.phone.codes import SmsReply, parse_reply
from adapters.phone.notifiers import sms_body, voice_page
from adapters.phone.provider import VoicePage, normalize_number
from adapters.phone.signature import compute_signature, signature_urls, verify_signature
from adapters.phone.twilio import TwilioProvider, callback_url, needs_fallback
from adapters.phone.twiml import (
    MAX_TWIML,
    call_twiml,
    clean_text,
    empty_twiml,
    gather_twiml,
    message_twiml,
    say_twiml,
)
from adapters.registry import AdapterContext, build_notifiers
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import IncidentRecord, OutboxRecord, Status
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TWILIO_NUMBER,
    FakeTwilio,
    Scripted,
    twilio_signature,
)

T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
PUBLIC = "https://tocsin.example.com"
INC_ID = "4f1c2a9e0b7d4c3e8a21"
ROW_ID = f"{INC_ID}:0:page:0:0:ollie:phone"
ROW_Q = f"{INC_ID}:0:page:0:0:ollie:phone"  # ':' stays readable in the query
OLLIE = {"name": "Ollie Oncall", "phone": "+1 (415) 555-0100", "email": "ollie@example.com"}
OLLIE_E164 = "+14155550100"
DECL = '<?xml version="1.0" encoding="UTF-8"?>'

# twilio-python tests/unit/test_request_validator.py: the documented example.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def incident(**kw: Any) -> IncidentRecord:
    base: dict[str, Any] = dict(
        id=INC_ID,
        number=42,
        key="k",
        status=Status.TRIGGERED,
        severity="P0",
        title="DiskFull on db1",
        team=None,
        policy_name="critical",
        policy={"steps": []},
        level={"name": "SEV-1"},
        opened_at=T0,
        updated_at=T0,
    )
    base.update(kw)
    return IncidentRecord(**base)


def row(kind: str = "page", channel: str = "phone", **kw: Any) -> OutboxRecord:
    base: dict[str, Any] = dict(
        id=f"{INC_ID}:0:{kind}:0:0:ollie:{channel}",
        incident_id=INC_ID,
        step_id=f"{INC_ID}:0:{kind}:0:0",
        kind=kind,
        tier=0,
        round=0,
        target="role:oncall",
        person="ollie",
        channel=channel,
        created_at=T0,
        not_before=T0,
    )
    base.update(kw)
    return OutboxRecord(**base)


def delivery(kind: str = "page", channel: str = "phone", **kw: Any) -> Delivery:
    inc = kw.pop("incident", incident())
    person = kw.pop("person", OLLIE)
    return Delivery(
        row(kind, channel), inc, person, {"incident": f"{PUBLIC}/api/v1/incidents/{INC_ID}"}, **kw
    )


def phone_config(base_url: str, **kw: Any) -> PhoneConfig:
    values: dict[str, Any] = dict(
        base_url=base_url,
        account_sid=ACCOUNT_SID,
        auth_token=SecretStr(AUTH_TOKEN),
        from_number=TWILIO_NUMBER,
        ring_timeout=timedelta(seconds=25),
        timeout=timedelta(seconds=2),
    )
    values.update(kw)
    return PhoneConfig(**values)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    f = await FakeTwilio(unsubscribed={"+14155550199"}, unverified={"+14155550198"}).start()
    yield f
    await f.close()


Make = Callable[..., TwilioProvider]


@pytest.fixture
def make_provider(fake: FakeTwilio, session: aiohttp.ClientSession) -> Make:
    def make(**kw: Any) -> TwilioProvider:
        base = kw.pop("base_url", fake.url)
        ctx = AdapterContext(PUBLIC, lambda: session, VirtualClock(T0))
        return TwilioProvider(phone_config(base, **kw), ctx)

    return make


def form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


def expected_call_twiml(speech: str, prompt: str, rows: str = f"row={ROW_Q}") -> str:
    action = f"{PUBLIC}/api/v1/phone/twilio/gather?{rows}".replace("&", "&amp;")
    return (
        f'{DECL}<Response><Gather input="dtmf" numDigits="1" method="POST" timeout="10" '
        f'action="{action}"><Say loop="2">{speech} {prompt}</Say></Gather>'
        "<Say>No key pressed. The alert stays open and will escalate. Goodbye.</Say>"
        "<Hangup /></Response>"
    )


# -- signature ---------------------------------------------------------------------------------


def test_signature_matches_twilios_documented_example() -> None:
    assert compute_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    assert verify_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE) is True


def test_signature_sorts_repeated_parameters_by_value_like_twilio() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert compute_signature(DOC_TOKEN, DOC_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_a_parameter_repeated_with_the_same_value_is_signed_once_like_twilio() -> None:
    """twilio-php's vector: Digits sent as 5678, 1234, 1234 signs as 1234, 5678."""
    params = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert compute_signature(DOC_TOKEN, DOC_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert verify_signature(DOC_TOKEN, DOC_URL, params, "IK+Dwps556ElfBT0I3Rgjkr1wJU=") is True


def test_the_fake_signs_callbacks_as_twilios_published_vectors_show() -> None:
    """The fake's signing is checked against Twilio's vectors, not against tocsin's code."""
    assert twilio_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS.items()) == DOC_SIGNATURE
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123")] + [
        ("Digits", d) for d in ("5678", "1234", "1234")
    ]
    assert twilio_signature(DOC_TOKEN, DOC_URL, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    with_port = DOC_URL.replace(".com", ".com:443")
    assert twilio_signature(DOC_TOKEN, with_port, DOC_PARAMS.items()) == (
        "kvajT1Ptam85bY51eRf/AJRuM3w="
    )


async def test_the_fake_validates_create_requests_against_twilios_openapi_document(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    fake.expect_violations()
    # Basic auth by hand: aiohttp.BasicAuth and the auth= parameter are deprecated in aiohttp 3.14.
    basic = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    url = f"{fake.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    form = [
        ("To", "+14155550100"),
        ("From", TWILIO_NUMBER),
        ("Twiml", "<Response><Say>x</Say>"),
        ("StatusCallback", "/api/v1/phone/twilio/status"),
        ("StatusCallbackMethod", "PUT"),
        ("Timeout", "thirty"),
        ("Ringtone", "loud"),
    ]
    async with session.post(url, data=form, headers={"Authorization": f"Basic {basic}"}) as resp:
        assert resp.status in (201, 400)
    assert fake.violations == [
        [
            "Calls: unknown parameter 'Ringtone'",
            "Calls: StatusCallback: '/api/v1/phone/twilio/status' is not a 'uri'",
            "Calls: StatusCallbackMethod: 'PUT' is not one of ['GET', 'POST']",
            "Calls: Timeout: 'thirty' is not of type 'integer'",
            "Calls: Twiml: '<Response><Say>x</Say>' is not a 'twiml'",
        ]
    ]


def test_signature_accepts_the_url_with_or_without_the_default_port() -> None:
    # twilio-python's vectors: the same request signed over ...com:443/... and over ...com/...
    assert compute_signature(DOC_TOKEN, DOC_URL.replace(".com", ".com:443"), DOC_PARAMS) == (
        "kvajT1Ptam85bY51eRf/AJRuM3w="
    )
    assert verify_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=") is True
    with_port = DOC_URL.replace(".com", ".com:443")
    assert verify_signature(DOC_TOKEN, with_port, DOC_PARAMS, DOC_SIGNATURE) is True
    assert signature_urls("http://h.example:8080/p?q=1") == ["http://h.example:8080/p?q=1"]
    assert signature_urls("http://h.example/p") == ["http://h.example/p", "http://h.example:80/p"]


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        (DOC_TOKEN, DOC_URL, DOC_PARAMS, None),
        (DOC_TOKEN, DOC_URL, DOC_PARAMS, ""),
        (DOC_TOKEN, DOC_URL, DOC_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8"),
        ("54321", DOC_URL, DOC_PARAMS, DOC_SIGNATURE),
        (DOC_TOKEN, DOC_URL.replace("foo=1", "foo=2"), DOC_PARAMS, DOC_SIGNATURE),
        (DOC_TOKEN, DOC_URL, {**DOC_PARAMS, "Digits": "1"}, DOC_SIGNATURE),
        (DOC_TOKEN, DOC_URL, {**DOC_PARAMS, "Extra": ""}, DOC_SIGNATURE),
        ("", DOC_URL, DOC_PARAMS, compute_signature("", DOC_URL, DOC_PARAMS)),
    ],
    ids=[
        "missing",
        "empty",
        "truncated",
        "other-token",
        "other-url",
        "changed-param",
        "added-param",
        "no-token",
    ],
)
def test_signature_rejects_anything_else(
    token: str, url: str, params: dict[str, str], signature: str | None
) -> None:
    assert verify_signature(token, url, params, signature) is False


def test_signature_agrees_with_the_fakes_independent_signing() -> None:
    params = [
        ("Body", "ACK 42 & <ok> ü"),
        ("From", "+14155550100"),
        ("MessageSid", "SM" + "a" * 32),
        ("NumMedia", "0"),
        ("To", TWILIO_NUMBER),
    ]
    url = f"{PUBLIC}/api/v1/phone/twilio/gather?row=a%3Eb:c&row=d"
    sig = twilio_signature(AUTH_TOKEN, url, params)
    assert compute_signature(AUTH_TOKEN, url, params) == sig
    assert verify_signature(AUTH_TOKEN, url, params, sig) is True


# -- TwiML and texts -------------------------------------------------------------------------


def test_call_twiml_escapes_titles_and_the_action_url() -> None:
    action = f"{PUBLIC}/api/v1/phone/twilio/gather?row=a&row=b"
    doc = call_twiml('Disk <full> & "hot"', "Press 1.", action, "Bye.")
    assert doc == (
        f'{DECL}<Response><Gather input="dtmf" numDigits="1" method="POST" timeout="10" '
        f'action="{PUBLIC}/api/v1/phone/twilio/gather?row=a&amp;row=b">'
        '<Say loop="2">Disk &lt;full&gt; &amp; "hot" Press 1.</Say></Gather>'
        "<Say>Bye.</Say><Hangup /></Response>"
    )
    root = ET.fromstring(doc)
    assert root.find("Gather").get("action") == action  # type: ignore[union-attr]


def test_call_twiml_drops_characters_xml_forbids() -> None:
    doc = call_twiml("bad\x00\x07 byte\x1b", "Press 1.", f"{PUBLIC}/g?row=x", "Bye.")
    assert ET.fromstring(doc).find("Gather/Say").text == "bad byte Press 1."  # type: ignore[union-attr]


def test_call_twiml_is_cut_to_twilios_4000_characters() -> None:
    doc = call_twiml("&" * 5000, "Press 1.", f"{PUBLIC}/g?row=x", "Bye.")
    assert len(doc) <= MAX_TWIML
    assert len(doc) > MAX_TWIML - 10
    said = ET.fromstring(doc).find("Gather/Say").text  # type: ignore[union-attr]
    assert said is not None and said.endswith("... Press 1.") and set(said[:-12]) == {"&"}
    with pytest.raises(ValueError, match="4000"):
        call_twiml("x", "Press 1.", f"{PUBLIC}/g?row=" + "x" * 4000, "Bye.")


def test_answer_documents() -> None:
    assert (
        say_twiml("Done & dusted.")
        == f"{DECL}<Response><Say>Done &amp; dusted.</Say><Hangup /></Response>"
    )
    assert message_twiml("ok <3") == f"{DECL}<Response><Message>ok &lt;3</Message></Response>"
    assert message_twiml(None) == f"{DECL}<Response /></Response>".replace("</Response>", "")
    assert empty_twiml() == f"{DECL}<Response />"
    assert gather_twiml("Again.", f"{PUBLIC}/g?row=a&row=b", "Bye.") == (
        f'{DECL}<Response><Gather input="dtmf" numDigits="1" method="POST" timeout="10" '
        f'action="{PUBLIC}/g?row=a&amp;row=b"><Say>Again.</Say></Gather>'
        "<Say>Bye.</Say><Hangup /></Response>"
    )


def test_clean_text() -> None:
    assert clean_text("  a\n\tb  ") == "a b"
    assert clean_text("abcdefghij", 8) == "abcde..."


def test_callback_urls_carry_every_row_encoded() -> None:
    assert callback_url(PUBLIC + "/", "/api/v1/phone/twilio/status", ["i:0:page>sms", "j"]) == (
        f"{PUBLIC}/api/v1/phone/twilio/status?row=i:0:page%3Esms&row=j"
    )


def test_sms_body_per_kind() -> None:
    assert sms_body(delivery("page", "sms")) == (
        "[SEV-1 P0] #42 DiskFull on db1 - reply ACK 42 (or 1) to acknowledge"
    )
    assert sms_body(delivery("resolve", "sms")) == "[RESOLVED] #42 DiskFull on db1"
    assert sms_body(delivery("reminder", "sms")) == (
        "[SEV-1 P0] #42 still open, status update due: DiskFull on db1"
    )
    long = sms_body(delivery("page", "sms", incident=incident(title="x" * 500)))
    assert len(long) == 160
    assert long.startswith("[SEV-1 P0] #42 xxx") and long.endswith(
        "... - reply ACK 42 (or 1) to acknowledge"
    )


def test_a_bundle_names_every_incident() -> None:
    other = incident(
        id="b" * 20, number=43, severity="P1", level={"name": "SEV-2"}, title="API slow"
    )
    extra = row(id=f"{'b' * 20}:0:page:0:0:ollie:sms", incident_id="b" * 20, channel="sms")
    d = Delivery(
        row("page", "sms"),
        incident(),
        OLLIE,
        {},
        bundle=(extra,),
        bundle_incidents={other.id: other},
    )
    assert sms_body(d) == (
        "[SEV-1 P0] #42 DiskFull on db1 | [SEV-2 P1] #43 API slow"
        " - reply ACK <number> for one, or 1 for all"
    )
    page = voice_page(d)
    assert page.refs == (row("page", "sms").id, extra.id)
    assert page.speech == (
        "Tocsin alert. Severity SEV-1 P0. Incident 42: DiskFull on db1. "
        "And 1 more: incident 43, severity SEV-2 P1: API slow."
    )
    assert (
        page.prompt
        == "Press 1 to acknowledge all of them. Press 2 to escalate to the next tier now."
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("ACK 42", SmsReply("42")),
        ("ack #42", SmsReply("42")),
        (" Ack42. ", SmsReply("42")),
        ("acknowledge 7", SmsReply("7")),
        ("1", SmsReply(None)),
        ("ACK", SmsReply(None)),
        ("12", None),
        ("ACK forty", None),
        ("yes", None),
        ("", None),
    ],
)
def test_parse_reply(body: str, expected: SmsReply | None) -> None:
    assert parse_reply(body) == expected


def test_normalize_number() -> None:
    assert normalize_number("+1 (415) 555-0100") == OLLIE_E164
    assert normalize_number("+44.7700.900123") == "+447700900123"


@pytest.mark.parametrize(
    ("status", "fallback"),
    [
        ("no-answer", True),
        ("busy", True),
        ("failed", True),
        ("canceled", True),
        ("completed", False),
        ("in-progress", False),
        ("ringing", False),
        ("queued", False),
        ("", False),
    ],
)
def test_status_decision_table(status: str, fallback: bool) -> None:
    assert needs_fallback(status) is fallback


# -- what reaches Twilio ---------------------------------------------------------------------


async def test_a_page_is_a_call_with_the_exact_form_body(
    fake: FakeTwilio, make_provider: Make
) -> None:
    result = await CallNotifier(make_provider()).notify(delivery())
    [req] = fake.requests
    sid = next(iter(fake.calls))
    assert result == DeliveryResult(ok=True, provider_id=sid)
    assert sid.startswith("CA") and len(sid) == 34
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert (
        req.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    )
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(req.body) == [
        ("To", OLLIE_E164),
        ("From", TWILIO_NUMBER),
        (
            "Twiml",
            expected_call_twiml(
                "Tocsin alert. Severity SEV-1 P0. Incident 42: DiskFull on db1.",
                "Press 1 to acknowledge. Press 2 to escalate to the next tier now.",
            ),
        ),
        ("StatusCallback", f"{PUBLIC}/api/v1/phone/twilio/status?row={ROW_Q}"),
        ("StatusCallbackEvent", "completed"),
        ("StatusCallbackMethod", "POST"),
        ("Timeout", "25"),
    ]
    assert req.status == 201
    resource = fake.calls[sid]["resource"]
    assert resource["status"] == "queued" and resource["direction"] == "outbound-api"
    assert resource["date_created"].endswith(" +0000")


async def test_a_text_has_the_exact_form_body(fake: FakeTwilio, make_provider: Make) -> None:
    result = await SmsNotifier(make_provider()).notify(delivery("page", "sms"))
    [req] = fake.requests
    sid = next(iter(fake.messages))
    assert result == DeliveryResult(ok=True, provider_id=sid)
    assert sid.startswith("SM")
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert form(req.body) == [
        ("To", OLLIE_E164),
        ("From", TWILIO_NUMBER),
        ("Body", "[SEV-1 P0] #42 DiskFull on db1 - reply ACK 42 (or 1) to acknowledge"),
    ]


async def test_a_resolved_notice_on_the_phone_channel_is_texted(
    fake: FakeTwilio, make_provider: Make
) -> None:
    result = await CallNotifier(make_provider()).notify(
        delivery("resolve", incident=incident(status=Status.RESOLVED))
    )
    assert result.ok
    assert fake.calls == {}
    [req] = fake.requests_to("Messages")
    assert dict(form(req.body))["Body"] == "[RESOLVED] #42 DiskFull on db1"


async def test_a_ring_timeout_above_twilios_maximum_is_capped(
    fake: FakeTwilio, make_provider: Make
) -> None:
    await CallNotifier(make_provider(ring_timeout=timedelta(minutes=20))).notify(delivery())
    assert dict(form(fake.requests[0].body))["Timeout"] == "600"


async def test_a_person_without_a_phone_cannot_be_attempted_and_no_request_goes(
    fake: FakeTwilio, make_provider: Make
) -> None:
    for notifier in (CallNotifier(make_provider()), SmsNotifier(make_provider())):
        result = await notifier.notify(delivery(person={"name": "Nophone"}))
        assert result == DeliveryResult(
            ok=False, reason=FailureReason.NO_ADDRESS, error="person 'ollie' has no phone number"
        )
    assert fake.requests == []


# -- what Twilio answers → what the dispatcher does ------------------------------------------


@pytest.mark.parametrize(
    ("scripted", "expected"),
    [
        (
            Scripted(400, 21211, "The 'To' number +141 is not a valid phone number."),
            DeliveryResult(
                ok=False,
                error="twilio call 400 21211: The 'To' number +141 is not a valid phone number.",
            ),
        ),
        (
            Scripted(400, 21608, "The number is unverified."),
            DeliveryResult(ok=False, error="twilio call 400 21608: The number is unverified."),
        ),
        (
            Scripted(400, 21610, "Attempt to send to unsubscribed recipient"),
            DeliveryResult(
                ok=False, error="twilio call 400 21610: Attempt to send to unsubscribed recipient"
            ),
        ),
        (
            Scripted(429, 20429, "Too Many Requests", {"Retry-After": "7"}),
            DeliveryResult(
                ok=False,
                reason=FailureReason.RATE_LIMITED,
                error="twilio call 429 20429: Too Many Requests",
                retry_after=7.0,
            ),
        ),
        (
            Scripted(
                429, 20429, "Too Many Requests", {"Retry-After": "Sun, 22 Nov 2026 13:01:30 GMT"}
            ),
            DeliveryResult(
                ok=False,
                reason=FailureReason.RATE_LIMITED,
                error="twilio call 429 20429: Too Many Requests",
                retry_after=90.0,
            ),
        ),
        (
            Scripted(500, 20500, "Internal Server Error"),
            DeliveryResult(
                ok=False,
                reason=FailureReason.RETRYABLE,
                error="twilio call 500 20500: Internal Server Error",
            ),
        ),
        (
            Scripted(503, 20503, "Service Unavailable"),
            DeliveryResult(
                ok=False,
                reason=FailureReason.RETRYABLE,
                error="twilio call 503 20503: Service Unavailable",
            ),
        ),
        (
            Scripted(404, 20404, "Not Found"),
            DeliveryResult(ok=False, error="twilio call 404 20404: Not Found"),
        ),
    ],
    ids=["21211", "21608", "21610", "429", "429-date", "500", "503", "404"],
)
async def test_call_answer_decision_table(
    fake: FakeTwilio, make_provider: Make, scripted: Scripted, expected: DeliveryResult
) -> None:
    fake.script("Calls", scripted)
    assert await CallNotifier(make_provider()).notify(delivery()) == expected
    assert fake.calls == {}  # scripted errors create nothing


async def test_the_fake_rejects_invalid_numbers_like_twilio(
    fake: FakeTwilio, make_provider: Make
) -> None:
    bad = delivery(person={"phone": "415-555-0100"})  # no country code: not E.164
    assert await CallNotifier(make_provider()).notify(bad) == DeliveryResult(
        ok=False,
        error="twilio call 400 21211: The 'To' number 4155550100 is not a valid phone number.",
    )
    sms = SmsNotifier(make_provider())
    assert await sms.notify(
        delivery("page", "sms", person={"phone": "+14155550199"})
    ) == DeliveryResult(
        ok=False, error="twilio sms 400 21610: Attempt to send to unsubscribed recipient"
    )
    result = await sms.notify(delivery("page", "sms", person={"phone": "+14155550198"}))
    assert result.ok is False and result.retryable is False and " 21608: " in result.error


async def test_wrong_credentials_are_a_permanent_failure_that_leaks_no_secret(
    fake: FakeTwilio, make_provider: Make
) -> None:
    result = await CallNotifier(make_provider(auth_token=SecretStr("wrong-token"))).notify(
        delivery()
    )
    assert result == DeliveryResult(ok=False, error="twilio call 401 20003: Authenticate")
    assert fake.requests[0].status == 401
    assert "wrong-token" not in repr(result)


async def test_a_call_timing_out_after_the_request_was_sent_is_unknown(
    fake: FakeTwilio, make_provider: Make
) -> None:
    fake.script("Calls", Scripted(hang=3.0))
    result = await CallNotifier(make_provider(timeout=timedelta(seconds=0.5))).notify(delivery())
    assert result == DeliveryResult(
        ok=False,
        reason=FailureReason.UNKNOWN_OUTCOME,
        error="twilio call: timed out after the request was sent; it may be ringing",
    )
    assert len(fake.calls) == 1  # Twilio did create it: a blind retry would ring twice


async def test_a_call_whose_connection_drops_is_unknown(
    fake: FakeTwilio, make_provider: Make
) -> None:
    fake.script("Calls", Scripted(drop=True))
    result = await CallNotifier(make_provider()).notify(delivery())
    assert result.ok is False and result.unknown is True and result.retryable is False
    assert (
        result.error
        == "twilio call: ServerDisconnectedError after the request was sent; it may be ringing"
    )
    assert len(fake.calls) == 1


async def test_a_text_timing_out_is_retryable(fake: FakeTwilio, make_provider: Make) -> None:
    fake.script("Messages", Scripted(hang=3.0))
    result = await SmsNotifier(make_provider(timeout=timedelta(seconds=0.5))).notify(
        delivery("page", "sms")
    )
    assert result == DeliveryResult(
        ok=False, reason=FailureReason.RETRYABLE, error="twilio sms: timed out"
    )


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_connection_refused_is_retryable_even_for_a_call(make_provider: Make) -> None:
    provider = make_provider(base_url=f"http://127.0.0.1:{_closed_port()}")
    result = await CallNotifier(provider).notify(delivery())
    assert result.ok is False and result.retryable is True and result.unknown is False
    assert result.error == "twilio call: cannot connect (Connection refused)"


async def test_the_fake_checks_required_fields_and_the_twiml_limit(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    fake.expect_violations()
    auth = {
        "Authorization": "Basic "
        + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    }
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:nope".encode()).decode()}
    calls = f"{fake.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    cases = [
        ({"From": TWILIO_NUMBER, "Twiml": "<Response/>"}, 21201),
        ({"To": OLLIE_E164, "Twiml": "<Response/>"}, 21213),
        ({"To": OLLIE_E164, "From": TWILIO_NUMBER}, 21205),
        ({"To": OLLIE_E164, "From": TWILIO_NUMBER, "Twiml": "x" * 4001}, 32018),
    ]
    for data, code in cases:
        async with session.post(calls, data=data, headers=auth) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["code"] == code and body["status"] == 400
            assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    async with session.post(calls, data={}, headers=wrong) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
        assert await resp.json() == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
    assert fake.calls == {}


async def test_the_provider_is_built_through_the_registry(session: aiohttp.ClientSession) -> None:
    ctx = AdapterContext(PUBLIC, lambda: session, VirtualClock(T0))
    cfg = AdaptersConfig(phone=phone_config("http://127.0.0.1:1"))
    notifiers = build_notifiers(cfg, ctx)
    assert isinstance(notifiers["phone"], CallNotifier)
    assert isinstance(notifiers["sms"], SmsNotifier)
    direct = build(cfg.phone, ctx)  # type: ignore[arg-type]
    assert sorted(direct) == ["phone", "sms"]


def test_voice_page_of_a_single_page() -> None:
    assert voice_page(delivery()) == VoicePage(
        refs=(ROW_ID,),
        speech="Tocsin alert. Severity SEV-1 P0. Incident 42: DiskFull on db1.",
        prompt="Press 1 to acknowledge. Press 2 to escalate to the next tier now.",
        goodbye="No key pressed. The alert stays open and will escalate. Goodbye.",
    )


@pytest.mark.parametrize("signature", ["\udcff\udcfe", "é" * 28, "\x00", "caf\u00e9=="])
def test_a_non_ascii_or_undecodable_signature_is_simply_wrong(signature: str) -> None:
    # aiohttp hands header bytes that are not UTF-8 over as lone surrogates.
    assert verify_signature("token", "https://x.example/sms", [("Body", "1")], signature) is False
