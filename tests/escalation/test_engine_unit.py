"""``decide_step``: what firing one due step writes, as pure decisions (no store, no clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from escalation.incidents.directory import Directory
from escalation.incidents.firing import decide_step
from escalation.incidents.model import (
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
    StepRecord,
    StepState,
)
from escalation.incidents.policy import level_snapshot, policy_snapshot, step_id
from escalation.oncall.people import Person
from escalation.oncall.schedules import Schedule
from rules.matrix import load_preset

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # a Tuesday
M = timedelta(minutes=1)
MATRIX = load_preset("default")

DIRECTORY = Directory(
    matrix=MATRIX,
    people={p: Person(name=p.title()) for p in ("alice", "bob", "carol")},
    roles={"oncall": ["schedule:primary"], "lead": ["person:carol"], "ghost-lead": ["ghost"]},
    schedules={
        "primary": Schedule.model_validate(
            {"members": ["alice", "bob"], "start": "2026-01-05T09:00:00", "shift": "1w"}
        ),
        # Only covers nights: nobody is on call at 10:00.
        "night": Schedule.model_validate(
            {
                "members": ["bob"],
                "start": "2026-01-05T00:00:00",
                "shift": "1d",
                "restrict": {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "hours": "20:00-08:00",
                },
            }
        ),
    },
)


def incident(
    *, severity: str = "P0", status: Status = Status.TRIGGERED, epoch: int = 0, **kw: Any
) -> IncidentRecord:
    name, snap = policy_snapshot(MATRIX, {}, severity, None)
    return IncidentRecord(
        id="inc1",
        number=1,
        key="web.hook/{}:{}",
        status=status,
        severity=severity,
        title="DiskFull",
        team=None,
        policy_name=name,
        policy=kw.pop("policy", snap),
        level=level_snapshot(MATRIX, severity),
        opened_at=T0,
        updated_at=T0,
        epoch=epoch,
        **kw,
    )


def step(
    tier: int = 0,
    *,
    kind: str = "page",
    epoch: int = 0,
    round_: int = 0,
    due: datetime = T0,
    unless: str | None = "acknowledged",
) -> StepRecord:
    return StepRecord(
        id=step_id("inc1", epoch, kind, round_, tier),
        incident_id="inc1",
        kind=kind,
        epoch=epoch,
        round=round_,
        tier=tier,
        due_at=due,
        unless=unless,
    )


def paged(
    person: str,
    *,
    at: datetime = T0,
    state: OutboxState = OutboxState.SENT,
    round_: int = 0,
    kind: str = "page",
) -> OutboxRecord:
    return OutboxRecord(
        id=f"old:{person}:{at.isoformat()}",
        incident_id="inc1",
        step_id="old",
        kind=kind,
        tier=0,
        round=round_,
        target="role:oncall",
        person=person,
        channel="log",
        created_at=at,
        not_before=at,
        state=state,
    )


def one_step_policy(notify: list[str]) -> dict[str, Any]:
    return {
        "name": "custom",
        "steps": [{"name": "first", "after": "0s", "notify": notify, "unless": "acknowledged"}],
        "repeat": None,
        "auto_resolve": True,
        "ack_timeout": None,
        "reminders": True,
    }


# -- cancelled without paging -------------------------------------------------------------------


def test_step_of_a_stale_epoch_is_cancelled() -> None:
    ch = decide_step(step(epoch=0), incident(epoch=1), [], DIRECTORY, T0)
    assert ch.step_updates == [(step(epoch=0).id, StepState.CANCELLED, None, "superseded")]
    assert (ch.new_outbox, ch.timeline, ch.new_steps) == ([], [], [])


def test_step_of_a_missing_incident_is_cancelled() -> None:
    ch = decide_step(step(), None, [], DIRECTORY, T0)
    assert ch.step_updates == [(step().id, StepState.CANCELLED, None, "incident not found")]
    assert ch.new_outbox == []


@pytest.mark.parametrize(
    ("unless", "status", "note"),
    [
        ("acknowledged", Status.ACKNOWLEDGED, "incident acknowledged"),
        ("acknowledged", Status.MITIGATED, "incident mitigated"),  # mitigated implies acked
        ("mitigated", Status.MITIGATED, "incident mitigated"),
        (None, Status.RESOLVED, "incident resolved"),  # nothing pages a resolved incident
        ("mitigated", Status.RESOLVED, "incident resolved"),
    ],
)
def test_step_whose_unless_is_reached_is_cancelled(
    unless: str | None, status: Status, note: str
) -> None:
    s = step(unless=unless)
    ch = decide_step(s, incident(status=status), [], DIRECTORY, T0 + 2 * M)
    assert ch.step_updates == [(s.id, StepState.CANCELLED, None, note)]
    assert (ch.new_outbox, ch.timeline) == ([], [])


@pytest.mark.parametrize(
    ("unless", "status"), [("mitigated", Status.ACKNOWLEDGED), (None, Status.MITIGATED)]
)
def test_step_whose_unless_is_not_reached_fires(unless: str | None, status: Status) -> None:
    s = step(1, unless=unless)
    ch = decide_step(s, incident(status=status), [], DIRECTORY, T0)
    assert [(r.tier, r.person, r.channel, r.target) for r in ch.new_outbox] == [
        (1, "carol", "log", "role:lead")
    ]
    assert ch.step_updates == [(s.id, StepState.FIRED, T0, "1 notification(s)")]


# -- firing -------------------------------------------------------------------------------------


def test_a_due_step_pages_the_people_behind_its_targets() -> None:
    s = step(0)
    ch = decide_step(s, incident(), [], DIRECTORY, T0)
    assert len(ch.new_outbox) == 1
    row = ch.new_outbox[0]
    assert (row.id, row.kind, row.tier, row.round, row.target, row.person, row.channel) == (
        f"{s.id}:alice:log",
        "page",
        0,
        0,
        "role:oncall",
        "alice",
        "log",
    )
    assert (row.created_at, row.not_before, row.state) == (T0, T0, OutboxState.PENDING)
    assert [(e.kind, e.actor, e.source, e.message) for e in ch.timeline] == [
        ("notify", "tocsin", "engine", "tier 0 (on-call): page alice via log (role:oncall)")
    ]
    assert ch.timeline[0].data == {
        "tier": 0,
        "round": 0,
        "target": "role:oncall",
        "person": "alice",
        "channel": "log",
        "outbox": row.id,
    }
    assert ch.step_updates == [(s.id, StepState.FIRED, T0, "1 notification(s)")]


def test_person_already_paged_in_this_round_is_skipped() -> None:
    inc = incident()
    s = step(0, epoch=0)
    ch = decide_step(s, inc, [paged("alice")], DIRECTORY, T0 + 5 * M)
    assert ch.new_outbox == []
    assert [(e.kind, e.message) for e in ch.timeline] == [
        ("late", "page step (tier 0, round 0) fired late by 300.0s"),
        ("skip", "tier 0 (on-call): alice already paged via log"),
    ]
    assert ch.step_updates == [(s.id, StepState.FIRED, T0 + 5 * M, "late by 300.0s")]


@pytest.mark.parametrize(
    ("rows", "inc_kw"),
    [
        ([paged("alice", state=OutboxState.CANCELLED)], {}),  # never went out
        ([paged("alice", round_=1)], {}),  # another round of the repeat
        ([paged("bob")], {}),  # someone else
        ([paged("alice")], {"acknowledged_at": T0 + 1 * M}),  # paged before the ack
        (  # paged before the incident resolved and reopened
            [paged("alice"), paged("alice", at=T0 + 2 * M, kind="resolve")],
            {},
        ),
    ],
)
def test_earlier_pages_that_do_not_count(rows: list[OutboxRecord], inc_kw: dict[str, Any]) -> None:
    inc = incident(**inc_kw)
    ch = decide_step(step(0), inc, rows, DIRECTORY, T0 + 3 * M)
    assert [(r.person, r.channel) for r in ch.new_outbox] == [("alice", "log")]


def test_unknown_role_writes_a_skip_event() -> None:
    inc = incident(policy=one_step_policy(["role:nobody", "role:lead"]))
    s = step(0)
    ch = decide_step(s, inc, [], DIRECTORY, T0)
    assert [(e.kind, e.message) for e in ch.timeline] == [
        ("skip", "tier 0 (first): role:nobody: role 'nobody' is not mapped to anyone in `roles:`"),
        ("notify", "tier 0 (first): page carol via log (role:lead)"),
    ]
    assert [r.person for r in ch.new_outbox] == ["carol"]
    assert ch.step_updates == [(s.id, StepState.FIRED, T0, "1 notification(s)")]


def test_role_naming_an_unknown_person_writes_a_skip_event() -> None:
    inc = incident(policy=one_step_policy(["role:ghost-lead"]))
    ch = decide_step(step(0), inc, [], DIRECTORY, T0)
    assert [(e.kind, e.message) for e in ch.timeline] == [
        ("skip", "tier 0 (first): role:ghost-lead: unknown person 'ghost'"),
    ]
    assert ch.new_outbox == []
    assert ch.step_updates == [(step(0).id, StepState.FIRED, T0, "0 notification(s)")]


def test_schedule_with_nobody_on_call_writes_a_skip_event() -> None:
    inc = incident(policy=one_step_policy(["schedule:night"]))
    ch = decide_step(step(0), inc, [], DIRECTORY, T0)
    assert [(e.kind, e.message) for e in ch.timeline] == [
        (
            "skip",
            "tier 0 (first): schedule:night: nobody is on call in schedule 'night' at "
            "2026-01-06T10:00:00+00:00",
        ),
    ]
    assert ch.new_outbox == []
    # At night the same step pages bob.
    night = T0 + timedelta(hours=11)
    ch = decide_step(step(0, due=night), inc, [], DIRECTORY, night)
    assert [r.person for r in ch.new_outbox] == ["bob"]


@pytest.mark.parametrize(
    ("late", "events"),
    [
        (timedelta(0), []),
        (timedelta(seconds=1), []),  # a second of scheduling jitter is not late
        (timedelta(seconds=90), ["page step (tier 1, round 0) fired late by 90.0s"]),
        (timedelta(hours=2), ["page step (tier 1, round 0) fired late by 7200.0s"]),
    ],
)
def test_lateness_is_marked_in_the_timeline(late: timedelta, events: list[str]) -> None:
    due = T0 + 5 * M
    s = step(1, due=due)
    ch = decide_step(s, incident(), [], DIRECTORY, due + late)
    got = [e for e in ch.timeline if e.kind == "late"]
    assert [e.message for e in got] == events
    for e in got:
        assert (e.actor, e.source, e.at) == ("tocsin", "engine", due + late)
        assert e.data == {"due": due.isoformat(), "late_seconds": late.total_seconds()}
    assert [r.person for r in ch.new_outbox] == ["carol"]
    note = events[0].split("fired ")[1] if events else "1 notification(s)"
    assert ch.step_updates == [(s.id, StepState.FIRED, due + late, note)]


def test_step_beyond_the_snapshot_is_skipped() -> None:
    s = step(7)
    ch = decide_step(s, incident(), [], DIRECTORY, T0)
    assert ch.step_updates == [(s.id, StepState.SKIPPED, T0, "no such tier in the policy snapshot")]


# -- ack timeout and reminders -------------------------------------------------------------------


def test_ack_timeout_restarts_the_escalation_and_keeps_reminding() -> None:
    inc = incident(severity="P1", status=Status.ACKNOWLEDGED, acknowledged_at=T0 + 2 * M)
    s = step(0, kind="ack_timeout", due=T0 + 12 * M, unless="mitigated")
    now = T0 + 12 * M
    ch = decide_step(s, inc, [], DIRECTORY, now)
    assert [(i.status, i.epoch) for i in ch.updated_incidents] == [(Status.TRIGGERED, 1)]
    assert ch.cancel_steps_of == [("inc1", None, "superseded: ack timeout")]
    assert [(x.kind, x.epoch, x.round, x.tier, x.due_at) for x in ch.new_steps] == [
        ("page", 1, 0, 0, now),
        ("page", 1, 0, 1, now + 15 * M),
        ("page", 1, 0, 2, now + 60 * M),
        ("reminder", 1, 1, 0, T0 + 60 * M),  # the hourly cadence from the open goes on
    ]
    assert ch.step_updates == [(s.id, StepState.FIRED, now, "")]


def test_ack_timeout_after_mitigation_is_cancelled() -> None:
    inc = incident(status=Status.MITIGATED, acknowledged_at=T0)
    s = step(0, kind="ack_timeout", due=T0 + 10 * M, unless="mitigated")
    ch = decide_step(s, inc, [], DIRECTORY, T0 + 10 * M)
    assert ch.step_updates == [(s.id, StepState.CANCELLED, None, "incident mitigated")]
    assert ch.updated_incidents == []


def test_reminder_goes_to_everyone_paged_and_plans_the_next() -> None:
    inc = incident(severity="P1", status=Status.ACKNOWLEDGED, acknowledged_at=T0 + 2 * M)
    s = step(0, kind="reminder", round_=1, due=T0 + 60 * M, unless="resolved")
    rows = [
        paged("alice"),
        paged("carol", at=T0 + 15 * M),
        paged("bob", state=OutboxState.CANCELLED),
    ]
    ch = decide_step(s, inc, rows, DIRECTORY, T0 + 60 * M)
    assert [(r.kind, r.person, r.round) for r in ch.new_outbox] == [
        ("reminder", "alice", 1),
        ("reminder", "carol", 1),
    ]
    assert [e.message for e in ch.timeline] == [
        "status update #1 due (SEV-2): reminded alice, carol"
    ]
    assert [(x.kind, x.round, x.due_at) for x in ch.new_steps] == [("reminder", 2, T0 + 120 * M)]


def test_decide_step_does_not_mutate_its_inputs() -> None:
    inc = incident()
    rows = [paged("bob")]
    before = (replace(inc), list(rows))
    decide_step(step(0), inc, rows, DIRECTORY, T0)
    assert (inc, rows) == before
