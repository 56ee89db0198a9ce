"""Sandboxed templates for incident keys and titles (Jinja2 ``SandboxedEnvironment``).

Rule authors write ``{{ labels.alertname }}/{{ labels.service }}``; a missing label renders as the
empty string, as in Alertmanager's templates. The sandbox refuses attribute tricks that would
reach Python internals, so a rule file cannot execute code.

Rendering is also bounded, because a template runs on the event loop for every alert it names:
every loop iteration, call and lookup spends one step of a per-render budget and the render is
abandoned past a wall-clock limit; integers handed to functions and filters (``range``, widths,
counts) are capped, as are the values ``*``, ``+``, ``%``, formatting, literals, ``~`` and
namespaces build (measured as printed: a part shared n times counts n times), and the output.
Since the clock is only looked at between steps, each single call is bounded on its own: ``sum``
adds numbers only, the text filters that work in Python take a capped input, ``tojson``'s indent
is bounded by the work it makes, and a call on a large value looks at the clock. A template
past a limit fails like any other failing template (its caller falls back), and
``check_limits`` lets ``check`` refuse it on a sample alert. Filters and ``%`` are never
evaluated while a template compiles, so a huge constant costs nothing at load.
"""

from __future__ import annotations

import functools
import numbers
import re
import time
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import TemplateError, nodes, pass_environment
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

__all__ = [
    "SAMPLE_CONTEXT",
    "Template",
    "TemplateLimitExceeded",
    "TemplateSyntaxProblem",
    "compile_template",
    "notification_budget",
]

_MAX_RENDERED = 1024
# The caps. Keys and titles are short; these leave room for any sensible template while keeping
# one render to a few milliseconds and a few megabytes.
MAX_STEPS = 20_000  # loop iterations + calls + attribute and item lookups, per render
MAX_INT_ARGUMENT = 10_000  # range(n), center(n), truncate(n), '%0nd': counts and widths
MAX_VALUE = 100_000  # characters (or items) of a value built by *, +, %, a call or a namespace
MAX_WORK = 10_000_000  # product of the two largest argument sizes of one call (join, replace)
MAX_BUILT = 2_000_000  # characters (or items) of all checked values one render builds
MAX_OUTPUT = 65_536  # characters a render may produce before it is cut to _MAX_RENDERED
MAX_DEPTH = 32  # levels of lists, tuples and dicts in a value
MAX_TEXT = 20_000  # characters the text filters that work in Python (urlize, wordwrap) take
TIME_LIMIT = 0.1  # seconds of wall clock per render
# Seconds of wall clock for all the renders of one notification: without it, a notification of
# many alerts whose template hits the time limit each time would hold the event loop for
# alerts x templates x TIME_LIMIT. Ordinary templates never look at the clock (below), so only
# costly ones fall back once it is spent.
NOTIFICATION_TIME_LIMIT = 0.25
# Steps between two looks at the clock. An ordinary key or title takes fewer steps than this,
# so a busy machine can never make it fall back (which would change an incident's key).
_CLOCK_EVERY = 64
# A call on a value larger than this also looks at the clock, so that one costly call (each is
# capped to a few milliseconds) cannot be followed by 63 more before the deadline is seen.
_COSTLY = 4096
_MAX_POWER_BITS = 4096
_COUNTED = "tocsin_counted"  # the filter every {% for %} iterable is wrapped in
_BUILT = "tocsin_built"  # the filter every literal, ~ and {% set %} block is wrapped in
_DIGITS = re.compile(r"\d+")
# The width and precision of a printf-style conversion, and the spec of a str.format field.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?([#0 +-]*[0-9*]*(?:\.[0-9*]*)?)")
_BRACE_SPEC = re.compile(r"\{[^{}:]*:([^{}]*)")
# Filters whose integer arguments are widths or counts (not values, as in default(123456)).
_COUNTING_FILTERS = frozenset(
    {"center", "indent", "truncate", "wordwrap", "batch", "slice", "tojson"}
)
# Filters that turn their arguments into text: what counts is how much text each one prints as.
_PRINTING_FILTERS = frozenset({"join", "format", "replace", "indent", "wordwrap", "truncate"})
# Filters that walk their text in Python, a few microseconds a character (or worse: striptags
# copies the rest of the text for each tag it removes).
_TEXT_FILTERS = frozenset({"wordwrap", "urlize", "striptags", "title", "wordcount", "urlencode"})
# Containers whose contents print with them, compare and serialise: sizes are flattened.
_CONTAINERS = (list, tuple, set, frozenset, dict, KeysView, ValuesView, ItemsView)
# str methods whose integer arguments are widths.
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class TemplateLimitExceeded(SecurityError):
    """A render went past one of the caps (steps, time, sizes)."""


