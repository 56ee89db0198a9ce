"""load_config: a whole config with its rule files; every problem says file:line:column: path."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.load import LoadedConfig, load_config
from rules.alerts import Alert, Notification

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "example.yaml"

AUTH = """\
auth:
  receiver:
    bearer_tokens: ["t0ken"]
"""

PEOPLE = """\
people:
  alice: {name: Alice, channels: [log]}
  bob: {name: Bob, channels: [log]}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    """Every problem load_config reports for ``path``, as printed by ``tocsin check``."""
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env if env is not None else {})
    return [str(p) for p in info.value.problems]


def load(path: Path, env: dict[str, str] | None = None) -> LoadedConfig:
    return load_config(path, env=env if env is not None else {})


# --------------------------------------------------------------------------- valid configs


def test_the_example_config_loads() -> None:
    loaded = load_config(EXAMPLE, env={"TOCSIN_RECEIVER_TOKEN": "x"})
    assert loaded.matrix.name == "default"
    assert [Path(f).name for f, _ in loaded.rule_files] == ["example.yaml"]
    assert [r.name for r in loaded.classifier.rules] == [
        "trust-severity-label",
        "many-instances-down",
        "production-errors",
    ]
    assert loaded.classifier.default.severity == "P3"
    assert loaded.config.auth.receiver.bearer_tokens[0].get_secret_value() == "x"
    assert loaded.config.auth.api_tokens == []  # ${TOCSIN_API_TOKEN:-} unset -> no API token
    assert sorted(loaded.config.calendars) == ["business-hours"]
    assert loaded.config.calendars["business-hours"].timezone == "Europe/London"


def test_the_example_config_reads_the_api_token_from_the_environment() -> None:
    loaded = load_config(EXAMPLE, env={"TOCSIN_RECEIVER_TOKEN": "x", "TOCSIN_API_TOKEN": "api"})
    (token,) = loaded.config.auth.api_tokens
    assert (token.name, token.token.get_secret_value(), token.scope) == ("ops", "api", "write")


def test_a_minimal_config_is_valid_and_gets_a_business_hours_calendar(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, "tocsin.yaml", AUTH))
    assert loaded.matrix.name == "default"
    assert loaded.rule_files == []
    cal = loaded.config.calendars["business-hours"]  # the default preset's P3 tier needs it
    assert (cal.timezone, cal.days, cal.hours) == (
        "UTC",
        ["mon", "tue", "wed", "thu", "fri"],
        "09:00-17:00",
    )


def test_rule_files_are_globbed_in_order_and_test_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "rules/b.yaml", "rules: [{name: b, severity: P2}]\n")
    write(tmp_path, "rules/a.yaml", "rules: [{name: a, match: 'x=\"1\"', severity: P1}]\n")
    write(tmp_path, "rules/a_test.yaml", "tests: []\n")  # a `tocsin test` file, not rules
    write(tmp_path, "more/c.yml", "rules: [{name: c, severity: P3}]\n")
    path = write(
        tmp_path, "tocsin.yaml", AUTH + 'rules:\n  files: ["rules/*.yaml", "more/c.yml"]\n'
    )
    loaded = load(path)
    assert [Path(f).relative_to(tmp_path).as_posix() for f, _ in loaded.rule_files] == [
        "rules/a.yaml",
        "rules/b.yaml",
        "more/c.yml",
    ]
    assert [r.name for r in loaded.classifier.rules] == ["a", "b", "c"]


def test_a_test_file_named_literally_is_loaded(tmp_path: Path) -> None:
    write(tmp_path, "odd_test.yaml", "rules: [{name: odd, severity: P1}]\n")
    loaded = load(write(tmp_path, "tocsin.yaml", AUTH + "rules: {files: [odd_test.yaml]}\n"))
    assert [r.name for r in loaded.classifier.rules] == ["odd"]


