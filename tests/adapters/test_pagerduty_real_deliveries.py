"""Webhooks shaped like PagerDuty's real deliveries (``incident_key: null``) reach their incident.

The whole app (tests/driver) pages the fake PagerDuty, which opens one PagerDuty incident per
alert; its deliveries name only PagerDuty's incident id, so tocsin asks ``GET
/incidents/{id}/alerts`` once, finds its dedup key among the alerts' ``alert_key``, and records
an alias so later deliveries need no lookup.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import pytest

from escalation.incidents.model import IncidentRecord, Status
from tests.adapters.conftest import PD_CORE_KEY, PD_SECRET_A, MakeAdapterApp
from tests.adapters.test_pagerduty_flow import fire
from tests.driver.app import START, App
from tests.fakes.pagerduty import Scripted, WebhookReply, send_webhook

ALERTS = "/alerts"


@pytest.fixture
async def app(make_pd_app: MakeAdapterApp) -> App:
    return await make_pd_app()


def at(minutes: float) -> str:
    """An ``occurred_at`` ``minutes`` after the test's start, as PagerDuty writes it."""
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def paged(app: App) -> IncidentRecord:
    inc = await fire(app)
    await app.at(timedelta(0))
    assert app.pagerduty.alert(inc.id) is not None
    return inc


async def post(app: App, payload: dict[str, object]) -> WebhookReply:
    return await send_webhook(app.client, payload, secrets=(PD_SECRET_A,))


def lookups(app: App) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in app.pagerduty.rest_requests if r.path.endswith(ALERTS)]


async def test_an_ack_with_a_null_incident_key_is_matched_through_the_rest_api(app: App) -> None:
    inc = await paged(app)
    pd_id = app.pagerduty.incident_of(inc.id)
    ack = app.pagerduty.delivery("incident.acknowledged", inc.id, occurred_at=at(1))
    assert ack["event"]["data"]["incident_key"] is None

    reply = await post(app, ack)

    assert reply == WebhookReply(
        200, {"status": "applied", "event_type": "incident.acknowledged", "incident": inc.id}
    )
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
    assert lookups(app) == [(f"/incidents/{pd_id}/alerts", 200)]
    assert (await app.rt.service.find_incident(f"pagerduty-incident:{pd_id}")) is not None


async def test_note_ack_and_resolve_from_real_deliveries_stop_the_escalation(app: App) -> None:
    """Done when: PagerDuty's own deliveries (incident_key null) act, and the next tier (Carol,
    due at 5 minutes) is never paged."""
    inc = await paged(app)
    pd = app.pagerduty
    note = pd.note_delivery(inc.id, "on it", occurred_at=at(1), agent="Jane Doe")
    assert (await post(app, note)).body["status"] == "applied"
    ack = pd.delivery("incident.acknowledged", inc.id, occurred_at=at(2), agent="Jane Doe")
    assert (await post(app, ack)).body["status"] == "applied"

    await app.at(timedelta(minutes=6))  # the lead tier was due at 5 minutes
    assert [r.person for r in await app.outbox(inc.id)] == ["pagerduty:core"]

    resolved = pd.delivery("incident.resolved", inc.id, occurred_at=at(7), agent="Jane Doe")
    assert (await post(app, resolved)).body["status"] == "applied"
    await app.at(timedelta(minutes=30))

    assert (await app.record(inc.id)).status == Status.RESOLVED
    assert "carol" not in [r.person for r in await app.outbox(inc.id)]
    assert [r.json["event_action"] for r in pd.event_requests].count("trigger") == 1
    messages = await app.messages(inc.id)
    assert {"on it", "acknowledged by Jane Doe", "resolved by Jane Doe"} <= set(messages)
    assert len(lookups(app)) == 1  # the note's lookup; the ack and resolve used the alias


async def test_a_resolve_alone_from_a_real_delivery_stops_the_escalation(app: App) -> None:
    inc = await paged(app)
    resolved = app.pagerduty.delivery("incident.resolved", inc.id, occurred_at=at(1))
    assert (await post(app, resolved)).body["status"] == "applied"

    await app.at(timedelta(minutes=10))

    assert "carol" not in [r.person for r in await app.outbox(inc.id)]


async def test_later_events_match_by_the_recorded_alias_without_a_lookup(app: App) -> None:
    inc = await paged(app)
    await post(app, app.pagerduty.delivery("incident.acknowledged", inc.id, occurred_at=at(1)))
    note = app.pagerduty.note_delivery(inc.id, "rolled back", occurred_at=at(2))
    resolved = app.pagerduty.delivery("incident.resolved", inc.id, occurred_at=at(3))

    assert (await post(app, note)).body["status"] == "applied"
    assert (await post(app, resolved)).body["status"] == "applied"
    assert len(lookups(app)) == 1
    assert (await app.record(inc.id)).status == Status.RESOLVED


