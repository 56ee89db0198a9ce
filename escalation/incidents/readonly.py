"""Read-only JSON values: one snapshot object shared by every incident that opens with it.

A policy or level snapshot depends only on the loaded configuration, so ``policy.py`` builds it
once per distinct value and hands the same object to every incident. Sharing is only safe if
nobody can change it, so these dict and list types refuse every in-place change (a TypeError
names the way out: copy it). They are still a ``dict`` and a ``list``: equal to plain ones,
encoded by ``json`` the same way, and a copy (``dict(x)``, ``copy.copy``, ``copy.deepcopy``,
pickle) is an ordinary value its owner may change. Because the content never changes, the
JSON text a store writes for it, and its typed view, can be computed once (``memo``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

__all__ = ["ReadOnlyDict", "ReadOnlyList", "freeze"]

_T = TypeVar("_T")


def _refuse(what: str) -> NoReturn:
    raise TypeError(
        f"this {what} is a shared read-only snapshot: copy it (dict(...), list(...) or "
        "copy.deepcopy) to change it"
    )


class ReadOnlyDict(dict[str, Any]):
    """A dict nobody may change in place; its values are read-only too (see ``freeze``)."""

    __slots__ = ("_memo",)

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._memo: dict[Callable[[Any], Any], Any] = {}

    def memo(self, derive: Callable[[ReadOnlyDict], _T]) -> _T:
        """``derive(self)``, computed once per function: the content never changes, so neither
        does anything derived from it. ``derive`` must depend on the content only, and be one
        long-lived function (a module's), not a new lambda per call: each one is kept."""
        try:
            return cast(_T, self._memo[derive])
        except KeyError:
            value = self._memo[derive] = derive(self)
            return value

    def __reduce__(self) -> tuple[Any, ...]:
        # copy.copy, copy.deepcopy and pickle rebuild a plain dict: a copy is its owner's to change.
        return (dict, (dict(self),))

    def __setitem__(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("dict")

    def __delitem__(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("dict")

    def __ior__(self, *args: Any, **kw: Any) -> NoReturn:  # type: ignore[misc]
        _refuse("dict")

    def clear(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("dict")

    def pop(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("dict")

    def popitem(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("dict")

    def setdefault(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("dict")

    def update(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("dict")


class ReadOnlyList(list[Any]):
    """A list nobody may change in place; its items are read-only too (see ``freeze``)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __setitem__(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def __delitem__(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def __iadd__(self, *args: Any, **kw: Any) -> NoReturn:  # type: ignore[misc]
        _refuse("list")

    def __imul__(self, *args: Any, **kw: Any) -> NoReturn:  # type: ignore[misc]
        _refuse("list")

    def append(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def extend(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def insert(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def pop(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def remove(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def clear(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def sort(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")

    def reverse(self, *args: Any, **kw: Any) -> NoReturn:
        _refuse("list")


def freeze(value: Any) -> Any:
    """A read-only deep copy of a JSON value (dicts, lists and scalars; tuples become lists)."""
    if isinstance(value, dict):
        return ReadOnlyDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return ReadOnlyList(freeze(v) for v in value)
    return value