def test_a_rule_files_default_is_used_when_the_config_gives_none(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", "rules: []\ndefault: {severity: high, team: sre}\n")
    path = write(tmp_path, "tocsin.yaml", AUTH + "teams: {sre: {}}\nrules: {files: [r.yaml]}\n")
    loaded = load(path)
    alert = Alert(status="firing", labels={"alertname": "X"}, startsAt="2026-01-05T10:00:00Z")
    group = Notification(version="4", receiver="r", status="firing", alerts=[alert], groupKey="k")
    got = loaded.classifier.classify(alert, group, alert.starts_at)  # type: ignore[arg-type]
    assert (got.severity, got.team, got.rule) == ("P1", "sre", "default")


def test_env_substitution_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        """\
        auth:
          receiver:
            bearer_tokens: ["${AM_TOKEN}", "${OLD_TOKEN:-}"]
        store:
          path: "${DB_PATH:-/var/lib/tocsin/tocsin.db}"
        """,
    )
    loaded = load(path, env={"AM_TOKEN": "new"})
    assert [t.get_secret_value() for t in loaded.config.auth.receiver.bearer_tokens] == ["new"]
    assert str(loaded.config.store.path) == "/var/lib/tocsin/tocsin.db"


def test_file_secrets_are_read_relative_to_the_config(tmp_path: Path) -> None:
    write(tmp_path, "secrets/am-token", "from-a-file\n")
    write(tmp_path, "secrets/am-password", "pa55\n")
    path = write(
        tmp_path,
        "tocsin.yaml",
        """\
        auth:
          receiver:
            basic_auth:
              - {username: alertmanager, password_file: secrets/am-password}
          api_tokens:
            - {name: ops, token_file: secrets/am-token, scope: write}
        """,
    )
    auth = load(path).config.auth
    assert auth.receiver.basic_auth[0].password.get_secret_value() == "pa55"
    assert auth.api_tokens[0].token.get_secret_value() == "from-a-file"


def test_matrix_preset_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + "matrix: {preset: code-project, levels: {P0: {ack_target: 2m}, SEV2: {review_due: 3d}}}",
    )
    matrix = load(path).matrix
    assert matrix.name == "code-project"
    assert matrix.levels["P0"].ack_target == timedelta(minutes=2)
    assert matrix.levels["P0"].update_every == timedelta(minutes=15)  # the rest of the preset stays
    assert matrix.levels["P1"].review_due == timedelta(days=3)
    assert matrix.resolve("Severity 1") == "P0"


# --------------------------------------------------------------------------- errors with positions


def test_unknown_top_level_key_with_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "tocsin.yaml", AUTH + "polices: {}\nrecievers: []\n")
    assert problems(path) == [
        f"{path}:4:1: polices: unknown key 'polices'; did you mean 'policies'?",
        f"{path}:5:1: recievers: unknown key 'recievers'",
    ]


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + PEOPLE
        + """\
policies:
  urgent:
    steps:
      - afterr: 5m
        notify: [person:alice]
""",
    )
    assert problems(path) == [
        f"{path}:10:9: policies.urgent.steps[0].afterr: unknown key 'afterr'; did you mean 'after'?"
    ]


def test_bad_duration(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + PEOPLE
        + "policies:\n  p:\n    steps:\n      - {after: 5 minutes, notify: [person:bob]}\n",
    )
    assert problems(path) == [
        f"{path}:10:10: policies.p.steps[0].after: "
        "expected a duration like 90s, 15m, 2h or 1d, got '5 minutes'"
    ]


def test_unset_env_var_is_an_error_with_its_position(tmp_path: Path) -> None:
    path = write(
        tmp_path, "tocsin.yaml", 'auth:\n  receiver:\n    bearer_tokens: ["${AM_TOKEN}"]\n'
    )
    assert problems(path) == [
        f"{path}:3:21: auth.receiver.bearer_tokens[0]: environment variable AM_TOKEN is not set"
    ]


def test_missing_secret_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH + "  api_tokens:\n    - {name: ops, token_file: nope.txt}\n",
    )
    assert problems(path) == [
        f"{path}:5:19: auth.api_tokens[0].token_file: "
        f"cannot read file '{tmp_path / 'nope.txt'}': No such file or directory"
    ]


