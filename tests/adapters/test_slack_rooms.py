"""Incident channels: a seed preset's level asks for one, and tocsin makes it (named by the rule,
a suffix when taken), invites whom it pages, keeps its card, posts the status-update reminders
there at the level's cadence until the resolve, and archives it after the monitoring window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.slack.rooms import MAX_NAME, room_name
from tests.adapters.test_webhook import incident
from tests.driver.app import MakeApp
from tests.driver.config import write_config
from tests.driver.payloads import alert, notification
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack

pytestmark = pytest.mark.usefixtures("strict_logs")

CONFIG = """\
matrix: {preset: code-project}
people:
  ollie: {name: Ollie, email: ollie@example.com, channels: [log]}
  max: {name: Max, email: max@example.com, channels: [log]}
  nina: {name: Nina, email: nina@example.com, channels: [log]}
roles:
  oncall: [ollie]
  manager: [max]
  senior-engineer: [nina]
rules:
  files: []
  default: {severity: P0}
"""


def test_room_names_follow_slacks_rules() -> None:
    inc = incident(
        title="DB Primary: Latency > 2s (eu-west-1) — Ünicode & stuff!!",
        opened_at=datetime(2026, 3, 4, 5, 6, tzinfo=UTC),
    )
    assert room_name(inc, "incident") == (
        "incident-20260304-0506-db-primary-latency-2s-eu-west-1-nicode-stuff"
    )
    assert room_name(inc, "inc", 3).endswith("-3")
    long = replace(inc, title="x" * 300)
    for attempt in (1, 12):
        name = room_name(long, "incident", attempt)
        assert len(name) == MAX_NAME and name.startswith("incident-20260304-0506-xxx")
    assert room_name(replace(inc, title="!!!"), "incident") == "incident-20260304-0506"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack().start()
    yield fake
    await fake.close()


async def test_a_p0_through_a_seed_preset_runs_its_incident_channel(
    tmp_path: Path, make_app: MakeApp, slack: FakeSlack
) -> None:
    ollie = slack.add_user("ollie@example.com")
    max_ = slack.add_user("max@example.com")  # nina has no Slack account
    adapters = {
        "adapters": {
            "slack": {
                "bot_token": BOT_TOKEN,
                "signing_secret": SIGNING_SECRET,
                "base_url": slack.api_url,
            }
        }
    }
    path = write_config(tmp_path, CONFIG, adapters, rules=None)
    app = await make_app(path, fakes=(slack,))
    taken = "incident-20261122-1300-diskfull-diskfull-on-db-1"
    slack.add_channel(taken)  # someone already has the name: the next one gets "-2"
    inc = await app.fire(notification([alert()]))  # tiers 0 and 1 fire at ingest
    assert room_name(inc, "incident") == taken
    await app.tick(timedelta(seconds=1))  # the reminder: the channel's next delivery slot
    room = slack.channel_named(taken + "-2")
    assert room is not None
    assert {ollie, max_} <= set(room.members)  # tiers 0 and 1 (both at once) joined
    # One card, though two tiers fired together; "Initial Response: Immediate" (first_update: 0)
    # is the first status-update reminder, posted in the channel.
    [card] = [m for m in slack.top_messages(room.id) if m.text.startswith("[SEV1] #1 ")]
    assert [m.text for m in slack.top_messages(room.id)][1].startswith(":memo: Status update due")
    rooms = [r for r in await app.outbox(inc.id) if r.person == "slack:@incident"]
    assert {r.state for r in rooms} == {"sent"}

    await app.advance(timedelta(minutes=31))  # the senior engineer's tier at 30m
    notes = [e.message for e in await app.timeline(inc.id)]
    assert any("nina has no Slack account" in m for m in notes)
    reminders = [m for m in slack.top_messages(room.id) if "Status update due" in m.text]
    assert len(reminders) == 3  # at 0, then "Every 15 minutes"

    await app.act(inc.id, "ack")
    await app.tick(timedelta(seconds=1))
    assert card.text.endswith("(acknowledged)") and len(card.edits) >= 1
    assert any("acknowledged by writer" in m.text for m in slack.thread(room.id, card.ts))
    await app.act(inc.id, "resolve")
    await app.tick(timedelta(seconds=1))
    assert card.text.endswith("(resolved)")
    await app.advance(timedelta(hours=1, minutes=59))
    assert not room.is_archived  # the monitoring window (2h) is not over
    assert len([m for m in slack.top_messages(room.id) if "Status update due" in m.text]) == 3
    await app.advance(timedelta(minutes=2))
    assert room.is_archived
