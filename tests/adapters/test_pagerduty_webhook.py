"""``POST /api/v1/pagerduty/webhook``: signatures, dedup by signed event id, each event's effect."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import pytest

from escalation.incidents.model import IncidentRecord, Status
from router.inbound_pagerduty import signature_valid
from tests.adapters.conftest import PD_SECRET_A, PD_SECRET_B, MakeAdapterApp
from tests.adapters.test_pagerduty_flow import fire
from tests.driver.app import START, App
from tests.fakes.pagerduty import (
    WebhookReply,
    incident_webhook,
    note_webhook,
    ping_webhook,
    send_webhook,
    sign,
)

PATH = "/api/v1/pagerduty/webhook"


@pytest.fixture
async def app(make_pd_app: MakeAdapterApp) -> App:
    return await make_pd_app()


async def paged(app: App) -> IncidentRecord:
    """An open incident whose first tier PagerDuty has been sent."""
    inc = await fire(app)
    await app.at(timedelta(0))
    return inc


def webhook(app: App, event_type: str, inc: IncidentRecord, **kw: Any) -> dict[str, Any]:
    """What PagerDuty sends about the incident it opened for ``inc``: ``incident_key`` null,
    only its own incident id, which tocsin matches through the REST lookup (or its alias)."""
    return incident_webhook(event_type, app.pagerduty.incident_of(inc.id), **kw)


def note(app: App, inc: IncidentRecord, content: str, **kw: Any) -> dict[str, Any]:
    """PagerDuty's ``incident.annotated`` for a note on the incident it opened for ``inc``."""
    return note_webhook(app.pagerduty.incident_of(inc.id), content, **kw)


def lookups(app: App) -> list[str]:
    """The REST lookups of incidents' alerts tocsin made."""
    return [r.path for r in app.pagerduty.rest_requests if r.path.endswith("/alerts")]


async def post(
    app: App, payload: dict[str, Any], *secrets: str, webhook_id: str | None = None
) -> WebhookReply:
    return await send_webhook(
        app.client, payload, secrets=secrets or (PD_SECRET_A,), webhook_id=webhook_id
    )


# -- signatures -------------------------------------------------------------------------------


def test_signature_valid_accepts_any_v1_entry_for_any_secret() -> None:
    body = b'{"event":{}}'
    good_a = hmac.new(PD_SECRET_A.encode(), body, hashlib.sha256).hexdigest()
    assert signature_valid(body, f"v1={good_a}", [PD_SECRET_A])
    assert signature_valid(body, f"v1={'0' * 64}, v1={good_a}", [PD_SECRET_A])
    assert signature_valid(body, f"v1={good_a.upper()}", [PD_SECRET_A])
    assert signature_valid(body, f"v1={good_a}", ["older", PD_SECRET_A])
    assert not signature_valid(body, f"v0={good_a}", [PD_SECRET_A])
    assert not signature_valid(body, f"v1={good_a}", [PD_SECRET_B])
    assert not signature_valid(body + b" ", f"v1={good_a}", [PD_SECRET_A])
    assert not signature_valid(body, "garbage", [PD_SECRET_A])
    assert not signature_valid(body, f"v1={good_a}", [])


async def test_valid_signature_acknowledges(app: App) -> None:
    inc = await paged(app)
    reply = await post(app, webhook(app, "incident.acknowledged", inc, agent="Jane Doe"))

    assert reply == WebhookReply(
        200, {"status": "applied", "event_type": "incident.acknowledged", "incident": inc.id}
    )
    got = await app.record(inc.id)
    assert got.status == Status.ACKNOWLEDGED
    [event] = [e for e in await app.rt.store.timeline(inc.id) if e.kind == "ack"]
    assert (event.actor, event.source, event.message) == (
        "Jane Doe",
        "pagerduty",
        "acknowledged by Jane Doe",
    )


