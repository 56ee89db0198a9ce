"""Sandboxed templates for incident keys and titles (Jinja2 ``SandboxedEnvironment``).

Rule authors write ``{{ labels.alertname }}/{{ labels.service }}``; a missing label renders as the
empty string, as in Alertmanager's templates. The sandbox refuses attribute tricks that would
reach Python internals, so a rule file cannot execute code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["Template", "TemplateSyntaxProblem", "compile_template"]

_MAX_RENDERED = 1024
# Bounds for the two operators that can build huge values from small ones ('x' * 10**9,
# 10 ** 999 ** 999): a template must not exhaust memory or CPU before its output is capped.
_MAX_REPEAT = 100_000
_MAX_POWER_BITS = 4096


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with ``*`` and ``**`` refusing results that would be huge."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    if len(seq) * n > _MAX_REPEAT:
                        raise SecurityError("repetition too large for a template")
        elif isinstance(left, int) and isinstance(right, int) and right > 0:
            if max(abs(left).bit_length(), 1) * right > _MAX_POWER_BITS:
                raise SecurityError("power too large for a template")
        return super().call_binop(context, operator, left, right)


_ENV = _BoundedSandbox(autoescape=False, keep_trailing_newline=False)


class TemplateSyntaxProblem(ValueError):
    """A template that does not compile; ``lineno`` is the line inside the template."""

    def __init__(self, source: str, message: str, lineno: int | None = None) -> None:
        super().__init__(f"bad template {source!r}: {message}")
        self.lineno = lineno


class Template:
    """A compiled template; render() never raises, it reports failure as None."""

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._tpl = _ENV.from_string(source)
        except TemplateError as e:
            raise TemplateSyntaxProblem(source, str(e), getattr(e, "lineno", None)) from None

    def render(self, context: Mapping[str, Any]) -> str | None:
        """Render with ``context``; None when rendering fails (the caller falls back)."""
        try:
            out = self._tpl.render(context)
        except Exception:  # a template must never take the receiver down
            return None
        return out.strip()[:_MAX_RENDERED]

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def compile_template(source: str | None) -> Template | None:
    """Compile ``source`` if given."""
    return Template(source) if source else None
