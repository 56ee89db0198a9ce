"""Overrides made at run time ("I'll cover Alice until 18:00") and calendar-feed tokens.

Both are kept in the store, not in the config file: an override is made by a person through
the API, the CLI or the console, audited (who made or removed it, when, on whose behalf), and
in force for the engine as soon as it commits. Deciding whether one may be made is pure and
lives here; the service façade reads the store, asks :func:`check_override`, and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from escalation.oncall.schedules import Override, Schedule

__all__ = [
    "MAX_OVERRIDE",
    "CalendarToken",
    "OverrideProblem",
    "StoredOverride",
    "check_override",
    "overrides_by_schedule",
    "person_shifts",
]

# An override is a stand-in, not a new rotation: longer ones belong in the config's layers.
MAX_OVERRIDE = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class StoredOverride:
    """One override as stored: the range it covers and its audit trail.

    ``created_by`` / ``removed_by`` is who authenticated (an API token's or a console user's
    name); ``on_behalf_of`` is whom the caller said it acted for, "" when for itself. A removed
    override stays stored (with ``removed_at``) so the audit trail survives it.
    """

    id: str
    schedule: str
    person: str
    starts_at: datetime
    ends_at: datetime
    replaces: str | None
    created_at: datetime
    created_by: str
    on_behalf_of: str = ""
    removed_at: datetime | None = None
    removed_by: str = ""
    removed_on_behalf_of: str = ""

    def as_override(self) -> Override:
        """The schedule-level override it stands for."""
        return Override(
            person=self.person, start=self.starts_at, end=self.ends_at, replaces=self.replaces
        )

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.starts_at < end and start < self.ends_at


@dataclass(frozen=True, slots=True)
class CalendarToken:
    """A secret that opens one ICS feed (a schedule's or a person's); only its hash is kept."""

    id: str
    kind: Literal["schedule", "person"]
    name: str
    token_hash: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str = ""


@dataclass(frozen=True, slots=True)
class OverrideProblem:
    """Why an override may not be made: ``path`` names the field, ``conflict`` marks a clash
    with what is stored (rather than bad input)."""

    path: str
    message: str
    conflict: bool = False


def check_override(
    schedule: Schedule,
    people: Iterable[str],
    existing: Sequence[StoredOverride],
    new: StoredOverride,
    now: datetime,
) -> list[OverrideProblem]:
    """What is wrong with creating ``new`` on ``schedule``, given the overrides ``existing``
    there (not removed); empty when it may be created.

    Overlapping overrides are refused rather than silently stacked: which one wins would be
    guesswork for whoever reads the schedule later. Remove the other one first.
    """
    known = set(people)
    out: list[OverrideProblem] = []
    if schedule.pagerduty is not None:
        out.append(
            OverrideProblem("schedule", "this schedule is kept in PagerDuty; override it there")
        )
    if new.person not in known:
        out.append(OverrideProblem("person", f"unknown person {new.person!r}"))
    if new.replaces is not None and new.replaces not in known:
        out.append(OverrideProblem("replaces", f"unknown person {new.replaces!r}"))
    if new.replaces is not None and new.replaces == new.person:
        out.append(OverrideProblem("replaces", "a person cannot replace themselves"))
    if new.ends_at <= now:
        out.append(OverrideProblem("end", f"end ({new.ends_at.isoformat()}) has already passed"))
    elif new.ends_at <= new.starts_at:
        out.append(OverrideProblem("end", "end must be after start"))
    elif new.ends_at - new.starts_at > MAX_OVERRIDE:
        out.append(OverrideProblem("end", f"an override may last at most {MAX_OVERRIDE.days} days"))
    if out:
        return out
    for o in existing:
        if o.removed_at is None and o.overlaps(new.starts_at, new.ends_at):
            out.append(
                OverrideProblem(
                    "start",
                    f"overlaps override {o.id} ({o.person}, {o.starts_at.isoformat()} to "
                    f"{o.ends_at.isoformat()}); remove it first",
                    conflict=True,
                )
            )
    return out


def overrides_by_schedule(stored: Iterable[StoredOverride]) -> dict[str, list[Override]]:
    """Schedule name → its stored overrides in force (not removed), oldest first."""
    out: dict[str, list[Override]] = {}
    for o in sorted(stored, key=lambda o: (o.created_at, o.id)):
        if o.removed_at is None:
            out.setdefault(o.schedule, []).append(o.as_override())
    return out


def person_shifts(
    schedules: Mapping[str, Schedule], person: str, start: datetime, end: datetime
) -> list[tuple[str, datetime, datetime]]:
    """(schedule, from, to) for every stretch ``person`` is on call in [start, end), in time
    order (PagerDuty-kept schedules are not known here and are left out)."""
    out: list[tuple[str, datetime, datetime]] = []
    for name, sched in schedules.items():
        if sched.pagerduty is not None:
            continue
        out.extend((name, a, b) for a, b, who in sched.shifts(start, end) if who == person)
    return sorted(out, key=lambda s: (s[1], s[0]))
