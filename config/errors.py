"""Configuration errors that say where: file, line, column, dotted path and what was expected.

Hierarchy::

    Exception
    └── ConfigError        one or more Problems found while loading or validating a file
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigError", "Problem", "sorted_problems"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, located as precisely as we know.

    ``line`` and ``column`` are 1-based (None when unknown); ``path`` is the dotted path of the
    offending key, e.g. ``policies.default.steps[2].after`` (empty for the whole file).
    """

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        """Render as ``file:line:column: path: message``, leaving out parts we do not know."""
        where = self.file
        if self.line is not None:
            where = f"{where}:{self.line}"
            if self.column is not None:
                where = f"{where}:{self.column}"
        parts = [p for p in (where, self.path, self.message) if p]
        return ": ".join(parts)


class ConfigError(Exception):
    """A configuration file could not be loaded or is invalid; ``problems`` lists every finding.

    ``str()`` gives one problem per line, so the whole list can be printed to an operator at once.
    ``warnings`` are findings made on the way that are not errors by themselves (a secret left
    unset for an offline tool), so ``tocsin check`` can show them next to the problems.
    """

    problems: list[Problem]
    warnings: list[Problem]

    def __init__(
        self, problems: Problem | Iterable[Problem], warnings: Iterable[Problem] = ()
    ) -> None:
        """Wrap a single Problem or several; at least one is expected."""
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.warnings = list(warnings)
        super().__init__(self._render())

    def _render(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def __str__(self) -> str:
        """One problem per line."""
        return self._render()

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles through args, which hold the rendered text, not the Problems.
        return (type(self), (self.problems, self.warnings))


def sorted_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems without repeats, in file order (those without a line last)."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0, p.column or 0))
