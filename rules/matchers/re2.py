"""Go RE2 regular expressions translated to equivalent Python patterns.

A matcher's regex is RE2 syntax, fully anchored. Handing it to ``re`` as it is would silently
change its meaning (see the package docstring), so ``compile_re2`` parses it the way Go's
``regexp/syntax`` does, rejects what RE2 rejects (with the offset), and writes a Python
pattern that accepts exactly the same strings.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable

from rules.matchers.charclasses import (
    GO_CATEGORIES,
    MAX_RUNE,
    PERL_CLASSES,
    POSIX_CLASSES,
    Range,
    category_ranges,
    negate,
    py_char,
    py_class,
)

__all__ = ["RegexError", "compile_re2"]

_MAX_REPEAT = 1000
_MAX_NESTING = 1000


class RegexError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


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
            raise RegexError("missing closing )", self.groups[-1][2])
        return "".join(self.out)

    # -- emission --------------------------------------------------------------------------

    def _atom(self, text: str) -> None:
        self.atom_start = len(self.out)
        self.out.append(text)
        self.last = _ATOM

    def _literal(self, cp: int) -> None:
        ch = chr(cp)
        text = py_char(cp)
        if "i" in self.flags and (ch.lower() != ch or ch.upper() != ch or ch.casefold() != ch):
            text = f"(?i:{text})"
        self._atom(text)

    def _class_atom(self, ranges: Iterable[Range], negated: bool = False) -> None:
        text = py_class(ranges, negated)
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
            raise RegexError("expression nests too deeply", start)
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
                raise RegexError(f"{what} `{prefix}` is not supported (RE2 syntax)", start)
        if p.startswith("(?P<", start) or p.startswith("(?<", start):
            name_start = start + (4 if p[start + 2] == "P" else 3)
            end = p.find(">", name_start)
            if end < 0:
                raise RegexError(f"invalid named capture `{p[start:]}`", start)
            name = p[name_start:end]
            if not name or not all(ch == "_" or ch.isalnum() for ch in name):
                raise RegexError(f"invalid named capture `{p[start : end + 1]}`", start)
            if name in self.names:
                raise RegexError(f"duplicate capture group name `{name}`", start)
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
        raise RegexError(f"invalid or unsupported Perl syntax `{p[start:j]}`", start)

    def _close_group(self) -> None:
        if not self.groups:
            raise RegexError("unexpected )", self.i)
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
            raise RegexError(
                f"invalid nested repetition operator `{self.p[self.last_repeat_pos : end]}`",
                self.last_repeat_pos,
            )
        if self.last == _NONE:
            raise RegexError(
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
            raise RegexError(f"invalid repeat count `{self.p[start:end]}`", start)
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
            raise RegexError("trailing backslash at end of expression", start)
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
            raise RegexError("invalid escape sequence `\\C` (any byte) is not supported", start)
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
            self._class_atom(PERL_CLASSES[c.lower()], negated=c.isupper())
            self.i += 2
        else:
            cp, self.i = self._single_escape(start)
            self._literal(cp)

    def _single_escape(self, start: int) -> tuple[int, int]:
        """Go parseEscape: an escape that stands for one code point."""
        p = self.p
        if start + 1 >= self.n:
            raise RegexError("trailing backslash at end of expression", start)
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
                    if value <= MAX_RUNE:
                        return value, close + 1
                end = close + 1 if close >= 0 else self.n
                raise RegexError(f"invalid escape sequence `{p[start:end]}`", start)
            pair = p[j : j + 2]
            if len(pair) == 2 and all(ch in string.hexdigits for ch in pair):
                return int(pair, 16), j + 2
            raise RegexError(f"invalid escape sequence `{p[start : j + 2]}`", start)
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
        raise RegexError(f"invalid escape sequence `\\{c}`{hint}", start)

    def _unicode_class(self, start: int) -> tuple[list[Range], int]:
        """\\pL, \\p{Lu}, \\PN, \\p{^Z}, \\p{Any}: returns (ranges, index after)."""
        p = self.p
        negated = p[start + 1] == "P"
        k = start + 2
        if k >= self.n:
            raise RegexError(f"invalid character class range `{p[start:]}`", start)
        if p[k] != "{":
            name, end = p[k], k + 1
        else:
            close = p.find("}", k)
            if close < 0:
                raise RegexError(f"invalid character class range `{p[start:]}`", start)
            name, end = p[k + 1 : close], close + 1
        if name.startswith("^"):
            negated = not negated
            name = name[1:]
        if name == "Any":
            ranges: list[Range] = [(0, MAX_RUNE)]
        elif name in GO_CATEGORIES:
            ranges = list(category_ranges(name))
        else:
            raise RegexError(
                f"unsupported Unicode class `{p[start:end]}` (only general categories such as"
                " \\pL, \\p{Lu} and \\p{Any} are supported)",
                start,
            )
        return (negate(ranges) if negated else ranges), end

    def _class_char(self, j: int, class_start: int) -> tuple[int, int]:
        if j >= self.n:
            raise RegexError("missing closing ]", class_start)
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
        ranges: list[Range] = []
        first = True  # "]" right after "[" or "[^" is a literal
        while j >= self.n or p[j] != "]" or first:
            first = False
            if p.startswith("[:", j):
                close = p.find(":]", j + 2)
                if close >= 0:
                    name = p[j + 2 : close]
                    base = name.removeprefix("^")
                    if base not in POSIX_CLASSES:
                        raise RegexError(f"invalid character class range `{p[j : close + 2]}`", j)
                    group = POSIX_CLASSES[base]
                    ranges.extend(negate(group) if name.startswith("^") else group)
                    j = close + 2
                    continue
            if p.startswith("\\p", j) or p.startswith("\\P", j):
                more, j = self._unicode_class(j)
                ranges.extend(more)
                continue
            if p.startswith("\\", j) and j + 1 < self.n and p[j + 1] in "dDsSwW":
                group = PERL_CLASSES[p[j + 1].lower()]
                ranges.extend(negate(group) if p[j + 1].isupper() else group)
                j += 2
                continue
            lo, k = self._class_char(j, start)
            hi = lo
            if k + 1 < self.n and p[k] == "-" and p[k + 1] != "]":
                hi, k = self._class_char(k + 1, start)
                if hi < lo:
                    raise RegexError(f"invalid character class range `{p[j:k]}`", j)
            ranges.append((lo, hi))
            j = k
        self.i = j + 1
        self._class_atom(ranges, negated)


@functools.lru_cache(maxsize=1024)
def compile_re2(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern to a Python pattern for use with fullmatch (^(?:re)$)."""
    translated = _RE2Translator(pattern).translate()
    try:
        return re.compile(translated)
    except (re.error, RecursionError, OverflowError) as exc:  # pragma: no cover - defensive
        raise RegexError(f"cannot compile translated pattern: {exc}", 0) from exc
