"""The SRE tooling: ``tocsin check``, ``tocsin test`` and ``tocsin explain`` (DESIGN.md §10)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.driver.cli import cli_process, run
from tests.driver.process import REPO

AUTH = """\
auth:
  receiver:
    bearer_tokens: ["t0ken"]
"""


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository root with the example config's receiver token set."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TOCSIN_RECEIVER_TOKEN", "x")
    monkeypatch.delenv("TOCSIN_API_TOKEN", raising=False)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run_subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    """``tocsin argv...`` as a real process with the example config's receiver token set."""
    return cli_process(*argv, env={**os.environ, "TOCSIN_RECEIVER_TOKEN": "x"})


def explain_argv(config: str | Path, labels: str, *more: str) -> list[str]:
    """``explain --config CONFIG --labels LABELS MORE...``"""
    return ["explain", "--config", str(config), "--labels", labels, *more]


# --------------------------------------------------------------------------- check


def test_check_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "config/example.yaml")
    assert code == 0
    assert err == ""
    assert out == (
        "SUCCESS: config/example.yaml: matrix 'default' (5 levels), 1 rule file(s), "
        "3 rule(s), 1 polic(ies)\n"
    )


def test_check_the_example_config_as_a_real_process() -> None:
    proc = run_subprocess("check", "config/example.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("SUCCESS: config/example.yaml: matrix 'default' (5 levels)")
    assert proc.stderr == ""


def _without_secrets() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("TOCSIN_RECEIVER_TOKEN", "TOCSIN_API_TOKEN")
    }


def _offline(*argv: str) -> subprocess.CompletedProcess[str]:
    """``tocsin argv...`` as a real process with no secrets set, as in a rules repo's CI."""
    return cli_process(*argv, env=_without_secrets())


UNSET_TOKEN = (
    "config/example.yaml:18:9: auth.receiver.bearer_tokens[0]: "
    "serve will refuse to start: TOCSIN_RECEIVER_TOKEN is not set"
)


def test_check_without_the_token_warns_with_the_position() -> None:
    proc = _offline("check", "config/example.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"warning: {UNSET_TOKEN}\n"
    assert proc.stdout.startswith("SUCCESS: config/example.yaml: matrix 'default' (5 levels)")
    assert proc.stdout.endswith(" polic(ies), 1 warning(s)\n")


def test_check_strict_refuses_an_unset_secret() -> None:
    proc = _offline("check", "--strict", "config/example.yaml")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"{UNSET_TOKEN}\nFAILED: 1 problem(s) in config/example.yaml\n"


def test_serve_refuses_an_unset_secret() -> None:
    proc = _offline("serve", "--config", "config/example.yaml", "--listen", "127.0.0.1:1")
    assert proc.returncode == 1
    assert proc.stderr == (
        "config/example.yaml:18:9: auth.receiver.bearer_tokens[0]: "
        "environment variable TOCSIN_RECEIVER_TOKEN is not set\n"
    )


def test_serve_on_an_address_in_use_says_so_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "tocsin.yaml"
    config.write_text(
        (REPO / "config" / "example.yaml")
        .read_text()
        .replace("path: tocsin.db", f"path: {tmp_path / 'tocsin.db'}")
        .replace('files: ["rules/*.yaml"]', f'files: ["{REPO}/config/rules/*.yaml"]')
        .replace('"${TOCSIN_RECEIVER_TOKEN}"', '"t0ken"')
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _offline("serve", "--config", str(config), "--listen", f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f"tocsin: cannot listen on 127.0.0.1:{port} (--listen or server.listen):"
        " address already in use"
    )
    assert "Traceback" not in proc.stderr


def test_test_explain_and_simulate_need_no_secrets(tmp_path: Path) -> None:
    test = _offline("test", "config/rules/example_test.yaml")
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout
    explain = _offline(*explain_argv("config/example.yaml", "a=b"))
    assert explain.returncode == 0, explain.stderr
    assert explain.stderr == ""
    assert "Severity:" in explain.stdout
    payload = tmp_path / "payload.json"
    payload.write_text(
        '{"version": "4", "status": "firing", "receiver": "r", "groupKey": "{}:{}",'
        ' "alerts": [{"status": "firing", "labels": {"alertname": "A"},'
        ' "startsAt": "2026-01-05T10:00:00Z"}]}'
    )
    sim = _offline(
        "simulate", "--config", "config/example.yaml", "--payload", str(payload), "--json"
    )
    assert sim.returncode == 0, sim.stderr
    assert sim.stderr == ""
    assert '"event": "open"' in sim.stdout


def test_check_a_broken_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "rules/main.yaml",
        """\
        rules:
          - name: disk
            severity: SEV-9
            policy: nope
        """,
    )
    config = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + """\
polices: {}
rules:
  files: ["rules/*.yaml", "missing/*.yaml"]
""",
    )
    code, out, err = run(capsys, "check", str(config))
    assert code == 1
    assert out == ""
    levels = "P0 (SEV-1), P1 (SEV-2), P2 (SEV-3), P3 (SEV-4), P4 (SEV-5)"
    # The config's own error does not hide the rule files' (checked against it as written).
    assert err.splitlines() == [
        f"{config}:4:1: polices: unknown key 'polices'; did you mean 'policies'?",
        f"{rules}:3:5: rules[0].severity: unknown severity 'SEV-9'; matrix 'default' has {levels}",
        f"{rules}:4:5: rules[0].policy: unknown policy 'nope' (none are configured)",
        f"{config}:6:27: rules.files[1]: no rule file matches 'missing/*.yaml'",
        f"FAILED: 4 problem(s) in {config}",
    ]
    config.write_text(config.read_text().replace("polices: {}\n", ""))
    code, out, err = run(capsys, "check", str(config))
    assert code == 1
    assert err.splitlines() == [
        f"{rules}:3:5: rules[0].severity: unknown severity 'SEV-9'; matrix 'default' has {levels}",
        f"{rules}:4:5: rules[0].policy: unknown policy 'nope' (none are configured)",
        f"{config}:5:27: rules.files[1]: no rule file matches 'missing/*.yaml'",
        f"FAILED: 3 problem(s) in {config}",
    ]


