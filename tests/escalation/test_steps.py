"""Escalation steps: validation, notify targets, and a matrix level's tiers as steps.

``rules`` keeps a level's tiers as written; these tests hold what escalation makes of them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from escalation.incidents.policy import PolicySnapshot, policy_snapshot
from escalation.incidents.steps import MatrixTiers, Policy, Repeat, Step, level_tiers
from escalation.oncall.targets import parse_target
from rules.matrix import Level, Matrix, MatrixConfig, build_matrix, load_preset, preset_names

M = timedelta(minutes=1)


def _level(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "pagerduty_severity": "critical", **extra}


def test_parse_target() -> None:
    assert parse_target("role:lead") == ("role", "lead")
    assert parse_target("lead") == ("role", "lead")
    assert parse_target("person:alice") == ("person", "alice")
    assert parse_target("schedule:primary") == ("schedule", "primary")
    assert parse_target("team:db") == ("team", "db")
    assert parse_target("pagerduty:PX1Y2Z") == ("pagerduty", "PX1Y2Z")


def test_business_hours_only_defers_every_tier_without_own_calendar() -> None:
    lv = Level.model_validate(
        {
            **_level("x"),
            "business_hours_only": True,
            "tiers": [
                {"notify": ["role:oncall"]},
                {"after": "1h", "during": "office", "notify": ["role:lead"]},
            ],
        }
    )
    assert [s.during for s in level_tiers(lv).tiers] == ["business-hours", "office"]


def test_step_defaults() -> None:
    s = Step.model_validate({"notify": ["role:oncall"]})
    assert s.after == timedelta(0)
    assert s.unless == "acknowledged"
    assert s.via == []
    assert s.at is None
    assert s.during is None
    assert s.target_refs() == [("role", "oncall")]


@pytest.mark.parametrize("value", ["regardless", "Regardless", None])
def test_step_unless_regardless_is_none(value: str | None) -> None:
    s = Step.model_validate({"notify": ["role:vp"], "unless": value})
    assert s.unless is None


@pytest.mark.parametrize("at", ["business-hours:open", "business-hours:next-day", "office_2:open"])
def test_step_at_ok(at: str) -> None:
    assert Step.model_validate({"notify": ["x"], "at": at}).at == at


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"notify": []}, "notify must name at least one target"),
        ({}, "notify"),
        ({"notify": ["group:db"]}, "unknown kind 'group'"),
        ({"notify": ["role:"]}, "names no role"),
        ({"notify": [""]}, "empty notify target"),
        ({"notify": ["on call"]}, "bad notify target 'on call'"),
        ({"notify": ["person:alice smith"]}, "bad notify target 'person:alice smith'"),
        ({"notify": ["x"], "at": "open"}, "'at' must be"),
        ({"notify": ["x"], "at": "business-hours:tomorrow"}, "'at' must be"),
        ({"notify": ["x"], "at": ":open"}, "'at' must be"),
        ({"notify": ["x"], "during": "business hours"}, "'during' must be a calendar name"),
        ({"notify": ["x"], "via": ["pager"]}, "unknown channel 'pager'"),
        ({"notify": ["x"], "via": ["webhook:"]}, "unknown channel 'webhook:'"),
        ({"notify": ["x"], "unless": "acked"}, "unless"),
        ({"notify": ["x"], "after": "soon"}, "expected a duration"),
        ({"notify": ["x"], "after": -5}, "must not be negative"),
        ({"notify": ["x"], "notfy": ["y"]}, "notfy"),
    ],
)
def test_step_validation_errors(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Step.model_validate(data)
    assert fragment in str(exc.value)


def test_step_via_channels_ok() -> None:
    s = Step.model_validate({"notify": ["x"], "via": ["phone", "sms", "webhook:ops", "log"]})
    assert s.via == ["phone", "sms", "webhook:ops", "log"]


def test_repeat_validation() -> None:
    assert Repeat.model_validate({"times": 2, "every": "10m"}).every == 10 * M
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Repeat.model_validate({"times": -1, "every": "10m"})
    with pytest.raises(ValidationError, match="longer than 0"):
        Repeat.model_validate({"times": 1, "every": 0})


def test_build_override_replaces_tiers_list() -> None:
    m = build_matrix(
        MatrixConfig.model_validate(
            {
                "preset": "llm-config-manager",
                "levels": {
                    "P2": {"tiers": [{"after": "10m", "notify": ["person:alice"], "via": ["sms"]}]}
                },
            }
        )
    )
    tiers = level_tiers(m.levels["P2"]).tiers
    assert len(tiers) == 1
    assert tiers[0].after == 10 * M
    assert tiers[0].notify == ["person:alice"]
    assert tiers[0].via == ["sms"]
    assert tiers[0].unless == "acknowledged"


def test_build_override_sets_repeat_on_a_preset_level() -> None:
    m = build_matrix(
        MatrixConfig.model_validate(
            {"preset": "llm-marketplace", "levels": {"P0": {"repeat": {"times": 2, "every": "5m"}}}}
        )
    )
    assert level_tiers(m.levels["P0"]).repeat == Repeat(times=2, every=5 * M)
    assert m.levels["P0"].ack_target == 5 * M


def test_build_full_definition_without_preset() -> None:
    m = build_matrix(
        MatrixConfig.model_validate(
            {
                "name": "acme",
                "default_level": "minor",
                "levels": {
                    "P1": {
                        "name": "Major",
                        "aliases": ["critical", "page"],
                        "ack_target": "10m",
                        "pagerduty_severity": "critical",
                        "tiers": [
                            {"notify": ["schedule:primary"]},
                            {"after": "10m", "notify": ["role:lead"], "unless": "regardless"},
                        ],
                        "repeat": {"times": 1, "every": "30m"},
                    },
                    "P3": {"name": "Minor", "pagerduty_severity": "warning"},
                },
            }
        )
    )
    assert m.name == "acme"
    assert m.source == ""
    assert m.level_keys() == ["P1", "P3"]
    assert m.default_level == "P3"
    assert m.resolve("page") == "P1"
    assert m.resolve("P0") is None
    p1 = m.levels["P1"]
    assert p1.ack_target == 10 * M
    assert [(s.after, s.notify, s.unless) for s in level_tiers(p1).tiers] == [
        (timedelta(0), ["schedule:primary"], "acknowledged"),
        (10 * M, ["role:lead"], None),
    ]
    assert level_tiers(p1).repeat == Repeat(times=1, every=30 * M)


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_level_has_valid_tiers(preset: str) -> None:
    tiers = MatrixTiers.of(load_preset(preset))
    assert set(tiers.levels) == set(load_preset(preset).levels)


def test_matrix_tiers_locate_a_bad_step_where_the_matrix_holds_it() -> None:
    matrix = Matrix.model_validate(
        {
            "name": "t",
            "default_level": "P1",
            "levels": {"P1": _level("x", tiers=[{"notify": ["role:a"]}, {"notify": ["group:b"]}])},
        }
    )
    with pytest.raises(ValidationError) as exc:
        MatrixTiers.of(matrix)
    [error] = exc.value.errors()
    assert error["loc"] == ("levels", "P1", "tiers", 1, "notify")
    assert "unknown kind 'group'" in error["msg"]


def test_level_tiers_are_parsed_once_per_distinct_level() -> None:
    level = load_preset("default").levels["P0"]
    assert level_tiers(level) is level_tiers(level.model_copy(deep=True))


def test_a_policy_snapshot_reads_back_typed() -> None:
    policy = Policy.model_validate(
        {
            "steps": [{"notify": ["role:oncall"]}, {"after": "10m", "notify": ["role:lead"]}],
            "repeat": {"times": 2, "every": "30m"},
            "ack_timeout": "15m",
            "auto_resolve": False,
        }
    )
    name, snap = policy_snapshot(load_preset("default"), {"db": policy}, "P1", "db")
    typed = PolicySnapshot.of(snap)
    assert name == "db"
    assert typed.steps == tuple(policy.steps)
    assert (typed.repeat_times, typed.repeat_every) == (2, 30 * M)
    assert (typed.ack_timeout, typed.auto_resolve, typed.reminders) == (15 * M, False, True)


def test_a_sparse_policy_snapshot_takes_the_defaults() -> None:
    typed = PolicySnapshot.of({"steps": []})
    assert typed == PolicySnapshot((), 0, timedelta(0), True, None, True)
