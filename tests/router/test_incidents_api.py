"""The incident API: list (filters), show, act (ack, mitigate, resolve, escalate, notes), errors.

The whole app runs in-process on a virtual clock (tests/driver); every
answer is read over HTTP exactly as the CLI and dashboards read it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from tests.driver.app import AM, READ, WRITE, App
from tests.driver.logs import error_lines
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp, team_config

pytestmark = pytest.mark.usefixtures("strict_logs")

M = timedelta(minutes=1)

TEAM_RULES = """\
  - name: db-team
    match: 'service="db"'
    team: db
  - name: web-team
    match: 'service="web"'
    team: web
"""

TEAMS = """\
teams:
  db: {members: [alice, carol]}
  web: {members: [bob]}
"""


def secs(t: str | None) -> float | None:
    return None if t is None else (datetime.fromisoformat(t) - T0).total_seconds()


async def open_incident(
    app: App, name: str, severity: str, service: str = "db", at: timedelta = timedelta(0)
) -> str:
    """Open one incident (its own group) at T0 + ``at``; return its id."""
    await app.run_until(T0 + at)
    a = alert(name, severity=severity, starts=T0 + at, labels={"service": service})
    reply = await app.post(notification([a], group_key=f'{{}}:{{alertname="{name}"}}'))
    assert [i["action"] for i in reply["incidents"]] == ["opened"], reply
    return str(reply["incidents"][0]["incident"])


@pytest.fixture
async def fleet(make_team_app: MakeTeamApp) -> tuple[App, dict[str, str]]:
    """Four incidents: P0 db triggered, P1 web acknowledged, P2 db mitigated, P1 db resolved."""
    app = await make_team_app(rules=TEAM_RULES, extra=TEAMS)
    ids = {
        "outage": await open_incident(app, "Outage", "critical", "db"),
        "slow": await open_incident(app, "Slow", "high", "web", 1 * M),
        "disk": await open_incident(app, "Disk", "warning", "db", 2 * M),
        "gone": await open_incident(app, "Gone", "major", "db", 3 * M),
    }
    await app.run_until(T0 + 4 * M)
    await app.act(ids["slow"], "ack")
    await app.act(ids["disk"], "mitigate")
    await app.act(ids["gone"], "resolve")
    return app, ids


async def listed(app: App, query: str) -> list[str]:
    return [i["title"].split(":")[0] for i in await app.incidents(query)]


# -- list ---------------------------------------------------------------------------------------


async def test_list_is_newest_first_with_summaries(fleet: tuple[App, dict[str, str]]) -> None:
    app, ids = fleet
    incidents = await app.incidents()
    assert [i["id"] for i in incidents] == [ids["gone"], ids["disk"], ids["slow"], ids["outage"]]
    outage = incidents[-1]
    assert outage == {
        "id": ids["outage"],
        "number": outage["number"],
        "key": 'web.hook/{}:{alertname="Outage"}',
        "status": "triggered",
        "severity": "P0",
        "severity_name": "SEV-1",
        "title": "Outage: Outage on db-1",
        "team": "db",
        "policy": "matrix:default:P0",
        "opened_at": T0.isoformat(),
        "acknowledged_at": None,
        "mitigated_at": None,
        "resolved_at": None,
        "updated_at": T0.isoformat(),
    }
    assert sorted(i["number"] for i in incidents) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("status=open", ["Disk", "Slow", "Outage"]),
        ("status=triggered", ["Outage"]),
        ("status=acknowledged,mitigated", ["Disk", "Slow"]),
        ("status=resolved", ["Gone"]),
        ("status=open,resolved", ["Gone", "Disk", "Slow", "Outage"]),
        ("severity=P1", ["Gone", "Slow"]),
        ("severity=SEV-1", ["Outage"]),  # the matrix's name
        ("severity=critical", ["Outage"]),  # an alias
        ("severity=sev 3,p0", ["Disk", "Outage"]),
        ("team=db", ["Gone", "Disk", "Outage"]),
        ("team=web", ["Slow"]),
        ("team=nobody", []),
        ("status=open&severity=P1&team=web", ["Slow"]),
        ("status=open&team=db", ["Disk", "Outage"]),
        ("limit=2", ["Gone", "Disk"]),
        ("status=open&limit=1", ["Disk"]),
    ],
)
async def test_list_filters(
    fleet: tuple[App, dict[str, str]], query: str, titles: list[str]
) -> None:
    app, _ = fleet
    assert await listed(app, query) == titles


@pytest.mark.parametrize(
    ("query", "path", "detail"),
    [
        (
            "status=closed",
            "status",
            "unknown status 'closed'; expected triggered, acknowledged, mitigated, resolved or open",
        ),
        (
            "status=open,bogus",
            "status",
            "unknown status 'bogus'; expected triggered, acknowledged, mitigated, resolved or open",
        ),
        ("severity=SEV-9", "severity", "unknown severity 'SEV-9'"),
        ("limit=ten", "limit", "limit must be a whole number, got 'ten'"),
        ("limit=0", "limit", "limit must be between 1 and 1000"),
        ("limit=1001", "limit", "limit must be between 1 and 1000"),
    ],
)
async def test_list_rejects_bad_filters(
    make_team_app: MakeTeamApp, query: str, path: str, detail: str
) -> None:
    app = await make_team_app()
    status, body = await app.api("GET", f"/api/v1/incidents?{query}", headers=READ)
    assert status == 400
    assert body == {"error": "bad query", "detail": detail, "path": path}


# -- show ---------------------------------------------------------------------------------------


async def test_show_has_alerts_snapshot_pending_steps_and_timeline(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a = alert(instance="db-1")
    reply = await app.post(notification([a]))
    inc_id = reply["incidents"][0]["incident"]
    await app.run_until(T0 + 6 * M)
    inc = await app.incident(inc_id)
    assert (inc["id"], inc["status"], inc["severity"], inc["rule"]) == (
        inc_id,
        "triggered",
        "P0",
        "trust-severity-label",
    )
    assert (inc["receiver"], inc["group_key"]) == ("web.hook", '{}:{alertname="DiskFull"}')
    assert inc["alerts"] == [
        {
            "fingerprint": a["fingerprint"],
            "status": "firing",
            "starts_at": T0.isoformat(),
            "ends_at": None,
            "labels": a["labels"],
            "annotations": {"summary": "DiskFull on db-1"},
            "generator_url": "http://prometheus:9090/graph?g0.expr=DiskFull",
            "severity": "P0",
            "rule": "trust-severity-label",
        }
    ]
    snap = inc["policy_snapshot"]
    assert (snap["name"], snap["auto_resolve"], snap["repeat"]) == ("matrix:default:P0", True, None)
    assert [(s["name"], s["after"], s["notify"], s["unless"]) for s in snap["steps"]] == [
        ("on-call", "0s", ["role:oncall"], "acknowledged"),
        ("team lead", "5m", ["role:lead"], "acknowledged"),
        ("manager", "15m", ["role:manager"], "acknowledged"),
        ("VP", "30m", ["role:vp"], "acknowledged"),
    ]
    assert [
        (s["kind"], s["tier"], s["round"], secs(s["due_at"]), s["unless"])
        for s in inc["pending_steps"]
    ] == [
        ("page", 2, 0, 900.0, "acknowledged"),
        ("page", 3, 0, 1800.0, "acknowledged"),
        ("reminder", 0, 1, 1800.0, "resolved"),
    ]
    assert [(n["tier"], n["person"], n["state"]) for n in inc["notifications"]] == [
        (0, "alice", "sent"),
        (1, "carol", "sent"),
    ]
    assert [(secs(e["at"]), e["kind"]) for e in inc["timeline"]] == [
        (0.0, "open"),
        (0.0, "alert"),
        (0.0, "notify"),
        (0.0, "delivery"),
        (300.0, "notify"),
        (300.0, "delivery"),
    ]
    assert inc["level"]["ack_target"] == 300.0


async def test_show_by_number_and_by_key(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    reply = await app.post(notification([alert()]))
    inc_id = reply["incidents"][0]["incident"]
    by_id = await app.incident(inc_id)
    assert by_id["number"] == 1
    assert (await app.incident("1"))["id"] == inc_id
    assert (await app.incident(quote("#1", safe="")))["id"] == inc_id
    assert (await app.incident(quote(by_id["key"], safe="")))["id"] == inc_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/incidents/nope"),
        ("GET", "/api/v1/incidents/42"),
        ("POST", "/api/v1/incidents/nope/ack"),
        ("POST", "/api/v1/incidents/nope/resolve"),
        ("POST", "/api/v1/incidents/nope/notes"),
    ],
)
async def test_unknown_incident_is_404_json(
    make_team_app: MakeTeamApp, method: str, path: str
) -> None:
    app = await make_team_app()
    body = {"note": "x"} if path.endswith("notes") else None
    status, reply = await app.api(method, path, json=body)
    assert status == 404
    ref = path.split("/")[4]
    assert reply == {"error": "not found", "detail": f"no incident {ref!r}", "path": "id"}


# -- actions ------------------------------------------------------------------------------------


async def test_actions_move_the_status_and_write_the_timeline(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    await app.run_until(T0 + 1 * M)
    inc = await app.act(inc_id, "notes", note="disk at 99%", actor="alice")
    assert inc["status"] == "triggered"
    await app.run_until(T0 + 2 * M)
    inc = await app.act(inc_id, "ack", actor="alice")
    assert (inc["status"], secs(inc["acknowledged_at"])) == ("acknowledged", 120.0)
    assert [s["kind"] for s in inc["pending_steps"]] == ["reminder"]
    await app.run_until(T0 + 3 * M)
    inc = await app.act(inc_id, "mitigate")  # actor defaults to the token's name
    assert (inc["status"], secs(inc["mitigated_at"])) == ("mitigated", 180.0)
    await app.run_until(T0 + 4 * M)
    inc = await app.act(inc_id, "resolve", actor="alice", note="freed 20G")
    assert (inc["status"], secs(inc["resolved_at"])) == ("resolved", 240.0)
    assert inc["pending_steps"] == []
    assert [
        (secs(e["at"]), e["kind"], e["actor"], e["source"], e["message"])
        for e in inc["timeline"]
        if e["kind"] in ("note", "ack", "mitigate", "resolve")
    ] == [
        (60.0, "note", "writer", "api", "disk at 99%"),
        (120.0, "ack", "writer", "api", "acknowledged by writer on behalf of alice"),
        (180.0, "mitigate", "writer", "api", "mitigated by writer"),
        (240.0, "resolve", "writer", "api", "resolved by writer on behalf of alice: freed 20G"),
    ]
    assert [e["data"].get("on_behalf_of") for e in inc["timeline"] if e["source"] == "api"] == [
        "alice",
        "alice",
        None,
        "alice",
    ]
    # Notes are allowed on a resolved incident (the review adds them).
    inc = await app.act(inc_id, "notes", note="root cause: log rotation off")
    assert inc["timeline"][-1]["message"] == "root cause: log rotation off"


async def test_escalate_moves_the_next_pending_tier_to_now(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    await app.run_until(T0 + 1 * M)
    inc = await app.act(inc_id, "escalate", actor="alice")
    due = [(s["kind"], s["tier"], secs(s["due_at"])) for s in inc["pending_steps"]]
    assert due == [
        ("page", 1, 60.0),
        ("page", 2, 900.0),
        ("page", 3, 1800.0),
        ("reminder", 0, 1800.0),
    ]
    await app.run_until(T0 + 1 * M)
    inc = await app.incident(inc_id)
    assert [(secs(n["created_at"]), n["tier"], n["person"]) for n in inc["notifications"]] == [
        (0.0, 0, "alice"),
        (60.0, 1, "carol"),
    ]
    assert [e["message"] for e in inc["timeline"] if e["kind"] == "escalate"] == [
        "escalated to tier 1 now by writer on behalf of alice"
    ]
    # Again and again until no tier is left.
    await app.act(inc_id, "escalate")
    await app.act(inc_id, "escalate")
    await app.run_until(T0 + 1 * M)
    status, reply = await app.api("POST", f"/api/v1/incidents/{inc_id}/escalate")
    assert status == 409
    assert reply == {
        "error": "conflict",
        "detail": f"incident {inc_id} has no further tier to escalate to",
        "path": "status",
    }
    inc = await app.incident(inc_id)
    assert [(secs(n["created_at"]), n["person"]) for n in inc["notifications"]] == [
        (0.0, "alice"),
        (60.0, "carol"),
        (60.0, "dave"),
        (60.0, "erin"),
    ]


@pytest.mark.parametrize("settle", ["ack", "mitigate"])
async def test_escalate_after_an_ack_pages_the_next_tier(
    make_team_app: MakeTeamApp, settle: str
) -> None:
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    await app.run_until(T0 + 1 * M)  # tier 0 (alice) paged
    await app.act(inc_id, settle, actor="alice")  # cancels the tiers not yet fired
    await app.run_until(T0 + 2 * M)
    inc = await app.act(inc_id, "escalate", actor="alice", note="need the lead")
    assert inc["status"] == "triggered"
    await app.run_until(T0 + 2 * M)
    inc = await app.incident(inc_id)
    assert [(secs(n["created_at"]), n["tier"], n["person"]) for n in inc["notifications"]] == [
        (0.0, 0, "alice"),
        (120.0, 1, "carol"),
    ]
    assert [e["message"] for e in inc["timeline"] if e["kind"] == "escalate"] == [
        "escalated to tier 1 now by writer on behalf of alice: need the lead"
    ]
    # Each escalation goes one tier further, then there is none left.
    for _ in range(2):
        await app.act(inc_id, "escalate")
        await app.run_until(T0 + 2 * M)
    status, reply = await app.api("POST", f"/api/v1/incidents/{inc_id}/escalate")
    assert (status, reply["detail"]) == (
        409,
        f"incident {inc_id} has no further tier to escalate to",
    )
    inc = await app.incident(inc_id)
    assert [n["person"] for n in inc["notifications"]] == ["alice", "carol", "dave", "erin"]


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        (["resolve"], "ack"),
        (["resolve"], "mitigate"),
        (["resolve"], "resolve"),
        (["resolve"], "escalate"),
        (["ack"], "ack"),
        (["mitigate"], "ack"),
        (["mitigate"], "mitigate"),
    ],
)
async def test_illegal_transitions_are_409(
    make_team_app: MakeTeamApp, setup: list[str], action: str
) -> None:
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    for step in setup:
        await app.act(inc_id, step)
    before = await app.incident(inc_id)
    status, reply = await app.api("POST", f"/api/v1/incidents/{inc_id}/{action}")
    assert status == 409
    assert reply["error"] == "conflict"
    assert reply["path"] == "status"
    assert reply["detail"] == (
        f"cannot {action} incident {inc_id}: it is {before['status']}"
        if action != "escalate"
        else f"cannot escalate incident {inc_id}: it is resolved"
    )
    assert await app.incident(inc_id) == before


@pytest.mark.parametrize(
    ("path", "body", "status", "expected"),
    [
        ("notes", {"note": "  "}, 400, ("invalid payload", "note")),
        ("notes", {}, 400, ("invalid payload", "note")),
        ("ack", {"note": 5}, 400, ("invalid payload", "note")),
        ("ack", {"actor": ""}, 400, ("invalid payload", "actor")),
        ("ack", ["not", "an", "object"], 400, ("invalid payload", "")),
        ("reopen", {}, 404, ("not found", "action")),
        ("delete", {}, 404, ("not found", "action")),
    ],
)
async def test_bad_action_requests(
    make_team_app: MakeTeamApp, path: str, body: Any, status: int, expected: tuple[str, str]
) -> None:
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    code, reply = await app.api("POST", f"/api/v1/incidents/{inc_id}/{path}", json=body)
    assert code == status
    assert (reply["error"], reply["path"]) == expected
    assert (await app.incident(inc_id))["status"] == "triggered"


async def test_invalid_json_body_is_400(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    code, reply = await app.api("POST", f"/api/v1/incidents/{inc_id}/ack", data=b"{nope")
    assert (code, reply["error"]) == (400, "invalid JSON")


# -- tokens -------------------------------------------------------------------------------------


async def test_read_token_reads_but_cannot_write(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    assert (await app.api("GET", "/api/v1/incidents", headers=READ))[0] == 200
    assert (await app.api("GET", f"/api/v1/incidents/{inc_id}", headers=READ))[0] == 200
    for action in ("ack", "mitigate", "resolve", "escalate", "notes"):
        status, reply = await app.api(
            "POST", f"/api/v1/incidents/{inc_id}/{action}", headers=READ, json={"note": "x"}
        )
        assert status == 403
        assert reply == {
            "error": "forbidden",
            "detail": "token 'reader' has scope read; write is needed",
            "path": "",
        }
    status, _ = await app.api("POST", "/-/reload", headers=READ)
    assert status == 403
    assert (await app.incident(inc_id))["status"] == "triggered"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "an API bearer token is required"),
        ({"Authorization": "Bearer wrong"}, "invalid API token"),
        ({"Authorization": "Basic YWxpY2U6eA=="}, "an API bearer token is required"),
        ({"Authorization": AM["Authorization"]}, "invalid API token"),  # the receiver's token
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/incidents"),
        ("GET", "/api/v1/incidents/1"),
        ("POST", "/api/v1/incidents/1/ack"),
        ("POST", "/-/reload"),
    ],
)
async def test_missing_or_bad_token_is_401(
    make_team_app: MakeTeamApp, headers: dict[str, str], detail: str, method: str, path: str
) -> None:
    app = await make_team_app()
    await app.post(notification([alert()]))
    r = await app.client.request(method, path, headers=headers)
    assert r.status == 401
    assert await r.json() == {"error": "unauthorized", "detail": detail, "path": ""}
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="tocsin-api"')
    assert (await app.incident("1"))["status"] == "triggered"


# -- reload -------------------------------------------------------------------------------------

FAST_P0 = """\
  levels:
    P0:
      tiers:
        - {name: manager first, after: 0, notify: [role:manager]}
        - {name: vp, after: 2m, notify: [role:vp]}
