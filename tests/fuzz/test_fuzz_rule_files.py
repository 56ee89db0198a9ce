"""Fuzzing rule files, matchers and the config file through ``load_config`` and ``tocsin check``.

Inputs: random YAML documents shaped like rule files, valid files with characters inserted,
deleted or replaced, arbitrary text and bytes, deep nesting, alias bombs, odd tags, and random
matcher strings built from Alertmanager's matcher and RE2's regex syntax.

Properties: ``load_config`` either succeeds or raises ConfigError, nothing else and within
seconds; every Problem names its file and, when that file is YAML that parsed, a line and a
column; ``tocsin check`` (``router.cli.main``) returns 0 exactly when ``load_config`` succeeds,
else 1 with one ``file:line:column: ...`` line per problem; ``parse_matchers`` raises nothing but
MatcherError, and a parsed matcher can be matched against any labels.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from config.errors import ConfigError, Problem
from config.load import load_config
from config.yaml12 import Loader
from router.cli import main
from router.terminal import escape
from rules.matchers import MatcherError, format_matchers, parse_matchers
from rules.templates import SAMPLE_CONTEXT, Template, TemplateLimitExceeded, TemplateSyntaxProblem
from tests.fuzz.conftest import fuzz_settings, json_values, texts

CONFIG = """\
auth:
  receiver:
    bearer_tokens: ["t"]
store:
  backend: sqlite
  path: fuzz.db
matrix:
  preset: default
rules:
  files: ["rules/*.yaml"]
calendars:
  office:
    timezone: Europe/London
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:30"
policies:
  mail:
    steps:
      - {name: first, after: 0, notify: ["person:alice"], via: [log]}
people:
  alice: {name: Alice, channels: [log]}
teams:
  db: {}
"""

RULES = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity, priority]
    continue: true
  - name: db-down
    match: ['service="db"', 'alertname=~"InstanceDown|DiskFull"']
    when:
      firing_at_least: 2
      calendar: office
      compare:
        - {label: replicas, op: "<", value: 2}
    severity: P1
    policy: mail
    team: db
    incident_key: "{{ labels.alertname }}/{{ labels.service }}"
    title: "{{ labels.alertname }} on {{ labels.service }}"
default:
  severity: P3
"""

_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rulefuzz")


def _write(workdir: Path, config: str | bytes, rules: str | bytes) -> tuple[Path, Path]:
    """A fresh directory holding ``tocsin.yaml`` and ``rules/main.yaml``."""
    d = workdir / f"case{next(_counter)}"
    (d / "rules").mkdir(parents=True)
    cfg, rule = d / "tocsin.yaml", d / "rules" / "main.yaml"
    for path, content in ((cfg, config), (rule, rules)):
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(content)
    return cfg, rule


