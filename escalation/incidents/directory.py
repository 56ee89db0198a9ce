"""Who is behind a target at an instant: roles, teams and schedules resolved to people.

A ``Directory`` is the slice of the live configuration escalation reads; it is rebuilt on
reload, while each incident keeps its own policy snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from escalation.incidents.steps import Policy
from escalation.oncall.calendars import Calendar, MaintenanceWindow
from escalation.oncall.people import Person, Team
from escalation.oncall.schedules import Override, Schedule
from escalation.oncall.targets import SERVICE_TARGETS, parse_target
from rules.matrix import Matrix

__all__ = ["Directory", "Recipient"]


@dataclass(frozen=True)
class Recipient:
    """One person reached through one target ref (``pagerduty:svc`` and ``slack:#channel``
    targets are places, not people)."""

    person: str  # a place is "<kind>:<name>", e.g. "pagerduty:<service id>" (the row's person)
    target: str
    service: bool = False  # a place rather than a person: reached through ``channel`` only
    channel: str = "pagerduty"  # the one channel a place is reached through


@dataclass(frozen=True)
class Directory:
    """People, roles, teams, schedules, calendars and maintenance, as configured now."""

    matrix: Matrix
    policies: Mapping[str, Policy] = field(default_factory=dict)
    people: Mapping[str, Person] = field(default_factory=dict)
    roles: Mapping[str, Sequence[str]] = field(default_factory=dict)
    teams: Mapping[str, Team] = field(default_factory=dict)
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    maintenance: Sequence[MaintenanceWindow] = ()
    # PagerDuty-backed schedules: (schedule_id, escalation_policy_id) → on-call emails, as last
    # looked up (None: not known yet). Kept warm by the runtime so resolving stays synchronous.
    pagerduty_oncall: Callable[[tuple[str | None, str | None]], list[str] | None] = lambda _key: (
        None
    )
    # An offline run (``tocsin simulate``) never asks PagerDuty: such schedules are not simulated.
    pagerduty_offline: bool = False
    # The channel that opens an incident's own chat channel for levels with ``incident_channel``
    # ("slack" when it is configured; None: no incident channels are made).
    incident_rooms: str | None = None

    def with_overrides(self, extra: Mapping[str, Sequence[Override]]) -> Directory:
        """This directory with ``extra`` overrides (schedule name → overrides made at run
        time, kept in the store) on top of each schedule's configured ones."""
        if not any(extra.get(name) for name in self.schedules):
            return self
        schedules = {
            name: s.with_overrides(extra.get(name, ())) for name, s in self.schedules.items()
        }
        return replace(self, schedules=schedules)

    def resolve(self, ref: str, t: datetime) -> tuple[list[Recipient], list[str]]:
        """People behind ``ref`` at ``t`` (deduplicated, in order) and problems found on the way."""
        people: list[Recipient] = []
        problems: list[str] = []
        self._resolve(ref, ref, t, people, problems, depth=0)
        seen: set[str] = set()
        unique = []
        for r in people:
            if r.person not in seen:
                seen.add(r.person)
                unique.append(r)
        return unique, problems

    def _resolve(
        self,
        ref: str,
        top: str,
        t: datetime,
        out: list[Recipient],
        problems: list[str],
        depth: int,
        bare: str = "role",
    ) -> None:
        if depth > 8:
            problems.append(f"{top}: roles nest too deeply (a cycle?)")
            return
        kind, name = parse_target(ref) if ":" in ref else (bare, ref)
        if kind == "person":
            if name in self.people:
                out.append(Recipient(name, top))
            else:
                problems.append(f"{top}: unknown person {name!r}")
        elif kind == "role":
            refs = self.roles.get(name)
            if refs is None:
                problems.append(f"{top}: role {name!r} is not mapped to anyone in `roles:`")
                return
            for r in refs:
                self._resolve(r, top, t, out, problems, depth + 1, bare="person")
        elif kind == "schedule":
            sched = self.schedules.get(name)
            if sched is None:
                problems.append(f"{top}: unknown schedule {name!r}")
                return
            if sched.pagerduty is not None:
                self._from_pagerduty(name, sched.pagerduty.key, top, out, problems)
                return
            oncall = sched.oncall(t)
            if not oncall:
                problems.append(f"{top}: nobody is on call in schedule {name!r} at {t.isoformat()}")
            for p in oncall:
                self._resolve(f"person:{p}", top, t, out, problems, depth + 1)
        elif kind == "team":
            team = self.teams.get(name)
            if team is None:
                problems.append(f"{top}: unknown team {name!r}")
                return
            if team.schedule is not None:
                self._resolve(f"schedule:{team.schedule}", top, t, out, problems, depth + 1)
            else:
                for m in team.members:
                    self._resolve(f"person:{m}", top, t, out, problems, depth + 1)
        elif kind in SERVICE_TARGETS:
            out.append(Recipient(f"{kind}:{name}", top, True, SERVICE_TARGETS[kind]))

    def _from_pagerduty(
        self,
        name: str,
        key: tuple[str | None, str | None],
        top: str,
        out: list[Recipient],
        problems: list[str],
    ) -> None:
        if self.pagerduty_offline:
            problems.append(
                f"{top}: schedule {name!r} is PagerDuty-backed: who is on call is not simulated "
                "(offline runs never ask PagerDuty)"
            )
            return
        emails = self.pagerduty_oncall(key)
        if emails is None:
            problems.append(f"{top}: PagerDuty has not answered who is on call for {name!r} yet")
            return
        if not emails:
            problems.append(f"{top}: PagerDuty says nobody is on call for {name!r}")
        by_email = {p.email.lower(): n for n, p in self.people.items() if p.email}
        for email in emails:
            person = by_email.get(email.lower())
            if person is None:
                problems.append(f"{top}: PagerDuty's on-call {email} is not a person in `people:`")
            else:
                out.append(Recipient(person, top))

    def channels_for(self, recipient: Recipient, via: Sequence[str]) -> list[str]:
        """The channels to use: the step's ``via``, else the person's own defaults."""
        if recipient.service:
            return [recipient.channel]
        if via:
            return list(via)
        p = self.people.get(recipient.person)
        return list(p.channels) if p is not None else ["log"]
