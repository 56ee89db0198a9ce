"""Sandboxed key/title templates: escapes are refused, syntax errors say so, output is bounded."""

from __future__ import annotations

import signal
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rules.templates
from config.errors import ConfigError
from config.load import load_rule_file
from rules.templates import (
    SAMPLE_CONTEXT,
    Template,
    TemplateLimitExceeded,
    TemplateSyntaxProblem,
    compile_template,
)
from tests.rules.test_classifier import classify, make

CTX: dict[str, Any] = {
    "labels": {"alertname": "HighErrorRate", "service": "api"},
    "annotations": {"summary": "5% of requests fail"},
    "groupLabels": {"alertname": "HighErrorRate"},
    "firing": 2,
}


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{{ labels.alertname }}/{{ labels.service }}", "HighErrorRate/api"),
        ("{{ labels['service'] }}", "api"),
        ("{{ labels.nope }}", ""),  # a missing label renders empty, as in Alertmanager
        ("{{ labels.service | upper }}", "API"),
        ("{{ annotations.summary }} ({{ firing }} firing)", "5% of requests fail (2 firing)"),
        ("{% if firing > 1 %}many{% else %}one{% endif %}", "many"),
        ("{{ groupLabels.alertname | lower }}", "higherrorrate"),
        ("plain text", "plain text"),
    ],
)
def test_render(source: str, rendered: str) -> None:
    assert Template(source).render(CTX) == rendered


@pytest.mark.parametrize(
    "source",
    [
        "{{ labels.__class__.__mro__ }}",
        "{{ labels.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ labels.update({'alertname': 'x'}) }}",  # the context is immutable
        "{{ labels.pop('service') }}",
        "{{ labels.alertname.__class__.__name__ }}",
        "{{ range(10 ** 9) | list | length }}",
        "{{ 'x' * 1000000000 }}",
        "{{ 10 ** 999 ** 999 }}",
    ],
)
def test_sandbox_refuses_escapes_and_unbounded_work(source: str) -> None:
    ctx = {"labels": dict(CTX["labels"])}
    assert Template(source).render(ctx) is None
    assert ctx["labels"] == {"alertname": "HighErrorRate", "service": "api"}


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ '{0.__class__}'.format(labels) }}",
        "{{ config }}{{ request }}",
    ],
)
def test_sandbox_makes_unsafe_attributes_undefined(source: str) -> None:
    # Unsafe attributes are undefined (render as nothing); none reaches Python internals.
    assert Template(source).render(CTX) == ""


def test_a_render_that_raises_returns_none() -> None:
    assert Template("{{ labels.nope.deeper }}").render(CTX) is None
    assert Template("{{ 1 / 0 }}").render(CTX) is None
    assert Template("{{ labels.service + 1 }}").render(CTX) is None


def test_small_repetition_and_powers_still_work() -> None:
    assert (
        Template("{{ '=' * 3 }}{{ 2 ** 10 }}{{ 3 * 'ab' }}{{ 2 * 3 }}").render({})
        == "===1024ababab6"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ labels.alertname ",
            "bad template '{{ labels.alertname ': unexpected end of template, "
            "expected 'end of print statement'.",
        ),
        ("{{ }}", "bad template '{{ }}': Expected an expression, got 'end of print statement'"),
        ("{% if %}x{% endif %}", None),
        ("{% for x in y %}", None),
        ("{{ labels.a }}\n{{ 1 + }}", None),
    ],
)
def test_syntax_errors_raise_template_syntax_problem(source: str, message: str | None) -> None:
    with pytest.raises(TemplateSyntaxProblem) as info:
        Template(source)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"bad template {source!r}: ")
    if message is not None:
        assert str(info.value) == message


def test_syntax_problem_reports_the_line_inside_the_template() -> None:
    with pytest.raises(TemplateSyntaxProblem) as info:
        Template("line one\n{{ labels.a }}\n{{ 1 + }}")
    assert info.value.lineno == 3


def test_output_is_trimmed() -> None:
    assert Template("  \n {{ labels.service }} \n\n").render(CTX) == "api"


def test_output_is_capped_at_1024_characters() -> None:
    out = Template("{{ 'ab' * 600 }}").render({})
    assert out == "ab" * 512
    assert len(out) == 1024
    assert Template("{{ 'x' * 1024 }}").render({}) == "x" * 1024


