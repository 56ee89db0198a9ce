"""Each seed preset escalates exactly as its incident-response document prescribes.

For every level of the five presets, the real classifier, store and engine run on the virtual
clock (``router.simulate``) from Monday 10:00 UTC (inside business hours), in four scenarios:

(a) nobody acknowledges: every tier is paged at the time the document gives;
(b) someone acknowledges just before the first escalation: only tiers the acknowledgement does
    not cancel (those that stop on mitigate / resolve) still page;
(c) the alert resolves just before the first escalation: nobody is paged after it;
and, as the tables also say what a mitigation cancels, (d) mitigated just before it.

Each scenario compares the FULL list of ``(t, target, person, channel)`` notifications, so an
unexpected page fails it, and ``strict_logs`` fails any test that logged an error.

The tables below are transcribed from the seed documents in /work/shared/seeds (the quoted
phrase is the source of each time), NOT computed from rules/presets/*.yaml. Where a document
gives no cancelling condition, the ``unless`` column follows the README's "Severity presets" section's conventions
("not mitigated in N" -> mitigated, "unresolved / can't resolve in N" -> resolved, a tier at the
response time is the "nobody acknowledged" escalation -> acknowledged, a management tier given
only a time -> mitigated).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from config.load import load_config
from router.simulate import SimEvent, Simulation, simulate
from rules.matrix import load_preset
from tests.driver.payloads import severity_body as payload
from tests.driver.roles import (
    FRIDAY_EVENING,
    MONDAY_MORNING,
    PRESETS,
    person_of,
    preset_roles,
    roles_config,
)

pytestmark = pytest.mark.usefixtures("strict_logs")

MIN = 60
HOUR = 60 * MIN
# From Monday 10:00 UTC, the next business day opens Tuesday 09:00 UTC.
NEXT_BUSINESS_DAY = 23 * HOUR
# From Friday 20:00 UTC, business hours next open Monday 09:00 UTC.
MONDAY_OPENING = 61 * HOUR

ACK = "acknowledged"
MITIGATED = "mitigated"
RESOLVED = "resolved"


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


Notification = tuple[float, str, str, str]


@dataclass(frozen=True)
class Page:
    """One expected page: ``at`` seconds after the alert, to ``role``, over ``via``."""

    at: int
    role: str
    unless: str  # the status that cancels it if reached first
    via: str = "log"

    def notification(self) -> Notification:
        return (float(self.at), f"role:{self.role}", person_of(self.role), self.via)


@dataclass(frozen=True)
class Level:
    """One severity level of one preset, as its seed document describes it."""

    preset: str
    severity: str  # the alert's `severity` label: the document's own name for the level
    key: str  # the canonical level it maps to (the README's preset table)
    pages: tuple[Page, ...]
    act_at: int  # when (b) acknowledges and (c) resolves: just before the first escalation
    until: int  # long enough to pass every tier

    @property
    def id(self) -> str:
        return f"{self.preset}:{self.severity}"


def _expected(
    pages: tuple[Page, ...],
    *,
    acked_at: int | None = None,
    mitigated_at: int | None = None,
    resolved_at: int | None = None,
) -> list[Notification]:
    """The pages that fire: all before an action; after it, those it does not cancel."""
    out = []
    for p in pages:
        if resolved_at is not None and p.at >= resolved_at:
            continue
        if acked_at is not None and p.at >= acked_at and p.unless == ACK:
            continue
        if mitigated_at is not None and p.at >= mitigated_at and p.unless in (ACK, MITIGATED):
            continue
        out.append(p.notification())
    return sorted(out)


LEVELS: tuple[Level, ...] = (
    # ---- llm-config-manager: seed 000, "Escalation Matrix" table ------------------------------
    Level(
        "llm-config-manager",
        "Severity 1",
        "P1",
        (
            # "P1 | On-call (immediate)"; "Escalation: Page on-call immediately"
            Page(0, "oncall", ACK),
            # "Incident Commander (5 min)"; "P1: Alert incident commander"
            Page(5 * MIN, "incident-commander", RESOLVED),
            Page(15 * MIN, "vp", MITIGATED),  # "VP Engineering (15 min)"
        ),
        act_at=4 * MIN,
        until=2 * HOUR,
    ),
    Level(
        "llm-config-manager",
        "Severity 2",
        "P2",
        (
            # "Escalation: Notify on-call and team"; "P1/P2: Page on-call engineer"
            Page(0, "oncall", ACK),
            Page(0, "team", ACK),  # "Notify on-call and team"
            Page(30 * MIN, "lead", MITIGATED),  # "P2 | ... | Team Lead (30 min)"
            Page(2 * HOUR, "manager", MITIGATED),  # "Engineering Manager (2 hours)"
        ),
        act_at=29 * MIN,
        until=3 * HOUR,
    ),
    Level(
        "llm-config-manager",
        "Severity 3",
        "P3",
        (
            Page(0, "team", ACK),  # "Escalation: Team notification"; "P3 | Team (1 hour)"
            Page(4 * HOUR, "lead", MITIGATED),  # "Team Lead (4 hours)"
        ),
        act_at=4 * HOUR - MIN,
        until=5 * HOUR,
    ),
    Level(
        "llm-config-manager",
        "Severity 4",
        "P4",
        (
            # "Escalation: Normal workflow"; "P4 | Best effort | - | -": one email, never a call.
            Page(0, "team", ACK, via="email"),
        ),
        act_at=1 * MIN,
        until=2 * HOUR,
    ),
    # ---- llm-marketplace: seed 001, "Response SLA", "Automatic Escalation", "Escalation Ladder"
    Level(
        "llm-marketplace",
        "P0",
        "P0",
        (
            Page(0, "oncall", ACK),  # "Alert sent to on-call engineer"; "Tier 1 ... Immediate"
            # "Incident Declaration ... Page Incident Commander"
            Page(0, "incident-commander", RESOLVED),
            Page(0, "vp", RESOLVED),  # "P0 incident declared → Page VP Engineering immediately"
            Page(5 * MIN, "lead", ACK),  # "Acknowledgment: < 5 minutes"; "Tier 2: ... Team Lead"
        ),
        act_at=4 * MIN,
        until=1 * HOUR,
    ),
    Level(
        "llm-marketplace",
        "P1",
        "P1",
        (
            Page(0, "oncall", ACK),  # "Alert sent to on-call engineer"
            Page(0, "incident-commander", RESOLVED),  # "Page Incident Commander"
            # "Acknowledgment: < 15 minutes"; "Tier 2 ... < 15 minutes (P0/P1)"
            Page(15 * MIN, "lead", ACK),
            # "P1 unresolved after 2 hours → Escalate to Engineering Manager"
            Page(2 * HOUR, "manager", RESOLVED),
        ),
        act_at=14 * MIN,
        until=3 * HOUR,
    ),
    Level(
        "llm-marketplace",
        "P2",
        "P2",
        (
            Page(0, "oncall", ACK),  # "Alert sent to on-call engineer"
            # "P2 unresolved after 12 hours → Escalate to Team Lead"
            Page(12 * HOUR, "lead", RESOLVED),
        ),
        act_at=12 * HOUR - MIN,
        until=13 * HOUR,
    ),
    Level(
        "llm-marketplace",
        "P3",
        "P3",
        (
            # "Alert sent to on-call engineer"; "Escalation: None (unless blocked)"
            Page(0, "oncall", ACK),
        ),
        act_at=1 * MIN,
        until=8 * HOUR,
    ),
    # ---- llm-research-lab: seed 002, "Severity Levels" and "Escalation Matrix" tables ----------
    Level(
        "llm-research-lab",
        "SEV-1",
        "P0",
        (
            Page(0, "oncall", ACK),  # "Step 1: Acknowledge Alert ... This prevents escalation"
            # "SEV-1 | ... | 15 minutes"; "Primary ... Secondary"
            Page(15 * MIN, "oncall-secondary", ACK),
            # "SEV-1 not mitigated in 15 min | Engineering Manager | Phone"
            Page(15 * MIN, "manager", MITIGATED, via="phone"),
            # "SEV-1 not resolved in 1 hour | VP Engineering | Phone"
            Page(1 * HOUR, "vp", RESOLVED, via="phone"),
        ),
        act_at=14 * MIN,
        until=2 * HOUR,
    ),
    Level(
        "llm-research-lab",
        "SEV-2",
        "P1",
        (
            Page(0, "oncall", ACK),  # "Acknowledge Alert"
            Page(30 * MIN, "oncall-secondary", ACK),  # "SEV-2 | Major ... | 30 minutes"
        ),
        act_at=29 * MIN,
        until=2 * HOUR,
    ),
    Level(
        "llm-research-lab",
        "SEV-3",
        "P2",
        (
            Page(0, "oncall", ACK),  # "Acknowledge Alert"
            Page(2 * HOUR, "oncall-secondary", ACK),  # "SEV-3 | Minor ... | 2 hours"
        ),
        act_at=2 * HOUR - MIN,
        until=3 * HOUR,
    ),
    Level(
        "llm-research-lab",
        "SEV-4",
        "P3",
        (
            Page(0, "oncall", ACK),  # "Acknowledge Alert"
            Page(24 * HOUR, "oncall-secondary", ACK),  # "SEV-4 | Low ... | 24 hours"
        ),
        act_at=24 * HOUR - MIN,
        until=25 * HOUR,
    ),
    # ---- code-project: seed 003, levels, "Technical Escalation", "Management Escalation Timeline"
    Level(
        "code-project",
        "SEV1",
        "P0",
        (
            Page(0, "oncall", ACK),  # "Escalation: Immediate to on-call engineer and manager"
            Page(0, "manager", RESOLVED),  # "SEV1 | Immediate" (Manager Notification)
            # "Can't resolve in 30 mins (SEV1)" -> Level 2: Senior Engineer
            Page(30 * MIN, "senior-engineer", RESOLVED),
            Page(30 * MIN, "director", RESOLVED),  # "Director Notification ... 30 minutes"
            Page(1 * HOUR, "executive", RESOLVED),  # "Executive Notification ... 1 hour"
        ),
        act_at=29 * MIN,
        until=2 * HOUR,
    ),
    Level(
        "code-project",
        "SEV2",
        "P1",
        (
            Page(0, "oncall", ACK),  # "Escalation: On-call engineer"
            # "notify manager within 30 minutes"; "SEV2 | 30 minutes"
            Page(30 * MIN, "manager", RESOLVED),
            Page(2 * HOUR, "senior-engineer", RESOLVED),  # "Can't resolve in ... 2 hours (SEV2)"
            Page(2 * HOUR, "director", RESOLVED),  # "SEV2 | 30 minutes | 2 hours"
            Page(4 * HOUR, "executive", RESOLVED),  # "SEV2 | 30 minutes | 2 hours | 4 hours"
        ),
        act_at=29 * MIN,
        until=5 * HOUR,
    ),
    Level(
        "code-project",
        "SEV3",
        "P2",
        (
            Page(0, "oncall", ACK),  # "Escalation: On-call engineer handles"
            # "SEV3 | 2 hours" (Management Escalation Timeline); the level's own text says
            # "notify manager if extends >4 hours": the dedicated table is used (the README's "Severity presets" section).
            Page(2 * HOUR, "manager", RESOLVED),
            Page(8 * HOUR, "director", RESOLVED),  # "SEV3 | 2 hours | 8 hours"
            Page(24 * HOUR, "executive", RESOLVED),  # "If extended >24h"
        ),
        act_at=2 * HOUR - MIN,
        until=25 * HOUR,
    ),
    Level(
        "code-project",
        "SEV4",
        "P3",
        (
            # "Response Time: Next business day"; "Escalation: Regular team triage"
            Page(NEXT_BUSINESS_DAY, "team", ACK),
            Page(NEXT_BUSINESS_DAY, "manager", RESOLVED),  # "SEV4 | Next business day"
        ),
        act_at=NEXT_BUSINESS_DAY - MIN,
        until=NEXT_BUSINESS_DAY + HOUR,
    ),
    # ---- pipeline-guard: seed 004, "Escalation Matrix" (Role | SEV-1 | SEV-2 | SEV-3 | SEV-4)
    Level(
        "pipeline-guard",
        "SEV-1",
        "P0",
        (
            Page(0, "oncall", ACK),  # "On-call Engineer | Immediate"
            # "Team Lead | 15 min"; "Response Time: Immediate (< 15 minutes)"
            Page(15 * MIN, "lead", ACK),
            Page(30 * MIN, "manager", MITIGATED),  # "Engineering Manager | 30 min"
            Page(1 * HOUR, "vp", MITIGATED),  # "CTO/VP Engineering | 1 hour"
        ),
        act_at=14 * MIN,
        until=2 * HOUR,
    ),
    Level(
        "pipeline-guard",
        "SEV-2",
        "P1",
        (
            Page(0, "oncall", ACK),  # "On-call Engineer | Immediate | Immediate"
            Page(1 * HOUR, "lead", ACK),  # "Team Lead | 15 min | 1 hour"; "Response Time: < 1 hour"
            Page(4 * HOUR, "manager", MITIGATED),  # "Engineering Manager | 30 min | 4 hours"
            Page(NEXT_BUSINESS_DAY, "vp", MITIGATED),  # "CTO/VP Engineering | 1 hour | Next day"
        ),
        act_at=1 * HOUR - MIN,
        until=NEXT_BUSINESS_DAY + HOUR,
    ),
    Level(
        "pipeline-guard",
        "SEV-3",
        "P2",
        (
            # "On-call Engineer | ... | Business hours" (Monday 10:00 is inside)
            Page(0, "oncall", ACK),
            Page(4 * HOUR, "lead", ACK),  # "Team Lead | ... | 4 hours"; "Response Time: < 4 hours"
            Page(NEXT_BUSINESS_DAY, "manager", MITIGATED),  # "Engineering Manager | ... | Next day"
        ),
        act_at=4 * HOUR - MIN,
        until=NEXT_BUSINESS_DAY + HOUR,
    ),
    Level(
        "pipeline-guard",
        "SEV-4",
        "P3",
        (
            Page(0, "oncall", ACK),  # "On-call Engineer | ... | Business hours"
            Page(NEXT_BUSINESS_DAY, "lead", ACK),  # "Team Lead | ... | Next day"
        ),
        act_at=NEXT_BUSINESS_DAY - MIN,
        until=NEXT_BUSINESS_DAY + HOUR,
    ),
)


async def _run(
    tmp_path: Path,
    preset: str,
    severity: str,
    *,
    until: int,
    ack_at: int | None = None,
    mitigate_at: int | None = None,
    resolve_at: int | None = None,
    start: datetime = MONDAY_MORNING,
) -> Simulation:
    loaded = load_config(roles_config(tmp_path, preset=preset), env={})
    return await simulate(
        loaded,
        payload(severity, starts_at=start - timedelta(minutes=1)),
        ack_at=timedelta(seconds=ack_at) if ack_at is not None else None,
        mitigate_at=timedelta(seconds=mitigate_at) if mitigate_at is not None else None,
        resolve_at=timedelta(seconds=resolve_at) if resolve_at is not None else None,
        until=timedelta(seconds=until),
        start=start,
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_every_level_of_every_preset_is_covered(preset: str) -> None:
    """The tables name every level the preset defines and every role its tiers page."""
    matrix = load_preset(preset)
    covered = {matrix.resolve(lv.severity) for lv in LEVELS if lv.preset == preset}
    assert covered == set(matrix.levels)
    paged = {p.role for lv in LEVELS if lv.preset == preset for p in lv.pages}
    assert paged == preset_roles(preset)


@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.id)
async def test_no_ack_pages_every_tier_on_time(tmp_path: Path, level: Level) -> None:
    """(a) Nobody acknowledges: every tier pages at the time the document gives, and no one else."""
    sim = await _run(tmp_path, level.preset, level.severity, until=level.until)

    assert [e.severity for e in events(sim, "open")] == [level.key]  # one incident, this level
    assert sorted(notifications(sim)) == _expected(level.pages)
    assert events(sim, "skip") == []  # every role resolved to its person
    assert events(sim, "resolve") == []


@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.id)
async def test_ack_before_first_escalation_stops_only_ack_tiers(
    tmp_path: Path, level: Level
) -> None:
    """(b) An ack just before the first escalation cancels the "nobody acknowledged" tiers only."""
    sim = await _run(tmp_path, level.preset, level.severity, until=level.until, ack_at=level.act_at)

    assert [e.t for e in events(sim, "ack")] == [float(level.act_at)]
    assert sorted(notifications(sim)) == _expected(level.pages, acked_at=level.act_at)


@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.id)
async def test_resolve_before_first_escalation_stops_everything(
    tmp_path: Path, level: Level
) -> None:
    """(c) The alert resolves before the first escalation: nobody is paged or reminded after."""
    sim = await _run(
        tmp_path, level.preset, level.severity, until=level.until, resolve_at=level.act_at
    )

    assert [e.t for e in events(sim, "resolve")] == [float(level.act_at)]
    assert sorted(notifications(sim)) == _expected(level.pages, resolved_at=level.act_at)
    assert [t for t in reminders(sim) if t >= level.act_at] == []


@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.id)
async def test_mitigate_before_first_escalation_leaves_only_resolve_tiers(
    tmp_path: Path, level: Level
) -> None:
    """Mitigated before the first escalation: only tiers waiting for the resolution still page."""
    sim = await _run(
        tmp_path, level.preset, level.severity, until=level.until, mitigate_at=level.act_at
    )

    assert [e.t for e in events(sim, "mitigate")] == [float(level.act_at)]
    assert sorted(notifications(sim)) == _expected(level.pages, mitigated_at=level.act_at)


# ---- outside business hours: the alert fires on Friday 20:00 UTC ----------------------------


@dataclass(frozen=True)
class AfterHours:
    """A level with `during` / `at` tiers, started outside business hours."""

    preset: str
    severity: str
    pages: tuple[Page, ...]
    deferred: tuple[tuple[int, int], ...]  # (t, tier) of each "deferred" timeline entry
    until: int

    @property
    def id(self) -> str:
        return f"{self.preset}:{self.severity}"


AFTER_HOURS: tuple[AfterHours, ...] = (
    AfterHours(
        "code-project",
        "SEV4",
        (
            Page(MONDAY_OPENING, "team", ACK),  # "Response Time: Next business day" -> Monday 09:00
            Page(MONDAY_OPENING, "manager", RESOLVED),  # "SEV4 | Next business day"
        ),
        deferred=(),  # `at` tiers are planned at the opening; nothing needs deferring
        until=MONDAY_OPENING + HOUR,
    ),
    AfterHours(
        "pipeline-guard",
        "SEV-2",
        (
            # "On-call Engineer | ... | Immediate": not business-hours bound
            Page(0, "oncall", ACK),
            Page(1 * HOUR, "lead", ACK),  # "Team Lead | ... | 1 hour"
            Page(4 * HOUR, "manager", MITIGATED),  # "Engineering Manager | ... | 4 hours"
            # "CTO/VP Engineering | ... | Next day": Monday 09:00
            Page(MONDAY_OPENING, "vp", MITIGATED),
        ),
        deferred=(),
        until=MONDAY_OPENING + HOUR,
    ),
    AfterHours(
        "pipeline-guard",
        "SEV-3",
        (
            Page(MONDAY_OPENING, "oncall", ACK),  # "On-call Engineer | ... | Business hours"
            # "Team Lead | ... | 4 hours" falls on Saturday 00:00, deferred to Monday's opening.
            Page(MONDAY_OPENING, "lead", ACK),
            Page(MONDAY_OPENING, "manager", MITIGATED),  # "Engineering Manager | ... | Next day"
        ),
        deferred=((0, 0), (4 * HOUR, 1)),
        until=MONDAY_OPENING + HOUR,
    ),
    AfterHours(
        "pipeline-guard",
        "SEV-4",
        (
            Page(MONDAY_OPENING, "oncall", ACK),  # "On-call Engineer | ... | Business hours"
            Page(MONDAY_OPENING, "lead", ACK),  # "Team Lead | ... | Next day"
        ),
        deferred=((0, 0),),
        until=MONDAY_OPENING + HOUR,
    ),
)


@pytest.mark.parametrize("case", AFTER_HOURS, ids=lambda c: c.id)
async def test_outside_business_hours_pages_are_deferred_to_monday(
    tmp_path: Path, case: AfterHours
) -> None:
    """Friday 20:00: business-hours tiers wait for Monday 09:00 (deferred, never dropped)."""
    sim = await _run(tmp_path, case.preset, case.severity, until=case.until, start=FRIDAY_EVENING)

    assert sorted(notifications(sim)) == _expected(case.pages)
    deferred = [(e.t, e.data["tier"]) for e in sim.all_events if e.event == "deferred"]
    assert deferred == [(float(t), tier) for t, tier in case.deferred]


# ---- status-update reminders (reminder events, not pages) ------------------------------------


@dataclass(frozen=True)
class Cadence:
    """Expected status-update reminder times for one level with nobody acknowledging."""

    preset: str
    severity: str
    start: datetime
    until: int
    times: tuple[int, ...]

    @property
    def id(self) -> str:
        day = "friday" if self.start == FRIDAY_EVENING else "monday"
        return f"{self.preset}:{self.severity}:{day}"


def _every(first: int, step: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1, step))


CADENCES: tuple[Cadence, ...] = (
    # seed 000: "Initial Notification (within 30 minutes)"; "Update every 30 minutes (P1)"
    Cadence(
        "llm-config-manager",
        "Severity 1",
        MONDAY_MORNING,
        2 * HOUR + 10 * MIN,
        _every(30 * MIN, 30 * MIN, 2 * HOUR),
    ),
    # seed 001: "Updates: Every 15 minutes"; "P0: Every 15 minutes"
    Cadence(
        "llm-marketplace", "P0", MONDAY_MORNING, HOUR + 10 * MIN, _every(15 * MIN, 15 * MIN, HOUR)
    ),
    # seed 002: "We will provide updates every [15/30] minutes" (15 for SEV-1)
    Cadence(
        "llm-research-lab",
        "SEV-1",
        MONDAY_MORNING,
        HOUR + 10 * MIN,
        _every(15 * MIN, 15 * MIN, HOUR),
    ),
    # seed 003: "SEV1 | Immediate | Every 15 minutes" (Initial Response | Update Frequency)
    Cadence("code-project", "SEV1", MONDAY_MORNING, HOUR + 10 * MIN, _every(0, 15 * MIN, HOUR)),
    # seed 004: "SEV-1: Every 15 minutes during active response"
    Cadence(
        "pipeline-guard", "SEV-1", MONDAY_MORNING, HOUR + 10 * MIN, _every(15 * MIN, 15 * MIN, HOUR)
    ),
    # seed 004: "SEV-2: Every 30 minutes during business hours": 10:30 .. 16:30 on Monday, none
    # from the 17:00 close, then Tuesday from the 09:00 opening (23h) every 30 minutes again.
    Cadence(
        "pipeline-guard",
        "SEV-2",
        MONDAY_MORNING,
        24 * HOUR + 10 * MIN,
        _every(30 * MIN, 30 * MIN, 6 * HOUR + 30 * MIN) + _every(23 * HOUR, 30 * MIN, 24 * HOUR),
    ),
    # Friday 20:00: the first update waits for Monday 09:00, then every 30 minutes (no burst of
    # the weekend's missed slots).
    Cadence(
        "pipeline-guard",
        "SEV-2",
        FRIDAY_EVENING,
        MONDAY_OPENING + HOUR + 40 * MIN,
        _every(MONDAY_OPENING, 30 * MIN, MONDAY_OPENING + HOUR + 30 * MIN),
    ),
)


@pytest.mark.parametrize("case", CADENCES, ids=lambda c: c.id)
async def test_status_update_reminders_follow_the_documented_cadence(
    tmp_path: Path, case: Cadence
) -> None:
    """Reminders come at the cadence the document gives for the level, and only then."""
    sim = await _run(tmp_path, case.preset, case.severity, until=case.until, start=case.start)

    assert reminders(sim) == [float(t) for t in case.times]
