"""Alertmanager label matchers: ``severity=~"critical|page"``, ``env!=prod``, ``{a="b", c!~"d"}``.

This module reproduces Alertmanager's matcher syntax and semantics (``pkg/labels/matcher.go``,
the classic parser ``pkg/labels/parse.go``, the UTF-8 parser ``matcher/parse`` and the
switch between them in ``matcher/compat``) so that a matcher copied from ``alertmanager.yml``
selects exactly the same alerts here.

Parse modes (Alertmanager's ``--enable-feature`` flags):

``"fallback"`` (default, as in Alertmanager >= 0.27)
    Both parsers run. If the classic parser accepts the input its result is used (when the two
    parsers disagree, Alertmanager also keeps the classic result); otherwise the UTF-8 parser's
    result is used. So ``foo=~"\\d+"`` keeps working, while ``"host.name"="x"`` and
    ``{ a = b }`` are accepted through the UTF-8 parser. One consequence, faithful to
    Alertmanager: in this mode ``foo="\\u00e9"`` means the six characters ``\\u00e9``, and a
    single ``parse_matcher('a=b,c=d')`` has the value ``b,c=d``.
``"utf8"`` (``utf8-strict-mode``)
    Only the UTF-8 parser: values are Go string literals (``strconv.Unquote``: ``\\n``,
    ``\\t``, ``\\"``, ``\\\\``, ``\\xNN``, ``\\u00e9``, ``\\U0001f642``, octal), label names
    may be quoted UTF-8, unquoted text may not contain ``{}!=~,\\"'`` backtick or spaces.
``"classic"`` (``classic-mode``, Alertmanager <= 0.26)
    Only the classic parser: names are ``[a-zA-Z_:][a-zA-Z0-9_:]*``; only ``\\"``, ``\\\\``
    and ``\\n`` are escapes, any other backslash is literal.

A missing label is the empty string: ``foo=""`` matches when ``foo`` is absent, ``foo!=""``
requires it, ``foo=~".*"`` matches an absent label, ``foo=~".+"`` requires a non-empty one.

Regular expressions are Go RE2 syntax, fully anchored (``^(?:re)$``). They are translated to
an equivalent Python pattern rather than handed to ``re`` as they are, because the two
dialects disagree silently: Python's ``$`` also matches before a final newline, ``\\d``/``\\w``
/``\\b`` are Unicode-aware, ``\\10`` is a backreference, ``a{,3}`` is a repetition, and an
inline ``(?i)`` that is not at the very start is an error. Constructs RE2 rejects are rejected
here too, with the offset: backreferences (``\\1``, ``(?P=n)``), lookarounds (``(?=``,
``(?!``, ``(?<=``, ``(?<!``), atomic groups, possessive quantifiers (``a*+``), conditionals,
comments, ``\\Z``, ``\\u1234``, ``\\e``, repeat counts above 1000, ``\\C``.

Deliberate differences from Alertmanager (kept small and on the safe side):

* An empty label name (``""="x"``, accepted by Alertmanager's UTF-8 parser) is an error: no
  Prometheus label has an empty name, so such a matcher is always a mistake.
* ``\\p{Script}`` classes (``\\p{Greek}``) are rejected; general categories (``\\pL``,
  ``\\p{Lu}``, ``\\PN``, ``\\p{^Z}``) and ``\\p{Any}`` are supported.
* Python's regex engine backtracks; RE2's linear-time guarantee does not hold for pathological
  patterns such as ``(a+)+$``. Patterns come from the (trusted) rule files.
* When both parsers reject an input in fallback mode, Alertmanager reports the classic parser's
  "bad matcher format"; we report the UTF-8 parser's diagnosis (it names what was expected and
  where), or the regex error if either parser got as far as compiling the regex.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "MatchType",
    "Matcher",
    "MatcherError",
    "MatcherList",
    "ParseMode",
    "format_matchers",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
    "sort_matchers",
]

ParseMode = Literal["fallback", "utf8", "classic"]
"""Which Alertmanager matcher parser to emulate; see the module docstring."""

_MODES: tuple[str, ...] = ("fallback", "utf8", "classic")


class MatchType(StrEnum):
    """The four matcher operators, valued by their spelling (a ``str`` subclass)."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


# Go's ordering of MatchType (MatchEqual .. MatchNotRegexp) for sort_matchers.
_TYPE_ORDER = {
    MatchType.EQUAL: 0,
    MatchType.NOT_EQUAL: 1,
    MatchType.REGEX: 2,
    MatchType.NOT_REGEX: 3,
}


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

    def _with(self, *, text: str, offset: int, index: int | None = None) -> MatcherError:
        return MatcherError(text, offset, self.reason, index=index, is_regex=self.is_regex)


# ---------------------------------------------------------------------------------------------
# Go character predicates
# ---------------------------------------------------------------------------------------------

# unicode.IsSpace: Latin-1 spaces plus the White_Space property.
_GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
# RE2's \s, used by the classic parser's regex: no \v, ASCII only.
_RE2_SPACE = "\t\n\f\r "
_RESERVED = frozenset("{}!=~,\\\"'`")