def _parses(path: Path) -> bool:
    """Whether the file is UTF-8 YAML that composes (then every problem in it has a position)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
        yaml.compose(text, Loader=Loader)
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return False
    return True


def check_both(cfg: Path, rule: Path) -> list[Problem]:
    """Run load_config and ``tocsin check``; assert every property; the problems found."""
    start = time.monotonic()
    problems: list[Problem] = []
    try:
        load_config(cfg, env=dict(os.environ))  # as `tocsin check` reads it
    except ConfigError as e:
        problems = e.problems
        assert problems, "a ConfigError must carry at least one problem"
    assert time.monotonic() - start < 10, "load_config took too long"
    files = {str(cfg), str(rule)}
    parsed = {str(cfg): _parses(cfg), str(rule): _parses(rule)}
    for p in problems:
        assert p.file in files, p
        assert p.message, p
        if parsed[p.file]:
            assert p.line is not None and p.column is not None, p
            assert p.line >= 1 and p.column >= 1, p
        assert str(p).startswith(p.file), p

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(cfg)])
    if problems:
        lines = err.getvalue().splitlines()
        assert code == 1, err.getvalue()
        assert lines[-1] == f"FAILED: {len(problems)} problem(s) in {cfg}", lines[-1:]
        assert lines[:-1] == [str(p) for p in problems] or len(lines) - 1 >= len(problems)
        for p in problems:
            assert escape(str(p)) in err.getvalue()  # control characters shown, not obeyed
    else:
        assert code == 0, err.getvalue()
        assert out.getvalue().startswith(f"SUCCESS: {cfg}:"), out.getvalue()
    return problems


# -- strategies --------------------------------------------------------------------------------

RULE_KEYS = [
    "name",
    "match",
    "when",
    "continue",
    "severity",
    "severity_from",
    "policy",
    "team",
    "incident_key",
    "title",
    "matchers",
]
WHEN_KEYS = ["firing_at_least", "compare", "calendar", "outside_calendar", "during"]
YAML_SCALARS = st.sampled_from(
    [
        "P0",
        "SEV-1",
        "critical",
        "mail",
        "db",
        "office",
        "yes",
        "no",
        "on",
        "~",
        "null",
        "0x1F",
        "1_000",
        ".inf",
        "-.nan",
        "10:30",
        "2026-11-22",
        "{{ labels.x }}",
        "{{ labels.x",
        "{% for %}",
        "{{ ''.__class__ }}",
        '{severity=~".+"}',
        "",
    ]
)


@st.composite
def rule_docs(draw: st.DrawFn) -> Any:
    """Rule-file-shaped data: the real keys with random values, random keys, random nesting."""
    value = st.one_of(YAML_SCALARS, json_values)

    def rule() -> dict[str, Any]:
        keys = draw(st.lists(st.sampled_from(RULE_KEYS) | texts, unique=True, max_size=6))
        r: dict[str, Any] = {k: draw(value) for k in keys}
        if "when" in r and draw(st.booleans()):
            wk = draw(st.lists(st.sampled_from(WHEN_KEYS), unique=True, max_size=3))
            r["when"] = {k: draw(value) for k in wk}
        return r

    doc: dict[str, Any] = {}
    if draw(st.integers(0, 5)) > 0:
        doc["rules"] = [rule() for _ in range(draw(st.integers(0, 4)))]
    if draw(st.booleans()):
        doc["default"] = draw(value | st.just({"severity": draw(YAML_SCALARS)}))
    if draw(st.booleans()):
        doc[draw(texts)] = draw(value)
    return draw(st.sampled_from([doc, doc, doc.get("rules", []), draw(value)]))


def _dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return json.dumps(doc)  # JSON is YAML too


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    """``base`` with 1-4 characters inserted, deleted or replaced."""
    text = base
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        ch = draw(
            st.sampled_from([*":-[]{}'\"#&*!|>%@`,? \t\n\\", "\x00", "\ufeff", "\x85"])
            | st.characters()
        )
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        if how == "insert":
            text = text[:i] + ch + text[i:]
        elif how == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + ch + text[i + 1 :]
    return text


@st.composite
def deep_yaml(draw: st.DrawFn) -> str:
    depth = draw(st.sampled_from([100, 500, 1000, 3000, 10_000]))
    style = draw(st.sampled_from(["flow-list", "flow-map", "block-list", "block-map"]))
    if style == "flow-list":
        return "rules: " + "[" * depth + "]" * depth + "\n"
    if style == "flow-map":
        return "rules: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if style == "block-list":
        return "rules:\n" + "".join("  " * i + "-\n" for i in range(min(depth, 300)))
    return "rules:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(min(depth, 300)))


def alias_bomb(levels: int, width: int) -> str:
    """A "billion laughs" document: each level repeats the previous one ``width`` times."""
    lines = ["a0: &a0 [lol]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"rules: *a{levels}")
    return "\n".join(lines) + "\n"


SPECIAL_DOCS = [
    "rules: !!python/object/apply:os.system ['echo hacked']\n",
    "rules: !custom x\n",
    "rules: &a [*a]\n",
    "a: &a {b: *a}\nrules: []\n",
    "<<: {rules: []}\n",
    "rules: []\n---\nrules: []\n",
    "%YAML 1.1\n---\nrules: []\n",
    "%TAG ! tag:example.com,2000:\n---\nrules: !x []\n",
    "? [complex, key]\n: value\n",
    "rules:\n- name: a\n  name: b\n",
    "\ufeffrules: []\n",
    "rules: [\t]\n",
    "rules: '\n",
    'rules: "\\x"\n',
    'rules: "\\ud800"\n',
    "rules: !!binary aGVsbG8=\n",
    "rules: !!timestamp 2026-01-01\n",
    "rules: !!set {a, b}\n",
    "rules: !!omap [{a: 1}]\n",
    "rules: 0o777\n",
    "rules: ${HOME}\n",
    "rules: [{name: '${UNSET_VAR_XYZ}'}]\n",
    "rules: [{name: x, title: '${'}]\n",
    "rules: [{name: x, token_file: /etc/passwd}]\n",
    alias_bomb(3, 3),
    alias_bomb(9, 10),  # a billion values if expanded
]

rule_texts = st.one_of(
    rule_docs().map(_dump),
    mutated(RULES),
    st.text(max_size=300),
    deep_yaml(),
    st.sampled_from(SPECIAL_DOCS),
)
rule_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda b, i: RULES.encode()[:i] + b + RULES.encode()[i:],
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf"]),
        st.integers(0, len(RULES)),
    ),
)


# -- matchers ----------------------------------------------------------------------------------

MATCHER_NAMES = st.one_of(
    st.sampled_from(
        ["severity", "alertname", "__name__", "a:b", "0abc", "_", "é", '"host.name"', '"a b"', '""']
    ),
    st.sampled_from(['"\\u00e9"', '"\\x41"', '"\\ud800"', '"unterminated', "'single'"]),
    texts,
)
OPERATORS = st.sampled_from(["=", "!=", "=~", "!~", "==", "~", "!", "=!", "", "<", " = "])
REGEX_ATOMS = st.sampled_from(
    [
        "a",
        ".*",
        ".+",
        "\\d",
        "\\w",
        "\\b",
        "[a-z]",
        "[^a]",
        "[",
        "]",
        "(",
        ")",
        "(?i)",
        "(?i:a)",
        "(?P<n>x)",
        "(?P=n)",
        "\\1",
        "\\10",
        "a{2,3}",
        "a{1001}",
        "x{,3}",
        "a{3,2}",
        "a**",
        "a*+",
        "a??",
        "\\p{Greek}",
        "\\pL",
        "\\p{^Z}",
        "\\PN",
        "\\p{Any}",
        "\\Z",
        "\\z",
        "\\C",
        "\\x{10FFFF}",
        "\\x{110000}",
        "\\x4",
        "[[:alpha:]]",
        "[[:foo:]]",
        "|",
        "^",
        "$",
        "\\",
        "\\Q.*\\E",
        "(?s:.)",
        "(?U)a*",
        "[a-\\d]",
        "\\8",
        "\\0",
        "\\08",
        "(?=a)",
        "(?<!a)",
        "(?>a)",
        "(?#c)",
        "\\e",
        "\\u1234",
        "[\\b]",
        "(?P<n>a)(?P<n>b)",
        "((((((((((a))))))))))",
    ]
)
regexes = st.lists(REGEX_ATOMS, max_size=8).map("".join)


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def one_matcher(draw: st.DrawFn) -> str:
    value = draw(
        st.one_of(
            regexes.map(_quote),
            regexes,
            texts.map(_quote),
            texts,
            st.sampled_from(['"a\\"b"', '"\\n"', '"\\t"', '"\\u00e9"', '"\\xff"', "`raw`"]),
        )
    )
    ws = st.sampled_from(["", " ", "  ", "\t", "\n"])
    return draw(MATCHER_NAMES) + draw(ws) + draw(OPERATORS) + draw(ws) + value


@st.composite
def matcher_texts(draw: st.DrawFn) -> str:
    items = draw(st.lists(one_matcher(), max_size=4))
    sep = draw(st.sampled_from([",", ", ", " ,", ",,", ";", " "]))
    body = sep.join(items) + draw(st.sampled_from(["", ","]))
    braces = draw(st.sampled_from([("{", "}"), ("", ""), ("{", ""), ("", "}"), ("{{", "}}")]))
    return braces[0] + body + braces[1]


any_matcher = st.one_of(matcher_texts(), st.text(max_size=80), one_matcher())
LABELS = [{}, {"severity": "critical"}, {"a": "b", "host.name": "x", "é": "\n"}, {"a": "é" * 20}]


# -- properties --------------------------------------------------------------------------------


def test_the_valid_pair_loads_and_checks(workdir: Path) -> None:
    """The fuzzed files' starting point is valid: mutations start from a known good state."""
    cfg, rule = _write(workdir, CONFIG, RULES)
    assert check_both(cfg, rule) == []


