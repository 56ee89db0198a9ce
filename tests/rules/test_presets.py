"""Each built-in preset against its seed document.

The expected values below are transcribed from the incident-response procedures in
/work/shared/seeds (quoted next to each entry), not copied from the YAML. Where a document is
ambiguous the choice recorded in the README's "Severity presets" section is what is expected here.
"""

from __future__ import annotations

import re
from datetime import timedelta
from importlib import resources
from typing import Any

import pytest

from escalation.incidents.steps import Step, level_tiers
from rules.matrix import Matrix, load_preset


def m(n: float) -> timedelta:
    return timedelta(minutes=n)


def h(n: float) -> timedelta:
    return timedelta(hours=n)


def d(n: float) -> timedelta:
    return timedelta(days=n)


ZERO = timedelta(0)
ACK = "acknowledged"
MIT = "mitigated"
RES = "resolved"
BH = "business-hours"
NEXT_DAY = "business-hours:next-day"

Tier = tuple[timedelta, tuple[str, ...], str | None, str | None, str | None, tuple[str, ...]]


def T(
    after: timedelta,
    *targets: str,
    unless: str | None = ACK,
    at: str | None = None,
    during: str | None = None,
    via: tuple[str, ...] = (),
) -> Tier:
    """An expected tier: (after, targets, unless, at, during, via)."""
    return (after, targets, unless, at, during, via)


def tiers_of(steps: list[Step]) -> list[Tier]:
    return [(s.after, tuple(s.notify), s.unless, s.at, s.during, tuple(s.via)) for s in steps]


FIELDS = (
    "name",
    "ack_target",
    "first_update",
    "update_every",
    "update_during",
    "resolve_target",
    "review_due",
    "review_required",
    "monitoring_window",
    "pagerduty_severity",
    "incident_channel",
    "incident_channel_prefix",
)


def L(
    name: str,
    *,
    ack: timedelta | None,
    update: timedelta | None,
    resolve: timedelta | None = None,
    review: timedelta | None = None,
    required: bool = False,
    monitor: timedelta = ZERO,
    pd: str,
    first: timedelta | None = None,
    update_during: str | None = None,
    channel: bool = False,
    prefix: str = "incident",
    tiers: list[Tier],
) -> dict[str, Any]:
    """An expected level."""
    return {
        "name": name,
        "ack_target": ack,
        "first_update": first,
        "update_every": update,
        "update_during": update_during,
        "resolve_target": resolve,
        "review_due": review,
        "review_required": required,
        "monitoring_window": monitor,
        "pagerduty_severity": pd,
        "incident_channel": channel,
        "incident_channel_prefix": prefix,
        "tiers": tiers,
    }


# --- 000: LLM Config Manager ------------------------------------------------------------------
# Levels "Severity 1 (Critical) - P1" … "Severity 4 (Low) - P4" keep the document's own P keys.
LLM_CONFIG_MANAGER = {
    "P1": L(
        "Severity 1",
        ack=m(5),  # "Response Time: Immediate (within 5 minutes)"
        first=m(30),  # "Initial Notification (within 30 minutes)"
        update=m(30),  # "Update every 30 minutes (P1)"
        review=d(7),  # "Within 5 business days" (a Mon-Fri week)
        required=True,  # "Full post-mortem will be published within 5 business days"
        monitor=h(1),  # "Monitor for 1 hour without issues"
        pd="critical",
        channel=True,  # "P1/P2: ... Create incident channel / Slack: #incident-YYYYMMDD-HHMM"
        tiers=[
            T(ZERO, "role:oncall"),  # "On-call (immediate)"
            T(m(5), "role:incident-commander", unless=RES),  # "Incident Commander (5 min)"
            T(m(15), "role:vp", unless=MIT),  # "VP Engineering (15 min)"
        ],
    ),
    "P2": L(
        "Severity 2",
        ack=m(15),  # "Response Time: Within 15 minutes"
        first=m(30),
        update=h(1),  # "Update every ... 1 hour (P2)"
        review=d(7),
        required=True,
        monitor=h(1),
        pd="error",
        channel=True,  # "P1/P2: ... Create incident channel / Slack: #incident-YYYYMMDD-HHMM"
        tiers=[
            T(ZERO, "role:oncall", "role:team"),  # "Notify on-call and team"
            T(m(30), "role:lead", unless=MIT),  # "Team Lead (30 min)"
            T(h(2), "role:manager", unless=MIT),  # "Engineering Manager (2 hours)"
        ],
    ),
    "P3": L(
        "Severity 3",
        ack=h(1),  # "Response Time: Within 1 hour"
        update=d(1),  # "Daily updates"
        review=d(7),
        monitor=h(1),
        pd="warning",
        tiers=[
            T(ZERO, "role:team"),  # "Team (1 hour)"
            T(h(4), "role:lead", unless=MIT),  # "Team Lead (4 hours)"
        ],
    ),
    "P4": L(
        "Severity 4",
        ack=None,  # "Best effort"
        update=None,  # "As needed"
        review=d(7),
        monitor=h(1),
        pd="info",
        tiers=[T(ZERO, "role:team", via=("email",))],  # "Normal workflow"
    ),
}

