"""Text the CLI prints for people: control characters shown, never obeyed.

Label values, titles and notes come from alerts, that is from anyone who can make Prometheus
fire. Printed raw, an ESC sequence in one of them can recolour, hide or rewrite what the
operator's terminal shows (or set its title, or worse on some emulators). Every human output of
the CLI goes through :class:`EscapingWriter`, so such characters reach the screen as visible
``\\x1b``-style escapes. JSON output needs nothing more: ``json.dumps`` already escapes them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["EscapingWriter", "escape", "escape_line", "escaped_output"]

# C0 controls but newline and tab (the CLI's own layout), DEL, C1 controls (0x9b is a one-byte
# CSI on some terminals), and the bidirectional overrides and isolates that reorder what is
# shown ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same, newline and tab too, and the Unicode line and paragraph separators: for text that
# must stay on one line (a log line's fields), where a line break would forge another log line.
_CONTROL_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def escape(text: str) -> str:
    """``text`` with every control character a terminal would act on written out visibly."""
    return _CONTROL.sub(_visible, text)


def escape_line(text: str) -> str:
    """``escape(text)``, newlines and tabs written out too: the result is one line."""
    return _CONTROL_LINE.sub(_visible, text)


class EscapingWriter:
    """A text stream that escapes control characters on their way to ``raw``."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(escape(text))
        # Callers count characters of what they gave, not of what was written.
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def __getattr__(self, name: str) -> object:
        # isatty(), encoding, fileno() … behave as the wrapped stream's.
        return getattr(self.raw, name)


@contextmanager
def escaped_output(streams: tuple[str, ...] = ("stdout", "stderr")) -> Iterator[None]:
    """While inside, ``sys.stdout`` / ``sys.stderr`` escape control characters."""
    saved = {name: getattr(sys, name) for name in streams}
    try:
        for name, raw in saved.items():
            setattr(sys, name, EscapingWriter(raw))
        yield
    finally:
        for name, raw in saved.items():
            setattr(sys, name, raw)