def test_compile_template() -> None:
    assert compile_template(None) is None
    assert compile_template("") is None
    tpl = compile_template("{{ labels.service }}")
    assert tpl is not None and tpl.source == "{{ labels.service }}"
    assert repr(tpl) == "Template('{{ labels.service }}')"
    assert tpl.render(CTX) == "api"


# --------------------------------------------------------------------------------------------
# Bounded rendering: steps, time, sizes
# --------------------------------------------------------------------------------------------


def _too_slow(signum: int, frame: object) -> None:
    raise AssertionError("rendering did not finish: the template is not bounded")


@pytest.fixture
def hang_guard() -> Iterator[None]:
    """Turns an unbounded render (minutes to forever before the sandbox had limits) into a
    failure; the limits stop each of these in well under a second."""
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(120)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


UNBOUNDED = [
    # (template, the limit it hits)
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "count"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "steps"),
    (
        "{% for a in labels.alertname * 9000 %}{% for b in 'x' * 9000 %}{% endfor %}{% endfor %}",
        "steps",
    ),
    (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "steps",
    ),
    ("{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}", "output"),
    (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        "would hold more than",  # the ~ is checked before the namespace is
    ),
    ("{{ range(10000) | map('center', 10000) | join }}", "built"),
]


@pytest.mark.parametrize(("source", "limit"), UNBOUNDED)
def test_unbounded_templates_fail_and_check_refuses_them(
    hang_guard: None, monkeypatch: pytest.MonkeyPatch, source: str, limit: str
) -> None:
    # The wall-clock limit is lifted so that the step and size caps are what stops each render.
    monkeypatch.setattr(rules.templates, "TIME_LIMIT", 3600.0)
    template = Template(source)
    assert template.render(SAMPLE_CONTEXT) is None
    with pytest.raises(TemplateLimitExceeded, match=limit):
        template.check_limits()


HUGE_CONSTANTS = [
    "{{ '' | center(200000000) }}",
    "{{ '%0200000000d' % 1 }}",
    "{{ '%0200000000d' | format(1) }}",
    "{{ '%*d' % (200000000, 1) }}",
    "{{ ''.ljust(200000000) }}",
    "{{ 'x'.zfill(200000000) }}",
    "{{ '{:>200000000}'.format(1) }}",
    "{{ '{:{}}'.format(1, 200000000) }}",
    "{{ ('x' * 100000).join('y' * 100000) }}",
    "{{ ('x' * 50000).replace('', 'y' * 50000) }}",
    "{{ 'x' * 60000 + 'y' * 60000 }}",
    "{{ ('\\t' * 100000).expandtabs(10000) }}",
    "{{ ('\\n' * 100000) | indent(10000) }}",
    "{{ '%(a)0200000d' % {'a': 1} }}",
]


@pytest.mark.parametrize("source", HUGE_CONSTANTS)
def test_huge_values_are_refused_before_they_are_built(source: str) -> None:
    # These once cost seconds and hundreds of megabytes, at load (constant folding) and render.
    tracemalloc.start()
    try:
        template = Template(source)
        assert template.render(SAMPLE_CONTEXT) is None
        with pytest.raises(TemplateLimitExceeded):
            template.check_limits()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_the_render_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no time at all, a render stops at its first look at the clock (64 steps in).
    monkeypatch.setattr(rules.templates, "TIME_LIMIT", 0.0)
    template = Template("{% for i in range(1000) %}{% endfor %}done")
    assert template.render({}) is None
    with pytest.raises(TemplateLimitExceeded, match="longer than"):
        template.check_limits()
    assert Template("{{ labels.alertname }}").render(SAMPLE_CONTEXT) == "SampleAlert"


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{{ '%05d' % 42 }} {{ '%d' | format(123456789) }}", "00042 123456789"),
        (
            "{{ 'host 123456 down: %s' % 'x' }}, {{ 'port 123456 {}'.format(1) }}",
            "host 123456 down: x, port 123456 1",
        ),
        ("x{{ '{:>5}'.format('a') }}|{{ '{} and {}'.format('a', 123456) }}", "x    a|a and 123456"),
        ("{{ labels.nope | default(123456) }} {{ 123456789 | filesizeformat }}", "123456 123.5 MB"),
        ("{{ labels.service.center(7, '*') }}{{ labels.service | truncate(5) }}", "**api**api"),
        ("{{ range(3) | list }}", "[0, 1, 2]"),
        (
            "{% for k, v in labels | dictsort %}{{ loop.index }}{{ k }}={{ v }};{% endfor %}",
            "1alertname=HighErrorRate;2service=api;",
        ),
        (
            "{% for x in [1, [2, [3]]] recursive %}{% if x is iterable %}{{ loop(x) }}"
            "{% else %}{{ x }}{% endif %}{% endfor %}",
            "123",
        ),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "10",
        ),
        ("{{ 'ab' * 3 }}{{ [1] + [2] }}{{ 'x' ~ 'y' }}", "ababab[1, 2]xy"),
    ],
)
def test_ordinary_templates_stay_within_the_limits(source: str, rendered: str) -> None:
    template = Template(source)
    assert template.render(CTX) == rendered
    template.check_limits(CTX)