# --- 001: LLM-Marketplace ---------------------------------------------------------------------
LLM_MARKETPLACE = {
    "P0": L(
        "P0",
        ack=m(5),  # "Acknowledgment: < 5 minutes"
        update=m(15),  # "Updates: Every 15 minutes"
        resolve=h(1),  # "Resolution Target: < 1 hour"
        review=h(24),  # "P0: Within 24 hours"
        required=True,
        monitor=h(1),  # "Watch metrics for 1 hour (P0/P1)"
        pd="critical",
        channel=True,  # "Incident Commander Actions: ... Create war room (Slack channel)"
        tiers=[
            T(ZERO, "role:oncall"),  # "Tier 1: On-Call Engineer ... Immediate"
            T(ZERO, "role:incident-commander", unless=RES),  # "Page Incident Commander"
            T(ZERO, "role:vp", unless=RES),  # "Page VP Engineering immediately"
            T(m(5), "role:lead"),  # not acknowledged within "< 5 minutes" -> Tier 2
        ],
    ),
    "P1": L(
        "P1",
        ack=m(15),  # "Acknowledgment: < 15 minutes"
        update=m(30),  # "Updates: Every 30 minutes"
        resolve=h(4),  # "Resolution Target: < 4 hours"
        review=d(3),  # "P1: Within 3 days"
        required=True,
        monitor=h(1),  # "Watch metrics for 1 hour (P0/P1)"
        pd="error",
        channel=True,  # "Incident Commander Actions: ... Create war room (Slack channel)"
        tiers=[
            T(ZERO, "role:oncall"),
            T(ZERO, "role:incident-commander", unless=RES),
            T(m(15), "role:lead"),  # Tier 2 "Response: < 15 minutes (P0/P1)"
            T(h(2), "role:manager", unless=RES),  # "P1 unresolved after 2 hours"
        ],
    ),
    "P2": L(
        "P2",
        ack=h(1),  # "Acknowledgment: < 1 hour"
        update=h(2),  # "Updates: Every 2 hours"
        resolve=h(24),  # "Resolution Target: < 24 hours"
        review=d(7),  # "P2: Within 1 week"
        required=True,
        pd="warning",
        channel=True,  # "Incident Commander Actions: ... Create war room (Slack channel)"
        tiers=[
            T(ZERO, "role:oncall"),
            T(h(12), "role:lead", unless=RES),  # "P2 unresolved after 12 hours"
        ],
    ),
    "P3": L(
        "P3",
        ack=h(4),  # "Acknowledgment: < 4 hours"
        update=d(1),  # "Updates: Daily"
        resolve=d(7),  # "Resolution Target: < 1 week"
        review=None,  # "P3: Optional"
        pd="info",
        channel=True,  # "Incident Commander Actions: ... Create war room (Slack channel)"
        tiers=[T(ZERO, "role:oncall")],  # "Escalation: None (unless blocked)"
    ),
}