@pytest.mark.parametrize(
    ("signature", "status", "error"),
    [
        (None, 401, "signature required"),
        ("", 401, "signature required"),
        ("v1=" + "0" * 64, 403, "signature not verified"),
        ("t=1700000000,v0=abcdef", 403, "signature not verified"),
        ("not a signature header", 403, "signature not verified"),
    ],
    ids=["missing", "empty", "wrong", "no-v1-entry", "malformed"],
)
async def test_a_bad_or_missing_signature_changes_nothing(
    app: App, signature: str | None, status: int, error: str
) -> None:
    inc = await paged(app)
    before = await app.messages(inc.id)
    payload = webhook(app, "incident.acknowledged", inc)
    headers = {} if signature is None else {"X-PagerDuty-Signature": signature}
    resp = await app.client.post(
        PATH,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "X-Webhook-Id": "W-forged"} | headers,
    )

    assert resp.status == status
    body = await resp.json()
    assert (body["error"], body["path"]) == (error, "")
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.messages(inc.id) == before
    # The forged delivery's id was not remembered: the genuine one with that id still acts.
    genuine = await post(app, payload, webhook_id="W-forged")
    assert genuine.body["status"] == "applied"


async def test_signed_with_another_key_is_forbidden(app: App) -> None:
    inc = await paged(app)
    reply = await post(app, webhook(app, "incident.resolved", inc), "whsec-attacker")

    assert reply.status == 403
    assert (await app.record(inc.id)).status == Status.TRIGGERED


async def test_multiple_v1_entries_during_a_rotation(app: App) -> None:
    inc = await paged(app)
    payload = webhook(app, "incident.acknowledged", inc)
    body = json.dumps(payload).encode()
    header = f"v1={'f' * 64},{sign(body, 'whsec-new-not-configured-yet')},{sign(body, PD_SECRET_A)}"
    reply = await send_webhook(app.client, body, signature=header)

    assert reply.body["status"] == "applied"
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_the_rotated_secret_is_still_accepted(app: App) -> None:
    inc = await paged(app)
    reply = await post(app, webhook(app, "incident.acknowledged", inc), PD_SECRET_B)

    assert reply.body["status"] == "applied"
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_without_configured_secrets_nothing_verifies(
    make_pd_app: MakeAdapterApp,
) -> None:
    app = await make_pd_app(secrets=())
    inc = await paged(app)
    reply = await post(app, webhook(app, "incident.acknowledged", inc))

    assert reply.status == 403
    assert reply.body["detail"] == (
        "no PagerDuty webhook secret is configured (adapters.pagerduty.webhook_secrets)"
    )
    assert (await app.record(inc.id)).status == Status.TRIGGERED


# -- deduplication and failures -----------------------------------------------------------------


async def test_the_same_delivery_twice_acts_once(app: App) -> None:
    inc = await paged(app)
    rolled_back = note(app, inc, "rolled back the deploy")
    first = await post(app, rolled_back, webhook_id="W-1")
    again = await post(app, rolled_back, webhook_id="W-1")

    assert (first.body["status"], again.body["status"]) == ("applied", "duplicate")
    notes = [e for e in await app.rt.store.timeline(inc.id) if e.kind == "note"]
    assert [(e.actor, e.source, e.message) for e in notes] == [
        ("Tenex Engineer", "pagerduty", "rolled back the deploy")
    ]


async def test_the_same_delivery_at_once_acts_once(app: App) -> None:
    inc = await paged(app)
    note = webhook(app, "incident.acknowledged", inc)
    replies = await asyncio.gather(*(post(app, note, webhook_id="W-2") for _ in range(3)))

    assert sorted(r.body["status"] for r in replies) == ["applied", "duplicate", "duplicate"]
    assert sum("acknowledged by" in e for e in await app.messages(inc.id)) == 1


async def test_a_delivery_that_failed_on_the_store_is_applied_on_retry(app: App) -> None:
    inc = await paged(app)
    payload = webhook(app, "incident.acknowledged", inc)
    await app.rt.store.close()
    failed = await post(app, payload, webhook_id="W-retry")
    await app.rt.store.open()
    retried = await post(app, payload, webhook_id="W-retry")

    assert (failed.status, failed.body["error"]) == (503, "store unavailable")
    assert failed.body == {
        "error": "store unavailable",
        "detail": "the webhook was not applied; retry",
        "path": "",
    }
    assert (retried.status, retried.body["status"]) == (200, "applied")
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_unknown_incidents_are_ignored_with_2xx(app: App) -> None:
    inc = await paged(app)
    before = await app.messages(inc.id)
    # PagerDuty knows no such incident (its REST API answers 404), and an incident_key that is
    # not a tocsin incident's id matches nothing (never a number, a key, or anything else).
    for key in ("0123456789abcdef0123", str(inc.number), f"#{inc.number}", inc.key, None):
        ack = incident_webhook("incident.acknowledged", "QNOTOURS1", incident_key=key)
        reply = await post(app, ack)
        assert reply == WebhookReply(
            200, {"status": "ignored", "event_type": "incident.acknowledged"}
        )
    unknown_note = await post(app, note_webhook("PNOTOURS", "hello"))
    assert unknown_note.body["status"] == "ignored"
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.messages(inc.id) == before


