"""What Slack sends back, through the whole app: signed button clicks and the ``/tocsin`` command.

A P0 posts its card to the fake Slack and triggers the fake PagerDuty; a signed click on
Acknowledge by a configured person acknowledges (recorded with that person as the actor),
stops the escalation, tells PagerDuty and edits the card. Forged, stale and replayed requests
change nothing; a Slack user who is not a person (or not a writer) is refused privately.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from escalation.incidents.actions import Action
from tests.adapters.conftest import MakeAdapterApp, first_card
from tests.driver.app import App
from tests.driver.config import pagerduty_adapter
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import (
    FakeSlack,
    block_action,
    signed,
    slash_command,
)

pytestmark = pytest.mark.usefixtures("strict_logs")

CLICKS = "/api/v1/slack/interactivity"
COMMANDS = "/api/v1/slack/commands"
PD_KEY = "R0UT1NGk3yC0R3s3rv1c3xxxxxxxxx01"

POLICY = """\
people:
  ollie: {name: Ollie Oncall, email: Ollie@Example.com, channels: [log]}
  rita: {name: Rita Reader, email: rita@example.com, channels: [log]}
policies:
  chat:
    steps:
      - {name: first, after: 0, notify: ["slack:#incidents", "pagerduty:core"]}
      - {name: oncall, after: 5m, notify: ["person:ollie"], via: [log]}
rules:
  files: []
  default: {severity: P0, policy: chat}
schedules:
  primary: {timezone: UTC, members: [ollie], start: "2026-01-05T00:00:00Z", shift: 7d}
  secondary: {timezone: UTC, members: [rita, ollie], start: "2026-01-05T00:00:00Z", shift: 7d}