def test_references_between_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + PEOPLE
        + """\
roles:
  lead: [person:carol, bob]
teams:
  core: {members: [alice, zed], schedule: nightly}
policies:
  p:
    steps:
      - {after: 5m, notify: [role:boss, schedule:none, team:core], during: office}
rules:
  default: {severity: P2, policy: ghost, team: ghosts}
""",
    )
    assert problems(path) == [
        f"{path}:14:30: policies.p.steps[0].notify[0]: unknown role 'boss' (known: lead)",
        f"{path}:14:41: policies.p.steps[0].notify[1]: "
        "unknown schedule 'none' (none are configured)",
        f"{path}:14:68: policies.p.steps[0].during: unknown calendar 'office' (known: "
        "business-hours)",
        f"{path}:8:10: roles.lead[0]: unknown person 'carol' (known: alice, bob)",
        f"{path}:10:27: teams.core.members[1]: unknown person 'zed' (known: alice, bob)",
        f"{path}:10:33: teams.core.schedule: unknown schedule 'nightly' (none are configured)",
        f"{path}:16:27: rules.default.policy: unknown policy 'ghost' (known: p)",
        f"{path}:16:42: rules.default.team: unknown team 'ghosts' (known: core)",
    ]


def test_unknown_schedule_members_point_at_what_the_file_says(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + PEOPLE
        + """\
schedules:
  primary:
    members: [alice, zed]
    start: "2026-01-05T09:00:00"
    shift: 1w
  layered:
    layers:
      - members: [bob, yan]
        start: "2026-01-05T09:00:00"
        shift: 1d
    overrides:
      - {person: quinn, start: "2026-01-06T00:00:00Z", end: "2026-01-07T00:00:00Z"}
      - {person: bob, start: "2026-01-08T00:00:00Z", end: "2026-01-09T00:00:00Z", replaces: xia}
""",
    )
    assert problems(path) == [
        f"{path}:9:22: schedules.primary.members[1]: unknown person 'zed' (known: alice, bob)",
        f"{path}:14:24: schedules.layered.layers[0].members[1]: unknown person 'yan' (known: "
        "alice, bob)",
        f"{path}:18:10: schedules.layered.overrides[0].person: unknown person 'quinn' (known: "
        "alice, bob)",
        f"{path}:19:83: schedules.layered.overrides[1].replaces: unknown person 'xia' (known: "
        "alice, bob)",
    ]


def test_rule_file_problems_are_located_inside_the_rule_file(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "rules/main.yaml",
        """\
        rules:
          - name: disk
            match: 'alertname="DiskFull"'
            severity: SEV-9
          - name: api
            policy: api-urgent
            team: api
            when:
              calendar: office
              outside_calendar: freeze
        default:
          severity: catastrophic
        """,
    )
    path = write(tmp_path, "tocsin.yaml", AUTH + "rules: {files: [rules/*.yaml]}\n")
    levels = "P0 (SEV-1), P1 (SEV-2), P2 (SEV-3), P3 (SEV-4), P4 (SEV-5)"
    assert problems(path) == [
        f"{rules}:4:5: rules[0].severity: unknown severity 'SEV-9'; matrix 'default' has {levels}",
        f"{rules}:6:5: rules[1].policy: unknown policy 'api-urgent' (none are configured)",
        f"{rules}:7:5: rules[1].team: unknown team 'api' (none are configured)",
        f"{rules}:9:7: rules[1].when.calendar: unknown calendar 'office' (known: business-hours)",
        f"{rules}:10:7: rules[1].when.outside_calendar: unknown calendar 'freeze' (known: "
        "business-hours)",
        f"{rules}:12:3: default.severity: "
        f"unknown severity 'catastrophic'; matrix 'default' has {levels}",
    ]


def test_rule_file_schema_errors_and_env_in_rule_files(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "r.yaml",
        """\
        rules:
          - name: a
            match: 'a=~"("'
            severty: P1
            team: "${TEAM}"
        """,
    )
    path = write(tmp_path, "tocsin.yaml", AUTH + "rules: {files: [r.yaml]}\n")
    assert problems(path) == [f"{rules}:5:11: rules[0].team: environment variable TEAM is not set"]
    assert problems(path, env={"TEAM": "x"}) == [
        f"{rules}:3:5: rules[0].match: bad matcher 'a=~\"(\"': invalid regular expression: "
        "missing closing ) at offset 4 in 'a=~\"(\"'",
        f"{rules}:4:5: rules[0].severty: unknown key 'severty'; did you mean 'severity'?",
        # A key error in the file does not hide what the rest of it refers to.
        f"{rules}:5:5: rules[0].team: unknown team 'x' (none are configured)",
    ]


