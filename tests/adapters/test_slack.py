"""The ``slack`` channel against the fake Slack: the card, one message per incident edited on every
change with the timeline in its thread, direct messages by email, and Slack's errors mapped into
delivery's failure reasons."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.delivery.notifier import FailureReason
from adapters.slack import SlackApi, SlackNotifier
from adapters.slack.blocks import card
from config.load import ConfigError, load_config
from escalation.engine.clock import VirtualClock
from escalation.incidents.actions import Action
from tests.adapters.conftest import MakeAdapterApp, first_card, slack_config
from tests.adapters.test_webhook import INC_ID, PUBLIC, T0, delivery, incident, row
from tests.driver.app import App
from tests.driver.config import slack_adapter, write_config
from tests.driver.payloads import alert, notification
from tests.escalation.store.records import alert as stored_alert
from tests.fakes.slack import BOT_TOKEN, FakeSlack, SlackScripted

# Each Slack conversation takes one delivery a second (adapters.dispatch.slack_conversation_rate):
# a change right after the last post there goes at the next second.
SLOT = timedelta(seconds=1)


def notifier(fake: FakeSlack, session: aiohttp.ClientSession, **kw: Any) -> SlackNotifier:
    clock = VirtualClock(T0)
    cfg = slack_config(fake, **kw)
    return SlackNotifier(cfg, SlackApi(cfg, lambda: session, clock), clock, PUBLIC)


def channel_row(**kw: Any) -> Any:
    return row(person="slack:#incidents", channel="slack", target="slack:#incidents", **kw)


# -- one attempt --------------------------------------------------------------------------------


async def test_card_carries_severity_title_links_and_buttons(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    cid = slack.add_channel("incidents")
    inc = incident(title="DiskFull <!channel> on db1 & db2", level={"name": "SEV-1"})
    d = delivery(row=channel_row(), incident=inc)
    result = await notifier(slack, session).notify(d)
    assert result.ok, result
    [msg] = slack.top_messages(cid)
    assert result.provider_id == f"{cid}/{msg.ts}/0"
    header = msg.blocks[0]["text"]["text"]
    assert header.startswith(f"[{inc.severity_name}] #42 DiskFull")
    assert header.endswith("<!channel> on db1 & db2")  # plain_text: Slack shows it as it is
    # mrkdwn (the fallback text notifications show) is escaped: no mass mention, no fake link
    assert "<!channel>" not in msg.text and "&lt;!channel&gt; on db1 &amp; db2" in msg.text
    text = str(msg.blocks)
    assert f"<{PUBLIC}/incidents/{INC_ID}|Incident #42>" in text
    [actions] = [b for b in msg.blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("tocsin_ack", INC_ID),
        ("tocsin_escalate", INC_ID),
        ("tocsin_resolve", INC_ID),
    ]


async def test_card_links_the_runbook_and_each_alerts_source(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    cid = slack.add_channel("incidents")
    prom = "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22api%22%7D&g0.tab=1"
    alerts = [
        stored_alert(
            INC_ID,
            "fp0",
            annotations={"summary": "slow", "runbook_url": "https://runbooks.example.com/api"},
            generator_url=prom,
        ),
        # ``runbook`` is read too, but the first alert's runbook is the card's one.
        stored_alert(
            INC_ID,
            "fp1",
            annotations={"runbook": "https://wiki.example.com/other"},
            generator_url="javascript:alert(1)",  # never a link
        ),
        *(
            stored_alert(INC_ID, f"fp{i}", generator_url=f"http://prom-{i}:9090/graph")
            for i in range(2, 7)
        ),
    ]
    result = await notifier(slack, session).notify(delivery(row=channel_row(), alerts=alerts))
    assert result.ok, result
    [msg] = slack.top_messages(cid)
    sections = [b["text"]["text"] for b in msg.blocks if b["type"] == "section"]
    [listed] = [t for t in sections if t.startswith("*Alerts:*")]
    [links] = [t for t in sections if "|Incident #42>" in t]
    assert links == (
        f"<{PUBLIC}/incidents/{INC_ID}|Incident #42> · <https://runbooks.example.com/api|Runbook>"
    )
    lines = listed.split("\n")
    assert lines[0] == "*Alerts:* 7 firing, 0 resolved"
    assert lines[1].endswith(f" <{prom}|source>")  # the alert's generatorURL, as Prometheus sent it
    assert "<" not in lines[2] and "javascript" not in listed
    # Five alerts are listed, each with its own source; the rest are counted.
    assert [line.rsplit(" ", 1)[1] for line in lines[3:6]] == [
        f"<http://prom-{i}:9090/graph|source>" for i in range(2, 5)
    ]
    assert lines[6:] == ["… and 2 more"]
    # Without a runbook annotation there is no runbook link.
    _, bare = card(incident(), [stored_alert(INC_ID, "fp0")], PUBLIC)
    assert "Runbook" not in str(bare) and "|source>" in str(bare)


async def test_named_channel_and_direct_message_by_email_cached(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    cid = slack.add_channel("sre-pages")
    uid = slack.add_user("ollie@example.com")
    n = notifier(slack, session, channels={"sre": cid})
    assert (await n.notify(delivery(row=row(person="slack:sre", channel="slack")))).ok
    assert len(slack.top_messages(cid)) == 1
    for _ in range(2):
        result = await n.notify(delivery(row=row(channel="slack")))
        assert result.ok, result
    dm = next(c for c in slack.channels.values() if c.is_im)
    assert uid in dm.members and len(slack.top_messages(dm.id)) == 2
    assert len(slack.calls_of("users.lookupByEmail")) == 1  # cached


@pytest.mark.parametrize(
    ("scripted", "reason", "retry_after"),
    [
        (SlackScripted.rate_limited(7), FailureReason.RATE_LIMITED, 7.0),
        (SlackScripted.server_error(503), FailureReason.RETRYABLE, None),
        (SlackScripted.error("internal_error"), FailureReason.RETRYABLE, None),
        (SlackScripted.error("channel_not_found"), FailureReason.PERMANENT, None),
    ],
)
async def test_slack_errors_map_to_failure_reasons(
    slack: FakeSlack,
    session: aiohttp.ClientSession,
    scripted: SlackScripted,
    reason: FailureReason,
    retry_after: float | None,
) -> None:
    slack.add_channel("incidents")
    slack.script("chat.postMessage", scripted)
    result = await notifier(slack, session).notify(delivery(row=channel_row()))
    assert (result.ok, result.reason, result.retry_after) == (False, reason, retry_after)
    assert BOT_TOKEN not in result.error


async def test_bad_token_unknown_person_and_missing_channel_are_permanent(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    slack.add_channel("incidents")
    cfg = slack_config(slack).model_copy(update={"bot_token": SecretStr("xoxb-wrong")})
    clock = VirtualClock(T0)
    bad = SlackNotifier(cfg, SlackApi(cfg, lambda: session, clock), clock, PUBLIC)
    r = await bad.notify(delivery(row=channel_row()))
    assert (r.reason, r.error) == (FailureReason.PERMANENT, "slack chat.postMessage: invalid_auth")
    n = notifier(slack, session)
    r = await n.notify(delivery(row=row(channel="slack")))  # ollie has no Slack account
    assert (r.reason, r.error) == (
        FailureReason.PERMANENT,
        "slack users.lookupByEmail: users_not_found",
    )
    r = await n.notify(delivery(row=row(person="slack:#nowhere", channel="slack")))
    assert (r.reason, r.error) == (
        FailureReason.PERMANENT,
        "slack chat.postMessage: channel_not_found",
    )


# -- the whole app: one message per incident ---------------------------------------------------


async def act_and_deliver(app: App, inc_id: str, action: str, **body: Any) -> None:
    """Act through the API, then move one slot on: the card's change goes out."""
    await app.act(inc_id, action, **body)
    await app.tick(SLOT)


