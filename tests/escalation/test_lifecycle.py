"""The incident lifecycle, driven through the whole app on a virtual clock.

Open → acknowledge → mitigate → resolve; auto-resolve (and a policy that turns it off); reopen
inside the monitoring window, a new incident after it; severity that only rises and switches
policy without paging anyone twice; what an ack cancels; quiet hours, maintenance windows,
business-hours steps, ack timeouts and status reminders. Every page is read back through the
API and compared in full, so an unexpected page fails the test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.driver.app import App
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp

pytestmark = pytest.mark.usefixtures("strict_logs")

M = timedelta(minutes=1)
H = timedelta(hours=1)

RULES = """\
  - name: batch-jobs
    match: 'team="batch"'
    policy: keep-open
  - name: storage
    match: 'team="storage"'
    policy: sticky
"""

POLICIES = """\
  keep-open:
    auto_resolve: false
    reminders: false
    steps:
      - {name: on-call, after: 0, notify: [role:oncall]}
      - {name: lead, after: 10m, notify: [role:lead]}
  sticky:
    ack_timeout: 10m
    reminders: false
    steps:
      - {name: on-call, after: 0, notify: [role:oncall]}
      - {name: lead, after: 30m, notify: [role:lead]}
"""


def secs(t: str | None) -> float | None:
    """An API timestamp as seconds after T0."""
    return None if t is None else (datetime.fromisoformat(t) - T0).total_seconds()


def sent(app: App, inc: dict[str, Any], kind: str = "page") -> list[tuple[float, int, str]]:
    """(seconds after T0 it was created, tier, person) of the rows of ``kind``, all sent."""
    rows = app.pages(inc, kind)
    assert all(state == "sent" for *_, state in rows), rows
    return [(t, tier, person) for t, tier, person, _ in rows]


def events(inc: dict[str, Any], *kinds: str) -> list[tuple[float | None, str, str, str]]:
    """(seconds after T0, kind, actor, source) of the timeline events of ``kinds``."""
    return [
        (secs(e["at"]), e["kind"], e["actor"], e["source"])
        for e in inc["timeline"]
        if e["kind"] in kinds
    ]


def pending(inc: dict[str, Any]) -> list[tuple[str, int, int, float | None]]:
    """(kind, tier, round, due seconds after T0) of the pending steps."""
    return [(s["kind"], s["tier"], s["round"], secs(s["due_at"])) for s in inc["pending_steps"]]


async def open_one(app: App, body: dict[str, Any]) -> str:
    reply = await app.post(body)
    assert [i["action"] for i in reply["incidents"]] == ["opened"], reply
    return str(reply["incidents"][0]["incident"])


# -- the status ladder ---------------------------------------------------------------------------


async def test_triggered_acknowledged_mitigated_resolved(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert(severity="high")]))  # P1 (SEV-2)
    await app.run_until(T0 + 3 * M)
    inc = await app.incident(inc_id)
    assert (inc["status"], inc["severity"], inc["severity_name"]) == ("triggered", "P1", "SEV-2")
    assert pending(inc) == [
        ("page", 1, 0, 900.0),
        ("page", 2, 0, 3600.0),
        ("reminder", 0, 1, 3600.0),
    ]

    inc = await app.act(inc_id, "ack", actor="alice", note="looking at it")
    assert (inc["status"], secs(inc["acknowledged_at"])) == ("acknowledged", 180.0)
    # The ack makes the tiers moot; the status-update reminder still runs while it is open.
    assert pending(inc) == [("reminder", 0, 1, 3600.0)]

    await app.run_until(T0 + 20 * M)
    inc = await app.act(inc_id, "mitigate", actor="alice")
    assert (inc["status"], secs(inc["mitigated_at"])) == ("mitigated", 1200.0)
    await app.run_until(T0 + 30 * M)
    inc = await app.act(inc_id, "resolve", actor="bob", note="disk cleaned")
    assert (inc["status"], secs(inc["resolved_at"])) == ("resolved", 1800.0)
    assert pending(inc) == []

    await app.run_until(T0 + 3 * H)
    inc = await app.incident(inc_id)
    assert sent(app, inc) == [(0.0, 0, "alice")]
    assert sent(app, inc, "resolve") == [(1800.0, 0, "alice")]
    assert sent(app, inc, "reminder") == []
    assert events(inc, "open", "alert", "notify", "ack", "mitigate", "resolve") == [
        (0.0, "open", "alertmanager", "alert"),
        (0.0, "alert", "alertmanager", "alert"),
        (0.0, "notify", "tocsin", "engine"),
        (180.0, "ack", "writer", "api"),
        (1200.0, "mitigate", "writer", "api"),
        (1800.0, "resolve", "writer", "api"),
    ]
    messages = {e["kind"]: e["message"] for e in inc["timeline"]}
    assert messages["ack"] == "acknowledged by writer on behalf of alice: looking at it"
    assert messages["resolve"] == "resolved by writer on behalf of bob: disk cleaned"
    # Every delivery is on the timeline too, attributed to the channel that carried it.
    assert events(inc, "delivery") == [
        (0.0, "delivery", "tocsin", "log"),
        (1800.0, "delivery", "tocsin", "log"),
    ]


async def test_resolves_when_every_alert_has_resolved(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    a, b = alert(instance="db-1"), alert(instance="db-2")
    inc_id = await open_one(app, notification([a, b]))
    await app.run_until(T0 + 6 * M)
    a_done = alert(instance="db-1", status="resolved", ends=T0 + 5 * M)
    reply = await app.post(notification([a_done, b]))
    assert [i["action"] for i in reply["incidents"]] == ["joined"]
    inc = await app.incident(inc_id)
    assert inc["status"] == "triggered"

    await app.run_until(T0 + 7 * M)
    b_done = alert(instance="db-2", status="resolved", ends=T0 + 7 * M)
    reply = await app.post(notification([a_done, b_done]))
    assert [(i["action"], i["status"]) for i in reply["incidents"]] == [("resolved", "resolved")]
    inc = await app.incident(inc_id)
    assert (inc["status"], secs(inc["resolved_at"])) == ("resolved", 420.0)
    assert pending(inc) == []  # tiers 2 and 3 and the reminder are cancelled

    await app.run_until(T0 + 2 * H)
    inc = await app.incident(inc_id)
    assert sent(app, inc) == [(0.0, 0, "alice"), (300.0, 1, "carol")]
    # Everyone who was paged hears it is over, once.
    assert sent(app, inc, "resolve") == [(420.0, 0, "alice"), (420.0, 1, "carol")]
    assert events(inc, "resolve") == [(420.0, "resolve", "alertmanager", "alert")]
    assert [e["message"] for e in inc["timeline"] if e["kind"] == "resolve"] == [
        "incident resolved: all alerts resolved"
    ]


async def test_policy_without_auto_resolve_stays_open(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(rules=RULES, policies=POLICIES)
    labels = {"team": "batch"}
    inc_id = await open_one(app, notification([alert(severity="high", labels=labels)]))
    await app.run_until(T0 + 2 * M)
    done = alert(severity="high", labels=labels, status="resolved", ends=T0 + 2 * M)
    reply = await app.post(notification([done]))
    assert [i["action"] for i in reply["incidents"]] == ["joined"]
    await app.run_until(T0 + 30 * M)
    inc = await app.incident(inc_id)
    assert (inc["status"], inc["policy"]) == ("triggered", "keep-open")
    assert [a["status"] for a in inc["alerts"]] == ["resolved"]
    # Nobody said it is over, so the escalation goes on until a person resolves it.
    assert sent(app, inc) == [(0.0, 0, "alice"), (600.0, 1, "carol")]
    inc = await app.act(inc_id, "resolve", actor="carol")
    assert inc["status"] == "resolved"


# -- reopen ----------------------------------------------------------------------------------------


async def test_refire_within_the_monitoring_window_reopens_the_same_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert()]))  # P0: monitoring window 30m
    await app.run_until(T0 + 2 * M)
    await app.post(notification([alert(status="resolved", ends=T0 + 2 * M)]))
    await app.run_until(T0 + 20 * M)
    again = alert(starts=T0 + 20 * M)  # the same alert, a new occurrence
    reply = await app.post(notification([again]))
    assert [(i["action"], i["incident"]) for i in reply["incidents"]] == [("reopened", inc_id)]
    inc = await app.incident(inc_id)
    assert (inc["status"], inc["resolved_at"]) == ("triggered", None)
    assert [(a["starts_at"], a["status"]) for a in inc["alerts"]] == [
        (T0.isoformat(), "resolved"),
        ((T0 + 20 * M).isoformat(), "firing"),
    ]
    assert events(inc, "reopen") == [(1200.0, "reopen", "alertmanager", "alert")]

    await app.run_until(T0 + 30 * M)
    inc = await app.incident(inc_id)
    # The ladder starts again from the reopen: the on-call hears it is back, then the lead.
    assert sent(app, inc) == [(0.0, 0, "alice"), (1200.0, 0, "alice"), (1500.0, 1, "carol")]
    assert len(await app.incidents("limit=1000")) == 1


async def test_refire_after_the_monitoring_window_opens_a_new_incident(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    first = await open_one(app, notification([alert()]))
    await app.run_until(T0 + 2 * M)
    await app.post(notification([alert(status="resolved", ends=T0 + 2 * M)]))
    await app.run_until(T0 + 33 * M)  # resolved at +2m, window 30m: closed at +32m
    second = await open_one(app, notification([alert(starts=T0 + 33 * M)]))
    assert second != first
    await app.run_until(T0 + 34 * M)
    old, new = await app.incident(first), await app.incident(second)
    assert old["status"] == "resolved"
    assert [a["starts_at"] for a in old["alerts"]] == [T0.isoformat()]
    assert (new["status"], new["key"]) == ("triggered", old["key"])
    assert [a["starts_at"] for a in new["alerts"]] == [(T0 + 33 * M).isoformat()]
    assert sent(app, new) == [(1980.0, 0, "alice")]
    assert [i["id"] for i in await app.incidents("status=open")] == [second]


# -- severity ------------------------------------------------------------------------------------


async def test_worse_alert_raises_severity_and_switches_policy_without_double_pages(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert(severity="warning", instance="db-1")]))
    await app.run_until(T0 + 10 * M)
    inc = await app.incident(inc_id)
    assert (inc["severity"], inc["policy"]) == ("P2", "matrix:default:P2")
    assert sent(app, inc) == [(0.0, 0, "alice")]

    worse = alert(severity="critical", instance="db-2", starts=T0 + 10 * M)
    reply = await app.post(notification([alert(severity="warning", instance="db-1"), worse]))
    assert [(i["action"], i["severity"]) for i in reply["incidents"]] == [("raised", "P0")]
    inc = await app.incident(inc_id)
    assert (inc["severity"], inc["severity_name"], inc["policy"]) == (
        "P0",
        "SEV-1",
        "matrix:default:P0",
    )
    assert inc["policy_snapshot"]["name"] == "matrix:default:P0"
    assert [e["message"] for e in inc["timeline"] if e["kind"] == "severity"] == [
        "severity raised P2 -> P0 (SEV-1) by DiskFull (rule trust-severity-label); "
        "policy matrix:default:P0"
    ]

    await app.run_until(T0 + 40 * M)
    inc = await app.incident(inc_id)
    # The P0 ladder counts from the incident's start: the lead's 5m tier is overdue and fires
    # now; the on-call was already paged and is not paged twice.
    assert sent(app, inc) == [
        (0.0, 0, "alice"),
        (600.0, 1, "carol"),
        (900.0, 2, "dave"),
        (1800.0, 3, "erin"),
    ]
    skips = [e["message"] for e in inc["timeline"] if e["kind"] == "skip"]
    assert skips == ["tier 0 (on-call): alice already paged via log"]


async def test_a_lower_severity_alert_never_lowers_the_incident(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert(severity="critical", instance="db-1")]))
    await app.run_until(T0 + 1 * M)
    milder = alert(severity="info", instance="db-2", starts=T0 + 1 * M)
    reply = await app.post(notification([alert(instance="db-1"), milder]))
    assert [(i["action"], i["severity"]) for i in reply["incidents"]] == [("joined", "P0")]
    # Even when the worse alert resolves and only the milder one still fires.
    await app.run_until(T0 + 2 * M)
    reply = await app.post(
        notification([alert(instance="db-1", status="resolved", ends=T0 + 2 * M), milder])
    )
    assert [(i["action"], i["severity"]) for i in reply["incidents"]] == [("joined", "P0")]
    await app.run_until(T0 + 40 * M)
    inc = await app.incident(inc_id)
    assert (inc["severity"], inc["policy"], inc["status"]) == (
        "P0",
        "matrix:default:P0",
        "triggered",
    )
    assert events(inc, "severity") == []
    assert [p for _, _, p in sent(app, inc)] == ["alice", "carol", "dave", "erin"]


async def test_new_alert_on_an_acknowledged_incident_pages_only_if_it_raises_severity(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert(severity="warning", instance="db-1")]))
    await app.run_until(T0 + 2 * M)
    await app.act(inc_id, "ack", actor="alice")

    # A second alert of the same severity joins: recorded, nobody paged.
    same = alert(severity="warning", instance="db-2", starts=T0 + 5 * M)
    await app.run_until(T0 + 5 * M)
    reply = await app.post(notification([alert(severity="warning", instance="db-1"), same]))
    assert [(i["action"], i["status"]) for i in reply["incidents"]] == [("joined", "acknowledged")]
    await app.run_until(T0 + 2 * H)
    inc = await app.incident(inc_id)
    assert inc["status"] == "acknowledged"
    assert sent(app, inc) == [(0.0, 0, "alice")]

    # A worse one raises the severity: the acknowledgement no longer covers it, paging restarts.
    worse = alert(severity="critical", instance="db-3", starts=T0 + 2 * H)
    group = [alert(severity="warning", instance="db-1"), same, worse]
    reply = await app.post(notification(group))
    assert [(i["action"], i["status"]) for i in reply["incidents"]] == [("raised", "triggered")]
    await app.run_until(T0 + 2 * H + 1 * M)
    inc = await app.incident(inc_id)
    assert inc["status"] == "triggered"
    # Tiers are due from the start, so the whole P0 ladder is overdue and fires at once.
    assert sent(app, inc) == [
        (0.0, 0, "alice"),
        (7200.0, 0, "alice"),
        (7200.0, 1, "carol"),
        (7200.0, 2, "dave"),
        (7200.0, 3, "erin"),
    ]
    assert events(inc, "severity") == [(7200.0, "severity", "alertmanager", "alert")]


# -- what an ack cancels --------------------------------------------------------------------------

QUIET_ALICE = """\
  alice: {name: Alice, channels: [log], quiet_hours: {timezone: UTC, hours: "08:00-12:00"}}
  bob: {name: Bob, channels: [log]}
  carol: {name: Carol, channels: [log]}
  dave: {name: Dave, channels: [log]}
  erin: {name: Erin, channels: [log]}"""


async def test_ack_cancels_pending_steps_and_unsent_pages(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(people=QUIET_ALICE)
    inc_id = await open_one(app, notification([alert(severity="high")]))  # P1
    await app.run_until(T0 + 20 * M)
    inc = await app.incident(inc_id)
    # alice's page waits for her quiet hours to end (12:00); carol's went at +15m.
    assert app.pages(inc) == [(0.0, 0, "alice", "pending"), (900.0, 1, "carol", "sent")]
    assert pending(inc) == [("page", 2, 0, 3600.0), ("reminder", 0, 1, 3600.0)]

    inc = await app.act(inc_id, "ack", actor="carol")
    assert app.pages(inc) == [(0.0, 0, "alice", "cancelled"), (900.0, 1, "carol", "sent")]
    assert pending(inc) == [("reminder", 0, 1, 3600.0)]
    await app.run_until(T0 + 4 * H)
    inc = await app.incident(inc_id)
    assert app.pages(inc) == [(0.0, 0, "alice", "cancelled"), (900.0, 1, "carol", "sent")]
    assert all(n["sent_at"] is None for n in inc["notifications"] if n["person"] == "alice")


# -- calendars ------------------------------------------------------------------------------------


async def test_quiet_hours_hold_a_page_until_they_end(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(people=QUIET_ALICE)
    inc_id = await open_one(app, notification([alert(severity="high")]))  # P1
    await app.run_until(T0 + 1 * M)
    inc = await app.incident(inc_id)
    assert app.pages(inc) == [(0.0, 0, "alice", "pending")]
    notify = [e["message"] for e in inc["timeline"] if e["kind"] == "notify"]
    assert notify == [
        "tier 0 (on-call): page alice via log (role:oncall), "
        "held for quiet hours until 2026-01-06T12:00:00+00:00"
    ]
    await app.run_until(T0 + 2 * H + 1 * M)
    inc = await app.incident(inc_id)
    rows = {n["person"]: n for n in inc["notifications"] if n["kind"] == "page"}
    assert (rows["alice"]["state"], secs(rows["alice"]["sent_at"])) == ("sent", 7200.0)
    assert (rows["carol"]["state"], secs(rows["carol"]["sent_at"])) == ("sent", 900.0)


async def test_p0_bypasses_quiet_hours(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(people=QUIET_ALICE)
    inc_id = await open_one(app, notification([alert(severity="critical")]))
    await app.run_until(T0 + 1 * M)
    inc = await app.incident(inc_id)
    assert [(n["person"], n["state"], secs(n["sent_at"])) for n in inc["notifications"]] == [
        ("alice", "sent", 0.0)
    ]


MAINTENANCE = """\
maintenance:
  - name: db-upgrade
    matchers: ['instance="db-1"']
    action: {action}
    start: "2026-01-06T09:30:00Z"
    end: "2026-01-06T11:00:00Z"
