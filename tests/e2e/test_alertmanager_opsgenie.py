"""A real Alertmanager (Debian package) with ``opsgenie_configs`` whose ``api_url`` is tocsin.

Alertmanager's own Opsgenie integration creates alerts (``POST <api_url>v2/alerts`` with
``Authorization: GenieKey``) and closes them by alias when they resolve; tocsin opens an incident
at the level the priority maps to, takes Alertmanager's repeats as Opsgenie's dedup, and resolves
the incident on the close. Alerts are pushed to Alertmanager's API, as Prometheus would.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.driver.config import write_config
from tests.driver.process import ServeProc, free_port, wait_for
from tests.e2e.conftest import ALERTMANAGER, Proc, _http_ok, api_get, metric, need_binaries

TOKEN = "e2e-receiver-token"
GENIE_KEY = "e2e-genie-key-0c8f1d2e"
CREATE = {"route": "/v2/alerts", "code": "202"}
CLOSE = {"route": "/v2/alerts/{identifier}/close", "code": "202"}


def _tocsin(tmp: Path, port: int, procs: list[Proc | ServeProc]) -> None:
    url = f"127.0.0.1:{port}"
    config = write_config(
        tmp,
        {
            "server": {"listen": url, "public_url": f"http://{url}", "log_level": "info"},
            "auth": {
                "receiver": {"bearer_tokens": ["${TOCSIN_RECEIVER_TOKEN}"]},
                "api_tokens": [{"name": "e2e", "token": "${TOCSIN_API_TOKEN}", "scope": "write"}],
                "genie_keys": [{"name": "alertmanager", "key": "${OPSGENIE_KEY}"}],
            },
            "rules": {"files": []},
            "people": {"alice": {"channels": ["log"]}},
            "roles": {r: ["person:alice"] for r in ("oncall", "lead", "manager", "vp")},
        },
        rules=None,
    )
    env = {"TOCSIN_RECEIVER_TOKEN": TOKEN, "TOCSIN_API_TOKEN": "api-token"}
    p = ServeProc(
        "tocsin", config, tmp / "tocsin.log", env=env | {"OPSGENIE_KEY": GENIE_KEY}, port=port
    )
    procs.append(p)
    p.wait_ready()


def _alertmanager(tmp: Path, tocsin_port: int, procs: list[Proc | ServeProc]) -> int:
    port = free_port()
    cfg = tmp / "alertmanager.yml"
    cfg.write_text(
        f"""route:
  receiver: tocsin
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4s
receivers:
  - name: tocsin
    opsgenie_configs:
      - api_url: http://127.0.0.1:{tocsin_port}/
        api_key: {GENIE_KEY}
        send_resolved: true
        priority: '{{{{ if eq .CommonLabels.severity "critical" }}}}P1{{{{ else }}}}P5{{{{ end }}}}'
"""
    )
    assert ALERTMANAGER is not None
    args = [
        ALERTMANAGER,
        f"--config.file={cfg}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    p = Proc("alertmanager", args, tmp / "alertmanager.log")
    procs.append(p)
    wait_for(
        lambda: _http_ok(f"http://127.0.0.1:{port}/-/ready") or not p.alive(),
        timeout=30,
        what="alertmanager ready",
    )
    assert p.alive(), p.output()
    return port


def _push(am: int, name: str, severity: str, *, resolved: bool = False) -> None:
    """Post one alert to Alertmanager's API (what Prometheus does on every evaluation)."""
    now = datetime.now(UTC)
    ends = now - timedelta(seconds=1) if resolved else now + timedelta(hours=1)
    alert = {
        "labels": {"alertname": name, "severity": severity, "service": "api"},
        "annotations": {"summary": f"{name} on api"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "endsAt": ends.isoformat(),
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{am}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def _incidents(port: int) -> dict[str, dict[str, Any]]:
    body = api_get(port, "/api/v1/incidents?status=triggered,acknowledged,mitigated,resolved")
    assert isinstance(body, dict)
    # Alertmanager's default Opsgenie message: "[FIRING:1] ApiErrors (api critical)".
    return {i["title"].split()[1]: i for i in body["incidents"]}


def _am_failures(am: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{am}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("alertmanager_notifications_failed_total{")
        and 'integration="opsgenie"' in line
    )


def test_alertmanager_opsgenie_configs_fire_repeat_and_resolve(
    tmp_path: Path, procs: list[Proc | ServeProc]
) -> None:
    need_binaries()
    tport = free_port()
    _tocsin(tmp_path, tport, procs)
    am = _alertmanager(tmp_path, tport, procs)

    _push(am, "ApiErrors", "critical")
    _push(am, "SlowQueries", "warning")
    wait_for(lambda: len(_incidents(tport)) == 2, timeout=30, what="two incidents")
    incidents = _incidents(tport)
    # The priority picks the level: P1 → the first level (P0), P5 → the last (P4).
    assert {t: (i["severity"], i["status"]) for t, i in incidents.items()} == {
        "ApiErrors": ("P0", "triggered"),
        "SlowQueries": ("P4", "triggered"),
    }
    assert all(i["key"].startswith("opsgenie:") for i in incidents.values())
    first = incidents["ApiErrors"]

    # Alertmanager re-creates the alert every repeat_interval: the same alias, one incident.
    seen = metric(tport, "tocsin_http_requests_total", CREATE)
    wait_for(
        lambda: metric(tport, "tocsin_http_requests_total", CREATE) >= seen + 2,
        timeout=40,
        what="two more creates (Alertmanager's repeats)",
    )
    assert len(_incidents(tport)) == 2

    _push(am, "ApiErrors", "critical", resolved=True)
    wait_for(
        lambda: _incidents(tport)["ApiErrors"]["status"] == "resolved",
        timeout=30,
        what="the incident resolved by Alertmanager's close",
    )
    assert metric(tport, "tocsin_http_requests_total", CLOSE) >= 1
    final = _incidents(tport)
    assert final["ApiErrors"]["id"] == first["id"]
    assert final["SlowQueries"]["status"] == "triggered"
    assert _am_failures(am) == 0