SLACK_POLICY = """\
people:
  ollie: {name: Ollie Oncall, email: ollie@example.com, channels: [log]}
policies:
  chat:
    steps:
      - {name: channel, after: 0, notify: ["slack:#incidents"]}
      - {name: oncall, after: 5m, notify: ["person:ollie"], via: [log]}
rules:
  files: []
  default: {severity: P0, policy: chat}
"""


async def test_one_message_per_incident_edited_on_ack_and_resolve_with_a_threaded_timeline(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    slack.add_channel("incidents")
    app = await make_slack_app(SLACK_POLICY)
    inc, cid, card = await first_card(app, SLOT, labels={"team": "storage"})
    assert "(triggered)" in card.text
    await act_and_deliver(app, inc.id, "ack")
    await act_and_deliver(app, inc.id, "resolve")
    assert slack.top_messages(cid) == [card]  # still the one message, edited twice
    assert [e["text"].rsplit(" ", 1)[-1] for e in card.edits] == ["(triggered)", "(acknowledged)"]
    assert card.text.endswith("(resolved)")
    assert not [b for b in card.blocks if b["type"] == "actions"]  # nothing left to press
    replies = [m.text for m in slack.thread(cid, card.ts)]
    assert len(replies) == 2
    assert "acknowledged by writer" in replies[0] and "resolved by writer" in replies[1]
    rows = [r for r in await app.outbox(inc.id) if r.channel == "slack"]
    assert {r.kind for r in rows} == {"page", "acknowledge", "resolve"}
    assert {r.provider_id.rsplit("/", 1)[0] for r in rows} == {f"{cid}/{card.ts}"}


async def test_reminders_go_to_the_thread(make_slack_app: MakeAdapterApp, slack: FakeSlack) -> None:
    slack.add_channel("incidents")
    app = await make_slack_app(SLACK_POLICY)
    inc, cid, card = await first_card(app, SLOT)
    every = timedelta(seconds=float((await app.record(inc.id)).level["update_every"]))
    await app.advance(every + timedelta(minutes=1))
    replies = slack.thread(cid, card.ts)
    assert replies and "Status update due" in replies[0].text
    assert "status update #1 due" in replies[0].text  # the timeline event, threaded
    assert slack.top_messages(cid) == [card]


async def test_check_refuses_a_slack_target_without_the_adapter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, SLACK_POLICY, rules=None), env={})
    assert "no adapter is configured for channel 'slack'" in str(e.value)


