"""SMS beyond Twilio, whole app: the generic HTTP gateway, and failover across providers.

The app texts people through ``adapters.phone.providers: [twilio, gateway]`` (the fake Twilio,
then the fake SMS gateway of tests/fakes/sms_gateway.py, configured by templates as the README
shows). Replies come back through the gateway's inbound route, authenticated by HMAC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from escalation.incidents.model import IncidentRecord, OutboxState, Status
from router.inbound_gateway import GATEWAY_SMS_PATH
from tests.adapters.conftest import MakeAdapterApp, provider_outcomes
from tests.driver.app import App, MakeApp
from tests.driver.config import LONDON_BUSINESS_HOURS, phone_adapter, write_config
from tests.driver.payloads import sample_bytes
from tests.fakes.sms_gateway import API_KEY, FakeSmsGateway, GatewayAnswer
from tests.fakes.twilio import FakeTwilio, Scripted

FIRING = "alertmanager-0.25-firing.json"  # severity=critical → P0
OLLIE = "+14155550100"
INBOUND_SECRET = "gw-inbound-hmac-9c1f"

PEOPLE = """\
people:
  ollie: {name: Ollie Oncall, phone: "+1 415 555 0100", channels: [sms], fallback: [sms, log]}
  lee: {name: Lee Lead, phone: "+14155550101", channels: [sms]}
  max: {phone: "+14155550102", channels: [sms]}
  vic: {phone: "+14155550103", channels: [sms]}
roles:
  oncall: [ollie]
  lead: [lee]
  manager: [max]
  vp: [vic]
"""

JSON_BODY = (
    '{"to": {{ to|tojson }}, "from": {{ from_number|tojson }}, "text": {{ message|tojson }}}'
)


def gateway_section(url: str, **inbound: Any) -> dict[str, Any]:
    """The README's gateway example, pointed at the fake."""
    return {
        "url": f"{url}/v1/messages",
        "headers": {"Authorization": "Bearer {{ token }}"},
        "json_body": JSON_BODY,
        "token": API_KEY,
        "from_number": "TOCSIN",
        "success_path": "status",
        "success_value": "queued",
        "id_path": "id",
        "timeout": "2s",
        "inbound": inbound or {"auth": "hmac-sha256", "secret": INBOUND_SECRET},
    }


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    fake = await FakeSmsGateway().start()
    yield fake
    await fake.close()


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = await FakeTwilio().start()
    yield fake
    await fake.close()


@pytest.fixture
def make_sms_app(
    make_app: MakeApp, tmp_path: Path, twilio: FakeTwilio, gateway: FakeSmsGateway
) -> MakeAdapterApp:
    async def make(providers: list[str], *, breaker_failures: int = 5, **inbound: Any) -> App:
        phone = phone_adapter(twilio.url)
        phone |= {"providers": providers, "gateway": gateway_section(gateway.url, **inbound)}
        dispatch = {"breaker_failures": breaker_failures, "backoff_initial": "1s"}
        adapters = {"adapters": {"phone": phone, "dispatch": dispatch}}
        path = write_config(tmp_path, LONDON_BUSINESS_HOURS, PEOPLE, adapters)
        return await make_app(path, fakes=(twilio, gateway))

    return make


async def fire(app: App) -> IncidentRecord:
    return await app.fire(sample_bytes(FIRING))


async def test_twilio_5xx_fails_over_to_the_gateway_with_each_attempt_recorded(
    make_sms_app: MakeAdapterApp, twilio: FakeTwilio, gateway: FakeSmsGateway
) -> None:
    app = await make_sms_app(["twilio", "gateway"])
    twilio.script("Messages", Scripted(status=503, code=20503, message="Service unavailable"))
    inc = await fire(app)
    await app.tick()

    # One request each: Twilio answered 503, the gateway took the text.
    assert [r.status for r in twilio.requests_to("Messages")] == [503]
    [sent] = gateway.sent
    assert sent["to"] == OLLIE and sent["from"] == "TOCSIN"
    assert f"reply ACK {inc.number}" in sent["text"]
    assert gateway.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"

    [row] = [r for r in await app.outbox(inc.id) if r.person == "ollie"]
    assert row.state == OutboxState.SENT
    assert row.attempts == 1
    assert row.provider_id == sent["id"]
    timeline = await app.timeline(inc.id)
    assert provider_outcomes(timeline) == [[("twilio", "retryable"), ("gateway", "delivered")]]
    [delivered] = [e for e in timeline if e.data and "providers" in e.data]
    assert delivered.message == (
        "page delivered to ollie via sms; twilio retryable (twilio sms 503 20503: Service"
        " unavailable), gateway delivered"
    )