BROKEN_RULES = """\
rules:
  - name: disk
    severity: SEV-9
    policy: nope
  - name: ok
    policy: office
    team: web
"""

SECTIONS = """\
people:
  alice: {name: Alice, channels: [log]}
policies:
  office:
    steps:
      - {after: 0s, notify: [person:alice]}
rules:
  files: ["rules/*.yaml", "missing/*.yaml"]
  default: {severity: P3, policy: office}
"""


@pytest.mark.parametrize(
    ("broken", "syntax_error", "policy_known"),
    [
        # In another section: the rules section is read whole.
        (
            ("channels: [log]}", "channels: [log]"),
            "6:1: invalid YAML: expected ',' or '}', but got '<scalar>' "
            "(while parsing a flow mapping at line 5, column 10)",
            True,
        ),
        # In the rules section itself, beside `files:`: that key is still read.
        (
            ("policy: office}", "policy: office"),
            "13:1: invalid YAML: expected ',' or '}', but got '<stream end>' "
            "(while parsing a flow mapping at line 12, column 12)",
            True,
        ),
        # In the policies: which policies exist is not known, so none is called unknown.
        (
            ("notify: [person:alice]}", "notify: [person:alice]"),
            "10:1: invalid YAML: expected ',' or '}', but got '<scalar>' "
            "(while parsing a flow mapping at line 9, column 9)",
            False,
        ),
    ],
)
def test_a_yaml_syntax_error_in_the_config_does_not_hide_the_rule_files(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    broken: tuple[str, str],
    syntax_error: str,
    policy_known: bool,
) -> None:
    rules = write(tmp_path, "rules/main.yaml", BROKEN_RULES)
    config = write(tmp_path, "tocsin.yaml", AUTH + SECTIONS.replace(*broken))
    code, out, err = run(capsys, "check", str(config))
    assert (code, out) == (1, "")
    levels = "P0 (SEV-1), P1 (SEV-2), P2 (SEV-3), P3 (SEV-4), P4 (SEV-5)"
    expected = [
        f"{config}:{syntax_error}",
        f"{rules}:3:5: rules[0].severity: unknown severity 'SEV-9'; matrix 'default' has {levels}",
        *([f"{rules}:4:5: rules[0].policy: unknown policy 'nope' (known: office)"] * policy_known),
        f"{rules}:7:5: rules[1].team: unknown team 'web' (none are configured)",
        f"{config}:11:27: rules.files[1]: no rule file matches 'missing/*.yaml'",
    ]
    assert err.splitlines() == [*expected, f"FAILED: {len(expected)} problem(s) in {config}"]


def test_check_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "check", str(tmp_path / "nope.yaml"))
    assert out == ""
    assert code == 1
    assert err.splitlines() == [
        f"{tmp_path / 'nope.yaml'}: cannot read file: No such file or directory",
        f"FAILED: 1 problem(s) in {tmp_path / 'nope.yaml'}",
    ]


# --------------------------------------------------------------------------- test


def test_the_example_rule_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "test", "config/rules/example_test.yaml")
    assert (code, err) == (0, "")
    assert out == (
        "Unit Testing:  config/rules/example_test.yaml\n  SUCCESS (17 alert(s) in 10 test(s))\n\n"
    )


