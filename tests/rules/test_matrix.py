"""Severity matrix model: name resolution, validation, preset loading and config overrides."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rules.matrix import (
    LEVELS,
    Level,
    Matrix,
    MatrixConfig,
    _deep_merge,
    build_matrix,
    load_preset,
    normalise_name,
    preset_names,
    rank,
)

M = timedelta(minutes=1)


def _level(name: str, aliases: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "aliases": aliases or [],
        "pagerduty_severity": "critical",
        **extra,
    }


def _matrix(**levels: dict[str, Any]) -> Matrix:
    return Matrix.model_validate(
        {"name": "t", "levels": levels, "default_level": next(iter(levels))}
    )


@pytest.fixture
def sev() -> Matrix:
    """Four levels P0-P3 named SEV-1..SEV-4 with a few aliases."""
    return _matrix(
        P0=_level("SEV-1", ["critical", "Severity 1"]),
        P1=_level("SEV-2", ["high", "major"]),
        P2=_level("SEV-3", ["warning"]),
        P3=_level("SEV-4", ["low", "info"]),
    )


# --- rank and helpers -------------------------------------------------------------------------


def test_levels_and_rank() -> None:
    assert LEVELS == ("P0", "P1", "P2", "P3", "P4")
    assert [rank(k) for k in LEVELS] == [0, 1, 2, 3, 4]
    assert rank("p3") == 3
    with pytest.raises(ValueError, match="unknown severity level 'P5'"):
        rank("P5")


def test_normalise_name() -> None:
    assert normalise_name("Sev 2") == "sev2"
    assert normalise_name("SEV-2") == "sev2"
    assert normalise_name("sev_2") == "sev2"
    assert normalise_name("Severity  1") == "severity1"


# --- resolve ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("P0", "P0"),
        ("p1", "P1"),
        (" p2 ", "P2"),
        ("SEV-1", "P0"),
        ("sev1", "P0"),
        ("Sev 2", "P1"),
        ("sev_3", "P2"),
        ("SEV--4", "P3"),
        ("critical", "P0"),
        ("CRITICAL", "P0"),
        ("Severity 1", "P0"),
        ("severity-1", "P0"),
        ("SEVERITY_1", "P0"),
        ("Major", "P1"),
        ("warning", "P2"),
        ("Info", "P3"),
    ],
)
def test_resolve_keys_names_aliases(sev: Matrix, value: str, expected: str) -> None:
    assert sev.resolve(value) == expected


@pytest.mark.parametrize("value", ["P4", "sev5", "blocker", "", "  ", "crit"])
def test_resolve_unknown_is_none(sev: Matrix, value: str) -> None:
    assert sev.resolve(value) is None


def test_resolve_non_string_is_none(sev: Matrix) -> None:
    assert sev.resolve(None) is None  # type: ignore[arg-type]


def test_level_and_worst(sev: Matrix) -> None:
    assert sev.level("P1").name == "SEV-2"
    assert sev.level("sev 3").name == "SEV-3"
    assert sev.worst("P2", "P1") == "P1"
    assert sev.worst("SEV-1", "info") == "P0"
    assert sev.worst("low", "low") == "P3"
    with pytest.raises(KeyError, match="unknown severity 'nope'"):
        sev.level("nope")
    with pytest.raises(KeyError, match="unknown severity 'nope'"):
        sev.worst("P1", "nope")


def test_levels_are_ordered_worst_first_and_keys_canonicalised() -> None:
    m = Matrix.model_validate(
        {
            "name": "t",
            "levels": {"p3": _level("Low"), "P1": _level("High"), "p2": _level("Medium")},
            "default_level": "medium",
        }
    )
    assert m.level_keys() == ["P1", "P2", "P3"]
    assert m.default_level == "P2"


# --- matrix validation ------------------------------------------------------------------------


def test_ambiguous_alias_rejected_naming_both_levels() -> None:
    with pytest.raises(ValidationError) as exc:
        _matrix(P0=_level("SEV-1", ["critical"]), P1=_level("SEV-2", ["Critical"]))
    msg = str(exc.value)
    assert "alias 'Critical' of level P1 (SEV-2) is ambiguous" in msg
    assert "alias 'critical' of level P0 (SEV-1)" in msg


def test_alias_equal_after_normalising_rejected() -> None:
    with pytest.raises(ValidationError, match=r"alias 'sev_1' of level P1 \(SEV-2\)"):
        _matrix(P0=_level("SEV-1"), P1=_level("SEV-2", ["sev_1"]))


def test_alias_clashing_with_another_levels_key_rejected() -> None:
    # An alias "P1" on level P0 would make resolve("P1") mean two levels.
    with pytest.raises(ValidationError, match="key 'P1' of level P1"):
        _matrix(P0=_level("Severity 1", ["P1"]), P1=_level("Severity 2"))


def test_alias_repeating_own_name_is_fine() -> None:
    m = _matrix(P0=_level("SEV-1", ["sev1", "SEV 1"]))
    assert m.resolve("sev-1") == "P0"


def test_unknown_level_key_rejected() -> None:
    with pytest.raises(ValidationError, match="level key 'P5' is not a canonical level"):
        _matrix(P5=_level("x"))


def test_duplicate_level_key_rejected() -> None:
    with pytest.raises(ValidationError, match="level P1 is defined twice"):
        Matrix.model_validate(
            {"name": "t", "levels": {"P1": _level("a"), "p1": _level("b")}, "default_level": "P1"}
        )


def test_default_level_must_exist() -> None:
    with pytest.raises(ValidationError, match="default_level 'P3' is not a level"):
        Matrix.model_validate({"name": "t", "levels": {"P0": _level("a")}, "default_level": "P3"})


def test_empty_matrix_rejected() -> None:
    with pytest.raises(ValidationError, match="at least one level"):
        Matrix.model_validate({"name": "t", "levels": {}, "default_level": "P0"})


def test_level_typo_field_rejected() -> None:
    with pytest.raises(ValidationError, match="ack_targt"):
        Level.model_validate({**_level("x"), "ack_targt": "5m"})


def test_level_requires_pagerduty_severity_from_the_four() -> None:
    with pytest.raises(ValidationError, match="pagerduty_severity"):
        Level.model_validate({"name": "x"})
    with pytest.raises(ValidationError, match="pagerduty_severity"):
        Level.model_validate({"name": "x", "pagerduty_severity": "high"})


def test_level_policy_and_tiers_exclusive() -> None:
    with pytest.raises(ValidationError, match="either 'policy'"):
        Level.model_validate(
            {**_level("x"), "policy": "db", "tiers": [{"notify": ["role:oncall"]}]}
        )


def test_level_durations_parsed() -> None:
    lv = Level.model_validate(
        {**_level("x"), "ack_target": "5m", "update_every": "1h30m", "review_due": "2d"}
    )
    assert lv.ack_target == 5 * M
    assert lv.update_every == 90 * M
    assert lv.review_due == timedelta(days=2)
    assert lv.resolve_target is None
    assert lv.monitoring_window == timedelta(0)


# --- presets ----------------------------------------------------------------------------------


SEED_PRESETS = [
    "code-project",
    "llm-config-manager",
    "llm-marketplace",
    "llm-research-lab",
    "pipeline-guard",
]


def test_preset_names() -> None:
    names = preset_names()
    assert names == sorted(names)
    assert set(SEED_PRESETS) <= set(names)


def test_unknown_preset_error_lists_available() -> None:
    with pytest.raises(ValueError) as exc:
        load_preset("nope")
    msg = str(exc.value)
    assert msg == "unknown severity preset 'nope'; available: " + ", ".join(preset_names())
    for name in SEED_PRESETS:
        assert name in msg


def test_unknown_preset_in_config_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="unknown severity preset 'pagerduty-default'"):
        MatrixConfig.model_validate({"preset": "pagerduty-default"})


def test_load_preset_returns_independent_copies() -> None:
    a = load_preset("pipeline-guard")
    a.levels["P0"].ack_target = timedelta(0)
    assert load_preset("pipeline-guard").levels["P0"].ack_target == 15 * M


# --- build_matrix -----------------------------------------------------------------------------


def test_build_preset_unchanged() -> None:
    m = build_matrix(MatrixConfig(preset="llm-marketplace"))
    assert m == load_preset("llm-marketplace")


def test_build_override_one_ack_target_keeps_the_rest() -> None:
    base = load_preset("pipeline-guard")
    m = build_matrix(
        MatrixConfig.model_validate(
            {"preset": "pipeline-guard", "levels": {"P1": {"ack_target": "20m"}}}
        )
    )
    assert m.levels["P1"].ack_target == 20 * M
    assert m.levels["P1"].tiers == base.levels["P1"].tiers
    assert m.levels["P1"].update_every == 30 * M
    assert m.levels["P0"] == base.levels["P0"]
    assert m.name == "pipeline-guard"
    assert m.source == "004_3cb75c3fc32d4c07.txt"


def test_build_override_by_level_name() -> None:
    m = build_matrix(
        MatrixConfig.model_validate(
            {"preset": "code-project", "levels": {"sev-2": {"ack_target": "10m"}}}
        )
    )
    assert m.levels["P1"].ack_target == 10 * M


def test_deep_merge_merges_dicts_and_replaces_lists() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": [1], "c": 3}
    merged = _deep_merge(base, {"a": {"y": [9]}, "b": [], "d": {"z": 1}})
    assert merged == {"a": {"x": 1, "y": [9]}, "b": [], "c": 3, "d": {"z": 1}}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": [1], "c": 3}


def test_build_override_policy_drops_preset_tiers() -> None:
    m = build_matrix(
        MatrixConfig.model_validate(
            {"preset": "llm-research-lab", "levels": {"P0": {"policy": "db-critical"}}}
        )
    )
    assert m.levels["P0"].policy == "db-critical"
    assert m.levels["P0"].tiers == []


def test_build_override_name_default_and_aliases() -> None:
    m = build_matrix(
        MatrixConfig.model_validate(
            {
                "preset": "code-project",
                "name": "acme",
                "default_level": "SEV1",
                "levels": {"P3": {"aliases": ["trivial"]}},
            }
        )
    )
    assert m.name == "acme"
    assert m.default_level == "P0"
    assert m.resolve("trivial") == "P3"
    assert m.resolve("info") is None  # the alias list was replaced


def test_build_override_adds_a_level() -> None:
    m = build_matrix(
        MatrixConfig.model_validate(
            {
                "preset": "llm-marketplace",
                "levels": {
                    "P4": {"name": "P4", "aliases": ["noise"], "pagerduty_severity": "info"}
                },
            }
        )
    )
    assert m.level_keys() == ["P0", "P1", "P2", "P3", "P4"]
    assert m.resolve("noise") == "P4"


def test_build_override_bad_value_points_at_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        build_matrix(
            MatrixConfig.model_validate(
                {"preset": "pipeline-guard", "levels": {"P1": {"ack_target": "soon"}}}
            )
        )
    assert exc.value.errors()[0]["loc"] == ("levels", "P1", "ack_target")


def test_build_override_creating_ambiguity_rejected() -> None:
    with pytest.raises(ValidationError, match="ambiguous"):
        build_matrix(
            MatrixConfig.model_validate(
                {"preset": "pipeline-guard", "levels": {"P3": {"aliases": ["critical"]}}}
            )
        )


def test_build_override_unknown_level_name_rejected() -> None:
    with pytest.raises(ValueError, match="'SEV-9' is neither a canonical level"):
        build_matrix(
            MatrixConfig.model_validate({"preset": "pipeline-guard", "levels": {"SEV-9": {}}})
        )


def test_build_without_preset_needs_levels_and_default() -> None:
    with pytest.raises(ValueError, match="set 'preset'"):
        build_matrix(MatrixConfig())
    with pytest.raises(ValueError, match="'default_level' is required"):
        build_matrix(
            MatrixConfig.model_validate(
                {"levels": {"P0": {"name": "x", "pagerduty_severity": "critical"}}}
            )
        )


def test_matrix_config_rejects_typos() -> None:
    with pytest.raises(ValidationError, match="presets"):
        MatrixConfig.model_validate({"presets": "code-project"})


def test_matrix_round_trips_through_dump() -> None:
    m = load_preset("code-project")
    again = Matrix.model_validate(m.model_dump())
    assert again == m
    assert m.model_dump()["levels"]["P0"]["ack_target"] == "5m"
