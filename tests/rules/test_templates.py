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
        "namespace",
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
