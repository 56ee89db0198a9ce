"""Business hours, quiet hours and maintenance windows, including both DST transitions.

2026 calendar facts used below: 2026-03-02 is a Monday; America/New_York springs forward on
2026-03-08 (02:00 EST -> 03:00 EDT, at 07:00 UTC) and falls back on 2026-11-01 (02:00 EDT ->
01:00 EST, at 06:00 UTC); Europe/Berlin springs forward on 2026-03-29 and falls back on
2026-10-25, both at 01:00 UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from escalation.oncall.calendars import (
    Calendar,
    MaintenanceWindow,
    QuietHours,
    WeeklyHours,
    active_maintenance,
    local_to_utc,
)

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


BIZ = Calendar()  # UTC, Mon-Fri 09:00-17:00


# --- wall time -> instant ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("naive", "zone", "expected"),
    [
        (datetime(2026, 3, 8, 2, 30), NY, utc(2026, 3, 8, 7, 0)),  # gap -> 03:00 EDT
        (datetime(2026, 3, 8, 3, 0), NY, utc(2026, 3, 8, 7, 0)),
        (datetime(2026, 3, 8, 1, 59), NY, utc(2026, 3, 8, 6, 59)),  # last EST minute
        (datetime(2026, 11, 1, 1, 30), NY, utc(2026, 11, 1, 5, 30)),  # first (EDT) occurrence
        (datetime(2026, 3, 29, 2, 15), BERLIN, utc(2026, 3, 29, 1, 0)),  # gap -> 03:00 CEST
        (datetime(2026, 10, 25, 2, 30), BERLIN, utc(2026, 10, 25, 0, 30)),  # first (CEST)
    ],
)
def test_local_to_utc_gap_and_fold(naive: datetime, zone: str, expected: datetime) -> None:
    assert local_to_utc(naive, ZoneInfo(zone)) == expected


# --- business hours in UTC -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "inside"),
    [
        (utc(2026, 3, 2, 9, 0), True),  # Monday opening is inclusive
        (utc(2026, 3, 2, 16, 59), True),
        (utc(2026, 3, 2, 17, 0), False),  # closing is exclusive
        (utc(2026, 3, 2, 8, 59), False),
        (utc(2026, 3, 7, 12, 0), False),  # Saturday
        (utc(2026, 3, 8, 12, 0), False),  # Sunday
    ],
)
def test_business_hours_contains(t: datetime, inside: bool) -> None:
    assert BIZ.contains(t) is inside


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (utc(2026, 3, 2, 10, 0), utc(2026, 3, 2, 10, 0)),  # inside -> itself
        (utc(2026, 3, 2, 7, 0), utc(2026, 3, 2, 9, 0)),  # before opening, same day
        (utc(2026, 3, 6, 18, 0), utc(2026, 3, 9, 9, 0)),  # Friday evening -> Monday
        (utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 9, 0)),  # Saturday -> Monday
        (utc(2026, 3, 6, 17, 0), utc(2026, 3, 9, 9, 0)),  # exactly at close
    ],
)
def test_business_hours_next_open(t: datetime, expected: datetime) -> None:
    assert BIZ.next_open(t) == expected


def test_business_hours_next_close() -> None:
    assert BIZ.next_close(utc(2026, 3, 2, 10, 0)) == utc(2026, 3, 2, 17, 0)
    assert BIZ.next_close(utc(2026, 3, 2, 9, 0)) == utc(2026, 3, 2, 17, 0)
    assert BIZ.next_close(utc(2026, 3, 2, 17, 0)) is None
    assert BIZ.next_close(utc(2026, 3, 7, 10, 0)) is None


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (utc(2026, 3, 6, 10, 0), utc(2026, 3, 9, 9, 0)),  # Friday (open) -> Monday
        (utc(2026, 3, 2, 10, 0), utc(2026, 3, 3, 9, 0)),  # Monday -> Tuesday
        (utc(2026, 3, 5, 3, 0), utc(2026, 3, 6, 9, 0)),  # Thursday before opening -> Friday
        (utc(2026, 3, 8, 23, 0), utc(2026, 3, 9, 9, 0)),  # Sunday -> Monday
    ],
)
def test_business_hours_next_day_open(t: datetime, expected: datetime) -> None:
    assert BIZ.next_day_open(t) == expected


def test_holidays_skip_their_day() -> None:
    cal = Calendar(holidays=[date(2026, 3, 9), date(2026, 3, 10)])
    assert cal.contains(utc(2026, 3, 9, 10, 0)) is False
    assert cal.next_open(utc(2026, 3, 6, 18, 0)) == utc(2026, 3, 11, 9, 0)
    assert cal.next_day_open(utc(2026, 3, 6, 10, 0)) == utc(2026, 3, 11, 9, 0)
    assert cal.contains(utc(2026, 3, 11, 9, 0)) is True


def test_intervals_clip_to_range() -> None:
    got = BIZ.intervals(utc(2026, 3, 6, 12, 0), utc(2026, 3, 10, 10, 0))
    assert got == [
        (utc(2026, 3, 6, 12, 0), utc(2026, 3, 6, 17, 0)),
        (utc(2026, 3, 9, 9, 0), utc(2026, 3, 9, 17, 0)),
        (utc(2026, 3, 10, 9, 0), utc(2026, 3, 10, 10, 0)),
    ]


# --- overnight and whole-day windows -------------------------------------------------------


def test_overnight_window_belongs_to_its_start_day() -> None:
    # Friday-night-only on-call window: Fri 22:00 -> Sat 07:00.
    hours = WeeklyHours(days=["fri"], hours="22:00-07:00")
    assert hours.contains(utc(2026, 3, 7, 3, 0)) is True  # Saturday 03:00
    assert hours.contains(utc(2026, 3, 6, 3, 0)) is False  # Friday 03:00 (Thursday's window)
    assert hours.contains(utc(2026, 3, 6, 22, 0)) is True
    assert hours.contains(utc(2026, 3, 7, 7, 0)) is False
    assert hours.next_close(utc(2026, 3, 7, 3, 0)) == utc(2026, 3, 7, 7, 0)
    assert hours.next_open(utc(2026, 3, 7, 7, 0)) == utc(2026, 3, 13, 22, 0)


def test_overnight_holiday_only_cancels_window_starting_that_day() -> None:
    sat_holiday = WeeklyHours(days=["fri"], hours="22:00-07:00", holidays=[date(2026, 3, 7)])
    assert sat_holiday.contains(utc(2026, 3, 7, 3, 0)) is True
    fri_holiday = WeeklyHours(days=["fri"], hours="22:00-07:00", holidays=[date(2026, 3, 6)])
    assert fri_holiday.contains(utc(2026, 3, 7, 3, 0)) is False
    assert fri_holiday.next_open(utc(2026, 3, 6, 12, 0)) == utc(2026, 3, 13, 22, 0)


def test_quiet_hours_default_overnight_every_day() -> None:
    quiet = QuietHours()
    assert quiet.days == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert quiet.contains(utc(2026, 3, 7, 23, 0)) is True
    assert quiet.contains(utc(2026, 3, 8, 6, 59)) is True
    assert quiet.contains(utc(2026, 3, 8, 7, 0)) is False
    assert quiet.contains(utc(2026, 3, 8, 21, 59)) is False
    assert quiet.next_close(utc(2026, 3, 8, 1, 0)) == utc(2026, 3, 8, 7, 0)
    assert quiet.next_open(utc(2026, 3, 8, 12, 0)) == utc(2026, 3, 8, 22, 0)


def test_whole_day_windows_merge_back_to_back() -> None:
    weekdays = WeeklyHours(hours="00:00-24:00")
    assert weekdays.contains(utc(2026, 3, 4, 0, 0)) is True
    assert weekdays.contains(utc(2026, 3, 7, 0, 0)) is False
    # Monday to Friday is one continuous window that closes at Saturday 00:00.
    assert weekdays.next_close(utc(2026, 3, 2, 10, 0)) == utc(2026, 3, 7, 0, 0)
    assert weekdays.next_open(utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 9, 0, 0)


# --- DST: America/New_York -----------------------------------------------------------------


def test_ny_business_hours_follow_wall_clock_across_spring_forward() -> None:
    cal = Calendar(timezone=NY)
    # Friday 09:00 EST = 14:00 UTC; Monday 09:00 EDT = 13:00 UTC.
    assert cal.contains(utc(2026, 3, 6, 13, 30)) is False
    assert cal.contains(utc(2026, 3, 9, 13, 30)) is True
    assert cal.next_open(utc(2026, 3, 6, 23, 0)) == utc(2026, 3, 9, 13, 0)
    assert cal.next_day_open(utc(2026, 3, 6, 15, 0)) == utc(2026, 3, 9, 13, 0)
    assert cal.next_close(utc(2026, 3, 9, 15, 0)) == utc(2026, 3, 9, 21, 0)


def test_ny_opening_inside_spring_forward_gap_uses_transition() -> None:
    hours = WeeklyHours(timezone=NY, days=["sat", "sun"], hours="02:30-04:00")
    # Saturday 02:30 EST = 07:30 UTC; Sunday 02:30 does not exist -> 03:00 EDT = 07:00 UTC.
    assert hours.next_open(utc(2026, 3, 7, 5, 0)) == utc(2026, 3, 7, 7, 30)
    assert hours.next_open(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 0)
    assert hours.contains(utc(2026, 3, 8, 6, 59)) is False
    assert hours.next_close(utc(2026, 3, 8, 7, 30)) == utc(2026, 3, 8, 8, 0)


def test_ny_quiet_hours_spanning_spring_forward_last_8h() -> None:
    quiet = QuietHours(timezone=NY)
    # Sat 22:00 EST = Sun 03:00 UTC; Sun 07:00 EDT = 11:00 UTC.
    assert quiet.next_open(utc(2026, 3, 8, 1, 0)) == utc(2026, 3, 8, 3, 0)
    assert quiet.next_close(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 11, 0)
    assert quiet.contains(utc(2026, 3, 8, 11, 0)) is False


def test_ny_ambiguous_fall_back_opening_uses_first_occurrence() -> None:
    hours = WeeklyHours(timezone=NY, days=["sun"], hours="01:30-03:00")
    # 01:30 EDT (first) = 05:30 UTC; 03:00 EST = 08:00 UTC: 2.5 h of real time.
    assert hours.next_open(utc(2026, 11, 1, 4, 0)) == utc(2026, 11, 1, 5, 30)
    assert hours.next_close(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 8, 0)
    assert hours.contains(utc(2026, 11, 1, 6, 45)) is True  # 01:45 EST, second pass
    assert hours.contains(utc(2026, 11, 1, 5, 29)) is False


def test_ny_business_hours_across_fall_back() -> None:
    cal = Calendar(timezone=NY)
    # Friday 2026-10-30 17:00 EDT = 21:00 UTC; Monday 2026-11-02 09:00 EST = 14:00 UTC.
    assert cal.next_close(utc(2026, 10, 30, 20, 0)) == utc(2026, 10, 30, 21, 0)
    assert cal.next_open(utc(2026, 10, 30, 21, 0)) == utc(2026, 11, 2, 14, 0)
    assert cal.contains(utc(2026, 11, 2, 13, 30)) is False


# --- DST: Europe/Berlin --------------------------------------------------------------------


def test_berlin_business_hours_across_spring_forward() -> None:
    cal = Calendar(timezone=BERLIN)
    # Friday 2026-03-27 17:00 CET = 16:00 UTC; Monday 2026-03-30 09:00 CEST = 07:00 UTC.
    assert cal.next_close(utc(2026, 3, 27, 12, 0)) == utc(2026, 3, 27, 16, 0)
    assert cal.next_open(utc(2026, 3, 27, 16, 30)) == utc(2026, 3, 30, 7, 0)
    assert cal.next_day_open(utc(2026, 3, 27, 9, 0)) == utc(2026, 3, 30, 7, 0)


def test_berlin_window_wholly_inside_gap_never_opens_that_day() -> None:
    hours = WeeklyHours(timezone=BERLIN, days=["sun", "mon"], hours="02:00-03:00")
    assert hours.contains(utc(2026, 3, 29, 1, 0)) is False
    # Sunday's window vanishes; Monday 02:00 CEST = 00:00 UTC.
    assert hours.next_open(utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 30, 0, 0)


def test_berlin_quiet_hours_spanning_fall_back_last_10h() -> None:
    quiet = QuietHours(timezone=BERLIN)
    # Sat 2026-10-24 22:00 CEST = 20:00 UTC; Sun 07:00 CET = 06:00 UTC.
    assert quiet.next_open(utc(2026, 10, 24, 19, 0)) == utc(2026, 10, 24, 20, 0)
    assert quiet.next_close(utc(2026, 10, 25, 2, 0)) == utc(2026, 10, 25, 6, 0)
    assert quiet.contains(utc(2026, 10, 25, 5, 59)) is True


def test_berlin_ambiguous_opening_uses_first_occurrence() -> None:
    hours = WeeklyHours(timezone=BERLIN, days=["sun"], hours="02:30-05:00")
    # 02:30 CEST = 00:30 UTC (the later 02:30 CET would be 01:30 UTC).
    assert hours.next_open(utc(2026, 10, 24, 23, 0)) == utc(2026, 10, 25, 0, 30)
    assert hours.next_close(utc(2026, 10, 25, 1, 0)) == utc(2026, 10, 25, 4, 0)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "unknown timezone 'Mars/Olympus_Mons'"),
        ({"hours": "9-5"}, "hours must look like '09:00-17:00'"),
        ({"hours": "25:00-26:00"}, "invalid time of day"),
        ({"hours": "09:60-17:00"}, "invalid time of day"),
        ({"hours": "09:00-09:00"}, "empty window"),
        ({"days": []}, "at least one day"),
        ({"days": ["monday"]}, "Input should be 'mon'"),
        ({"hour": "09:00-17:00"}, "Extra inputs are not permitted"),
    ],
)
def test_weekly_hours_validation_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        WeeklyHours.model_validate(fields)
    assert message in str(exc.value)


def test_naive_instant_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        BIZ.contains(datetime(2026, 3, 2, 10, 0))


def test_input_in_other_offset_is_converted() -> None:
    est = datetime(2026, 3, 2, 5, 0, tzinfo=ZoneInfo(NY))  # = 10:00 UTC
    assert BIZ.next_close(est) == utc(2026, 3, 2, 17, 0)
    assert BIZ.next_open(est) == utc(2026, 3, 2, 10, 0)
    assert BIZ.next_open(est).tzinfo is UTC


# --- maintenance windows -------------------------------------------------------------------


def one_off(name: str, start: datetime, end: datetime, **kw: object) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"name": name, "start": start, "end": end, **kw})


def test_one_off_maintenance_active_and_end() -> None:
    mw = one_off("db-upgrade", utc(2026, 3, 2, 2, 0), utc(2026, 3, 2, 4, 0))
    assert mw.active(utc(2026, 3, 2, 2, 0)) is True
    assert mw.active(utc(2026, 3, 2, 3, 59)) is True
    assert mw.active(utc(2026, 3, 2, 4, 0)) is False
    assert mw.active(utc(2026, 3, 2, 1, 59)) is False
    assert mw.ends_at(utc(2026, 3, 2, 3, 0)) == utc(2026, 3, 2, 4, 0)
    assert mw.ends_at(utc(2026, 3, 2, 5, 0)) is None
    assert mw.action == "hold"
    assert mw.applies_to({"alertname": "Anything"}) is True


def test_one_off_accepts_iso_strings_with_offset() -> None:
    mw = MaintenanceWindow.model_validate(
        {"name": "x", "start": "2026-03-02T03:00:00+01:00", "end": "2026-03-02T05:00:00+01:00"}
    )
    assert mw.ends_at(utc(2026, 3, 2, 3, 0)) == utc(2026, 3, 2, 4, 0)


def test_recurring_maintenance_in_berlin_across_dst() -> None:
    mw = MaintenanceWindow(
        name="sunday-patching",
        action="drop",
        recurring=WeeklyHours(timezone=BERLIN, days=["sun"], hours="01:00-04:00"),
    )
    # Sunday 2026-03-22 (CET): 00:00-03:00 UTC. Sunday 2026-03-29: 01:00 CET = 00:00 UTC to
    # 04:00 CEST = 02:00 UTC (only 2h of real time).
    assert mw.active(utc(2026, 3, 22, 2, 30)) is True
    assert mw.ends_at(utc(2026, 3, 22, 0, 0)) == utc(2026, 3, 22, 3, 0)
    assert mw.active(utc(2026, 3, 29, 2, 30)) is False
    assert mw.ends_at(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 29, 2, 0)
    assert mw.ends_at(utc(2026, 3, 30, 1, 0)) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "x"}, "needs start and end, or recurring"),
        ({"name": "x", "start": utc(2026, 3, 2)}, "needs both start and end"),
        (
            {"name": "x", "start": utc(2026, 3, 2, 4), "end": utc(2026, 3, 2, 4)},
            "must be after start",
        ),
        (
            {"name": "x", "start": utc(2026, 3, 2, 5), "end": utc(2026, 3, 2, 4)},
            "must be after start",
        ),
        (
            {"name": "x", "start": datetime(2026, 3, 2, 1), "end": datetime(2026, 3, 2, 4)},
            "start must include a UTC offset",
        ),
        (
            {
                "name": "x",
                "start": utc(2026, 3, 2, 1),
                "end": utc(2026, 3, 2, 4),
                "recurring": {"days": ["sun"]},
            },
            "either one-off (start/end) or recurring",
        ),
        ({"name": "x", "recurring": {"days": ["sun"]}, "action": "mute"}, "'hold' or 'drop'"),
        ({"name": "x", "recurring": {"tz": "UTC"}}, "Extra inputs are not permitted"),
    ],
)
def test_maintenance_validation_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        MaintenanceWindow.model_validate(fields)
    assert message in str(exc.value)


def test_active_maintenance_prefers_drop_then_latest_end() -> None:
    t = utc(2026, 3, 2, 3, 0)
    short_hold = one_off("short", utc(2026, 3, 2, 2), utc(2026, 3, 2, 4))
    long_hold = one_off("long", utc(2026, 3, 2, 1), utc(2026, 3, 2, 8))
    drop = one_off("drop", utc(2026, 3, 2, 2), utc(2026, 3, 2, 3, 30), action="drop")
    later = one_off("later", utc(2026, 3, 2, 5), utc(2026, 3, 2, 9), action="drop")
    labels = {"alertname": "DiskFull"}
    assert active_maintenance([short_hold, long_hold], t, labels) is long_hold
    assert active_maintenance([long_hold, short_hold], t, labels) is long_hold
    assert active_maintenance([short_hold, drop, long_hold], t, labels) is drop
    assert active_maintenance([later], t, labels) is None  # not yet in force
    assert active_maintenance([], t, labels) is None


# Matcher-based tests use rules.matchers (Alertmanager matcher syntax).


def test_maintenance_matchers_select_alerts() -> None:
    mw = one_off(
        "db",
        utc(2026, 3, 2, 2),
        utc(2026, 3, 2, 4),
        matchers=['team="db"', 'env=~"prod|staging"'],
    )
    assert mw.applies_to({"team": "db", "env": "prod"}) is True
    assert mw.applies_to({"team": "db", "env": "dev"}) is False
    assert mw.applies_to({"team": "web", "env": "prod"}) is False
    assert mw.applies_to({}) is False


def test_active_maintenance_ignores_windows_for_other_alerts() -> None:
    t = utc(2026, 3, 2, 3, 0)
    db_drop = one_off(
        "db", utc(2026, 3, 2, 2), utc(2026, 3, 2, 4), action="drop", matchers=["team=db"]
    )
    all_hold = one_off("all", utc(2026, 3, 2, 2), utc(2026, 3, 2, 6))
    assert active_maintenance([db_drop, all_hold], t, {"team": "web"}) is all_hold
    assert active_maintenance([db_drop, all_hold], t, {"team": "db"}) is db_drop


def test_invalid_matcher_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as exc:
        one_off("bad", utc(2026, 3, 2, 2), utc(2026, 3, 2, 4), matchers=['team=~"("'])
    assert exc.value.errors()[0]["loc"] == ("matchers",)
    assert "invalid regular expression" in str(exc.value)


def test_maintenance_serialises_back_to_config_shape() -> None:
    mw = MaintenanceWindow(name="n", recurring=WeeklyHours(days=["sun"], hours="01:00-02:00"))
    dumped = mw.model_dump(exclude_none=True)
    assert dumped["recurring"]["hours"] == "01:00-02:00"
    assert MaintenanceWindow.model_validate(dumped) == mw
    assert mw.recurring is not None
    assert mw.recurring.next_open(utc(2026, 3, 2)) - utc(2026, 3, 2) == timedelta(days=6, hours=1)