def test_check_reports_a_template_over_the_limits_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: a\n    severity: P1\n    title: \"{{ '' | center(200000000) }}\"\n"
    )
    with pytest.raises(ConfigError) as info:
        load_rule_file(path)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{path}:4:5: rules[0].title: ")
    assert "exceeds a rendering limit: count 200000000 exceeds the template limit" in str(problem)


def test_a_template_over_the_limits_only_on_real_data_falls_back_at_run_time() -> None:
    # The sample alert has no "big" label, so check accepts the rule; the alert that has one
    # makes the key template run out of steps, and the classifier falls back to the group key.
    c = make("""
rules:
  - name: r
    severity: P1
    incident_key: "{% for a in labels.big %}{% for b in labels.big %}{% endfor %}{% endfor %}k"
""")
    got = classify(c, {"alertname": "X", "big": "x" * 5000})
    assert got.incident_key is None
    assert "r: incident_key template failed or was empty; using the group key" in got.reasons
    assert classify(c, {"alertname": "X", "big": "xy"}).incident_key == "k"


# --------------------------------------------------------------------------------------------
# One built-in call is bounded on its own: the time limit is only looked at between steps
# --------------------------------------------------------------------------------------------

_DOUBLE_CONCAT = "{% set a = labels.alertname %}" + "{% set a = a ~ a %}" * 20 + "{{ a | length }}"
_DOUBLE_LIST = "{% set a = [labels.alertname] %}" + "{% set a = [a, a] %}" * 20 + "{{ a | string }}"
_DOUBLE_BLOCK = (
    "{% set a = labels.alertname %}" + "{% set a %}{{ a }}{{ a }}{% endset %}" * 20 + "{{ a }}"
)

SLOW_CALLS = [
    # (template, labels beyond alertname, the limit it hits)
    (
        "{% set n = labels.n|int %}{{ ([[1]*n]*n)|sum(start=[])|length }}",
        {"n": "1200"},
        "repetition too large",
    ),
    ("{{ ([[1] * 300] * 300) | sum(start=[]) | length }}", {}, "the sum filter adds only numbers"),
    ("{{ lipsum(10000) }}", {}, "lipsum"),
    ("{{ {'a': 1} | tojson(indent=100000000) }}", {}, "too large"),
    ("{{ ([[1] * 4000] * 20) | tojson(indent=1000) | length }}", {}, "too large for tojson"),
    ("{{ labels.big | wordwrap(1) }}", {"big": "x" * 200_000}, "wordwrap filter takes at most"),
    ("{{ labels.big | urlize | length }}", {"big": "ab\n" * 100_000}, "urlize filter takes"),
    ("{{ labels.big | striptags | length }}", {"big": "<b>" * 100_000}, "striptags filter"),
    ("{{ ([['x' * 1000] * 99] * 1000) | join | length }}", {}, "repetition too large"),
    ("{{ (range(3) | batch(10000, fill_with='x' * 50000) | list)[0] | length }}", {}, "too large"),
    (_DOUBLE_CONCAT, {}, "would hold more than 100000"),
    (_DOUBLE_LIST, {}, "would hold more than 100000"),
    (_DOUBLE_BLOCK, {}, "hold more than 100000"),
    (
        "{% macro f() %}{% for i in range(500) %}{{ labels.big }}{% endfor %}{% endmacro %}"
        "{{ f() | length }}",
        {"big": "x" * 90_000},
        "built more than 2000000",
    ),
    (
        "{% set ns = namespace(x=labels.n|int) %}{% for i in range(22) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
        {"n": "1200"},
        "product too large",
    ),
    (
        "{% set ns = namespace(x=1) %}{% for i in range(500) %}{% set ns.x = [ns.x] %}"
        "{% endfor %}{{ ns.x | tojson(indent=100) | length }}",
        {},
        "nested deeper than 32",
    ),
]


