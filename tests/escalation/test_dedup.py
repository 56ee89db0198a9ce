"""Every duplicate delivery Alertmanager produces changes nothing and pages nobody again.

protocols.md §1.5 lists the kinds: repeats, whole-group re-sends, retries after a timeout,
re-sends at the next group_interval after a failure, HA peers (§1.7), ``continue: true`` routes
and two independent Alertmanagers. Each test drives the whole app in-process, takes a full
snapshot of every incident through the API (alerts, timeline, outbox, pending steps), delivers
the duplicate, and compares. The escalation then runs on, and the pages are compared in full.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.driver.app import App
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp

pytestmark = pytest.mark.usefixtures("strict_logs")

M = timedelta(minutes=1)

# The default preset's P0 ladder with nobody acknowledging: (seconds after T0, tier, person).
P0_LADDER = [(0.0, 0, "alice"), (300.0, 1, "carol"), (900.0, 2, "dave"), (1800.0, 3, "erin")]


async def only_incident(app: App) -> dict[str, Any]:
    """The single incident the app holds (fails if there is not exactly one)."""
    listed = await app.incidents("limit=1000")
    assert len(listed) == 1, [i["key"] for i in listed]
    return await app.incident(listed[0]["id"])


def ladder(app: App, inc: dict[str, Any]) -> list[tuple[float, int, str]]:
    """The incident's pages as (seconds after T0, tier, person), all delivered."""
    rows = app.pages(inc)
    assert all(state == "sent" for *_, state in rows), rows
    return [(t, tier, person) for t, tier, person, _ in rows]


async def assert_duplicate_changes_nothing(app: App, *bodies: dict[str, Any]) -> None:
    """Deliver ``bodies`` (each a duplicate) at the current instant and compare snapshots."""
    await app.run_until(app.now)  # whatever was due anyway happens first
    before = await app.state()
    for body in bodies:
        reply = await app.post(body)
        assert [i["action"] for i in reply["incidents"]] == ["unchanged"], reply["incidents"]
    await app.run_until(app.now)
    assert await app.state() == before


