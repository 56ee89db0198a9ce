"""No log line and no metric ever carries a credential.

Every route is driven with the configured secrets (correctly, and misused: a secret sent where
another belongs, inside an Authorization header longer than aiohttp's header limit, in a
form field, in a query string), with every log record at every level captured. Then every
record (its message, its extras, its traceback) and the ``/metrics`` exposition are searched for
each secret's value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import quote

import pytest

from tests.driver.logs import EveryLine
from tests.fakes.pagerduty import Scripted, incident_webhook, sign
from tests.fakes.slack import block_action, slash_command
from tests.fakes.slack import signed as slack_signed
from tests.fakes.twilio import AUTH_TOKEN
from tests.fakes.vonage import vonage_webhook_jwt
from tests.fuzz.conftest import (
    AM_PASSWORD,
    AM_TOKEN,
    AM_USER,
    GATEWAY_SECRET,
    GATHER,
    GENIE_KEY,
    INCIDENTS,
    LINK_SECRET,
    NTFY_LINK_SECRET,
    OLLIE_PHONE,
    PD_API_TOKEN,
    PD_SECRETS,
    PD_WEBHOOK,
    PUSHOVER_APP_TOKEN,
    PUSHOVER_CALLBACK,
    PUSHOVER_CALLBACK_SECRET,
    READ_TOKEN,
    RECEIVER,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    SMS,
    STATUS,
    TEAMS_LINK_SECRET,
    VONAGE_SECRET,
    WRITE_TOKEN,
    FuzzApp,
    build_request,
    raw_http,
    sample_bytes,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

GATEWAY_SMS = "/api/v1/phone/gateway/sms"
VONAGE = "/api/v1/phone/vonage"

SECRETS = [
    *(AM_TOKEN, AM_PASSWORD, READ_TOKEN, WRITE_TOKEN, *PD_SECRETS, PD_API_TOKEN),
    *(LINK_SECRET, TEAMS_LINK_SECRET, AUTH_TOKEN, SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN),
    *(NTFY_LINK_SECRET, PUSHOVER_APP_TOKEN, PUSHOVER_CALLBACK_SECRET),
    *(GATEWAY_SECRET, VONAGE_SECRET, GENIE_KEY),
]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _drive_every_route(app: FuzzApp) -> None:
    c = app.client
    am = {"Content-Type": "application/json"}
    body = sample_bytes()
    for auth in (f"Bearer {AM_TOKEN}", _basic(AM_USER, AM_PASSWORD), f"Bearer {WRITE_TOKEN}"):
        await c.post(RECEIVER, data=body, headers=am | {"Authorization": auth})
    await c.post(RECEIVER, data=b"{", headers=am | {"Authorization": f"Bearer {AM_TOKEN}"})
    for token in (READ_TOKEN, WRITE_TOKEN, AM_TOKEN, LINK_SECRET, TEAMS_LINK_SECRET):
        bearer = {"Authorization": f"Bearer {token}"}
        await c.get(INCIDENTS, headers=bearer)
        await c.get(f"{INCIDENTS}/{app.seeded.incident_ids[1]}", headers=bearer)
        await c.post(f"{INCIDENTS}/{app.seeded.incident_ids[1]}/notes", json={}, headers=bearer)
        await c.post("/-/reload", headers=bearer)
    ping = incident_webhook("incident.acknowledged", incident_key=app.seeded.incident_ids[1])
    raw = str(ping).encode()
    for secret in (*PD_SECRETS, AUTH_TOKEN):
        await c.post(PD_WEBHOOK, data=raw, headers={"X-PagerDuty-Signature": sign(raw, secret)})
        await c.post(PD_WEBHOOK, data=raw, headers={"X-PagerDuty-Signature": f"v1={secret}"})
    await _drive_pagerduty_lookups(app)
    row = quote(app.seeded.row_ids[0], safe=":")
    for path, params in (
        (f"{GATHER}?row={row}", [("Digits", "7"), ("CallSid", "CA1")]),
        (f"{STATUS}?row={row}", [("CallStatus", "completed"), ("CallSid", "CA1")]),
        (SMS, [("From", OLLIE_PHONE), ("Body", "hello"), ("MessageSid", "SM1")]),
        (f"{SMS}?token={AUTH_TOKEN}", [("From", OLLIE_PHONE), ("Body", AUTH_TOKEN)]),
    ):
        good = app.twilio_sign(path, params)
        await c.post(path, data=params, headers={"X-Twilio-Signature": good})
        await c.post(path, data=params, headers={"X-Twilio-Signature": AUTH_TOKEN})
    token = app.seeded.ack_tokens[app.seeded.incident_ids[1]]
    links = (token, LINK_SECRET, TEAMS_LINK_SECRET, NTFY_LINK_SECRET, token + "x")
    for link in (*links, PUSHOVER_CALLBACK_SECRET, PUSHOVER_APP_TOKEN):
        for path in ("/api/v1/email/ack", "/api/v1/teams/ack", "/api/v1/ntfy/ack"):
            await c.get(path, params={"token": link})
            await c.post(path, params={"token": link}, data={"token": link})
        # Pushover's callback form, with the secret as its token and as its receipt.
        form = {"receipt": link, "acknowledged": "1", "acknowledged_by": link}
        await c.post(PUSHOVER_CALLBACK, params={"token": link}, data=form)
    await _drive_slack(app)
    await _drive_phone_providers(app)
    await _drive_opsgenie(app)
    # Longer than aiohttp's 8190-byte header line limit: rejected before any route runs.
    for secret in SECRETS:
        long_auth = b"Bearer " + secret.encode() + b"A" * 9000
        request = build_request("GET", INCIDENTS.encode(), [(b"Authorization", long_auth)])
        await raw_http(app.port, request)
        request = build_request("GET", INCIDENTS.encode(), [(secret.encode() * 700, b"x")])
        await raw_http(app.port, request)


async def _drive_pagerduty_lookups(app: FuzzApp) -> None:
    """Deliveries shaped as PagerDuty's (incident_key null) whose REST lookup fails: PagerDuty
    down (503), then refusing the API token (401). Each answers 503 and logs the failure."""
    pd = app.app.pagerduty
    pd.script_rest(Scripted.error(503))
    first = json.dumps(incident_webhook("incident.acknowledged", "QLOOKUPFAILS1")).encode()
    pd.api_token = "u+SomethingElseEntirely"  # after the scripted 503: PagerDuty refuses ours
    second = json.dumps(incident_webhook("incident.resolved", "QLOOKUPFAILS2")).encode()
    try:
        for body in (first, second):
            signed = {"X-PagerDuty-Signature": sign(body, PD_SECRETS[0])}
            resp = await app.client.post(PD_WEBHOOK, data=body, headers=signed)
            assert resp.status == 503, await resp.text()
    finally:
        pd.api_token = PD_API_TOKEN


async def _drive_opsgenie(app: FuzzApp) -> None:
    """The Opsgenie-compatible API with its key, and with the secrets as keys and as text."""
    c = app.client
    for key in (GENIE_KEY, AM_TOKEN, WRITE_TOKEN):
        genie = {"Authorization": f"GenieKey {key}"}
        # What a sender writes is its own business: only a wrong key is also sent as text.
        text = "disk full" if key == GENIE_KEY else key
        body = {"message": text, "alias": text, "details": {"k": text}, "user": text}
        await c.post("/v2/alerts", json=body, headers=genie)
        for verb in ("acknowledge", "notes", "close"):
            path = f"/v2/alerts/{quote(text)}/{verb}?identifierType=alias"
            await c.post(path, json={"note": text, "user": text}, headers=genie)
        await c.get(f"/v2/heartbeats/{quote(text)}/ping", headers=genie)
        await c.post("/v2/alerts", data=b"{" + key.encode(), headers=genie)


async def _drive_phone_providers(app: FuzzApp) -> None:
    """The SMS gateway's and Vonage's inbound routes, signed right and with the secrets misused."""
    c = app.client
    row = quote(app.seeded.row_ids[0], safe=":")
    for text in ("hello", GATEWAY_SECRET, VONAGE_SECRET):
        raw = f"from=%2B14155550100&text={quote(text)}&id=mo1".encode()
        good = hmac.new(GATEWAY_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for sig in (good, GATEWAY_SECRET, VONAGE_SECRET):
            await c.post(GATEWAY_SMS, data=raw, headers=form | {"X-Signature": sig})
        body = json.dumps({"dtmf": {"digits": "7"}, "uuid": "c1", "text": text}).encode()
        for secret in (VONAGE_SECRET, GATEWAY_SECRET):
            jwt = vonage_webhook_jwt(secret, body, app.clock.now().timestamp())
            for auth in (f"Bearer {jwt}", f"Bearer {secret}"):
                headers = {"Content-Type": "application/json", "Authorization": auth}
                for path in (f"{VONAGE}/input?row={row}", f"{VONAGE}/inbound"):
                    await c.post(path, data=body, headers=headers)


async def _drive_slack(app: FuzzApp) -> None:
    """Signed clicks and commands (the Web API calls they make fail: nothing listens there),
    and the secrets themselves sent as signatures and text."""
    now = app.clock.now().timestamp()
    inc = app.seeded.incident_ids[1]
    for route, body in (
        ("/api/v1/slack/interactivity", block_action("U1", "tocsin_ack", inc)),
        ("/api/v1/slack/commands", slash_command("U1", "ack 2")),
        ("/api/v1/slack/commands", slash_command("U1", f"ack {SLACK_BOT_TOKEN}")),
    ):
        await app.client.post(
            route, data=body, headers=slack_signed(body, secret=SLACK_SIGNING_SECRET, at=now)
        )
        for secret in (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN):
            forged = slack_signed(body, secret=SLACK_SIGNING_SECRET, at=now)
            forged["X-Slack-Signature"] = secret
            await app.client.post(route, data=body, headers=forged)


async def test_no_log_record_or_metric_contains_a_secret(
    fuzz_app: FuzzApp, every_log_line: EveryLine
) -> None:
    await _drive_every_route(fuzz_app)
    metrics = await (await fuzz_app.client.get("/metrics")).text()

    assert len(every_log_line.lines) > 20  # the routes did log: the search below is not vacuous
    failed_lookups = [line for line in every_log_line.lines if "REST API did not answer" in line]
    assert len(failed_lookups) == 2, failed_lookups  # the REST key's failures were logged too
    for secret in SECRETS:
        leaks = [line[:300] for line in every_log_line.lines if secret in line]
        assert not leaks, f"{secret!r} was logged:\n" + "\n".join(leaks)
        assert secret not in metrics