"""


async def test_reload_does_not_change_an_open_incident_snapshot(
    make_team_app: MakeTeamApp, tmp_path: Any
) -> None:
    app = await make_team_app()
    old_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    await app.run_until(T0 + 1 * M)
    before = await app.incident(old_id)

    team_config(tmp_path, matrix=FAST_P0)
    status, reply = await app.api("POST", "/-/reload", headers=WRITE)
    assert (status, reply) == (200, {"status": "reloaded"})

    after = await app.incident(old_id)
    assert after["policy_snapshot"] == before["policy_snapshot"]
    assert after["pending_steps"] == before["pending_steps"]
    # A new incident follows the new configuration.
    new = notification([alert("Outage")], group_key='{}:{alertname="Outage"}')
    new_id = (await app.post(new))["incidents"][0]["incident"]
    await app.run_until(T0 + 40 * M)
    old, fresh = await app.incident(old_id), await app.incident(new_id)
    assert [s["name"] for s in old["policy_snapshot"]["steps"]] == [
        "on-call",
        "team lead",
        "manager",
        "VP",
    ]
    assert [
        (secs(n["created_at"]), n["person"]) for n in old["notifications"] if n["kind"] == "page"
    ] == [
        (0.0, "alice"),
        (300.0, "carol"),
        (900.0, "dave"),
        (1800.0, "erin"),
    ]
    assert [s["name"] for s in fresh["policy_snapshot"]["steps"]] == ["manager first", "vp"]
    assert [
        (secs(n["created_at"]), n["person"]) for n in fresh["notifications"] if n["kind"] == "page"
    ] == [(60.0, "dave"), (180.0, "erin")]


async def test_bad_reload_keeps_the_running_config(
    make_team_app: MakeTeamApp, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_team_app()
    (tmp_path / "tocsin.yaml").write_text("auth: {receiver: {bearer_tokens: [x]}}\nbogus: 1\n")
    status, reply = await app.api("POST", "/-/reload", headers=WRITE)
    assert status == 400
    assert reply["error"] == "reload failed"
    assert [p["path"] for p in reply["problems"]] == ["bogus"]
    # The refusal is logged (as SIGHUP's is): expected here, so taken out of the strict check.
    assert error_lines(caplog, "call") == [
        "ERROR tocsin.runtime: reload failed; keeping the running config"
    ]
    caplog.clear()
    # Still running on the old config: the old API token works, the old policy applies.
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    assert (await app.incident(inc_id))["policy"] == "matrix:default:P0"


async def test_the_actor_is_the_authenticated_token_never_the_body(
    make_team_app: MakeTeamApp,
) -> None:
    """A body's `actor` cannot pose as someone else: it is recorded only as "on behalf of"."""
    app = await make_team_app()
    inc_id = (await app.post(notification([alert()])))["incidents"][0]["incident"]
    # Claiming to be the token itself adds nothing.
    await app.act(inc_id, "notes", note="mine", actor="writer")
    inc = await app.act(inc_id, "ack", actor="erin (VP)", note="stand down")
    api = [e for e in inc["timeline"] if e["source"] == "api"]
    assert [(e["kind"], e["actor"], e["message"], e["data"]) for e in api] == [
        ("note", "writer", "mine", {}),
        (
            "ack",
            "writer",
            "acknowledged by writer on behalf of erin (VP): stand down",
            {"on_behalf_of": "erin (VP)"},
        ),
    ]