def test_the_example_rule_tests_pass_as_a_real_process() -> None:
    proc = run_subprocess("test", "config/rules/example_test.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS (17 alert(s) in 10 test(s))" in proc.stdout


def _rules_config(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "rules/main.yaml",
        """\
        rules:
          - name: trust
            match: 'severity=~".+"'
            severity_from: severity
            continue: true
          - name: api
            match: 'service="api"'
            severity: P1
            policy: api-urgent
            incident_key: "api/{{ labels.alertname }}"
          - name: office-only
            match: 'team="web"'
            when: {calendar: business-hours}
            severity: P2
        """,
    )
    return write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + """\
people:
  alice: {name: Alice, channels: [log]}
policies:
  api-urgent:
    steps:
      - {after: 0, notify: [person:alice], via: [log]}
      - {after: 10m, notify: [person:alice], unless: resolved}
    repeat: {times: 2, every: 30m}
rules:
  files: ["rules/*.yaml"]
  default: {severity: P3}
""",
    )


def test_a_passing_rule_test_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _rules_config(tmp_path)
    tests = write(
        tmp_path,
        "tests/main_test.yaml",
        """\
        config: ../tocsin.yaml
        at: 2026-01-05T10:00:00   # naive: read as UTC
        tests:
          - name: api alerts page the api policy
            alerts:
              - labels: {alertname: HighErrorRate, service: api}
                expect:
                  {severity: P1, policy: api-urgent, rule: api, incident_key: api/HighErrorRate}
              - labels: {alertname: HighErrorRate, service: api, severity: critical}
                expect: {severity: SEV-1, policy: api-urgent, rule: trust}
          - name: web alerts only count in office hours
            at: 2026-01-05T20:00:00Z
            alerts:
              - labels: {alertname: Slow, team: web}
                expect: {severity: P3, rule: default, title: Slow}
          - name: web alerts in office hours
            alerts:
              - labels: {alertname: Slow, team: web}
                expect: {severity: P2, rule: office-only}
        """,
    )
    code, out, err = run(capsys, "test", str(tests))
    assert (code, err) == (0, "")
    assert out == f"Unit Testing:  {tests}\n  SUCCESS (4 alert(s) in 3 test(s))\n\n"


