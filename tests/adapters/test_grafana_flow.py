"""Grafana's webhook contact point pointed at tocsin's receiver, with PagerDuty paged (the fake).

The body is ``tests/fixtures/grafana-webhook-firing.json``, shaped as Grafana documents it.
Grafana's documentation shows only a firing body; its resolved one (``resolved`` below) is the
same group with the fields the documentation's field table gives for a resolved group:
``status: "resolved"`` on the group and each alert, each alert's ``endsAt``, ``state: "ok"``
(the group's state, "alerting" or "ok"), and the title and message Grafana's default templates
make of a resolved group.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from tests.adapters.conftest import PD_AM, PD_TOCSIN_API_TOKEN, MakeAdapterApp
from tests.driver.app import App
from tests.driver.payloads import sample

GRAFANA = "grafana-webhook-firing.json"
API = {"Authorization": f"Bearer {PD_TOCSIN_API_TOKEN}"}


async def test_a_grafana_notification_opens_an_incident_and_pages_with_its_links(
    make_pd_app: MakeAdapterApp,
) -> None:
    app = await make_pd_app()
    reply = await app.post(sample(GRAFANA), headers=PD_AM)
    assert [a["fingerprint"] for a in reply["alerts"]] == ["2f6c3c1a9b7e4d10", "8c0d6e4b2a1f3957"]
    [outcome] = reply["incidents"]
    inc_id = outcome["incident"]
    await app.at(timedelta(0))

    [req] = app.pagerduty.event_requests
    assert req.status == 202
    links = {link["text"]: link["href"] for link in req.json["links"]}
    assert links["Dashboard"] == "https://grafana.example.com/d/disk01"
    assert links["Panel"] == "https://grafana.example.com/d/disk01?viewPanel=2"
    assert links["Silence"].startswith("https://grafana.example.com/alerting/silence/new?")
    assert links["Image"] == "https://grafana.example.com/public/img/attachments/disk01.png"
    assert links["Source"] == "https://grafana.example.com/alerting/grafana/a1b2c3d4/view"

    status, shown = await app.api("GET", f"/api/v1/incidents/{inc_id}", headers=API)
    assert status == 200
    first = next(a for a in shown["alerts"] if a["fingerprint"] == "2f6c3c1a9b7e4d10")
    assert first["annotations"]["grafana_values"] == "B=95.6189347745192, C=1"
    assert first["annotations"]["grafana_org_id"] == "1"


async def shown(app: App, inc_id: str) -> dict[str, Any]:
    status, body = await app.api("GET", f"/api/v1/incidents/{inc_id}", headers=API)
    assert status == 200, body
    return dict(body)


def resolved(ends: str) -> dict[str, Any]:
    """Grafana's notification that the fixture's group has resolved, every alert ending at
    ``ends`` (RFC 3339, in Grafana's offset)."""
    doc = sample(GRAFANA)
    doc |= {"status": "resolved", "state": "ok", "title": "[RESOLVED]  (storage)"}
    doc["message"] = "**Resolved**\n\nLabels:\n - alertname = Disk almost full\n"
    for a in doc["alerts"]:
        a |= {"status": "resolved", "endsAt": ends}
    return doc


async def test_a_resolved_grafana_notification_resolves_the_incident_the_firing_one_opened(
    make_pd_app: MakeAdapterApp,
) -> None:
    app = await make_pd_app()
    opened = await app.post(sample(GRAFANA), headers=PD_AM)
    [outcome] = opened["incidents"]
    inc_id = outcome["incident"]
    await app.at(timedelta(0))
    assert (await shown(app, inc_id))["status"] == "triggered"

    await app.at(timedelta(minutes=4))
    reply = await app.post(resolved("2026-11-22T15:03:30+02:00"), headers=PD_AM)
    assert [(i["incident"], i["action"], i["status"]) for i in reply["incidents"]] == [
        (inc_id, "resolved", "resolved")
    ]
    await app.at(timedelta(minutes=4))
    after = await shown(app, inc_id)
    assert after["status"] == "resolved"
    assert {a["status"] for a in after["alerts"]} == {"resolved"}
    # Carol's step (5m) is cancelled, and PagerDuty hears the resolve under the same dedup key.
    await app.at(timedelta(minutes=10))
    trigger, resolve = app.pagerduty.event_requests
    assert (trigger.json["event_action"], resolve.json["event_action"]) == ("trigger", "resolve")
    assert resolve.json["dedup_key"] == trigger.json["dedup_key"]
    assert [p for p in app.pages(await shown(app, inc_id)) if p[2] == "carol"] == []


async def test_a_grafana_url_that_is_not_http_never_becomes_a_pagerduty_link(
    make_pd_app: MakeAdapterApp,
) -> None:
    app = await make_pd_app()
    doc = sample(GRAFANA)
    doc["alerts"][0]["dashboardURL"] = "javascript:alert(1)"
    doc["alerts"][0]["panelURL"] = "/d/disk01?viewPanel=2"  # relative: Grafana without root_url
    await app.post(json.loads(json.dumps(doc)), headers=PD_AM)
    await app.at(timedelta(0))

    [req] = app.pagerduty.event_requests
    assert req.status == 202
    texts = [link["text"] for link in req.json["links"]]
    assert "Dashboard" not in texts and "Panel" not in texts
    assert "Silence" in texts and "Image" in texts