async def test_a_note_before_any_ack_reaches_the_incident(app: App) -> None:
    inc = await paged(app)
    note = app.pagerduty.note_delivery(
        inc.id, "looking at the disk", occurred_at=at(1), agent="Jane Doe"
    )

    reply = await post(app, note)

    assert reply == WebhookReply(
        200, {"status": "applied", "event_type": "incident.annotated", "incident": inc.id}
    )
    [event] = [e for e in await app.rt.store.timeline(inc.id) if e.kind == "note"]
    assert (event.actor, event.source, event.message) == (
        "Jane Doe",
        "pagerduty",
        "looking at the disk",
    )
    assert (await app.record(inc.id)).status == Status.TRIGGERED


@pytest.mark.parametrize(
    "failure",
    [Scripted.error(500), Scripted.error(503), Scripted.rest_rate_limited(reset=3600)],
    ids=["500", "503", "429-past-the-budget"],
)
async def test_while_the_lookup_fails_the_answer_is_503_and_the_retry_applies(
    app: App, failure: Scripted
) -> None:
    inc = await paged(app)
    ack = app.pagerduty.delivery("incident.acknowledged", inc.id, occurred_at=at(1))
    app.pagerduty.script_rest(failure)

    failed = await post(app, ack)

    assert (failed.status, failed.body["error"]) == (503, "pagerduty unavailable")
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    # A 429 whose ratelimit-reset is past the budget is not waited for: one request only.
    assert [status for _, status in lookups(app)] == [failure.status]

    # PagerDuty retries the same delivery once REST is back: not remembered as seen, it acts.
    retried = await post(app, ack)

    assert (retried.status, retried.body["status"]) == (200, "applied")
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_a_429_is_retried_after_ratelimit_reset_within_the_budget(app: App) -> None:
    inc = await paged(app)
    app.pagerduty.script_rest(Scripted.rest_rate_limited(reset=0))

    reply = await post(app, app.pagerduty.delivery("incident.resolved", inc.id, occurred_at=at(1)))

    assert reply.body["status"] == "applied"
    assert [status for _, status in lookups(app)] == [429, 200]


async def test_the_lookup_timing_out_is_503(app: App) -> None:
    inc = await paged(app)
    app.pagerduty.script_rest(Scripted.slow(3))  # a request times out at 1.5 s (half the budget)

    reply = await post(app, app.pagerduty.delivery("incident.resolved", inc.id, occurred_at=at(1)))

    assert reply.status == 503
    assert (await app.record(inc.id)).status == Status.TRIGGERED


async def test_an_incident_with_no_alert_of_ours_is_ignored_with_2xx_once(app: App) -> None:
    await paged(app)
    # Someone else's integration opens an incident on the same PagerDuty account.
    other = {
        "routing_key": PD_CORE_KEY,
        "event_action": "trigger",
        "dedup_key": "not-a-tocsin-incident",
        "payload": {"summary": "cron job late", "source": "cron", "severity": "warning"},
    }
    async with app.client.session.post(f"{app.pagerduty.http_url}/v2/enqueue", json=other) as r:
        assert r.status == 202
    theirs = app.pagerduty.delivery(
        "incident.acknowledged", "not-a-tocsin-incident", occurred_at=at(1)
    )
    unknown = app.pagerduty.delivery(
        "incident.acknowledged", "not-a-tocsin-incident", occurred_at=at(1)
    )
    unknown["event"]["data"]["id"] = "QUNKNOWNTOPD1"  # PagerDuty answers 404 for it

    first = await post(app, theirs)
    again = await post(app, theirs)
    missing = await post(app, unknown)

    assert first == WebhookReply(200, {"status": "ignored", "event_type": "incident.acknowledged"})
    assert again.body["status"] == "duplicate"  # definitively not ours: remembered as seen
    assert (missing.status, missing.body["status"]) == (200, "ignored")
    assert [status for _, status in lookups(app)] == [200, 404]


async def test_reopened_in_pagerduty_sends_no_second_trigger(app: App) -> None:
    inc = await paged(app)
    await app.at(timedelta(minutes=1))
    resolved = app.pagerduty.delivery("incident.resolved", inc.id, occurred_at=at(1))
    assert (await post(app, resolved)).body["status"] == "applied"
    await app.at(timedelta(minutes=2))
    reopened = app.pagerduty.delivery("incident.reopened", inc.id, occurred_at=at(2))

    reply = await post(app, reopened)
    await app.at(timedelta(minutes=3))  # the reopened run's first tier is due at once

    assert reply.body["status"] == "applied"
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    actions = [r.json["event_action"] for r in app.pagerduty.event_requests]
    assert actions.count("trigger") == 1  # PagerDuty reopened its incident itself
    assert len(app.pagerduty.alerts) == 1  # no second PagerDuty incident
    assert any("already open in PagerDuty" in m for m in await app.messages(inc.id))
    # The rest of the policy still runs: the lead is paged at 5 minutes unless acknowledged.
    await app.at(timedelta(minutes=8))
    assert "carol" in [r.person for r in await app.outbox(inc.id)]


