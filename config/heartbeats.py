"""The ``heartbeats:`` section's references: each heartbeat's severity, policy and team.

The section itself is ``escalation.incidents.heartbeats.Heartbeat`` per name; this checks what
one entry cannot check alone, so ``tocsin check`` names the line of a typo'd policy rather than
the heartbeat failing to page on the night it expires.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from config.schema import TocsinConfig

__all__ = ["heartbeat_refs"]

# A name is a URL path segment (``/api/v1/heartbeats/{name}/ping``) and a metric label value.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def heartbeat_refs(
    cfg: TocsinConfig, resolve: Callable[[str], str | None], levels: Sequence[str]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Problems with each heartbeat's name and references (``resolve``: the matrix's)."""
    policies: Mapping[str, Any] = cfg.policies
    teams: Mapping[str, Any] = cfg.teams
    for name, hb in cfg.heartbeats.items():
        loc: tuple[str | int, ...] = ("heartbeats", name)
        if not _NAME.fullmatch(name):
            yield (
                loc,
                (
                    f"heartbeat name {name!r} must be letters, digits, '.', '_' or '-'"
                    " (at most 128, starting with a letter or digit): it is part of the ping URL"
                ),
            )
        if resolve(hb.severity) is None:
            yield (
                (*loc, "severity"),
                f"unknown severity {hb.severity!r}: not a level, name or alias of the matrix "
                f"({', '.join(levels)})",
            )
        for field, value, known in (("policy", hb.policy, policies), ("team", hb.team, teams)):
            if value is not None and value not in known:
                names = f" (known: {', '.join(sorted(known))})" if known else " (none configured)"
                yield (*loc, field), f"unknown {field} {value!r}{names}"