async def test_every_change_edits_the_card_mitigate_note_escalate_reopen(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    slack.add_channel("incidents")
    app = await make_slack_app(SLACK_POLICY)
    inc, cid, card = await first_card(app, SLOT)
    await act_and_deliver(app, inc.id, "mitigate")
    assert card.text.endswith("(mitigated)")
    await act_and_deliver(app, inc.id, "notes", note="rolled back deploy <42>")
    # A note changes nothing on the card: no edit, only its line in the thread.
    assert card.text.endswith("(mitigated)") and len(card.edits) == 1
    assert "rolled back deploy" in slack.thread(cid, card.ts)[-1].text
    await act_and_deliver(app, inc.id, "escalate")
    assert card.text.endswith("(triggered)")  # escalating brings the incident back
    await app.act(inc.id, "resolve")
    await app.rt.service.act(inc.id, Action.REOPEN, actor="pd", source="pagerduty")
    await app.tick(SLOT)
    assert card.text.endswith("(triggered)") and slack.top_messages(cid) == [card]
    replies = "\n".join(m.text for m in slack.thread(cid, card.ts))
    for told in ("mitigated by writer", "rolled back deploy &lt;42&gt;", "escalated to tier 1"):
        assert told in replies
    assert "back to triggered by pd" in replies  # the reopen


async def test_changes_claimed_together_are_one_edit_and_one_reply(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    slack.add_channel("incidents")
    app = await make_slack_app(SLACK_POLICY)
    inc, cid, card = await first_card(app, SLOT)
    await app.act(inc.id, "ack")
    await app.act(inc.id, "notes", note="on it")
    await app.act(inc.id, "resolve")
    await app.tick(SLOT)  # three rows for the card, delivered together
    rows = [r for r in await app.outbox(inc.id) if r.channel == "slack" and r.kind != "page"]
    assert len(rows) == 3 and {r.state for r in rows} == {"sent"}
    assert len(card.edits) == 1 and card.text.endswith("(resolved)")
    [reply] = slack.thread(cid, card.ts)
    assert "acknowledged by writer" in reply.text and "resolved by writer" in reply.text
    assert "on it" in reply.text


def test_check_refuses_writers_who_are_not_people_with_an_email(tmp_path: Path) -> None:
    adapters = {"adapters": {"slack": slack_adapter(None, writers=["ollie", "olive", "nomail"])}}
    people = {
        "people": {
            "ollie": {"email": "ollie@example.com", "channels": ["log"]},
            "nomail": {"channels": ["log"]},
        }
    }
    path = write_config(tmp_path, SLACK_POLICY, people, adapters, rules=None)
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    text = str(e.value)
    assert "adapters.slack.writers[1]: unknown person 'olive'" in text
    assert "adapters.slack.writers[2]: person 'nomail' has no email" in text
    assert "writers[0]" not in text


async def test_alerts_joining_and_resolving_edit_the_card(
    make_slack_app: MakeAdapterApp, slack: FakeSlack
) -> None:
    slack.add_channel("incidents")
    app = await make_slack_app(SLACK_POLICY)
    one, two = alert(instance="db-1"), alert(instance="db-2")
    inc, cid, card = await first_card(app, SLOT, instance="db-1")
    assert "1 firing, 0 resolved" in str(card.blocks)
    await app.post(notification([one, two]))
    await app.tick(SLOT)
    assert "2 firing, 0 resolved" in str(card.blocks)
    ended = app.now - timedelta(seconds=1)
    done = [alert(instance=i, status="resolved", ends=ended) for i in ("db-1", "db-2")]
    await app.post(notification(done))
    await app.tick(SLOT)
    assert (await app.record(inc.id)).status == "resolved"
    assert card.text.endswith("(resolved)") and "0 firing, 2 resolved" in str(card.blocks)
    assert slack.top_messages(cid) == [card]


def test_the_card_links_grafanas_dashboard_and_never_a_script_url() -> None:
    grafana = {
        "grafana_dashboard_url": "https://grafana.example.com/d/api",
        "grafana_panel_url": "javascript:alert(1)",
    }
    one = stored_alert(INC_ID, "fp1", annotations=grafana)
    _, blocks = card(incident(), [one], "https://tocsin.example.com")
    text = " ".join(b["text"]["text"] for b in blocks if b.get("type") == "section")
    assert "<https://grafana.example.com/d/api|Dashboard>" in text
    assert "javascript:" not in text
