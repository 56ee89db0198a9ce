"""Alertmanager's Watchdog keeps a tocsin heartbeat alive; when Alertmanager stops, tocsin pages.

A real Prometheus evaluates the Watchdog rule (``vector(1)``, as the README shows), a real
Alertmanager re-sends it every 4 s to tocsin, and a rule marks it ``heartbeat: alertmanager``:
each delivery is a ping, never an incident. Alertmanager is then stopped: the heartbeat expires,
an incident opens and the on-call (the fake PagerDuty) is paged once. Alertmanager comes back on
the same port and its next Watchdog resolves the incident.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

from tests.driver.process import ServeProc, free_port, wait_for
from tests.driver.threaded import ThreadedPagerDuty
from tests.e2e.conftest import (
    Exporter,
    Proc,
    api_get,
    need_binaries,
    start_alertmanager,
    start_prometheus,
    start_tocsin,
    tocsin_config,
)

TOKEN = "e2e-receiver-token"
WATCHDOG_RULE = """\
      - alert: Watchdog
        expr: vector(1)
        labels: {severity: none}
        annotations: {summary: "Always firing, so that the whole alerting pipeline is known to work."}
"""
TOCSIN_WATCHDOG_RULE = """\
rules:
  - name: watchdog
    match: 'alertname="Watchdog"'
    heartbeat: alertmanager
"""


def _config(tmp: Path, port: int, events_url: str) -> Path:
    path = tocsin_config(tmp, port, events_url)
    cfg = yaml.safe_load(path.read_text())
    # Alertmanager re-sends every 4 s (repeat_interval); a few missed ones are tolerated.
    cfg["heartbeats"] = {"alertmanager": {"expect_every": "4s", "grace": "6s", "severity": "P1"}}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp / "rules" / "00-watchdog.yaml").write_text(TOCSIN_WATCHDOG_RULE)  # before e2e.yaml
    return path


def _heartbeat(port: int) -> dict[str, Any]:
    body = api_get(port, "/api/v1/heartbeats")
    assert isinstance(body, dict)
    [one] = body["heartbeats"]
    return dict(one)


def _incidents(port: int) -> list[dict[str, Any]]:
    body = api_get(port, "/api/v1/incidents?status=triggered,acknowledged,mitigated,resolved")
    assert isinstance(body, dict)
    return list(body["incidents"])


def test_the_watchdog_pings_and_its_silence_pages(
    tmp_path: Path, exporter: Exporter, procs: list[Proc | ServeProc], fake_pd: ThreadedPagerDuty
) -> None:
    need_binaries()
    tport = free_port()
    start_tocsin(tmp_path, _config(tmp_path, tport, fake_pd.fake.http_url), tport, procs, TOKEN)
    am_port = free_port()
    start_alertmanager(tmp_path, "alertmanager", tport, TOKEN, procs, port=am_port)
    start_prometheus(tmp_path, exporter, [am_port], procs, extra_rules=WATCHDOG_RULE)

    wait_for(lambda: _heartbeat(tport)["state"] == "ok", timeout=60, what="the first Watchdog")
    first = _heartbeat(tport)["last_ping"]
    wait_for(
        lambda: _heartbeat(tport)["last_ping"] != first, timeout=30, what="a repeated Watchdog"
    )
    assert _incidents(tport) == []  # pings, never incidents
    assert fake_pd.snapshot().accepted("trigger") == []

    [am] = [p for p in procs if p.name == "alertmanager"]
    assert isinstance(am, Proc)
    am.stop(signal.SIGTERM)
    procs.remove(am)
    wait_for(
        lambda: fake_pd.snapshot().accepted("trigger"), timeout=60, what="the heartbeat's page"
    )
    [inc] = _incidents(tport)
    assert (inc["key"], inc["status"], inc["severity"]) == (
        "heartbeat/alertmanager",
        "triggered",
        "P1",
    )
    assert _heartbeat(tport)["state"] == "expired"
    assert fake_pd.snapshot().accepted("trigger")[0]["dedup_key"] == inc["id"]

    start_alertmanager(tmp_path, "alertmanager-again", tport, TOKEN, procs, port=am_port)
    wait_for(
        lambda: _incidents(tport)[0]["status"] == "resolved",
        timeout=60,
        what="the Watchdog back, the incident resolved",
    )
    assert _heartbeat(tport)["state"] == "ok"
    assert len(_incidents(tport)) == 1
    assert len(fake_pd.snapshot().accepted("trigger")) == 1
