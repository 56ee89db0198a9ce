"""The Matcher type and the public parsing API (Alertmanager's ``matcher/compat``).

``parse_matcher`` and ``parse_matchers`` choose between the classic and the UTF-8 parser by
parse mode (see the package docstring) and turn what they read into Matchers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from rules.matchers.classic import classic_parse_many, classic_parse_one
from rules.matchers.regex import Regex
from rules.matchers.spec import MatcherSpec, compile_value
from rules.matchers.syntax import (
    MODES,
    MatcherError,
    MatchType,
    ParseMode,
    check_unicode,
    go_quote,
    is_reserved,
    openmetrics_escape,
)
from rules.matchers.utf8 import utf8_parse_many, utf8_parse_one

# Go's ordering of MatchType (MatchEqual .. MatchNotRegexp) for sort_matchers.
_TYPE_ORDER = {
    MatchType.EQUAL: 0,
    MatchType.NOT_EQUAL: 1,
    MatchType.REGEX: 2,
    MatchType.NOT_REGEX: 3,
}

_MATCH_CACHE_LIMIT = 4096

_T = TypeVar("_T")


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``name``, operator ``type`` and ``value`` (a regex for =~ and !~).

    Constructing a Matcher compiles its regex once (invalid -> MatcherError whose ``text`` is
    the value). Equality and hashing use (name, type, value).
    """

    name: str
    type: MatchType
    value: str
    _regex: Regex | None = field(init=False, default=None, repr=False, compare=False, hash=False)
    _cache: dict[str, bool] = field(
        init=False, default_factory=dict, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.value, str):
            raise TypeError("Matcher name and value must be strings")
        try:
            match_type = MatchType(self.type)
        except ValueError:
            raise MatcherError(
                str(self.type), 0, "unknown match type (expected '=', '!=', '=~' or '!~')"
            ) from None
        object.__setattr__(self, "type", match_type)
        if not self.name:
            raise MatcherError(self.name, 0, "label name must not be empty")
        check_unicode(self.name)
        check_unicode(self.value)
        if match_type in (MatchType.REGEX, MatchType.NOT_REGEX):
            object.__setattr__(self, "_regex", compile_value(self.value))

    def matches(self, value: str) -> bool:
        """Whether a label value satisfies this matcher; pass "" for a missing label."""
        match self.type:
            case MatchType.EQUAL:
                return value == self.value
            case MatchType.NOT_EQUAL:
                return value != self.value
            case MatchType.REGEX:
                return self._match_regex(value)
            case _:
                return not self._match_regex(value)

    def _match_regex(self, value: str) -> bool:
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        assert self._regex is not None
        result = self._regex.matches(value)
        if len(self._cache) >= _MATCH_CACHE_LIMIT:
            self._cache.clear()  # bounded: label values can be unbounded in number
        self._cache[value] = result
        return result

    def matches_labels(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this matcher (a missing label counts as "")."""
        return self.matches(labels.get(self.name, ""))

    def __str__(self) -> str:
        """Alertmanager's Matcher.String(): ``name="value"``, quoting the name if it must."""
        if any(is_reserved(ch) for ch in self.name):
            return f"{go_quote(self.name)}{self.type.value}{go_quote(self.value)}"
        return f'{self.name}{self.type.value}"{openmetrics_escape(self.value)}"'

    # pydantic: a Matcher field accepts one matcher string (or a Matcher) and dumps as string.
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_one,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "description": 'Alertmanager matcher, e.g. severity=~"crit.*"'}


