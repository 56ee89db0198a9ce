"""A parsed YAML document: plain data plus the position of every key, and how paths are named.

Problems name a place twice: by line and column, and by a dotted path such as
``policies.default.steps[2].after``. Both come from here, as do the rules for showing an input
value in a message (clipped, and never when the key looks like it holds a secret).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from config.errors import Problem

__all__ = ["Document", "Loc", "clip", "format_path", "is_secret_loc"]

Loc = tuple[str | int, ...]

VALUE_MAX = 60  # longest quoted input value in a message
SECRET_WORDS = ("token", "password", "secret", "credential", "key")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")


def format_path(loc: Sequence[str | int]) -> str:
    """Render a location tuple as a dotted path: ``("a", "b", 2, "c")`` -> ``a.b[2].c``.

    Keys that are not plain words (dots, slashes, spaces, as in label names) are quoted,
    ``labels["app.kubernetes.io/name"]``, so the path stays unambiguous.
    """
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif _PLAIN_KEY.match(item):
            out += f".{item}" if out else item
        else:
            escaped = item.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out


@dataclass
class Document:
    """Parsed YAML: plain ``data`` plus the position of every mapping key and list item.

    ``positions`` maps a path tuple to a 1-based ``(line, column)``: for a mapping entry the
    key's position, for a list item the item's; ``()`` is the root. ``warnings`` are findings
    that do not stop offline tools (secrets left unset, see ``parse_document``).
    """

    file: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    # Where a placeholder stands in for a secret the offline tools deferred: what a check finds
    # wrong with the placeholder is not the config's fault (serve refuses the real gap anyway).
    deferred: set[Loc] = field(default_factory=set)
    # SHA-256 of the bytes read (empty for text parsed from elsewhere): the file as it was
    # loaded, which may differ from the file on disk a moment later.
    sha256: str = ""

    def position(self, loc: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Position of ``loc``, or of its nearest ancestor that has one; (None, None) if none."""
        key = tuple(loc)
        while True:
            pos = self.positions.get(key)
            if pos is not None:
                return pos
            if not key:
                return (None, None)
            key = key[:-1]


def clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 3] + "..."


def is_secret_loc(loc: Sequence[str | int]) -> bool:
    names = [item for item in loc if isinstance(item, str)]
    return bool(names) and any(word in names[-1].lower() for word in SECRET_WORDS)
