"""Matcher regular expressions, compiled by RE2 itself (Google's ``re2`` bindings).

Alertmanager compiles a matcher's value with Go's ``regexp`` as ``^(?:value)$`` and matches with
``MatchString``. RE2 (C++) is the library Go's ``regexp`` was written from: same syntax, same
leftmost-first semantics, same ASCII ``\\b``/``\\w``, same simple case folding, and a linear-time
matcher, so a rule's regex cannot stall the event loop on a long label value.

The value is wrapped exactly as Alertmanager wraps it (string concatenation, so ``a)|(b`` is
accepted and ``\\Q`` without ``\\E`` swallows the closing parenthesis, as in Alertmanager).
RE2 accepts a few things Go's parser rejects; ``_go_rejects`` refuses them after RE2 has
parsed the pattern: ``\\C`` (one byte), group names that are not ASCII ``[A-Za-z0-9_]``, and
repeat counts too long for an int (which RE2 reads as literal text).
"""

from __future__ import annotations

import functools
import re

import re2

__all__ = ["Regex", "RegexError", "compile_regex"]

_HEAD, _TAIL = "^(?:", ")$"

_OPTIONS = re2.Options()
# RE2 logs every rejected pattern to stderr; the error is reported where it belongs instead.
_OPTIONS.log_errors = False

# A well-formed {n}, {n,} or {n,m}: Go's parseInt refuses leading zeros (then "{" is literal).
_REPEAT = re.compile(r"\{(0|[1-9][0-9]*)(?:,(0|[1-9][0-9]*)?)?\}")
# Go rejects counts of 10**8 and more; RE2 rejects them too unless they overflow its int parser.
_MAX_COUNT_DIGITS = 9
_CAPTURE_NAME = re.compile(r"[A-Za-z0-9_]+")

# RE2's wording -> Go's (what Alertmanager prints), so an error reads the same in both.
_GO_WORDING = {
    "missing )": "missing closing )",
    "missing ]": "missing closing ]",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
    "pattern too large - compile failed": "expression too large",
}
# RE2's terse messages, with the hint a rule author needs.
_HINTS = (
    (re.compile(r"\\[1-9]"), "backreferences are not supported"),
    (re.compile(r"\\Z"), "RE2 spells end of text \\z"),
    (re.compile(r"\(\?<?[=!]"), "lookarounds are not supported"),
    (re.compile(r"\\u"), "RE2 spells a code point \\x{...}"),
)


class RegexError(Exception):
    """A regex RE2 (or Go) rejects; ``pos`` is the offset of the fault in the pattern."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class Regex:
    """A compiled matcher regex: ``matches`` is Alertmanager's ``MatchString`` on ``^(?:re)$``."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str, compiled: re2._Regexp[str]) -> None:
        self.pattern = pattern
        self._compiled = compiled

    def matches(self, value: str) -> bool:
        try:
            return self._compiled.search(value) is not None
        except UnicodeEncodeError:
            # A lone surrogate (possible in JSON text) is not UTF-8; Go's JSON decoder would
            # have turned it into U+FFFD, so match what Alertmanager would have seen.
            return self._compiled.search(_replace_surrogates(value)) is not None


def _replace_surrogates(value: str) -> str:
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Regex:
    """Compile a matcher's RE2 value anchored as Alertmanager anchors it."""
    wrapped = f"{_HEAD}{pattern}{_TAIL}"
    try:
        compiled = re2.compile(wrapped, _OPTIONS)
    except UnicodeEncodeError as exc:
        raise RegexError("invalid UTF-8 (lone surrogate)", exc.start - len(_HEAD)) from None
    except re2.error as exc:
        raise _translate_error(exc, pattern, wrapped) from None
    problem = _go_rejects(pattern, compiled)
    if problem is not None:
        raise problem
    return Regex(pattern, compiled)


def _translate_error(exc: re2.error, pattern: str, wrapped: str) -> RegexError:
    """RE2's "code: fragment" as a message about ``pattern``, located at the fragment."""
    raw = exc.args[0] if exc.args else b""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    code, _, fragment = text.partition(": ")
    code = _GO_WORDING.get(code, code)
    at = wrapped.find(fragment) if fragment else -1
    if at == 0:
        return RegexError(code, 0)  # RE2 names the whole expression (a parenthesis is amiss)
    if at < 0:
        return RegexError(f"{code} `{fragment}`" if fragment else code, 0)
    # The fragment may include the wrapper; show and locate only the part in the pattern.
    start = max(at, len(_HEAD))
    shown = wrapped[start : min(at + len(fragment), len(_HEAD) + len(pattern))]
    pos = min(start - len(_HEAD), len(pattern))
    message = f"{code} `{shown or pattern}`"
    for fragment_re, hint in _HINTS:
        if fragment_re.match(shown):
            message += f" ({hint})"
            break
    return RegexError(message, pos)


def _go_rejects(pattern: str, compiled: re2._Regexp[str]) -> RegexError | None:
    """What Go's regexp/syntax rejects among patterns RE2 (C++) has accepted."""
    for name in compiled.groupindex:
        if not _CAPTURE_NAME.fullmatch(name):
            at = max(pattern.find(f"(?P<{name}>"), pattern.find(f"(?<{name}>"), 0)
            return RegexError(f"invalid named capture `<{name}>` (ASCII letters, digits, _)", at)
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
                continue
            if nxt == "C":
                return RegexError("invalid escape sequence `\\C` (one byte, not a character)", i)
            i += 2
        elif c == "[":
            i = _class_end(pattern, i)
        elif c == "{" and (m := _REPEAT.match(pattern, i)):
            if any(len(count or "") > _MAX_COUNT_DIGITS for count in m.groups()):
                return RegexError(f"invalid repeat count `{m.group()}`", i)
            i = m.end()
        else:
            i += 1
    return None


def _class_end(pattern: str, start: int) -> int:
    """The index after the character class at ``start`` (the pattern is known to be valid)."""
    j = start + 1
    if pattern.startswith("^", j):
        j += 1
    first = True  # "]" right after "[" or "[^" is a literal
    while j < len(pattern):
        c = pattern[j]
        if c == "]" and not first:
            return j + 1
        first = False
        if c == "\\":
            j += 2
        elif pattern.startswith("[:", j) and (close := pattern.find(":]", j + 2)) >= 0:
            j = close + 2
        else:
            j += 1
    return j
