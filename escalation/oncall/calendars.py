"""Calendars: business hours, quiet hours and maintenance windows, DST-correct.

Every method takes and returns timezone-aware ``datetime`` instants (returned values are UTC);
the arithmetic happens in the object's own IANA timezone, on wall-clock time.

Wall-clock rules (the same everywhere in tocsin, see :func:`local_to_utc`):

* a wall time that does not exist (the spring-forward gap, e.g. 02:30 in America/New_York on
  2026-03-08) means the first valid instant after it, i.e. the transition instant (03:00 EDT);
* a wall time that happens twice (the fall-back overlap, e.g. 01:30 in America/New_York on
  2026-11-01) means its FIRST occurrence (``fold=0``, 01:30 EDT).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

__all__ = [
    "Calendar",
    "DayName",
    "MaintenanceWindow",
    "QuietHours",
    "WeeklyHours",
    "active_maintenance",
    "get_zone",
    "local_to_utc",
    "parse_hours",
]

DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ALL_DAYS: list[DayName] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAY_INDEX: dict[str, int] = {d: i for i, d in enumerate(_ALL_DAYS)}
_WEEKDAYS: list[DayName] = ["mon", "tue", "wed", "thu", "fri"]

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_ONE_DAY = timedelta(days=1)
# A run of back-to-back windows (e.g. "00:00-24:00" every day) is reported as closing at most this
# far after it opened, so "when does it close" always has a finite answer.
_MERGE_HORIZON = timedelta(days=366)


def get_zone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name``; ValueError with a clear message if it is unknown."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"timezone must be an IANA name such as 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown timezone {name!r} (expected an IANA name such as 'Europe/Berlin' or 'UTC')"
        ) from None


def local_to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """Turn a naive wall-clock time in ``tz`` into the UTC instant it denotes.

    A wall time inside a spring-forward gap does not exist: the first valid instant after it is
    used (the transition itself, e.g. 02:30 on 2026-03-08 in America/New_York -> 03:00 EDT =
    07:00 UTC). An ambiguous wall time during fall-back means its first occurrence (``fold=0``,
    e.g. 01:30 on 2026-11-01 in America/New_York -> 01:30 EDT = 05:30 UTC).
    """
    naive = naive.replace(tzinfo=None, fold=0)
    first = naive.replace(tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # In a gap, fold=0 applies the offset from before the transition (a later instant) and
    # fold=1 the offset after it (an earlier instant); the transition lies between the two.
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = first
    if lo > hi:
        lo, hi = hi, lo
    after = hi.astimezone(tz).utcoffset()
    lo_s, hi_s = 0, int((hi - lo).total_seconds())
    while hi_s - lo_s > 1:  # invariant: offset at lo+lo_s is the old one, at lo+hi_s the new one
        mid = (lo_s + hi_s) // 2
        if (lo + timedelta(seconds=mid)).astimezone(tz).utcoffset() == after:
            hi_s = mid
        else:
            lo_s = mid
    return lo + timedelta(seconds=hi_s)


@lru_cache(maxsize=256)
def parse_hours(text: str) -> tuple[int, int]:
    """Parse ``"HH:MM-HH:MM"`` into (start, end) minutes after local midnight.

    ``end`` may be 1440 (``24:00``). ``end < start`` means the window crosses midnight;
    ``"00:00-24:00"`` is a whole day. ValueError says what is wrong.
    """
    m = _HOURS.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"hours must look like '09:00-17:00', got {text!r}")
    sh, sm, eh, em = (int(g) for g in m.groups())
    if sm > 59 or em > 59 or sh > 23 or eh > 24 or (eh == 24 and em != 0):
        raise ValueError(f"hours {text!r} contain an invalid time of day (00:00 to 24:00)")
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise ValueError(f"hours {text!r} describe an empty window (use '00:00-24:00' for all day)")
    return start, end


def _aware(t: datetime, what: str = "time") -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {t!r}")
    return t


def _at(d: date, minutes: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall time ``minutes`` past local midnight of ``d`` (1440: next 00:00)."""
    if minutes >= 1440:
        d, minutes = d + _ONE_DAY, minutes - 1440
    naive = datetime(d.year, d.month, d.day, minutes // 60, minutes % 60)
    return local_to_utc(naive, tz)


class WeeklyHours(BaseModel):
    """Recurring weekly windows in a timezone, e.g. business hours Mon-Fri 09:00-17:00.

    Times are wall-clock: a "09:00-17:00" window opens at 09:00 local whatever the UTC offset,
    so on DST days it may be 7h or 9h of real time if it spans the change. A window belongs to
    the local date it STARTS on; an overnight window ("22:00-07:00") ends the next morning, and a
    holiday suppresses only the window starting that day. Non-existent opening/closing wall
    times (spring-forward gap) map to the first valid instant after them; ambiguous ones
    (fall-back) to their first occurrence. Back-to-back windows (e.g. "00:00-24:00" on
    consecutive days) count as one continuous window.
    """

    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    days: list[DayName] = Field(default_factory=lambda: list(_WEEKDAYS))
    hours: str = "09:00-17:00"
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, v: str) -> str:
        get_zone(v)
        return v.strip()

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, v: str) -> str:
        parse_hours(v)
        return v

    @field_validator("days")
    @classmethod
    def _check_days(cls, v: list[DayName]) -> list[DayName]:
        if not v:
            raise ValueError("days must name at least one day (mon, tue, ... sun)")
        return v

    # -- internals -------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The ``ZoneInfo`` for :attr:`timezone`."""
        return get_zone(self.timezone)

    def _local_date(self, t: datetime) -> date:
        return _aware(t).astimezone(self.zone).date()

    def _window_on(self, d: date) -> tuple[datetime, datetime] | None:
        """The window starting on local date ``d`` as UTC (open, close), or None."""
        if d.weekday() not in {_DAY_INDEX[x] for x in self.days} or d in self.holidays:
            return None
        start, end = parse_hours(self.hours)
        tz = self.zone
        opens = _at(d, start, tz)
        closes = _at(d, end, tz) if end > start else _at(d + _ONE_DAY, end, tz)
        # A window lying wholly inside a spring-forward gap collapses to nothing.
        return (opens, closes) if closes > opens else None

    def _raw_windows(self, first: date) -> Iterator[tuple[datetime, datetime]]:
        """Windows starting on ``first`` or later, in order (each a UTC (open, close))."""
        d, empty_run = first, 0
        # Empty days come from unlisted weekdays (< 7 in a row), holidays and DST-collapsed
        # windows (rare); past that bound there is nothing more to find.
        limit = len(self.holidays) + 16
        while empty_run <= limit:
            w = self._window_on(d)
            if w is None:
                empty_run += 1
            else:
                empty_run = 0
                yield w
            d += _ONE_DAY

    def _windows(self, first: date) -> Iterator[tuple[datetime, datetime]]:
        """Like :meth:`_raw_windows` but with back-to-back windows merged into one."""
        cur: tuple[datetime, datetime] | None = None
        for opens, closes in self._raw_windows(first):
            if cur is not None and opens <= cur[1] and cur[1] - cur[0] < _MERGE_HORIZON:
                cur = (cur[0], max(cur[1], closes))
                continue
            if cur is not None:
                yield cur
            cur = (opens, closes)
        if cur is not None:
            yield cur

    def _containing(self, t: datetime) -> tuple[datetime, datetime] | None:
        t = _aware(t)
        for opens, closes in self._windows(self._local_date(t) - _ONE_DAY):
            if opens > t:
                return None
            if t < closes:
                return (opens, closes)
        return None

    # -- public API ------------------------------------------------------------------------

    def contains(self, t: datetime) -> bool:
        """True if instant ``t`` is inside a window (open inclusive, close exclusive)."""
        t = _aware(t)
        ld = self._local_date(t)
        for d in (ld - _ONE_DAY, ld):
            w = self._window_on(d)
            if w is not None and w[0] <= t < w[1]:
                return True
        return False

    def next_open(self, t: datetime) -> datetime:
        """``t`` itself if inside a window, else the next instant a window opens (UTC)."""
        t = _aware(t)
        for opens, closes in self._windows(self._local_date(t) - _ONE_DAY):
            if t < closes:
                return t.astimezone(UTC) if opens <= t else opens
        raise ValueError("these hours never open")  # only if every future day is excluded

    def next_close(self, t: datetime) -> datetime | None:
        """When the window containing ``t`` closes (UTC), or None if ``t`` is outside all windows.

        Back-to-back windows are one window; an always-open calendar reports a close at most
        366 days after the run opened.
        """
        w = self._containing(t)
        return w[1] if w is not None else None

    def next_day_open(self, t: datetime) -> datetime:
        """Opening instant (UTC) of the first day with a window strictly after ``t``'s local date.

        E.g. Friday 10:00 with Mon-Fri business hours -> Monday's opening, even though Friday
        is open at ``t``.
        """
        for opens, _closes in self._raw_windows(self._local_date(t) + _ONE_DAY):
            return opens
        raise ValueError("these hours never open")

    def intervals(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The open periods overlapping [start, end), clipped to it, as UTC (open, close) pairs."""
        start, end = _aware(start, "start").astimezone(UTC), _aware(end, "end").astimezone(UTC)
        out: list[tuple[datetime, datetime]] = []
        if end <= start:
            return out
        for opens, closes in self._windows(self._local_date(start) - _ONE_DAY):
            if opens >= end:
                break
            if closes > start:
                out.append((max(opens, start), min(closes, end)))
        return out


class Calendar(WeeklyHours):
    """A named calendar from the config's ``calendars:`` section (e.g. ``business-hours``)."""

    description: str = ""


class QuietHours(WeeklyHours):
    """Hours when a person should not be paged (P0 bypasses); by default 22:00-07:00 daily."""

    days: list[DayName] = Field(default_factory=lambda: list(_ALL_DAYS))
    hours: str = "22:00-07:00"


class MaintenanceWindow(BaseModel):
    """A one-off (``start``/``end``) or recurring (``recurring``) window when pages for the
    matching alerts are held (delivered when it ends) or dropped. Alerts are still recorded.

    ``matchers`` are Alertmanager matcher strings (``team="db"``, ``env=~"prod|stage"``); all
    must match; an empty list matches every alert.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    matchers: list[str] = Field(default_factory=list)
    action: Literal["hold", "drop"] = "hold"
    start: datetime | None = None
    end: datetime | None = None
    recurring: WeeklyHours | None = None

    _parsed: list[Any] | None = PrivateAttr(default=None)

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, v: list[str]) -> list[str]:
        if not v:
            return v
        from rules.matchers import MatcherError, parse_matchers

        try:
            parse_matchers(v)
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _check_shape(self) -> MaintenanceWindow:
        one_off = self.start is not None or self.end is not None
        if one_off and self.recurring is not None:
            raise ValueError("a maintenance window is either one-off (start/end) or recurring")
        if not one_off and self.recurring is None:
            raise ValueError("a maintenance window needs start and end, or recurring")
        if one_off:
            if self.start is None or self.end is None:
                raise ValueError("a one-off maintenance window needs both start and end")
            for what, v in (("start", self.start), ("end", self.end)):
                if v.tzinfo is None or v.utcoffset() is None:
                    raise ValueError(
                        f"{what} must include a UTC offset (e.g. 2026-03-01T02:00:00Z), got {v}"
                    )
            if self.end <= self.start:
                raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    def active(self, t: datetime) -> bool:
        """True if the window is in force at ``t`` (start inclusive, end exclusive)."""
        t = _aware(t)
        if self.recurring is not None:
            return self.recurring.contains(t)
        assert self.start is not None and self.end is not None
        return self.start <= t < self.end

    def ends_at(self, t: datetime) -> datetime | None:
        """When the window in force at ``t`` ends (UTC), or None if it is not in force."""
        t = _aware(t)
        if self.recurring is not None:
            return self.recurring.next_close(t)
        assert self.start is not None and self.end is not None
        return self.end.astimezone(UTC) if self.start <= t < self.end else None

    def applies_to(self, labels: Mapping[str, str]) -> bool:
        """True if the alert ``labels`` satisfy every matcher (always True with no matchers)."""
        if not self.matchers:
            return True
        from rules.matchers import matches_all, parse_matchers

        if self._parsed is None:
            self._parsed = list(parse_matchers(self.matchers))
        return matches_all(self._parsed, labels)


def active_maintenance(
    windows: Sequence[MaintenanceWindow], t: datetime, labels: Mapping[str, str]
) -> MaintenanceWindow | None:
    """The maintenance window governing an alert with ``labels`` at ``t``, or None.

    When several are in force and match, a ``drop`` window wins over ``hold`` (the operator
    asked for silence); otherwise the one ending last (pages are held until all have ended).
    Ties go to the window listed first.
    """
    best: MaintenanceWindow | None = None
    best_key: tuple[bool, datetime] | None = None
    for w in windows:
        if not w.active(t) or not w.applies_to(labels):
            continue
        ends = w.ends_at(t)
        assert ends is not None
        key = (w.action == "drop", ends)
        if best_key is None or key > best_key:
            best, best_key = w, key
    return best