class _Budget:
    """The steps and the deadline left to one render."""

    __slots__ = ("chars", "context", "deadline", "given", "memo", "shared", "steps")

    def __init__(self, context: Mapping[str, Any] | None = None) -> None:
        self.context = context
        self.given: int | None = None
        # Flattened sizes of the containers seen, by identity (kept alive, so ids stay unique):
        # a value sharing one list a million times is measured in one pass over its parts.
        self.memo: dict[int, tuple[Any, int, int]] = {}
        self.steps = MAX_STEPS
        self.chars = MAX_BUILT
        self.deadline = time.monotonic() + TIME_LIMIT
        shared = _SHARED_DEADLINE.get()
        self.shared = shared is not None and shared < self.deadline
        if shared is not None and self.shared:
            self.deadline = shared

    def charge(self, size: int) -> None:
        self.chars -= size
        if self.chars < 0:
            raise TemplateLimitExceeded(f"template built more than {MAX_BUILT} characters")

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateLimitExceeded(f"template took more than {MAX_STEPS} steps")
        if self.steps % _CLOCK_EVERY == 0:
            self.look_at_clock()

    def look_at_clock(self) -> None:
        if time.monotonic() >= self.deadline:
            if self.shared:
                raise TemplateLimitExceeded(
                    f"templates took longer than {NOTIFICATION_TIME_LIMIT}s for one notification"
                )
            raise TemplateLimitExceeded(f"template took longer than {TIME_LIMIT}s to render")


# The deadline every render of the notification in progress shares (notification_budget).
_SHARED_DEADLINE: ContextVar[float | None] = ContextVar("notification_deadline", default=None)


@contextmanager
def notification_budget() -> Iterator[None]:
    """Renders inside share one deadline, NOTIFICATION_TIME_LIMIT from now."""
    token = _SHARED_DEADLINE.set(time.monotonic() + NOTIFICATION_TIME_LIMIT)
    try:
        yield
    finally:
        _SHARED_DEADLINE.reset(token)


# The budget of the render in progress; None while a template compiles (nothing is spent then).
_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _spend() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend()


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value)
    return 1


def _flat(value: Any, memo: dict[int, tuple[Any, int, int]], level: int = 0) -> tuple[int, int]:
    """(size, depth) of ``value`` printed out: characters of its text and numbers, and one per
    container, a shared part counted as often as it occurs."""
    if isinstance(value, str | bytes):
        return len(value), 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3 + 1, 0  # at least its decimal digits
    if not isinstance(value, _CONTAINERS):
        return 1, 0
    known = memo.get(id(value))
    if known is not None:
        return known[1], known[2]
    if level > MAX_DEPTH:
        raise TemplateLimitExceeded(f"value nested deeper than {MAX_DEPTH} levels")
    size, depth = 1, 0
    for item in value.items() if isinstance(value, dict) else value:
        item_size, item_depth = _flat(item, memo, level + 1)
        size, depth = size + item_size, max(depth, item_depth + 1)
    if level + depth > MAX_DEPTH:  # parts already measured report their depth
        raise TemplateLimitExceeded(f"value nested deeper than {MAX_DEPTH} levels")
    memo[id(value)] = (value, size, depth)
    return size, depth


def _flat_size(value: Any) -> int:
    budget = _BUDGET.get()
    return _flat(value, budget.memo if budget is not None else {})[0]


