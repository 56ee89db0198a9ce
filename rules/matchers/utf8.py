"""Alertmanager's UTF-8 matcher parser (``matcher/parse``, Alertmanager >= 0.27).

Values are Go string literals (``strconv.Unquote``), label names may be quoted UTF-8, and
unquoted text may not contain ``{}!=~,\\"'`` backtick or spaces. Every error carries the
offset of the fault in the input.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from rules.matchers.spec import MatcherSpec, checked_spec
from rules.matchers.syntax import GO_SPACE, MatcherError, MatchType, is_reserved

_MAX_RUNE = 0x10FFFF  # Go's unicode.MaxRune

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
            if not is_reserved(c):
                end = start
                while end < n and not is_reserved(text[end]):
                    end += 1
                self.pos = end
                return _Token(_UNQUOTED, text[start:end], start)
            if c in GO_SPACE:
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


def _go_escape(inner: str, i: int) -> tuple[bytes, int] | None:
    """What the escape starting at ``inner[i]`` (a backslash) stands for, and its length.

    None when Go would reject it.
    """
    e = inner[i + 1 : i + 2]
    if e in _GO_SIMPLE_ESCAPES:
        return bytes([_GO_SIMPLE_ESCAPES[e]]), 2
    if e and e in "xuU":
        width = {"x": 2, "u": 4, "U": 8}[e]
        digits = inner[i + 2 : i + 2 + width]
        if len(digits) == width and all(d in string.hexdigits for d in digits):
            code = int(digits, 16)
            if e == "x":
                return bytes([code]), 2 + width  # one byte: \xNN may be part of a UTF-8 sequence
            if code <= _MAX_RUNE and not 0xD800 <= code <= 0xDFFF:
                return chr(code).encode(), 2 + width
    elif e and e in "01234567":
        digits = inner[i + 1 : i + 4]
        if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
            return bytes([int(digits, 8)]), 4
    return None


def _go_unquote(token: str, start: int, text: str) -> tuple[str, list[int]]:
    """strconv.Unquote of a double-quoted token; also maps each result char to its offset."""
    inner = token[1:-1]
    base = start + 1
    buf = bytearray()
    byte_pos: list[int] = []  # offset in ``text`` of each byte of ``buf``
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\n":
            raise MatcherError(text, base + i, "literal newline in quoted string (write \\n)")
        if c != "\\":
            encoded, length = c.encode(), 1
        else:
            escape = _go_escape(inner, i)
            if escape is None:
                e = inner[i + 1 : i + 2]
                raise MatcherError(
                    text,
                    base + i,
                    f"invalid escape sequence '\\{e}' in quoted string (write \\\\{e})",
                )
            encoded, length = escape
        buf += encoded
        byte_pos += [base + i] * len(encoded)
        i += length
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

    def parse(self) -> list[tuple[MatcherSpec, int]]:
        found: list[tuple[MatcherSpec, int]] = []
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

    def _matcher(self) -> tuple[MatcherSpec, int]:
        name_tok = self._expect((_QUOTED, _UNQUOTED), "a label name")
        name, _ = _token_text(name_tok, self.text)
        if not name:
            raise MatcherError(self.text, name_tok.start, "label name must not be empty")
        op_tok = self._expect(tuple(_OPERATORS), _EXPECT_OPERATOR)
        value_tok = self._expect((_QUOTED, _UNQUOTED), "a label value")
        value, posmap = _token_text(value_tok, self.text)
        spec = checked_spec(name, _OPERATORS[op_tok.kind], value, self.text, posmap)
        return spec, name_tok.start

    def _expect(self, kinds: tuple[int, ...], expected: str) -> _Token:
        tok = self._peek(expected)
        if tok.kind not in kinds:
            raise self._unexpected(tok, expected)
        self.lexer.scan()
        return tok


def utf8_parse_many(text: str) -> list[MatcherSpec]:
    return [m for m, _ in _UTF8Parser(text).parse()]


def utf8_parse_one(text: str) -> MatcherSpec:
    found = _UTF8Parser(text).parse()
    if not found:
        raise MatcherError(text, 0, "expected a matcher, found none")
    if len(found) > 1:
        raise MatcherError(text, found[1][1], f"expected exactly one matcher, found {len(found)}")
    return found[0][0]