# --- 002: LLM Research Lab --------------------------------------------------------------------
LLM_RESEARCH_LAB = {
    "P0": L(
        "SEV-1",
        ack=m(15),  # "SEV-1 | Critical ... | 15 minutes"
        update=m(15),  # "updates every [15/30] minutes"
        required=True,
        monitor=m(15),  # "Monitor error rates for 15 minutes"
        pd="critical",
        channel=True,  # "Step 3: Declare Incident / Create incident channel (Slack)"
        prefix="inc",  # "Naming: #inc-YYYYMMDD-short-description"
        tiers=[
            T(ZERO, "role:oncall"),
            T(m(15), "role:oncall-secondary"),
            T(m(15), "role:manager", unless=MIT, via=("phone",)),  # "not mitigated in 15 min"
            T(h(1), "role:vp", unless=RES, via=("phone",)),  # "not resolved in 1 hour"
        ],
    ),
    "P1": L(
        "SEV-2",
        ack=m(30),  # "SEV-2 | Major ... | 30 minutes"
        update=m(30),
        required=True,
        monitor=m(15),
        pd="error",
        channel=True,  # "Step 3: Declare Incident / Create incident channel (Slack)"
        prefix="inc",  # "Naming: #inc-YYYYMMDD-short-description"
        tiers=[T(ZERO, "role:oncall"), T(m(30), "role:oncall-secondary")],
    ),
    "P2": L(
        "SEV-3",
        ack=h(2),  # "SEV-3 | Minor ... | 2 hours"
        update=None,
        required=True,
        monitor=m(15),
        pd="warning",
        channel=True,  # "Step 3: Declare Incident / Create incident channel (Slack)"
        prefix="inc",  # "Naming: #inc-YYYYMMDD-short-description"
        tiers=[T(ZERO, "role:oncall"), T(h(2), "role:oncall-secondary")],
    ),
    "P3": L(
        "SEV-4",
        ack=h(24),  # "SEV-4 | Low ... | 24 hours"
        update=None,
        monitor=m(15),
        pd="info",
        channel=True,  # "Step 3: Declare Incident / Create incident channel (Slack)"
        prefix="inc",  # "Naming: #inc-YYYYMMDD-short-description"
        tiers=[T(ZERO, "role:oncall"), T(h(24), "role:oncall-secondary")],
    ),
}

# --- 003: CODE project ------------------------------------------------------------------------
CODE_PROJECT = {
    "P0": L(
        "SEV1",
        ack=m(5),  # "Response Time: Immediate (within 5 minutes)"
        first=ZERO,  # "Initial Response: Immediate"
        update=m(15),  # "Every 15 minutes"
        review=h(48),  # "Within 48 hours for SEV1/SEV2"
        required=True,
        monitor=h(2),  # "SEV1: Monitor for 2 hours after resolution"
        pd="critical",
        channel=True,  # "Set up war room if SEV1/SEV2 / /join #incident-YYYY-MM-DD-HHMMSS"
        tiers=[
            T(ZERO, "role:oncall"),  # "Immediate to on-call engineer and manager"
            T(ZERO, "role:manager", unless=RES),  # "Manager Notification: Immediate"
            T(m(30), "role:senior-engineer", unless=RES),  # "Can't resolve in 30 mins (SEV1)"
            T(m(30), "role:director", unless=RES),  # "Director Notification: 30 minutes"
            T(h(1), "role:executive", unless=RES),  # "Executive Notification: 1 hour"
        ],
    ),
    "P1": L(
        "SEV2",
        ack=m(30),  # "Response Time: 30 minutes"
        first=m(15),  # "Initial Response: 15 minutes"
        update=m(30),  # "Every 30 minutes"
        review=h(48),
        required=True,
        monitor=h(1),  # "SEV2: Monitor for 1 hour after resolution"
        pd="error",
        channel=True,  # "Set up war room if SEV1/SEV2 / /join #incident-YYYY-MM-DD-HHMMSS"
        tiers=[
            T(ZERO, "role:oncall"),
            T(m(30), "role:manager", unless=RES),  # "notify manager within 30 minutes"
            T(h(2), "role:senior-engineer", unless=RES),  # "or 2 hours (SEV2)"
            T(h(2), "role:director", unless=RES),  # "Director Notification: 2 hours"
            T(h(4), "role:executive", unless=RES),  # "Executive Notification: 4 hours"
        ],
    ),
    "P2": L(
        "SEV3",
        ack=h(2),  # "Response Time: 2 hours"
        first=m(30),  # "Initial Response: 30 minutes"
        update=h(1),  # "Every hour"
        monitor=m(30),  # "SEV3: Monitor for 30 minutes after resolution"
        pd="warning",
        tiers=[
            T(ZERO, "role:oncall"),  # "On-call engineer handles"
            T(h(2), "role:manager", unless=RES),  # "Manager Notification: 2 hours"
            T(h(8), "role:director", unless=RES),  # "Director Notification: 8 hours"
            T(h(24), "role:executive", unless=RES),  # "If extended >24h"
        ],
    ),
    "P3": L(
        "SEV4",
        ack=None,  # "Next business day"
        update=None,  # "As needed"
        pd="info",
        tiers=[
            T(ZERO, "role:team", at=NEXT_DAY),  # "Regular team triage", "Next business day"
            T(ZERO, "role:manager", unless=RES, at=NEXT_DAY),  # "Next business day"
        ],
    ),
}

