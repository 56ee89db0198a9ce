"""A storm against the fake Slack, through the whole app: every Slack conversation gets at most
one message a second (Slack's documented limit for ``chat.postMessage``), counted on the calls
the fake received per channel and per second of the app's clock, and nothing is lost: each
card ends showing the last change, and each change is in its thread."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tests.adapters.conftest import MakeAdapterApp
from tests.driver.app import App
from tests.driver.payloads import alert, notification
from tests.fakes.slack import FakeSlack

POLICY = """\
people:
  ollie: {name: Ollie Oncall, email: ollie@example.com, channels: [log]}
policies:
  chat:
    steps:
      - {name: channels, after: 0, notify: ["slack:#incidents", "slack:#ops"]}
      - {name: oncall, after: 30m, notify: ["person:ollie"], via: [log]}
rules:
  files: []
  default: {severity: P0, policy: chat}
"""

JOINS = 40  # alerts joining the busy incident, one every 200 ms
STEP = timedelta(milliseconds=200)


def per_second(slack: FakeSlack, method: str) -> Counter[tuple[str, int]]:
    """How many ``method`` calls each channel (by id, however named) got in each whole second
    of the app's clock."""
    out: Counter[tuple[str, int]] = Counter()
    for c in slack.calls:
        if c.method == method and c.status == 200:
            assert c.at is not None
            out[(channel_id(slack, str(c.args["channel"])), int(c.at.timestamp()))] += 1
    return out


def channel_id(slack: FakeSlack, ref: str) -> str:
    named = slack.channel_named(ref) if ref.startswith("#") else None
    return named.id if named is not None else ref


async def storm(app: App) -> None:
    """Three incidents at once, then alerts joining the first every 200 ms while notes are
    added to the second, then the first acknowledged and the second resolved."""
    disk = notification([alert()], group_key="{}:{alertname=DiskFull}")
    await app.post(disk)
    for name in ("Latency", "Errors"):
        body = notification([alert(name)], group_key=f"{{}}:{{alertname={name}}}")
        await app.post(body)
    by_title = {i["title"].split(":")[0]: i["id"] for i in await app.incidents()}
    assert sorted(by_title) == ["DiskFull", "Errors", "Latency"]
    for i in range(1, JOINS + 1):
        await app.post(
            notification(
                [alert(instance=f"db-{n}") for n in range(i + 1)],
                group_key="{}:{alertname=DiskFull}",
            )
        )
        if i % 5 == 0:
            await app.act(by_title["Latency"], "notes", note=f"note {i}")
        await app.tick(STEP)
    await app.act(by_title["DiskFull"], "ack")
    await app.act(by_title["Latency"], "resolve")
    await app.advance(timedelta(minutes=2))


async def test_a_storm_keeps_each_slack_channel_to_one_message_a_second_and_loses_nothing(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    incidents_id, ops_id = slack.add_channel("incidents"), slack.add_channel("ops")
    app = await make_slack_app(POLICY)
    await storm(app)

    posts, edits = (
        per_second(slack, "chat.postMessage"),
        per_second(slack, "chat.update"),
    )
    assert max(posts.values()) == 1 and max(edits.values()) == 1
    # Per channel, not one limit for all of Slack: both channels were written in one second.
    seconds = {ch: {s for c, s in posts if c == ch} for ch in (incidents_id, ops_id)}
    assert seconds[incidents_id] & seconds[ops_id]
    # Coalesced: far fewer edits than the changes that asked for one.
    rows = [r for i in await app.incidents() for r in await app.outbox(i["id"])]
    slack_rows = [r for r in rows if r.channel == "slack"]
    assert {r.state for r in slack_rows} == {"sent"}
    assert sum(edits.values()) < len([r for r in slack_rows if r.kind == "update"]) / 2

    # Nothing lost: one card per incident in each channel, each showing the last change.
    for channel in (incidents_id, ops_id):
        cards = {m.text.split(" ", 2)[1]: m for m in slack.top_messages(channel)}
        assert sorted(cards) == ["#1", "#2", "#3"], channel
        disk = next(m for m in cards.values() if "DiskFull" in m.text)
        latency = next(m for m in cards.values() if "Latency" in m.text)
        assert disk.text.endswith("(acknowledged)")
        assert f"{JOINS + 1} firing, 0 resolved" in str(disk.blocks)
        assert latency.text.endswith("(resolved)")
        told = "\n".join(m.text for m in slack.thread(channel, latency.ts))
        for i in range(5, JOINS + 1, 5):
            assert f"note {i}" in told
        assert "resolved by writer" in told


async def test_a_card_still_waiting_for_its_slot_is_posted_in_its_final_state_with_its_news(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    """Three incidents at once in one channel: the third's card waits two seconds. Noted and
    acknowledged meanwhile (the ack cancels its page), it is still posted, acknowledged, with
    the note and the ack in its thread; the second, resolved meanwhile, likewise."""
    cid = slack.add_channel("incidents")
    slack.add_channel("ops")
    app = await make_slack_app(POLICY)
    for name in ("DiskFull", "Latency", "Errors"):
        await app.post(notification([alert(name)], group_key=f"{{}}:{{alertname={name}}}"))
    ids = {i["number"]: i["id"] for i in await app.incidents()}
    assert len(slack.top_messages(cid)) == 1  # the others wait for the channel's next seconds
    await app.tick(timedelta(milliseconds=100))
    await app.act(ids[2], "notes", note="failing over")
    await app.act(ids[2], "resolve")
    await app.act(ids[3], "notes", note="looking")
    await app.act(ids[3], "ack")
    await app.advance(timedelta(minutes=1))

    cards = {m.text.split(" ", 2)[1]: m for m in slack.top_messages(cid)}
    assert sorted(cards) == ["#1", "#2", "#3"]
    assert cards["#2"].text.endswith("(resolved)") and cards["#3"].text.endswith("(acknowledged)")
    second = "\n".join(m.text for m in slack.thread(cid, cards["#2"].ts))
    third = "\n".join(m.text for m in slack.thread(cid, cards["#3"].ts))
    assert "failing over" in second and "resolved by writer" in second
    assert "looking" in third and "acknowledged by writer" in third
    assert "looking" not in second and "failing over" not in third
    # One delivery a second; the late card and the news it waited with go out together.
    assert max(per_second(slack, "chat.update").values(), default=0) <= 1
    posts = per_second(slack, "chat.postMessage")
    assert max(posts.values()) <= 2
    assert sum(posts.values()) == 2 * (3 + 2)  # each channel: three cards, two with a reply