def test_a_key_error_does_not_hide_an_unknown_severity(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "r.yaml",
        """        rules:
          - name: a
            severity: SEV-9
            severity_form: [severity]
        """,
    )
    path = write(tmp_path, "tocsin.yaml", AUTH + "rules: {files: [r.yaml]}\n")
    found = problems(path)
    assert len(found) == 2
    assert found[0].startswith(f"{rules}:3:5: rules[0].severity: unknown severity 'SEV-9'")
    assert found[1].startswith(f"{rules}:4:5: rules[0].severity_form: unknown key")


def test_config_errors_do_not_hide_rule_file_errors(tmp_path: Path) -> None:
    rules = write(tmp_path, "r.yaml", "rules:\n  - name: a\n    severity: SEV-9\n    tema: x\n")
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH + "matrix: {preset: default}\nserver: {lisen: x}\nrules: {files: [r.yaml]}\n",
    )
    found = problems(path)
    assert found[0] == f"{path}:5:10: server.lisen: unknown key 'lisen'; did you mean 'listen'?"
    assert found[1].startswith(f"{rules}:3:5: rules[0].severity: unknown severity 'SEV-9'")
    assert found[2].startswith(f"{rules}:4:5: rules[0].tema: unknown key 'tema'")
    assert len(found) == 3


def test_an_unset_variable_in_the_config_does_not_hide_rule_file_errors(tmp_path: Path) -> None:
    rules = write(tmp_path, "r.yaml", "rules:\n  - name: a\n    severity: SEV-9\n")
    path = write(
        tmp_path, "tocsin.yaml", AUTH + 'server: {public_url: "${URL}"}\nrules: {files: [r.yaml]}\n'
    )
    found = problems(path)
    assert found[0] == f"{path}:4:22: server.public_url: environment variable URL is not set"
    assert found[1].startswith(f"{rules}:3:5: rules[0].severity: unknown severity 'SEV-9'")
    assert len(found) == 2


def test_an_email_link_secret_serve_would_refuse_is_refused_here(tmp_path: Path) -> None:
    """check and serve share one validation path: what build would refuse, load refuses."""
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH + "adapters:\n  email:\n    host: localhost\n    link_secret: short\n",
    )
    assert problems(path) == [
        f"{path}:7:5: adapters.email.link_secret: link_secret must be at least 16 characters "
        "(it signs the acknowledge links in emails)"
    ]
    path.write_text(AUTH + "adapters:\n  pagerduty:\n    services: {api: abc}\n")
    assert problems(path) == [
        f"{path}:6:16: adapters.pagerduty.services.api: a PagerDuty routing "
        "(integration) key is 32 characters long; this one has 3"
    ]


def test_unset_secrets_are_deferred_for_offline_tools(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        """        auth:
          receiver:
            bearer_tokens: ["${RECEIVER}"]
        adapters:
          email: {link_secret: "${LINK}"}
          pagerduty: {services: {api: "${ROUTING_KEY}"}}
        server: {public_url: "${PUBLIC_URL}"}
        """,
    )
    # serve: every unset variable is an error
    assert [p.split(": ", 2)[-1] for p in problems(path)] == [
        "environment variable RECEIVER is not set",
        "environment variable LINK is not set",
        "environment variable ROUTING_KEY is not set",
        "environment variable PUBLIC_URL is not set",
    ]
    # offline: secrets are warnings; a non-secret value stays an error
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, secrets="deferred")
    assert [str(p) for p in info.value.problems] == [
        f"{path}:7:22: server.public_url: environment variable PUBLIC_URL is not set"
    ]
    loaded = load_config(path, env={"PUBLIC_URL": "https://x"}, secrets="deferred")
    assert [str(w) for w in loaded.warnings] == [
        f"{path}:3:21: auth.receiver.bearer_tokens[0]: "
        "serve will refuse to start: RECEIVER is not set",
        f"{path}:5:24: adapters.email.link_secret: serve will refuse to start: LINK is not set",
        f"{path}:6:31: adapters.pagerduty.services.api: "
        "serve will refuse to start: ROUTING_KEY is not set",
    ]


