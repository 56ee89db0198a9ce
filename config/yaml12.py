"""YAML 1.2 core schema scalars for PyYAML, and a limit on nesting.

Scalars follow the YAML 1.2 core schema rather than PyYAML's YAML 1.1 default, because 1.1
surprises operators: ``handoff: 10:30`` would become the integer 630 and ``country: NO`` the
boolean False. Here only ``true``/``false`` are booleans, only ``null``/``~``/empty is null,
and timestamps stay strings (pydantic parses them where a datetime is expected; its lax mode
also still accepts ``yes``/``on`` for boolean fields).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = [
    "BOOL",
    "FLOAT",
    "INT",
    "MERGE",
    "NULL",
    "STR",
    "TAG",
    "Loader",
    "parse_float",
    "parse_int",
    "short_tag",
]

TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MERGE = (
    TAG + t for t in ("str", "int", "float", "bool", "null", "merge")
)

_MAX_DEPTH = 100  # nesting levels; no configuration needs more


class Loader(yaml.SafeLoader):
    """SafeLoader whose implicit scalar types are the YAML 1.2 core schema (see module doc).

    Nesting is limited to ``_MAX_DEPTH`` levels: PyYAML composes recursively, so a few hundred
    ``[`` would otherwise end in a RecursionError, and scanning deep flow collections costs
    time quadratic in their depth.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                # PyYAML's type stubs leave Parser.peek_event untyped.
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {_MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


Loader.yaml_implicit_resolvers = {}
Loader.add_implicit_resolver(
    BOOL, re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z"), list("tTfF")
)
Loader.add_implicit_resolver(
    INT, re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z"), list("-+0123456789")
)
Loader.add_implicit_resolver(
    FLOAT,
    re.compile(
        r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
    ),
    list("-+0123456789."),
)
Loader.add_implicit_resolver(NULL, re.compile(r"(?:~|null|Null|NULL|)\Z"), ["~", "n", "N", ""])
Loader.add_implicit_resolver(MERGE, re.compile(r"<<\Z"), ["<"])

_INT_TEXT = re.compile(r"[-+]?(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)\Z")
_FLOAT_TEXT = re.compile(r"[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?\Z")


def parse_int(text: str) -> int:
    if not _INT_TEXT.match(text):
        raise ValueError
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if t.startswith(prefix):
            return sign * int(t[2:], base)
    return sign * int(t, 10)


def parse_float(text: str) -> float:
    low = text.lower()
    if low in (".inf", "+.inf"):
        return float("inf")
    if low == "-.inf":
        return float("-inf")
    if low == ".nan":
        return float("nan")
    if not _FLOAT_TEXT.match(text):
        raise ValueError
    return float(text.replace("_", ""))


def short_tag(tag: str) -> str:
    return "!!" + tag[len(TAG) :] if tag.startswith(TAG) else tag
