"""Sandboxed key/title templates: escapes are refused, syntax errors say so, output is bounded."""

from __future__ import annotations

from typing import Any

import pytest

from rules.templates import Template, TemplateSyntaxProblem, compile_template

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
