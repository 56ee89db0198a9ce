"""One PagerDuty incident holding the alerts of several tocsin incidents (alert grouping, merge).

The whole app pages the fake PagerDuty for two tocsin incidents (two Alertmanager groups, two
dedup keys). PagerDuty groups the second alert into the first's incident, or a responder merges
the two incidents: an ack, note or resolve of that one PagerDuty incident is about both tocsin
incidents, and a merge resolves nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from escalation.incidents.model import IncidentRecord, Status
from escalation.store.base import IncidentFilter
from tests.adapters.conftest import PD_AM, PD_SECRET_A, MakeAdapterApp
from tests.adapters.test_pagerduty_flow import alertmanager
from tests.driver.app import START, App
from tests.fakes.pagerduty import WebhookReply, send_webhook


@pytest.fixture
async def app(make_pd_app: MakeAdapterApp) -> App:
    return await make_pd_app()


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def group(alertname: str) -> dict[str, Any]:
    """Alertmanager's webhook for a one-alert group named ``alertname`` (its own incident)."""
    body = alertmanager()
    labels = body["alerts"][0]["labels"] | {"alertname": alertname}
    body["alerts"][0]["labels"] = labels
    body["alerts"][0]["fingerprint"] = f"{abs(hash(alertname)):016x}"[:16]
    body["groupLabels"] = {"alertname": alertname}
    body["commonLabels"] = labels
    body["groupKey"] = f'{{}}:{{alertname="{alertname}"}}'
    return body


async def two_paged(app: App) -> tuple[IncidentRecord, IncidentRecord]:
    disk = await app.fire(group("DiskFull"), headers=PD_AM)
    await app.post(group("CpuHot"), headers=PD_AM)
    [cpu] = [i for i in await app.rt.store.list_incidents(IncidentFilter()) if i.id != disk.id]
    await app.at(timedelta(0))
    assert [r.json["dedup_key"] for r in app.pagerduty.event_requests] == [disk.id, cpu.id]
    return disk, cpu


async def post(app: App, payload: dict[str, Any]) -> WebhookReply:
    return await send_webhook(app.client, payload, secrets=(PD_SECRET_A,))


def lookups(app: App) -> list[str]:
    return [r.path for r in app.pagerduty.rest_requests if r.path.endswith("/alerts")]


async def statuses(app: App, *incidents: IncidentRecord) -> list[Status]:
    return [(await app.record(i.id)).status for i in incidents]


async def test_an_ack_of_a_grouped_incident_acknowledges_every_tocsin_incident_in_it(
    app: App,
) -> None:
    app.pagerduty.group_alerts = True  # PagerDuty's alert grouping: the second alert joins
    disk, cpu = await two_paged(app)
    pd = app.pagerduty
    assert pd.incident_of(disk.id) == pd.incident_of(cpu.id)

    ack = pd.delivery("incident.acknowledged", disk.id, occurred_at=at(1), agent="Jane Doe")
    reply = await post(app, ack)

    assert reply == WebhookReply(
        200,
        {
            "status": "applied",
            "event_type": "incident.acknowledged",
            "incident": disk.id,
            "incidents": [disk.id, cpu.id],
        },
    )
    assert await statuses(app, disk, cpu) == [Status.ACKNOWLEDGED] * 2
    await app.at(timedelta(minutes=6))  # Carol's tier was due at 5 minutes, for both
    assert [r.person for r in await app.outbox(disk.id)] == ["pagerduty:core"]
    assert [r.person for r in await app.outbox(cpu.id)] == ["pagerduty:core"]

    # Later events match both through their aliases, with no second lookup.
    note = pd.note_delivery(cpu.id, "one root cause", occurred_at=at(7))
    resolved = pd.delivery("incident.resolved", cpu.id, occurred_at=at(8))
    assert (await post(app, note)).body["incidents"] == [disk.id, cpu.id]
    assert (await post(app, resolved)).body["status"] == "applied"
    assert await statuses(app, disk, cpu) == [Status.RESOLVED] * 2
    assert "one root cause" in await app.messages(disk.id)
    assert "one root cause" in await app.messages(cpu.id)
    assert len(lookups(app)) == 1


