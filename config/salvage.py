"""What can still be read of a YAML file that does not parse, so ``check`` reports more than that.

A syntax error anywhere in the service config would otherwise hide every rule file's problems,
because ``rules.files`` could not be read. The file is cut into its top-level sections (a line
that starts at column 0 opens one) and each is parsed on its own, at its own line numbers; a
section that still does not parse is cut once more into its own keys. What parses is kept, what
does not is left out: the caller only learns what the file certainly says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import ConfigError
from config.loader import Document, parse_document

__all__ = ["Salvaged", "salvage_document"]

# A plain top-level key as it opens its section (quoted or odd keys are not recognised).
_KEY = re.compile(r"([A-Za-z_][\w-]*)\s*:(?:\s|$)")


@dataclass(frozen=True)
class Salvaged:
    """What a broken file certainly says, and which of its sections were not wholly read."""

    doc: Document
    # Top-level keys whose section did not parse (only some of its keys, or none, are in
    # ``doc``); None when a section that did not parse could not even be named.
    unreadable: frozenset[str] | None

    def readable(self, section: str) -> bool:
        """``doc`` has all of ``section`` as written (or the file certainly has no such one)."""
        return self.unreadable is not None and section not in self.unreadable


def salvage_document(path: str | Path) -> Salvaged | None:
    """The sections of ``path`` that parse on their own (``${VAR}`` left as written); None if
    none does or the file cannot be read."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return None
    out = Document(file=str(path), data={}, positions={(): (1, 1)})
    unreadable: set[str] | None = set()
    for start, end in _blocks(lines, 0, len(lines), indent=0):
        part = _parse(out.file, start, lines[start:end])
        if part is None:
            key = _KEY.match(lines[start])
            if key is None or unreadable is None:
                unreadable = None
            else:
                unreadable.add(key.group(1))
            part = _by_keys(out.file, lines, start, end)
        for key, value in part.data.items():
            out.data.setdefault(key, value)
        for loc, pos in part.positions.items():
            out.positions.setdefault(loc, pos)
    if not out.data:
        return None
    return Salvaged(out, None if unreadable is None else frozenset(unreadable))


def _content(line: str) -> bool:
    text = line.strip()
    return bool(text) and not text.startswith("#") and text not in ("---", "...")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blocks(lines: list[str], lo: int, hi: int, indent: int) -> list[tuple[int, int]]:
    """``[start, end)`` line ranges in ``lines[lo:hi]``, each opened by a line at ``indent``."""
    starts = [
        i
        for i in range(lo, hi)
        if _content(lines[i])
        and _indent(lines[i]) == indent
        and lines[i].lstrip(" ")[0] not in "-]}"
    ]
    # No line opens a block (a section that is a list, say): nothing to cut.
    return list(zip(starts, [*starts[1:], hi], strict=True)) if starts else []


def _parse(file: str, first_line: int, lines: list[str]) -> Document | None:
    """``lines`` parsed as if at line ``first_line`` (0-based) of ``file``; None if they don't."""
    try:
        doc = parse_document(
            "\n" * first_line + "".join(lines),
            file,
            substitute_env=False,
            read_secret_files=False,
        )
    except ConfigError:
        return None
    return doc if isinstance(doc.data, dict) else None


def _by_keys(file: str, lines: list[str], start: int, end: int) -> Document:
    """A section that does not parse as a whole (``key:`` then indented keys), key by key."""
    empty = Document(file=file, data={})
    header = lines[start]
    if not header.rstrip().endswith(":"):
        return empty  # ``key: value`` on one line (or flow style): nothing smaller to try
    body = [i for i in range(start + 1, end) if _content(lines[i])]
    if not body:
        return empty
    data: dict[str, Any] = {}
    out = Document(file=file, data=data)
    for lo, hi in _blocks(lines, body[0], end, indent=_indent(lines[body[0]])):
        gap = ["\n"] * (lo - start - 1)
        part = _parse(file, start, [header, *gap, *lines[lo:hi]])
        if part is None:
            continue
        for key, value in part.data.items():
            if isinstance(value, dict):
                section = data.setdefault(key, {})
                for k, v in value.items():
                    section.setdefault(k, v)
        for loc, pos in part.positions.items():
            out.positions.setdefault(loc, pos)
    return out