async def test_an_action_that_no_longer_applies_is_2xx_and_changes_nothing(app: App) -> None:
    inc = await paged(app)
    await post(app, webhook(app, "incident.acknowledged", inc))
    before = await app.messages(inc.id)
    again = await post(app, webhook(app, "incident.acknowledged", inc))

    assert again == WebhookReply(
        200, {"status": "no change", "event_type": "incident.acknowledged", "incident": inc.id}
    )
    assert await app.messages(inc.id) == before


# -- each event type ----------------------------------------------------------------------------


async def test_resolved_resolves(app: App) -> None:
    inc = await paged(app)
    reply = await post(app, webhook(app, "incident.resolved", inc, agent=None))

    assert reply.body["status"] == "applied"
    got = await app.record(inc.id)
    assert got.status == Status.RESOLVED
    assert "resolved by pagerduty" in await app.messages(inc.id)


async def test_unacknowledged_goes_back_to_triggered(app: App) -> None:
    inc = await paged(app)
    await post(app, webhook(app, "incident.acknowledged", inc))
    reply = await post(app, webhook(app, "incident.unacknowledged", inc, agent=None))

    assert reply.body["status"] == "applied"
    got = await app.record(inc.id)
    assert (got.status, got.epoch) == (Status.TRIGGERED, inc.epoch + 1)
    assert "back to triggered by pagerduty" in await app.messages(inc.id)


async def test_reopened_reopens_a_resolved_incident(app: App) -> None:
    inc = await paged(app)
    await post(app, webhook(app, "incident.resolved", inc))
    reply = await post(app, webhook(app, "incident.reopened", inc, agent="Ops Bot"))

    assert reply.body["status"] == "applied"
    got = await app.record(inc.id)
    assert (got.status, got.resolved_at) == (Status.TRIGGERED, None)
    assert "back to triggered by Ops Bot" in await app.messages(inc.id)


async def test_annotated_becomes_a_timeline_note(app: App) -> None:
    inc = await paged(app)
    # incident.triggered is not worth a REST call: it is ignored, matched to nothing yet.
    seen = await post(app, webhook(app, "incident.triggered", inc))
    assert seen.body == {"status": "ignored", "event_type": "incident.triggered"}
    assert lookups(app) == []
    reply = await post(app, note(app, inc, "  DB failover started  ", agent="Jane Doe"))

    assert reply == WebhookReply(
        200, {"status": "applied", "event_type": "incident.annotated", "incident": inc.id}
    )
    [noted] = [e for e in await app.rt.store.timeline(inc.id) if e.kind == "note"]
    assert (noted.actor, noted.source, noted.message) == (
        "Jane Doe",
        "pagerduty",
        "DB failover started",
    )
    assert (await app.record(inc.id)).status == Status.TRIGGERED


async def test_an_incident_key_naming_a_tocsin_incident_matches_without_a_lookup(app: App) -> None:
    """The first, free try: an incident that does carry a key (not what PagerDuty sends for the
    Events API incidents tocsin opens) naming a tocsin incident matches with no REST call, even
    on an event tocsin ignores, and its PagerDuty id is remembered for events that carry none."""
    inc = await paged(app)
    # PagerDuty's REST API does not know QKEYED1 (a lookup would answer 404: not ours).
    seen = await post(app, incident_webhook("incident.triggered", "QKEYED1", incident_key=inc.id))
    assert seen.body == {
        "status": "ignored",
        "event_type": "incident.triggered",
        "incident": inc.id,
    }
    reply = await post(app, note_webhook("QKEYED1", "DB failover started", agent="Jane Doe"))

    assert reply == WebhookReply(
        200, {"status": "applied", "event_type": "incident.annotated", "incident": inc.id}
    )
    assert lookups(app) == []