async def test_repeat_of_an_identical_body_changes_nothing(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    body = notification([alert()])
    first = await app.post(body)
    assert [i["action"] for i in first["incidents"]] == ["opened"]
    await app.run_until(T0 + 2 * M)
    # repeat_interval re-sends, and a receiver-side retry: the very same body, twice.
    await assert_duplicate_changes_nothing(app, body, body)
    await app.run_until(T0 + 4 * timedelta(hours=1))  # repeat_interval
    await assert_duplicate_changes_nothing(app, body)
    inc = await only_incident(app)
    assert ladder(app, inc) == P0_LADDER
    assert len(inc["alerts"]) == 1
    assert [e["kind"] for e in inc["timeline"]].count("open") == 1


async def test_group_resend_with_one_new_alert_adds_only_that_alert(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a = alert(instance="db-1")
    b = alert(instance="db-2", starts=T0 + 3 * M)
    await app.post(notification([a]))
    await app.run_until(T0 + 4 * M)
    before = await only_incident(app)

    reply = await app.post(notification([a, b]))  # the whole group, with b new
    assert [i["action"] for i in reply["incidents"]] == ["joined"]
    await app.run_until(T0 + 4 * M)
    after = await only_incident(app)

    assert [x["fingerprint"] for x in after["alerts"]] == [a["fingerprint"], b["fingerprint"]]
    assert after["alerts"][0] == before["alerts"][0]
    assert after["alerts"][1]["labels"]["instance"] == "db-2"
    assert after["alerts"][1]["starts_at"] == (T0 + 3 * M).isoformat()
    # Exactly one timeline event was added: the new alert. No page, no new step.
    assert after["timeline"][: len(before["timeline"])] == before["timeline"]
    added = after["timeline"][len(before["timeline"]) :]
    assert [(e["kind"], e["actor"], e["source"]) for e in added] == [
        ("alert", "alertmanager", "alert")
    ]
    assert added[0]["data"]["fingerprint"] == b["fingerprint"]
    assert after["notifications"] == before["notifications"]
    assert after["pending_steps"] == before["pending_steps"]
    assert (after["status"], after["severity"]) == ("triggered", "P0")

    # A later re-send of the same group changes nothing at all.
    await assert_duplicate_changes_nothing(app, notification([a, b]))
    await app.run_until(T0 + 40 * M)
    assert ladder(app, await only_incident(app)) == P0_LADDER


async def test_concurrent_retry_after_a_timeout_opens_one_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    body = notification([alert(instance="db-1"), alert(instance="db-2")])
    # Alertmanager timed out waiting and retried while the first request was still in flight.
    replies = await asyncio.gather(app.post(body), app.post(body), app.post(body))
    actions = sorted(i["action"] for r in replies for i in r["incidents"])
    assert actions == ["opened", "unchanged", "unchanged"]
    ids = {i["incident"] for r in replies for i in r["incidents"]}
    assert len(ids) == 1
    await app.run_until(T0 + 40 * M)
    inc = await only_incident(app)
    assert len(inc["alerts"]) == 2
    kinds = [e["kind"] for e in inc["timeline"]]
    assert (kinds.count("open"), kinds.count("alert")) == (1, 2)
    assert ladder(app, inc) == P0_LADDER


async def test_resend_at_next_group_interval_after_a_timeout_changes_nothing(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a, b = alert(instance="db-1"), alert(instance="db-2")
    await app.post(notification([a, b]))
    await app.run_until(T0 + 5 * M)
    # b resolves; Alertmanager's send times out after tocsin committed it ...
    b_resolved = alert(instance="db-2", status="resolved", ends=T0 + 4 * M)
    update = notification([a, b_resolved])
    reply = await app.post(update)
    assert [i["action"] for i in reply["incidents"]] == ["joined"]
    await app.run_until(T0 + 5 * M)
    inc = await only_incident(app)
    assert [x["status"] for x in inc["alerts"]] == ["firing", "resolved"]
    # ... so the same notification comes again at the next group_interval (5m), and again.
    await app.run_until(T0 + 10 * M)
    await assert_duplicate_changes_nothing(app, update)
    await app.run_until(T0 + 15 * M)
    await assert_duplicate_changes_nothing(app, update)
    await app.run_until(T0 + 40 * M)
    inc = await only_incident(app)
    assert ladder(app, inc) == P0_LADDER
    assert inc["status"] == "triggered"


async def test_resend_after_a_rejected_delivery_opens_the_incident_once(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    body = notification([alert()])
    # A delivery tocsin refused (here: a rotated token) stores nothing ...
    r = await app.client.post(
        "/api/v1/alertmanager",
        json=body,
        headers={"Authorization": "Bearer stale-token"},
    )
    assert r.status == 401
    assert await app.incidents("limit=1000") == []
    # ... and the re-send at the next group_interval opens the incident exactly once.
    await app.run_until(T0 + 5 * M)
    assert [i["action"] for i in (await app.post(body))["incidents"]] == ["opened"]
    await assert_duplicate_changes_nothing(app, body)
    await app.run_until(T0 + 50 * M)
    inc = await only_incident(app)
    # The ladder counts from when tocsin first heard of the incident (T0 + 5m).
    assert ladder(app, inc) == [(t + 300.0, tier, p) for t, tier, p in P0_LADDER]


async def test_ha_peer_with_another_external_url_changes_nothing(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    alerts = [alert(instance="db-1"), alert(instance="db-2")]
    await app.post(notification(alerts, external_url="http://alertmanager-0:9093"))
    await app.run_until(T0 + 15 * 1000 * timedelta(milliseconds=1))  # the peer-timeout stagger
    peer = notification(alerts, external_url="http://alertmanager-1:9093")
    await assert_duplicate_changes_nothing(app, peer)
    await app.run_until(T0 + 40 * M)
    inc = await only_incident(app)
    assert ladder(app, inc) == P0_LADDER
    assert len(inc["alerts"]) == 2


async def test_ha_peers_sending_at_the_same_instant_open_one_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    alerts = [alert(instance="db-1")]
    bodies = [notification(alerts, external_url=f"http://alertmanager-{i}:9093") for i in range(3)]
    replies = await asyncio.gather(*(app.post(b) for b in bodies))
    assert sorted(i["action"] for r in replies for i in r["incidents"]) == [
        "opened",
        "unchanged",
        "unchanged",
    ]
    await app.run_until(T0 + 40 * M)
    assert ladder(app, await only_incident(app)) == P0_LADDER


async def test_continue_routes_with_other_receiver_and_group_key_join_one_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a = alert(instance="db-1")
    route1 = notification(
        [a], receiver="team\\-db", group_key='{}/{team="db"}:{alertname="DiskFull"}'
    )
    await app.post(route1)
    await app.run_until(T0 + 1 * M)
    before = await only_incident(app)
    assert before["key"] == 'team-db/{}/{team="db"}:{alertname="DiskFull"}'

    # The same alert reaches a second receiver through a `continue: true` route.
    route2 = notification([a], receiver="sre", group_key='{}/{env="prod"}:{alertname="DiskFull"}')
    reply = await app.post(route2)
    assert [(i["action"], i["incident"]) for i in reply["incidents"]] == [
        ("unchanged", before["id"])
    ]
    await app.run_until(T0 + 1 * M)
    assert await only_incident(app) == before

    # The second route's key now leads to the same incident: its later updates join it, and
    # the first route's copy of that update is a duplicate.
    b = alert(instance="db-2", starts=T0 + 2 * M)
    await app.run_until(T0 + 2 * M)
    reply = await app.post(notification([a, b], receiver="sre", group_key=route2["groupKey"]))
    assert [(i["action"], i["incident"]) for i in reply["incidents"]] == [("joined", before["id"])]
    await assert_duplicate_changes_nothing(
        app, notification([a, b], receiver="team\\-db", group_key=route1["groupKey"])
    )
    await app.run_until(T0 + 40 * M)
    inc = await only_incident(app)
    assert [x["labels"]["instance"] for x in inc["alerts"]] == ["db-1", "db-2"]
    assert ladder(app, inc) == P0_LADDER


async def test_two_independent_alertmanagers_fold_into_one_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a = alert(instance="db-1")
    b = alert(instance="db-2", starts=T0 + 1 * M)
    am0 = "http://am-eu:9093"
    am1 = "http://am-us:9093"
    # Not clustered: each sends on its own timer, with its own view of the group.
    await app.post(notification([a], external_url=am0))
    await app.run_until(T0 + 20 * timedelta(seconds=1))
    await assert_duplicate_changes_nothing(app, notification([a], external_url=am1))
    await app.run_until(T0 + 2 * M)
    reply = await app.post(notification([a, b], external_url=am1))
    assert [i["action"] for i in reply["incidents"]] == ["joined"]
    await app.run_until(T0 + 3 * M)
    await assert_duplicate_changes_nothing(app, notification([a, b], external_url=am0))
    # am0 is behind and still sends its older view: nothing is lost, nothing added.
    await assert_duplicate_changes_nothing(app, notification([a], external_url=am0))
    await app.run_until(T0 + 40 * M)
    inc = await only_incident(app)
    assert len(inc["alerts"]) == 2
    assert ladder(app, inc) == P0_LADDER


async def test_payload_without_fingerprint_dedups_against_one_with_it(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    with_fp = alert(instance="db-1")
    without_fp = alert(instance="db-1", with_fingerprint=False)
    assert "fingerprint" not in without_fp
    # An Alertmanager older than 0.19 sends no fingerprint; tocsin computes the same one.
    reply = await app.post(notification([without_fp]))
    assert [i["action"] for i in reply["incidents"]] == ["opened"]
    assert reply["alerts"][0]["fingerprint"] == with_fp["fingerprint"]
    await app.run_until(T0 + 1 * M)
    await assert_duplicate_changes_nothing(app, notification([with_fp]))
    await assert_duplicate_changes_nothing(app, notification([without_fp]))
    inc = await only_incident(app)
    assert [x["fingerprint"] for x in inc["alerts"]] == [with_fp["fingerprint"]]


async def test_stale_firing_redelivery_does_not_revive_a_resolved_alert(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a, b = alert(instance="db-1"), alert(instance="db-2")
    firing = notification([a, b])
    await app.post(firing)
    await app.run_until(T0 + 2 * M)
    await app.post(notification([a, alert(instance="db-2", status="resolved", ends=T0 + 2 * M)]))
    await app.run_until(T0 + 3 * M)
    # A late retry of the first, all-firing notification arrives after the newer one.
    await assert_duplicate_changes_nothing(app, firing)
    inc = await only_incident(app)
    assert [x["status"] for x in inc["alerts"]] == ["firing", "resolved"]


async def test_stale_firing_redelivery_does_not_reopen_a_resolved_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a = alert(instance="db-1")
    firing = notification([a])
    await app.post(firing)
    await app.run_until(T0 + 2 * M)
    resolved = notification([alert(instance="db-1", status="resolved", ends=T0 + 2 * M)])
    assert [i["action"] for i in (await app.post(resolved))["incidents"]] == ["resolved"]
    await app.run_until(T0 + 3 * M)
    # Within the monitoring window (30m for P0) ...
    await assert_duplicate_changes_nothing(app, firing)
    # ... and after it: the occurrence (fingerprint, startsAt) is known, so no new incident.
    await app.run_until(T0 + 2 * timedelta(hours=1))
    before = await app.state()
    reply = await app.post(firing)
    assert [i["action"] for i in reply["incidents"]] == ["ignored"]
    await app.run_until(app.now)
    assert await app.state() == before
    inc = await only_incident(app)
    assert inc["status"] == "resolved"
    assert ladder(app, inc) == [(0.0, 0, "alice")]