def test_a_failing_rule_test_file_shows_expected_and_got(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _rules_config(tmp_path)
    tests = write(
        tmp_path,
        "main_test.yaml",
        """\
        config: tocsin.yaml
        tests:
          - name: right
            alerts:
              - labels: {alertname: A, service: api}
                expect: {severity: P1}
          - name: wrong
            alerts:
              - labels: {alertname: A, service: api, severity: critical}
                expect: {severity: P1, policy: other, rule: api}
              - labels: {alertname: B}
                expect: {severity: SEV-9, title: B}
              - labels: {alertname: C}
                expect: {severity: P3}
        """,
    )
    code, out, err = run(capsys, "test", str(tests), "config/rules/example_test.yaml")
    assert (code, err) == (1, "")
    assert out == (
        f"Unit Testing:  {tests}\n"
        "  FAILED:\n"
        '    name: wrong, alert 0 {alertname="A", service="api", severity="critical"}\n'
        "      severity: expected P1 (SEV-2), got P0 (SEV-1)\n"
        "      policy: expected 'other', got 'api-urgent'\n"
        "      rule: expected 'api', got 'trust'\n"
        "      (rules matched: trust, api)\n"
        '    name: wrong, alert 1 {alertname="B"}\n'
        "      severity: expected 'SEV-9', which the matrix does not know\n"
        "      (rules matched: none, default applied)\n"
        "\n"
        "Unit Testing:  config/rules/example_test.yaml\n"
        "  SUCCESS (17 alert(s) in 10 test(s))\n\n"
    )


def test_a_rule_test_file_with_rule_files_of_its_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _rules_config(tmp_path)
    write(tmp_path, "candidate/new.yaml", "rules: [{name: new, severity: P0}]\n")
    tests = write(
        tmp_path,
        "new_test.yaml",
        """\
        config: tocsin.yaml
        rule_files: ["candidate/*.yaml"]
        tests:
          - name: the candidate rules replace the config's
            alerts:
              - labels: {alertname: A, service: api}
                expect: {severity: P0, rule: new, policy: null}
        """,
    )
    code, out, _ = run(capsys, "test", str(tests))
    assert code == 0, out
    tests.write_text(tests.read_text().replace("candidate/*.yaml", "nothing/*.yaml"))
    code, out, err = run(capsys, "test", str(tests))
    assert code == 1
    assert out == f"Unit Testing:  {tests}\n"
    assert err == f"{tests}: rule_files[0]: no rule file matches 'nothing/*.yaml'\n"


def test_a_rule_test_file_without_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tests = write(
        tmp_path,
        "t_test.yaml",
        """\
        tests:
          - name: x
            alerts:
              - labels: {alertname: A}
                expect: {severity: P1}
        """,
    )
    code, out, err = run(capsys, "test", str(tests))
    assert code == 1
    assert out == f"Unit Testing:  {tests}\n"
    assert err == f"{tests}: config: a rule test file needs 'config:'\n"


def test_a_malformed_rule_test_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tests = write(
        tmp_path,
        "t_test.yaml",
        """\
        config: tocsin.yaml
        tests:
          - name: x
            alerts:
              - labels: {alertname: A}
                expect: {severty: P1}
        """,
    )
    code, _, err = run(capsys, "test", str(tests))
    assert code == 1
    assert err == (
        f"{tests}:6:18: tests[0].alerts[0].expect.severty: unknown key 'severty'; "
        "did you mean 'severity'?\n"
    )


def test_a_failing_rule_test_as_a_real_process(tmp_path: Path) -> None:
    _rules_config(tmp_path)
    tests = write(
        tmp_path,
        "t_test.yaml",
        """\
        config: tocsin.yaml
        tests:
          - name: api
            alerts:
              - labels: {alertname: A, service: api}
                expect: {severity: P4}
        """,
    )
    proc = run_subprocess("test", str(tests))
    assert proc.returncode == 1
    assert "      severity: expected P4 (SEV-5), got P1 (SEV-2)\n" in proc.stdout


# --------------------------------------------------------------------------- explain


def test_explain_with_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    labels = "alertname=HighErrorRate,env=production,service=api,severity=critical"
    at = ("--annotations", "summary=5% of requests fail", "--at", "2026-01-05T10:00:00Z")
    code, out, err = run(capsys, *explain_argv("config/example.yaml", labels, *at))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Alert {alertname='HighErrorRate', env='production', service='api', severity='critical'}"
        " at 2026-01-05T10:00:00+00:00",
        "",
        "Rules considered, in order:",
        "  [APPLIED] trust-severity-label  (config/rules/example.yaml)",
        "  [     no] many-instances-down  (config/rules/example.yaml)",
        "            - alertname=\"InstanceDown\" did not match (alertname is 'HighErrorRate')",
        "            - firing_at_least 2: 1 firing",
        "  [APPLIED] production-errors  (config/rules/example.yaml)",
        "",
        "Severity:     P0 (SEV-1)",
        "Rule:         trust-severity-label",
        "Policy:       (the matrix tiers for P0)",
        "Team:         -",
        "Incident key: HighErrorRate/api",
        "Title:        HighErrorRate on api: 5% of requests fail",
        "  because trust-severity-label: trusted label severity='critical' -> P0",
        "  because trust-severity-label: severity P0",
        "",
        "Escalation (matrix 'default' tiers for P0):",
        "  tier 0: +0s          notify role:oncall via each person's channels; unless acknowledged",
        "  tier 1: +5m          notify role:lead via each person's channels; unless acknowledged",
        "  tier 2: +15m         notify role:manager via each person's channels; "
        "unless acknowledged",
        "  tier 3: +30m         notify role:vp via each person's channels; unless acknowledged",
        "  ack target: 5m",
        "  status updates every: 30m",
        "  resolution target: 4h",
        "  review due: 2d",
    ]


def test_explain_lists_matched_but_not_applied_rules_and_unknown_severities(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = _rules_config(tmp_path)
    rules = tmp_path / "rules" / "main.yaml"
    labels = "alertname=Slow, team=web, service=api, severity=disaster"
    code, out, err = run(capsys, *explain_argv(config, labels, "--at", "2026-01-05T20:00:00Z"))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Alert {alertname='Slow', team='web', service='api', severity='disaster'}"
        " at 2026-01-05T20:00:00+00:00",
        "",
        "Rules considered, in order:",
        f"  [APPLIED] trust  ({rules})",
        f"  [APPLIED] api  ({rules})",
        f"  [     no] office-only  ({rules})",
        "            - outside calendar 'business-hours' at 2026-01-05T20:00:00+00:00",
        "",
        "Severity:     P1 (SEV-2)",
        "Rule:         trust",
        "Policy:       api-urgent",
        "Team:         -",
        "Incident key: api/Slow",
        "Title:        Slow",
        "  because trust: label severity='disaster' is not a known severity",
        "  because api: severity P1",
        "  note: severity label value 'disaster' is not in the matrix",
        "",
        "Escalation (policy 'api-urgent'):",
        "  tier 0: +0s          notify person:alice via log; unless acknowledged",
        "  tier 1: +10m         notify person:alice via each person's channels; unless resolved",
        "  repeat 2 more time(s), every 30m",
        "  ack target: 15m",
        "  status updates every: 1h",
        "  resolution target: 8h",
        "  review due: 5d",
    ]
    # In office hours office-only matches too, but api (no continue) decided first.
    labels = "alertname=Slow,team=web,service=api"
    code, out, _ = run(capsys, *explain_argv(config, labels, "--at", "2026-01-05T10:00:00Z"))
    assert code == 0
    assert (
        f"  [matched] office-only  ({rules})\n"
        "            - matched, but an earlier rule without continue: true decided\n"
    ) in out
    assert f"  [     no] trust  ({rules})\n" in out


