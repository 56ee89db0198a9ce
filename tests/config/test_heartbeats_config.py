"""``heartbeats:`` in ``tocsin check``: every bad reference is a problem at its file:line."""

from __future__ import annotations

from pathlib import Path

from tests.config.test_config_load import AUTH, PEOPLE, load, problems, write

HEARTBEATS = """\
policies:
  beat:
    steps:
      - {name: on-call, after: 0, notify: [person:alice]}
teams:
  storage: {members: [bob]}
heartbeats:
  nightly:
    expect_every: 24h
    grace: 1h
    severity: P9
    policy: beet
    team: storagee
  "bad name/x":
    expect_every: 1m
    severity: critical
"""


def test_unknown_severity_policy_team_and_a_bad_name_are_problems_with_lines(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "tocsin.yaml", AUTH + PEOPLE + HEARTBEATS)
    assert problems(path) == [
        f"{path}:17:5: heartbeats.nightly.severity: unknown severity 'P9': not a level, name or "
        "alias of the matrix (P0, P1, P2, P3, P4)",
        f"{path}:18:5: heartbeats.nightly.policy: unknown policy 'beet' (known: beat)",
        f"{path}:19:5: heartbeats.nightly.team: unknown team 'storagee' (known: storage)",
        f"{path}:20:3: heartbeats[\"bad name/x\"]: heartbeat name 'bad name/x' must be letters, "
        "digits, '.', '_' or '-' (at most 128, starting with a letter or digit): it is part of "
        "the ping URL",
    ]


def test_a_rule_naming_an_unknown_heartbeat_is_a_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH + PEOPLE + "rules:\n  files: [rules/*.yaml]\nheartbeats:\n"
        "  am: {expect_every: 1m, severity: P1}\n",
    )
    rules = write(
        tmp_path,
        "rules/w.yaml",
        "rules:\n  - name: watchdog\n    match: 'alertname=\"Watchdog\"'\n    heartbeat: amm\n",
    )
    assert problems(path) == [
        f"{rules}:4:5: rules[0].heartbeat: unknown heartbeat 'amm' (known: am)",
    ]
    rules.write_text(rules.read_text().replace("amm", "am"))
    loaded = load(path)
    assert list(loaded.config.heartbeats) == ["am"]
    assert loaded.classifier.rules[0].heartbeat == "am"