@fuzz_settings(150)
@given(text=rule_texts)
def test_random_rule_files_never_crash_check(workdir: Path, text: str) -> None:
    cfg, rule = _write(workdir, CONFIG, text)
    check_both(cfg, rule)


@fuzz_settings(60)
@given(raw=rule_bytes)
def test_rule_files_that_are_not_utf8(workdir: Path, raw: bytes) -> None:
    cfg, rule = _write(workdir, CONFIG, raw)
    problems = check_both(cfg, rule)
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        [p] = problems
        assert (p.file, p.message) == (str(rule), "file is not valid UTF-8 text")
        assert (p.line, p.column) == (raw[: e.start].count(b"\n") + 1, None)


@fuzz_settings(100)
@given(text=mutated(CONFIG) | st.sampled_from(SPECIAL_DOCS))
def test_random_config_files_never_crash_check(workdir: Path, text: str) -> None:
    cfg, rule = _write(workdir, text, RULES)
    check_both(cfg, rule)


@fuzz_settings(100)
@given(matchers=st.lists(any_matcher, min_size=1, max_size=3), as_list=st.booleans())
def test_random_matchers_in_a_rule_file(workdir: Path, matchers: list[str], as_list: bool) -> None:
    match = json.dumps(matchers if as_list else matchers[0])
    text = f"rules:\n  - name: fuzzed\n    match: {match}\n    severity: P2\n"
    cfg, rule = _write(workdir, CONFIG, text)
    problems = check_both(cfg, rule)
    for p in problems:
        assert (p.file, p.path.split("[")[0]) == (str(rule), "rules"), p
        assert p.path.startswith("rules[0].match"), p
        assert p.line == 3, p


