"""Which policy an incident follows, its snapshot, and when each of its steps falls due.

The snapshot is plain JSON taken when the incident opens (or its severity rises): a reload
never changes an escalation already in flight, and the API shows exactly what will run. It
depends on the configured policy (or matrix level) only, so each is built once and every
incident opening with it shares that one read-only object (``readonly``): a hot path.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cachetools import FIFOCache

from escalation.incidents.model import StepKind, StepRecord
from escalation.incidents.readonly import ReadOnlyDict, freeze
from escalation.incidents.steps import Policy, Repeat, Step, level_tiers
from rules.matrix import Level, Matrix

__all__ = [
    "PolicySnapshot",
    "level_snapshot",
    "plan_reminder",
    "plan_steps",
    "policy_snapshot",
    "step_id",
]


class CalendarPoints(Protocol):
    def next_open(self, t: datetime) -> datetime: ...
    def next_day_open(self, t: datetime) -> datetime: ...


# Snapshots built so far, by what they depend on: the configured Policy (or matrix Level) object
# itself plus the names that go into the snapshot. Configured objects are never changed once
# loaded, and a reload builds new ones, so it never meets an old entry (nor does a mapping whose
# entry was replaced). Each entry holds its object, so that object's id cannot be reused while
# the entry lives. Bounded: a process reloading often drops the oldest entries.
_CACHE_MAX = 256
_filling = threading.Lock()
# First in, first out past the bound: configs are few, so recency hardly matters, and a read
# never reorders (reads run without the lock).
_policies: FIFOCache[tuple[int, str], tuple[object, ReadOnlyDict]] = FIFOCache(_CACHE_MAX)
_levels: FIFOCache[tuple[int, str, str], tuple[object, ReadOnlyDict]] = FIFOCache(_CACHE_MAX)


def policy_snapshot(
    matrix: Matrix, policies: Mapping[str, Policy], severity: str, policy_name: str | None
) -> tuple[str, dict[str, Any]]:
    """(name, JSON snapshot) of the policy for ``severity`` (a rule's policy wins).

    The snapshot is read-only and shared by every incident it is given to (see ``readonly``).
    """
    level = matrix.level(severity)
    name = policy_name or level.policy
    if name is not None and name in policies:
        p = policies[name]
        return name, _cached(_policies, (id(p), name), p, _policy_dict, name, p)
    name = f"matrix:{matrix.name}:{severity}"
    return name, _cached(_policies, (id(level), name), level, _level_tiers_dict, name, level)


def _cached(
    cache: FIFOCache[Any, tuple[object, ReadOnlyDict]],
    key: Any,
    source: object,
    build: Callable[..., dict[str, Any]],
    *args: Any,
) -> ReadOnlyDict:
    """The snapshot ``build(*args)`` made from ``source``, made once and read-only."""
    try:
        hit = cache[key]  # one dict lookup: safe against another thread's eviction meanwhile
    except KeyError:
        hit = None
    if hit is not None and hit[0] is source:
        return hit[1]
    snap: ReadOnlyDict = freeze(build(*args))
    with _filling:  # decisions may run on more than one thread (a store's worker)
        cache[key] = (source, snap)
    return snap


def _policy_dict(name: str, p: Policy) -> dict[str, Any]:
    return _snapshot(name, p.steps, p.repeat, p.auto_resolve, p.ack_timeout, p.reminders)


def _level_tiers_dict(name: str, level: Level) -> dict[str, Any]:
    own = level_tiers(level)
    return _snapshot(name, own.tiers, own.repeat, True, None, True)


def _snapshot(
    name: str,
    steps: Sequence[Step],
    repeat: Repeat | None,
    auto_resolve: bool,
    ack_timeout: timedelta | None,
    reminders: bool,
) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [s.model_dump(mode="json") for s in steps],
        "repeat": repeat.model_dump(mode="json") if repeat else None,
        "auto_resolve": auto_resolve,
        "ack_timeout": _secs(ack_timeout),
        "reminders": reminders,
    }


def level_snapshot(matrix: Matrix, severity: str) -> dict[str, Any]:
    """The matrix level's names, targets and cadences, as they were when the incident opened.

    Read-only and shared, like ``policy_snapshot``'s.
    """
    lv: Level = matrix.level(severity)
    return _cached(_levels, (id(lv), matrix.name, severity), lv, _level_dict, matrix, lv, severity)


def _level_dict(matrix: Matrix, lv: Level, severity: str) -> dict[str, Any]:
    return {
        "key": severity,
        "name": lv.name,
        "matrix": matrix.name,
        "ack_target": _secs(lv.ack_target),
        "first_update": _secs(lv.first_update),
        "update_every": _secs(lv.update_every),
        "update_during": lv.update_during,
        "resolve_target": _secs(lv.resolve_target),
        "review_due": _secs(lv.review_due),
        "review_required": lv.review_required,
        "monitoring_window": _secs(lv.monitoring_window) or 0,
        "incident_channel": lv.incident_channel,
        "incident_channel_prefix": lv.incident_channel_prefix,
        "pagerduty_severity": lv.pagerduty_severity,
        "pagerduty_priority": lv.pagerduty_priority,
    }


def _secs(td: timedelta | None) -> float | None:
    return None if td is None else td.total_seconds()


@dataclass(frozen=True)
class PolicySnapshot:
    """An incident's policy snapshot read back: the stored JSON stays as it is, this types it."""

    steps: tuple[Step, ...]
    repeat_times: int  # the step list runs this many more times…
    repeat_every: timedelta  # …this far apart
    auto_resolve: bool
    ack_timeout: timedelta | None
    reminders: bool

    @classmethod
    def of(cls, snapshot: Mapping[str, Any]) -> PolicySnapshot:
        """The typed view of ``snapshot`` (parsed once per distinct snapshot: a hot path)."""
        if isinstance(snapshot, ReadOnlyDict):  # one of ours: no need to encode it to look it up
            return snapshot.memo(_typed)
        return _typed(snapshot)


def _typed(snapshot: Mapping[str, Any]) -> PolicySnapshot:
    return _parse_snapshot(json.dumps(snapshot, sort_keys=True))


@functools.lru_cache(maxsize=1024)
def _parse_snapshot(encoded: str) -> PolicySnapshot:
    snap = json.loads(encoded)
    repeat = snap.get("repeat") or {}
    timeout = snap.get("ack_timeout")
    return PolicySnapshot(
        steps=tuple(Step.model_validate(s) for s in snap.get("steps", [])),
        repeat_times=int(repeat.get("times") or 0),
        repeat_every=timedelta(seconds=_every_secs(repeat)),
        auto_resolve=bool(snap.get("auto_resolve", True)),
        ack_timeout=timedelta(seconds=float(timeout)) if timeout else None,
        reminders=bool(snap.get("reminders", True)),
    )


def step_id(incident_id: str, epoch: int, kind: str, round_: int, tier: int) -> str:
    """A step's unique id: each step fires at most once per round and epoch."""
    return f"{incident_id}:{epoch}:{kind}:{round_}:{tier}"


def due_time(step: Step, base: datetime, calendars: Mapping[str, CalendarPoints]) -> datetime:
    """``base + after``, moved to a calendar point when the step names one."""
    due = base + step.after
    if step.at:
        cal_name, _, point = step.at.partition(":")
        cal = calendars.get(cal_name)
        if cal is not None:
            due = cal.next_open(due) if point == "open" else cal.next_day_open(due)
    return due


# Marks the page steps of a run reopened in PagerDuty (suffix of their ids): PagerDuty has
# re-triggered its own incident, and a trigger with the same dedup key after its alert was
# resolved would open a second PagerDuty incident. Those steps page everyone else as usual.
PAGERDUTY_REOPENED = ":reopened-in-pagerduty"


def plan_steps(
    incident_id: str,
    epoch: int,
    snapshot: Mapping[str, Any],
    start: datetime,
    calendars: Mapping[str, CalendarPoints],
) -> list[StepRecord]:
    """Every page step of every round, due relative to ``start``."""
    policy = PolicySnapshot.of(snapshot)
    out = []
    for r in range(policy.repeat_times + 1):
        base = start + policy.repeat_every * r
        for i, st in enumerate(policy.steps):
            out.append(
                StepRecord(
                    id=step_id(incident_id, epoch, StepKind.PAGE, r, i),
                    incident_id=incident_id,
                    kind=StepKind.PAGE,
                    epoch=epoch,
                    round=r,
                    tier=i,
                    due_at=due_time(st, base, calendars),
                    unless=st.unless,
                )
            )
    return out


def _every_secs(repeat: Mapping[str, Any]) -> float:
    every = repeat.get("every")
    if every is None:
        return 0.0
    if isinstance(every, int | float):
        return float(every)
    from rules.durations import parse_duration

    return parse_duration(every).total_seconds()


def plan_reminder(
    incident_id: str, epoch: int, level: Mapping[str, Any], opened_at: datetime, n: int
) -> StepRecord | None:
    """The n-th (1-based) status-update reminder, if the level has a cadence."""
    every = level.get("update_every")
    if not every:
        return None
    first = level.get("first_update")
    if first is None:  # 0 is a real value: the first update is due as the incident opens
        first = every
    due = opened_at + timedelta(seconds=first + every * (n - 1))
    return StepRecord(
        id=step_id(incident_id, epoch, StepKind.REMINDER, n, 0),
        incident_id=incident_id,
        kind=StepKind.REMINDER,
        epoch=epoch,
        round=n,
        tier=0,
        due_at=due,
        unless="resolved",
    )
