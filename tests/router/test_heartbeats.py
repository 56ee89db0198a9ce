"""Heartbeats through the whole app on a virtual clock: arming, pings, expiry, the Watchdog.

A heartbeat that stops pinging opens an incident whose policy pages as usual; the next ping
resolves it. Pings come through ``/api/v1/heartbeats/{name}/ping`` (receiver credentials) or a
Watchdog alert a rule marks with ``heartbeat:``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from tests.driver.app import AM, READ, WRITE, App
from tests.driver.metrics import metric_value
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp

pytestmark = pytest.mark.usefixtures("strict_logs")

M = timedelta(minutes=1)
PING = "/api/v1/heartbeats/nightly-backup/ping"

POLICIES = """\
  beat:
    reminders: false
    steps:
      - {name: on-call, after: 0, notify: [role:oncall]}
      - {name: lead, after: 10m, notify: [role:lead]}
"""
HEARTBEATS = """\
heartbeats:
  nightly-backup:
    expect_every: 10m
    grace: 2m
    severity: P1
    policy: beat
    title: Nightly backup stopped pinging
"""
WATCHDOG = """\
  - name: watchdog
    match: 'alertname="Watchdog"'
    heartbeat: nightly-backup
"""


async def beat_app(make_team_app: MakeTeamApp, rules: str = "") -> App:
    return await make_team_app(policies=POLICIES, extra=HEARTBEATS, rules=rules)


async def ping(app: App, method: str = "POST", headers: dict[str, str] | None = None) -> int:
    r = await app.client.request(method, PING, headers=AM if headers is None else headers)
    return r.status


async def listed(app: App) -> dict[str, Any]:
    status, body = await app.api("GET", "/api/v1/heartbeats", headers=READ)
    assert status == 200, body
    [one] = body["heartbeats"]
    return dict(one)


async def metrics(app: App) -> str:
    r = await app.client.get("/metrics")
    return await r.text()


def sent_pages(inc: dict[str, Any], app: App) -> list[tuple[float, int, str]]:
    return [(t, tier, person) for t, tier, person, _ in app.pages(inc)]


async def test_a_never_pinged_heartbeat_is_unknown_until_one_window_then_pages(
    make_team_app: MakeTeamApp,
) -> None:
    app = await beat_app(make_team_app)
    shown = await listed(app)
    assert shown == {
        "name": "nightly-backup",
        "state": "unknown",
        "last_ping": None,
        "due_at": (T0 + 12 * M).isoformat(),
        "expired_at": None,
        "expect_every_seconds": 600.0,
        "grace_seconds": 120.0,
        "severity": "P1",
        "policy": "beat",
        "team": None,
        "title": "Nightly backup stopped pinging",
    }
    await app.run_until(T0 + 12 * M - timedelta(seconds=1))
    assert await app.incidents() == []
    assert (await listed(app))["state"] == "unknown"

    await app.run_until(T0 + 12 * M)
    [inc] = await app.incidents()
    assert inc["title"] == "Nightly backup stopped pinging"
    full = await app.incident(inc["id"])
    assert sent_pages(full, app) == [(12 * 60.0, 0, "alice")]
    assert (await listed(app))["state"] == "expired"
    text = await metrics(app)
    assert metric_value(text, "tocsin_heartbeat_expired", {"name": "nightly-backup"}) == 1
    assert (
        metric_value(
            text, "tocsin_heartbeat_last_ping_timestamp_seconds", {"name": "nightly-backup"}
        )
        == 0
    )

    opened = [(e["actor"], e["source"]) for e in full["timeline"] if e["kind"] == "open"]
    assert opened == [("tocsin", "heartbeat")]

    await app.run_until(T0 + 22 * M)  # the policy escalates as for any incident
    full = await app.incident(inc["id"])
    assert sent_pages(full, app) == [(12 * 60.0, 0, "alice"), (22 * 60.0, 1, "carol")]


async def test_pings_keep_it_ok_and_a_ping_after_expiry_resolves_the_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await beat_app(make_team_app)
    for minute in (5, 15, 25):
        await app.run_until(T0 + minute * M)
        assert await ping(app, "GET" if minute == 15 else "POST") == 200
    shown = await listed(app)
    assert (shown["state"], shown["last_ping"]) == ("ok", (T0 + 25 * M).isoformat())
    text = await metrics(app)
    assert (
        metric_value(
            text, "tocsin_heartbeat_last_ping_timestamp_seconds", {"name": "nightly-backup"}
        )
        == (T0 + 25 * M).timestamp()
    )
    assert metric_value(text, "tocsin_heartbeat_expired", {"name": "nightly-backup"}) == 0
    await app.run_until(T0 + 37 * M - timedelta(seconds=1))
    assert await app.incidents() == []

    await app.run_until(T0 + 37 * M)  # 25 + 10 + 2
    [inc] = await app.incidents()
    assert inc["status"] == "triggered"

    await app.run_until(T0 + 40 * M)
    assert await ping(app) == 200
    await app.tick()
    [inc] = await app.incidents()
    assert inc["status"] == "resolved"
    assert (await listed(app))["state"] == "ok"
    full = await app.incident(inc["id"])
    assert sent_pages(full, app) == [(37 * 60.0, 0, "alice")]  # the lead's step was cancelled

    # Silent again: a new expiry opens (or reopens) the incident and pages again, once.
    await app.run_until(T0 + 52 * M)
    incs = await app.incidents()
    assert incs[0]["status"] == "triggered"


async def test_a_ping_needs_the_receivers_credentials_and_a_configured_name(
    make_team_app: MakeTeamApp,
) -> None:
    app = await beat_app(make_team_app)
    assert await ping(app, headers={}) == 401
    assert await ping(app, headers=WRITE) == 401  # an API token is not the receiver's
    r = await app.client.post("/api/v1/heartbeats/nope/ping", headers=AM)
    assert r.status == 404
    r = await app.client.get("/api/v1/heartbeats")
    assert r.status == 401
    assert (await listed(app))["state"] == "unknown"


async def test_the_watchdog_alert_pings_its_heartbeat_instead_of_opening_an_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await beat_app(make_team_app, rules=WATCHDOG)
    watchdog = notification([alert("Watchdog", severity="none")])
    for minute in (0, 8, 16):
        await app.run_until(T0 + minute * M)
        reply = await app.post(watchdog)
        assert (reply["incidents"], reply["heartbeats"]) == ([], ["nightly-backup"])
    shown = await listed(app)
    assert (shown["state"], shown["last_ping"]) == ("ok", (T0 + 16 * M).isoformat())

    await app.run_until(T0 + 28 * M)  # Alertmanager went quiet: 16 + 12
    [inc] = await app.incidents()
    assert inc["title"] == "Nightly backup stopped pinging"
    await app.post(watchdog)  # it is back
    [inc] = await app.incidents()
    assert inc["status"] == "resolved"


async def test_a_heartbeat_removed_by_a_reload_is_retired_and_never_fires(
    make_team_app: MakeTeamApp,
) -> None:
    app = await beat_app(make_team_app)
    assert await app.rt.store.next_due() == T0 + 12 * M
    cfg = yaml.safe_load(app.path.read_text())
    del cfg["heartbeats"]
    app.path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = await app.client.post("/-/reload", headers=WRITE)
    assert r.status == 200, await r.text()
    # Nothing is left due: the engine does not wake for a heartbeat it would not fire.
    assert await app.rt.store.next_due() is None
    [row] = await app.rt.store.heartbeats()
    assert (row.id, row.state) == ("nightly-backup", "retired")
    await app.run_until(T0 + 30 * M)
    assert await app.incidents() == []
    status, body = await app.api("GET", "/api/v1/heartbeats", headers=READ)
    assert (status, body) == (200, {"heartbeats": []})


async def test_a_ping_while_the_store_is_down_is_503_so_the_pinger_retries(
    make_team_app: MakeTeamApp,
) -> None:
    """A 5xx is what cron's ``curl --retry`` and Alertmanager retry; a 4xx would be dropped."""
    app = await beat_app(make_team_app)
    await app.rt.store.close()  # every store call now fails as a store failure
    for method in ("POST", "GET"):
        r = await app.client.request(method, PING, headers=AM)
        assert r.status == 503
        assert await r.json() == {
            "error": "store unavailable",
            "detail": "the ping was not stored; retry",
            "path": "",
        }
