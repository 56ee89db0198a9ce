"""The on-call API: who is on call now and next, and schedule overrides made at run time.

The team (tests/driver/team.py): alice and bob rotate weekly on ``primary`` (London) from Monday
2026-01-05 09:00; at T0 (Tuesday 10:00 UTC) alice is on call, bob takes over Monday 2026-01-12
09:00 London (09:00 UTC). The whole app runs in-process on a virtual clock; every answer is
read over HTTP.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.driver.app import READ, WRITE, App, start_app
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp, team_config

pytestmark = pytest.mark.usefixtures("strict_logs")

H = timedelta(hours=1)
OVERRIDES = "/api/v1/schedules/primary/overrides"


def iso(t: Any) -> str:
    return str(t.isoformat().replace("+00:00", "Z"))


async def oncall(app: App) -> dict[str, Any]:
    status, body = await app.api("GET", "/api/v1/oncall", headers=READ)
    assert status == 200, body
    return dict(body)


def primary(view: dict[str, Any]) -> dict[str, Any]:
    [s] = [s for s in view["schedules"] if s["schedule"] == "primary"]
    return dict(s)


def role(view: dict[str, Any], name: str) -> dict[str, Any]:
    [r] = [r for r in view["roles"] if r["role"] == name]
    return dict(r)


async def test_oncall_now_and_next_with_handoffs_in_utc_and_the_schedules_zone(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    view = await oncall(app)
    p = primary(view)
    assert p["timezone"] == "Europe/London"
    assert [(s["person"], s["start"], s["end"]) for s in p["now"]] == [
        ("alice", "2026-01-05T09:00:00+00:00", "2026-01-12T09:00:00+00:00")
    ]
    assert p["next"]["person"] == "bob"
    assert p["next"]["start"] == "2026-01-12T09:00:00+00:00"
    assert p["next"]["start_local"] == "2026-01-12T09:00:00+00:00"  # London is on GMT in January
    assert role(view, "oncall") == {
        "role": "oncall",
        "now": ["alice"],
        "next_at": "2026-01-12T09:00:00+00:00",
        "next": ["bob"],
    }
    assert role(view, "lead")["now"] == ["carol"]
    assert role(view, "lead")["next_at"] is None


async def test_an_override_changes_who_is_on_call_and_who_the_engine_pages(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    status, made = await app.api(
        "POST", OVERRIDES, json={"person": "carol", "end": iso(T0 + 8 * H), "actor": "alice"}
    )
    assert status == 201, made
    assert (made["person"], made["start"], made["end"]) == (
        "carol",
        T0.isoformat(),
        (T0 + 8 * H).isoformat(),
    )
    # Audited: who made it (the token's name) and on whose behalf.
    assert (made["created_by"], made["on_behalf_of"]) == ("writer", "alice")

    p = primary(await oncall(app))
    assert [(s["person"], s["end"]) for s in p["now"]] == [("carol", (T0 + 8 * H).isoformat())]
    assert (p["next"]["person"], p["next"]["start"]) == ("alice", (T0 + 8 * H).isoformat())

    # The engine resolves schedule:primary through the stored override.
    reply = await app.post(notification([alert(severity="critical")]))
    inc_id = reply["incidents"][0]["incident"]
    await app.run_until(T0 + timedelta(minutes=1))
    inc = await app.incident(inc_id)
    assert [(tier, person) for _, tier, person, _ in app.pages(inc)] == [(0, "carol")]

    status, listed = await app.api("GET", OVERRIDES, headers=READ)
    assert status == 200
    assert [o["id"] for o in listed["overrides"]] == [made["id"]]


async def test_removing_an_override_restores_the_rotation_and_keeps_the_audit_trail(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    _, made = await app.api("POST", OVERRIDES, json={"person": "bob", "end": iso(T0 + 2 * H)})
    assert [s["person"] for s in primary(await oncall(app))["now"]] == ["bob"]

    status, gone = await app.api("DELETE", f"{OVERRIDES}/{made['id']}", json={"actor": "carol"})
    assert status == 200, gone
    assert (gone["removed_at"], gone["removed_by"], gone["removed_on_behalf_of"]) == (
        T0.isoformat(),
        "writer",
        "carol",
    )
    assert [s["person"] for s in primary(await oncall(app))["now"]] == ["alice"]
    _, listed = await app.api("GET", OVERRIDES, headers=READ)
    assert listed["overrides"] == []
    status, again = await app.api("DELETE", f"{OVERRIDES}/{made['id']}")
    assert (status, again["path"]) == (404, "id")


async def test_replaces_covers_only_that_persons_shift(make_team_app: MakeTeamApp) -> None:
    # carol covers alice until Monday noon; alice's shift ends Monday 09:00, bob's then starts.
    app = await make_team_app()
    monday_noon = T0 + timedelta(days=6, hours=2)
    status, made = await app.api(
        "POST",
        OVERRIDES,
        json={"person": "carol", "end": iso(monday_noon), "replaces": "alice"},
    )
    assert status == 201, made
    p = primary(await oncall(app))
    assert [(s["person"], s["end"]) for s in p["now"]] == [("carol", "2026-01-12T09:00:00+00:00")]
    assert p["next"]["person"] == "bob"


@pytest.mark.parametrize(
    ("end", "detail"),
    [
        ("2026-01-06T12:00:00", "an instant needs a UTC offset"),
        ("tomorrow", "expected an ISO 8601 instant with a UTC offset"),
    ],
)
async def test_an_instant_without_an_offset_is_refused_saying_what_to_send(
    make_team_app: MakeTeamApp, end: str, detail: str
) -> None:
    app = await make_team_app()
    code, reply = await app.api("POST", OVERRIDES, json={"person": "carol", "end": end})
    assert (code, reply["path"]) == (400, "end")
    assert reply["detail"] == f"{detail}, e.g. 2026-03-02T18:00:00+01:00 or 2026-03-02T17:00:00Z"


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"end": "2026-01-06T12:00:00Z"}, 400, "person"),
        ({"person": "carol"}, 400, "end"),
        ({"person": "carol", "end": "2026-01-06T12:00:00"}, 400, "end"),  # no offset
        ({"person": "carol", "end": "tomorrow"}, 400, "end"),
        ({"person": "zoe", "end": "2026-01-06T12:00:00Z"}, 400, "person"),
        ({"person": "carol", "end": "2026-01-06T12:00:00Z", "replaces": "zoe"}, 400, "replaces"),
        ({"person": "carol", "end": "2026-01-06T09:00:00Z"}, 400, "end"),  # already ended
        (
            {"person": "carol", "start": "2026-01-06T12:00:00Z", "end": "2026-01-06T11:00:00Z"},
            400,
            "end",
        ),
        ({"person": "carol", "end": "2026-06-06T12:00:00Z"}, 400, "end"),  # longer than 90 days
        ({"person": "carol", "end": "2026-01-06T12:00:00Z", "colour": "red"}, 400, "colour"),
    ],
)
async def test_bad_overrides_are_refused_with_the_fields_path(
    make_team_app: MakeTeamApp, body: dict[str, Any], status: int, path: str
) -> None:
    app = await make_team_app()
    code, reply = await app.api("POST", OVERRIDES, json=body)
    assert (code, reply["path"]) == (status, path), reply
    _, listed = await app.api("GET", OVERRIDES, headers=READ)
    assert listed["overrides"] == []


async def test_overlapping_overrides_conflict_and_adjacent_ones_do_not(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    _, first = await app.api("POST", OVERRIDES, json={"person": "carol", "end": iso(T0 + 4 * H)})
    code, reply = await app.api(
        "POST",
        OVERRIDES,
        json={"person": "bob", "start": iso(T0 + 3 * H), "end": iso(T0 + 6 * H)},
    )
    assert code == 409, reply
    assert first["id"] in reply["detail"]
    code, _ = await app.api(
        "POST",
        OVERRIDES,
        json={"person": "bob", "start": iso(T0 + 4 * H), "end": iso(T0 + 6 * H)},
    )
    assert code == 201


async def test_unknown_schedule_is_404_and_scopes_are_enforced(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    body = {"person": "carol", "end": iso(T0 + H)}
    code, reply = await app.api("POST", "/api/v1/schedules/nope/overrides", json=body)
    assert (code, reply["path"]) == (404, "name")
    code, _ = await app.api("GET", "/api/v1/schedules/nope/overrides", headers=READ)
    assert code == 404
    code, _ = await app.api("POST", OVERRIDES, json=body, headers=READ)
    assert code == 403
    code, _ = await app.api("GET", "/api/v1/oncall", headers={"Accept": "application/json"})
    assert code == 401
    code, _ = await app.api("DELETE", f"{OVERRIDES}/ovr-x", headers=READ)
    assert code == 403


async def test_overrides_survive_a_restart(make_team_app: MakeTeamApp, tmp_path: Any) -> None:
    app = await make_team_app()
    _, made = await app.api("POST", OVERRIDES, json={"person": "dave", "end": iso(T0 + 5 * H)})
    await app.client.close()
    await app.rt.stop()

    again = await start_app(team_config(tmp_path), start=T0 + H)
    try:
        p = primary(await oncall(again))
        assert [s["person"] for s in p["now"]] == ["dave"]
        _, listed = await again.api("GET", OVERRIDES, headers=WRITE)
        assert [o["id"] for o in listed["overrides"]] == [made["id"]]
    finally:
        await again.client.close()
        await again.rt.stop()