"""


async def test_maintenance_window_holds_pages_until_it_ends(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(extra=MAINTENANCE.format(action="hold"))
    inc_id = await open_one(app, notification([alert(instance="db-1")]))  # P0
    # An alert outside the window's matchers pages as usual.
    other_id = await open_one(
        app, notification([alert(instance="web-1")], group_key='{}:{alertname="Web"}')
    )
    await app.run_until(T0 + 59 * M)
    inc = await app.incident(inc_id)
    assert inc["notifications"] == []
    assert [a["status"] for a in inc["alerts"]] == ["firing"]  # the alert is recorded
    held = [e["message"] for e in inc["timeline"] if e["kind"] == "held"]
    assert held[0] == (
        "tier 0 (on-call) held until 2026-01-06T11:00:00+00:00: maintenance window 'db-upgrade'"
    )
    assert {e["data"]["tier"] for e in inc["timeline"] if e["kind"] == "held"} == {0, 1, 2, 3}
    other = await app.incident(other_id)
    assert [p for _, _, p in sent(app, other)] == ["alice", "carol", "dave", "erin"]

    await app.run_until(T0 + 61 * M)
    inc = await app.incident(inc_id)
    # The window is over: every tier that came due meanwhile fires, each person once.
    assert sent(app, inc) == [
        (3600.0, 0, "alice"),
        (3600.0, 1, "carol"),
        (3600.0, 2, "dave"),
        (3600.0, 3, "erin"),
    ]


async def test_maintenance_window_can_drop_pages(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(extra=MAINTENANCE.format(action="drop"))
    inc_id = await open_one(app, notification([alert(instance="db-1")]))
    await app.run_until(T0 + 3 * H)
    inc = await app.incident(inc_id)
    assert inc["notifications"] == []
    assert inc["status"] == "triggered"
    skips = [e["message"] for e in inc["timeline"] if e["kind"] == "skip"]
    assert skips == [
        "tier 0 (on-call) dropped: maintenance window 'db-upgrade'",
        "tier 1 (team lead) dropped: maintenance window 'db-upgrade'",
        "tier 2 (manager) dropped: maintenance window 'db-upgrade'",
        "tier 3 (VP) dropped: maintenance window 'db-upgrade'",
    ]


async def test_business_hours_step_is_deferred_not_dropped(make_team_app: MakeTeamApp) -> None:
    saturday = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    app = await make_team_app(start=saturday)
    # No severity label: the default (P3, SEV-4) pages the on-call during business hours only.
    body = notification([alert(severity="", starts=saturday)])
    inc_id = await open_one(app, body)
    await app.run_until(saturday + 1 * M)
    inc = await app.incident(inc_id)
    assert inc["severity"] == "P3"
    assert inc["notifications"] == []
    monday_open = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)  # 09:00 London (GMT)
    assert [(s["kind"], s["tier"], s["due_at"]) for s in inc["pending_steps"]] == [
        ("page", 0, monday_open.isoformat())
    ]
    assert [e["message"] for e in inc["timeline"] if e["kind"] == "deferred"] == [
        "tier 0 (on-call (business hours)) deferred until 2026-01-12T09:00:00+00:00 "
        "(business-hours)"
    ]
    await app.run_until(monday_open + 1 * M)
    inc = await app.incident(inc_id)
    rows = [(n["person"], n["state"], n["sent_at"]) for n in inc["notifications"]]
    # bob is on call from Monday 09:00 London (weekly rotation alice, bob from 2026-01-05).
    assert rows == [("bob", "sent", monday_open.isoformat())]


async def test_ack_timeout_escalates_again(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app(rules=RULES, policies=POLICIES)
    inc_id = await open_one(app, notification([alert(severity="high", labels={"team": "storage"})]))
    await app.run_until(T0 + 2 * M)
    inc = await app.act(inc_id, "ack", actor="alice")
    assert pending(inc) == [("ack_timeout", 0, 0, 720.0)]
    await app.run_until(T0 + 12 * M)
    inc = await app.incident(inc_id)
    assert inc["status"] == "triggered"
    assert events(inc, "ack_timeout") == [(720.0, "ack_timeout", "tocsin", "engine")]
    # The ladder runs again from the timeout: the on-call now, the lead 30m later.
    await app.run_until(T0 + 50 * M)
    inc = await app.incident(inc_id)
    assert sent(app, inc) == [(0.0, 0, "alice"), (720.0, 0, "alice"), (2520.0, 1, "carol")]

    # A second ack re-arms the timeout; mitigating in time disarms it.
    inc = await app.act(inc_id, "ack", actor="carol")
    assert pending(inc) == [("ack_timeout", 0, 0, 3600.0)]
    await app.run_until(T0 + 55 * M)
    inc = await app.act(inc_id, "mitigate", actor="carol")
    assert pending(inc) == []
    await app.run_until(T0 + 3 * H)
    inc = await app.incident(inc_id)
    assert inc["status"] == "mitigated"
    assert len(sent(app, inc)) == 3


async def test_status_reminders_follow_the_cadence_while_open(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert(severity="high")]))  # P1: every hour
    await app.run_until(T0 + 20 * M)
    await app.act(inc_id, "ack", actor="alice")
    await app.run_until(T0 + 3 * H + 30 * M)
    await app.act(inc_id, "resolve", actor="alice")
    await app.run_until(T0 + 8 * H)
    inc = await app.incident(inc_id)
    # Reminders go to everyone who was paged (alice, and carol from the 15m tier).
    assert sent(app, inc, "reminder") == [
        (3600.0, 0, "alice"),
        (3600.0, 0, "carol"),
        (7200.0, 0, "alice"),
        (7200.0, 0, "carol"),
        (10800.0, 0, "alice"),
        (10800.0, 0, "carol"),
    ]
    assert [e["message"] for e in inc["timeline"] if e["kind"] == "reminder"] == [
        f"status update #{n} due (SEV-2): reminded alice, carol" for n in (1, 2, 3)
    ]
    assert events(inc, "reminder") == [
        (3600.0 * n, "reminder", "tocsin", "engine") for n in (1, 2, 3)
    ]


async def test_every_change_is_on_the_timeline_with_actor_and_source(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert(severity="warning")]))
    await app.run_until(T0 + 1 * M)
    await app.act(inc_id, "notes", actor="alice", note="checking the disk")
    await app.post(
        notification([alert(severity="warning"), alert(severity="critical", instance="db-9")])
    )
    await app.run_until(T0 + 2 * M)
    await app.act(inc_id, "escalate", actor="bob")
    await app.run_until(T0 + 3 * M)
    await app.act(inc_id, "ack", actor="bob")
    await app.act(inc_id, "resolve", actor="bob")
    inc = await app.incident(inc_id)
    # The raise to P0 kept alice (already paged); escalate brought the lead's tier forward.
    assert sent(app, inc) == [(0.0, 0, "alice"), (120.0, 1, "carol")]
    assert [e["message"] for e in inc["timeline"] if e["kind"] == "escalate"] == [
        "escalated to tier 1 now by writer on behalf of bob"
    ]
    assert all(e["at"] and e["actor"] and e["source"] and e["message"] for e in inc["timeline"])
    changes = [
        (secs(e["at"]), e["kind"], e["actor"], e["source"])
        for e in inc["timeline"]
        if e["kind"] not in ("delivery", "notify", "skip", "late")
    ]
    assert changes == [
        (0.0, "open", "alertmanager", "alert"),
        (0.0, "alert", "alertmanager", "alert"),
        (60.0, "note", "writer", "api"),
        (60.0, "alert", "alertmanager", "alert"),
        (60.0, "severity", "alertmanager", "alert"),
        (120.0, "escalate", "writer", "api"),
        (180.0, "ack", "writer", "api"),
        (180.0, "resolve", "writer", "api"),
    ]


REMINDING = """\
  reminding:
    ack_timeout: 10m
    steps:
      - {name: on-call, after: 0, notify: [role:oncall]}
