"""Tests for config.loader / config.errors: positions, env and file secrets, validation messages."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from config.errors import ConfigError, Problem, sorted_problems
from config.loader import (
    Document,
    format_path,
    load_document,
    parse_document,
    problems_from_validation_error,
    validate,
)
from rules.durations import Duration

# --------------------------------------------------------------------------- models under test


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: Duration
    notify: list[str]
    unless: Literal["acknowledged", "mitigated", "resolved"] = "acknowledged"


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[Step]
    repeat: int = 0


class Auth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: SecretStr
    password: SecretStr | None = None


class Email(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["email"]
    host: str


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["webhook"]
    url: str


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policies: dict[str, Policy]
    auth: Auth | None = None
    port: int | list[int] = 9095
    channels: list[Annotated[Email | Webhook, Field(discriminator="type")]] = []


def problems(text: str, *, env: dict[str, str] | None = None, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_document(text, "t.yaml", env=env or {}, **kw)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def invalid(model: type[BaseModel], text: str) -> list[str]:
    doc = parse_document(text, "svc.yaml", env={})
    with pytest.raises(ConfigError) as info:
        validate(model, doc)
    return [str(p) for p in info.value.problems]


# --------------------------------------------------------------------------- errors module


def test_problem_str_all_parts() -> None:
    p = Problem("a.yaml", 3, 7, "policies.default.steps[2].after", "expected a duration")
    assert str(p) == "a.yaml:3:7: policies.default.steps[2].after: expected a duration"


def test_problem_str_omits_unknown_parts() -> None:
    assert str(Problem("a.yaml", None, None, "", "cannot read")) == "a.yaml: cannot read"
    assert str(Problem("a.yaml", 4, None, "x", "bad")) == "a.yaml:4: x: bad"


def test_sorted_problems_drops_repeats_and_puts_unlocated_last() -> None:
    whole_file = Problem("a", None, None, "", "cannot read")
    late = Problem("a", 9, 1, "x", "m")
    early_col5 = Problem("a", 2, 5, "y", "m")
    early_col1 = Problem("a", 2, 1, "z", "m")
    got = sorted_problems([whole_file, late, early_col5, late, early_col1])
    assert got == [early_col1, early_col5, late, whole_file]


def test_config_error_one_problem_per_line_and_pickles() -> None:
    err = ConfigError([Problem("a", 1, 1, "x", "m1"), Problem("a", 2, 3, "", "m2")])
    assert str(err) == "a:1:1: x: m1\na:2:3: m2"
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == err.problems
    assert ConfigError(Problem("f", None, None, "", "only")).problems == [
        Problem("f", None, None, "", "only")
    ]


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("a", "b", 2, "c"), "a.b[2].c"),
        ((), ""),
        ((0, "x"), "[0].x"),
        (("labels", "app.kubernetes.io/name"), 'labels["app.kubernetes.io/name"]'),
        (("matrix", "SEV-1", "ack_within"), "matrix.SEV-1.ack_within"),
    ],
)
def test_format_path(loc: tuple[str | int, ...], path: str) -> None:
    assert format_path(loc) == path


# --------------------------------------------------------------------------- parsing & positions


def test_positions_of_nested_keys_and_list_items() -> None:
    doc = parse_document(
        "policies:\n  default:\n    steps:\n      - after: 0\n        notify: [alice, bob]\n",
        "p.yaml",
    )
    assert doc.data == {
        "policies": {"default": {"steps": [{"after": 0, "notify": ["alice", "bob"]}]}}
    }
    assert doc.positions == {
        (): (1, 1),
        ("policies",): (1, 1),
        ("policies", "default"): (2, 3),
        ("policies", "default", "steps"): (3, 5),
        ("policies", "default", "steps", 0): (4, 9),
        ("policies", "default", "steps", 0, "after"): (4, 9),
        ("policies", "default", "steps", 0, "notify"): (5, 9),
        ("policies", "default", "steps", 0, "notify", 0): (5, 18),
        ("policies", "default", "steps", 0, "notify", 1): (5, 25),
    }


def test_position_falls_back_to_nearest_ancestor() -> None:
    doc = parse_document("a:\n  b:\n    c: 1\n")
    assert doc.position(("a", "b", "missing", 3)) == (2, 3)
    assert doc.position(()) == (1, 1)
    assert Document("x", {}, {}).position(("a",)) == (None, None)


def test_empty_file_is_empty_mapping() -> None:
    doc = parse_document("# nothing but a comment\n", "e.yaml")
    assert doc.data == {}
    assert doc.positions == {(): (1, 1)}


def test_scalars_follow_yaml_1_2_core_schema() -> None:
    doc = parse_document(
        "handoff: 10:30\ncountry: NO\non: yes\nn: 010\nh: 0x1f\n"
        "f: 1e3\nt: true\nz: ~\nd: 2024-01-02\n"
    )
    assert doc.data == {
        "handoff": "10:30",
        "country": "NO",
        "on": "yes",
        "n": 10,
        "h": 31,
        "f": 1000.0,
        "t": True,
        "z": None,
        "d": "2024-01-02",
    }


def test_value_with_colon_and_hash_stays_one_string() -> None:
    doc = parse_document('m: "severity=~\\"crit.*\\" # not a comment"\nu: http://x:80/a#b\n')
    assert doc.data == {"m": 'severity=~"crit.*" # not a comment', "u": "http://x:80/a#b"}


def test_duplicate_keys_are_errors() -> None:
    assert problems("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n") == [
        "t.yaml:4:3: b.c: duplicate key 'c' (first defined at line 3)",
        "t.yaml:5:1: a: duplicate key 'a' (first defined at line 1)",
    ]


def test_non_string_keys_are_errors() -> None:
    assert problems("200: ok\nx:\n  true: 1\n") == [
        "t.yaml:1:1: keys must be strings, got an integer 200; quote the key to use it as text",
        "t.yaml:3:3: x: keys must be strings, got a boolean true; quote the key to use it as text",
    ]


def test_syntax_error_has_position() -> None:
    assert problems("a: 1\nb: [1, 2\nc: 3\n") == [
        "t.yaml:3:2: invalid YAML: expected ',' or ']', but got ':'"
        " (while parsing a flow sequence at line 2, column 4)"
    ]


def test_bad_indentation_error_has_position() -> None:
    assert problems("a:\n  b: 1\n c: 2\n") == [
        "t.yaml:3:2: invalid YAML: expected <block end>, but found '<block mapping start>'"
        " (while parsing a block mapping at line 1, column 1)"
    ]


def test_several_documents_are_an_error() -> None:
    assert problems("a: 1\n---\nb: 2\n") == [
        "t.yaml:2:1: invalid YAML: expected a single document in the stream,"
        " but found another document"
    ]


def test_merge_keys_and_recursive_alias() -> None:
    doc = parse_document("base: &b {after: 5m, notify: [x]}\nstep:\n  <<: *b\n  after: 10m\n")
    assert doc.data["step"] == {"after": "10m", "notify": ["x"]}
    assert doc.positions[("step", "after")] == (4, 3)
    assert problems("a: &x [*x]\n") == [
        "t.yaml:1:4: a[0]: recursive alias: a node cannot contain itself"
    ]


def test_unknown_tag_is_error() -> None:
    assert problems("a: !vault secret\n") == ["t.yaml:1:4: a: unsupported YAML tag '!vault'"]


# --------------------------------------------------------------------------- ${ENV}


def test_env_substitution_set_and_default() -> None:
    doc = parse_document(
        "url: http://${HOST}:${PORT:-9095}/x\nlevel: ${LEVEL:-info}\nempty: ${E:-fallback}\n",
        env={"HOST": "pd.example", "E": ""},
    )
    assert doc.data == {"url": "http://pd.example:9095/x", "level": "info", "empty": "fallback"}


def test_env_unset_is_error_at_scalar_position() -> None:
    text = "auth:\n  token: ${TOCSIN_TOKEN}\nlist:\n  - ok\n  - pre-${MISSING}\n"
    assert problems(text) == [
        "t.yaml:2:10: auth.token: environment variable TOCSIN_TOKEN is not set",
        "t.yaml:5:5: list[1]: environment variable MISSING is not set",
    ]


def test_env_dollar_dollar_and_lone_dollar() -> None:
    doc = parse_document("price: $$5 ${X}\nregex: ^api-.*$\n", env={"X": "$HOME"})
    # The value of X is not re-scanned, and a "$" not followed by "{" stays as written.
    assert doc.data == {"price": "$5 $HOME", "regex": "^api-.*$"}


def test_env_not_applied_to_keys_or_when_disabled() -> None:
    doc = parse_document("${K}: ${V}\n", env={"K": "k", "V": "v"})
    assert doc.data == {"${K}": "v"}
    raw = parse_document("a: ${V} $$\n", substitute_env=False)
    assert raw.data == {"a": "${V} $$"}


def test_env_malformed_reference() -> None:
    assert problems("a: ${1X}\n") == [
        "t.yaml:1:4: a: invalid environment variable reference '${1X}': "
        "use ${NAME} or ${NAME:-default}, and $$ for a literal $"
    ]


def test_env_substituted_value_is_a_string() -> None:
    doc = parse_document("port: ${PORT}\n", env={"PORT": "8080"})
    assert doc.data == {"port": "8080"}


# --------------------------------------------------------------------------- *_file secrets


def test_file_secret_read_with_relative_path(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("s3cr3t\n")
    cfg = tmp_path / "tocsin.yaml"
    cfg.write_text("auth:\n  user: u\n  token_file: secrets/token\n")
    doc = load_document(cfg, env={})
    assert doc.data == {"auth": {"user": "u", "token": "s3cr3t"}}
    assert doc.file == str(cfg)
    assert doc.positions[("auth", "token")] == (3, 3)
    assert ("auth", "token_file") not in doc.positions


def test_file_secret_absolute_path_from_env(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pa ss\r\n\n")
    doc = parse_document(
        "items:\n  - password_file: ${DIR}/pw\n", env={"DIR": str(tmp_path)}, base_dir=Path("/")
    )
    assert doc.data == {"items": [{"password": "pa ss"}]}


def test_file_secret_both_given_is_error(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("x")
    assert problems("auth:\n  token: abc\n  token_file: t\n", base_dir=tmp_path) == [
        "t.yaml:3:3: auth.token_file: both 'token' and 'token_file' are set; use only one"
    ]


def test_file_secret_missing_file_is_error(tmp_path: Path) -> None:
    assert problems("auth:\n  token_file: nope.txt\n", base_dir=tmp_path) == [
        f"t.yaml:2:3: auth.token_file: cannot read file '{tmp_path / 'nope.txt'}':"
        " No such file or directory"
    ]


def test_file_secret_empty_path_and_disabled(tmp_path: Path) -> None:
    assert problems("token_file:\n") == [
        "t.yaml:1:1: token_file: 'token_file' must be the path of a file to read"
    ]
    doc = parse_document("token_file: nope\n", base_dir=tmp_path, read_secret_files=False)
    assert doc.data == {"token_file": "nope"}


def test_load_document_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_document(missing)
    assert str(info.value) == f"{missing}: cannot read file: No such file or directory"


# --------------------------------------------------------------------------- validate()


def test_validate_success_returns_model() -> None:
    doc = parse_document(
        "policies:\n  p:\n    steps:\n      - {after: 15m, notify: [lead]}\nport: [1, 2]\n"
    )
    svc = validate(Service, doc)
    assert svc.policies["p"].steps[0].after.total_seconds() == 900
    assert svc.port == [1, 2]


def test_unknown_key_with_did_you_mean() -> None:
    text = (
        "policies:\n"
        "  p:\n"
        "    steps:\n"
        "      - after: 5m\n"
        "        notify: [a]\n"
        "        unles: acknowledged\n"
    )
    assert invalid(Service, text) == [
        "svc.yaml:6:9: policies.p.steps[0].unles: unknown key 'unles'; did you mean 'unless'?"
    ]


def test_unknown_key_at_root_and_without_close_match() -> None:
    assert invalid(Service, "policy: {}\npolicies: {}\nfrobnicate: 1\n") == [
        "svc.yaml:1:1: policy: unknown key 'policy'; did you mean 'policies'?",
        "svc.yaml:3:1: frobnicate: unknown key 'frobnicate'",
    ]


def test_missing_required_key() -> None:
    assert invalid(Service, "policies:\n  p:\n    repeat: 1\n") == [
        "svc.yaml:2:3: policies.p.steps: missing required key 'steps'"
    ]
    assert invalid(Service, "port: 1\n") == [
        "svc.yaml:1:1: policies: missing required key 'policies'"
    ]


def test_wrong_type_says_what_was_expected_and_quotes_value() -> None:
    assert invalid(Service, "policies:\n  p:\n    steps: []\n    repeat: many\n") == [
        "svc.yaml:4:5: policies.p.repeat: expected an integer, got 'many'"
    ]


def test_long_value_is_truncated() -> None:
    long = "x" * 100
    assert invalid(Service, f"policies:\n  p:\n    steps: []\n    repeat: {long}\n") == [
        f"svc.yaml:4:5: policies.p.repeat: expected an integer, got '{'x' * 57}...'"
    ]


def test_error_in_list_item_has_indexed_path() -> None:
    text = (
        "policies:\n"
        "  default:\n"
        "    steps:\n"
        "      - {after: 0, notify: [oncall]}\n"
        "      - after: 5x\n"
        "        notify: [lead]\n"
    )
    assert invalid(Service, text) == [
        "svc.yaml:5:9: policies.default.steps[1].after: "
        "expected a duration like 90s, 15m, 2h or 1d, got '5x'"
    ]


def test_literal_choices_are_listed() -> None:
    text = "policies:\n  p:\n    steps:\n      - {after: 0, notify: [a], unless: acked}\n"
    assert invalid(Service, text) == [
        "svc.yaml:4:33: policies.p.steps[0].unless: "
        "expected 'acknowledged', 'mitigated' or 'resolved', got 'acked'"
    ]


def test_union_member_tags_are_stripped_and_merged() -> None:
    assert invalid(Service, "policies: {}\nport: http\n") == [
        "svc.yaml:2:1: port: expected an integer or a list, got 'http'"
    ]


def test_discriminated_union_errors() -> None:
    text = (
        "policies: {}\n"
        "channels:\n"
        "  - type: sms\n"
        "  - host: smtp\n"
        "  - type: email\n"
        "    host: [a]\n"
        "    hots: x\n"
    )
    assert invalid(Service, text) == [
        "svc.yaml:3:5: channels[0].type: unknown type 'sms', expected one of 'email', 'webhook'",
        "svc.yaml:4:5: channels[1]: missing required key 'type'",
        "svc.yaml:6:5: channels[2].host: expected a string, got a list",
        "svc.yaml:7:5: channels[2].hots: unknown key 'hots'; did you mean 'host'?",
    ]


def test_secret_value_is_never_echoed() -> None:
    out = invalid(Service, "policies: {}\nauth:\n  token: 123456789\n  password: true\n")
    assert out == [
        "svc.yaml:3:3: auth.token: expected a string, got '**********'",
        "svc.yaml:4:3: auth.password: expected a string, got '**********'",
    ]
    assert "123456789" not in "\n".join(out)


class KeyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    routing_key: str = Field(min_length=32)


def test_secret_named_field_is_redacted_even_in_validator_messages() -> None:
    assert invalid(KeyModel, "routing_key: abc\n") == [
        "svc.yaml:1:1: routing_key: String should have at least 32 characters, got '**********'"
    ]


def test_multiple_problems_sorted_by_line() -> None:
    text = "port: nope\npolicies:\n  p:\n    steps:\n      - after: 1m\n    repat: 2\nauth: {}\n"
    assert invalid(Service, text) == [
        "svc.yaml:1:1: port: expected an integer or a list, got 'nope'",
        "svc.yaml:5:9: policies.p.steps[0].notify: missing required key 'notify'",
        "svc.yaml:6:5: policies.p.repat: unknown key 'repat'; did you mean 'repeat'?",
        "svc.yaml:7:1: auth.token: missing required key 'token'",
    ]


def test_problems_from_validation_error_with_prefix() -> None:
    doc = parse_document("service:\n  policies:\n    p:\n      steps: 3\n", "s.yaml")
    with pytest.raises(ValidationError) as info:
        Service.model_validate(doc.data["service"])
    found = problems_from_validation_error(
        info.value,
        doc,
        prefix=("service",),
        model=Service,
    )
    assert [str(p) for p in found] == [
        "s.yaml:4:7: service.policies.p.steps: expected a list, got 3"
    ]


class Database(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dsn: SecretStr


def test_secretstr_field_is_redacted_whatever_its_name() -> None:
    assert invalid(Database, "dsn: 5432\n") == [
        "svc.yaml:1:1: dsn: expected a string, got '**********'"
    ]


def test_model_found_from_error_title_when_not_given() -> None:
    doc = parse_document("dns: x\n", "d.yaml")
    with pytest.raises(ValidationError) as info:
        Database.model_validate(doc.data)
    assert [str(p) for p in problems_from_validation_error(info.value, doc)] == [
        "d.yaml:1:1: dsn: missing required key 'dsn'",
        "d.yaml:1:1: dns: unknown key 'dns'; did you mean 'dsn'?",
    ]