def test_glob_matching_no_file(tmp_path: Path) -> None:
    path = write(tmp_path, "tocsin.yaml", AUTH + 'rules:\n  files:\n    - "rules/*.yaml"\n')
    assert problems(path) == [f"{path}:6:7: rules.files[0]: no rule file matches 'rules/*.yaml'"]


def test_two_defaults(tmp_path: Path) -> None:
    first = write(tmp_path, "r/1.yaml", "default: {severity: P3}\n")
    second = write(tmp_path, "r/2.yaml", "rules: []\ndefault: {severity: P2}\n")
    path = write(tmp_path, "tocsin.yaml", AUTH + "rules: {files: [r/*.yaml]}\n")
    assert problems(path) == [f"{second}:2:1: default: a default is already given by {first}"]
    path = write(
        tmp_path, "tocsin.yaml", AUTH + "rules: {files: [r/1.yaml], default: {severity: P4}}\n"
    )
    assert problems(path) == [
        f"{first}:1:1: default: a default is already given by the config's rules.default"
    ]


def test_duplicate_rule_names_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "r/1.yaml", "rules:\n  - name: disk\n  - name: cpu\n")
    second = write(tmp_path, "r/2.yaml", "rules:\n  - name: mem\n  - name: disk\n")
    path = write(tmp_path, "tocsin.yaml", AUTH + "rules: {files: [r/*.yaml]}\n")
    assert problems(path) == [
        f"{second}:3:5: rules[1].name: rule 'disk' is also defined in {first}"
    ]


def test_duplicate_rule_names_within_one_file(tmp_path: Path) -> None:
    rules = write(tmp_path, "r.yaml", "rules:\n  - name: disk\n  - name: disk\n")
    path = write(tmp_path, "tocsin.yaml", AUTH + "rules: {files: [r.yaml]}\n")
    assert problems(path) == [
        f"{rules}:3:5: rules[1].name: rule name 'disk' is already used by rules[0] (line 2)"
    ]


def test_unknown_preset_lists_the_presets(tmp_path: Path) -> None:
    path = write(tmp_path, "tocsin.yaml", AUTH + "matrix:\n  preset: google\n")
    assert problems(path) == [
        f"{path}:5:3: matrix.preset: unknown severity preset 'google'; available: code-project, "
        "default, llm-config-manager, llm-marketplace, llm-research-lab, pipeline-guard"
    ]


def test_bad_matrix_overrides_are_located_at_the_key_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + """\
matrix:
  preset: code-project
  levels:
    SEV2:
      ack_targett: 2m
    P0:
      ack_target: soon
""",
    )
    assert problems(path) == [
        f"{path}:8:7: matrix.levels.SEV2.ack_targett: unknown key 'ack_targett'; "
        "did you mean 'ack_target'?",
        f"{path}:10:7: matrix.levels.P0.ack_target: "
        "expected a duration like 90s, 15m, 2h or 1d, got 'soon'",
    ]


def test_bad_matrix_default_level(tmp_path: Path) -> None:
    path = write(
        tmp_path, "tocsin.yaml", AUTH + "matrix:\n  preset: code-project\n  default_level: P4\n"
    )
    assert problems(path) == [
        f"{path}:6:3: matrix.default_level: "
        "default_level 'P4' is not a level of this matrix (P0, P1, P2, P3)"
    ]


def test_unknown_matrix_level_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, "tocsin.yaml", AUTH + "matrix: {preset: code-project, levels: {SEV9: {}}}\n"
    )
    assert problems(path) == [
        f"{path}:4:1: matrix: matrix.levels: 'SEV9' is neither a canonical level "
        "(P0, P1, P2, P3, P4) nor a level of preset 'code-project'"
    ]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "tocsin.yaml", AUTH + "rules: [unclosed\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:5:1: invalid YAML: ")


