"""The ``adapters.pushover`` section's references to the matrix: the ``emergency`` levels.

The notifier sends a page at emergency priority when the incident's level key is listed, so a
name that is not a key (a typo, ``p0``, the organisation's name ``SEV-1``) would silently page
every level at normal priority. ``tocsin check`` refuses it and names the key it may have meant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from adapters.config import AdaptersConfig

__all__ = ["emergency_refs"]


def emergency_refs(
    adapters: AdaptersConfig, resolve: Callable[[str], str | None], levels: Sequence[str]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each ``pushover.emergency`` entry is a level key of the matrix (``resolve``: its)."""
    if adapters.pushover is None:
        return
    for i, value in enumerate(adapters.pushover.emergency):
        if value in levels:
            continue
        key = resolve(value)
        meant = f"; write its key {key!r}" if key is not None else ""
        yield (
            ("adapters", "pushover", "emergency", i),
            f"unknown level {value!r}: emergency lists the matrix's level keys "
            f"({', '.join(levels)}){meant}",
        )
