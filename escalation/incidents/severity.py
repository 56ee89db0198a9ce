"""How bad an incident is: a canonical level and the name the organisation gives it.

An incident stores its level key (``P0`` … ``P4``) and a snapshot of the matrix level taken
when it opened or was raised; ``Severity`` is the one place that turns the two into what people
read, so every page, e-mail, API answer and timeline line names a level the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.matrix import rank

__all__ = ["Severity"]


@dataclass(frozen=True)
class Severity:
    """A canonical level (``P0`` is the worst) and its display name (``SEV-1``, ``Severity 2``)."""

    key: str
    name: str

    @classmethod
    def named(cls, key: str, name: Any = None) -> Severity:
        # The one fallback rule: a level the matrix gives no name is shown by its key.
        return cls(key, str(name) if name else key)

    @classmethod
    def from_snapshot(cls, key: str, level: Mapping[str, Any]) -> Severity:
        """The severity of an incident from its stored level snapshot (``IncidentRecord.level``)."""
        return cls.named(key, level.get("name"))

    @property
    def rank(self) -> int:
        """0 for ``P0`` (the worst) … 4 for ``P4``."""
        return rank(self.key)

    def __str__(self) -> str:
        return self.name