@fuzz_settings(600)
@given(text=any_matcher, mode=st.sampled_from(["fallback", "utf8", "classic"]))
def test_parse_matchers_raises_only_matcher_error(text: str, mode: Any) -> None:
    try:
        matchers = parse_matchers(text, mode=mode)
    except MatcherError as e:
        assert str(e)
        return
    assert isinstance(format_matchers(matchers), str)
    for m in matchers:
        for labels in LABELS:
            assert m.matches_labels(labels) in (True, False)


# -- templates ---------------------------------------------------------------------------------

_NUMBERS = st.sampled_from(["0", "3", "10000", "100000", "200000000", "labels.n | int"])
_VALUES = st.sampled_from(["'x'", "labels.alertname", "'\\n' * 5000", "'{:>9}'", "'%05d'", "ns.s"])
TEMPLATE_ATOMS = st.one_of(
    st.builds("{{% for i in range({}) %}}".format, _NUMBERS),
    st.just("{% endfor %}"),
    st.builds("{{{{ {} * {} }}}}".format, _VALUES, _NUMBERS),
    st.builds("{{{{ {} | center({}) }}}}".format, _VALUES, _NUMBERS),
    st.builds("{{{{ {} | indent({}) }}}}".format, _VALUES, _NUMBERS),
    st.builds("{{{{ {} % {} }}}}".format, _VALUES, _NUMBERS),
    st.builds("{{{{ {}.format({}) }}}}".format, _VALUES, _NUMBERS),
    st.builds("{{{{ {}.join(range({}) | map('string')) }}}}".format, _VALUES, _NUMBERS),
    st.builds("{{% set ns.s = ns.s ~ {} %}}".format, _VALUES),
    st.just("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"),
    st.builds("{{{{ f({}) }}}}".format, _NUMBERS),
)
templates = st.lists(TEMPLATE_ATOMS, max_size=6).map(
    lambda atoms: "{% set ns = namespace(s='') %}" + "".join(atoms)
)


@fuzz_settings(80)
@given(source=templates, n=st.sampled_from(["3", "100000", "x"]))
def test_random_templates_render_bounded_or_fall_back(source: str, n: str) -> None:
    try:
        template = Template(source)
    except TemplateSyntaxProblem:
        return
    context = {**SAMPLE_CONTEXT, "labels": {**SAMPLE_CONTEXT["labels"], "n": n}}
    rendered = template.render(context)
    assert rendered is None or len(rendered) <= 1024
    with contextlib.suppress(TemplateLimitExceeded):
        template.check_limits(context)
