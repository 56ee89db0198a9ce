"""The whole app paging through Teams (a fake Workflows webhook that validates every card
against the Adaptive Card schema it declares) and PagerDuty (the fake Events API), and through
each chat webhook preset, on the driver's virtual clock.

A P1 posts a card for Alice at once and one for Carol five minutes later. The card's
Acknowledge button is a signed link: opening it (GET) shows a confirmation and changes nothing;
the confirmation's POST acknowledges as Alice with source ``teams``, which stops the escalation
and tells PagerDuty. A replayed, expired or forged link changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from config.errors import ConfigError
from config.load import load_config
from escalation.incidents.model import IncidentRecord, Status
from tests.adapters.conftest import PD_CORE_KEY
from tests.driver.app import START, App, MakeApp
from tests.driver.config import PUBLIC, pagerduty_adapter, write_config
from tests.driver.payloads import sample_bytes
from tests.driver.process import free_port
from tests.fakes.chat_webhooks import PLATFORMS, TELEGRAM_TOKEN, FakeChat, Scripted, rate_limited
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.teams_workflows import SIG, FakeTeamsWorkflows, card_errors

LINK_SECRET = "teams-flow-link-secret-0123456789"

RULES_YAML = """\
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    severity: P1
    policy: chat
    title: "{{ labels.alertname }} on {{ labels.service }}"
"""

POLICY = """\
people:
  alice: {name: Alice Ng, email: alice@example.com, channels: [teams]}
  carol: {name: Carol Sato, email: carol@example.com, channels: [teams]}
policies:
  chat:
    steps:
      - {name: pagerduty, after: 0, notify: ["pagerduty:core"]}
      - {name: on-call, after: 0, notify: ["person:alice"], via: [teams]}
      - {name: lead, after: 5m, notify: ["person:carol"], via: [teams]}
"""


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeamsWorkflows]:
    fake = await FakeTeamsWorkflows().start()
    yield fake
    await fake.close()


@pytest.fixture
async def pagerduty(tmp_path: Path) -> AsyncIterator[FakePagerDuty]:
    fake = await FakePagerDuty(tmp_path).start()
    yield fake
    await fake.close()


@pytest.fixture
async def app(
    tmp_path: Path, teams: FakeTeamsWorkflows, pagerduty: FakePagerDuty, make_app: MakeApp
) -> App:
    adapters = {
        "teams": {"webhooks": {"ops": teams.url}, "link_secret": LINK_SECRET, "link_ttl": "1h"},
        "pagerduty": pagerduty_adapter(pagerduty.http_url, {"core": PD_CORE_KEY}, timeout="2s"),
    }
    rules = {"rules": {"files": ["rules/*.yaml"]}}
    path = write_config(tmp_path, rules, POLICY, {"adapters": adapters}, rules=RULES_YAML)
    return await make_app(path, fakes=(teams, pagerduty))


def button(card: dict[str, Any], title: str) -> tuple[str, str]:
    """(path, token) of the card's ``title`` button, checked to live under public_url."""
    [url] = [a["url"] for a in card["actions"] if a["title"] == title]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    return parts.path, parse_qs(parts.query)["token"][0]


async def first_card(app: App, teams: FakeTeamsWorkflows) -> tuple[IncidentRecord, dict[str, Any]]:
    inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
    await app.at(timedelta(0))
    [card] = teams.cards
    return inc, card


async def get(app: App, path: str, token: str) -> tuple[int, str]:
    resp = await app.client.get(path, params={"token": token})
    return resp.status, await resp.text()


async def post(app: App, path: str, token: str) -> tuple[int, str]:
    resp = await app.client.post(path, data={"token": token})  # the confirmation's form
    return resp.status, await resp.text()


def flip(token: str, at: int) -> str:
    ch = token[at]
    return token[:at] + ("B" if ch == "A" else "A") + token[at + 1 :]


