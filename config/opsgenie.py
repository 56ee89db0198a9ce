"""The ``opsgenie:`` section: how Opsgenie's alert priorities map to the severity matrix.

Senders that speak Opsgenie's Alert API (``router/opsgenie_api.py``) say how bad an alert is
with a priority, P1 (worst) to P5; tocsin pages by matrix level. The default spreads the five
priorities over the matrix's levels, worst first: P1 is the first level and P5 the last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PRIORITIES", "OpsgenieSection", "default_priorities", "priority_refs"]

PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4", "P5")
"""Opsgenie's priorities, worst first; an alert without one is P3 (Opsgenie's default)."""

Priority = Literal["P1", "P2", "P3", "P4", "P5"]


class OpsgenieSection(BaseModel):
    """``opsgenie.priorities``: a matrix level (key, name or alias) for each priority given."""

    model_config = ConfigDict(extra="forbid")

    priorities: dict[Priority, str] = Field(default_factory=dict)


def default_priorities(level_keys: Sequence[str]) -> dict[str, str]:
    """P1 → the first (worst) level … P5 → the last, the rest spread evenly in between."""
    n = len(level_keys)
    return {
        p: level_keys[round(i * (n - 1) / (len(PRIORITIES) - 1))] for i, p in enumerate(PRIORITIES)
    }


def priority_refs(
    section: OpsgenieSection, resolve: Callable[[str], str | None], levels: Sequence[str]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each configured priority names a level of the matrix (``resolve``: the matrix's)."""
    for priority, value in section.priorities.items():
        if resolve(value) is None:
            yield (
                ("opsgenie", "priorities", priority),
                f"unknown severity {value!r}: not a level, name or alias of the matrix "
                f"({', '.join(levels)})",
            )
