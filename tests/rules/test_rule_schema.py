"""The rule-file schema: what validates, and the errors for what does not."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from config.errors import ConfigError
from config.load import load_rule_file
from rules.matchers import MatchType
from rules.schema import Compare, Outcome, Rule, RuleFile


def errors(data: Any) -> list[tuple[tuple[str | int, ...], str, str]]:
    """(loc, type, msg) of every validation error for ``data`` as a rule file."""
    with pytest.raises(ValidationError) as info:
        RuleFile.model_validate(data)
    return [(tuple(e["loc"]), e["type"], e["msg"]) for e in info.value.errors()]


def test_a_full_rule_file_validates() -> None:
    rf = RuleFile.model_validate(
        yaml.safe_load("""
rules:
  - name: api
    match: ['{env="production", service=~"api|web"}', 'team!="sandbox"']
    when:
      firing_at_least: 2
      compare:
        - {label: error_ratio, op: ">=", value: 0.05}
        - {annotation: value, op: "<", value: 10}
      calendar: business-hours
      outside_calendar: freeze
    severity: SEV-2
    severity_from: [severity, priority]
    policy: api-urgent
    team: api
    incident_key: "{{ labels.service }}"
    title: "{{ labels.alertname }}"
    continue: true
default:
  severity: P3
  policy: catch-all
""")
    )
    (rule,) = rf.rules
    assert rule.name == "api"
    assert rule.continue_ is True
    assert [(m.name, m.type, m.value) for m in rule.matchers] == [
        ("env", MatchType.EQUAL, "production"),
        ("service", MatchType.REGEX, "api|web"),
        ("team", MatchType.NOT_EQUAL, "sandbox"),
    ]
    assert rule.when.firing_at_least == 2
    assert [(c.source, c.op, c.value) for c in rule.when.compare] == [
        ("label error_ratio", ">=", 0.05),
        ("annotation value", "<", 10.0),
    ]
    assert (rule.when.calendar, rule.when.outside_calendar) == ("business-hours", "freeze")
    assert rule.severity_from == ["severity", "priority"]
    assert rule.key_template is not None and rule.key_template.source == "{{ labels.service }}"
    assert rule.title_template is not None
    assert rf.default == Outcome(severity="P3", policy="catch-all")


def test_single_strings_become_lists_and_defaults_are_empty() -> None:
    rule = Rule.model_validate({"name": "r", "match": 'a="b"', "severity_from": "severity"})
    assert rule.match == ['a="b"']
    assert rule.severity_from == ["severity"]
    assert rule.continue_ is False
    assert rule.when.compare == [] and rule.when.firing_at_least is None
    assert rule.key_template is None and rule.title_template is None
    assert Rule(name="r", continue_=True).continue_ is True  # populate by field name too
    assert RuleFile.model_validate({}) == RuleFile(rules=[], default=None)


def test_duplicate_rule_names_are_an_error() -> None:
    assert errors({"rules": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}) == [
        ((), "value_error", "Value error, rule name 'a' is used twice"),
    ]


@pytest.mark.parametrize(
    ("match", "message"),
    [
        (
            'a=~"("',
            "Value error, bad matcher 'a=~\"(\"': invalid regular expression: "
            "missing closing ) at offset 4 in 'a=~\"(\"'",
        ),
        (
            'a=="b"',
            "Value error, bad matcher 'a==\"b\"': expected a label value, "
            "found '=' at offset 2 in 'a==\"b\"'",
        ),
    ],
)
def test_bad_matcher_text_is_an_error(match: str, message: str) -> None:
    assert errors({"rules": [{"name": "r", "match": ['x="1"', match]}]}) == [
        (("rules", 0, "match"), "value_error", message),
    ]


@pytest.mark.parametrize(
    "compare",
    [
        {"label": "x", "annotation": "y", "op": ">", "value": 1},
        {"op": ">", "value": 1},
    ],
)
def test_compare_needs_exactly_one_of_label_and_annotation(compare: dict[str, Any]) -> None:
    data = {"rules": [{"name": "r", "when": {"compare": [compare]}}]}
    assert errors(data) == [
        (
            ("rules", 0, "when", "compare", 0),
            "value_error",
            "Value error, give exactly one of 'label' or 'annotation'",
        ),
    ]


@pytest.mark.parametrize(
    ("compare", "loc", "etype"),
    [
        ({"label": "x", "op": "=>", "value": 1}, "op", "literal_error"),
        ({"label": "x", "op": ">", "value": "many"}, "value", "float_parsing"),
        ({"label": "", "op": ">", "value": 1}, "label", "string_too_short"),
        ({"label": "x", "op": ">"}, "value", "missing"),
    ],
)
def test_compare_field_errors(compare: dict[str, Any], loc: str, etype: str) -> None:
    data = {"rules": [{"name": "r", "when": {"compare": [compare]}}]}
    assert [(e[0], e[1]) for e in errors(data)] == [
        (("rules", 0, "when", "compare", 0, loc), etype)
    ]


def test_compare_source() -> None:
    assert Compare(label="load", op=">", value=1).source == "label load"
    assert Compare(annotation="load", op=">", value=1).source == "annotation load"


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"rules": [{"name": "r", "severtiy": "P1"}]}, ("rules", 0, "severtiy")),
        (
            {"rules": [{"name": "r", "when": {"firing_at_leest": 2}}]},
            ("rules", 0, "when", "firing_at_leest"),
        ),
        (
            {
                "rules": [
                    {
                        "name": "r",
                        "when": {"compare": [{"label": "x", "op": ">", "value": 1, "lable": "y"}]},
                    }
                ]
            },
            ("rules", 0, "when", "compare", 0, "lable"),
        ),
        ({"rule": []}, ("rule",)),
        ({"default": {"name": "catch-all", "severity": "P3"}}, ("default", "name")),
        ({"default": {"continue": True}}, ("default", "continue")),
    ],
)
def test_unknown_keys_are_errors(data: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    assert errors(data) == [(loc, "extra_forbidden", "Extra inputs are not permitted")]


@pytest.mark.parametrize(
    ("rule", "loc", "etype"),
    [
        ({"match": 'a="b"'}, ("rules", 0, "name"), "missing"),
        ({"name": ""}, ("rules", 0, "name"), "string_too_short"),
        (
            {"name": "r", "when": {"firing_at_least": 0}},
            ("rules", 0, "when", "firing_at_least"),
            "greater_than_equal",
        ),
        ({"name": "r", "continue": "maybe"}, ("rules", 0, "continue"), "bool_parsing"),
        ({"name": "r", "title": "{{ labels.x"}, ("rules", 0, "title"), "value_error"),
        ({"name": "r", "incident_key": "{% if %}"}, ("rules", 0, "incident_key"), "value_error"),
    ],
)
def test_field_errors(rule: dict[str, Any], loc: tuple[str | int, ...], etype: str) -> None:
    assert [(e[0], e[1]) for e in errors({"rules": [rule]})] == [(loc, etype)]


def test_a_bad_template_says_what_is_wrong() -> None:
    assert errors({"rules": [{"name": "r", "title": "{{ labels.x"}]}) == [
        (
            ("rules", 0, "title"),
            "value_error",
            "Value error, bad template '{{ labels.x': unexpected end of template, "
            "expected 'end of print statement'.",
        )
    ]


def test_load_rule_file_locates_duplicate_names_at_the_second_use(tmp_path: Any) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - name: a\n"
        "    severity: P1\n"
        "  - name: b\n"
        "  - name: a\n"
        "  - name: c\n"
        "    match: 'x=~\"(\"'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_rule_file(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:5:5: rules[2].name: rule name 'a' is already used by rules[0] (line 2)",
        f"{path}:7:5: rules[3].match: bad matcher 'x=~\"(\"': invalid regular expression: "
        "missing closing ) at offset 4 in 'x=~\"(\"'",
    ]
