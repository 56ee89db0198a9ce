"""One distinct person per role any seed preset names, so a page's person says which tier paged.

``roles_config(tmp, preset=...)`` writes the config for one severity preset: every role mapped
to its own person (``ROLE_PEOPLE``), each paged through the ``log`` channel unless a tier says
``via``; a ``business-hours`` calendar Mon-Fri 09:00-17:00 UTC; a rule trusting the
``severity`` label; a SQLite store in ``tmp``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from escalation.incidents.steps import level_tiers
from escalation.oncall.targets import parse_target
from rules.matrix import load_preset
from tests.driver.config import Section, write_config

__all__ = [
    "FRIDAY_EVENING",
    "MONDAY_MORNING",
    "PRESETS",
    "ROLE_PEOPLE",
    "person_of",
    "preset_roles",
    "roles_config",
]

PRESETS: tuple[str, ...] = (
    "llm-config-manager",
    "llm-marketplace",
    "llm-research-lab",
    "code-project",
    "pipeline-guard",
)
"""The five seed presets (the README's "Severity presets" section maps each to its seed document)."""

ROLE_PEOPLE: dict[str, str] = {
    "oncall": "ollie",
    "oncall-secondary": "sasha",
    "team": "tess",
    "lead": "lee",
    "senior-engineer": "sid",
    "manager": "max",
    "director": "dora",
    "vp": "vic",
    "executive": "eve",
    "incident-commander": "ivy",
}
"""Role -> the one person the config maps it to."""

MONDAY_MORNING = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
"""Monday 10:00 UTC: inside business hours (``simulate``'s default start)."""

FRIDAY_EVENING = datetime(2026, 1, 9, 20, 0, tzinfo=UTC)
"""Friday 20:00 UTC: outside business hours; the next opening is Monday 09:00 (+61h)."""

_SEVERITY_RULE = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity]
"""


def person_of(role: str) -> str:
    """The person the config maps ``role`` to (KeyError for a role it does not know)."""
    return ROLE_PEOPLE[role]


def preset_roles(preset: str) -> set[str]:
    """Every role the preset's tiers name (``role:x`` targets and bare names)."""
    out: set[str] = set()
    for level in load_preset(preset).levels.values():
        for step in level_tiers(level).tiers:
            for ref in step.notify:
                kind, name = parse_target(ref)
                if kind == "role":
                    out.add(name)
    return out


def roles_config(tmp: Path, *, preset: str, extra: Section = None) -> Path:
    """Write the config for ``preset`` (and ``rules/severity.yaml``) into ``tmp``.

    ``extra`` holds further top-level sections.
    """
    missing = preset_roles(preset) - set(ROLE_PEOPLE)
    if missing:
        # A preset grew a role the config cannot map: its pages would silently be skipped.
        raise ValueError(
            f"preset {preset!r} names roles the config does not map: {sorted(missing)}"
        )
    people = {
        p: {
            "name": p.title(),
            "email": f"{p}@example.com",
            "phone": "+15550100",
            "channels": ["log"],
            # A preset tier's own channel (``via: [phone]``) has no adapter here: check accepts
            # it because the page falls back to ``log``.
            "fallback": ["log"],
        }
        for p in ROLE_PEOPLE.values()
    }
    sections = {
        "auth": {"receiver": {"bearer_tokens": ["test-token"]}},
        "matrix": {"preset": preset},
        "rules": {"files": ["rules/*.yaml"]},
        "calendars": {
            "business-hours": {
                "timezone": "UTC",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "hours": "09:00-17:00",
            }
        },
        "people": people,
        "roles": {role: [f"person:{p}"] for role, p in ROLE_PEOPLE.items()},
        "adapters": {"log": {"enabled": True}},
        "server": None,
    }
    return write_config(tmp, sections, extra, rules=_SEVERITY_RULE, rule_file="severity.yaml")
