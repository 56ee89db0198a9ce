"""What the parsers hand back: a label name, operator and value, already checked.

The parsers do not build Matchers themselves (the Matcher type parses strings, so it sits
above them). They still compile a regex value the moment they read it, as Alertmanager does:
an invalid regex is reported at its offset in the input, before anything later in the input
is looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from rules.matchers.regex import Regex, RegexError, compile_regex
from rules.matchers.syntax import MatcherError, MatchType


class MatcherSpec(NamedTuple):
    """One parsed matcher: ``Matcher(*spec)`` builds it."""

    name: str
    type: MatchType
    value: str


def compile_value(value: str) -> Regex:
    """Compile a matcher's RE2 value (invalid -> MatcherError whose ``text`` is the value)."""
    try:
        return compile_regex(value)
    except RegexError as exc:
        raise MatcherError(
            value, exc.pos, f"invalid regular expression: {exc.message}", is_regex=True
        ) from None


def checked_spec(
    name: str, match_type: MatchType, value: str, text: str, posmap: Sequence[int]
) -> MatcherSpec:
    """The parsed triple; a regex error's offset is moved from the value into the input text.

    ``posmap[i]`` is the offset in ``text`` of the value's character ``i`` (one extra entry
    for the end of the value).
    """
    if match_type in (MatchType.REGEX, MatchType.NOT_REGEX):
        try:
            compile_value(value)
        except MatcherError as exc:
            offset = posmap[min(exc.offset, len(posmap) - 1)]
            raise exc.relocated(text=text, offset=offset) from None
    return MatcherSpec(name, match_type, value)