def _given_size(budget: _Budget) -> int:
    """The flattened size of the render's context, once per render."""
    if budget.given is None:
        context = budget.context
        budget.given = _flat(dict(context), budget.memo)[0] if context is not None else 0
    return budget.given


def _check_value(value: Any, what: str) -> Any:
    size = _size(value)
    if size > MAX_VALUE:
        raise TemplateLimitExceeded(f"{what} would hold more than {MAX_VALUE} characters")
    budget = _BUDGET.get()
    if budget is not None and size > 1:
        budget.charge(size)
    if isinstance(value, _CONTAINERS):
        flat = _flat_size(value)
        # A value may hold as much as the template was given (a large notification sorted
        # whole) plus MAX_VALUE: parts shared many times over cannot multiply past that.
        if flat > MAX_VALUE and (budget is None or flat > MAX_VALUE + _given_size(budget)):
            raise TemplateLimitExceeded(f"{what} would hold more than {MAX_VALUE} characters")
        size = max(size, flat)
    if budget is not None and size > _COSTLY:
        budget.look_at_clock()
    return value


def _built(value: Any) -> Any:
    """A list, tuple or dict literal, a ``~`` or a ``{% set %}`` block: bounded like a call's."""
    _spend()
    return _check_value(value, "a value")


def _finalize(value: Any) -> str:
    """Everything ``{{ }}`` prints, also into a macro's or a {% set %} block's buffer, counts
    towards the characters a render builds."""
    text = value if isinstance(value, str) else str(value)
    budget = _BUDGET.get()
    if budget is not None and len(text) > 1:
        budget.charge(len(text))
        if len(text) > _COSTLY:
            budget.look_at_clock()
    return text


@pass_environment
def _numeric_sum(
    environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0
) -> Any:
    """``sum`` of numbers only: adding lists or tuples copies the total so far each time."""
    items = list(iterable)
    if attribute is not None:
        items = list(map(make_attrgetter(environment, attribute), items))
    for item in (start, *items):
        if not isinstance(item, numbers.Number):
            raise TemplateLimitExceeded("the sum filter adds only numbers in a template")
    return sum(items, start)


def _no_lipsum(*args: Any, **kwargs: Any) -> Any:
    raise TemplateLimitExceeded("lipsum() is not available in templates (it builds text)")


def _materialized(value: Any) -> Any:
    """An iterator argument as a list, one step per item, so its size can be checked."""
    if isinstance(value, Iterator) and not isinstance(value, LoopContext):
        return _check_value(list(_counted(value)), "an iterated value")
    return value


def _check_counts(values: Iterable[Any]) -> None:
    """Integers that say how many (range's length, a width, a count of lines) are capped."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT_ARGUMENT:
                raise TemplateLimitExceeded(
                    f"count {value} exceeds the template limit of {MAX_INT_ARGUMENT}"
                )


def _check_work(values: Iterable[Any], *, counts: bool = False, printed: bool = False) -> int:
    """One call may not combine two large inputs (a long separator joining many items, many
    lines each indented by a wide margin); with ``counts``, integers are sizes too, and with
    ``printed`` containers count as the text they print as. The largest size is returned."""
    measure = _flat_size if printed else _size
    sizes = sorted(
        abs(v) if counts and isinstance(v, int) and not isinstance(v, bool) else measure(v)
        for v in values
    )
    if len(sizes) >= 2 and sizes[-1] * sizes[-2] > MAX_WORK:
        raise TemplateLimitExceeded("call on values too large for a template")
    return sizes[-1] if sizes else 0


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The checks of one filter on its value (the counts and widths are checked by the caller)."""
    if name in _TEXT_FILTERS and isinstance(value, str) and len(value) > MAX_TEXT:
        raise TemplateLimitExceeded(f"the {name} filter takes at most {MAX_TEXT} characters")
    if name == "tojson":
        indent = kwargs.get("indent", args[0] if args else None)
        width = len(indent) if isinstance(indent, str) else indent or 0
        budget = _BUDGET.get()
        size, depth = _flat(value, budget.memo if budget is not None else {})
        # With an indent, every item is on its own line, indented by its depth.
        if isinstance(width, int) and size * (1 + depth * abs(width)) > MAX_WORK:
            raise TemplateLimitExceeded("value too large for tojson with that indent")


