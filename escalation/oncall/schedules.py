"""On-call schedules: layered rotations with overrides, DST-correct.

A schedule answers "who is on call at instant t". Inputs and outputs are timezone-aware
instants (outputs UTC); rotation arithmetic happens in the schedule's IANA timezone.

* Whole-day shifts (``1d``, ``7d``, ``1w``, ``14d``) hand off at the same LOCAL wall time every
  time, so across a DST change a ``1d`` shift lasts 23h or 25h of real time.
* Sub-day shifts (``12h``, ``8h``) are real elapsed time from the layer's start.
* Wall times that do not exist (spring-forward gap) mean the first valid instant after them;
  ambiguous ones (fall-back) their first occurrence (see :func:`escalation.calendars.local_to_utc`).
* Later layers take precedence wherever they apply (a layer with ``restrict`` applies only inside
  those hours; elsewhere lower layers show through); an override beats every layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from escalation.oncall.calendars import WeeklyHours, get_zone, local_to_utc
from rules.durations import Duration

__all__ = ["Layer", "Override", "Schedule", "validate_people"]

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_ONE_DAY = timedelta(days=1)
# Keys that may be written at the top of a schedule as shorthand for a single layer.
_LAYER_KEYS = ("members", "start", "shift", "handoff", "restrict")


def _aware(t: datetime, what: str = "time") -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {t!r}")
    return t


def _check_names(v: list[str], what: str) -> list[str]:
    out = []
    for name in v:
        name = name.strip()
        if not name:
            raise ValueError(f"{what} must not be empty")
        out.append(name)
    return out


class Layer(BaseModel):
    """One rotation: ``members`` take turns, ``members[0]`` first from ``start``.

    ``start`` is the first handoff instant; a naive value is wall time in the schedule's
    timezone. ``handoff`` ("HH:MM") replaces start's time of day for whole-day shifts.
    ``restrict`` limits the layer to those hours (a ``restrict`` without its own ``timezone``
    uses the schedule's); outside them the layer does not apply and lower layers show through.
    The rotation keeps counting through restricted-out time.
    """

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(min_length=1)
    start: datetime
    shift: Duration = timedelta(weeks=1)
    handoff: str | None = None
    restrict: WeeklyHours | None = None

    @field_validator("members")
    @classmethod
    def _check_members(cls, v: list[str]) -> list[str]:
        return _check_names(v, "member names")

    @field_validator("shift")
    @classmethod
    def _check_shift(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("shift must be longer than zero, e.g. 12h, 1d or 1w")
        return v

    @field_validator("handoff")
    @classmethod
    def _check_handoff(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _HHMM.match(v.strip())
        if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError(f"handoff must be a time of day like '09:00', got {v!r}")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    @model_validator(mode="after")
    def _check_handoff_needs_days(self) -> Layer:
        if self.handoff is not None and self.whole_days is None:
            raise ValueError(
                "handoff only applies to whole-day shifts (1d, 1w, ...); "
                "sub-day shifts rotate every shift length from start"
            )
        return self

    @property
    def whole_days(self) -> int | None:
        """The shift length in days if it is a whole number of days, else None."""
        if self.shift % _ONE_DAY == timedelta(0):
            return self.shift // _ONE_DAY
        return None

    def _anchor_local(self, tz: ZoneInfo) -> datetime:
        """The first handoff as naive wall time in ``tz``."""
        s = self.start
        local = s.astimezone(tz).replace(tzinfo=None) if s.tzinfo is not None else s
        if self.handoff is not None:
            hh, mm = (int(x) for x in self.handoff.split(":"))
            local = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
        return local

    def handoff_at(self, k: int, tz: ZoneInfo) -> datetime:
        """The UTC instant when shift ``k`` (0 = the first, taken by ``members[0]``) begins."""
        days = self.whole_days
        if days is not None:
            # Naive arithmetic keeps the wall time; resolution to an instant comes last.
            return local_to_utc(self._anchor_local(tz) + timedelta(days=k * days), tz)
        s = self.start
        anchor = s.astimezone(UTC) if s.tzinfo is not None else local_to_utc(s, tz)
        return anchor + k * self.shift

    def index_at(self, t: datetime, tz: ZoneInfo) -> int | None:
        """The number of the shift running at ``t`` (ignoring ``restrict``); None before start."""
        t = _aware(t)
        if t < self.handoff_at(0, tz):
            return None
        days = self.whole_days
        if days is None:
            return (t - self.handoff_at(0, tz)) // self.shift
        elapsed = (t.astimezone(tz).date() - self._anchor_local(tz).date()).days
        k = max(elapsed // days, 0)
        while self.handoff_at(k, tz) > t:
            k -= 1
        while self.handoff_at(k + 1, tz) <= t:
            k += 1
        return k

    def member_at(self, t: datetime, tz: ZoneInfo) -> str | None:
        """Who this layer puts on call at ``t``; None before start or outside ``restrict``."""
        k = self.index_at(t, tz)
        if k is None:
            return None
        if self.restrict is not None and not self.restrict.contains(t):
            return None
        return self.members[k % len(self.members)]

    def boundaries(self, start: datetime, end: datetime, tz: ZoneInfo) -> set[datetime]:
        """Instants in (start, end) where this layer's answer may change (handoffs, restrict)."""
        start, end = _aware(start).astimezone(UTC), _aware(end).astimezone(UTC)
        out: set[datetime] = set()
        k0 = self.index_at(start, tz)
        k = 0 if k0 is None else k0 + 1
        while (h := self.handoff_at(k, tz)) < end:
            if h > start:
                out.add(h)
            k += 1
        if self.restrict is not None:
            for opens, closes in self.restrict.intervals(start, end):
                out.update(x for x in (opens, closes) if start < x < end)
        return out


class Override(BaseModel):
    """``person`` is on call from ``start`` (inclusive) to ``end`` (exclusive), beating layers.

    With ``replaces``, the override covers only that person: it applies only while the
    schedule would otherwise put ``replaces`` on call ("I'll cover Alice until 18:00" ends
    early if Alice's shift does).
    """

    model_config = ConfigDict(extra="forbid")

    person: str
    start: datetime
    end: datetime
    replaces: str | None = None

    @field_validator("person")
    @classmethod
    def _check_person(cls, v: str) -> str:
        return _check_names([v], "override person")[0]

    @field_validator("replaces")
    @classmethod
    def _check_replaces(cls, v: str | None) -> str | None:
        return None if v is None else _check_names([v], "override replaces")[0]

    @field_validator("start", "end")
    @classmethod
    def _check_aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError(f"must include a UTC offset (e.g. 2026-03-01T09:00:00Z), got {v}")
        return v

    @model_validator(mode="after")
    def _check_order(self) -> Override:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    def covers(self, t: datetime) -> bool:
        """True if the override is in force at ``t``."""
        return self.start <= _aware(t) < self.end


class PagerDutyOncall(BaseModel):
    """Ask PagerDuty who is on call (REST ``/oncalls``) instead of computing a rotation here."""

    model_config = ConfigDict(extra="forbid")

    schedule_id: str | None = None
    escalation_policy_id: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PagerDutyOncall:
        if (self.schedule_id is None) == (self.escalation_policy_id is None):
            raise ValueError("give exactly one of schedule_id or escalation_policy_id")
        return self

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.schedule_id, self.escalation_policy_id)


