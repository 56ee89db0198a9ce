"""The team most escalation tests page: five people, a weekly on-call rotation, four roles.

alice and bob rotate weekly on the ``primary`` schedule from Monday 2026-01-05 09:00 London;
carol is the lead, dave the manager, erin the VP; everyone is paged through the ``log`` channel.
At ``T0`` (Tuesday 2026-01-06 10:00 UTC, inside London business hours) alice is on call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.driver.app import App, MakeApp
from tests.driver.config import LONDON_BUSINESS_HOURS, write_config
from tests.driver.payloads import T0

__all__ = ["T0", "TEAM_RULES", "MakeTeamApp", "make_team_app", "team_config"]


TEAM_RULES = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity]
    continue: true
"""

_TEAM = """\
server:
  listen: "127.0.0.1:9095"
  public_url: "http://tocsin.test"
  log_format: text
people:
  alice: {name: Alice, channels: [log]}
  bob: {name: Bob, channels: [log]}
  carol: {name: Carol, channels: [log]}
  dave: {name: Dave, channels: [log]}
  erin: {name: Erin, channels: [log]}
schedules:
  primary:
    timezone: Europe/London
    members: [alice, bob]
    start: "2026-01-05T09:00:00"
    shift: 1w
roles:
  oncall: ["schedule:primary"]
  lead: ["person:carol"]
  manager: ["person:dave"]
  vp: ["person:erin"]
"""


def _body(section: str, body: str) -> dict[str, Any]:
    """A section given as its indented body (``policies``' entries, ``people``' entries)."""
    return dict(yaml.safe_load(f"{section}:\n{body}")) if body.strip() else {}


def team_config(
    tmp: Path,
    *,
    rules: str = "",
    policies: str = "",
    matrix: str = "",
    people: str = "",
    extra: str = "",
) -> Path:
    """The team's config in ``tmp``; returns its path.

    ``rules`` are appended to the rule file (YAML list items, indented two spaces); ``policies``
    is a ``policies:`` section body; ``matrix`` goes under ``matrix:`` after the preset;
    ``people`` replaces the people section's body; ``extra`` holds further top-level sections.
    """
    matrix_section = _body("matrix", "  preset: default\n" + matrix)
    return write_config(
        tmp,
        _TEAM,
        LONDON_BUSINESS_HOURS,
        matrix_section,
        _body("people", people),
        _body("policies", policies),
        extra,
        rules=TEAM_RULES + rules,
    )


MakeTeamApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_team_app(tmp_path: Path, make_app: MakeApp) -> AsyncIterator[MakeTeamApp]:
    """Factory: ``await make_team_app(start=..., **team_config kwargs)`` → a started App."""

    async def make(*, start: datetime = T0, **kwargs: Any) -> App:
        return await make_app(team_config(tmp_path, **kwargs), start=start)

    yield make