"""


async def test_reminders_go_on_after_an_ack_timeout(make_team_app: MakeTeamApp) -> None:
    rules = "  - {name: storage, match: 'team=\"storage\"', policy: reminding}\n"
    app = await make_team_app(rules=rules, policies=REMINDING)
    body = notification([alert(severity="high", labels={"team": "storage"})])  # P1: hourly
    inc_id = await open_one(app, body)
    await app.run_until(T0 + 2 * M)
    await app.act(inc_id, "ack", actor="alice")
    await app.run_until(T0 + 12 * M)  # the ack timed out: triggered again
    await app.run_until(T0 + 3 * H)
    inc = await app.incident(inc_id)
    assert inc["status"] == "triggered"
    assert sent(app, inc) == [(0.0, 0, "alice"), (720.0, 0, "alice")]
    # Status updates keep the incident's hourly cadence through the superseded run.
    assert [t for t, _, _ in sent(app, inc, "reminder")] == [3600.0, 7200.0, 10800.0]


async def test_reminders_after_a_late_severity_raise_keep_one_cadence(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    inc_id = await open_one(app, notification([alert(severity="warning")]))  # P2: every 4h
    await app.run_until(T0 + 50 * M)
    worse = alert(severity="critical", instance="db-2", starts=T0 + 50 * M)
    await app.post(notification([alert(severity="warning"), worse]))  # P0: every 30m
    await app.run_until(T0 + 2 * H + 30 * M)
    inc = await app.incident(inc_id)
    reminders = [e for e in inc["timeline"] if e["kind"] == "reminder"]
    # One reminder every 30 minutes from the raise, never two at once.
    assert [secs(e["at"]) for e in reminders] == [80 * 60.0, 110 * 60.0, 140 * 60.0]
    assert events(inc, "late") == []