def test_explain_the_default_as_a_real_process() -> None:
    at = ("--at", "2026-01-05T10:00:00Z")
    proc = run_subprocess(*explain_argv("config/example.yaml", "alertname=Watchdog", *at))
    assert proc.returncode == 0, proc.stderr
    assert "Severity:     P3 (SEV-4)\nRule:         default\n" in proc.stdout
    assert (
        "  tier 0: +0s (only during business-hours) notify role:oncall via each person's "
        "channels; unless acknowledged\n  ack target: 1d\n"
    ) in proc.stdout


def test_explain_with_a_broken_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = write(tmp_path, "tocsin.yaml", AUTH + "polices: {}\n")
    code, out, err = run(capsys, *explain_argv(config, "a=b"))
    assert (code, out) == (1, "")
    assert err == f"{config}:4:1: polices: unknown key 'polices'; did you mean 'policies'?\n"


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "tocsin: error: argument command: invalid choice: 'frobnicate'"),
        ([], "tocsin: error: the following arguments are required: command"),
        (
            ["explain", "--config", "config/example.yaml"],
            "tocsin explain: error: the following arguments are required: --labels",
        ),
        (
            ["explain", "--config", "config/example.yaml", "--labels", "alertname"],
            "tocsin: error: --labels expects k=v[,k2=v2], got 'alertname'",
        ),
        (
            [
                "explain",
                "--config",
                "config/example.yaml",
                "--labels",
                "a=b",
                "--annotations",
                "=x",
            ],
            "tocsin: error: --annotations expects k=v[,k2=v2], got '=x'",
        ),
        (
            ["explain", "--config", "config/example.yaml", "--labels", " , "],
            "tocsin: error: --labels must name at least one label",
        ),
        (
            ["explain", "--config", "config/example.yaml", "--labels", "a=b", "--at", "noon"],
            "tocsin explain: error: argument --at: expected an ISO 8601 instant, got 'noon'",
        ),
        (["check"], "tocsin check: error: the following arguments are required: config"),
        (["test"], "tocsin test: error: the following arguments are required: files"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err


def test_a_usage_error_as_a_real_process() -> None:
    proc = run_subprocess(*explain_argv("config/example.yaml", "oops"))
    assert proc.returncode == 2
    assert proc.stderr == "tocsin: error: --labels expects k=v[,k2=v2], got 'oops'\n"


def test_explain_escapes_control_characters_from_alert_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An alert's labels and annotations must not drive the operator's terminal."""
    labels = (
        "alertname=High\x1b[2J\x1b]0;owned\x07,env=production,service=api\u202e,severity=critical"
    )
    at = ("--annotations", "summary=fine\x1b[8m hidden\x9b31m", "--at", "2026-01-05T10:00:00Z")
    code, out, err = run(capsys, *explain_argv("config/example.yaml", labels, *at))
    assert (code, err) == (0, "")
    assert not any(c in out for c in "\x1b\x07\x9b\u202e")
    assert (
        "Title:        High\\x1b[2J\\x1b]0;owned\\x07: fine\\x1b[8m hidden\\x9b31m"
        in out.splitlines()
    )


# --------------------------------------------------------------------------- issue 10: offline

OFFICE = (
    AUTH
    + """\
calendars:
  business-hours: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], hours: "09:00-17:00"}
people:
  alice: {name: Alice, channels: [log]}
policies:
  office:
    steps:
      - {name: first, after: 0s, notify: [person:alice], via: [log], during: business-hours}
      - {name: morning, after: 30m, at: "business-hours:next-day", notify: [person:alice]}
rules:
  default: {severity: P3, policy: office}
