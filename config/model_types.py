"""Walking a pydantic model's type tree: which types may sit at a path in the data.

Validation messages use it to suggest the key a typo stands for ("did you mean") and to
recognise SecretStr fields, whose input values must never be echoed.
"""

from __future__ import annotations

import collections.abc
import difflib
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, RootModel, SecretBytes, SecretStr

from config.document import Loc

__all__ = ["is_secret_field", "model_named", "suggest_key", "types_at"]


def _expand(annotations: Iterable[Any]) -> list[Any]:
    """Unwrap Annotated, Optional/Union and RootModel into the concrete types inside."""
    out: list[Any] = []
    stack = list(annotations)
    while stack:
        t = stack.pop(0)
        origin = get_origin(t)
        if origin is Annotated:
            stack.insert(0, get_args(t)[0])
        elif origin is Union or origin is types.UnionType:
            stack[0:0] = [a for a in get_args(t) if a is not type(None)]
        elif isinstance(t, type) and issubclass(t, RootModel) and "root" in t.model_fields:
            stack.insert(0, t.model_fields["root"].annotation)
        elif t not in out:
            out.append(t)
    return out


def _children(t: Any, item: str | int) -> list[Any]:
    if isinstance(t, type) and issubclass(t, BaseModel):
        if not isinstance(item, str):
            return []
        for name, info in t.model_fields.items():
            if item in (name, info.alias, info.validation_alias):
                return [info.annotation]
        return []
    origin, args = get_origin(t), get_args(t)
    if isinstance(item, int) and origin in (
        list,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.Set,
    ):
        return list(args[:1])
    if isinstance(item, int) and origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [args[0]]
        return [args[item]] if item < len(args) else []
    if isinstance(item, str) and origin in (dict, collections.abc.Mapping):
        return [args[1]] if len(args) == 2 else []
    return []


def types_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[Any]:
    current: list[Any] = [model]
    for item in loc:
        current = [c for t in _expand(current) for c in _children(t, item)]
        if not current:
            return []
    return _expand(current)


def suggest_key(key: str, model: type[BaseModel], parent: Loc, present: Any) -> str | None:
    names: set[str] = set()
    for t in types_at(model, parent):
        if isinstance(t, type) and issubclass(t, BaseModel):
            for name, info in t.model_fields.items():
                names.add(info.alias if isinstance(info.alias, str) else name)
    # Prefer keys not written yet: a typo usually stands for a key that is missing.
    unused = names - set(present) if isinstance(present, dict) else names
    for pool in (unused, names):
        by_lower = {n.lower(): n for n in sorted(pool)}
        match = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
        if match:
            return by_lower[match[0]]
    return None


def model_named(name: str) -> type[BaseModel] | None:
    found: list[type[BaseModel]] = []
    seen: set[type[BaseModel]] = set()
    stack: list[type[BaseModel]] = [BaseModel]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                if sub.__name__ == name:
                    found.append(sub)
    return found[0] if len(found) == 1 else None


def is_secret_field(model: type[BaseModel] | None, loc: Loc) -> bool:
    if model is None:
        return False
    return any(t in (SecretStr, SecretBytes) for t in types_at(model, loc))