def _check_format(fmt: str) -> None:
    """A width or precision in a format string is a count too ('%0200000000d', '{:>200000}')."""
    specs = [m.group(1) or "" for m in _PERCENT_SPEC.finditer(fmt)]
    specs += [m.group(1) for m in _BRACE_SPEC.finditer(fmt)]
    for digits in _DIGITS.findall(" ".join(specs)):
        if int(digits) > MAX_INT_ARGUMENT:
            raise TemplateLimitExceeded(f"format width {digits} exceeds the template limit")


def _counted(iterable: Any) -> Iterator[Any]:
    """What a {% for %} loop iterates: the same items, one step each."""
    for item in iterable:
        _spend()
        yield item


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Context-passing filters get the context first, then the value.
    first = 2 if getattr(func, "jinja_pass_arg", None) is not None else 1

    @functools.wraps(func)  # keeps Jinja's pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _spend()
        args = tuple(_materialized(a) for a in args)
        counting = name in _COUNTING_FILTERS
        largest = _check_work(
            (*args, *kwargs.values()), counts=counting, printed=name in _PRINTING_FILTERS
        )
        if name == "format" and args and isinstance(args[0], str):
            _check_format(args[0])
            if "*" in args[0]:  # '%*d': the width comes from an argument
                _check_counts(args[1:])
        elif counting:
            _check_counts((*args[first:], *kwargs.values()))
        if len(args) >= first:
            _check_filter(name, args[first - 1], args[first:], kwargs)
        result = _check_value(func(*args, **kwargs), f"the {name} filter's result")
        budget = _BUDGET.get()
        if budget is not None and largest > _COSTLY:
            budget.look_at_clock()
        return result

    return guarded


class _BoundedNamespace(Namespace):
    """``namespace()``, the only value a template can grow across loop iterations: bounded."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _check_value(value, "a namespace attribute"))

    def __repr__(self) -> str:
        # Not its contents: namespaces holding namespaces twice over would print exponentially.
        return "<namespace>"


class _CheckBuilt(NodeTransformer):
    """Wraps what builds a value without a call (literals, ``~``, {% set %} blocks) in _BUILT,
    so that ``{% set a = [a, a] %}`` twenty times over cannot double a value unchecked."""

    def _wrap(self, node: nodes.Expr) -> nodes.Expr:
        self.generic_visit(node)  # the children, in place; this node is the one replaced
        return nodes.Filter(node, _BUILT, [], [], None, None, lineno=node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Expr:
        return self._wrap(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Expr:
        return self._wrap(node)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Expr:
        return self._wrap(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Expr:
        if node.ctx != "load":  # a {% for %} or {% set %} target
            self.generic_visit(node)
            return node
        return self._wrap(node)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.AssignBlock:
        self.generic_visit(node)
        line = node.lineno
        node.filter = nodes.Filter(node.filter, _BUILT, [], [], None, None, lineno=line)
        return node


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with a step budget, a deadline and capped values (module doc)."""

    # Intercepted operators are also never folded into constants while compiling.
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(autoescape=False, keep_trailing_newline=False, finalize=_finalize)
        self.filters["sum"] = _numeric_sum
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_COUNTED] = _counted
        self.filters[_BUILT] = _built
        self.globals["namespace"] = _BoundedNamespace
        self.globals["lipsum"] = _no_lipsum

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _CheckBuilt().visit(tree)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _COUNTED, [], [], None, None, lineno=loop.lineno)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "*":
            if _is_int(left) and _is_int(right):
                if left.bit_length() + right.bit_length() > _MAX_POWER_BITS:
                    raise TemplateLimitExceeded("product too large for a template")
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    # Flattened: [[1] * 1000] * 1000 prints, compares and sums a million items.
                    if _flat_size(seq) * n > MAX_VALUE:
                        raise TemplateLimitExceeded("repetition too large for a template")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(abs(left).bit_length(), 1) * right > _MAX_POWER_BITS:
                    raise TemplateLimitExceeded("power too large for a template")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
            if "*" in left:
                _check_counts(right if isinstance(right, tuple) else (right,))
        elif operator == "+" and _size(left) + _size(right) > MAX_VALUE:
            raise TemplateLimitExceeded("sum too large for a template")
        return _check_value(super().call_binop(context, operator, left, right), "a value")

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        if isinstance(__obj, LoopContext) and args:
            args = (_counted(args[0]), *args[1:])  # a recursive loop's next level
        args = tuple(_materialized(a) for a in args)
        # The sandbox hands out str.format wrapped; the bound method is underneath.
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        method = getattr(target, "__name__", "") if isinstance(owner, str) else ""
        counting = __obj is safe_range or method in _PADDING_METHODS
        largest = _check_work(
            (owner, *args, *kwargs.values()), counts=counting, printed=owner is not None
        )
        if counting:
            _check_counts((*args, *kwargs.values()))
        elif isinstance(owner, str) and method in ("format", "format_map"):
            _check_format(owner)
            if ":{" in owner:  # '{:{}}': the width comes from an argument
                _check_counts((*args, *kwargs.values()))
        result = _check_value(super().call(__context, __obj, *args, **kwargs), "a call's result")
        budget = _BUDGET.get()
        if budget is not None and largest > _COSTLY:
            budget.look_at_clock()
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend()
        return super().getitem(obj, argument)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_ENV = _BoundedSandbox()

