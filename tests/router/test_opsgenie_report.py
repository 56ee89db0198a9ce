"""``tocsin import opsgenie``'s report: everything of the account tocsin does not carry, each item
with its Opsgenie id and why, and escalation repeats timed as Opsgenie times them.

Opsgenie's Escalation API reference ("Escalation Repeat") defines ``waitInterval`` as "the
duration in minutes to repeat the escalation rules after processing the last escalation rule"
(0 disables the repeat) and ``count`` (default 1) as "how many times the repeat action will be
performed": a round is the last rule's delay plus ``waitInterval``, whichever rules tocsin keeps.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from router.cli import main
from router.opsgenie_translate import Export, translate
from tests.fakes.opsgenie import ACCOUNT

AT = "2027-03-15T00:00:00+00:00"
OPS_TEAM = "90098a1f9-f0e3-41d3-a060-0ea895027630"
DB_TEAM = "7b6c1d2e-8f9a-4b3c-9d2e-1f0a3b4c5d6e"
OPS_ESCALATION = "f1f2f3f4-3333-4444-8555-b66677788899"

Json = dict[str, Any]


def report_of(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Json]:
    out, report = tmp_path / "tocsin.yaml", tmp_path / "report.json"
    argv = ["import", "opsgenie", "--from", str(ACCOUNT), "--out", str(out)]
    code = main([*argv, "--report", str(report), "--at", AT])
    assert code == 0, capsys.readouterr().err
    items: list[Json] = json.loads(report.read_text(encoding="utf-8"))
    return items


def reasons(report: list[Json], kind: str, ident: str) -> list[str]:
    return [r["why"] for r in report if (r["kind"], r["id"]) == (kind, ident)]


def test_team_roles_are_reported_for_each_member_who_has_more_than_membership(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = report_of(tmp_path, capsys)
    # alice is the Ops Team's admin, dave db's; bob and carol are plain `user` members, which a
    # tocsin team's membership already says.
    [alice] = [w for w in reasons(report, "team", OPS_TEAM) if "team role" in w]
    assert alice.startswith("member alice has the team role 'admin': a tocsin team has members")
    [dave] = [w for w in reasons(report, "team", DB_TEAM) if "team role" in w]
    assert dave.startswith("member dave has the team role 'admin'")
    assert not any("'user'" in r["why"] for r in report)


def test_notification_rules_routing_rules_and_integrations_are_each_listed_with_their_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = report_of(tmp_path, capsys)
    listed = {
        (r["kind"], r["id"], r["name"]): r["why"]
        for r in report
        if r["kind"] in ("notification rule", "routing rule", "integration")
    }
    # Every one the account has (tests/fakes/data/opsgenie_account), and no other.
    assert sorted(listed) == [
        ("integration", "0b7e6c5d-0001-4e3f-9a2b-1c0d9e8f7a6b", "Prometheus"),
        ("integration", "0b7e6c5d-0002-4e3f-9a2b-1c0d9e8f7a6b", "Grafana"),
        ("integration", "0b7e6c5d-0003-4e3f-9a2b-1c0d9e8f7a6b", "Default API"),
        ("notification rule", "3a9f1c2e-0001-4a6b-9c1d-7e8f90a1b2c3", "New Alert"),
        ("notification rule", "3a9f1c2e-0002-4a6b-9c1d-7e8f90a1b2c3", "On-call starts"),
        ("notification rule", "3a9f1c2e-0003-4a6b-9c1d-7e8f90a1b2c3", "New Alert"),
        ("routing rule", "5c1e2d3f-0001-4b5a-8c9d-0e1f2a3b4c5d", "Database alerts"),
        ("routing rule", "5c1e2d3f-0002-4b5a-8c9d-0e1f2a3b4c5d", "Default Routing Rule"),
        ("routing rule", "5c1e2d3f-0003-4b5a-8c9d-0e1f2a3b4c5d", "Default Routing Rule"),
    ]
    why = {ident: text for (_, ident, _), text in listed.items()}
    assert why["3a9f1c2e-0001-4a6b-9c1d-7e8f90a1b2c3"].startswith("alice's create-alert rule:")
    assert why["3a9f1c2e-0002-4a6b-9c1d-7e8f90a1b2c3"].startswith(
        "alice's schedule-start rule (disabled):"
    )
    assert "paged through `log`" in why["3a9f1c2e-0003-4a6b-9c1d-7e8f90a1b2c3"]
    # A routing rule to an imported escalation says which policy a tocsin rule should name.
    assert why["5c1e2d3f-0002-4b5a-8c9d-0e1f2a3b4c5d"] == (
        "team ops-team: sends every alert (its default rule) to escalation 'ops_escalation'; "
        "routing rules are not imported: route them with a rule `policy: ops_escalation`"
    )
    assert why["5c1e2d3f-0001-4b5a-8c9d-0e1f2a3b4c5d"].startswith(
        "team ops-team: sends alerts matching any of its conditions to escalation"
    )
    assert "schedule 'follow_the_sun'" in why["5c1e2d3f-0003-4b5a-8c9d-0e1f2a3b4c5d"]
    assert why["0b7e6c5d-0003-4e3f-9a2b-1c0d9e8f7a6b"].startswith("API integration (disabled):")


def test_reset_recipient_states_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = report_of(tmp_path, capsys)
    [reset] = [w for w in reasons(report, "escalation", OPS_ESCALATION) if "resetRecipient" in w]
    assert reset.startswith("resetRecipientStates: Opsgenie reverts acknowledgements on each")
    assert "`ack_timeout`" in reset


def test_an_export_without_those_files_still_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exports made before the importer read notification rules, routing rules, integrations."""
    old = tmp_path / "export"
    old.mkdir()
    for name in ("users.json", "teams.json", "schedules.json", "escalations.json"):
        (old / name).write_bytes((ACCOUNT / name).read_bytes())
    code = main(["import", "opsgenie", "--from", str(old), "--out", str(tmp_path / "t.yaml")])
    assert code == 0, capsys.readouterr().err


