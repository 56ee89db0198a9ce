"""Every channel a step would page through must have an adapter: a page is never lost to config.

A step's ``via`` (or, without one, each person's own ``channels``), a ``pagerduty:`` service
target, and the ``fallback`` of each person a step reaches are checked against the adapters the
config builds. A policy's step written in the config is refused outright; a preset's tier (the
matrix levels' own ``tiers``, not written by the operator) is refused unless every person it
reaches has a fallback on a configured channel, so that the page still arrives.

A channel also needs the person's address on it (an email address, a phone number, …): every
person's ``channels`` and ``fallback`` are checked for it, and a step whose ``via`` names a
channel that a person it reaches has no address for is refused unless that person has a
fallback that can carry the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from adapters.config import AdaptersConfig
from adapters.delivery.channels import configured_channels, no_adapter
from escalation.incidents.steps import LevelTiers, Policy, Step
from escalation.oncall.people import Person, Team, missing_address
from escalation.oncall.schedules import Schedule
from escalation.oncall.targets import SERVICE_TARGETS, parse_target

__all__ = ["channel_refs"]

Loc = tuple[str | int, ...]
_MAX_DEPTH = 8  # roles naming roles: deeper than this is a cycle (reported elsewhere)


class _Config(Protocol):
    """The sections of the service config this check reads."""

    @property
    def adapters(self) -> AdaptersConfig: ...
    @property
    def policies(self) -> Mapping[str, Policy]: ...
    @property
    def people(self) -> Mapping[str, Person]: ...
    @property
    def roles(self) -> Mapping[str, list[str]]: ...
    @property
    def teams(self) -> Mapping[str, Team]: ...
    @property
    def schedules(self) -> Mapping[str, Schedule]: ...


def channel_refs(cfg: _Config, matrix_levels: Mapping[str, LevelTiers]) -> list[tuple[Loc, str]]:
    """Problems for channels that steps (and the people they reach) would use but lack."""
    check = _Check(cfg, configured_channels(cfg.adapters))
    for name, policy in cfg.policies.items():
        for i, step in enumerate(policy.steps):
            check.step(step, ("policies", name, "steps", i), preset=False)
    for key, level in matrix_levels.items():
        if level.policy is None:
            for i, step in enumerate(level.tiers):
                check.step(step, ("matrix", "levels", key, "tiers", i), preset=True)
    for name in cfg.people:
        check.addresses(name)
    return check.problems


@dataclass
class _Check:
    cfg: _Config
    configured: list[str]
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    _seen: set[Loc] = field(default_factory=set)

    def ok(self, channel: str) -> bool:
        return channel in self.configured

    def add(self, loc: Loc, message: str) -> None:
        if loc not in self._seen:  # a person reached by several steps: said once
            self._seen.add(loc)
            self.problems.append((loc, message))

    def step(self, step: Step, loc: Loc, *, preset: bool) -> None:
        people: list[str] = []
        for i, ref in enumerate(step.notify):
            place = self._reach(ref, people)
            if place and not self.ok(place):
                self.add((*loc, "notify", i), no_adapter(place, self.configured))
        for p in dict.fromkeys(people):
            self._person(p, step)
        for i, channel in enumerate(step.via):
            if self.ok(channel):
                self._reachable((*loc, "via", i), channel, people)
                continue
            message = no_adapter(channel, self.configured)
            if not preset:
                self.add((*loc, "via", i), message)
                continue
            stranded = [p for p in dict.fromkeys(people) if not self._has_fallback(p, channel)]
            if stranded:
                who = ", ".join(stranded)
                self.add(
                    (*loc, "via", i),
                    f"{message}; this preset tier would page {who} through it, with no "
                    "fallback on a configured channel (configure the adapter, or give them "
                    "a `fallback`)",
                )

    def _person(self, name: str, step: Step) -> None:
        person = self.cfg.people[name]
        if not step.via:  # the person's own channels are what the step uses
            for i, channel in enumerate(person.channels):
                if not self.ok(channel):
                    self.add(("people", name, "channels", i), no_adapter(channel, self.configured))
        for i, channel in enumerate(person.fallback):
            if not self.ok(channel):
                self.add(("people", name, "fallback", i), no_adapter(channel, self.configured))

    def addresses(self, name: str) -> None:
        """Each of the person's own channels and fallbacks needs their address on it."""
        person = self.cfg.people[name]
        for field_name in ("channels", "fallback"):
            for i, channel in enumerate(getattr(person, field_name)):
                what = missing_address(person, channel)
                if what is not None:
                    loc = ("people", name, field_name, i)
                    self.add(loc, f"person {name!r} has no {what} for channel {channel!r}")

    def _reachable(self, loc: Loc, channel: str, people: list[str]) -> None:
        """A step's ``via`` channel reaches nobody who lacks their address on it, unless their
        fallback carries the page (at run time such a delivery falls back, else goes to log)."""
        lacking: dict[str, list[str]] = {}
        for p in dict.fromkeys(people):
            what = missing_address(self.cfg.people[p], channel)
            if what is not None and not self._has_fallback(p, channel):
                lacking.setdefault(what, []).append(repr(p))
        for what, who in lacking.items():
            them = f"person {who[0]} has" if len(who) == 1 else f"people {', '.join(who)} have"
            self.add(
                loc,
                f"{them} no {what} for channel {channel!r}, and no `fallback` that could "
                "carry the page instead",
            )

    def _has_fallback(self, name: str, missing: str) -> bool:
        """A fallback on another configured channel that the person has an address on."""
        person = self.cfg.people[name]
        return any(
            c != missing and self.ok(c) and missing_address(person, c) is None
            for c in person.fallback
        )

    def _reach(self, ref: str, people: list[str], depth: int = 0, bare: str = "role") -> str:
        """Add the configured people ``ref`` can reach to ``people``; the channel if it names
        a place (a PagerDuty service, a Slack channel: reached through that channel whatever
        the step's via), else ""."""
        try:
            kind, name = parse_target(ref) if ":" in ref else (bare, ref)
        except ValueError:
            return ""  # reported by the target checks
        if depth > _MAX_DEPTH:
            return ""
        if kind in SERVICE_TARGETS:
            return SERVICE_TARGETS[kind]
        if kind == "person":
            people += [name] if name in self.cfg.people else []
            return ""
        places = [self._reach(r, people, depth + 1) for r in self._refs(kind, name)]
        return next((p for p in places if p), "")

    def _refs(self, kind: str, name: str) -> Sequence[str]:
        cfg = self.cfg
        if kind == "role":
            return [r if ":" in r else f"person:{r}" for r in cfg.roles.get(name, [])]
        if kind == "team" and name in cfg.teams:
            team = cfg.teams[name]
            # As escalation resolves a team: its schedule when it has one, else its members.
            if team.schedule is not None:
                return [f"schedule:{team.schedule}"]
            return [f"person:{m}" for m in team.members]
        if kind == "schedule" and name in cfg.schedules:
            s = cfg.schedules[name]
            members = [m for layer in s.layers for m in layer.members]
            return [f"person:{m}" for m in [*members, *(o.person for o in s.overrides)]]
        return []
