"""Who is on call now and next, for every schedule and role: what the API, CLI and console show.

Pure: it reads a ``Directory`` (with the stored overrides already laid over the schedules) at
an instant. Hand-offs are found from the schedules' own timelines, so overrides count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from escalation.incidents.directory import Directory
from escalation.oncall.schedules import Schedule
from escalation.oncall.targets import parse_target

__all__ = ["RoleView", "ScheduleView", "Shift", "oncall_view", "schedules_of"]

# How far back a current shift's start and ahead the next hand-off are looked for: longer than
# any sensible rotation (two-week shifts, a month of restricted-out time).
LOOK_BACK = timedelta(days=35)
LOOK_AHEAD = timedelta(days=70)


@dataclass(frozen=True, slots=True)
class Shift:
    """``person`` on call from ``start`` to ``end`` (None: beyond what was looked at)."""

    person: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class ScheduleView:
    name: str
    timezone: str
    source: str  # "tocsin" (computed here) or "pagerduty" (PagerDuty says who; no hand-offs)
    now: list[Shift]
    next: Shift | None


@dataclass(frozen=True, slots=True)
class RoleView:
    name: str
    now: list[str]
    next_at: datetime | None  # the next hand-off in a schedule behind the role
    next: list[str]  # who the role reaches then


def _schedule_view(name: str, s: Schedule, d: Directory, now: datetime) -> ScheduleView:
    if s.pagerduty is not None:
        people, _ = d.resolve(f"schedule:{name}", now)
        return ScheduleView(
            name, s.timezone, "pagerduty", [Shift(r.person, None, None) for r in people], None
        )
    first, last = now - LOOK_BACK, now + LOOK_AHEAD
    current: list[Shift] = []
    upcoming: Shift | None = None
    for a, b, who in s.shifts(first, last):
        # A shift cut by the window's edge started (or ends) beyond what was looked at.
        shift = Shift(who, None if a == first else a, None if b == last else b)
        if a <= now < b:
            current.append(shift)
        elif a > now and upcoming is None:
            upcoming = shift
    return ScheduleView(name, s.timezone, "tocsin", current, upcoming)


def schedules_of(d: Directory, ref: str, depth: int = 0, bare: str = "role") -> list[str]:
    """The schedules (configured in ``d``) whose hand-offs change who ``ref`` reaches."""
    if depth > 8:
        return []
    kind, name = parse_target(ref) if ":" in ref else (bare, ref)
    if kind == "schedule":
        return [name] if name in d.schedules else []
    if kind == "team":
        team = d.teams.get(name)
        if team is None or team.schedule is None or team.schedule not in d.schedules:
            return []
        return [team.schedule]
    if kind == "role":
        out: list[str] = []
        for r in d.roles.get(name, ()):
            out += [s for s in schedules_of(d, r, depth + 1, "person") if s not in out]
        return out
    return []


def _role_view(name: str, d: Directory, views: dict[str, ScheduleView], now: datetime) -> RoleView:
    people, _ = d.resolve(f"role:{name}", now)
    handoffs = [
        v.next.start
        for s in schedules_of(d, f"role:{name}")
        if (v := views.get(s)) is not None and v.next is not None and v.next.start is not None
    ]
    at = min(handoffs, default=None)
    later = [r.person for r in d.resolve(f"role:{name}", at)[0]] if at is not None else []
    return RoleView(name, [r.person for r in people], at, later)


def oncall_view(d: Directory, now: datetime) -> tuple[list[ScheduleView], list[RoleView]]:
    """Every schedule and every role, by name: who is on call at ``now`` and who is next."""
    views = {name: _schedule_view(name, s, d, now) for name, s in sorted(d.schedules.items())}
    roles = [_role_view(name, d, views, now) for name in sorted(d.roles)]
    return list(views.values()), roles