@pytest.mark.parametrize(("source", "labels", "limit"), SLOW_CALLS)
def test_one_slow_call_fails_at_its_cap_and_check_refuses_it(
    hang_guard: None,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    labels: dict[str, str],
    limit: str,
) -> None:
    # The wall-clock limit is lifted: what stops each of these is a cap on the one call (or
    # the one value) that once ran for seconds, not the clock between steps.
    monkeypatch.setattr(rules.templates, "TIME_LIMIT", 3600.0)
    context = {**SAMPLE_CONTEXT, "labels": {"alertname": "SampleAlert", **labels}}
    template = Template(source)
    tracemalloc.start()
    try:
        assert template.render(context) is None
        with pytest.raises(TemplateLimitExceeded, match=limit):
            template.check_limits(context)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # No value near the caps' size was built on the way to the refusal.
    assert peak < 20_000_000


def test_namespaces_print_without_their_contents(hang_guard: None) -> None:
    # A namespace holding namespaces twice over, 20 deep, once printed as 2**20 copies.
    source = (
        "{% set ns = namespace(c=namespace()) %}{% for i in range(20) %}"
        "{% set ns.c = namespace(a=ns.c, b=ns.c) %}{% endfor %}{{ ns.c }}"
    )
    tracemalloc.start()
    try:
        assert Template(source).render(CTX) == "<namespace>"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_a_call_on_a_large_value_looks_at_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Few steps, so the step-count clock never looks; the one costly call does.
    monkeypatch.setattr(rules.templates, "TIME_LIMIT", 0.0)
    context = {"labels": {"alertname": "A", "big": "word " * 2000}}
    template = Template("{{ labels.big | truncate(10) }}")
    assert template.render(context) is None
    with pytest.raises(TemplateLimitExceeded, match="longer than"):
        template.check_limits(context)
    assert Template("{{ labels.alertname | truncate(10) }}").render(context) == "A"


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("{{ ([[1] * 3000] * 3000) | sum(start=[]) | length }}", "repetition too large"),
        ("{{ lipsum(10000) }}", "lipsum() is not available"),
    ],
)
def test_check_refuses_a_slow_call_on_the_sample_alert(
    hang_guard: None, tmp_path: Path, title: str, message: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f'rules:\n  - name: a\n    severity: P1\n    title: "{title}"\n')
    with pytest.raises(ConfigError) as info:
        load_rule_file(path)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{path}:4:5: rules[0].title: ")
    assert f"exceeds a rendering limit: {message}" in str(problem)


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{{ [1, 2, 3.5] | sum }} {{ items | sum(attribute='n', start=10) }}", "6.5 16"),
        ("{{ items | tojson }}|{{ [1] | tojson(indent=2) }}", '[{"n": 1}, {"n": 5}]|[\n  1\n]'),
        ("-{{ 'a\\nb' | indent(4, first=true) }}", "-    a\n    b"),
        ("{{ 'aaa bbb ccc' | wordwrap(7) }}", "aaa bbb\nccc"),
        ("{{ '<b>x</b> y' | striptags }} {{ 'see http://x.example' | urlize | length }}", "x y 66"),
        (
            "{{ [[1, 2]] * 2 }} {{ ([labels.service] * 3) | join('-') }}",
            "[[1, 2], [1, 2]] api-api-api",
        ),
        ("{% set a %}{{ labels.service }}!{% endset %}{{ a ~ a }}", "api!api!"),
        ("{{ {'k': [1, (2, 3)]} }}", "{'k': [1, (2, 3)]}"),
        ("{{ 12345 * 678 }}", "8369910"),
    ],
)
def test_ordinary_uses_of_the_capped_builtins_still_work(source: str, rendered: str) -> None:
    context = {**CTX, "items": [{"n": 1}, {"n": 5}]}
    template = Template(source)
    assert template.render(context) == rendered
    template.check_limits(context)


def test_a_large_notification_may_still_be_reordered_whole() -> None:
    # Data the template was given is no amplification: sorting 300 KB of it builds nothing new.
    alerts = [{"labels": {"instance": f"host-{i:05d}", "text": "y" * 150}} for i in range(2000)]
    template = Template(
        "{{ (alerts | sort(attribute='labels.instance', reverse=true) | list)[0].labels.instance }}"
        " {{ alerts | map(attribute='labels') | list | length }}"
    )
    assert template.render_document({"alerts": alerts}) == "host-01999 2000"