async def test_a_merge_resolves_nothing_and_the_target_then_acts_on_both(app: App) -> None:
    disk, cpu = await two_paged(app)
    pd = app.pagerduty
    target, merged = pd.incident_of(disk.id), pd.incident_of(cpu.id)
    assert target != merged
    # Each PagerDuty incident is matched (and its alias recorded) before the merge.
    for inc in (disk, cpu):
        note = pd.note_delivery(inc.id, "looking", occurred_at=at(1))
        assert (await post(app, note)).body["status"] == "applied"

    assert pd.merge(disk.id, cpu.id) == [merged]
    merge = pd.merge_delivery(merged, disk.id, occurred_at=at(2), agent="Jane Doe")
    reply = await post(app, merge)

    assert reply == WebhookReply(
        200, {"status": "applied", "event_type": "incident.resolved", "incident": cpu.id}
    )
    assert await statuses(app, disk, cpu) == [Status.TRIGGERED] * 2
    assert f"merged in PagerDuty into its incident {target}" in await app.messages(cpu.id)

    ack = pd.delivery("incident.acknowledged", disk.id, occurred_at=at(3), agent="Jane Doe")
    acked = await post(app, ack)

    assert acked.body["incidents"] == [disk.id, cpu.id]
    assert await statuses(app, disk, cpu) == [Status.ACKNOWLEDGED] * 2
    # One lookup per incident's first note, one of the target at the merge; the ack: none.
    assert lookups(app) == [f"/incidents/{i}/alerts" for i in (target, merged, target)]


async def test_a_state_change_stale_for_one_grouped_incident_still_acts_on_the_other(
    app: App,
) -> None:
    app.pagerduty.group_alerts = True
    disk, cpu = await two_paged(app)
    pd = app.pagerduty
    # The disk incident is acknowledged in tocsin (by an API call) at 2 minutes...
    await app.at(timedelta(minutes=2))
    async with app.client.post(
        f"/api/v1/incidents/{disk.id}/ack",
        headers={"Authorization": "Bearer tocsin-api-write-token"},
        json={},
    ) as resp:
        assert resp.status == 200, await resp.text()
    # ...a PagerDuty resolve from 1 minute is stale for it, not for the CPU incident.
    resolved = pd.delivery("incident.resolved", disk.id, occurred_at=at(1))
    reply = await post(app, resolved)

    assert reply == WebhookReply(
        200, {"status": "applied", "event_type": "incident.resolved", "incident": cpu.id}
    )
    assert await statuses(app, disk, cpu) == [Status.ACKNOWLEDGED, Status.RESOLVED]


async def test_a_merge_of_an_incident_tocsin_never_matched_is_learnt_from_the_target(
    app: App,
) -> None:
    """Only the target was matched before (and its alerts are cached): the merge makes tocsin
    ask PagerDuty for the target's alerts anew, so the ack then acts on both."""
    disk, cpu = await two_paged(app)
    pd = app.pagerduty
    note = pd.note_delivery(disk.id, "looking", occurred_at=at(1))
    assert (await post(app, note)).body["incident"] == disk.id
    [merged] = pd.merge(disk.id, cpu.id)

    merge = await post(app, pd.merge_delivery(merged, disk.id, occurred_at=at(2)))
    ack = pd.delivery("incident.acknowledged", disk.id, occurred_at=at(3))
    acked = await post(app, ack)

    assert merge.body == {"status": "ignored", "event_type": "incident.resolved"}
    assert acked.body["incidents"] == [disk.id, cpu.id]
    assert await statuses(app, disk, cpu) == [Status.ACKNOWLEDGED] * 2
