"""A strict harness for escalation behaviour tests on the virtual clock.

Build a config for one severity preset (one distinct person per role any preset names, a
``business-hours`` calendar Mon-Fri 09:00-17:00 UTC, a rule trusting the ``severity`` label, a
SQLite store in ``tmp_path``), an Alertmanager v4 body, and read back what ``simulate`` paged:

    path = write_config(tmp_path, preset="pipeline-guard")
    sim = await simulate(load_config(path, env={}), payload("critical"), until=timedelta(hours=2))
    assert notifications(sim) == [(0.0, "role:oncall", "ollie", "log"), ...]

Strictness: tests compare the FULL list of notifications, so any page a test did not expect
fails it; ``no_error_logs`` fails a test that logged anything at ERROR or above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escalation.incidents.steps import level_tiers
from escalation.oncall.targets import parse_target
from router.simulate import SimEvent, Simulation
from rules.matrix import load_preset

__all__ = [
    "BUSINESS_HOURS_YAML",
    "FRIDAY_EVENING",
    "MONDAY_MORNING",
    "PRESETS",
    "ROLE_PEOPLE",
    "RULES_YAML",
    "events",
    "no_error_logs",
    "notifications",
    "payload",
    "person_of",
    "preset_roles",
    "reminders",
    "write_config",
]

PRESETS: tuple[str, ...] = (
    "llm-config-manager",
    "llm-marketplace",
    "llm-research-lab",
    "code-project",
    "pipeline-guard",
)
"""The five seed presets (the README's "Severity presets" section maps each to its seed document)."""

# One distinct person per role, so a notification's person says which tier paged it.
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
"""Role -> the one person the harness config maps it to."""

MONDAY_MORNING = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
"""Monday 10:00 UTC: inside business hours (``simulate``'s default start)."""

FRIDAY_EVENING = datetime(2026, 1, 9, 20, 0, tzinfo=UTC)
"""Friday 20:00 UTC: outside business hours; the next opening is Monday 09:00 (+61h)."""

BUSINESS_HOURS_YAML = """\
calendars:
  business-hours:
    timezone: UTC
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:00"
"""

RULES_YAML = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity]
"""


def person_of(role: str) -> str:
    """The person the harness config maps ``role`` to (KeyError for a role it does not know)."""
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


def _config_yaml(tmp_path: Path, preset: str, extra_yaml: str) -> str:
    missing = preset_roles(preset) - set(ROLE_PEOPLE)
    if missing:
        # A preset grew a role the harness cannot map: its pages would silently be skipped.
        raise ValueError(
            f"preset {preset!r} names roles the harness does not map: {sorted(missing)}"
        )
    people = "\n".join(
        f"  {p}: {{name: {p.title()}, email: {p}@example.com, phone: '+15550100', channels: [log]}}"
        for p in ROLE_PEOPLE.values()
    )
    roles = "\n".join(f"  {role}: ['person:{p}']" for role, p in ROLE_PEOPLE.items())
    return f"""\
auth:
  receiver:
    bearer_tokens: ["test-token"]
store:
  backend: sqlite
  path: {json.dumps(str(tmp_path / "tocsin.db"))}
matrix:
  preset: {preset}
rules:
  files: ["rules/*.yaml"]
{BUSINESS_HOURS_YAML}people:
{people}
roles:
{roles}
adapters:
  log: {{enabled: true}}
{extra_yaml}"""


def write_config(tmp_path: Path, *, preset: str, extra_yaml: str = "") -> Path:
    """Write ``tocsin.yaml`` and ``rules/severity.yaml`` for ``preset`` into ``tmp_path``.

    Every role any of the five presets names is mapped to its own person (``ROLE_PEOPLE``),
    each notified through the ``log`` channel unless a tier says ``via``. ``extra_yaml`` is
    appended at the top level (new sections only: YAML keys must not repeat).
    """
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "severity.yaml").write_text(RULES_YAML, encoding="utf-8")
    path = tmp_path / "tocsin.yaml"
    path.write_text(_config_yaml(tmp_path, preset, extra_yaml), encoding="utf-8")
    return path


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload(
    severity_label: str,
    *,
    alertname: str = "X",
    status: str = "firing",
    starts_at: datetime = datetime(2026, 1, 5, 9, 59, tzinfo=UTC),
    ends_at: datetime | None = None,
) -> bytes:
    """An Alertmanager v4 webhook body with one alert labelled ``severity=<severity_label>``."""
    labels = {"alertname": alertname, "severity": severity_label}
    end = ends_at if ends_at is not None else (starts_at if status == "resolved" else None)
    alert: dict[str, Any] = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{alertname} is {severity_label}"},
        "startsAt": _rfc3339(starts_at),
        "endsAt": _rfc3339(end) if end is not None else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
    }
    body = {
        "version": "4",
        "receiver": "tocsin",
        "status": status,
        "alerts": [alert],
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
    }
    return json.dumps(body).encode()


def events(sim: Simulation, kind: str) -> list[SimEvent]:
    """The events of one kind (``notify``, ``reminder``, ``resolve``...), in time order."""
    return [e for e in sim.events if e.event == kind]


def notifications(sim: Simulation) -> list[tuple[float, str, str, str]]:
    """Every page as ``(t seconds, target, person, channel)``, in time order."""
    return [
        (e.t, str(e.data["target"]), str(e.data["person"]), str(e.data["channel"]))
        for e in events(sim, "notify")
    ]


def reminders(sim: Simulation) -> list[float]:
    """The times (seconds from t=0) of every status-update reminder."""
    return [e.t for e in events(sim, "reminder")]


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if anything was logged at ERROR or above while it ran.

    Use with ``pytestmark = pytest.mark.usefixtures("no_error_logs")`` after importing it.
    """
    caplog.set_level(logging.INFO)
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    bad = [r for r in records if r.levelno >= logging.ERROR]
    if bad:
        lines = "\n".join(f"  {r.levelname} {r.name}: {r.getMessage()}" for r in bad)
        pytest.fail(
            f"{len(bad)} error-level log record(s) during the test:\n{lines}", pytrace=False
        )