@pytest.mark.parametrize(
    "event_type",
    [
        "incident.escalated",
        "incident.priority_updated",
        "incident.reassigned",
        "incident.delegated",
        "incident.responder.added",
    ],
)
async def test_other_incident_events_are_ignored(app: App, event_type: str) -> None:
    inc = await paged(app)
    # A note first: PagerDuty's incident is then known to be this one (its alias recorded).
    assert (await post(app, note(app, inc, "looking"))).body["status"] == "applied"
    before = await app.messages(inc.id)
    reply = await post(app, webhook(app, event_type, inc))

    assert reply == WebhookReply(
        200, {"status": "ignored", "event_type": event_type, "incident": inc.id}
    )
    assert await app.messages(inc.id) == before
    assert (await app.record(inc.id)).status == Status.TRIGGERED


async def test_ping_and_service_events_are_ignored(app: App) -> None:
    ping = await post(app, ping_webhook())
    assert ping == WebhookReply(200, {"status": "ignored", "event_type": "pagey.ping"})
    service = {
        "event": {
            "id": "01X",
            "event_type": "service.updated",
            "resource_type": "service",
            "occurred_at": "2026-11-22T13:00:00Z",
            "agent": None,
            "client": None,
            "data": {"id": "PF9KMXH", "type": "service"},
        }
    }
    reply = await post(app, service)
    assert reply == WebhookReply(200, {"status": "ignored", "event_type": "service.updated"})


# -- bad bodies ---------------------------------------------------------------------------------


async def test_signed_but_not_a_webhook_is_400(app: App) -> None:
    for body, error in ((b"not json", "invalid JSON"), (b'{"event": 3}', "invalid payload")):
        reply = await send_webhook(app.client, body, secrets=(PD_SECRET_A,))
        assert (reply.status, reply.body["error"]) == (400, error)


async def test_an_oversized_body_is_413_before_anything_else(app: App) -> None:
    body = b'{"event": {"pad": "' + b"x" * (256 * 1024) + b'"}}'
    reply = await send_webhook(app.client, body, secrets=(PD_SECRET_A,))
    assert (reply.status, reply.body["error"]) == (413, "body too large")


async def test_answers_well_within_pagerdutys_five_seconds(app: App) -> None:
    inc = await paged(app)
    started = time.perf_counter()
    reply = await post(app, webhook(app, "incident.acknowledged", inc))
    assert reply.status == 200
    assert time.perf_counter() - started < 5.0


# -- replays: the signed event id and time decide, never the unsigned headers --------------------


def _iso(delta: timedelta) -> str:
    return (START + delta).isoformat().replace("+00:00", "Z")


async def test_a_replay_with_a_new_webhook_id_header_is_a_duplicate(app: App) -> None:
    inc = await paged(app)
    ack = webhook(app, "incident.acknowledged", inc, occurred_at=_iso(timedelta(minutes=1)))
    first = await post(app, ack, webhook_id="W-original")
    # The attacker reopens nothing yet: the same signed body under a fresh header value.
    replay = await post(app, ack, webhook_id="W-forged-new-id")

    assert (first.body["status"], replay.body["status"]) == ("applied", "duplicate")
    assert sum("acknowledged by" in e for e in await app.messages(inc.id)) == 1


async def test_a_captured_ack_cannot_silence_a_reopened_incident(app: App) -> None:
    inc = await paged(app)
    # Signed at 13:01 and captured; meanwhile the incident is resolved and reopened by 13:03.
    captured = webhook(app, "incident.acknowledged", inc, occurred_at=_iso(timedelta(minutes=1)))
    await app.at(timedelta(minutes=2))
    resolved = webhook(app, "incident.resolved", inc, occurred_at=_iso(timedelta(minutes=2)))
    assert (await post(app, resolved)).body["status"] == "applied"
    await app.at(timedelta(minutes=3))
    reopened = webhook(app, "incident.reopened", inc, occurred_at=_iso(timedelta(minutes=3)))
    assert (await post(app, reopened)).body["status"] == "applied"

    replay = await post(app, captured, webhook_id="W-anything")

    assert replay == WebhookReply(
        200, {"status": "stale", "event_type": "incident.acknowledged", "incident": inc.id}
    )
    assert (await app.record(inc.id)).status == Status.TRIGGERED