def test_unreadable_config(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    assert problems(path) == [f"{path}: cannot read file: No such file or directory"]


def test_api_tokens_need_distinct_names(tmp_path: Path) -> None:
    """A token's name is who its actions are recorded as: required, and never shared."""
    path = write(
        tmp_path,
        "tocsin.yaml",
        AUTH
        + "  api_tokens:\n"
        + "    - {token: t1, scope: write}\n"
        + "    - {name: ops, token: t2}\n"
        + "    - {name: ops, token: t3}\n",
    )
    assert problems(path) == [
        f"{path}:5:7: auth.api_tokens[0].name: missing required key 'name'",
    ]
    path.write_text(path.read_text().replace("{token: t1,", "{name: bot, token: t1,"))
    [problem] = problems(path)
    assert problem.startswith(f"{path}:4:3: auth.api_tokens: ")
    assert "two API tokens are named 'ops'" in problem


def test_an_unknown_channel_in_via_is_named_without_got_a_list(tmp_path: Path) -> None:
    path = tmp_path / "tocsin.yaml"
    path.write_text(
        "auth: {receiver: {bearer_tokens: [t0ken]}}\n"
        "policies:\n"
        "  p:\n"
        "    steps: [{notify: [person:a], via: [smoke]}]\n"
        "people: {a: {name: A}}\n"
    )
    try:
        load_config(path, env={})
    except ConfigError as e:
        found = [str(p).removeprefix(f"{path}:") for p in e.problems]
    else:
        found = []
    assert [f for f in found if "smoke" in f] == [
        "4:34: policies.p.steps[0].via: unknown channel 'smoke'; expected one of log, pagerduty,"
        " email, phone, sms, webhook, slack, teams, ntfy, pushover"
    ]


CONSOLE_USERS = """\
  console:
    users:
      - {name: alice, token: alice-console-token, scope: write}
      - {name: bob, token: bob-console-token, scope: read}
      - {name: nightwatch, token: nightwatch-token, scope: read}
"""

CONSOLE_PROXY = """\
  console:
    proxy: {trusted_proxies: [10.0.0.0/8], writers: [alice]}
"""

SLACK_PEOPLE = """\
people:
  alice: {name: Alice, email: alice@example.com, channels: [log]}
  bob: {name: Bob, email: bob@example.com, channels: [log]}
adapters:
  slack:
    bot_token: xoxb-1
    signing_secret: s3cret
"""


@pytest.mark.parametrize(
    ("console", "writers", "warned"),
    [
        (CONSOLE_USERS, "", "the console lets bob only read"),  # nightwatch is no person
        (CONSOLE_USERS, "    writers: [alice]\n", None),
        (CONSOLE_PROXY, "", "auth.console.proxy lets only its writers act"),
        ("", "", None),  # the console lets everyone act who may sign in
    ],
)
def test_check_says_when_slack_lets_act_someone_the_console_lets_only_read(
    tmp_path: Path, console: str, writers: str, warned: str | None
) -> None:
    text = AUTH + console + SLACK_PEOPLE + writers
    got = [str(w).split(": ", 2)[-1] for w in load(write(tmp_path, "tocsin.yaml", text)).warnings]
    assert got == (
        []
        if warned is None
        else [
            f"every person may act from Slack (adapters.slack.writers is empty), though {warned}:"
            " Slack does not read the console's scopes; list who may act in adapters.slack.writers"
        ]
    )


@pytest.mark.parametrize("channel", ["slack", "teams", "ntfy", "pushover"])
def test_a_channel_that_shows_one_incident_per_message_cannot_be_bundled(
    tmp_path: Path, channel: str
) -> None:
    # A bundle is recorded as delivered for every page in it: on a channel whose message shows
    # one incident, the others would be marked sent without anyone seeing them.
    path = tmp_path / "tocsin.yaml"
    path.write_text(
        "auth: {receiver: {bearer_tokens: [t0ken]}}\n"
        "adapters:\n"
        "  dispatch:\n"
        f"    bundle_channels: [email, {channel}]\n"
    )
    [problem] = problems(path)
    assert problem.startswith(f"{path}:4:5: adapters.dispatch.bundle_channels: ")
    assert f"'{channel}' cannot be bundled: its message shows one incident" in problem
    assert "bundling works on log, pagerduty, email, phone, sms, webhook" in problem
    path.write_text(path.read_text().replace(f", {channel}]", ", webhook:ops]"))
    assert load(path).config.adapters.dispatch.bundle_channels == ["email", "webhook:ops"]