def _is_reserved(ch: str) -> bool:
    """matcher/parse isReserved: characters that end an unquoted token."""
    return ch in _GO_SPACE or ch in _RESERVED


def _go_trim_space(s: str) -> tuple[str, int]:
    """strings.TrimSpace; also returns how many characters were cut from the front."""
    start, end = 0, len(s)
    while start < end and s[start] in _GO_SPACE:
        start += 1
    while end > start and s[end - 1] in _GO_SPACE:
        end -= 1
    return s[start:end], start


def _check_unicode(text: str) -> None:
    """Python strings may hold lone surrogates, which Go (UTF-8) strings never do."""
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise MatcherError(text, i, "input is not valid UTF-8 (lone surrogate)")


_GO_C_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def _go_quote(s: str) -> str:
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


def _openmetrics_escape(s: str) -> str:
    """Alertmanager's openMetricsEscape: only backslash, newline and double quote."""
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# ---------------------------------------------------------------------------------------------
# RE2 -> Python regular expressions
# ---------------------------------------------------------------------------------------------

_MAX_RUNE = 0x10FFFF
_MAX_REPEAT = 1000
_MAX_NESTING = 1000

_Range = tuple[int, int]

_PERL_CLASSES: dict[str, tuple[_Range, ...]] = {
    "d": ((0x30, 0x39),),
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
}
_POSIX_CLASSES: dict[str, tuple[_Range, ...]] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
# Go's unicode.Categories; note that "C" does not include unassigned code points (Cn).
_GO_CATEGORY_GROUPS: dict[str, tuple[str, ...]] = {
    "C": ("Cc", "Cf", "Co", "Cs"),
    "L": ("Lu", "Ll", "Lt", "Lm", "Lo"),
    "M": ("Mc", "Me", "Mn"),
    "N": ("Nd", "Nl", "No"),
    "P": ("Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps"),
    "S": ("Sc", "Sk", "Sm", "So"),
    "Z": ("Zl", "Zp", "Zs"),
}
_GO_CATEGORIES: dict[str, tuple[str, ...]] = {
    **_GO_CATEGORY_GROUPS,
    **{sub: (sub,) for subs in _GO_CATEGORY_GROUPS.values() for sub in subs},
}