async def test_an_event_older_than_the_replay_window_is_refused(app: App) -> None:
    inc = await paged(app)
    ack = webhook(app, "incident.acknowledged", inc, occurred_at=_iso(timedelta(minutes=1)))
    # Default server.replay_window is PagerDuty's retry horizon, 48 h: delivered 2 min past it.
    app.clock.set(START + timedelta(hours=48, minutes=3))

    reply = await post(app, ack)

    assert reply.body["status"] == "stale"
    assert (await app.record(inc.id)).status == Status.TRIGGERED


@pytest.mark.parametrize(
    ("replay_window", "status"), [(None, "applied"), ("10m", "stale")], ids=["default", "10m"]
)
async def test_a_shorter_replay_window_refuses_an_event_the_default_accepts(
    make_pd_app: MakeAdapterApp, replay_window: str | None, status: str
) -> None:
    app = await make_pd_app(replay_window=replay_window)
    inc = await paged(app)
    ack = webhook(app, "incident.acknowledged", inc, occurred_at=_iso(timedelta(minutes=1)))
    # Delivered 15 minutes after it occurred: well inside 48 h, past a 10-minute window.
    app.clock.set(START + timedelta(minutes=16))

    reply = await post(app, ack)

    assert reply.body["status"] == status, reply
    acked = (await app.record(inc.id)).status == Status.ACKNOWLEDGED
    assert acked is (status == "applied")


@pytest.mark.parametrize(
    ("age", "status"),
    [(timedelta(minutes=10), "applied"), (timedelta(minutes=10, seconds=1), "stale")],
    ids=["exactly-the-window", "a-second-past-it"],
)
async def test_an_event_as_old_as_a_configured_replay_window_is_accepted(
    make_pd_app: MakeAdapterApp, age: timedelta, status: str
) -> None:
    app = await make_pd_app(replay_window="10m")
    inc = await paged(app)
    ack = webhook(app, "incident.acknowledged", inc, occurred_at=_iso(timedelta(minutes=1)))
    app.clock.set(START + timedelta(minutes=1) + age)

    reply = await post(app, ack)

    assert reply.body["status"] == status, reply


@pytest.mark.parametrize(
    "occurred_at", [None, "yesterday", "2026-11-22T13:01:00", "2026-11-22T14:00:00Z"]
)
async def test_an_event_without_a_valid_recent_time_is_refused(
    app: App, occurred_at: str | None
) -> None:
    inc = await paged(app)
    ack = webhook(app, "incident.acknowledged", inc)
    ack["event"]["occurred_at"] = occurred_at  # missing, unparseable, no offset, 1 h ahead

    reply = await post(app, ack)

    assert reply.body["status"] == "stale"
    assert (await app.record(inc.id)).status == Status.TRIGGERED


async def test_delivery_ids_are_pruned_past_the_replay_window(app: App) -> None:
    inc = await paged(app)
    ack = webhook(app, "incident.acknowledged", inc, occurred_at=_iso(timedelta(minutes=1)))
    assert (await post(app, ack)).body["status"] == "applied"
    store = app.rt.store
    async with store.transaction() as tx:
        assert await tx.seen_delivery("pagerduty", ack["event"]["id"], START) is True

    # Within the window (48 h, PagerDuty's retry horizon) the id is kept: a replay is refused
    # as a duplicate, its age alone would not refuse it...
    await app.at(timedelta(hours=47, minutes=59))
    assert (await post(app, ack)).body["status"] == "duplicate"
    # ...once past the window + clock skew (5 min), the engine's housekeeping forgets the id...
    await app.at(timedelta(hours=48, minutes=7))

    async with store.transaction() as tx:
        assert await tx.seen_delivery("pagerduty", ack["event"]["id"], START) is False
    # ...and a replay of it is still refused, by its age, even once the incident is reopened.
    unacked = _iso(timedelta(hours=48, minutes=7))
    reopen = await post(app, webhook(app, "incident.unacknowledged", inc, occurred_at=unacked))
    assert reopen.body["status"] == "applied"
    assert (await post(app, ack)).body["status"] == "stale"
    assert (await app.record(inc.id)).status == Status.TRIGGERED