def _validate_one(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if isinstance(value, str):
        return parse_matcher(value)
    raise ValueError(f"expected a matcher string such as env=prod, got {type(value).__name__}")


def _pick_error(utf8_error: MatcherError, classic_error: MatcherError) -> MatcherError:
    # A regex error means that parser understood the matcher; it is the useful diagnosis.
    if classic_error.is_regex:
        return classic_error
    return utf8_error


def _fallback(text: str, classic: Callable[[str], _T], utf8: Callable[[str], _T]) -> _T:
    """Fallback mode: the classic parser's reading if it has one, else the UTF-8 parser's."""
    try:
        return classic(text)
    except MatcherError as exc:
        classic_error = exc
    try:
        return utf8(text)
    except MatcherError as exc:
        raise _pick_error(exc, classic_error) from None


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown matcher parse mode {mode!r}; expected one of {MODES}")


def _parse_list(text: str, mode: ParseMode) -> list[Matcher]:
    return [Matcher(*spec) for spec in _parse_specs(text, mode)]


def _parse_specs(text: str, mode: ParseMode) -> list[MatcherSpec]:
    check_unicode(text)
    if mode == "classic":
        return classic_parse_many(text)
    if mode == "utf8":
        return utf8_parse_many(text)
    return _fallback(text, classic_parse_many, utf8_parse_many)


def parse_matcher(text: str, *, mode: ParseMode = "fallback") -> Matcher:
    """Parse one matcher such as ``severity=~"critical|page"`` or ``env=prod``.

    As Alertmanager's compat.Matcher: no braces allowed (outside classic mode), and in
    fallback mode the classic reading wins, so ``a=b,c=d`` is one matcher with value ``b,c=d``
    (use parse_matchers for lists). Raises MatcherError with the offset of the fault.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_matcher expects a string, got {type(text).__name__}")
    _check_mode(mode)
    return Matcher(*_parse_one_spec(text, mode))


def _parse_one_spec(text: str, mode: ParseMode) -> MatcherSpec:
    check_unicode(text)
    if mode == "classic":
        return classic_parse_one(text, 0, text)
    if text.startswith("{") or text.endswith("}"):
        offset = 0 if text.startswith("{") else len(text) - 1
        raise MatcherError(
            text, offset, "unexpected '{' or '}': a single matcher is written without braces"
        )
    if mode == "utf8":
        return utf8_parse_one(text)
    return _fallback(text, lambda s: classic_parse_one(s, 0, s), utf8_parse_one)


def parse_matchers(text: str | Sequence[str], *, mode: ParseMode = "fallback") -> list[Matcher]:
    """Parse matchers, in input order.

    ``text`` is either one string holding a list (``{a="b", c=~"d|e"}``, ``a=b,c!=d``, ``{}``,
    ``""``) or a sequence of such strings, as in an Alertmanager route's ``matchers:`` list,
    where each item may itself hold several comma-separated matchers. A MatcherError from an
    item has ``index`` set and ``text``/``offset`` relative to that item.
    """
    _check_mode(mode)
    if isinstance(text, str):
        return _parse_list(text, mode)
    if not isinstance(text, Sequence):
        raise TypeError(f"parse_matchers expects a string or a list, got {type(text).__name__}")
    out: list[Matcher] = []
    for index, item in enumerate(text):
        if not isinstance(item, str):
            raise MatcherError(
                repr(item), 0, f"expected a matcher string, got {type(item).__name__}", index=index
            )
        try:
            out.extend(_parse_list(item, mode))
        except MatcherError as exc:
            raise exc.relocated(text=exc.text, offset=exc.offset, index=index) from None
    return out


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches the label set (true for no matchers)."""
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


def sort_matchers(matchers: Iterable[Matcher]) -> list[Matcher]:
    """Sorted as Alertmanager's labels.Matchers (name, then value, then operator).

    Alertmanager sorts a route's matchers when it loads its config, so a route key or
    groupKey prints them in this order.
    """
    return sorted(matchers, key=lambda m: (m.name, m.value, _TYPE_ORDER[m.type]))


def format_matchers(matchers: Iterable[Matcher]) -> str:
    """labels.Matchers.String(): ``{a="b",c=~"d"}`` (comma, no space; ``{}`` when empty)."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def _to_matcher_list(value: Any) -> list[Matcher]:
    if isinstance(value, str):
        return parse_matchers(value)
    if isinstance(value, Matcher):
        return [value]
    if isinstance(value, Sequence):
        out: list[Matcher] = []
        for index, item in enumerate(value):
            if isinstance(item, Matcher):
                out.append(item)
            elif isinstance(item, str):
                try:
                    out.extend(parse_matchers(item))
                except MatcherError as exc:
                    raise exc.relocated(text=exc.text, offset=exc.offset, index=index) from None
            else:
                raise ValueError(
                    f"matcher #{index}: expected a matcher string, got {type(item).__name__}"
                )
        return out
    raise ValueError(f"expected a matcher string or a list of them, got {type(value).__name__}")


MatcherList = Annotated[list[Matcher], BeforeValidator(_to_matcher_list)]
"""pydantic field type: a string like ``{a="b",c!="d"}`` or a list of matcher strings (each may
hold several, as in Alertmanager's ``matchers:``); validates to list[Matcher], dumps as strings."""