class _RegexError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _normalize(ranges: Iterable[_Range]) -> list[_Range]:
    out: list[_Range] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: Iterable[_Range]) -> list[_Range]:
    out: list[_Range] = []
    nxt = 0
    for lo, hi in _normalize(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


@functools.cache
def _category_ranges(name: str) -> tuple[_Range, ...]:
    """Code point ranges of a Go Unicode general category, from Python's unicodedata."""
    wanted = set(_GO_CATEGORIES[name])
    ranges: list[_Range] = []
    start = -1
    for cp in range(_MAX_RUNE + 2):
        inside = cp <= _MAX_RUNE and unicodedata.category(chr(cp)) in wanted
        if inside and start < 0:
            start = cp
        elif not inside and start >= 0:
            ranges.append((start, cp - 1))
            start = -1
    return tuple(ranges)


def _py_char(cp: int) -> str:
    """One code point as a Python regex atom that is literal both inside and outside []."""
    ch = chr(cp)
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return ch
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _py_class(ranges: Iterable[_Range], negated: bool) -> str:
    items = _normalize(ranges)
    if not items:
        # An empty class matches nothing; its negation matches everything.
        return "[\\x00-\\U0010ffff]" if negated else "[^\\x00-\\U0010ffff]"
    body = "".join(
        _py_char(lo) if lo == hi else f"{_py_char(lo)}-{_py_char(hi)}" for lo, hi in items
    )
    return f"[{'^' if negated else ''}{body}]"


_NONE, _ATOM, _REPEAT, _REPEAT_FLAGS = range(4)


class _RE2Translator:
    """Translate Go RE2 syntax (Perl flags, as regexp.Compile uses) into a Python pattern.

    Mirrors the structure of Go's regexp/syntax parser so that accepted inputs, rejected inputs
    and error positions agree. Flags (i, m, s, U) are applied per atom, so the output never
    contains a global inline flag and keeps RE2's scoping (a flag lasts to the end of the
    enclosing group, across ``|``). Every group becomes non-capturing: captures are never used.
    """

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.n = len(pattern)
        self.i = 0
        self.out: list[str] = []
        self.flags: frozenset[str] = frozenset()
        # (flags to restore, index of "(?:" in out, position of "(" in the pattern)
        self.groups: list[tuple[frozenset[str], int, int]] = []
        self.last = _NONE
        self.last_repeat_pos = 0
        self.atom_start = 0
        self.names: set[str] = set()

    def translate(self) -> str:
        p = self.p
        while self.i < self.n:
            c = p[self.i]
            if c == "(":
                self._open_group()
            elif c == ")":
                self._close_group()
            elif c == "|":
                self.out.append("|")
                self.last = _NONE
                self.i += 1
            elif c in "*+?":
                self._quantifier(self.i, self.i + 1, c)
            elif c == "{":
                self._brace()
            elif c == ".":
                self._atom("(?s:.)" if "s" in self.flags else ".")
                self.i += 1
            elif c == "^":
                self._atom("(?m:^)" if "m" in self.flags else "(?:\\A)")
                self.i += 1
            elif c == "$":
                # RE2's $ is end of text; Python's $ would also match before a final "\n".
                self._atom("(?m:$)" if "m" in self.flags else "(?:\\Z)")
                self.i += 1
            elif c == "[":
                self._char_class()
            elif c == "\\":
                self._escape()
            else:
                self._literal(ord(c))
                self.i += 1
        if self.groups:
            raise _RegexError("missing closing )", self.groups[-1][2])
        return "".join(self.out)

    # -- emission --------------------------------------------------------------------------

    def _atom(self, text: str) -> None:
        self.atom_start = len(self.out)
        self.out.append(text)
        self.last = _ATOM

    def _literal(self, cp: int) -> None:
        ch = chr(cp)
        text = _py_char(cp)
        if "i" in self.flags and (ch.lower() != ch or ch.upper() != ch or ch.casefold() != ch):
            text = f"(?i:{text})"
        self._atom(text)

    def _class_atom(self, ranges: Iterable[_Range], negated: bool = False) -> None:
        text = _py_class(ranges, negated)
        self._atom(f"(?i:{text})" if "i" in self.flags else text)

    # -- groups ----------------------------------------------------------------------------

    _UNSUPPORTED_GROUPS = (
        ("(?<=", "lookbehind"),
        ("(?<!", "negative lookbehind"),
        ("(?=", "lookahead"),
        ("(?!", "negative lookahead"),
        ("(?>", "atomic group"),
        ("(?#", "comment group"),
        ("(?(", "conditional group"),
        ("(?P=", "named backreference"),
        ("(?P>", "recursive pattern"),
    )

    def _push_group(self, start: int, end: int, new_flags: frozenset[str] | None = None) -> None:
        if len(self.groups) >= _MAX_NESTING:
            raise _RegexError("expression nests too deeply", start)
        self.groups.append((self.flags, len(self.out), start))
        self.out.append("(?:")
        if new_flags is not None:
            self.flags = new_flags
        self.last = _NONE
        self.i = end

    def _open_group(self) -> None:
        p, start = self.p, self.i
        if not p.startswith("(?", start):
            self._push_group(start, start + 1)
            return
        for prefix, what in self._UNSUPPORTED_GROUPS:
            if p.startswith(prefix, start):
                raise _RegexError(f"{what} `{prefix}` is not supported (RE2 syntax)", start)
        if p.startswith("(?P<", start) or p.startswith("(?<", start):
            name_start = start + (4 if p[start + 2] == "P" else 3)
            end = p.find(">", name_start)
            if end < 0:
                raise _RegexError(f"invalid named capture `{p[start:]}`", start)
            name = p[name_start:end]
            if not name or not all(ch == "_" or ch.isalnum() for ch in name):
                raise _RegexError(f"invalid named capture `{p[start : end + 1]}`", start)
            if name in self.names:
                raise _RegexError(f"duplicate capture group name `{name}`", start)
            self.names.add(name)
            self._push_group(start, end + 1)
            return
        # Flags: (?i) (?i-s) (?-m) (?) and (?flags:re).
        flags = set(self.flags)
        negative = False
        saw_flag = False
        j = start + 2
        while j < self.n:
            ch = p[j]
            j += 1
            if ch in "imsU":
                if negative:
                    flags.discard(ch)
                else:
                    flags.add(ch)
                saw_flag = True
                continue
            if ch == "-" and not negative:
                negative, saw_flag = True, False
                continue
            if ch in ":)" and not (negative and not saw_flag):
                if ch == ":":
                    self._push_group(start, j, frozenset(flags))
                else:
                    self.flags = frozenset(flags)
                    if self.last == _REPEAT:
                        self.last = _REPEAT_FLAGS
                    self.i = j
                return
            break
        raise _RegexError(f"invalid or unsupported Perl syntax `{p[start:j]}`", start)

    def _close_group(self) -> None:
        if not self.groups:
            raise _RegexError("unexpected )", self.i)
        self.flags, out_index, _ = self.groups.pop()
        self.out.append(")")
        self.atom_start = out_index
        self.last = _ATOM
        self.i += 1

    # -- repetition ------------------------------------------------------------------------

    def _quantifier(self, start: int, end: int, text: str) -> None:
        lazy = False
        if end < self.n and self.p[end] == "?":
            lazy = True
            end += 1
        if self.last == _REPEAT:
            # RE2 (like Perl) rejects a** and a*+ (Python would read a*+ as possessive).
            raise _RegexError(
                f"invalid nested repetition operator `{self.p[self.last_repeat_pos : end]}`",
                self.last_repeat_pos,
            )
        if self.last == _NONE:
            raise _RegexError(
                f"missing argument to repetition operator `{self.p[start:end]}`", start
            )
        if self.last == _REPEAT_FLAGS:
            # a*(?i)* repeats a* again in RE2; Python needs the group spelled out.
            self.out.insert(self.atom_start, "(?:")
            self.out.append(")")
        if "U" in self.flags:
            lazy = not lazy
        self.out.append(text + ("?" if lazy else ""))
        self.last = _REPEAT
        self.last_repeat_pos = start
        self.i = end

    def _parse_int(self, j: int) -> tuple[int, int] | None:
        p = self.p
        if j >= self.n or not "0" <= p[j] <= "9":
            return None
        if p[j] == "0" and j + 1 < self.n and "0" <= p[j + 1] <= "9":
            return None  # RE2 disallows leading zeros: a{01} is literal text
        k = j
        while k < self.n and "0" <= p[k] <= "9":
            k += 1
        digits = p[j:k]
        value = int(digits) if len(digits) <= 9 else -1
        if value >= 100_000_000:
            value = -1
        return value, k

    def _brace(self) -> None:
        start = self.i
        parsed = self._parse_repeat(start)
        if parsed is None:
            # Not a valid {n}, {n,} or {n,m}: a literal "{" in RE2 (Python reads {,m} as a count).
            self._literal(ord("{"))
            self.i += 1
            return
        lo, hi, end = parsed
        if lo < 0 or lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi >= 0 and lo > hi):
            raise _RegexError(f"invalid repeat count `{self.p[start:end]}`", start)
        if hi == lo:
            text = f"{{{lo}}}"
        elif hi < 0:
            text = f"{{{lo},}}"
        else:
            text = f"{{{lo},{hi}}}"
        self._quantifier(start, end, text)

    def _parse_repeat(self, start: int) -> tuple[int, int, int] | None:
        p = self.p
        first = self._parse_int(start + 1)
        if first is None:
            return None
        lo, j = first
        if j >= self.n:
            return None
        if p[j] != ",":
            hi = lo
        else:
            j += 1
            if j >= self.n:
                return None
            if p[j] == "}":
                hi = -1
            else:
                second = self._parse_int(j)
                if second is None:
                    return None
                hi, j = second
                if hi < 0:
                    lo = -1
        if j >= self.n or p[j] != "}":
            return None
        return lo, hi, j + 1

    # -- escapes and classes ---------------------------------------------------------------

    def _escape(self) -> None:
        p, start = self.p, self.i
        if start + 1 >= self.n:
            raise _RegexError("trailing backslash at end of expression", start)
        c = p[start + 1]
        if c == "A":
            self._atom("(?:\\A)")
            self.i += 2
        elif c == "z":
            self._atom("(?:\\Z)")
            self.i += 2
        elif c in "bB":
            self._atom(f"(?a:\\{c})")  # RE2 word boundaries are ASCII-only
            self.i += 2
        elif c == "C":
            raise _RegexError("invalid escape sequence `\\C` (any byte) is not supported", start)
        elif c == "Q":
            end = p.find("\\E", start + 2)
            literal = p[start + 2 :] if end < 0 else p[start + 2 : end]
            for ch in literal:
                self._literal(ord(ch))
            if not literal and self.last == _REPEAT:
                self.last = _REPEAT_FLAGS
            self.i = self.n if end < 0 else end + 2
        elif c in "pP":
            ranges, self.i = self._unicode_class(start)
            self._class_atom(ranges)
        elif c in "dDsSwW":
            self._class_atom(_PERL_CLASSES[c.lower()], negated=c.isupper())
            self.i += 2
        else:
            cp, self.i = self._single_escape(start)
            self._literal(cp)

    def _single_escape(self, start: int) -> tuple[int, int]:
        """Go parseEscape: an escape that stands for one code point."""
        p = self.p
        if start + 1 >= self.n:
            raise _RegexError("trailing backslash at end of expression", start)
        c = p[start + 1]
        j = start + 2
        if c.isascii() and not c.isalnum():
            return ord(c), j
        octal = "01234567"
        if c in octal and (c == "0" or (j < self.n and p[j] in octal)):
            # \0, \012, \12: octal; a lone \1..\7 would be a backreference, which RE2 lacks.
            value = int(c)
            for _ in range(2):
                if j < self.n and p[j] in octal:
                    value = value * 8 + int(p[j])
                    j += 1
            return value, j
        if c == "x" and j < self.n:
            if p[j] == "{":
                # \x{10FFFF}: one or more hex digits, at most the largest code point.
                close = p.find("}", j)
                digits = p[j + 1 : close] if close >= 0 else ""
                if digits and all(d in string.hexdigits for d in digits):
                    value = int(digits, 16)
                    if value <= _MAX_RUNE:
                        return value, close + 1
                end = close + 1 if close >= 0 else self.n
                raise _RegexError(f"invalid escape sequence `{p[start:end]}`", start)
            pair = p[j : j + 2]
            if len(pair) == 2 and all(ch in string.hexdigits for ch in pair):
                return int(pair, 16), j + 2
            raise _RegexError(f"invalid escape sequence `{p[start : j + 2]}`", start)
        simple = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
        if c in simple:
            return simple[c], j
        hint = ""
        if c in "123456789":
            hint = " (backreferences are not supported)"
        elif c == "Z":
            hint = " (Python syntax; RE2 spells end of text \\z)"
        elif c == "u":
            hint = " (Python syntax; RE2 spells a code point \\x{...})"
        raise _RegexError(f"invalid escape sequence `\\{c}`{hint}", start)

    def _unicode_class(self, start: int) -> tuple[list[_Range], int]:
        """\\pL, \\p{Lu}, \\PN, \\p{^Z}, \\p{Any}: returns (ranges, index after)."""
        p = self.p
        negated = p[start + 1] == "P"
        k = start + 2
        if k >= self.n:
            raise _RegexError(f"invalid character class range `{p[start:]}`", start)
        if p[k] != "{":
            name, end = p[k], k + 1
        else:
            close = p.find("}", k)
            if close < 0:
                raise _RegexError(f"invalid character class range `{p[start:]}`", start)
            name, end = p[k + 1 : close], close + 1
        if name.startswith("^"):
            negated = not negated
            name = name[1:]
        if name == "Any":
            ranges: list[_Range] = [(0, _MAX_RUNE)]
        elif name in _GO_CATEGORIES:
            ranges = list(_category_ranges(name))
        else:
            raise _RegexError(
                f"unsupported Unicode class `{p[start:end]}` (only general categories such as"
                " \\pL, \\p{Lu} and \\p{Any} are supported)",
                start,
            )
        return (_negate(ranges) if negated else ranges), end

    def _class_char(self, j: int, class_start: int) -> tuple[int, int]:
        if j >= self.n:
            raise _RegexError("missing closing ]", class_start)
        if self.p[j] == "\\":
            return self._single_escape(j)
        return ord(self.p[j]), j + 1

    def _char_class(self) -> None:
        p, start = self.p, self.i
        j = start + 1
        negated = False
        if j < self.n and p[j] == "^":
            negated = True
            j += 1
        ranges: list[_Range] = []
        first = True  # "]" right after "[" or "[^" is a literal
        while j >= self.n or p[j] != "]" or first:
            first = False
            if p.startswith("[:", j):
                close = p.find(":]", j + 2)
                if close >= 0:
                    name = p[j + 2 : close]
                    base = name.removeprefix("^")
                    if base not in _POSIX_CLASSES:
                        raise _RegexError(f"invalid character class range `{p[j : close + 2]}`", j)
                    group = _POSIX_CLASSES[base]
                    ranges.extend(_negate(group) if name.startswith("^") else group)
                    j = close + 2
                    continue
            if p.startswith("\\p", j) or p.startswith("\\P", j):
                more, j = self._unicode_class(j)
                ranges.extend(more)
                continue
            if p.startswith("\\", j) and j + 1 < self.n and p[j + 1] in "dDsSwW":
                group = _PERL_CLASSES[p[j + 1].lower()]
                ranges.extend(_negate(group) if p[j + 1].isupper() else group)
                j += 2
                continue
            lo, k = self._class_char(j, start)
            hi = lo
            if k + 1 < self.n and p[k] == "-" and p[k + 1] != "]":
                hi, k = self._class_char(k + 1, start)
                if hi < lo:
                    raise _RegexError(f"invalid character class range `{p[j:k]}`", j)
            ranges.append((lo, hi))
            j = k
        self.i = j + 1
        self._class_atom(ranges, negated)