"""
)

EVENING_ALERT = (
    '{"version": "4", "status": "firing", "receiver": "r", "groupKey": "{}:{}", "alerts":'
    ' [{"status": "firing", "labels": {"alertname": "A"}, "startsAt": "2026-01-05T20:00:00Z"}]}'
)


def _office(tmp_path: Path) -> tuple[Path, Path]:
    config = write(tmp_path, "tocsin.yaml", OFFICE)
    return config, write(tmp_path, "payload.json", EVENING_ALERT)


def test_simulate_json_shows_deferred_steps_and_what_is_pending_past_until(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, payload = _office(tmp_path)
    argv = ["simulate", "--config", str(config), "--payload", str(payload), "--json"]
    code, out, err = run(capsys, *argv, "--start", "2026-01-05T20:00:00Z", "--until", "1h")
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["event"] for x in lines] == ["open", "deferred", "pending"]
    deferred = lines[1]
    assert (deferred["t"], deferred["tier"]) == (0.0, 0)
    assert deferred["until"] == "2026-01-06T08:00:00+00:00"  # 09:00 in Berlin
    pending = lines[2]
    assert pending["t"] == 3600.0  # at --until
    assert pending["incident"] == lines[0]["incident"]
    assert pending["steps"] == [
        {"kind": "page", "tier": 0, "round": 0, "t": 43200.0},
        {"kind": "page", "tier": 1, "round": 0, "t": 43200.0},
    ]
    assert "2 step(s) still pending" in pending["message"]


def test_explain_at_prints_calendar_steps_in_the_calendars_zone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, _ = _office(tmp_path)
    argv = explain_argv(config, "alertname=A")
    code, out, err = run(capsys, *argv, "--at", "2026-01-05T20:00:00Z")
    assert (code, err) == (0, "")
    assert (
        "tier 1: +30m then at business-hours:next-day = 2026-01-06T09:00:00+01:00 "
        "(Europe/Berlin) notify person:alice" in out
    )


@pytest.mark.parametrize("command", ["simulate", "explain", "import"])
def test_an_instant_without_an_offset_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """Every command taking an instant parses it one way (``tocsin import opsgenie`` too)."""
    config, payload = _office(tmp_path)
    flag = "--start" if command == "simulate" else "--at"
    if command == "simulate":
        argv = ["simulate", "--config", str(config), "--payload", str(payload)]
    elif command == "explain":
        argv = explain_argv(config, "a=b")
    else:
        argv = ["import", "opsgenie", "--from", str(tmp_path)]
    code, out, err = run(capsys, *argv, flag, "2026-01-05T20:00:00")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].endswith(
        f"error: argument {flag}: '2026-01-05T20:00:00' has no UTC offset; add one, "
        "e.g. 2026-01-05T20:00:00Z or 2026-01-05T20:00:00+01:00"
    )


def test_output_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``tocsin simulate | head``: the reader is gone before anything is written."""
    config, payload = _office(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, deterministically
    try:
        argv = ("simulate", "--config", str(config), "--payload", str(payload), "--json")
        proc = cli_process(*argv, stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 0


def test_explain_says_why_a_known_severity_label_is_not_used(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, _ = _office(tmp_path)
    argv = explain_argv(config, "alertname=A,severity=critical")
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert "Severity:     P3 (SEV-4)" in out
    assert (
        "  note: severity='critical' would be P0 (SEV-1), but no rule trusts the severity "
        "label; add severity_from: [severity] to a rule (or the default) to use it\n" in out
    )
    # A rule that trusts the label: no note, and the label decides.
    rules = write(
        tmp_path,
        "rules/main.yaml",
        "rules:\n  - {name: trust, match: 'severity=~\".+\"', severity_from: [severity]}\n",
    )
    config.write_text(OFFICE.replace("rules:\n", f"rules:\n  files: [{rules}]\n"))
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert "Severity:     P0 (SEV-1)" in out
    assert "no rule trusts" not in out


def test_a_failing_rule_test_never_prints_got_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, _ = _office(tmp_path)
    config.write_text(OFFICE.replace("policy: office", "policy: null"))
    test = write(
        tmp_path,
        "t_test.yaml",
        """\
        config: tocsin.yaml
        tests:
          - name: expects what nothing sets
            alerts:
              - labels: {alertname: A}
                expect: {policy: office, team: web, incident_key: A/x}
        """,
    )
    code, out, err = run(capsys, "test", str(test))
    assert (code, err) == (1, "")
    assert "None" not in out
    assert (
        "      policy: expected 'office', got no policy: no matching rule or default sets one "
        "(the matrix tiers apply)\n" in out
    )
    assert "      team: expected 'web', got no team: no matching rule or default sets one\n" in out
    assert "      incident_key: expected 'A/x', got no incident key: " in out


def test_simulate_never_sends_through_the_configured_adapters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Secrets are deferred and the config's adapters are real: a simulation pages nobody."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        hook = "  hook:\n    steps:\n      - {after: 0s, notify: [person:alice], via: [webhook]}\n"
        adapters = (
            "adapters:\n  webhook:\n    endpoints:\n"
            f'      ops: {{url: "http://127.0.0.1:{port}/hook", secret: "${{HOOK_SECRET}}"}}\n'
        )
        text = OFFICE.replace("policy: office", "policy: hook")
        config = write(tmp_path, "tocsin.yaml", text.replace("policies:\n", "policies:\n" + hook))
        config.write_text(config.read_text() + adapters)
        payload = write(tmp_path, "payload.json", EVENING_ALERT)
        argv = ["simulate", "--config", str(config), "--payload", str(payload), "--json"]
        code, out, err = run(capsys, *argv, "--until", "10m")
        assert (code, err) == (0, "")
        channels = [json.loads(x).get("channel") for x in out.splitlines()]
        assert channels.count("webhook") == 1
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected


# ------------------------------------------------------------------ PagerDuty and public_url

_PD_KEY = "R0UT1NGKEY0000000000000000000001"


def test_check_refuses_events_url_over_http_unless_allowed_for_a_fake(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    adapters = (
        "server: {public_url: 'https://tocsin.example.com'}\n"
        f"adapters:\n  pagerduty:\n    events_url: http://events.example.com\n"
        f"    services: {{api: {_PD_KEY}}}\n"
    )
    config = write(tmp_path, "tocsin.yaml", AUTH + adapters)
    code, _out, err = run(capsys, "check", str(config))
    assert code == 1
    assert err.splitlines()[0] == (
        f"{config}:7:5: adapters.pagerduty.events_url: PagerDuty takes events over https only "
        "(an event sent over http carries the routing key in clear); "
        "allow_insecure_events_url: true allows http for a local test fake"
    )
    # Allowed for a fake on this machine (another host: see the next test).
    local = config.read_text().replace("http://events.example.com", "http://127.0.0.1:8080")
    config.write_text(local + "    allow_insecure_events_url: true\n")
    code, _out, err = run(capsys, "check", str(config))
    assert (code, err) == (0, "")
    config.write_text(config.read_text().replace("http://127.0.0.1:8080", "https://events.a.com"))
    code, _out, err = run(capsys, "check", str(config))
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8080", True),
        ("127.8.9.10", True),
        ("[::1]:8080", True),
        ("localhost:8080", True),
        ("events.example.com", False),
        ("10.0.0.5:8080", False),
        ("[::ffff:10.0.0.5]", False),
        ("localhost.example.com", False),
    ],
)
def test_allow_insecure_events_url_allows_plain_http_only_to_this_machine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, host: str, allowed: bool
) -> None:
    """The escape hatch is for a local fake: to another host the routing key crosses the
    network in clear, so check refuses it even when allowed."""
    adapters = (
        "server: {public_url: 'https://tocsin.example.com'}\n"
        f"adapters:\n  pagerduty:\n    events_url: 'http://{host}'\n"
        f"    allow_insecure_events_url: true\n    services: {{api: {_PD_KEY}}}\n"
    )
    config = write(tmp_path, "tocsin.yaml", AUTH + adapters)
    code, _out, err = run(capsys, "check", str(config))
    if allowed:
        assert (code, err) == (0, "")
        return
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    assert code == 1
    assert err.splitlines()[0] == (
        f"{config}:7:5: adapters.pagerduty.events_url: allow_insecure_events_url allows plain "
        f"http only to this machine (127.0.0.0/8, ::1, localhost) for a local test fake, "
        f"not to {hostname!r}"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("''", "empty"),
        ("/tocsin", "a relative reference, not an absolute http(s) URL"),
        ("tocsin.example.com", "a relative reference, not an absolute http(s) URL"),
        ("ftp://tocsin.example.com", "a ftp: URL, not an absolute http(s) URL"),
    ],
)
def test_check_refuses_a_public_url_that_is_not_absolute(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, why: str
) -> None:
    config = write(tmp_path, "tocsin.yaml", AUTH + f"server: {{public_url: {url}}}\n")
    code, _out, err = run(capsys, "check", str(config))
    assert code == 1
    assert err.splitlines()[0].startswith(
        f"{config}:4:10: server.public_url: must be an absolute http(s) URL: {why}, got "
    )


