"""``Severity``: one place that names a level, and the record property every caller uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from escalation.incidents.model import (
    EventKind,
    IncidentRecord,
    OutboxKind,
    Status,
    StepKind,
)
from escalation.incidents.policy import level_snapshot
from escalation.incidents.severity import Severity
from rules.matrix import load_preset

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)


def record(severity: str, level: dict[str, object]) -> IncidentRecord:
    return IncidentRecord(
        id="inc1",
        number=1,
        key="k",
        status=Status.TRIGGERED,
        severity=severity,
        title="DiskFull",
        team=None,
        policy_name="p",
        policy={},
        level=level,
        opened_at=T0,
        updated_at=T0,
    )


def test_the_name_comes_from_the_level_snapshot() -> None:
    matrix = load_preset("default")
    key = matrix.level_keys()[0]
    inc = record(key, level_snapshot(matrix, key))
    assert inc.severity_info == Severity(key, matrix.levels[key].name)
    assert inc.severity_name == matrix.levels[key].name
    assert str(inc.severity_info) == matrix.levels[key].name


@pytest.mark.parametrize("level", [{}, {"name": None}, {"name": ""}])
def test_a_level_without_a_name_is_shown_by_its_key(level: dict[str, object]) -> None:
    assert record("P2", level).severity_name == "P2"
    assert Severity.from_snapshot("P2", level) == Severity("P2", "P2")


@pytest.mark.parametrize(("key", "rank"), [("P0", 0), ("P2", 2), ("P4", 4)])
def test_rank_is_the_canonical_order(key: str, rank: int) -> None:
    assert Severity.named(key, "whatever").rank == rank


def test_severity_is_frozen() -> None:
    sev = Severity.named("P1", "SEV-2")
    with pytest.raises(AttributeError):
        sev.name = "other"  # type: ignore[misc]


def test_kinds_are_the_strings_the_store_and_json_hold() -> None:
    # StrEnums compare equal to (and serialise as) the plain strings stored before them.
    assert StepKind.ACK_TIMEOUT == "ack_timeout"
    assert OutboxKind.ACKNOWLEDGE == "acknowledge"
    assert json.dumps({"kind": EventKind.NOTIFY}) == '{"kind": "notify"}'
    assert f"{OutboxKind.PAGE}" == "page"