async def test_an_open_breaker_skips_the_provider(
    make_sms_app: MakeAdapterApp, twilio: FakeTwilio, gateway: FakeSmsGateway
) -> None:
    app = await make_sms_app(["twilio", "gateway"], breaker_failures=1)
    twilio.script("Messages", Scripted(status=500, code=20500, message="Internal Server Error"))
    inc = await fire(app)
    await app.tick()
    await app.act(inc.id, "resolve")  # the resolved notice is the next text to ollie
    await app.tick()
    assert len(twilio.requests_to("Messages")) == 1  # not asked again while its breaker is open
    assert len(gateway.sent) == 2
    parts = provider_outcomes(await app.timeline(inc.id))
    assert parts == [
        [("twilio", "retryable"), ("gateway", "delivered")],
        [("twilio", "breaker open"), ("gateway", "delivered")],
    ]


async def test_when_every_provider_fails_the_attempt_is_retried(
    make_sms_app: MakeAdapterApp, twilio: FakeTwilio, gateway: FakeSmsGateway
) -> None:
    app = await make_sms_app(["twilio", "gateway"])
    twilio.script("Messages", Scripted(status=500, code=20500, message="Internal Server Error"))
    gateway.script(GatewayAnswer(200, {"status": "error", "error": "no route"}))
    inc = await fire(app)
    await app.tick()
    [row] = [r for r in await app.outbox(inc.id) if r.person == "ollie"]
    # The gateway's refusal is permanent, Twilio's was not: worth another attempt.
    assert row.state == OutboxState.PENDING
    assert row.last_error == "gateway sms 200: status is 'error'"


async def test_a_gateway_reply_acknowledges_and_a_forged_one_is_refused(
    make_sms_app: MakeAdapterApp, gateway: FakeSmsGateway
) -> None:
    app = await make_sms_app(["gateway"])
    inc = await fire(app)
    await app.tick()
    assert len(gateway.sent) == 1
    target = str(app.client.make_url(GATEWAY_SMS_PATH))

    forged = await gateway.forward(target, OLLIE, f"ACK {inc.number}", hmac_secret="guessed")
    unsigned = await gateway.forward(target, OLLIE, f"ACK {inc.number}")
    assert forged == (403, forged[1]) and unsigned[0] == 403
    assert forged[1]["detail"] == "the gateway's authentication does not match"
    assert (await app.record(inc.id)).status == Status.TRIGGERED

    good = await gateway.forward(
        target, OLLIE, f"ack {inc.number}", hmac_secret=INBOUND_SECRET, message_id="mo-1"
    )
    assert good == (200, {"reply": f"tocsin: #{inc.number} acknowledged."})
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
    acks = [(e.actor, e.source) for e in await app.timeline(inc.id) if e.kind == "ack"]
    assert acks == [("ollie", "sms")]
    # The gateway retrying its forward acts once.
    again = await gateway.forward(
        target, OLLIE, f"ack {inc.number}", hmac_secret=INBOUND_SECRET, message_id="mo-1"
    )
    assert again == (200, {"reply": None})


async def test_a_gateway_reply_with_basic_auth_and_the_paged_rule(
    make_sms_app: MakeAdapterApp, gateway: FakeSmsGateway
) -> None:
    app = await make_sms_app(["gateway"], auth="basic", username="gw", secret="gw-basic-pw")
    inc = await fire(app)
    await app.tick()
    target = str(app.client.make_url(GATEWAY_SMS_PATH))
    wrong = await gateway.forward(target, OLLIE, "1", basic=("gw", "nope"))
    assert wrong[0] == 403
    # vic (the VP) was not paged for it yet: a known number may not acknowledge any incident.
    vic = await gateway.forward(
        target, "+14155550103", f"ACK {inc.number}", basic=("gw", "gw-basic-pw")
    )
    assert vic == (200, {"reply": f"tocsin: #{inc.number} was not paged to you."})
    ok = await gateway.forward(target, OLLIE, "1", basic=("gw", "gw-basic-pw"))
    assert ok == (200, {"reply": f"tocsin: #{inc.number} acknowledged."})
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_a_json_reply_with_custom_fields_and_header(
    make_sms_app: MakeAdapterApp, gateway: FakeSmsGateway
) -> None:
    app = await make_sms_app(
        ["gateway"],
        auth="hmac-sha256",
        secret=INBOUND_SECRET,
        header="X-Signature",
        format="json",
        from_field="from",
        text_field="text",
    )
    inc = await fire(app)
    await app.tick()
    target = str(app.client.make_url(GATEWAY_SMS_PATH))
    as_form = await gateway.forward(target, OLLIE, "1", hmac_secret=INBOUND_SECRET)
    assert as_form[0] == 400  # signed, but not the JSON this gateway is said to send
    ok = await gateway.forward(target, OLLIE, "1", hmac_secret=INBOUND_SECRET, as_json=True)
    assert ok == (200, {"reply": f"tocsin: #{inc.number} acknowledged."})
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
