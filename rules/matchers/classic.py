"""Alertmanager's classic matcher parser (``pkg/labels/parse.go``, Alertmanager <= 0.26).

Names are ``[a-zA-Z_:][a-zA-Z0-9_:]*``; only ``\\"``, ``\\\\`` and ``\\n`` are escapes, any
other backslash is literal; a list is split on commas outside double quotes.
"""

from __future__ import annotations

import re
import string

from rules.matchers.spec import MatcherSpec, checked_spec
from rules.matchers.syntax import RE2_SPACE, MatcherError, MatchType, go_trim_space

_CLASSIC_RE = re.compile(
    rf"[{RE2_SPACE}]*([a-zA-Z_:][a-zA-Z0-9_:]*)[{RE2_SPACE}]*(=~|=|!=|!~)"
    rf"[{RE2_SPACE}]*(.*?)[{RE2_SPACE}]*",
    re.DOTALL,
)
_CLASSIC_NAME_START = frozenset(string.ascii_letters + "_:")
_CLASSIC_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_:")


def _classic_format_error(token: str, base: int, text: str) -> MatcherError:
    """Explain why a token does not have the classic shape name, operator, value."""
    i = 0
    while i < len(token) and token[i] in RE2_SPACE:
        i += 1
    if i >= len(token) or token[i] not in _CLASSIC_NAME_START:
        found = repr(token[i]) if i < len(token) else "end of input"
        return MatcherError(
            text, base + i, f"expected a label name ([a-zA-Z_:][a-zA-Z0-9_:]*), found {found}"
        )
    while i < len(token) and token[i] in _CLASSIC_NAME_CHARS:
        i += 1
    while i < len(token) and token[i] in RE2_SPACE:
        i += 1
    found = repr(token[i]) if i < len(token) else "end of input"
    return MatcherError(
        text, base + i, f"expected an operator such as '=', '!=', '=~' or '!~', found {found}"
    )


def classic_parse_one(token: str, base: int, text: str) -> MatcherSpec:
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
    return checked_spec(m.group(1), MatchType(m.group(2)), "".join(chars), text, posmap)


def classic_parse_many(text: str) -> list[MatcherSpec]:
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
    rest, cut = go_trim_space(s[token_start:])
    if rest:
        tokens.append((rest, base + token_start + cut))
    return [classic_parse_one(tok, start, text) for tok, start in tokens]