def test_check_warns_on_a_loopback_public_url_when_pages_carry_links(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pd = f"adapters:\n  pagerduty:\n    services: {{api: {_PD_KEY}}}\n"
    config = write(tmp_path, "tocsin.yaml", AUTH + "server: {public_url: 'http://[::1]:9095'}\n")
    assert run(capsys, "check", str(config))[::2] == (0, "")  # nothing sends links outward
    config.write_text(config.read_text() + pd)
    code, _out, err = run(capsys, "check", str(config))
    assert code == 0
    assert err.splitlines() == [
        f"warning: {config}:4:10: server.public_url: 'http://[::1]:9095' is a loopback address: "
        "links in pages and emails, and phone callbacks, will not reach tocsin from anywhere else"
    ]
    code, _out, err = run(capsys, "check", "--strict", str(config))
    assert code == 1


@pytest.mark.parametrize(
    "section",
    [
        "  ntfy: {link_secret: ntfy-link-secret-0123456789}\n",
        "  pushover: {token: t, callback_secret: pushover-callback-0123456789}\n",
    ],
)
def test_check_warns_on_a_loopback_public_url_for_push_buttons_and_callbacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, section: str
) -> None:
    server = "server: {public_url: 'http://127.0.0.1:9095'}\n"
    config = write(tmp_path, "tocsin.yaml", AUTH + server + "adapters:\n" + section)
    code, _out, err = run(capsys, "check", str(config))
    assert code == 0
    assert "is a loopback address" in err