@functools.lru_cache(maxsize=1024)
def _compile_re2(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern to a Python pattern for use with fullmatch (^(?:re)$)."""
    translated = _RE2Translator(pattern).translate()
    try:
        return re.compile(translated)
    except (re.error, RecursionError, OverflowError) as exc:  # pragma: no cover - defensive
        raise _RegexError(f"cannot compile translated pattern: {exc}", 0) from exc


# ---------------------------------------------------------------------------------------------
# Matcher
# ---------------------------------------------------------------------------------------------

_MATCH_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``name``, operator ``type`` and ``value`` (a regex for =~ and !~).

    Constructing a Matcher compiles its regex once (invalid -> MatcherError whose ``text`` is
    the value). Equality and hashing use (name, type, value).
    """

    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(
        init=False, default=None, repr=False, compare=False, hash=False
    )
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
        _check_unicode(self.name)
        _check_unicode(self.value)
        if match_type in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                regex = _compile_re2(self.value)
            except _RegexError as exc:
                raise MatcherError(
                    self.value, exc.pos, f"invalid regular expression: {exc.message}", is_regex=True
                ) from None
            object.__setattr__(self, "_regex", regex)

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
        result = self._regex.fullmatch(value) is not None
        if len(self._cache) >= _MATCH_CACHE_LIMIT:
            self._cache.clear()  # bounded: label values can be unbounded in number
        self._cache[value] = result
        return result

    def matches_labels(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this matcher (a missing label counts as "")."""
        return self.matches(labels.get(self.name, ""))

    def __str__(self) -> str:
        """Alertmanager's Matcher.String(): ``name="value"``, quoting the name if it must."""
        if any(_is_reserved(ch) for ch in self.name):
            return f"{_go_quote(self.name)}{self.type.value}{_go_quote(self.value)}"
        return f'{self.name}{self.type.value}"{_openmetrics_escape(self.value)}"'

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


def _new_matcher(
    name: str, match_type: MatchType, value: str, text: str, posmap: Sequence[int]
) -> Matcher:
    """Build a Matcher, moving a regex error's offset from the value into the input text."""
    try:
        return Matcher(name, match_type, value)
    except MatcherError as exc:
        offset = posmap[min(exc.offset, len(posmap) - 1)] if exc.is_regex else posmap[0]
        raise exc._with(text=text, offset=offset) from None


# ---------------------------------------------------------------------------------------------
# Classic parser (pkg/labels/parse.go)
# ---------------------------------------------------------------------------------------------

_CLASSIC_RE = re.compile(
    rf"[{_RE2_SPACE}]*([a-zA-Z_:][a-zA-Z0-9_:]*)[{_RE2_SPACE}]*(=~|=|!=|!~)"
    rf"[{_RE2_SPACE}]*(.*?)[{_RE2_SPACE}]*",
    re.DOTALL,
)
_CLASSIC_NAME_START = frozenset(string.ascii_letters + "_:")
_CLASSIC_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_:")


def _classic_format_error(token: str, base: int, text: str) -> MatcherError:
    """Explain why a token does not have the classic shape name, operator, value."""
    i = 0
    while i < len(token) and token[i] in _RE2_SPACE:
        i += 1
    if i >= len(token) or token[i] not in _CLASSIC_NAME_START:
        found = repr(token[i]) if i < len(token) else "end of input"
        return MatcherError(
            text, base + i, f"expected a label name ([a-zA-Z_:][a-zA-Z0-9_:]*), found {found}"
        )
    while i < len(token) and token[i] in _CLASSIC_NAME_CHARS:
        i += 1
    while i < len(token) and token[i] in _RE2_SPACE:
        i += 1
    found = repr(token[i]) if i < len(token) else "end of input"
    return MatcherError(
        text, base + i, f"expected an operator such as '=', '!=', '=~' or '!~', found {found}"
    )


def _classic_parse_one(token: str, base: int, text: str) -> Matcher:
    """labels.ParseMatcher on ``token``, which starts at ``base`` within ``text``."""
    m = _CLASSIC_RE.fullmatch(token)
    if m is None:
        raise _classic_format_error(token, base, text)
    raw, raw_start = m.group(3), base + m.start(3)
    expect_trailing_quote = raw.startswith('"')
    if expect_trailing_quote:
        raw = raw[1:]
    first = raw_start + (1 if expect_trailing_quote else 0)
    chars: list[str] = []
    posmap: list[int] = []
    escaped = False
    last = len(raw) - 1
    for i, ch in enumerate(raw):
        pos = first + i
        if escaped:
            escaped = False
            if ch == "n":
                chars.append("\n")
                posmap.append(pos - 1)
            elif ch in '"\\':
                chars.append(ch)
                posmap.append(pos - 1)
            else:
                # A spurious escape: the backslash is literal.
                chars += ["\\", ch]
                posmap += [pos - 1, pos]
            continue
        if ch == "\\":
            if i < last:
                escaped = True
                continue
            chars.append("\\")  # a backslash as the last character is literal
            posmap.append(pos)
        elif ch == '"':
            if not expect_trailing_quote or i < last:
                raise MatcherError(text, pos, 'unescaped double quote in value (write \\")')
            expect_trailing_quote = False
        else:
            chars.append(ch)
            posmap.append(pos)
    if expect_trailing_quote:
        raise MatcherError(text, raw_start, "unterminated quoted value: missing closing '\"'")
    posmap.append(first + len(raw))
    return _new_matcher(m.group(1), MatchType(m.group(2)), "".join(chars), text, posmap)


def _classic_parse_many(text: str) -> list[Matcher]:
    """labels.ParseMatchers: optional {…}, split on commas outside double quotes."""
    s, base = text, 0
    if s.startswith("{"):
        s, base = s[1:], 1
    if s.endswith("}"):
        s = s[:-1]
    tokens: list[tuple[str, int]] = []
    inside_quotes = escaped = False
    token_start = 0
    for i, ch in enumerate(s):
        if ch == ",":
            if not inside_quotes:
                tokens.append((s[token_start:i], base + token_start))
                token_start = i + 1
                continue
            # Go leaves the escape state alone for a comma inside quotes.
        elif ch == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
    rest, cut = _go_trim_space(s[token_start:])
    if rest:
        tokens.append((rest, base + token_start + cut))
    return [_classic_parse_one(tok, start, text) for tok, start in tokens]


# ---------------------------------------------------------------------------------------------
# UTF-8 parser (matcher/parse)
# ---------------------------------------------------------------------------------------------

_OPEN, _CLOSE, _COMMA, _EQ, _NEQ, _RE, _NRE, _QUOTED, _UNQUOTED, _EOF = range(10)
_OPERATORS = {
    _EQ: MatchType.EQUAL,
    _NEQ: MatchType.NOT_EQUAL,
    _RE: MatchType.REGEX,
    _NRE: MatchType.NOT_REGEX,
}
_EXPECT_OPERATOR = "an operator such as '=', '!=', '=~' or '!~'"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: int
    value: str
    start: int

    def describe(self) -> str:
        return "end of input" if self.kind == _EOF else repr(self.value)


class _LexError(Exception):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class _Lexer:
    """matcher/parse lexer: braces, commas, operators, quoted and unquoted text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def scan(self) -> _Token:
        text, n = self.text, len(self.text)
        while self.pos < n:
            start = self.pos
            c = text[start]
            single = {"{": _OPEN, "}": _CLOSE, ",": _COMMA}.get(c)
            if single is not None:
                self.pos += 1
                return _Token(single, c, start)
            if c == "!":
                nxt = text[start + 1 : start + 2]
                if nxt in ("=", "~"):
                    self.pos += 2
                    return _Token(_NEQ if nxt == "=" else _NRE, c + nxt, start)
                raise _LexError("expected '=' or '~' after '!'", start)
            if c == "=":
                if text.startswith("~", start + 1):
                    self.pos += 2
                    return _Token(_RE, "=~", start)
                self.pos += 1
                return _Token(_EQ, "=", start)
            if c == '"':
                return self._quoted(start)
            if not _is_reserved(c):
                end = start
                while end < n and not _is_reserved(text[end]):
                    end += 1
                self.pos = end
                return _Token(_UNQUOTED, text[start:end], start)
            if c in _GO_SPACE:
                self.pos += 1
                continue
            hint = " (escapes are only allowed inside double quotes)" if c == "\\" else ""
            raise _LexError(f"invalid character {c!r}{hint}", start)
        return _Token(_EOF, "", n)

    def _quoted(self, start: int) -> _Token:
        text = self.text
        i = start + 1
        escaped = False
        while i < len(text):
            c = text[i]
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                self.pos = i + 1
                return _Token(_QUOTED, text[start : i + 1], start)
            i += 1
        raise _LexError("unterminated quoted string: missing closing '\"'", start)

    def peek(self) -> _Token:
        saved = self.pos
        try:
            return self.scan()
        finally:
            self.pos = saved


_GO_SIMPLE_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
    '"': 34,
}


def _go_unquote(token: str, start: int, text: str) -> tuple[str, list[int]]:
    """strconv.Unquote of a double-quoted token; also maps each result char to its offset."""
    inner = token[1:-1]
    base = start + 1
    buf = bytearray()
    byte_pos: list[int] = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\n":
            raise MatcherError(text, base + i, "literal newline in quoted string (write \\n)")
        if c != "\\":
            encoded = c.encode()
            buf += encoded
            byte_pos += [base + i] * len(encoded)
            i += 1
            continue
        e = inner[i + 1 : i + 2]
        if e in _GO_SIMPLE_ESCAPES:
            buf.append(_GO_SIMPLE_ESCAPES[e])
            byte_pos.append(base + i)
            i += 2
            continue
        if e and e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = inner[i + 2 : i + 2 + width]
            if len(digits) == width and all(d in string.hexdigits for d in digits):
                value = int(digits, 16)
                if e == "x":
                    buf.append(value)
                    byte_pos.append(base + i)
                    i += 2 + width
                    continue
                if value <= _MAX_RUNE and not 0xD800 <= value <= 0xDFFF:
                    encoded = chr(value).encode()
                    buf += encoded
                    byte_pos += [base + i] * len(encoded)
                    i += 2 + width
                    continue
        elif e and e in "01234567":
            digits = inner[i + 1 : i + 4]
            if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
                buf.append(int(digits, 8))
                byte_pos.append(base + i)
                i += 4
                continue
        raise MatcherError(
            text, base + i, f"invalid escape sequence '\\{e}' in quoted string (write \\\\{e})"
        )
    try:
        value = buf.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MatcherError(text, byte_pos[exc.start], "quoted string is not valid UTF-8") from None
    posmap: list[int] = []
    b = 0
    for ch in value:
        posmap.append(byte_pos[b])
        b += len(ch.encode())
    posmap.append(start + len(token) - 1)
    return value, posmap


def _token_text(tok: _Token, text: str) -> tuple[str, list[int]]:
    if tok.kind == _QUOTED:
        return _go_unquote(tok.value, tok.start, text)
    return tok.value, [*range(tok.start, tok.start + len(tok.value) + 1)]


class _UTF8Parser:
    """matcher/parse parser: ``{``? matcher (``,`` matcher)* ``,``? ``}``? with offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = _Lexer(text)

    def _peek(self, expected: str) -> _Token:
        try:
            return self.lexer.peek()
        except _LexError as exc:
            # Only a stray character needs the context; the other lexer errors say it all.
            stray = expected and exc.reason.startswith("invalid character")
            reason = f"{exc.reason}; expected {expected}" if stray else exc.reason
            raise MatcherError(self.text, exc.offset, reason) from None

    def _unexpected(self, tok: _Token, expected: str) -> MatcherError:
        return MatcherError(self.text, tok.start, f"expected {expected}, found {tok.describe()}")

    def parse(self) -> list[tuple[Matcher, int]]:
        found: list[tuple[Matcher, int]] = []
        tok = self._peek("")
        if tok.kind == _EOF:
            return found
        has_open = tok.kind == _OPEN
        if has_open:
            self.lexer.scan()
            tok = self._peek("")
        if tok.kind not in (_EOF, _CLOSE):
            while True:
                found.append(self._matcher())
                tok = self._peek("',' or '}'")
                if tok.kind == _COMMA:
                    self.lexer.scan()
                    tok = self._peek("a matcher or '}' after ','")
                    if tok.kind in (_QUOTED, _UNQUOTED):
                        continue
                    if tok.kind not in (_EOF, _CLOSE):
                        raise self._unexpected(tok, "a matcher or '}' after ','")
                elif tok.kind not in (_EOF, _CLOSE):
                    raise self._unexpected(tok, "',' or '}'")
                break
        # Close brace: required after "{", forbidden without it.
        if has_open:
            if tok.kind != _CLOSE:
                raise MatcherError(self.text, tok.start, "expected '}' to close '{'")
            self.lexer.scan()
        elif tok.kind == _CLOSE:
            raise MatcherError(self.text, tok.start, "unexpected '}' without an opening '{'")
        tok = self._peek("end of input")
        if tok.kind != _EOF:
            raise self._unexpected(tok, "end of input")
        return found

    def _matcher(self) -> tuple[Matcher, int]:
        name_tok = self._expect((_QUOTED, _UNQUOTED), "a label name")
        name, _ = _token_text(name_tok, self.text)
        if not name:
            raise MatcherError(self.text, name_tok.start, "label name must not be empty")
        op_tok = self._expect(tuple(_OPERATORS), _EXPECT_OPERATOR)
        value_tok = self._expect((_QUOTED, _UNQUOTED), "a label value")
        value, posmap = _token_text(value_tok, self.text)
        matcher = _new_matcher(name, _OPERATORS[op_tok.kind], value, self.text, posmap)
        return matcher, name_tok.start

    def _expect(self, kinds: tuple[int, ...], expected: str) -> _Token:
        tok = self._peek(expected)
        if tok.kind not in kinds:
            raise self._unexpected(tok, expected)
        self.lexer.scan()
        return tok


def _utf8_parse_many(text: str) -> list[Matcher]:
    return [m for m, _ in _UTF8Parser(text).parse()]


def _utf8_parse_one(text: str) -> Matcher:
    found = _UTF8Parser(text).parse()
    if not found:
        raise MatcherError(text, 0, "expected a matcher, found none")
    if len(found) > 1:
        raise MatcherError(text, found[1][1], f"expected exactly one matcher, found {len(found)}")
    return found[0][0]


# ---------------------------------------------------------------------------------------------
# Public API (matcher/compat)
# ---------------------------------------------------------------------------------------------


def _pick_error(utf8_error: MatcherError, classic_error: MatcherError) -> MatcherError:
    # A regex error means that parser understood the matcher; it is the useful diagnosis.
    if classic_error.is_regex:
        return classic_error
    return utf8_error


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"unknown matcher parse mode {mode!r}; expected one of {_MODES}")


def _parse_list(text: str, mode: ParseMode) -> list[Matcher]:
    _check_unicode(text)
    if mode == "classic":
        return _classic_parse_many(text)
    if mode == "utf8":
        return _utf8_parse_many(text)
    try:
        return _classic_parse_many(text)
    except MatcherError as exc:
        classic_error = exc
    try:
        return _utf8_parse_many(text)
    except MatcherError as exc:
        raise _pick_error(exc, classic_error) from None


def parse_matcher(text: str, *, mode: ParseMode = "fallback") -> Matcher:
    """Parse one matcher such as ``severity=~"critical|page"`` or ``env=prod``.

    As Alertmanager's compat.Matcher: no braces allowed (outside classic mode), and in
    fallback mode the classic reading wins, so ``a=b,c=d`` is one matcher with value ``b,c=d``
    (use parse_matchers for lists). Raises MatcherError with the offset of the fault.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_matcher expects a string, got {type(text).__name__}")
    _check_mode(mode)
    _check_unicode(text)
    if mode == "classic":
        return _classic_parse_one(text, 0, text)
    if text.startswith("{") or text.endswith("}"):
        offset = 0 if text.startswith("{") else len(text) - 1
        raise MatcherError(
            text, offset, "unexpected '{' or '}': a single matcher is written without braces"
        )
    if mode == "utf8":
        return _utf8_parse_one(text)
    try:
        return _classic_parse_one(text, 0, text)
    except MatcherError as exc:
        classic_error = exc
    try:
        return _utf8_parse_one(text)
    except MatcherError as exc:
        raise _pick_error(exc, classic_error) from None


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
            raise exc._with(text=exc.text, offset=exc.offset, index=index) from None
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
                    raise exc._with(text=exc.text, offset=exc.offset, index=index) from None
            else:
                raise ValueError(
                    f"matcher #{index}: expected a matcher string, got {type(item).__name__}"
                )
        return out
    raise ValueError(f"expected a matcher string or a list of them, got {type(value).__name__}")


MatcherList = Annotated[list[Matcher], BeforeValidator(_to_matcher_list)]
"""pydantic field type: a string like ``{a="b",c!="d"}`` or a list of matcher strings (each may
hold several, as in Alertmanager's ``matchers:``); validates to list[Matcher], dumps as strings."""