"""


@pytest.fixture
def slack(slack: FakeSlack) -> FakeSlack:
    """The fake Slack with #incidents made first: its id is the one ``block_action`` clicks
    come from by default."""
    slack.add_channel("incidents")
    return slack


@pytest.fixture
async def pd(tmp_path: Path) -> AsyncIterator[FakePagerDuty]:
    fake = await FakePagerDuty(tmp_path).start()
    yield fake
    await fake.close()


async def opened(
    make_slack_app: MakeAdapterApp, pd: FakePagerDuty, **options: Any
) -> tuple[App, str, str, str]:
    """The app (``adapters.slack`` with ``options``) and a P0 with its first tier delivered:
    (app, incident id, the card's channel, its ts)."""
    pagerduty = pagerduty_adapter(pd.http_url, {"core": PD_KEY})
    app = await make_slack_app(POLICY, adapters={"pagerduty": pagerduty}, fakes=(pd,), **options)
    inc, channel, card = await first_card(app)
    return app, inc.id, channel, card.ts


async def post(app: App, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    r = await app.client.post(path, data=body, headers=headers)
    text = await r.text()
    return r.status, text


async def click(app: App, user: str, action: str, value: str, **kw: Any) -> tuple[int, Any]:
    body = block_action(user, action, value)
    return await post(app, CLICKS, body, signed(body, at=app.now.timestamp(), **kw))


async def test_a_signed_click_acknowledges_stops_escalation_tells_pagerduty_and_edits_the_card(
    make_slack_app: MakeAdapterApp, slack: FakeSlack, pd: FakePagerDuty
) -> None:
    ollie = slack.add_user("ollie@example.com")
    app, inc, channel, ts = await opened(make_slack_app, pd)
    assert pd.alert(inc) is not None and pd.alert(inc).status == "triggered"  # type: ignore[union-attr]
    status, _ = await click(app, ollie, "tocsin_ack", inc)
    assert status == 200
    assert (await app.record(inc)).status == "acknowledged"
    [ack] = [e for e in await app.timeline(inc) if e.kind == "ack"]
    assert (ack.actor, ack.source) == ("ollie", "slack")
    await app.advance(timedelta(minutes=10))
    assert [r.person for r in await app.outbox(inc) if r.kind == "page"] == [
        "slack:#incidents",
        "pagerduty:core",
    ]  # the 5-minute tier was never paged
    alert_ = pd.alert(inc)
    assert alert_ is not None and alert_.status == "acknowledged"
    [card] = slack.top_messages(channel)
    assert card.ts == ts and card.text.endswith("(acknowledged)")
    assert "acknowledged by ollie" in slack.thread(channel, ts)[0].text
    assert not slack.ephemeral


async def test_the_escalate_button_pages_the_next_tier_now_as_the_person_who_clicked(
    make_slack_app: MakeAdapterApp, slack: FakeSlack, pd: FakePagerDuty
) -> None:
    ollie = slack.add_user("ollie@example.com")
    app, inc, channel, ts = await opened(make_slack_app, pd)
    status, _ = await click(app, ollie, "tocsin_escalate", inc)
    assert status == 200
    [event] = [e for e in await app.timeline(inc) if e.kind == "escalate"]
    assert (event.actor, event.source, event.message) == (
        "ollie",
        "slack",
        "escalated to tier 1 now by ollie",
    )
    await app.tick(timedelta(seconds=1))  # now, not at 5 minutes
    assert [r.person for r in await app.outbox(inc) if r.kind == "page"][-1] == "ollie"
    [card] = slack.top_messages(channel)
    assert card.ts == ts and card.text.endswith("(triggered)")
    assert any("escalated to tier 1 now by ollie" in m.text for m in slack.thread(channel, ts))
    assert not slack.ephemeral


async def test_forged_stale_and_replayed_clicks_change_nothing(
    make_slack_app: MakeAdapterApp, slack: FakeSlack, pd: FakePagerDuty
) -> None:
    ollie = slack.add_user("ollie@example.com")
    app, inc, _, _ = await opened(make_slack_app, pd)
    body = block_action(ollie, "tocsin_ack", inc)
    now = app.now.timestamp()
    forged = signed(body, secret="not-the-signing-secret", at=now)
    stale = signed(body, at=now - 6 * 60)
    tampered = signed(body, at=now) | {"X-Slack-Request-Timestamp": str(int(now) + 1)}
    # Fullwidth digits: str.isdigit() says yes, slack_sdk's int() would read them.
    garbage = signed(body, at=now) | {"X-Slack-Request-Timestamp": "\uff11\uff12\uff13"}
    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    for headers in (forged, stale, tampered, garbage, unsigned):
        assert (await post(app, CLICKS, body, headers))[0] == 401
    assert (await app.record(inc)).status == "triggered"
    good = signed(body, at=now)
    assert (await post(app, CLICKS, body, good))[0] == 200
    assert (await app.record(inc)).status == "acknowledged"
    # Reopened (PagerDuty can, the API cannot): an ack would apply again if it were new.
    await app.rt.service.act(inc, Action.REOPEN, actor="pd", source="pagerduty")
    # The same signed request again, still inside its 5 minutes: remembered, not acted on.
    assert (await post(app, CLICKS, body, good))[0] == 200
    assert (await app.record(inc)).status == "triggered"
    assert [e.actor for e in await app.timeline(inc) if e.kind == "ack"] == ["ollie"]


async def test_a_slack_user_who_is_not_a_person_or_not_a_writer_is_refused_privately(
    make_slack_app: MakeAdapterApp, slack: FakeSlack, pd: FakePagerDuty
) -> None:
    stranger = slack.add_user("mallory@example.com")
    rita = slack.add_user("rita@example.com")
    app, inc, channel, _ = await opened(make_slack_app, pd, writers=["ollie"])
    before = await app.state()
    for user in (stranger, rita):
        assert (await click(app, user, "tocsin_resolve", inc))[0] == 200
    assert await app.state() == before
    [first, second] = slack.ephemeral
    assert (first["user"], first["channel"]) == (stranger, channel)
    assert "not a person" in first["text"]
    assert second["user"] == rita and "adapters.slack.writers" in second["text"]


async def test_slash_commands(
    make_slack_app: MakeAdapterApp, slack: FakeSlack, pd: FakePagerDuty
) -> None:
    ollie = slack.add_user("ollie@example.com")
    stranger = slack.add_user("mallory@example.com")
    app, inc, _, _ = await opened(make_slack_app, pd)

    async def say(user: str, text: str) -> str:
        body = slash_command(user, text)
        status, reply = await post(app, COMMANDS, body, signed(body, at=app.now.timestamp()))
        assert status == 200, reply
        doc = json.loads(reply)
        assert doc["response_type"] == "ephemeral"
        return str(doc["text"])

    assert "#1 [" in await say(stranger, "incidents")
    everyone = await say(stranger, "oncall")
    assert "*primary*: ollie" in everyone and "*secondary*: ollie; next: rita" in everyone
    # One schedule by name: that one only (45 whole weeks since its start: ollie's turn).
    assert await say(stranger, "oncall secondary") == "*secondary*: ollie; next: rita"
    assert await say(stranger, "oncall primary") == "*primary*: ollie"
    assert "No schedule" in await say(stranger, "oncall nope")
    assert "Usage" in await say(ollie, "dance")
    assert "not a person" in await say(stranger, "ack 1")
    assert (await app.record(inc)).status == "triggered"
    assert await say(ollie, "ack #1") == "#1 acknowledged by ollie"
    assert "cannot ack" in await say(ollie, "ack 1")
    assert await say(ollie, "resolve 1") == "#1 resolved by ollie"
    assert "No open incidents" in await say(ollie, "incidents")
    body = slash_command(ollie, "ack 1")
    assert (await post(app, COMMANDS, body, signed(body, secret="forged")))[0] == 401
