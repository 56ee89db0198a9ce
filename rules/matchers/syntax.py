"""The vocabulary every matcher module shares: operators, parse modes, errors, Go characters.

Alertmanager is written in Go, so "whitespace", "printable" and "quoted" mean what Go's
``unicode`` and ``strconv`` packages say; the helpers here reproduce those definitions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

ParseMode = Literal["fallback", "utf8", "classic"]
"""Which Alertmanager matcher parser to emulate; see the ``rules.matchers`` docstring."""

MODES: tuple[str, ...] = ("fallback", "utf8", "classic")


class MatchType(StrEnum):
    """The four matcher operators, valued by their spelling (a ``str`` subclass)."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class MatcherError(ValueError):
    """A matcher that cannot be parsed or compiled.

    ``text`` is the input that was being parsed, ``offset`` the 0-based character position of
    the fault in it, ``reason`` the bare explanation, and ``index`` the position of the
    offending item when a list of matcher strings was parsed (else None).
    """

    def __init__(
        self,
        text: str,
        offset: int,
        reason: str,
        *,
        index: int | None = None,
        is_regex: bool = False,
    ) -> None:
        self.text = text
        self.offset = offset
        self.reason = reason
        self.index = index
        self.is_regex = is_regex
        super().__init__(self._render())

    def _render(self) -> str:
        item = f"matcher #{self.index}: " if self.index is not None else ""
        return f"{item}{self.reason} at offset {self.offset} in {self.text!r}"

    def __str__(self) -> str:
        return self._render()

    def relocated(self, *, text: str, offset: int, index: int | None = None) -> MatcherError:
        """The same error, located in ``text`` (the input around the part that failed)."""
        return MatcherError(text, offset, self.reason, index=index, is_regex=self.is_regex)


# ---------------------------------------------------------------------------------------------
# Go character predicates and quoting
# ---------------------------------------------------------------------------------------------


# unicode.IsSpace: Latin-1 spaces plus the White_Space property.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
# RE2's \s, used by the classic parser's regex: no \v, ASCII only.
RE2_SPACE = "\t\n\f\r "
_RESERVED = frozenset("{}!=~,\\\"'`")


def is_reserved(ch: str) -> bool:
    """matcher/parse isReserved: characters that end an unquoted token."""
    return ch in GO_SPACE or ch in _RESERVED


def go_trim_space(s: str) -> tuple[str, int]:
    """strings.TrimSpace; also returns how many characters were cut from the front."""
    start, end = 0, len(s)
    while start < end and s[start] in GO_SPACE:
        start += 1
    while end > start and s[end - 1] in GO_SPACE:
        end -= 1
    return s[start:end], start


def check_unicode(text: str) -> None:
    """Python strings may hold lone surrogates, which Go (UTF-8) strings never do."""
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise MatcherError(text, i, "input is not valid UTF-8 (lone surrogate)")


_GO_C_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def go_quote(s: str) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():  # Go's IsPrint: letters, marks, numbers, punct, symbols, ASCII space
            out.append(ch)
        elif cp in _GO_C_ESCAPES:
            out.append(_GO_C_ESCAPES[cp])
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def openmetrics_escape(s: str) -> str:
    """Alertmanager's openMetricsEscape: only backslash, newline and double quote."""
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
