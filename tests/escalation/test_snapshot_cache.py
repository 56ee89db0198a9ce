"""Policy and level snapshots are built once per configured value and shared, read-only.

Every new incident of a severity gets the same snapshot object: these tests hold that it is
the snapshot the uncached code builds, that a reload is never answered from an old entry, and
that nobody holding one can change it for the next incident.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from escalation.incidents import policy as policy_mod
from escalation.incidents.directory import Directory
from escalation.incidents.ingest import Classified, decide_ingest
from escalation.incidents.policy import PolicySnapshot, level_snapshot, policy_snapshot
from escalation.incidents.readonly import ReadOnlyDict, ReadOnlyList, freeze
from escalation.incidents.steps import Policy
from rules.alerts import Alert
from rules.classifier import Classification
from rules.matrix import Matrix, MatrixConfig, build_matrix, load_preset, preset_names

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)


def _policy(*afters: str, name: str = "on-call") -> Policy:
    return Policy.model_validate(
        {
            "steps": [{"name": name, "after": a, "notify": ["role:oncall"]} for a in afters],
            "repeat": {"times": 1, "every": "30m"},
            "ack_timeout": "15m",
        }
    )


def _uncached_policy(
    matrix: Matrix, policies: dict[str, Policy], severity: str, policy_name: str | None
) -> tuple[str, dict[str, Any]]:
    """What ``policy_snapshot`` built before it was cached, spelled out again."""
    level = matrix.level(severity)
    name = policy_name or level.policy
    if name is not None and name in policies:
        return name, policy_mod._policy_dict(name, policies[name])
    name = f"matrix:{matrix.name}:{severity}"
    return name, policy_mod._level_tiers_dict(name, level)


def _encoded(value: Any) -> str:
    return json.dumps(value, sort_keys=False)


@pytest.mark.parametrize("preset", preset_names())
def test_snapshots_equal_the_uncached_ones_for_every_level(preset: str) -> None:
    matrix = load_preset(preset)
    policies = {"db": _policy("0s", "10m")}
    for key in matrix.levels:
        for rule_policy in (None, "db", "not-configured"):
            name, snap = policy_snapshot(matrix, policies, key, rule_policy)
            want_name, want = _uncached_policy(matrix, policies, key, rule_policy)
            assert name == want_name
            assert snap == want
            assert _encoded(snap) == _encoded(want)  # same keys, same order, same types
        assert _encoded(level_snapshot(matrix, key)) == _encoded(
            policy_mod._level_dict(matrix, matrix.levels[key], key)
        )


def test_a_snapshot_is_built_once_per_configured_value() -> None:
    matrix = load_preset("default")
    policies = {"db": _policy("0s")}
    assert (
        policy_snapshot(matrix, policies, "P1", None)[1]
        is policy_snapshot(matrix, policies, "P1", None)[1]
    )
    assert (
        policy_snapshot(matrix, policies, "P1", "db")[1]
        is policy_snapshot(matrix, policies, "P2", "db")[1]
    )
    assert level_snapshot(matrix, "P1") is level_snapshot(matrix, "P1")


def test_a_reloaded_policy_is_snapshotted_anew() -> None:
    matrix = load_preset("default")
    before = policy_snapshot(matrix, {"db": _policy("0s")}, "P1", "db")[1]
    # A reload builds new Policy objects under the same names…
    after = policy_snapshot(matrix, {"db": _policy("0s", "5m")}, "P1", "db")[1]
    assert [s["after"] for s in before["steps"]] == ["0s"]
    assert [s["after"] for s in after["steps"]] == ["0s", "5m"]
    # …and a mapping kept across reloads may have its entry replaced.
    policies = {"db": _policy("0s")}
    policy_snapshot(matrix, policies, "P1", "db")
    policies["db"] = _policy("1m")
    assert [s["after"] for s in policy_snapshot(matrix, policies, "P1", "db")[1]["steps"]] == ["1m"]


def test_a_reloaded_matrix_is_snapshotted_anew() -> None:
    old = load_preset("default")
    new = build_matrix(
        MatrixConfig(
            preset="default",
            levels={"P1": {"tiers": [{"notify": ["role:lead"]}], "update_every": "5m"}},
        )
    )
    assert policy_snapshot(old, {}, "P1", None)[1]["steps"][0]["notify"] == ["role:oncall"]
    assert policy_snapshot(new, {}, "P1", None)[1]["steps"][0]["notify"] == ["role:lead"]
    assert level_snapshot(old, "P1")["update_every"] == 3600.0
    assert level_snapshot(new, "P1")["update_every"] == 300.0


def test_configs_built_and_dropped_one_after_another_each_get_their_own_snapshot() -> None:
    # Once a config object is garbage, CPython hands its id to the next one: an entry that did
    # not hold its object would answer the new policy with the old one's snapshot.
    matrix = load_preset("default")
    for minutes in range(600):  # more than the cache keeps, so entries are dropped too
        policies = {"db": _policy(f"{minutes}m")}
        snap = policy_snapshot(matrix, policies, "P1", "db")[1]
        assert snap == _uncached_policy(matrix, policies, "P1", "db")[1]
        del policies
    assert len(policy_mod._policies) <= policy_mod._CACHE_MAX


def _changes(snap: dict[str, Any]) -> list[Callable[[], object]]:
    steps = snap["steps"]
    return [
        lambda: snap.__setitem__("ack_timeout", 1.0),
        lambda: snap.__delitem__("name"),
        lambda: snap.update(reminders=False),
        lambda: snap.setdefault("extra", 1),
        lambda: snap.pop("name"),
        lambda: snap.popitem(),
        lambda: snap.clear(),
        lambda: snap.__ior__({"name": "x"}),
        lambda: steps.append({}),
        lambda: steps.extend([{}]),
        lambda: steps.insert(0, {}),
        lambda: steps.pop(),
        lambda: steps.remove(steps[0]),
        lambda: steps.__setitem__(0, {}),
        lambda: steps.__delitem__(0),
        lambda: steps.sort(key=str),
        lambda: steps.reverse(),
        lambda: steps.clear(),
        lambda: steps.__iadd__([{}]),
        lambda: steps.__imul__(2),
        lambda: steps[0].__setitem__("after", "1h"),
        lambda: steps[0]["notify"].append("role:vp"),
    ]


def test_nobody_can_change_a_shared_snapshot_for_the_next_incident() -> None:
    matrix = load_preset("default")
    _, snap = policy_snapshot(matrix, {}, "P1", None)
    for change in _changes(snap):
        with pytest.raises(TypeError, match="read-only"):
            change()
    ops: list[Callable[[dict[str, Any]], object]] = [
        lambda s: s.__setitem__("name", "x"),
        lambda s: s.pop("name"),
    ]
    for op in ops:
        with pytest.raises(TypeError, match="read-only"):
            op(level_snapshot(matrix, "P1"))
    assert policy_snapshot(matrix, {}, "P1", None)[1] == _uncached_policy(matrix, {}, "P1", None)[1]


def test_a_copy_of_a_snapshot_is_its_owners_to_change() -> None:
    _, snap = policy_snapshot(load_preset("default"), {}, "P0", None)
    for deep in (copy.deepcopy(snap), pickle.loads(pickle.dumps(snap))):
        assert type(deep) is dict and type(deep["steps"]) is list
        assert type(deep["steps"][0]) is dict
        deep["steps"][0]["notify"].append("role:vp")
        deep["ack_timeout"] = 60.0
    shallow = copy.copy(snap)
    shallow["ack_timeout"] = 60.0
    assert {**snap, "ack_timeout": 60.0} == dict(snap) | {"ack_timeout": 60.0} == shallow
    assert snap["ack_timeout"] is None


def test_freeze_keeps_content_order_and_types() -> None:
    value = {"b": [1, 2.5, {"z": None, "a": True}], "a": "ü", "t": (1, 2)}
    frozen = freeze(value)
    assert isinstance(frozen, ReadOnlyDict) and isinstance(frozen["b"], ReadOnlyList)
    assert frozen == {**value, "t": [1, 2]}
    assert list(frozen) == ["b", "a", "t"]
    assert json.dumps(frozen, ensure_ascii=False) == json.dumps(
        {**value, "t": [1, 2]}, ensure_ascii=False
    )


def test_the_typed_view_of_a_shared_snapshot_is_parsed_once() -> None:
    _, snap = policy_snapshot(load_preset("default"), {"db": _policy("0s", "10m")}, "P1", "db")
    typed = PolicySnapshot.of(snap)
    assert typed is PolicySnapshot.of(snap)
    assert typed == PolicySnapshot.of(copy.deepcopy(snap))  # the view a stored one reads back


def _classified(severity: str) -> Classified:
    matrix = load_preset("default")
    alert = Alert(
        status="firing",
        labels={"alertname": "DiskFull"},
        starts_at=T0,
        ends_at=None,
        fingerprint="fp1",
    )
    verdict = Classification(
        severity=severity,
        severity_name=matrix.levels[severity].name,
        policy=None,
        team=None,
        incident_key=None,
        title="DiskFull",
        rule="disk",
        matched=("disk",),
        reasons=(),
    )
    return Classified(alert, verdict)


def test_incidents_opened_alike_share_one_snapshot_and_plan_the_same_steps() -> None:
    d = Directory(matrix=load_preset("default"))
    opened = []
    for i in range(2):
        ch, _ = decide_ingest(
            f"k{i}",
            [_classified("P1")],
            None,
            [],
            [],
            now=T0,
            directory=d,
            receiver="r",
            group_key=f"g{i}",
            common_labels={},
        )
        opened.append(ch)
    a, b = (ch.new_incidents[0] for ch in opened)
    assert a.policy is b.policy and a.level is b.level
    assert a.policy == _uncached_policy(d.matrix, {}, "P1", None)[1]
    assert [(s.tier, s.due_at) for s in opened[0].new_steps] == [
        (s.tier, s.due_at) for s in opened[1].new_steps
    ]