# --- 004: Self-Healing Pipeline Guard ---------------------------------------------------------
# No incident channel at any level: "#incident-response: Primary coordination channel" is one
# standing channel (a `slack:` target), not one per incident.
PIPELINE_GUARD = {
    "P0": L(
        "SEV-1",
        ack=m(15),  # "Response Time: Immediate (< 15 minutes)"
        update=m(15),  # "SEV-1: Every 15 minutes during active response"
        review=d(7),  # "Post-Incident Review (1-7 days)"
        required=True,
        monitor=h(24),  # "24-hour observation period for SEV-1 incidents"
        pd="critical",
        tiers=[
            T(ZERO, "role:oncall"),  # "On-call Engineer | Immediate"
            T(m(15), "role:lead"),  # "Team Lead | 15 min"
            T(m(30), "role:manager", unless=MIT),  # "Engineering Manager | 30 min"
            T(h(1), "role:vp", unless=MIT),  # "CTO/VP Engineering | 1 hour"
        ],
    ),
    "P1": L(
        "SEV-2",
        ack=h(1),  # "Response Time: < 1 hour"
        update=m(30),  # "SEV-2: Every 30 minutes during business hours"
        update_during=BH,
        review=d(7),
        required=True,
        pd="error",
        tiers=[
            T(ZERO, "role:oncall"),  # "Immediate"
            T(h(1), "role:lead"),  # "1 hour"
            T(h(4), "role:manager", unless=MIT),  # "4 hours"
            T(ZERO, "role:vp", unless=MIT, at=NEXT_DAY),  # "Next day"
        ],
    ),
    "P2": L(
        "SEV-3",
        ack=h(4),  # "Response Time: < 4 hours"
        update=h(2),  # "SEV-3: Every 2 hours during business hours"
        update_during=BH,
        review=d(7),
        pd="warning",
        tiers=[
            T(ZERO, "role:oncall", during=BH),  # "Business hours"
            T(h(4), "role:lead", during=BH),  # "4 hours"
            T(ZERO, "role:manager", unless=MIT, at=NEXT_DAY),  # "Next day"
            # CTO/VP "Weekly review": not a page
        ],
    ),
    "P3": L(
        "SEV-4",
        ack=None,  # "Response Time: Next business day"
        update=d(1),  # "SEV-4: Daily during business hours"
        update_during=BH,
        review=d(7),
        pd="info",
        tiers=[
            T(ZERO, "role:oncall", during=BH),  # "Business hours"
            T(ZERO, "role:lead", at=NEXT_DAY),  # "Next day"
            # Engineering Manager "Weekly review", CTO/VP "Monthly review": not pages
        ],
    ),
}

PRESETS: dict[str, tuple[str, str, dict[str, dict[str, Any]]]] = {
    # name: (seed file, default level, levels)
    "llm-config-manager": ("000_690b3079f78f2dcd.txt", "P3", LLM_CONFIG_MANAGER),
    "llm-marketplace": ("001_dc435a52a30d622e.txt", "P2", LLM_MARKETPLACE),
    "llm-research-lab": ("002_fbd9c14edb59a6dc.txt", "P2", LLM_RESEARCH_LAB),
    "code-project": ("003_86538fddb14bdfcf.txt", "P2", CODE_PROJECT),
    "pipeline-guard": ("004_3cb75c3fc32d4c07.txt", "P2", PIPELINE_GUARD),
}