def test_check_refuses_pushover_emergency_levels_that_are_not_the_matrixs_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A typo'd level would page that level at normal priority, silently: refused, located.
    server = "server: {public_url: 'https://tocsin.example.com'}\n"
    pushover = (
        "adapters:\n"
        "  pushover:\n"
        "    token: t\n"
        "    callback_secret: pushover-callback-0123456789\n"
        "    emergency: [P0, p1, SEV-9]\n"
    )
    config = write(tmp_path, "tocsin.yaml", AUTH + server + pushover)
    code, _out, err = run(capsys, "check", str(config))
    assert code == 1
    keys = "(P0, P1, P2, P3, P4)"
    assert err.splitlines() == [
        f"{config}:9:21: adapters.pushover.emergency[1]: unknown level 'p1': emergency lists "
        f"the matrix's level keys {keys}; write its key 'P1'",
        f"{config}:9:25: adapters.pushover.emergency[2]: unknown level 'SEV-9': emergency lists "
        f"the matrix's level keys {keys}",
        f"FAILED: 2 problem(s) in {config}",
    ]
    config.write_text(config.read_text().replace("p1, SEV-9", "P1"))
    assert run(capsys, "check", str(config))[::2] == (0, "")


def test_check_warns_when_pagerduty_webhooks_cannot_be_matched_without_a_rest_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pd = (
        "adapters:\n  pagerduty:\n"
        f"    services: {{api: {_PD_KEY}}}\n    webhook_secrets: [whsec-current]\n"
    )
    server = "server: {public_url: 'https://tocsin.example.com'}\n"
    config = write(tmp_path, "tocsin.yaml", AUTH + server + pd)
    code, _out, err = run(capsys, "check", str(config))
    assert code == 0
    assert err.splitlines() == [
        f"warning: {config}:8:5: adapters.pagerduty.webhook_secrets: PagerDuty acks cannot be "
        "matched to incidents without adapters.pagerduty.api_token (a REST API key that can "
        "read incidents)"
    ]
    config.write_text(config.read_text() + "    api_token: u+readOnlyRestKey\n")
    assert run(capsys, "check", str(config))[::2] == (0, "")


def test_check_warns_when_the_replay_window_is_shorter_than_pagerdutys_retries(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pd = (
        "adapters:\n  pagerduty:\n"
        f"    services: {{api: {_PD_KEY}}}\n    webhook_secrets: [whsec-current]\n"
        "    api_token: u+readOnlyRestKey\n"
    )
    server = "server: {public_url: 'https://tocsin.example.com', replay_window: 1h}\n"
    config = write(tmp_path, "tocsin.yaml", AUTH + server + pd)
    code, _out, err = run(capsys, "check", str(config))
    assert code == 0
    assert err.splitlines() == [
        f"warning: {config}:4:52: server.replay_window: PagerDuty retries a webhook tocsin could "
        "not take for up to 48 hours; a retry more than 1h after its event is refused as stale "
        "and lost"
    ]
    # The default window is PagerDuty's horizon: nothing to say.
    config.write_text(config.read_text().replace(", replay_window: 1h", ""))
    assert run(capsys, "check", str(config))[::2] == (0, "")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://api.example.com",
            "PagerDuty's REST API is served over https only (a request over http carries the API "
            "token in clear); python-pagerduty refuses any other URL, even for a local test fake",
        ),
        ("api.pagerduty.com", "must be an absolute https:// URL, not 'api.pagerduty.com'"),
    ],
)
def test_check_refuses_an_api_url_that_is_not_https(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, message: str
) -> None:
    """Accepted, it would switch webhook matching off at run time: every ack 2xx and lost."""
    adapters = (
        "server: {public_url: 'https://tocsin.example.com'}\n"
        f"adapters:\n  pagerduty:\n    api_url: {url}\n"
        f"    services: {{api: {_PD_KEY}}}\n    api_token: u+readOnlyRestKey\n"
    )
    config = write(tmp_path, "tocsin.yaml", AUTH + adapters)
    code, _out, err = run(capsys, "check", str(config))
    assert code == 1
    assert err.splitlines()[0] == f"{config}:7:5: adapters.pagerduty.api_url: {message}"
    config.write_text(config.read_text().replace(url, "https://api.eu.pagerduty.com"))
    assert run(capsys, "check", str(config))[::2] == (0, "")
