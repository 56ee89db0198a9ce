"""On-call schedules: rotations (daily, weekly, sub-day), DST, overrides and layers.

2026 facts used below: 2026-03-02 is a Monday; America/New_York springs forward on 2026-03-08
and falls back on 2026-11-01; Europe/Berlin springs forward on 2026-03-29 and falls back on
2026-10-25.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from escalation.oncall.schedules import Layer, Override, Schedule, validate_people

NY = "America/New_York"
BERLIN = "Europe/Berlin"
H = timedelta(hours=1)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def sched(**kw: Any) -> Schedule:
    return Schedule.model_validate(kw)


# --- weekly rotation in UTC ----------------------------------------------------------------


WEEKLY = sched(members=["alice", "bob", "carol"], start="2026-03-02T09:00:00", shift="1w")


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (utc(2026, 3, 2, 8, 59), []),  # before the first handoff
        (utc(2026, 3, 2, 9, 0), ["alice"]),
        (utc(2026, 3, 9, 8, 59), ["alice"]),
        (utc(2026, 3, 9, 9, 0), ["bob"]),
        (utc(2026, 3, 16, 9, 0), ["carol"]),
        (utc(2026, 3, 23, 9, 0), ["alice"]),  # wraps round
        (utc(2027, 3, 1, 9, 0), ["bob"]),  # 52 weeks later: 52 % 3 == 1
    ],
)
def test_weekly_rotation_utc(t: datetime, expected: list[str]) -> None:
    assert WEEKLY.oncall(t) == expected


def test_weekly_rotation_shifts_timeline() -> None:
    assert WEEKLY.shifts(utc(2026, 3, 1), utc(2026, 3, 17)) == [
        (utc(2026, 3, 2, 9), utc(2026, 3, 9, 9), "alice"),
        (utc(2026, 3, 9, 9), utc(2026, 3, 16, 9), "bob"),
        (utc(2026, 3, 16, 9), utc(2026, 3, 17), "carol"),
    ]


# --- daily rotations across DST ------------------------------------------------------------


def test_daily_rotation_ny_spring_forward_is_23h() -> None:
    s = sched(timezone=NY, members=["a", "b", "c"], start="2026-03-05T09:00:00", shift="1d")
    got = s.shifts(utc(2026, 3, 7, 12), utc(2026, 3, 9, 18))
    assert got == [
        (utc(2026, 3, 7, 12), utc(2026, 3, 7, 14), "b"),  # Fri 09:00 EST -> Sat 09:00 EST
        (utc(2026, 3, 7, 14), utc(2026, 3, 8, 13), "c"),  # Sat 09:00 EST -> Sun 09:00 EDT
        (utc(2026, 3, 8, 13), utc(2026, 3, 9, 13), "a"),
        (utc(2026, 3, 9, 13), utc(2026, 3, 9, 18), "b"),
    ]
    assert got[1][1] - got[1][0] == 23 * H
    assert s.oncall(utc(2026, 3, 8, 12, 59)) == ["c"]
    assert s.oncall(utc(2026, 3, 8, 13, 0)) == ["a"]


def test_daily_rotation_ny_fall_back_is_25h() -> None:
    s = sched(timezone=NY, members=["a", "b"], start="2026-10-30T09:00:00", shift="1d")
    # Sat 10-31 09:00 EDT = 13:00 UTC -> Sun 11-01 09:00 EST = 14:00 UTC.
    got = s.shifts(utc(2026, 10, 31, 13), utc(2026, 11, 1, 15))
    assert got == [
        (utc(2026, 10, 31, 13), utc(2026, 11, 1, 14), "b"),
        (utc(2026, 11, 1, 14), utc(2026, 11, 1, 15), "a"),
    ]
    assert got[0][1] - got[0][0] == 25 * H


def test_daily_rotation_berlin_both_transitions() -> None:
    s = sched(timezone=BERLIN, members=["x", "y"], start="2026-03-01T09:00:00", shift="1d")
    # Sat 03-28 09:00 CET = 08:00 UTC -> Sun 03-29 09:00 CEST = 07:00 UTC: 23h.
    assert s.oncall(utc(2026, 3, 29, 6, 59)) == s.oncall(utc(2026, 3, 28, 8, 0))
    spring = s.shifts(utc(2026, 3, 28, 8), utc(2026, 3, 29, 7))
    assert spring == [(utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), "y")]  # day 27 -> odd -> y
    # Sat 10-24 09:00 CEST = 07:00 UTC -> Sun 10-25 09:00 CET = 08:00 UTC: 25h.
    autumn = s.shifts(utc(2026, 10, 24, 7), utc(2026, 10, 25, 9))
    assert [(b - a, who) for a, b, who in autumn] == [(25 * H, "y"), (1 * H, "x")]
    assert autumn[0][0] == utc(2026, 10, 24, 7)
    assert autumn[1][0] == utc(2026, 10, 25, 8)


# --- weekly rotations across DST -----------------------------------------------------------


def test_weekly_rotation_ny_handoff_stays_at_0900_local() -> None:
    s = sched(timezone=NY, members=["a", "b"], start="2026-03-02T09:00:00")  # shift defaults 1w
    assert s.layers[0].shift == timedelta(weeks=1)
    got = s.shifts(utc(2026, 3, 2), utc(2026, 3, 17))
    assert got == [
        (utc(2026, 3, 2, 14), utc(2026, 3, 9, 13), "a"),  # 09:00 EST -> 09:00 EDT
        (utc(2026, 3, 9, 13), utc(2026, 3, 16, 13), "b"),
        (utc(2026, 3, 16, 13), utc(2026, 3, 17), "a"),
    ]
    assert got[0][1] - got[0][0] == timedelta(days=7) - H
    # Autumn: Mon 10-26 09:00 EDT = 13:00 UTC -> Mon 11-02 09:00 EST = 14:00 UTC.
    assert s.oncall(utc(2026, 11, 2, 13, 59)) == s.oncall(utc(2026, 10, 26, 13, 0))
    assert s.oncall(utc(2026, 11, 2, 14, 0)) != s.oncall(utc(2026, 11, 2, 13, 59))


def test_weekly_rotation_berlin_spring_is_167h_and_autumn_169h() -> None:
    s = sched(timezone=BERLIN, members=["a", "b"], start="2026-03-23T09:00:00", shift="7d")
    spring = s.shifts(utc(2026, 3, 23, 8), utc(2026, 3, 30, 8))
    assert spring == [
        (utc(2026, 3, 23, 8), utc(2026, 3, 30, 7), "a"),  # 09:00 CET -> 09:00 CEST
        (utc(2026, 3, 30, 7), utc(2026, 3, 30, 8), "b"),
    ]
    assert spring[0][1] - spring[0][0] == 167 * H
    # Mon 10-19 09:00 CEST = 07:00 UTC (week 30, "a") -> Mon 10-26 09:00 CET = 08:00 UTC.
    autumn = s.shifts(utc(2026, 10, 19, 7), utc(2026, 10, 26, 9))
    assert autumn == [
        (utc(2026, 10, 19, 7), utc(2026, 10, 26, 8), "a"),
        (utc(2026, 10, 26, 8), utc(2026, 10, 26, 9), "b"),
    ]


def test_fortnightly_rotation_with_handoff_time() -> None:
    s = sched(members=["a", "b"], start="2026-03-02T00:00:00", shift="14d", handoff="10:30")
    assert s.oncall(utc(2026, 3, 2, 10, 29)) == []
    assert s.oncall(utc(2026, 3, 2, 10, 30)) == ["a"]
    assert s.oncall(utc(2026, 3, 16, 10, 29)) == ["a"]
    assert s.oncall(utc(2026, 3, 16, 10, 30)) == ["b"]
    assert s.oncall(utc(2026, 3, 30, 10, 30)) == ["a"]


def test_aware_start_sets_wall_clock_handoff() -> None:
    # 14:00 UTC is 09:00 EST, so handoffs stay at 09:00 New York time (13:00 UTC in EDT).
    s = sched(timezone=NY, members=["a", "b"], start=utc(2026, 3, 6, 14), shift="1d")
    assert s.oncall(utc(2026, 3, 6, 13, 59)) == []
    assert s.oncall(utc(2026, 3, 6, 14, 0)) == ["a"]
    assert s.oncall(utc(2026, 3, 9, 12, 59)) == ["a"]  # Sunday's shift (index 2)
    assert s.oncall(utc(2026, 3, 9, 13, 0)) == ["b"]


def test_handoff_inside_spring_forward_gap_uses_transition() -> None:
    s = sched(timezone=NY, members=["a", "b"], start="2026-03-06T02:30:00", shift="1d")
    # Sun 03-08 02:30 does not exist: handoff at 03:00 EDT = 07:00 UTC.
    assert s.oncall(utc(2026, 3, 8, 6, 59)) == ["b"]
    assert s.oncall(utc(2026, 3, 8, 7, 0)) == ["a"]
    # Next day back to 02:30 EDT = 06:30 UTC.
    assert s.oncall(utc(2026, 3, 9, 6, 30)) == ["b"]


def test_ambiguous_handoff_uses_first_occurrence() -> None:
    s = sched(timezone=NY, members=["a", "b"], start="2026-10-31T01:30:00", shift="1d")
    # Sun 11-01 01:30 happens twice; the handoff is the first (EDT) one = 05:30 UTC.
    assert s.oncall(utc(2026, 11, 1, 5, 29)) == ["a"]
    assert s.oncall(utc(2026, 11, 1, 5, 30)) == ["b"]
    assert s.oncall(utc(2026, 11, 1, 6, 30)) == ["b"]  # second 01:30 (EST): no new handoff


# --- sub-day shifts ------------------------------------------------------------------------


def test_12h_shifts_are_real_time_across_dst() -> None:
    s = sched(timezone=NY, members=["day", "night"], start="2026-03-07T08:00:00", shift="12h")
    got = s.shifts(utc(2026, 3, 7, 13), utc(2026, 3, 9, 1))
    assert got == [
        (utc(2026, 3, 7, 13), utc(2026, 3, 8, 1), "day"),
        (utc(2026, 3, 8, 1), utc(2026, 3, 8, 13), "night"),
        (utc(2026, 3, 8, 13), utc(2026, 3, 9, 1), "day"),  # 09:00 EDT now, not 08:00
    ]
    assert all(b - a == 12 * H for a, b, _ in got)


def test_8h_shifts_three_people() -> None:
    s = sched(members=["a", "b", "c"], start="2026-03-02T06:00:00", shift="8h")
    assert s.oncall(utc(2026, 3, 2, 13, 59)) == ["a"]
    assert s.oncall(utc(2026, 3, 2, 14, 0)) == ["b"]
    assert s.oncall(utc(2026, 3, 2, 22, 0)) == ["c"]
    assert s.oncall(utc(2026, 3, 3, 6, 0)) == ["a"]
    assert s.oncall(utc(2026, 3, 5, 22, 0)) == ["c"]  # 3 days + 16h = 11 shifts -> 11 % 3 = 2


# --- overrides -----------------------------------------------------------------------------


DAILY = {"members": ["a", "b"], "start": "2026-03-02T09:00:00", "shift": "1d"}


def test_override_boundaries_start_inclusive_end_exclusive() -> None:
    s = sched(
        **DAILY,
        overrides=[{"person": "zed", "start": utc(2026, 3, 3, 12), "end": utc(2026, 3, 3, 18)}],
    )
    assert s.oncall(utc(2026, 3, 3, 11, 59, 59)) == ["b"]
    assert s.oncall(utc(2026, 3, 3, 12)) == ["zed"]
    assert s.oncall(utc(2026, 3, 3, 17, 59, 59)) == ["zed"]
    assert s.oncall(utc(2026, 3, 3, 18)) == ["b"]
    assert s.shifts(utc(2026, 3, 3, 9), utc(2026, 3, 4, 10)) == [
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 12), "b"),
        (utc(2026, 3, 3, 12), utc(2026, 3, 3, 18), "zed"),
        (utc(2026, 3, 3, 18), utc(2026, 3, 4, 9), "b"),
        (utc(2026, 3, 4, 9), utc(2026, 3, 4, 10), "a"),
    ]


def test_overlapping_overrides_last_listed_wins_and_beat_start() -> None:
    s = sched(
        **DAILY,
        overrides=[
            {"person": "x", "start": "2026-03-01T00:00:00Z", "end": "2026-03-01T12:00:00Z"},
            {"person": "y", "start": "2026-03-01T06:00:00Z", "end": "2026-03-01T08:00:00Z"},
        ],
    )
    assert s.oncall(utc(2026, 3, 1, 5)) == ["x"]  # before the rotation starts
    assert s.oncall(utc(2026, 3, 1, 7)) == ["y"]
    assert s.oncall(utc(2026, 3, 1, 8)) == ["x"]
    assert s.oncall(utc(2026, 3, 1, 12)) == []


# --- layers --------------------------------------------------------------------------------


LAYERED = sched(
    timezone=BERLIN,
    layers=[
        {"members": ["base1", "base2"], "start": "2026-03-02T09:00:00", "shift": "1w"},
        {
            "members": ["day1", "day2"],
            "start": "2026-03-02T09:00:00",
            "shift": "1d",
            "restrict": {"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "09:00-17:00"},
        },
    ],
)


def test_restrict_without_timezone_uses_schedules() -> None:
    restrict = LAYERED.layers[1].restrict
    assert restrict is not None
    assert restrict.timezone == BERLIN


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (utc(2026, 3, 2, 8, 0), ["day1"]),  # Mon 09:00 CET
        (utc(2026, 3, 3, 15, 59), ["day2"]),  # Tue 16:59 CET
        (utc(2026, 3, 3, 16, 0), ["base1"]),  # Tue 17:00: top layer restricted out
        (utc(2026, 3, 7, 10, 0), ["base1"]),  # Saturday
        (utc(2026, 3, 9, 8, 0), ["day2"]),  # Mon week 2: day index 7 -> day2
        (utc(2026, 3, 9, 7, 59), ["base1"]),  # 08:59 local, before week-2 handoff
        (utc(2026, 3, 9, 8, 0, 1), ["day2"]),
        (utc(2026, 3, 10, 7, 0), ["base2"]),  # Tue 08:00, base layer week 2
    ],
)
def test_layered_precedence_with_restrict(t: datetime, expected: list[str]) -> None:
    assert LAYERED.oncall(t) == expected


def test_layered_timeline_for_one_day() -> None:
    assert LAYERED.shifts(utc(2026, 3, 3, 0), utc(2026, 3, 4, 0)) == [
        (utc(2026, 3, 3, 0), utc(2026, 3, 3, 8), "base1"),
        (utc(2026, 3, 3, 8), utc(2026, 3, 3, 16), "day2"),
        (utc(2026, 3, 3, 16), utc(2026, 3, 4, 0), "base1"),
    ]


def test_restricted_layer_alone_leaves_gaps() -> None:
    s = sched(
        members=["solo"],
        start="2026-03-02T00:00:00",
        shift="1d",
        restrict={"timezone": "UTC", "days": ["mon"], "hours": "09:00-10:00"},
    )
    assert s.shifts(utc(2026, 3, 2), utc(2026, 3, 10)) == [
        (utc(2026, 3, 2, 9), utc(2026, 3, 2, 10), "solo"),
        (utc(2026, 3, 9, 9), utc(2026, 3, 9, 10), "solo"),
    ]


def test_before_any_layer_starts_nobody_and_partial_timeline() -> None:
    s = sched(members=["a"], start="2026-03-05T09:00:00", shift="1d")
    assert s.oncall(utc(2026, 3, 1)) == []
    assert s.shifts(utc(2026, 3, 1), utc(2026, 3, 4)) == []
    # A single-member rotation is one continuous stretch.
    assert s.shifts(utc(2026, 3, 4), utc(2026, 3, 8)) == [
        (utc(2026, 3, 5, 9), utc(2026, 3, 8), "a")
    ]


# --- shorthand, validation, people ---------------------------------------------------------


def test_top_level_shorthand_equals_one_layer() -> None:
    short = sched(timezone=NY, members=["a", "b"], start="2026-03-02T09:00:00", shift="1d")
    long = sched(
        timezone=NY,
        layers=[{"members": ["a", "b"], "start": "2026-03-02T09:00:00", "shift": "1d"}],
    )
    assert short == long
    assert short.layers == [
        Layer(members=["a", "b"], start=datetime(2026, 3, 2, 9), shift=timedelta(days=1))
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Europe/Atlantis", **DAILY}, "unknown timezone 'Europe/Atlantis'"),
        ({}, "a schedule needs layers"),
        ({"layers": []}, "at least one rotation"),
        ({**DAILY, "layers": [DAILY]}, "either layers or a single rotation"),
        ({**DAILY, "members": []}, "at least 1 item"),
        ({**DAILY, "members": ["a", " "]}, "member names must not be empty"),
        ({**DAILY, "shift": "0"}, "shift must be longer than zero"),
        ({**DAILY, "shift": "1 fortnight"}, "expected a duration like 90s"),
        ({**DAILY, "handoff": "9am"}, "handoff must be a time of day like '09:00'"),
        ({**DAILY, "handoff": "24:00"}, "handoff must be a time of day"),
        ({**DAILY, "shift": "12h", "handoff": "09:00"}, "handoff only applies to whole-day"),
        ({**DAILY, "rotation": "weekly"}, "Extra inputs are not permitted"),
        ({"layers": [{**DAILY, "restrict": {"hours": "9-5"}}]}, "hours must look like"),
    ],
)
def test_schedule_validation_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Schedule.model_validate(fields)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"person": "a", "start": utc(2026, 3, 2, 10), "end": utc(2026, 3, 2, 10)}, "after start"),
        ({"person": "a", "start": utc(2026, 3, 2, 11), "end": utc(2026, 3, 2, 10)}, "after start"),
        (
            {"person": "a", "start": "2026-03-02T10:00:00", "end": "2026-03-02T12:00:00Z"},
            "must include a UTC offset",
        ),
        ({"person": "", "start": utc(2026, 3, 2), "end": utc(2026, 3, 3)}, "must not be empty"),
    ],
)
def test_override_validation_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Override.model_validate(fields)
    assert message in str(exc.value)


def test_oncall_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        WEEKLY.oncall(datetime(2026, 3, 2, 10))


def test_validate_people_lists_unknown_names_once_in_order() -> None:
    s = sched(
        layers=[
            {"members": ["alice", "mallory", "bob"], "start": "2026-03-02T09:00:00"},
            {"members": ["trent", "mallory"], "start": "2026-03-02T09:00:00"},
        ],
        overrides=[{"person": "eve", "start": utc(2026, 3, 2), "end": utc(2026, 3, 3)}],
    )
    assert validate_people(s, {"alice", "bob"}) == ["mallory", "trent", "eve"]
    assert validate_people(s, {"alice", "bob", "mallory", "trent", "eve"}) == []