async def test_the_acknowledge_button_confirms_acts_once_and_stops_escalation(
    app: App, teams: FakeTeamsWorkflows, pagerduty: FakePagerDuty
) -> None:
    inc, card = await first_card(app, teams)
    assert (card["version"], card_errors(card)) == ("1.4", [])
    assert "#1 HighErrorRate on api" in card["body"][0]["text"]
    assert "Paging Alice Ng" in card["body"][1]["text"]
    [alert] = pagerduty.alerts
    assert alert.status == "triggered"
    path, token = button(card, "Acknowledge")
    assert path == "/api/v1/teams/ack"
    before = await app.timeline(inc.id)

    # Opening the link (Teams, a link preview, a person): a confirmation, nothing changes.
    status, html = await get(app, path, token)
    assert status == 200
    assert "<h1>Acknowledge incident #1?</h1>" in html
    assert '<form method="post" action="/api/v1/teams/ack">' in html
    assert '<button type="submit">Acknowledge as alice</button>' in html
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before

    # Forged: one character changed anywhere, or the token sent to the other action or the
    # email links' endpoint: refused, nothing changes.
    for at in (0, len(token) // 2, token.index(".") + 1, len(token) - 1):
        assert (await post(app, path, flip(token, at)))[0] == 403
        assert (await get(app, path, flip(token, at)))[0] == 403
    assert (await post(app, "/api/v1/teams/resolve", token))[0] == 403
    assert (await post(app, "/api/v1/email/ack", token))[0] == 404  # email is not configured
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before

    # The confirmation's POST acknowledges as Alice, through Teams.
    status, html = await post(app, path, token)
    assert (status, "<h1>Incident #1 acknowledged</h1>" in html) == (200, True)
    acked = await app.record(inc.id)
    assert (acked.status, acked.acknowledged_at) == (Status.ACKNOWLEDGED, START)
    events = await app.timeline(inc.id)
    assert [(e.kind, e.actor, e.source) for e in events[len(before) :]] == [
        ("ack", "alice", "teams")
    ]

    # Replayed: nothing happens a second time.
    status, html = await post(app, path, token)
    assert (status, "<h1>Incident #1 is already acknowledged</h1>" in html) == (200, True)
    assert await app.timeline(inc.id) == events

    # Escalation stopped: Carol gets no card; the channel sees a card saying the incident was
    # acknowledged (a Workflows webhook cannot edit the first), which can still resolve it;
    # PagerDuty was told of the acknowledgement.
    await app.at(timedelta(minutes=10))
    [_, acked_card] = teams.cards
    assert card_errors(acked_card) == [] and acked_card["body"][1]["text"] == "Acknowledged"
    assert [a["title"] for a in acked_card["actions"]][:2] == ["Resolve", "Incident"]
    assert alert.status == "acknowledged"
    # Resolving from that card posts the resolved card, with no buttons to act any more.
    status, html = await post(app, *button(acked_card, "Resolve"))
    assert (status, "<h1>Incident #1 resolved</h1>" in html) == (200, True)
    await app.at(timedelta(minutes=11))
    [*_, resolved_card] = teams.cards
    assert resolved_card["body"][1]["text"] == "Resolved"
    assert "Acknowledge" not in [a["title"] for a in resolved_card["actions"]]
    assert alert.status == "resolved"


async def test_a_used_button_never_acts_again_even_after_an_escalation(
    app: App, teams: FakeTeamsWorkflows
) -> None:
    """An escalation puts the acknowledged incident back to triggered in the same run (the
    link's epoch still matches): the Acknowledge link already used must not acknowledge it a
    second time."""
    inc, card = await first_card(app, teams)
    path, token = button(card, "Acknowledge")
    status, html = await post(app, path, token)
    assert (status, "<h1>Incident #1 acknowledged</h1>" in html) == (200, True)
    await app.act(str(inc.number), "escalate")
    escalated = await app.record(inc.id)
    assert (escalated.status, escalated.epoch) == (Status.TRIGGERED, inc.epoch)
    events = await app.timeline(inc.id)

    status, html = await post(app, path, token)
    assert (status, "<h1>This link was already used</h1>" in html) == (409, True)
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == events
    assert [(e.actor, e.source) for e in events if e.kind == "ack"] == [("alice", "teams")]


async def test_an_expired_button_is_refused_and_changes_nothing(
    app: App, teams: FakeTeamsWorkflows
) -> None:
    inc, card = await first_card(app, teams)
    before = await app.timeline(inc.id)
    app.clock.set(START + timedelta(hours=1))  # links live exactly link_ttl
    for title in ("Acknowledge", "Resolve"):
        path, token = button(card, title)
        status, html = await post(app, path, token)
        assert (status, "<h1>This link has expired</h1>" in html) == (403, True)
        assert (await get(app, path, token))[0] == 403
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before


async def test_without_an_ack_the_lead_gets_a_valid_card_of_their_own(
    app: App, teams: FakeTeamsWorkflows
) -> None:
    await first_card(app, teams)
    await app.at(timedelta(minutes=5))
    assert len(teams.cards) == 2
    lead = teams.cards[1]
    assert card_errors(lead) == [] and "Paging Carol Sato" in lead["body"][1]["text"]
    _, token = button(lead, "Acknowledge")
    assert token != button(teams.cards[0], "Acknowledge")[1]


# -- each chat webhook preset, through the whole app ----------------------------------------------

PRESET_POLICY = """\
people:
  alice: {name: Alice Ng, channels: [log]}
policies:
  chat:
    steps:
      - {name: chat, after: 0, notify: ["person:alice"], via: [%s]}
"""


@pytest.fixture
async def chats() -> AsyncIterator[dict[str, FakeChat]]:
    fakes = {p: await FakeChat(p).start() for p in PLATFORMS}
    yield fakes
    for fake in fakes.values():
        await fake.close()


async def test_each_webhook_preset_delivers_a_valid_body_to_its_platform(
    tmp_path: Path, chats: dict[str, FakeChat], make_app: MakeApp
) -> None:
    endpoints: dict[str, Any] = {
        p: {"preset": p, "url": f.url} for p, f in chats.items() if p != "telegram"
    }
    tg = chats["telegram"]
    endpoints["telegram"] = {
        "preset": "telegram",
        "bot_token": TELEGRAM_TOKEN,
        "chat_id": "-1001234567890",
        "api_url": tg.api_url,
    }
    via = ", ".join(f"webhook:{p}" for p in PLATFORMS)
    rules = {"rules": {"files": ["rules/*.yaml"]}}
    adapters = {"adapters": {"webhook": {"endpoints": endpoints}}}
    path = write_config(tmp_path, rules, PRESET_POLICY % via, adapters, rules=RULES_YAML)
    app = await make_app(path, fakes=tuple(chats.values()))
    inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
    await app.at(timedelta(0))
    for platform, fake in chats.items():
        assert len(fake.accepted) == 1, platform  # each fake refuses an off-contract body
    rows = await app.outbox(inc.id)
    assert sorted(r.channel for r in rows) == sorted(f"webhook:{p}" for p in PLATFORMS)
    assert {r.state.value for r in rows} == {"sent"}


def test_a_step_may_name_a_configured_instance_but_not_an_unknown_one(tmp_path: Path) -> None:
    endpoints = {"ops": {"url": "https://chat.example.com/hooks/1"}}
    adapters = {"adapters": {"webhook": {"endpoints": endpoints}}}
    rules = {"rules": {"files": ["rules/*.yaml"]}}
    good = write_config(tmp_path, rules, PRESET_POLICY % "webhook:ops", adapters, rules=RULES_YAML)
    load_config(good)
    bad = write_config(tmp_path, rules, PRESET_POLICY % "webhook:nope", adapters, rules=RULES_YAML)
    with pytest.raises(ConfigError, match="no adapter is configured for channel 'webhook:nope'"):
        load_config(bad)


# -- credentials in chat URLs -------------------------------------------------------------------

SECRET_POLICY = """\
people:
  alice: {name: Alice Ng, channels: [log], fallback: [log]}
policies:
  chat:
    steps:
      - name: chat
        after: 0
        notify: ["person:alice"]
        via: [teams, "webhook:tg", "webhook:tg-wrong", "webhook:discord"]
"""


async def test_no_chat_credential_reaches_a_log_the_timeline_an_outbox_row_or_metrics(
    tmp_path: Path,
    teams: FakeTeamsWorkflows,
    make_app: MakeApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Telegram's bot token (in the path), Teams' ``sig`` (in the query) and Discord's webhook
    token (in the path) while deliveries succeed, are refused, rate limited and cannot connect."""
    caplog.set_level(logging.DEBUG)
    tg, discord = await FakeChat("telegram").start(), await FakeChat("discord").start()
    dead_sig = "dead-workflow-sig-fedcba9876543210"
    wrong_token = "999999:WRONG-telegram-token-abcdef"
    dead = f"http://127.0.0.1:{free_port()}/workflows/1/triggers/manual/paths/invoke?sig={dead_sig}"
    try:
        bot = {"preset": "telegram", "chat_id": "-100123", "api_url": tg.api_url}
        endpoints = {
            "tg": {**bot, "bot_token": TELEGRAM_TOKEN},
            "tg-wrong": {**bot, "bot_token": wrong_token},
            "discord": {"preset": "discord", "url": discord.url},
        }
        adapters = {
            "teams": {"webhooks": {"ops": teams.url, "dead": dead}, "link_secret": LINK_SECRET},
            "webhook": {"endpoints": endpoints},
            "dispatch": {"backoff_initial": "1s", "backoff_max": "2s"},
        }
        rules = {"rules": {"files": ["rules/*.yaml"]}}
        path = write_config(
            tmp_path, rules, SECRET_POLICY, {"adapters": adapters}, rules=RULES_YAML
        )
        app = await make_app(path, fakes=(teams, tg, discord))
        discord.script(rate_limited("discord", 1.5))
        tg.script(Scripted(500, {"ok": False, "error_code": 500, "description": "Internal"}))
        inc = await app.fire(sample_bytes("alertmanager-0.25-firing.json"))
        for minute in range(4):
            await app.at(timedelta(minutes=minute))
        rows = await app.outbox(inc.id)
        timeline = await app.messages(inc.id)
        metrics = await (await app.client.get("/metrics")).text()
    finally:
        await tg.close()
        await discord.close()
    assert len(tg.accepted) == 1 and len(discord.accepted) == 1 and len(teams.cards) >= 1
    errors = [r.last_error for r in rows]
    assert any("HTTP 401" in e for e in errors) and any("Connection refused" in e for e in errors)
    seen = "\n".join(
        [*(f"{r.getMessage()} {r.__dict__}" for r in caplog.records), *errors, *timeline, metrics]
    )
    token_part = discord.url.rsplit("/", 1)[1]
    for secret in (TELEGRAM_TOKEN, wrong_token, SIG, dead_sig, token_part, LINK_SECRET):
        assert secret not in seen, secret
