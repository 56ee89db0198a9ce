"""Overrides made at run time, as the domain sees them: pure functions, no store, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from escalation.incidents.directory import Directory
from escalation.incidents.oncall_view import oncall_view
from escalation.oncall.overrides import (
    StoredOverride,
    check_override,
    overrides_by_schedule,
    person_shifts,
)
from escalation.oncall.people import Person, Team
from escalation.oncall.schedules import Override, Schedule
from rules.matrix import load_preset

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # Tuesday; alice's week (from Monday 09:00)
H = timedelta(hours=1)
WEEKLY = Schedule.model_validate(
    {"timezone": "Europe/London", "members": ["alice", "bob"], "start": "2026-01-05T09:00:00"}
)
MONDAY_0900 = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)


def stored(id: str, person: str, start: datetime, end: datetime, **kw: object) -> StoredOverride:
    return StoredOverride(
        id=id,
        schedule=str(kw.get("schedule", "primary")),
        person=person,
        starts_at=start,
        ends_at=end,
        replaces=kw.get("replaces"),  # type: ignore[arg-type]
        created_at=T0,
        created_by="writer",
        removed_at=kw.get("removed_at"),  # type: ignore[arg-type]
    )


def test_replaces_applies_only_while_that_person_would_be_on_call() -> None:
    s = WEEKLY.with_overrides(
        [Override(person="carol", start=T0, end=MONDAY_0900 + 3 * H, replaces="alice")]
    )
    assert s.oncall(T0) == ["carol"]
    assert s.oncall(MONDAY_0900 - H) == ["carol"]
    assert s.oncall(MONDAY_0900 + H) == ["bob"]  # bob's shift: carol covered alice only
    assert s.shifts(T0, MONDAY_0900 + 4 * H) == [
        (T0, MONDAY_0900, "carol"),
        (MONDAY_0900, MONDAY_0900 + 4 * H, "bob"),
    ]
    # Without replaces, the override beats the rotation for its whole range.
    plain = WEEKLY.with_overrides([Override(person="carol", start=T0, end=MONDAY_0900 + 3 * H)])
    assert plain.oncall(MONDAY_0900 + H) == ["carol"]


def test_a_stored_override_replacing_a_config_override_covers_its_stand_in() -> None:
    s = WEEKLY.model_copy(
        update={"overrides": [Override(person="dave", start=T0, end=T0 + 4 * H)]}
    ).with_overrides([Override(person="erin", start=T0, end=T0 + 8 * H, replaces="dave")])
    assert (s.oncall(T0 + H), s.oncall(T0 + 5 * H)) == (["erin"], ["alice"])


def test_the_directory_resolves_schedules_through_stored_overrides() -> None:
    d = Directory(
        matrix=load_preset("default"),
        people={n: Person() for n in ("alice", "bob", "carol")},
        roles={"oncall": ["schedule:primary"], "team-lead": ["team:db"]},
        teams={"db": Team(schedule="primary")},
        schedules={"primary": WEEKLY},
    )
    found = overrides_by_schedule(
        [
            stored("o1", "carol", T0, T0 + 2 * H),
            stored("o2", "bob", T0 + 2 * H, T0 + 3 * H, removed_at=T0),
            stored("o3", "bob", T0, T0 + H, schedule="other"),
        ]
    )
    assert d.with_overrides({}) is d
    live = d.with_overrides(found)
    assert [r.person for r in live.resolve("oncall", T0)[0]] == ["carol"]
    assert [r.person for r in live.resolve("oncall", T0 + 2 * H)[0]] == ["alice"]
    assert [r.person for r in d.resolve("oncall", T0)[0]] == ["alice"]  # the original is kept

    schedules, roles = oncall_view(live, T0)
    [view] = schedules
    assert [(s.person, s.start, s.end) for s in view.now] == [("carol", T0, T0 + 2 * H)]
    assert view.next is not None
    assert (view.next.person, view.next.start, view.next.end) == (
        "alice",
        T0 + 2 * H,
        MONDAY_0900,
    )
    assert [(r.name, r.now, r.next_at, r.next) for r in roles] == [
        ("oncall", ["carol"], T0 + 2 * H, ["alice"]),
        ("team-lead", ["carol"], T0 + 2 * H, ["alice"]),
    ]


def test_check_override_names_each_problem_and_conflicts_with_overlaps_only() -> None:
    people = ["alice", "bob", "carol"]
    existing = [stored("o1", "bob", T0, T0 + 2 * H)]
    ok = stored("new", "carol", T0 + 2 * H, T0 + 4 * H)
    assert check_override(WEEKLY, people, existing, ok, T0) == []
    clash = check_override(WEEKLY, people, existing, stored("n", "carol", T0 + H, T0 + 3 * H), T0)
    assert [(p.path, p.conflict) for p in clash] == [("start", True)]
    assert "o1" in clash[0].message
    bad = stored("n", "zoe", T0 - 3 * H, T0 - H, replaces="zoe")
    assert [p.path for p in check_override(WEEKLY, people, existing, bad, T0)] == [
        "person",
        "replaces",
        "replaces",
        "end",
    ]


def test_person_shifts_across_schedules_in_time_order() -> None:
    other = Schedule.model_validate(
        {"timezone": "UTC", "members": ["bob", "alice"], "start": "2026-01-05T00:00:00Z"}
    )
    found = person_shifts({"primary": WEEKLY, "other": other}, "alice", T0, T0 + timedelta(days=8))
    assert found == [
        ("primary", T0, MONDAY_0900),
        ("other", datetime(2026, 1, 12, tzinfo=UTC), T0 + timedelta(days=8)),
    ]