# -- repeat timing, from the translation itself ---------------------------------------------------

ANN = {"type": "user", "id": "u-ann", "username": "ann@example.com"}
GONE = {"type": "user", "id": "u-gone", "username": "gone@example.com"}  # not an imported user


def rule(amount: int, recipient: Json = ANN, unit: str = "minutes") -> Json:
    return {
        "condition": "if-not-acked",
        "notifyType": "default",
        "delay": {"timeAmount": amount, "timeUnit": unit},
        "recipient": recipient,
    }


def escalate(rules: list[Json], repeat: Json) -> tuple[Json | None, list[str]]:
    """The policy the escalation becomes, and the report's reasons about the escalation."""
    esc = {"id": "e-1", "name": "esc", "rules": rules, "repeat": repeat}
    user = {"id": "u-ann", "username": "ann@example.com", "fullName": "Ann", "timeZone": "UTC"}
    t = translate(Export(users=[user], escalations=[esc]), datetime.fromisoformat(AT))
    return t.policies.get("esc"), [i.why for i in t.report if i.kind == "escalation"]


@pytest.mark.parametrize(
    ("rules", "repeat", "expected"),
    [
        # A rule left out in the middle: the round is still the last delay + waitInterval.
        ([rule(0), rule(5, GONE), rule(10)], {"waitInterval": 5, "count": 3}, (3, "15m")),
        # The last rule left out (an hour in): Opsgenie's round still waits for it.
        ([rule(0), rule(1, GONE, "hours")], {"waitInterval": 10, "count": 1}, (1, "70m")),
        # count defaults to 1 (Opsgenie's EscalationRepeat default).
        ([rule(0), rule(10)], {"waitInterval": 5}, (1, "15m")),
        # waitInterval 0 is Opsgenie's "repeat disabled", whatever the count.
        ([rule(0), rule(10)], {"waitInterval": 0, "count": 2}, None),
        ([rule(0), rule(10)], {"waitInterval": 5, "count": 0}, None),
    ],
)
def test_a_round_lasts_the_last_rules_delay_plus_wait_interval(
    rules: list[Json], repeat: Json, expected: tuple[int, str] | None
) -> None:
    policy, _ = escalate(rules, repeat)
    assert policy is not None
    want = None if expected is None else {"times": expected[0], "every": expected[1]}
    assert policy.get("repeat") == want


def test_a_rule_left_out_of_a_repeating_escalation_is_reported_with_the_round() -> None:
    policy, whys = escalate(
        [rule(0), rule(5, GONE), rule(10), rule(20, GONE)], {"waitInterval": 10, "count": 2}
    )
    assert policy is not None and policy["repeat"] == {"times": 2, "every": "30m"}
    assert [s["after"] for s in policy["steps"]] == ["0m", "10m"]
    assert whys == [
        "repeats every 30m as in Opsgenie (last rule at 20m + waitInterval 10m), but rule 2 "
        "(at 5m), rule 4 (at 20m) were left out: in tocsin they page no one, in the first "
        "round or any repeat"
    ]
    # Nothing left out, nothing to say about the round.
    _, whys = escalate([rule(0), rule(10)], {"waitInterval": 10, "count": 2})
    assert whys == []


def test_a_blocked_user_and_an_account_role_beyond_user_are_reported() -> None:
    users: list[Json] = [
        {"id": "u-1", "username": "ann@example.com", "role": {"id": "Admin", "name": "Admin"}},
        {"id": "u-2", "username": "ben@example.com", "blocked": True, "role": {"name": "User"}},
    ]
    t = translate(Export(users=users), datetime.fromisoformat(AT))
    assert list(t.people) == ["ann", "ben"]  # both imported
    assert [(i.kind, i.id, i.why.split(":")[0]) for i in t.report] == [
        ("user", "u-1", "account role 'Admin'"),
        ("user", "u-2", "blocked in Opsgenie (notified of nothing); imported all the same"),
    ]
