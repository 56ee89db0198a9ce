"""MTTA / MTTR histograms and ``tocsin_sla_breaches_total``, read from ``/metrics``.

The team's default matrix: P0 (critical) has ack target 5m and resolution target 4h, P1 (high)
15m and 8h. Every observation is the virtual clock's distance from the incident's opening, so the
exact sums and buckets are known.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.driver.app import App
from tests.driver.metrics import metric_value
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp

pytestmark = pytest.mark.usefixtures("strict_logs")

M = timedelta(minutes=1)
ACK = "tocsin_incident_ack_seconds"
RESOLVE = "tocsin_incident_resolution_time_seconds"
BREACHES = "tocsin_sla_breaches_total"


async def open_at(app: App, name: str, severity: str, at: timedelta) -> str:
    await app.run_until(T0 + at)
    a = alert(name, severity=severity, starts=T0 + at)
    reply = await app.post(notification([a], group_key=f'{{}}:{{alertname="{name}"}}'))
    return str(reply["incidents"][0]["incident"])


async def act_at(app: App, inc_id: str, action: str, at: timedelta) -> None:
    await app.run_until(T0 + at)
    await app.act(inc_id, action)


async def scrape(app: App) -> str:
    resp = await app.client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def test_mtta_and_mttr_observe_each_incident_once_by_severity(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    fast = await open_at(app, "Fast", "critical", timedelta(0))
    high = await open_at(app, "High", "high", timedelta(0))
    await act_at(app, fast, "ack", 2 * M)  # MTTA P0: 120 s
    await act_at(app, high, "ack", 10 * M)  # MTTA P1: 600 s
    await act_at(app, high, "mitigate", 20 * M)  # not an ack again: MTTA stays observed once
    await act_at(app, high, "resolve", 30 * M)  # MTTR P1: 1800 s
    await act_at(app, fast, "resolve", 60 * M)  # MTTR P0: 3600 s

    text = await scrape(app)
    p0, p1 = {"severity": "P0"}, {"severity": "P1"}
    assert metric_value(text, f"{ACK}_count", p0) == 1
    assert metric_value(text, f"{ACK}_sum", p0) == 120
    assert metric_value(text, f"{ACK}_bucket", {**p0, "le": "60.0"}) == 0
    assert metric_value(text, f"{ACK}_bucket", {**p0, "le": "120.0"}) == 1
    assert metric_value(text, f"{ACK}_count", p1) == 1
    assert metric_value(text, f"{ACK}_sum", p1) == 600
    assert metric_value(text, f"{RESOLVE}_count", p0) == 1
    assert metric_value(text, f"{RESOLVE}_sum", p0) == 3600
    assert metric_value(text, f"{RESOLVE}_bucket", {**p0, "le": "1800.0"}) == 0
    assert metric_value(text, f"{RESOLVE}_bucket", {**p0, "le": "3600.0"}) == 1
    assert metric_value(text, f"{RESOLVE}_count", p1) == 1
    assert metric_value(text, f"{RESOLVE}_sum", p1) == 1800
    # Every target was met: no breach of any kind.
    for kind in ("ack", "resolve"):
        for sev in ("P0", "P1"):
            assert not metric_value(text, BREACHES, {"kind": kind, "severity": sev})


async def test_mitigate_before_ack_observes_mtta_once(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc = await open_at(app, "Quiet", "critical", timedelta(0))
    await act_at(app, inc, "mitigate", 3 * M)
    await act_at(app, inc, "resolve", 4 * M)
    text = await scrape(app)
    assert metric_value(text, f"{ACK}_count", {"severity": "P0"}) == 1
    assert metric_value(text, f"{ACK}_sum", {"severity": "P0"}) == 180
    assert metric_value(text, f"{RESOLVE}_sum", {"severity": "P0"}) == 240


async def test_sla_breaches_count_late_acks_and_resolutions(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    late_ack = await open_at(app, "LateAck", "critical", timedelta(0))  # ack target 5m
    late_fix = await open_at(app, "LateFix", "critical", timedelta(0))  # resolve target 4h
    on_time = await open_at(app, "OnTime", "high", timedelta(0))  # 15m / 8h
    await act_at(app, late_fix, "ack", 5 * M)  # exactly on target: not a breach
    await act_at(app, late_ack, "ack", 6 * M)
    await act_at(app, on_time, "ack", 14 * M)
    await act_at(app, late_ack, "resolve", 30 * M)
    await act_at(app, on_time, "resolve", 7 * 60 * M)
    await act_at(app, late_fix, "resolve", 5 * 60 * M)

    text = await scrape(app)
    assert metric_value(text, BREACHES, {"kind": "ack", "severity": "P0"}) == 1
    assert metric_value(text, BREACHES, {"kind": "resolve", "severity": "P0"}) == 1
    assert not metric_value(text, BREACHES, {"kind": "ack", "severity": "P1"})
    assert not metric_value(text, BREACHES, {"kind": "resolve", "severity": "P1"})
    assert metric_value(text, f"{ACK}_count", {"severity": "P0"}) == 2
    assert metric_value(text, f"{RESOLVE}_count", {"severity": "P0"}) == 2
