"""Character classes as code point ranges, and their spelling in a Python pattern.

RE2's classes (Perl ``\\d\\s\\w``, POSIX ``[:alpha:]``, Unicode ``\\pL``) are ASCII-only or follow
Go's Unicode tables, while Python's ``\\d``/``\\w`` are Unicode-aware. So the translator in
``re2`` works on explicit ranges and writes every class out as ``[...]`` of code points.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

MAX_RUNE = 0x10FFFF  # Go's unicode.MaxRune

Range = tuple[int, int]

PERL_CLASSES: dict[str, tuple[Range, ...]] = {
    "d": ((0x30, 0x39),),
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
}
POSIX_CLASSES: dict[str, tuple[Range, ...]] = {
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
GO_CATEGORIES: dict[str, tuple[str, ...]] = {
    **_GO_CATEGORY_GROUPS,
    **{sub: (sub,) for subs in _GO_CATEGORY_GROUPS.values() for sub in subs},
}


def _normalize(ranges: Iterable[Range]) -> list[Range]:
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def negate(ranges: Iterable[Range]) -> list[Range]:
    out: list[Range] = []
    nxt = 0
    for lo, hi in _normalize(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_RUNE:
        out.append((nxt, MAX_RUNE))
    return out


@functools.cache
def category_ranges(name: str) -> tuple[Range, ...]:
    """Code point ranges of a Go Unicode general category, from Python's unicodedata."""
    wanted = set(GO_CATEGORIES[name])
    ranges: list[Range] = []
    start = -1
    for cp in range(MAX_RUNE + 2):
        inside = cp <= MAX_RUNE and unicodedata.category(chr(cp)) in wanted
        if inside and start < 0:
            start = cp
        elif not inside and start >= 0:
            ranges.append((start, cp - 1))
            start = -1
    return tuple(ranges)


def py_char(cp: int) -> str:
    """One code point as a Python regex atom that is literal both inside and outside []."""
    ch = chr(cp)
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return ch
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def py_class(ranges: Iterable[Range], negated: bool) -> str:
    items = _normalize(ranges)
    if not items:
        # An empty class matches nothing; its negation matches everything.
        return "[\\x00-\\U0010ffff]" if negated else "[^\\x00-\\U0010ffff]"
    body = "".join(py_char(lo) if lo == hi else f"{py_char(lo)}-{py_char(hi)}" for lo, hi in items)
    return f"[{'^' if negated else ''}{body}]"
