"""Durations as SREs write them: ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``, ``0``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse ``1h30m``-style text (or plain seconds) into a timedelta; ValueError says why."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like 90s, 15m, 2h or 1d, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative, got {text!r}")
        return timedelta(seconds=text)
    s = str(text).strip()
    if s == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"expected a duration like 90s, 15m, 2h or 1d, got {text!r}")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """Render a timedelta compactly (``1h30m``); the inverse of parse_duration."""
    secs = td.total_seconds()
    if secs == 0:
        return "0s"
    sign = "-" if secs < 0 else ""
    secs = abs(secs)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n, secs = divmod(secs, size)
        if n:
            out.append(f"{int(n)}{unit}")
    if secs:
        out.append(f"{secs:g}s")
    return sign + "".join(out)


def _validate(v: Any) -> timedelta:
    return parse_duration(v)


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
]