class Schedule(BaseModel):
    """Who is on call: rotation ``layers`` (later ones win where they apply) plus ``overrides``.

    Or ``pagerduty: {schedule_id | escalation_policy_id}``: PagerDuty says who is on call (looked
    up through its REST API, cached); people are matched to tocsin's by their ``email``.

    Shorthand: ``members``/``start``/``shift``/``handoff``/``restrict`` at the top level stand
    for a single layer. When overrides overlap, the one listed last wins.
    """

    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    layers: list[Layer] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    pagerduty: PagerDutyOncall | None = None

    @model_validator(mode="before")
    @classmethod
    def _single_layer_shorthand(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = [k for k in _LAYER_KEYS if k in data]
        if "pagerduty" in data:
            if given or data.get("layers"):
                raise ValueError("a schedule is either `pagerduty:` or rotation layers, not both")
            return data
        if not given:
            if "layers" not in data:
                raise ValueError("a schedule needs layers (or members and start at the top level)")
            if not data["layers"]:
                raise ValueError("layers must name at least one rotation")
            return data
        if "layers" in data:
            raise ValueError(
                f"give either layers or a single rotation ({', '.join(given)}) at the top level, "
                "not both"
            )
        data = dict(data)
        data["layers"] = [{k: data.pop(k) for k in given}]
        return data

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, v: str) -> str:
        get_zone(v)
        return v.strip()

    @model_validator(mode="after")
    def _restrict_inherits_timezone(self) -> Schedule:
        # "restrict: {hours: 09:00-17:00}" inside a Berlin schedule means Berlin office hours.
        for layer in self.layers:
            r = layer.restrict
            if r is not None and "timezone" not in r.model_fields_set:
                layer.restrict = r.model_copy(update={"timezone": self.timezone})
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The ``ZoneInfo`` for :attr:`timezone`."""
        return get_zone(self.timezone)

    def oncall(self, t: datetime) -> list[str]:
        """Who is on call at ``t``: an override's person, else the top applicable layer's member.

        Returns a list (currently of at most one name); empty before any layer starts or when
        every layer is restricted out at ``t``.
        """
        return self._oncall(_aware(t), len(self.overrides))

    def _oncall(self, t: datetime, upto: int) -> list[str]:
        """Who is on call at ``t`` counting only the first ``upto`` overrides."""
        for i in range(upto - 1, -1, -1):
            o = self.overrides[i]
            if not o.covers(t):
                continue
            if o.replaces is None:
                return [o.person]
            below = self._oncall(t, i)
            return [o.person] if o.replaces in below else below
        tz = self.zone
        for layer in reversed(self.layers):
            person = layer.member_at(t, tz)
            if person is not None:
                return [person]
        return []

    def with_overrides(self, extra: Sequence[Override]) -> Schedule:
        """This schedule with ``extra`` overrides after its own (so they win where they
        overlap)."""
        if not extra:
            return self
        return self.model_copy(update={"overrides": [*self.overrides, *extra]})

    def shifts(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime, str]]:
        """The final on-call timeline over [start, end): (from, to, person) in UTC, in order.

        Consecutive pieces with the same person are joined; gaps with nobody on call are left
        out.
        """
        start, end = _aware(start, "start").astimezone(UTC), _aware(end, "end").astimezone(UTC)
        if end <= start:
            return []
        tz = self.zone
        points: set[datetime] = {start, end}
        for o in self.overrides:
            points.update(x.astimezone(UTC) for x in (o.start, o.end) if start < x < end)
        for layer in self.layers:
            points |= layer.boundaries(start, end, tz)
        ordered = sorted(points)
        out: list[tuple[datetime, datetime, str]] = []
        for a, b in pairwise(ordered):
            who = self.oncall(a)
            if not who:
                continue
            if out and out[-1][2] == who[0] and out[-1][1] == a:
                out[-1] = (out[-1][0], b, who[0])
            else:
                out.append((a, b, who[0]))
        return out


def validate_people(schedule: Schedule, known: set[str]) -> list[str]:
    """Names used by ``schedule`` (layer members, override persons) that are not in ``known``.

    In order of first appearance, each once; empty when every name is known.
    """
    unknown: list[str] = []
    names = [m for layer in schedule.layers for m in layer.members]
    names += [p for o in schedule.overrides for p in (o.person, o.replaces) if p is not None]
    for name in names:
        if name not in known and name not in unknown:
            unknown.append(name)
    return unknown