async def test_a_note_written_before_an_ack_but_delivered_after_it_is_kept(app: App) -> None:
    """A note changes no state: its order against an ack does not matter (only its id does)."""
    inc = await paged(app)
    pd = app.pagerduty
    note = pd.note_delivery(inc.id, "disk at 99%", occurred_at=at(1), agent="Jane Doe")
    ack = pd.delivery("incident.acknowledged", inc.id, occurred_at=at(2), agent="Jane Doe")
    await app.at(timedelta(minutes=3))

    assert (await post(app, ack)).body["status"] == "applied"
    late = await post(app, note)
    again = await post(app, note)

    assert late == WebhookReply(
        200, {"status": "applied", "event_type": "incident.annotated", "incident": inc.id}
    )
    assert again.body["status"] == "duplicate"
    notes = [e for e in await app.rt.store.timeline(inc.id) if e.kind == "note"]
    assert [(e.actor, e.message) for e in notes] == [("Jane Doe", "disk at 99%")]
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_a_retry_hours_after_a_503_still_acts(app: App) -> None:
    """PagerDuty retries a delivery tocsin answered 5xx for up to 48 hours: a retry three hours
    later (REST was down that long) is applied, not refused as stale."""
    inc = await paged(app)
    ack = app.pagerduty.delivery(
        "incident.acknowledged", inc.id, occurred_at=at(1), agent="Jane Doe"
    )
    app.pagerduty.script_rest(Scripted.error(503))
    await app.at(timedelta(minutes=1))

    failed = await post(app, ack)
    await app.at(timedelta(hours=3))
    retried = await post(app, ack)
    replayed = await post(app, ack)

    assert (failed.status, failed.body["error"]) == (503, "pagerduty unavailable")
    assert retried == WebhookReply(
        200, {"status": "applied", "event_type": "incident.acknowledged", "incident": inc.id}
    )
    assert replayed.body["status"] == "duplicate"
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
    assert "acknowledged by Jane Doe" in await app.messages(inc.id)


async def test_events_queued_behind_a_late_retry_are_not_stale(app: App) -> None:
    """PagerDuty queues an incident's later events behind a delivery it is retrying: once the
    retried ack acts (hours late), the resolve made in PagerDuty after the ack still acts."""
    inc = await paged(app)
    pd = app.pagerduty
    ack = pd.delivery("incident.acknowledged", inc.id, occurred_at=at(1), agent="Jane Doe")
    resolved = pd.delivery("incident.resolved", inc.id, occurred_at=at(120), agent="Jane Doe")
    pd.script_rest(Scripted.error(503))
    await app.at(timedelta(minutes=1))
    assert (await post(app, ack)).status == 503

    await app.at(timedelta(hours=3))
    assert (await post(app, ack)).body["status"] == "applied"
    reply = await post(app, resolved)

    assert reply.body["status"] == "applied"
    assert (await app.record(inc.id)).status == Status.RESOLVED
    # Still: a state change from before the last one PagerDuty told of is stale.
    late_ack = pd.delivery("incident.acknowledged", inc.id, occurred_at=at(60))
    assert (await post(app, late_ack)).body["status"] == "stale"


async def test_without_a_rest_client_the_answer_is_503_not_ignored(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The REST client cannot be built (python-pagerduty cannot be imported): PagerDuty must
    retry the ack, not be told "ignored" and drop it."""
    inc = await paged(app)
    ack = app.pagerduty.delivery("incident.acknowledged", inc.id, occurred_at=at(1))
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pagerduty", None)  # importing it fails, as when not installed
        failed = await post(app, ack)

    assert (failed.status, failed.body["error"]) == (503, "pagerduty unavailable")
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert lookups(app) == []

    retried = await post(app, ack)  # the package is back (e.g. the image fixed)

    assert retried.body["status"] == "applied"
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_concurrent_first_deliveries_share_one_lookup(app: App) -> None:
    """A note and an ack arriving together, before any alias exists: one REST request (slow
    enough that both are waiting on it), and both act."""
    inc = await paged(app)
    pd = app.pagerduty
    note = pd.note_delivery(inc.id, "on it", occurred_at=at(1))
    ack = pd.delivery("incident.acknowledged", inc.id, occurred_at=at(1))
    pd.script_rest(Scripted.slow(0.5))

    replies = await asyncio.gather(post(app, note), post(app, ack))

    assert [r.body["status"] for r in replies] == ["applied", "applied"]
    assert len(lookups(app)) == 1
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED
