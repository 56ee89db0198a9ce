"""The classifier: precedence, continue, defaults, trusted severity labels, conditions, templates,
and the explain traces behind ``tocsin explain``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from escalation.oncall.calendars import Calendar
from rules.alerts import Alert, Notification
from rules.classifier import Classification, Classifier, RuleTrace
from rules.matrix import load_preset
from rules.schema import Outcome, RuleFile

# Monday 5 January 2026, 10:00 UTC (also 10:00 in London: GMT in winter).
MONDAY_10 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
MONDAY_20 = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)
SATURDAY_10 = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)

BUSINESS = Calendar(
    timezone="Europe/London", days=["mon", "tue", "wed", "thu", "fri"], hours="09:00-17:30"
)


def make(
    rules_yaml: str,
    *,
    preset: str = "default",
    default: Mapping[str, Any] | None = None,
    calendars: Mapping[str, Calendar] | None = None,
) -> Classifier:
    """A classifier over one rule file written as YAML."""
    rf = RuleFile.model_validate(yaml.safe_load(rules_yaml) or {})
    out = Outcome.model_validate(default) if default is not None else None
    return Classifier([("rules.yaml", rf.rules)], load_preset(preset), out, calendars)


def alert(
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    status: str = "firing",
) -> Alert:
    return Alert.model_validate(
        {
            "status": status,
            "labels": dict(labels),
            "annotations": dict(annotations or {}),
            "startsAt": "2026-01-05T09:58:00Z",
            "endsAt": "2026-01-05T09:59:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        }
    )


def group(alerts: Sequence[Alert], **extra: Any) -> Notification:
    body: dict[str, Any] = {
        "version": "4",
        "receiver": "web\\.hook",
        "status": "firing" if any(a.firing for a in alerts) else "resolved",
        "alerts": [a.model_dump(by_alias=True, mode="json") for a in alerts],
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "env": "production"},
        "commonAnnotations": {"runbook": "https://runbooks/high-error-rate"},
        "externalURL": "http://alertmanager:9093",
    }
    body.update(extra)
    return Notification.model_validate(body)


def classify(
    c: Classifier,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    *,
    others: Sequence[Alert] = (),
    now: datetime = MONDAY_10,
) -> Classification:
    """Classify one alert sent together with ``others`` in one notification."""
    a = alert(labels, annotations)
    g = group([a, *others])
    return c.classify(g.alerts[0], g, now)


# --------------------------------------------------------------------------- precedence


TWO_MATCHING = """
rules:
  - name: api-critical
    match: 'service="api"'
    severity: P0
    policy: api-urgent
    team: api
    title: "API: {{ labels.alertname }}"
  - name: everything-else
    match: 'alertname=~".+"'
    severity: P3
    policy: low
    team: platform
"""


def test_first_matching_rule_decides_everything() -> None:
    got = classify(make(TWO_MATCHING), {"alertname": "HighErrorRate", "service": "api"})
    assert got.severity == "P0"
    assert got.severity_name == "SEV-1"
    assert got.policy == "api-urgent"
    assert got.team == "api"
    assert got.title == "API: HighErrorRate"
    assert got.rule == "api-critical"
    assert got.matched == ("api-critical",)
    assert got.unknown_severity is None


def test_a_rule_that_does_not_match_is_skipped() -> None:
    got = classify(make(TWO_MATCHING), {"alertname": "HighErrorRate", "service": "web"})
    assert (got.severity, got.policy, got.team) == ("P3", "low", "platform")
    assert got.rule == "everything-else"
    assert got.matched == ("everything-else",)
    assert got.title == "HighErrorRate"


CONTINUE_RULES = """
rules:
  - name: base
    match: 'alertname=~".+"'
    severity: P2
    team: platform
    incident_key: "base/{{ labels.alertname }}"
    continue: true
  - name: add-policy
    match: 'env="production"'
    severity: P3
    policy: prod
    team: ignored
    incident_key: "ignored/{{ labels.alertname }}"
    title: "prod {{ labels.alertname }}"
    continue: true
  - name: raise-for-db
    match: 'service="db"'
    severity: P0
  - name: never-reached
    match: 'alertname=~".+"'
    severity: P4
    policy: unreachable
"""


def test_continue_lets_later_rules_add_unset_fields_but_not_override_set_ones() -> None:
    got = classify(make(CONTINUE_RULES), {"alertname": "Latency", "env": "production"})
    assert got.matched == ("base", "add-policy", "never-reached")
    assert got.rule == "base"  # the first match is the rule of record
    assert got.team == "platform"  # set by base; add-policy's team does not override it
    assert got.policy == "prod"  # unset by base; added by add-policy
    assert got.incident_key == "base/Latency"
    assert got.title == "prod Latency"


def test_continue_never_lowers_the_severity() -> None:
    got = classify(make(CONTINUE_RULES), {"alertname": "Latency", "env": "production"})
    # add-policy says P3 and never-reached says P4: both are below base's P2.
    assert got.severity == "P2"
    assert got.reasons == ("base: severity P2",)


def test_continue_raises_the_severity() -> None:
    got = classify(
        make(CONTINUE_RULES), {"alertname": "Slow", "env": "production", "service": "db"}
    )
    assert got.severity == "P0"
    assert got.matched == ("base", "add-policy", "raise-for-db")
    assert got.reasons == ("base: severity P2", "raise-for-db: raised severity P2 -> P0")


def test_a_rule_without_continue_stops_the_chain() -> None:
    got = classify(make(CONTINUE_RULES), {"alertname": "Slow", "service": "db"})
    assert got.matched == ("base", "raise-for-db")
    assert got.policy is None  # never-reached's policy is not applied
    assert got.severity == "P0"


def test_a_continue_rule_without_severity_leaves_it_to_later_rules() -> None:
    c = make(
        """
rules:
  - name: tag-team
    match: 'team="db"'
    team: db
    continue: true
  - name: sev
    match: 'alertname="DiskFull"'
    severity: high
"""
    )
    got = classify(c, {"alertname": "DiskFull", "team": "db"})
    assert (got.severity, got.team, got.rule, got.matched) == (
        "P1",
        "db",
        "tag-team",
        ("tag-team", "sev"),
    )


# --------------------------------------------------------------------------- defaults


def test_nothing_matches_the_config_default_applies() -> None:
    c = make(
        TWO_MATCHING.replace("'alertname=~\".+\"'", "'alertname=\"Nope\"'"),
        default={"severity": "SEV-2", "policy": "fallback", "team": "sre"},
    )
    got = classify(c, {"alertname": "Other"})
    assert (got.severity, got.policy, got.team) == ("P1", "fallback", "sre")
    assert got.rule == "default"
    assert got.matched == ()
    assert got.reasons == ("default: severity P1", "no rule matched: default applies")


@pytest.mark.parametrize(
    ("preset", "level", "name"),
    [("default", "P3", "SEV-4"), ("llm-marketplace", "P2", "P2"), ("code-project", "P2", "SEV3")],
)
def test_nothing_matches_and_no_default_the_matrix_default_level_applies(
    preset: str, level: str, name: str
) -> None:
    got = classify(make("rules: []", preset=preset), {"alertname": "Other"})
    assert (got.severity, got.severity_name, got.rule) == (level, name, "default")
    assert got.policy is None and got.team is None and got.incident_key is None
    assert got.reasons == (
        "no rule matched: default applies",
        f"severity from the default: {level}",
    )


def test_a_matching_rule_without_severity_takes_the_default_severity_and_policy() -> None:
    c = make(
        "rules: [{name: team-only, match: 'team=\"db\"', team: db}]",
        default={"severity": "low", "policy": "business-hours"},
    )
    got = classify(c, {"alertname": "X", "team": "db"})
    assert (got.severity, got.policy, got.team, got.rule) == (
        "P3",
        "business-hours",
        "db",
        "team-only",
    )
    assert got.reasons == ("severity from the default: P3",)


def test_a_default_without_severity_falls_back_to_the_matrix_default_level() -> None:
    c = make("rules: []", preset="llm-marketplace", default={"policy": "catch-all"})
    got = classify(c, {"alertname": "X"})
    assert (got.severity, got.policy) == ("P2", "catch-all")


# --------------------------------------------------------------------------- trusted labels

TRUST = """
rules:
  - name: trust
    match: 'severity=~".+"'
    severity_from: [severity, priority]
"""


@pytest.mark.parametrize(
    ("preset", "value", "level", "name"),
    [
        ("default", "critical", "P0", "SEV-1"),
        ("default", "CRITICAL", "P0", "SEV-1"),
        ("default", "SEV-1", "P0", "SEV-1"),
        ("default", "sev1", "P0", "SEV-1"),
        ("default", "Sev_2", "P1", "SEV-2"),
        ("default", "warning", "P2", "SEV-3"),
        ("default", "P1", "P1", "SEV-2"),
        ("default", "p4", "P4", "SEV-5"),
        ("llm-marketplace", "critical", "P0", "P0"),
        ("llm-marketplace", "SEV-1", "P0", "P0"),
        ("llm-marketplace", "sev1", "P0", "P0"),
        ("llm-marketplace", "P1", "P1", "P1"),
        ("llm-marketplace", "High", "P1", "P1"),
        ("llm-marketplace", "sev 4", "P3", "P3"),
        ("code-project", "critical", "P0", "SEV1"),
        ("code-project", "SEV-1", "P0", "SEV1"),
        ("code-project", "sev1", "P0", "SEV1"),
        ("code-project", "Severity 1", "P0", "SEV1"),
        ("code-project", "severity-2", "P1", "SEV2"),
        ("code-project", "P1", "P1", "SEV2"),  # a canonical key names the canonical level
        ("llm-config-manager", "Severity 1", "P1", "Severity 1"),
        ("llm-config-manager", "critical", "P1", "Severity 1"),
        ("llm-config-manager", "SEV1", "P1", "Severity 1"),
    ],
)
def test_severity_label_maps_through_the_matrix_aliases(
    preset: str, value: str, level: str, name: str
) -> None:
    got = classify(make(TRUST, preset=preset), {"alertname": "X", "severity": value})
    assert (got.severity, got.severity_name) == (level, name)
    assert got.unknown_severity is None
    assert got.reasons == (
        f"trust: trusted label severity={value!r} -> {level}",
        f"trust: severity {level}",
    )


def test_severity_from_tries_labels_in_order() -> None:
    c = make(
        "rules: [{name: trust, match: 'alertname=~\".+\"', severity_from: [severity, priority]}]"
    )
    got = classify(c, {"alertname": "X", "priority": "high"})
    assert got.severity == "P1"
    got = classify(c, {"alertname": "X", "severity": "low", "priority": "critical"})
    assert got.severity == "P3"  # the first label that resolves wins, not the worst


def test_severity_from_accepts_a_single_label_name() -> None:
    c = make("rules: [{name: trust, match: 'alertname=~\".+\"', severity_from: priority}]")
    assert classify(c, {"alertname": "X", "priority": "P0"}).severity == "P0"


def test_unknown_severity_falls_back_to_the_rules_own_severity() -> None:
    c = make(
        "rules: [{name: trust, match: 'alertname=\"X\"', severity_from: severity, severity: P2}]"
    )
    got = classify(c, {"alertname": "X", "severity": "disaster"})
    assert got.severity == "P2"
    assert got.unknown_severity == "disaster"
    assert got.rule == "trust"
    assert got.reasons == (
        "trust: label severity='disaster' is not a known severity",
        "trust: severity P2",
    )


@pytest.mark.parametrize(("default", "expected"), [({"severity": "SEV-2"}, "P1"), (None, "P3")])
def test_unknown_severity_without_rule_severity_takes_the_default(
    default: dict[str, str] | None, expected: str
) -> None:
    got = classify(make(TRUST, default=default), {"alertname": "X", "severity": "Sev-99"})
    assert got.severity == expected
    assert got.unknown_severity == "Sev-99"
    assert got.rule == "trust"
    assert got.reasons == (
        "trust: label severity='Sev-99' is not a known severity",
        f"severity from the default: {expected}",
    )


def test_unknown_severity_then_a_known_priority() -> None:
    got = classify(make(TRUST), {"alertname": "X", "severity": "bogus", "priority": "high"})
    assert got.severity == "P1"
    assert got.unknown_severity == "bogus"  # still recorded (and counted) as unknown


def test_empty_severity_label_counts_as_missing_not_unknown() -> None:
    c = make(
        "rules: [{name: trust, match: 'alertname=\"X\"', severity_from: severity, severity: P2}]"
    )
    got = classify(c, {"alertname": "X", "severity": ""})
    assert (got.severity, got.unknown_severity) == ("P2", None)
    got = classify(c, {"alertname": "X"})
    assert (got.severity, got.unknown_severity) == ("P2", None)


# --------------------------------------------------------------------------- matchers in rules


@pytest.mark.parametrize(
    ("matcher", "labels", "matches"),
    [
        ('env="production"', {"env": "production"}, True),
        ('env="production"', {"env": "Production"}, False),
        ('env!="production"', {"env": "staging"}, True),
        ('env!="production"', {"env": "production"}, False),
        ('env=~"prod|staging"', {"env": "staging"}, True),
        ('env=~"prod|staging"', {"env": "dev"}, False),
        ('env!~"prod|staging"', {"env": "dev"}, True),
        ('env!~"prod|staging"', {"env": "prod"}, False),
        # Regexes are fully anchored, as in Alertmanager.
        ('env=~"prod"', {"env": "production"}, False),
        ('env=~"prod.*"', {"env": "production"}, True),
        ('env=~"duct"', {"env": "production"}, False),
        ('env!~"prod"', {"env": "production"}, True),
        ('env=~"a|b"', {"env": "ab"}, False),
        # A missing label equals the empty string.
        ('env=""', {}, True),
        ('env!=""', {}, False),
        ('env=~".*"', {}, True),
        ('env=~".+"', {}, False),
        ('env!~".+"', {}, True),
        ('env!="production"', {}, True),
        ('env=""', {"env": "x"}, False),
        # Quoted values with escapes, the list form, and unquoted values.
        ('msg="say \\"hi\\" \\\\ now"', {"msg": 'say "hi" \\ now'}, True),
        ('{env="production", service=~"api|web"}', {"env": "production", "service": "web"}, True),
        ('{env="production", service=~"api|web"}', {"env": "production", "service": "db"}, False),
        ("env=production", {"env": "production"}, True),
        ("{}", {}, True),
    ],
)
def test_every_matcher_operator_inside_rules(
    matcher: str, labels: dict[str, str], matches: bool
) -> None:
    c = make(yaml.safe_dump({"rules": [{"name": "r", "match": matcher, "severity": "P0"}]}))
    got = classify(c, {"alertname": "X", **labels})
    assert got.rule == ("r" if matches else "default")
    assert got.severity == ("P0" if matches else "P3")


def test_a_list_of_match_strings_must_all_hold() -> None:
    c = make("""
rules:
  - name: r
    match: ['env="production"', 'alertname=~"High.*"']
    severity: P1
""")
    assert classify(c, {"alertname": "HighLoad", "env": "production"}).rule == "r"
    assert classify(c, {"alertname": "HighLoad", "env": "staging"}).rule == "default"
    assert classify(c, {"alertname": "LowLoad", "env": "production"}).rule == "default"


# --------------------------------------------------------------------------- conditions


FIRING = """
rules:
  - name: many-down
    match: 'alertname="InstanceDown"'
    when: {firing_at_least: 2}
    severity: P1
"""


def test_firing_at_least_counts_firing_alerts_of_the_group() -> None:
    c = make(FIRING)
    labels = {"alertname": "InstanceDown", "instance": "a"}
    other = alert({"alertname": "InstanceDown", "instance": "b"})
    assert classify(c, labels, others=[other]).severity == "P1"
    assert classify(c, labels).severity == "P3"


def test_firing_at_least_ignores_resolved_alerts() -> None:
    resolved = alert({"alertname": "InstanceDown", "instance": "b"}, status="resolved")
    got = classify(make(FIRING), {"alertname": "InstanceDown", "instance": "a"}, others=[resolved])
    assert got.rule == "default"


def _compare_rule(source: str, name: str, op: str, value: float) -> Classifier:
    rule = {
        "name": "cmp",
        "severity": "P1",
        "when": {"compare": [{source: name, "op": op, "value": value}]},
    }
    return make(yaml.safe_dump({"rules": [rule]}))


@pytest.mark.parametrize(
    ("op", "value", "holds"),
    [
        (">", 5, False),
        (">", 4.5, True),
        (">=", 5, True),
        (">=", 5.5, False),
        ("<", 5, False),
        ("<", 6, True),
        ("<=", 5, True),
        ("<=", 4, False),
        ("==", 5, True),
        ("==", 5.1, False),
        ("!=", 5, False),
        ("!=", 4, True),
    ],
)
@pytest.mark.parametrize("source", ["label", "annotation"])
def test_compare_with_every_operator(source: str, op: str, value: float, holds: bool) -> None:
    c = _compare_rule(source, "load", op, value)
    where = {"labels": {"alertname": "X"}, "annotations": {}}
    where[f"{source}s"]["load"] = "5"
    got = classify(c, where["labels"], where["annotations"])
    assert got.rule == ("cmp" if holds else "default")


@pytest.mark.parametrize(
    ("raw", "holds"),
    [("95%", True), (" 91.5 ", True), ("1e3", True), ("90", False), ("-100", False)],
)
def test_compare_parses_numbers_percentages_and_exponents(raw: str, holds: bool) -> None:
    c = _compare_rule("label", "usage", ">", 90)
    assert classify(c, {"alertname": "X", "usage": raw}).rule == ("cmp" if holds else "default")


@pytest.mark.parametrize("source", ["label", "annotation"])
@pytest.mark.parametrize(
    ("present", "why"),
    [
        ({"load": "high"}, "{source} load is 'high', not a number"),
        ({"load": ""}, "{source} load is '', not a number"),
        ({}, "{source} load is missing"),
        ({"load": "3"}, "{source} load 3 > 4 is false"),
    ],
)
def test_compare_non_numeric_and_missing_values_do_not_match(
    source: str, present: dict[str, str], why: str
) -> None:
    c = _compare_rule(source, "load", ">", 4)
    labels = {"alertname": "X", **(present if source == "label" else {})}
    annotations = present if source == "annotation" else {}
    a = alert(labels, annotations)
    g = group([a])
    result, traces = c.explain(g.alerts[0], g, MONDAY_10)
    assert result.rule == "default"
    assert traces == [RuleTrace("cmp", "rules.yaml", False, (why.format(source=source),))]


def test_compare_label_does_not_read_the_annotation_of_the_same_name() -> None:
    c = _compare_rule("label", "load", ">", 4)
    assert classify(c, {"alertname": "X"}, {"load": "10"}).rule == "default"
    assert classify(c, {"alertname": "X", "load": "10"}).rule == "cmp"


def test_all_compares_must_hold() -> None:
    c = make("""
rules:
  - name: both
    severity: P0
    when:
      compare:
        - {label: errors, op: ">=", value: 10}
        - {annotation: ratio, op: "<", value: 0.5}
""")
    assert classify(c, {"alertname": "X", "errors": "10"}, {"ratio": "0.2"}).rule == "both"
    assert classify(c, {"alertname": "X", "errors": "10"}, {"ratio": "0.7"}).rule == "default"
    assert classify(c, {"alertname": "X", "errors": "9"}, {"ratio": "0.2"}).rule == "default"


CALENDAR_RULES = """
rules:
  - name: office
    match: 'team="web"'
    when: {calendar: business-hours}
    severity: P2
  - name: after-hours
    match: 'team="web"'
    when: {outside_calendar: business-hours}
    severity: P3
"""


@pytest.mark.parametrize(
    ("now", "rule"),
    [
        (MONDAY_10, "office"),
        (datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "office"),  # opening instant is inside
        (datetime(2026, 1, 5, 17, 30, tzinfo=UTC), "after-hours"),  # closing instant is outside
        (MONDAY_20, "after-hours"),
        (SATURDAY_10, "after-hours"),
        # 09:30 London in summer (BST) is 08:30 UTC: inside, because calendars use local time.
        (datetime(2026, 7, 6, 8, 30, tzinfo=UTC), "office"),
    ],
)
def test_calendar_and_outside_calendar(now: datetime, rule: str) -> None:
    c = make(CALENDAR_RULES, calendars={"business-hours": BUSINESS})
    assert classify(c, {"alertname": "X", "team": "web"}, now=now).rule == rule


def test_an_unconfigured_calendar_never_matches_and_says_so() -> None:
    c = make(CALENDAR_RULES)
    a = alert({"alertname": "X", "team": "web"})
    g = group([a])
    result, traces = c.explain(g.alerts[0], g, MONDAY_10)
    assert result.rule == "default"
    assert [t.why for t in traces] == [
        ("calendar 'business-hours' is not configured",),
        ("calendar 'business-hours' is not configured",),
    ]


# --------------------------------------------------------------------------- templates


def test_incident_key_and_title_render_labels_annotations_and_group_data() -> None:
    c = make("""
rules:
  - name: r
    match: 'alertname="HighErrorRate"'
    severity: P1
    incident_key: "{{ receiver }}/{{ groupLabels.alertname }}/{{ labels.service }}"
    title: >-
      [{{ severity }}] {{ labels.alertname }} on {{ labels.service }}
      ({{ firing }} firing, env {{ commonLabels.env }}): {{ annotations.summary }}
      {{ commonAnnotations.runbook }} {{ externalURL }} {{ status }}
""")
    other = alert({"alertname": "HighErrorRate", "service": "web"})
    got = classify(
        c,
        {"alertname": "HighErrorRate", "service": "api"},
        {"summary": "5% errors"},
        others=[other],
    )
    assert got.incident_key == "web.hook/HighErrorRate/api"  # receiver is un-QuoteMeta'd
    assert got.title == (
        "[SEV-2] HighErrorRate on api (2 firing, env production): 5% errors "
        "https://runbooks/high-error-rate http://alertmanager:9093 firing"
    )


def test_template_sees_fingerprint_group_key_and_missing_labels_as_empty() -> None:
    c = make("""
rules:
  - name: r
    severity: P1
    incident_key: "{{ groupKey }}|{{ fingerprint }}|{{ labels.nope }}|"
""")
    a = alert({"alertname": "X"})
    g = group([a])
    got = c.classify(g.alerts[0], g, MONDAY_10)
    assert got.incident_key == f'{{}}:{{alertname="HighErrorRate"}}|{a.fingerprint}||'


def test_a_failing_key_template_falls_back_to_the_group_key_without_raising() -> None:
    c = make("""
rules:
  - name: r
    severity: P1
    incident_key: "{{ labels.missing.deeper.still }}"
    title: "{{ labels.missing.deeper }}"
""")
    got = classify(c, {"alertname": "DiskFull"}, {"summary": "disk 95% full"})
    assert got.incident_key is None  # the caller keys by receiver + groupKey
    assert got.title == "DiskFull: disk 95% full"
    assert got.reasons == (
        "r: severity P1",
        "r: incident_key template failed or was empty; using the group key",
    )


def test_a_template_rendering_empty_falls_back() -> None:
    c = make("""
rules:
  - name: first
    match: 'alertname="X"'
    title: "{{ annotations.summary }}"
    incident_key: "{{ labels.service }}"
    continue: true
  - name: second
    match: 'alertname="X"'
    title: "second {{ labels.alertname }}"
    incident_key: "second/{{ labels.alertname }}"
""")
    got = classify(c, {"alertname": "X"})
    assert (got.title, got.incident_key) == ("second X", "second/X")
    got = classify(c, {"alertname": "X", "service": "api"}, {"summary": "  "})
    assert (got.title, got.incident_key) == ("second X", "api")


def test_the_default_key_and_title_templates_apply_when_rules_set_none() -> None:
    c = make(
        "rules: [{name: r, match: 'alertname=\"X\"', severity: P2}]",
        default={
            "incident_key": "dflt/{{ labels.alertname }}",
            "title": "T {{ labels.alertname }}",
        },
    )
    got = classify(c, {"alertname": "X"})
    assert (got.rule, got.incident_key, got.title) == ("r", "dflt/X", "T X")
    got = classify(c, {"alertname": "Y"})
    assert (got.rule, got.incident_key, got.title) == ("default", "dflt/Y", "T Y")


@pytest.mark.parametrize(
    ("labels", "annotations", "title"),
    [
        ({"alertname": "DiskFull"}, {"summary": "disk full"}, "DiskFull: disk full"),
        ({"alertname": "DiskFull"}, {}, "DiskFull"),
        ({"job": "node"}, {}, "alert"),
    ],
)
def test_fallback_title(labels: dict[str, str], annotations: dict[str, str], title: str) -> None:
    assert classify(make("rules: []"), labels, annotations).title == title


def test_a_sandbox_escape_in_a_title_renders_nothing_harmful() -> None:
    c = make("""
rules:
  - name: r
    severity: P1
    title: "{{ labels.__class__.__mro__[1].__subclasses__() }}"
""")
    assert classify(c, {"alertname": "X"}).title == "X"


# --------------------------------------------------------------------------- explain


EXPLAIN_RULES = """
rules:
  - name: trust
    match: 'severity=~".+"'
    severity_from: severity
    continue: true
  - name: prod-api
    match: ['env="production"', 'service=~"api|web"']
    when:
      firing_at_least: 2
      compare: [{label: errors, op: ">", value: 10}]
    severity: P0
  - name: prod
    match: 'env="production"'
    policy: prod
  - name: shadowed
    match: 'alertname=~".+"'
    policy: never
"""


def test_explain_traces_every_rule_with_applied_and_matched_flags() -> None:
    c = make(EXPLAIN_RULES)
    a = alert({"alertname": "X", "env": "production", "severity": "warning"})
    g = group([a])
    result, traces = c.explain(g.alerts[0], g, MONDAY_10)
    assert result == c.classify(g.alerts[0], g, MONDAY_10)
    assert (result.severity, result.policy, result.matched) == ("P2", "prod", ("trust", "prod"))
    assert traces == [
        RuleTrace("trust", "rules.yaml", True, ("all matchers and conditions hold",), True),
        RuleTrace(
            "prod-api",
            "rules.yaml",
            False,
            (
                'service=~"api|web" did not match (service is missing)',
                "firing_at_least 2: 1 firing",
                "label errors is missing",
            ),
            False,
        ),
        RuleTrace("prod", "rules.yaml", True, ("all matchers and conditions hold",), True),
        # Matches, but "prod" has no continue: true, so it decided.
        RuleTrace("shadowed", "rules.yaml", True, ("all matchers and conditions hold",), False),
    ]


def test_explain_why_not_names_the_failing_matcher_with_the_actual_value() -> None:
    c = make(EXPLAIN_RULES)
    a = alert({"alertname": "X", "env": "staging", "service": "api", "errors": "3"})
    g = group([a])
    _, traces = c.explain(g.alerts[0], g, MONDAY_10)
    by_name = {t.rule: t for t in traces}
    assert by_name["trust"].why == ('severity=~".+" did not match (severity is missing)',)
    assert by_name["prod-api"].why == (
        "env=\"production\" did not match (env is 'staging')",
        "firing_at_least 2: 1 firing",
        "label errors 3 > 10 is false",
    )
    assert by_name["prod"].why == ("env=\"production\" did not match (env is 'staging')",)
    assert by_name["shadowed"].applied is True
    assert [t.applied for t in traces] == [False, False, False, True]


def test_rules_from_several_files_keep_their_order_and_file() -> None:
    first = RuleFile.model_validate(
        yaml.safe_load("rules: [{name: a, match: 'x=\"1\"', severity: P1}]")
    )
    second = RuleFile.model_validate(yaml.safe_load("rules: [{name: b, severity: P2}]"))
    c = Classifier([("one.yaml", first.rules), ("two.yaml", second.rules)], load_preset("default"))
    a = alert({"alertname": "X", "x": "1"})
    g = group([a])
    result, traces = c.explain(g.alerts[0], g, MONDAY_10)
    assert result.rule == "a"
    assert [(t.rule, t.file, t.matched, t.applied) for t in traces] == [
        ("a", "one.yaml", True, True),
        ("b", "two.yaml", True, False),
    ]
    assert [r.name for r in c.rules] == ["a", "b"]