LEVEL_CASES = [(p, k) for p, (_, _, levels) in PRESETS.items() for k in levels]


@pytest.fixture(scope="module")
def presets() -> dict[str, Matrix]:
    return {name: load_preset(name) for name in PRESETS}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_header(presets: dict[str, Matrix], preset: str) -> None:
    source, default, levels = PRESETS[preset]
    mx = presets[preset]
    assert mx.name == preset
    assert mx.source == source
    assert mx.title != ""
    assert mx.default_level == default
    assert mx.level_keys() == list(levels)


@pytest.mark.parametrize(("preset", "key"), LEVEL_CASES)
def test_level_numbers(presets: dict[str, Matrix], preset: str, key: str) -> None:
    want = PRESETS[preset][2][key]
    level = presets[preset].levels[key]
    got = {f: getattr(level, f) for f in FIELDS}
    assert got == {f: want[f] for f in FIELDS}


@pytest.mark.parametrize(("preset", "key"), LEVEL_CASES)
def test_level_tiers(presets: dict[str, Matrix], preset: str, key: str) -> None:
    level = presets[preset].levels[key]
    steps = level_tiers(level).tiers
    assert tiers_of(steps) == PRESETS[preset][2][key]["tiers"]
    # None of the documents states a repeat, a named policy, a level-wide business-hours
    # switch or a PagerDuty priority (priority names are account-specific).
    assert level.repeat is None
    assert level.policy is None
    assert level.business_hours_only is False
    assert level.pagerduty_priority is None
    assert all(s.name for s in steps)


@pytest.mark.parametrize(
    ("preset", "value", "key"),
    [
        # Each organisation's own words resolve to the right level.
        ("llm-config-manager", "P1", "P1"),
        ("llm-config-manager", "Severity 1", "P1"),
        ("llm-config-manager", "severity-4", "P4"),
        ("llm-config-manager", "critical", "P1"),
        ("llm-config-manager", "High", "P2"),
        ("llm-config-manager", "P0", None),
        ("llm-marketplace", "P0", "P0"),
        ("llm-marketplace", "SEV-1", "P0"),
        ("llm-marketplace", "sev 4", "P3"),
        ("llm-marketplace", "Medium", "P2"),
        ("llm-research-lab", "SEV-2", "P1"),
        ("llm-research-lab", "major", "P1"),
        ("llm-research-lab", "Minor", "P2"),
        ("llm-research-lab", "Severity 4", "P3"),
        ("code-project", "SEV1", "P0"),
        ("code-project", "sev-3", "P2"),
        ("code-project", "low", "P3"),
        ("pipeline-guard", "SEV-1", "P0"),
        ("pipeline-guard", "Severity 3", "P2"),
        ("pipeline-guard", "SEV-5", None),
    ],
)
def test_organisation_names_resolve(
    presets: dict[str, Matrix], preset: str, value: str, key: str | None
) -> None:
    assert presets[preset].resolve(value) == key


@pytest.mark.parametrize("preset", list(PRESETS))
def test_alertmanager_severity_words_resolve(presets: dict[str, Matrix], preset: str) -> None:
    # The common Alertmanager/PagerDuty words map to the 1st..4th level of every preset.
    keys = presets[preset].level_keys()
    words = ["critical", "error", "warning", "info"]
    assert [presets[preset].resolve(w) for w in words] == keys[:4]
    assert [presets[preset].levels[k].pagerduty_severity for k in keys] == words


_NUMBER_LINE = re.compile(
    r"^\s*-?\s*(after|at|ack_target|first_update|update_every|resolve_target|review_due"
    r"|monitoring_window):\s*(\S+)(.*)$"
)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_number_quotes_its_source(preset: str) -> None:
    text = resources.files("rules").joinpath("presets", f"{preset}.yaml").read_text("utf-8")
    numbered = 0
    for line in text.splitlines():
        match = _NUMBER_LINE.match(line)
        if match is None:
            continue
        numbered += 1
        comment = match.group(3)
        assert '# "' in comment or '"' in comment.partition("#")[2], line
    assert numbered >= 10
