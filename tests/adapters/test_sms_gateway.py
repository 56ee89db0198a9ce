"""The generic HTTP SMS gateway provider against the fake gateway: requests, outcomes, check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from adapters.config import GatewayConfig, PhoneConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import FailureReason
from adapters.phone import check
from adapters.phone.gateway import GatewayProvider, json_path, render_request
from adapters.phone.provider import VoicePage
from escalation.engine.clock import VirtualClock
from tests.adapters.test_phone_failover import JSON_BODY, gateway_section
from tests.fakes.sms_gateway import API_KEY, FakeSmsGateway, GatewayAnswer

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
TO = "+447700900123"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSmsGateway]:
    f = await FakeSmsGateway().start()
    yield f
    await f.close()


Make = Callable[..., GatewayProvider]


@pytest.fixture
def make(fake: FakeSmsGateway, session: aiohttp.ClientSession) -> Make:
    def build(**kw: Any) -> GatewayProvider:
        cfg = GatewayConfig(**(gateway_section(fake.url) | kw))
        return GatewayProvider(
            cfg, AdapterContext("https://t.example", lambda: session, VirtualClock(T0))
        )

    return build


async def test_a_text_is_the_rendered_request_and_the_id_comes_back(
    make: Make, fake: FakeSmsGateway
) -> None:
    r = await make().send_sms(TO, 'Disk "full" & <hot>')
    [sent] = fake.sent
    assert r.ok and r.provider_id == sent["id"]
    assert sent == {"id": sent["id"], "to": TO, "from": "TOCSIN", "text": 'Disk "full" & <hot>'}


async def test_a_form_body_and_a_token_in_the_url(make: Make, fake: FakeSmsGateway) -> None:
    req = render_request(
        GatewayConfig(
            method="GET",
            url="https://gw.example/send?key={{ token|urlencode }}&to={{ to|urlencode }}",
            form={"msg": "{{ message }}", "sender": "{{ from_number }}"},
            token="k&y",
            from_number="OPS",
        ),
        TO,
        "hi",
    )
    assert req.method == "GET"
    assert req.url == "https://gw.example/send?key=k%26y&to=%2B447700900123"
    assert req.form == [("msg", "hi"), ("sender", "OPS")]


@pytest.mark.parametrize(
    ("answer", "reason", "error"),
    [
        (
            GatewayAnswer(500, {"error": "down"}),
            FailureReason.RETRYABLE,
            'gateway sms 500: {"error": "down"}',
        ),
        (
            GatewayAnswer(429, {"error": "slow down"}, {"Retry-After": "7"}),
            FailureReason.RATE_LIMITED,
            'gateway sms 429: {"error": "slow down"}',
        ),
        (
            GatewayAnswer(200, {"status": "error"}),
            FailureReason.PERMANENT,
            "gateway sms 200: status is 'error'",
        ),
        (GatewayAnswer(drop=True), FailureReason.RETRYABLE, "gateway sms: ServerDisconnectedError"),
    ],
)
async def test_outcomes(
    make: Make, fake: FakeSmsGateway, answer: GatewayAnswer, reason: FailureReason, error: str
) -> None:
    fake.script(answer)
    r = await make().send_sms(TO, "x")
    assert (r.ok, r.reason, r.error) == (False, reason, error)
    if answer.status == 429:
        assert r.retry_after == 7


async def test_the_token_never_reaches_an_error(make: Make, fake: FakeSmsGateway) -> None:
    fake.script(GatewayAnswer(400, {"error": f"key {API_KEY} is suspended"}))
    r = await make().send_sms(TO, "x")
    assert r.reason == FailureReason.PERMANENT
    assert API_KEY not in r.error and "***" in r.error
    wrong = await make(token="wrong").send_sms(TO, "x")
    assert wrong.error == 'gateway sms 401: {"status": "error", "error": "invalid api key"}'


async def test_a_request_the_gateway_refuses_fails_the_test(
    make: Make, fake: FakeSmsGateway
) -> None:
    # Templates rendering what the gateway refuses: without "from", with a national number, as
    # a GET. Each is answered as the gateway answers it and remembered, so that close() fails
    # any test that sent one without saying it meant to.
    no_from = '{"to": {{ to|tojson }}, "text": {{ message|tojson }}}'
    national = JSON_BODY.replace("{{ to|tojson }}", "{{ to|replace('+44', '0')|tojson }}")
    for provider in (make(json_body=no_from), make(json_body=national), make(method="GET")):
        r = await provider.send_sms(TO, "x")
        assert r.reason == FailureReason.PERMANENT
    assert fake.violations == [
        "400 missing field: from",
        "400 invalid destination",
        "405 method not allowed",
    ]
    with pytest.raises(AssertionError, match="requests the SMS gateway refuses were sent"):
        await fake.close()
    fake.expect_violations()  # the fixture closes it again


async def test_a_gateway_places_no_calls(make: Make, fake: FakeSmsGateway) -> None:
    r = await make().place_call(TO, VoicePage(("r",), "s", "p", "g"))
    assert r.reason == FailureReason.PERMANENT and not fake.requests


def test_check_renders_every_template_on_a_sample() -> None:
    base = {"account_sid": "AC1", "auth_token": "t", "from_number": "+15005550006"}
    good = PhoneConfig(**base, providers=["gateway"], gateway=gateway_section("https://gw.example"))
    assert check(good) == []
    bad = gateway_section("https://gw.example") | {
        "json_body": '{"to": {{ to }}}',  # not quoted: not JSON
        "headers": {"X-Key": "{{ token"},
    }
    problems = check(PhoneConfig(**base, providers=["gateway"], gateway=bad))
    assert [loc for loc, _ in problems] == [("gateway", "headers", "X-Key")]
    bad["headers"] = {}
    [(loc, message)] = check(PhoneConfig(**base, providers=["gateway"], gateway=bad))
    assert loc == ("gateway",) and "json_body does not render JSON" in message
    nourl = gateway_section("https://gw.example") | {"url": "{{ to }}"}
    [(_, message)] = check(PhoneConfig(**base, providers=["gateway"], gateway=nourl))
    assert "url template does not render an http(s) URL" in message


def test_config_needs_each_listed_provider() -> None:
    with pytest.raises(ValidationError, match="provider gateway needs the gateway section"):
        PhoneConfig(providers=["gateway"])
    with pytest.raises(ValidationError, match="twilio needs account_sid"):
        PhoneConfig(providers=["twilio", "gateway"], gateway=gateway_section("https://g.example"))
    assert PhoneConfig(account_sid="AC1", auth_token="t", from_number="+1").order == ["twilio"]


def test_json_path() -> None:
    doc = {"messages": [{"status": "0", "id": "m1"}]}
    assert json_path(doc, "messages.0.id") == "m1"
    assert json_path(doc, "messages.1.id") is None
    assert json_path(None, "a") is None
