"""A real Prometheus rule fires, a real Alertmanager routes it to tocsin, tocsin pages the fake PagerDuty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.driver.process import ServeProc, free_port, wait_for
from tests.driver.threaded import ThreadedPagerDuty
from tests.e2e.conftest import (
    Exporter,
    Proc,
    api_get,
    metric,
    need_binaries,
    start_alertmanager,
    start_prometheus,
    start_tocsin,
    tocsin_config,
)

TOKEN = "e2e-receiver-token"
AM_ROUTE = {"route": "/api/v1/alertmanager", "code": "200"}


def _incidents(port: int) -> list[dict[str, Any]]:
    body = api_get(port, "/api/v1/incidents?status=triggered,acknowledged,mitigated,resolved")
    assert isinstance(body, dict)
    return list(body["incidents"])


def test_fire_repeat_resolve_pages_once(
    tmp_path: Path, exporter: Exporter, procs: list[Proc | ServeProc], fake_pd: ThreadedPagerDuty
) -> None:
    need_binaries()
    tport = free_port()
    start_tocsin(
        tmp_path, tocsin_config(tmp_path, tport, fake_pd.fake.http_url), tport, procs, TOKEN
    )
    am = start_alertmanager(tmp_path, "alertmanager", tport, TOKEN, procs)
    start_prometheus(tmp_path, exporter, [am], procs)

    exporter.value = 10  # the rule `tocsin_e2e_errors > 5` starts firing
    wait_for(
        lambda: fake_pd.snapshot().accepted("trigger"), timeout=60, what="the PagerDuty trigger"
    )
    incidents = _incidents(tport)
    assert [(i["severity"], i["status"]) for i in incidents] == [("P0", "triggered")]
    inc = incidents[0]
    trigger = fake_pd.snapshot().accepted("trigger")[0]
    assert trigger["dedup_key"] == inc["id"]
    assert trigger["routing_key"] == "e2eroutingkey0000000000000000001"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == "[SEV-1] ApiErrors on api"

    # Alertmanager re-sends the group (repeat_interval 4s): tocsin accepts each and pages nobody again.
    seen = metric(tport, "tocsin_http_requests_total", AM_ROUTE)
    wait_for(
        lambda: metric(tport, "tocsin_http_requests_total", AM_ROUTE) >= seen + 2,
        timeout=40,
        what="two more Alertmanager deliveries (repeats)",
    )
    assert len(fake_pd.snapshot().accepted("trigger")) == 1
    assert len(_incidents(tport)) == 1

    exporter.value = 0  # the condition clears
    wait_for(
        lambda: fake_pd.snapshot().accepted("resolve"), timeout=60, what="the PagerDuty resolve"
    )
    assert fake_pd.snapshot().accepted("resolve")[0]["dedup_key"] == inc["id"]
    final = _incidents(tport)
    assert [(i["id"], i["status"]) for i in final] == [(inc["id"], "resolved")]
    assert len(fake_pd.snapshot().accepted("trigger")) == 1
    alert = fake_pd.fake.alert(inc["id"])
    assert alert is not None and alert.status == "resolved"


def test_ha_pair_pages_once(
    tmp_path: Path, exporter: Exporter, procs: list[Proc | ServeProc], fake_pd: ThreadedPagerDuty
) -> None:
    need_binaries()
    tport = free_port()
    start_tocsin(
        tmp_path, tocsin_config(tmp_path, tport, fake_pd.fake.http_url), tport, procs, TOKEN
    )
    c1, c2 = free_port(), free_port()
    am1 = start_alertmanager(tmp_path, "am1", tport, TOKEN, procs, cluster_port=c1, peers=[c2])
    am2 = start_alertmanager(tmp_path, "am2", tport, TOKEN, procs, cluster_port=c2, peers=[c1])
    start_prometheus(tmp_path, exporter, [am1, am2], procs)

    exporter.value = 10
    wait_for(
        lambda: fake_pd.snapshot().accepted("trigger"), timeout=60, what="the PagerDuty trigger"
    )
    # Both replicas deliver (gossip may or may not suppress one); give them time to repeat.
    seen = metric(tport, "tocsin_http_requests_total", AM_ROUTE)
    wait_for(
        lambda: metric(tport, "tocsin_http_requests_total", AM_ROUTE) >= seen + 3,
        timeout=40,
        what="more deliveries from the Alertmanager pair",
    )
    incidents = _incidents(tport)
    assert len(incidents) == 1
    assert len(fake_pd.snapshot().accepted("trigger")) == 1
    exporter.value = 0
    wait_for(
        lambda: fake_pd.snapshot().accepted("resolve"), timeout=60, what="the PagerDuty resolve"
    )
    assert len(fake_pd.snapshot().accepted("resolve")) >= 1
    assert {r["dedup_key"] for r in fake_pd.snapshot().accepted("resolve")} == {incidents[0]["id"]}
    assert len(fake_pd.snapshot().accepted("trigger")) == 1
