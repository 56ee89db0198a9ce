"""The whole service configuration: one YAML file composing each component's section.

Each component owns its section's model; this module only puts them side by side and checks
the references between them (a rule naming a policy, a step naming a schedule, ...).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adapters.config import AdaptersConfig
from config.channels import channel_refs
from config.opsgenie import OpsgenieSection
from config.server import AuthConfig, ServerConfig
from escalation.engine.config import EngineConfig
from escalation.incidents.heartbeats import Heartbeat
from escalation.incidents.steps import Policy, Step
from escalation.oncall.calendars import Calendar, MaintenanceWindow
from escalation.oncall.people import Person, Team
from escalation.oncall.schedules import Schedule
from escalation.oncall.targets import CHANNELS, parse_target
from escalation.store.factory import StoreConfig
from rules.matrix import MatrixConfig
from rules.schema import Outcome

__all__ = ["RulesSection", "TocsinConfig", "cross_check"]

Loc = tuple[str | int, ...]


class RulesSection(BaseModel):
    """Where the rule files are and what applies when none matches."""

    model_config = ConfigDict(extra="forbid")

    files: list[str] = Field(default_factory=list)
    default: Outcome | None = None


class TocsinConfig(BaseModel):
    """The root of ``tocsin.yaml``."""

    model_config = ConfigDict(extra="forbid")

    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig
    store: StoreConfig = Field(default_factory=StoreConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    matrix: MatrixConfig = Field(default_factory=lambda: MatrixConfig(preset="default"))
    rules: RulesSection = Field(default_factory=RulesSection)
    policies: dict[str, Policy] = Field(default_factory=dict)
    people: dict[str, Person] = Field(default_factory=dict)
    roles: dict[str, list[str]] = Field(default_factory=dict)
    teams: dict[str, Team] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    calendars: dict[str, Calendar] = Field(default_factory=dict)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    adapters: AdaptersConfig = Field(default_factory=AdaptersConfig)
    opsgenie: OpsgenieSection = Field(default_factory=OpsgenieSection)
    heartbeats: dict[str, Heartbeat] = Field(default_factory=dict)


def cross_check(cfg: TocsinConfig, matrix_levels: dict[str, Any]) -> list[tuple[Loc, str]]:
    """References between sections that one section cannot check alone."""
    return [
        *_policy_refs(cfg),
        *_matrix_refs(cfg, matrix_levels),
        *_role_refs(cfg),
        *_team_refs(cfg),
        *_schedule_refs(cfg),
        *_default_refs(cfg),
        *channel_refs(cfg, matrix_levels),
        *_slack_refs(cfg),
        *_responder_refs(cfg),
    ]


def _responder_refs(cfg: TocsinConfig) -> Iterator[tuple[Loc, str]]:
    # A misspelt role would silently let nobody acknowledge by number who was not paged.
    phone = cfg.adapters.phone
    for i, role in enumerate(phone.sms_responders if phone is not None else []):
        if role not in cfg.roles:
            message = _unknown("role", role, cfg.roles)
            close = difflib.get_close_matches(role, list(cfg.roles), n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
            yield ("adapters", "phone", "sms_responders", i), message


def _slack_refs(cfg: TocsinConfig) -> Iterator[tuple[Loc, str]]:
    # A misspelt writer would silently be refused every click; one without an email could
    # never be matched to a Slack user.
    slack = cfg.adapters.slack
    for i, name in enumerate(slack.writers if slack is not None else []):
        person = cfg.people.get(name)
        if person is None:
            yield ("adapters", "slack", "writers", i), _unknown("person", name, cfg.people)
        elif not person.email:
            yield (
                ("adapters", "slack", "writers", i),
                f"person {name!r} has no email: Slack users are matched to people by email",
            )


def _unknown(kind: str, name: str, known: Mapping[str, Any]) -> str:
    return f"unknown {kind} {name!r}{known_names(known)}"


def _policy_refs(cfg: TocsinConfig) -> Iterator[tuple[Loc, str]]:
    for name, policy in cfg.policies.items():
        for i, step in enumerate(policy.steps):
            yield from _check_step(cfg, step, ("policies", name, "steps", i))


def _matrix_refs(cfg: TocsinConfig, matrix_levels: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    for key, level in matrix_levels.items():
        if level.policy is not None and level.policy not in cfg.policies:
            yield (
                ("matrix", "levels", key, "policy"),
                _unknown("policy", level.policy, cfg.policies),
            )
        if level.policy is None:
            for i, step in enumerate(level.tiers):
                yield from _check_step(
                    cfg, step, ("matrix", "levels", key, "tiers", i), roles_optional=True
                )


def _role_refs(cfg: TocsinConfig) -> Iterator[tuple[Loc, str]]:
    for role, refs in cfg.roles.items():
        for i, ref in enumerate(refs):
            yield from _check_ref(cfg, ref, ("roles", role, i), bare="person")


def _team_refs(cfg: TocsinConfig) -> Iterator[tuple[Loc, str]]:
    for tname, team in cfg.teams.items():
        for i, member in enumerate(team.members):
            if member not in cfg.people:
                yield ("teams", tname, "members", i), _unknown("person", member, cfg.people)
        if team.schedule is not None and team.schedule not in cfg.schedules:
            message = _unknown("schedule", team.schedule, cfg.schedules)
            yield ("teams", tname, "schedule"), message


def _schedule_refs(cfg: TocsinConfig) -> Iterator[tuple[Loc, str]]:
    pd = cfg.adapters.pagerduty
    for sname, sched in cfg.schedules.items():
        if sched.pagerduty is not None and (pd is None or pd.api_token is None):
            yield (
                ("schedules", sname, "pagerduty"),
                "asking PagerDuty who is on call needs adapters.pagerduty.api_token",
            )
        for li, layer in enumerate(sched.layers):
            for mi, member in enumerate(layer.members):
                if member not in cfg.people:
                    loc: Loc = ("schedules", sname, "layers", li, "members", mi)
                    yield loc, _unknown("person", member, cfg.people)
        for oi, ov in enumerate(sched.overrides):
            for field, name in (("person", ov.person), ("replaces", ov.replaces)):
                if name is not None and name not in cfg.people:
                    loc = ("schedules", sname, "overrides", oi, field)
                    yield loc, _unknown("person", name, cfg.people)


def _default_refs(cfg: TocsinConfig) -> Iterator[tuple[Loc, str]]:
    default = cfg.rules.default
    if default is not None and default.policy is not None and default.policy not in cfg.policies:
        yield ("rules", "default", "policy"), _unknown("policy", default.policy, cfg.policies)
    if default is not None and default.team is not None and default.team not in cfg.teams:
        yield ("rules", "default", "team"), _unknown("team", default.team, cfg.teams)


def _check_step(
    cfg: TocsinConfig, step: Step, loc: Loc, roles_optional: bool = False
) -> Iterator[tuple[Loc, str]]:
    for i, ref in enumerate(step.notify):
        yield from _check_ref(
            cfg, ref, (*loc, "notify", i), bare="role", roles_optional=roles_optional
        )
    for i, channel in enumerate(step.via):
        # ``webhook:ops`` names one instance of a kind; whether it is configured is checked
        # with the adapters (no adapter is configured for channel ...).
        if channel.split(":", 1)[0] not in CHANNELS:
            yield (
                (*loc, "via", i),
                f"unknown channel {channel!r} (expected one of {', '.join(CHANNELS)},"
                " optionally as kind:instance)",
            )
    for field, cal in (
        ("during", step.during),
        ("at", step.at.partition(":")[0] if step.at else None),
    ):
        if cal is not None and cal not in cfg.calendars:
            yield (*loc, field), _unknown("calendar", cal, cfg.calendars)


def _check_ref(
    cfg: TocsinConfig, ref: str, loc: Loc, *, bare: str, roles_optional: bool = False
) -> Iterator[tuple[Loc, str]]:
    try:
        kind, name = parse_target(ref) if ":" in ref else (bare, ref)
    except ValueError as e:
        yield loc, str(e)
        return
    tables: dict[str, Mapping[str, Any]] = {
        "person": cfg.people,
        "role": cfg.roles,
        "schedule": cfg.schedules,
        "team": cfg.teams,
    }
    table = tables.get(kind)
    if table is None:
        return
    if name not in table:
        if kind == "role" and roles_optional:
            return  # a preset's role nobody filled in: reported at escalation time, not fatal
        yield loc, _unknown(kind, name, table)


def known_names(d: Mapping[str, Any]) -> str:
    """ " (known: a, b)" for an error message, or " (none are configured)"."""
    return f" (known: {', '.join(sorted(d))})" if d else " (none are configured)"