# A plausible alert for ``check_limits``: what ``check`` renders every template against.
SAMPLE_CONTEXT: dict[str, Any] = {
    "labels": {
        "alertname": "SampleAlert",
        "severity": "critical",
        "service": "api",
        "instance": "host-1:9100",
        "job": "node",
    },
    "annotations": {"summary": "Sample summary", "description": "Sample description"},
    "status": "firing",
    "fingerprint": "0123456789abcdef",
    "startsAt": "2024-01-01T00:00:00+00:00",
    "generatorURL": "http://prometheus.example/graph",
    "severity": "critical",
    "receiver": "tocsin",
    "groupKey": '{}:{alertname="SampleAlert"}',
    "groupLabels": {"alertname": "SampleAlert"},
    "commonLabels": {"alertname": "SampleAlert"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example",
    "firing": 1,
}


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
            out = self._bounded_render(context)
        except Exception:  # a template must never take the receiver down
            return None
        return out.strip()[:_MAX_RENDERED]

    def render_document(self, context: Mapping[str, Any]) -> str:
        """The whole output, unstripped and uncut (a message body, not a one-line key);
        ValueError when the render fails or goes past a cap."""
        try:
            return self._bounded_render(context)
        except Exception as e:  # any template failure: the caller reports it, never crashes
            raise ValueError(f"template failed: {type(e).__name__}: {e}") from None

    def check_limits(self, context: Mapping[str, Any] = SAMPLE_CONTEXT) -> None:
        """Raise TemplateLimitExceeded if rendering ``context`` goes past a cap.

        Other failures (a missing label used as a number, say) are not reported: they depend
        on the alert, and at run time they fall back like any failing template.
        """
        try:
            self._bounded_render(context)
        except TemplateLimitExceeded:
            raise
        except Exception:
            return

    def _bounded_render(self, context: Mapping[str, Any]) -> str:
        token = _BUDGET.set(_Budget(context))
        try:
            pieces: list[str] = []
            length = 0
            for piece in self._tpl.generate(context):
                length += len(piece)
                if length > MAX_OUTPUT:
                    raise TemplateLimitExceeded(f"template output exceeds {MAX_OUTPUT} characters")
                pieces.append(piece)
            return "".join(pieces)
        finally:
            _BUDGET.reset(token)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def compile_template(source: str | None) -> Template | None:
    """Compile ``source`` if given."""
    return Template(source) if source else None
