"""SIGKILL mid-escalation, restart on the same store: no step lost, none fired twice.

A real ``tocsin serve`` opens four incidents on a ladder whose tiers fire 0s, 3s, 6s and 12s
after the incident opens (one person per tier, the ``log`` channel). The process is killed
(SIGKILL: no shutdown code runs) once tier 1 has paged everyone, stays down past tier 2's due
time, and a new process starts on the same store. Afterwards the store must show each step fired
exactly once, one page per (incident, tier), one ``notify`` timeline event per page, a ``late``
event (with how late) for exactly the steps that fired more than a second after their due time
— at least every tier 2 step, which came due while nothing was running — and the restarted
process's ``tocsin_escalation_lateness_seconds`` must hold one observation per step it fired.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from escalation.incidents.firing import LATE_AFTER
from tests.driver.payloads import am_body
from tests.driver.process import ServeProc, post_alert, start_serve, wait_for
from tests.reliability.conftest import (
    Db,
    ladder_config,
    metric_value,
    postgres_backend,
    sqlite_backend,
    unfinished,
)

TIERS = [("0s", ["p0"]), ("3s", ["p1"]), ("6s", ["p2"]), ("12s", ["p3"])]
PERSON = {tier: who[0] for tier, (_, who) in enumerate(TIERS)}
INCIDENTS = 4
LATENESS = "tocsin_escalation_lateness_seconds"
_TIER_IN_MESSAGE = re.compile(r"\(tier (\d+), round 0\)")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, Any], Db]:
    """(the ``store:`` section, a reader of that store) for each backend."""
    if request.param == "sqlite":
        return sqlite_backend(tmp_path)
    dsn, schema = request.getfixturevalue("pg_schema")
    return postgres_backend(dsn, schema)


def _seconds_until(when: datetime) -> float:
    return (when - datetime.now(UTC)).total_seconds()


def test_sigkill_mid_escalation_then_restart_fires_every_step_exactly_once(
    tmp_path: Path, procs: list[ServeProc], store: tuple[dict[str, Any], Db]
) -> None:
    store_yaml, db = store
    config = ladder_config(tmp_path, store_yaml, tiers=TIERS, lease="2s", poll="1s")

    first = start_serve(procs, "first", config, tmp_path)
    for i in range(INCIDENTS):
        assert post_alert(first.url, am_body(f"RestartTest{i}")) == 200
    incidents = {r["id"] for r in db.incidents()}
    assert len(incidents) == INCIDENTS

    # Mid-escalation: tier 1 has paged every incident, tier 2 is due in about three seconds.
    wait_for(
        lambda: {r["incident_id"] for r in db.outbox() if r["tier"] == 1} == incidents,
        timeout=15,
        what="tier 1 paged on every incident",
    )
    first.kill()

    steps = db.steps()
    assert sorted((s["incident_id"], s["tier"], s["state"]) for s in steps) == sorted(
        (i, t, "fired" if t <= 1 else "pending") for i in incidents for t in range(len(TIERS))
    ), "the kill must land after tier 1 and before tier 2 came due"
    due = {(s["incident_id"], s["tier"]): s["due_at"] for s in steps}

    # Stay down until tier 2 is overdue by more than the "late" threshold on every incident.
    last_tier2 = max(d for (_, t), d in due.items() if t == 2)
    time.sleep(max(0.0, _seconds_until(last_tier2 + LATE_AFTER + timedelta(seconds=0.5))))
    assert all(s["state"] == "pending" for s in db.steps() if s["tier"] >= 2)

    second = start_serve(procs, "restarted", config, tmp_path)
    last_due = max(due.values())
    wait_for(
        lambda: not unfinished(db),
        timeout=max(0.0, _seconds_until(last_due)) + 10,
        what="every step fired and every page sent after the restart",
        describe=lambda: unfinished(db),
    )

    # Every step once; no step row appeared twice (ids are unique per incident, tier, round).
    steps = db.steps()
    assert Counter((s["incident_id"], s["tier"]) for s in steps) == Counter(due.keys())
    assert {s["state"] for s in steps} == {"fired"}

    # One page per (incident, tier), to that tier's person, via log, delivered.
    outbox = db.outbox()
    assert sorted(
        (r["incident_id"], r["tier"], r["person"], r["channel"]) for r in outbox
    ) == sorted((i, t, PERSON[t], "log") for i in incidents for t in range(len(TIERS)))
    assert {(r["kind"], r["state"]) for r in outbox} == {("page", "sent")}

    # One notify event per page.
    timeline = db.timeline()
    notify = [
        (e["incident_id"], e["data"]["tier"], e["data"]["person"])
        for e in timeline
        if e["kind"] == "notify"
    ]
    assert sorted(notify) == sorted((i, t, PERSON[t]) for i in incidents for t in range(len(TIERS)))

    # A late event, saying how late, for exactly the steps fired more than LATE_AFTER after due.
    fired_late = {
        (s["incident_id"], s["tier"]): (s["fired_at"] - s["due_at"]).total_seconds()
        for s in steps
        if s["fired_at"] - s["due_at"] > LATE_AFTER
    }
    assert {(i, 2) for i in incidents} <= set(fired_late), "steps due while down fired late"
    late_events: dict[tuple[str, int], float] = {}
    for e in timeline:
        if e["kind"] == "late":
            m = _TIER_IN_MESSAGE.search(e["message"])
            assert m is not None, e["message"]
            key = (e["incident_id"], int(m.group(1)))
            assert key not in late_events, f"two late events for {key}"
            late_events[key] = e["data"]["late_seconds"]
            assert f"late by {e['data']['late_seconds']:.1f}s" in e["message"]
            assert e["data"]["due"] == due[key].isoformat()
    assert set(late_events) == set(fired_late)
    for key, seconds in late_events.items():
        assert seconds == pytest.approx(fired_late[key], abs=1e-3)

    # The restarted process fired tiers 2 and 3 and observed each one's lateness.
    metrics = second.metrics()
    by_second = [(s["fired_at"] - s["due_at"]).total_seconds() for s in steps if s["tier"] >= 2]
    assert metric_value(metrics, f"{LATENESS}_count") == len(by_second) == 2 * INCIDENTS
    assert metric_value(metrics, f"{LATENESS}_sum") == pytest.approx(sum(by_second), abs=1e-3)
    within_a_second = metric_value(metrics, f"{LATENESS}_bucket", {"le": "1.0"})
    assert within_a_second is not None
    assert within_a_second == sum(1 for s in by_second if s <= 1.0) <= INCIDENTS
