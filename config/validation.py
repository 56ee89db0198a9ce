"""pydantic validation errors turned into Problems: ``file:line:column: path: message``.

pydantic reports a location as a tuple that also names union members and discriminators;
the data is walked alongside it so that only real keys and indexes remain, which the
Document then places on a line. Messages are reworded for an operator ("expected an
integer, got 'ten'"), and values under secret-looking keys or SecretStr fields are redacted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel

from config.document import Document, Loc, clip, format_path, is_secret_loc
from config.errors import ConfigError, Problem, sorted_problems
from config.model_types import is_secret_field, model_named, suggest_key

__all__ = ["BaseModelT", "problems_from_validation_error", "validate"]

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)

_REDACTED = "'**********'"


def validate(
    model: type[BaseModelT], doc: Document, *, context: dict[str, Any] | None = None
) -> BaseModelT:
    """Validate ``doc.data`` against ``model``; raise ConfigError with positioned Problems."""
    try:
        return model.model_validate(doc.data, context=context)
    except pydantic.ValidationError as exc:
        raise ConfigError(problems_from_validation_error(exc, doc, model=model)) from None


def problems_from_validation_error(
    err: pydantic.ValidationError,
    doc: Document,
    *,
    prefix: tuple[str | int, ...] = (),
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """Turn a pydantic ValidationError into Problems located in ``doc``, sorted by line.

    ``prefix`` is where the validated data sits inside ``doc.data`` (when only a section was
    validated). ``model`` is the model that was validated; with it, unknown keys get a
    "did you mean" hint and SecretStr fields are recognised as secret. When it is not given,
    the model is looked up by the error's title among loaded BaseModel classes (used only if
    exactly one class has that name); pass it to be sure.
    """
    if model is None:
        model = model_named(err.title)
    root = _walk(doc.data, prefix)
    entries: list[_Entry] = []
    for e in err.errors(include_url=False):
        raw_loc = tuple(e["loc"])
        loc = _clean_loc(raw_loc, root, e["type"]) if root is not _ABSENT else raw_loc
        entries.append(_entry(e, raw_loc, loc, prefix, doc, root, model))
    problems = [
        Problem(doc.file, x.line, x.column, format_path((*prefix, *x.loc)), x.message())
        for x in _merge_alternatives(entries)
    ]
    return sorted_problems(problems)


@dataclass
class _Entry:
    loc: Loc
    line: int | None
    column: int | None
    text: str  # the whole message, or what was expected when ``got`` is set
    got: str | None = None

    def message(self) -> str:
        return self.text if self.got is None else f"{self.text}, got {self.got}"


_ABSENT = object()

_EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "set_type": "expected a list",
    "frozen_set_type": "expected a list",
    "none_required": "expected null",
}


def _entry(
    e: Any,
    raw_loc: Loc,
    loc: Loc,
    prefix: Loc,
    doc: Document,
    root: Any,
    model: type[BaseModel] | None,
) -> _Entry:
    etype: str = e["type"]
    ctx: dict[str, Any] = e.get("ctx") or {}
    last = raw_loc[-1] if raw_loc else None

    if etype == "missing":
        text = (
            f"missing required key '{last}'" if isinstance(last, str) else "missing required item"
        )
        line, col = doc.position((*prefix, *loc))
        return _Entry(loc, line, col, text)
    if etype == "extra_forbidden":
        text = f"unknown key '{last}'"
        if isinstance(last, str) and model is not None:
            hint = suggest_key(last, model, loc[:-1], _walk(root, loc[:-1]))
            if hint:
                text += f"; did you mean '{hint}'?"
        line, col = doc.position((*prefix, *loc))
        return _Entry(loc, line, col, text)
    if etype in ("union_tag_not_found", "union_tag_invalid"):
        disc = str(ctx.get("discriminator", "")).strip("'")
        value = _walk(root, loc)
        if etype == "union_tag_not_found":
            text = f"missing required key '{disc}'"
        else:
            loc = (*loc, disc) if isinstance(value, dict) and disc in value else loc
            text = f"unknown {disc} '{ctx.get('tag')}', expected one of {ctx.get('expected_tags')}"
        line, col = doc.position((*prefix, *loc))
        return _Entry(loc, line, col, text)

    line, col = doc.position((*prefix, *loc))
    value = e.get("input")
    secret = is_secret_loc((*prefix, *loc)) or is_secret_field(model, loc)
    got = _describe(value, secret=secret)
    if etype in _EXPECTED:
        return _Entry(loc, line, col, _EXPECTED[etype], got)
    msg: str = e["msg"]
    for lead in ("Value error, ", "Assertion failed, "):
        if msg.startswith(lead):
            msg = msg[len(lead) :]
    if secret and isinstance(value, str) and value:
        msg = msg.replace(value, "**********")  # a validator may have echoed the secret
    if msg.startswith("Input should be "):
        return _Entry(loc, line, col, "expected " + msg[len("Input should be ") :], got)
    if isinstance(value, str) and (f"'{value}'" in msg or repr(value) in msg):
        return _Entry(loc, line, col, msg)  # the message already quotes the value
    if secret and isinstance(value, str) and "**********" in msg:
        return _Entry(loc, line, col, msg)
    if etype == "value_error" and isinstance(value, dict | Mapping | list | tuple):
        # A section's or a list's own check names the fault; "got a mapping/list" says nothing.
        return _Entry(loc, line, col, msg)
    return _Entry(loc, line, col, msg, got)


def _merge_alternatives(entries: list[_Entry]) -> list[_Entry]:
    """Fold one-per-union-member errors ("expected an integer" / "expected a list") into one."""
    out: list[_Entry] = []
    index: dict[tuple[Loc, str], _Entry] = {}
    for entry in entries:
        if entry.got is None:
            out.append(entry)
            continue
        key = (entry.loc, entry.got)
        first = index.get(key)
        if first is None:
            index[key] = entry
            out.append(entry)
        elif entry.text.startswith("expected ") and first.text.startswith("expected "):
            extra = entry.text[len("expected ") :]
            if extra not in first.text.split(" or "):
                first.text += f" or {extra}"
        else:
            out.append(entry)
    return out


def _walk(data: Any, loc: Sequence[str | int]) -> Any:
    """The value at ``loc`` inside plain data, or _ABSENT."""
    for item in loc:
        if isinstance(data, dict) and isinstance(item, str) and item in data:
            data = data[item]
        elif isinstance(data, list) and isinstance(item, int) and 0 <= item < len(data):
            data = data[item]
        else:
            return _ABSENT
    return data


def _clean_loc(raw: Loc, data: Any, etype: str) -> Loc:
    """Drop pydantic's union/discriminator tags from a loc by walking the data alongside it.

    A loc item that names no key or index in the data is a tag ('int', 'list[str]',
    'function-after[...]', a discriminator value), except the last item of a 'missing' error,
    which names the key that is absent.
    """
    out: list[str | int] = []
    for i, item in enumerate(raw):
        if isinstance(data, dict) and isinstance(item, str) and item in data:
            data = data[item]
            out.append(item)
        elif isinstance(data, list) and isinstance(item, int) and 0 <= item < len(data):
            data = data[item]
            out.append(item)
        elif i == len(raw) - 1 and etype == "missing" and isinstance(data, dict | list):
            out.append(item)
        elif not isinstance(data, dict | list):
            break  # a scalar has no children: what follows is a union member's name
    return tuple(out)


def _describe(value: Any, *, secret: bool) -> str:
    """How an input value is shown after "got": quoted and clipped, or its kind."""
    if value is None:
        return "null"
    if isinstance(value, dict | Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if secret:
        return _REDACTED
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return f"'{clip(str(value))}'"
