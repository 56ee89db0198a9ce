"""Incident channels: a seed preset's level asks for one, and tocsin makes it (named by the rule,
a suffix when taken), invites whom it pages, keeps its card, posts the status-update reminders
there at the level's cadence until the resolve, and archives it after the monitoring window."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from adapters.slack.api import SlackApi
from adapters.slack.rooms import MAX_NAME, Rooms, room_name
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import IncidentRecord
from escalation.oncall.people import Person
from tests.adapters.conftest import MakeAdapterApp, slack_config
from tests.adapters.test_webhook import incident, row
from tests.driver.app import START, App
from tests.driver.payloads import T0, alert, notification
from tests.fakes.slack import FakeSlack

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


async def test_a_p0_through_a_seed_preset_runs_its_incident_channel(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    ollie = slack.add_user("ollie@example.com")
    max_ = slack.add_user("max@example.com")  # nina has no Slack account
    app = await make_slack_app(CONFIG)
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


async def room_app(
    make_slack_app: MakeAdapterApp, slack: FakeSlack, **slack_cfg: object
) -> tuple[App, IncidentRecord, str]:
    """The code-project P0 (monitoring window 2 h) with its incident channel made."""
    slack.add_user("ollie@example.com")
    app = await make_slack_app(CONFIG, **slack_cfg)
    inc = await app.fire(notification([alert()]))
    await app.tick(timedelta(seconds=1))
    room = slack.channel_named(room_name(inc, "incident"))
    assert room is not None and not room.is_archived
    return app, inc, room.id


def resolved() -> dict[str, object]:
    return notification([alert(status="resolved", ends=T0 + timedelta(minutes=1))])


async def archived_when_the_window_ends(app: App, slack: FakeSlack, room: str) -> None:
    """Kept through the monitoring window (2 h from the last resolve), archived right after."""
    await app.advance(timedelta(hours=1, minutes=59))
    assert not slack.channels[room].is_archived
    await app.advance(timedelta(minutes=2))
    assert slack.channels[room].is_archived


async def kept(app: App, slack: FakeSlack, room: str, inc_id: str, why: str) -> None:
    """Well past any window the channel is still there, never archived, for the reason ``why``
    given on the timeline."""
    await app.advance(timedelta(hours=3))
    assert not slack.channels[room].is_archived
    assert not slack.calls_of("conversations.archive")
    [note] = [
        e.message
        for e in await app.timeline(inc_id)
        if e.data.get("outbox", "").startswith(f"{inc_id}:archive:")
    ]
    assert why in note


async def test_with_archiving_off_the_channel_is_kept(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    app, inc, room = await room_app(make_slack_app, slack, archive_incident_channels=False)
    await app.act(inc.id, "resolve")
    await kept(app, slack, room, inc.id, "kept: adapters.slack.archive_incident_channels is off")


async def test_resolved_by_its_alerts_the_channel_is_archived_after_the_window(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    app, inc, room = await room_app(make_slack_app, slack)
    app.clock.set(START + timedelta(minutes=10))
    await app.post(resolved())
    record = await app.record(inc.id)
    assert (record.status, record.resolved_at) == ("resolved", START + timedelta(minutes=10))
    await archived_when_the_window_ends(app, slack, room)


async def reopened(make_slack_app: MakeAdapterApp, slack: FakeSlack) -> tuple[App, str, str]:
    """Resolved by its alert at 0:10, firing again at 0:40 (within the 2 h window): reopened."""
    app, inc, room = await room_app(make_slack_app, slack)
    app.clock.set(START + timedelta(minutes=10))
    await app.post(resolved())
    app.clock.set(START + timedelta(minutes=40))
    await app.post(notification([alert(starts=START + timedelta(minutes=40))]))
    assert (await app.record(inc.id)).status == "triggered"
    return app, inc.id, room


async def test_a_reopened_incidents_channel_is_not_archived(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    app, inc_id, room = await reopened(make_slack_app, slack)
    # Three hours on: well past the first resolve's window.
    await kept(app, slack, room, inc_id, "kept: the incident is triggered again")


async def test_resolved_again_the_channel_waits_for_the_last_resolves_window(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    app, inc_id, room = await reopened(make_slack_app, slack)
    app.clock.set(START + timedelta(hours=1))
    await app.act(inc_id, "resolve")
    # The first resolve's window ends at 2:10, but the incident was resolved again at 1:00:
    # its channel stays until 3:00.
    await archived_when_the_window_ends(app, slack, room)
    assert len(slack.calls_of("conversations.archive")) == 1


async def test_a_later_tier_is_invited_to_the_channel_the_first_tiers_are_in(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    nina = slack.add_user("nina@example.com")  # the senior engineer, paged at 30 minutes
    max_ = slack.add_user("max@example.com")
    app, inc, room = await room_app(make_slack_app, slack)
    members = slack.channels[room].members
    assert max_ in members and nina not in members
    await app.advance(timedelta(minutes=29))
    assert nina not in slack.channels[room].members
    await app.advance(timedelta(minutes=2))
    assert nina in slack.channels[room].members
    notes = "\n".join(e.message for e in await app.timeline(inc.id))
    assert "nina has no Slack account" not in notes
    # Those in already are not asked again (each call would fail for all of them).
    invited = [c.args["users"].split(",") for c in slack.calls_of("conversations.invite")]
    assert sorted(u for users in invited for u in users) == sorted(set(members) - {"UBOT00001"})


async def test_after_a_restart_someone_in_already_does_not_keep_the_others_out(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    """A new process knows nobody in the channel: Slack refuses the call naming the one in
    already, so each is asked alone."""
    ollie, nina = slack.add_user("ollie@example.com"), slack.add_user("nina@example.com")
    cid = slack.add_channel("incident-20261122-1300-x")
    slack.channels[cid].members.append(ollie)
    cfg = slack_config(slack)
    people = {
        "ollie": Person(email="ollie@example.com"),
        "nina": Person(email="nina@example.com"),
    }
    rooms = Rooms(SlackApi(cfg, lambda: session, VirtualClock(START)), lambda: people)
    paged = [row(person=p, channel="log", id=f"r-{p}") for p in people]
    assert await rooms.invite(cid, paged) == []
    assert slack.channels[cid].members == ["UBOT00001", ollie, nina]
    calls = [c.args["users"] for c in slack.calls if c.method == "conversations.invite"]
    assert calls == [f"{ollie},{nina}", ollie, nina]
    await rooms.invite(cid, paged)  # both known now: no call
    assert len([c for c in slack.calls if c.method == "conversations.invite"]) == 3
