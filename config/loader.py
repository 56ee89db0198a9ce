"""Load tocsin's YAML files (service config and rule files) keeping every key's position.

The pipeline is: YAML text -> node tree (``yaml.compose``, which keeps marks) -> plain Python
data (dict/list/str/int/float/bool/None) plus a map from each key's path to its line and column
-> ``${ENV}`` substitution in string values -> ``*_file`` secrets -> pydantic validation, whose
errors are turned back into ``file:line:column: path: message`` Problems.

Scalars follow the YAML 1.2 core schema rather than PyYAML's YAML 1.1 default, because 1.1
surprises operators: ``handoff: 10:30`` would become the integer 630 and ``country: NO`` the
boolean False. Here only ``true``/``false`` are booleans, only ``null``/``~``/empty is null,
and timestamps stay strings (pydantic parses them where a datetime is expected; its lax mode
also still accepts ``yes``/``on`` for boolean fields).
"""

from __future__ import annotations

import collections.abc
import difflib
import os
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import pydantic
import yaml
from pydantic import BaseModel, RootModel, SecretBytes, SecretStr

from config.errors import ConfigError, Problem

__all__ = [
    "BaseModelT",
    "Document",
    "format_path",
    "load_document",
    "parse_document",
    "problems_from_validation_error",
    "validate",
]

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)

Loc = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _MERGE = (
    _TAG + t for t in ("str", "int", "float", "bool", "null", "merge")
)
_VALUE_MAX = 60  # longest quoted input value in a message
_REDACTED = "'**********'"
_SECRET_WORDS = ("token", "password", "secret", "credential", "key")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")


# --------------------------------------------------------------------------- YAML 1.2 scalars


_MAX_DEPTH = 100  # nesting levels; no configuration needs more


class _Loader(yaml.SafeLoader):
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
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {_MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT, re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
    ),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(_NULL, re.compile(r"(?:~|null|Null|NULL|)\Z"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver(_MERGE, re.compile(r"<<\Z"), ["<"])

_INT_TEXT = re.compile(r"[-+]?(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)\Z")
_FLOAT_TEXT = re.compile(r"[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?\Z")


def _parse_int(text: str) -> int:
    if not _INT_TEXT.match(text):
        raise ValueError
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if t.startswith(prefix):
            return sign * int(t[2:], base)
    return sign * int(t, 10)


def _parse_float(text: str) -> float:
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


# --------------------------------------------------------------------------- public data


def format_path(loc: Sequence[str | int]) -> str:
    """Render a location tuple as a dotted path: ``("a", "b", 2, "c")`` -> ``a.b[2].c``.

    Keys that are not plain words (dots, slashes, spaces, as in label names) are quoted,
    ``labels["app.kubernetes.io/name"]``, so the path stays unambiguous.
    """
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif _PLAIN_KEY.match(item):
            out += f".{item}" if out else item
        else:
            escaped = item.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out


@dataclass
class Document:
    """Parsed YAML: plain ``data`` plus the position of every mapping key and list item.

    ``positions`` maps a path tuple to a 1-based ``(line, column)``: for a mapping entry the
    key's position, for a list item the item's; ``()`` is the root.
    """

    file: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def position(self, loc: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Position of ``loc``, or of its nearest ancestor that has one; (None, None) if none."""
        key = tuple(loc)
        while True:
            pos = self.positions.get(key)
            if pos is not None:
                return pos
            if not key:
                return (None, None)
            key = key[:-1]


# --------------------------------------------------------------------------- loading


def load_document(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    substitute_env: bool = True,
    read_secret_files: bool = True,
) -> Document:
    """Read and parse a YAML file; ``*_file`` paths resolve against the file's directory.

    Raises ConfigError (naming the file) if it cannot be read or is not valid.
    """
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            Problem(file, None, None, "", f"cannot read file: {exc.strerror or exc}")
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(Problem(file, line, None, "", "file is not valid UTF-8 text")) from None
    return parse_document(
        text,
        file,
        base_dir=Path(path).parent,
        env=env,
        substitute_env=substitute_env,
        read_secret_files=read_secret_files,
    )


def parse_document(
    text: str,
    file: str = "<string>",
    *,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    substitute_env: bool = True,
    read_secret_files: bool = True,
) -> Document:
    """Parse YAML text into a Document, collecting every problem before raising ConfigError.

    ``env`` defaults to ``os.environ``; relative ``*_file`` paths resolve against ``base_dir``
    (the current directory when None). An empty document gives ``{}``.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_syntax_problem(exc, file)) from None
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        line = col = None
        message = f"invalid YAML: {exc}"
        if isinstance(exc, yaml.reader.ReaderError):
            before = text[: exc.position]
            line = before.count("\n") + 1
            col = exc.position - (before.rfind("\n") + 1) + 1
            char = exc.character if isinstance(exc.character, int) else ord(exc.character)
            message = f"invalid YAML: character #x{char:04x} is not allowed ({exc.reason})"
        raise ConfigError(Problem(file, line, col, "", message)) from None
    if root is None:
        return Document(file=file, data={}, positions={(): (1, 1)})
    builder = _Builder(
        file,
        base_dir=base_dir,
        env=os.environ if env is None else env,
        substitute_env=substitute_env,
        read_secret_files=read_secret_files,
        max_values=len(text) + _MAX_ALIASED_VALUES,
    )
    builder.positions[()] = _mark(root)
    data = builder.build(root, ())
    if builder.problems:
        raise ConfigError(_sorted_unique(builder.problems))
    return Document(file=file, data=data, positions=builder.positions)


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.problem and exc.problem.startswith("but ") and exc.context:
        message = f"invalid YAML: {exc.context}, {exc.problem}"
    elif exc.problem and exc.context and exc.context_mark is not None:
        cm = exc.context_mark
        message += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
    if mark is None:
        return Problem(file, None, None, "", message)
    return Problem(file, mark.line + 1, mark.column + 1, "", message)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


# How many values aliases may add beyond what the text itself holds: a few lines of anchors
# repeating anchors ("billion laughs") would otherwise expand to billions of values.
_MAX_ALIASED_VALUES = 100_000

_ENV_REF = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$\{")


class _Builder:
    """Turns a composed node tree into plain data, recording positions and problems."""

    def __init__(
        self,
        file: str,
        *,
        base_dir: Path | None,
        env: Mapping[str, str],
        substitute_env: bool,
        read_secret_files: bool,
        max_values: int,
    ) -> None:
        self.file = file
        self.base_dir = base_dir
        self.env = env
        self.substitute_env = substitute_env
        self.read_secret_files = read_secret_files
        self.problems: list[Problem] = []
        self.positions: dict[Loc, tuple[int, int]] = {}
        # Collection nodes currently being built: an alias back into one of them is a cycle.
        self._active: set[int] = set()
        self._values_left = max_values

    def problem(self, pos: tuple[int | None, int | None], loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.file, pos[0], pos[1], format_path(loc), message))

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self._values_left -= 1
        if self._values_left < 0:
            if self._values_left == -1:  # say it once
                self.problem(
                    _mark(node),
                    loc,
                    "the document expands to too many values: aliases repeat aliases "
                    f"(more than {_MAX_ALIASED_VALUES} values added by aliases)",
                )
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self._active:
            self.problem(_mark(node), loc, "recursive alias: a node cannot contain itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, loc)
            return self._mapping(node, loc)
        finally:
            self._active.discard(id(node))

    # ----- scalars

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        tag, text = node.tag, node.value
        if tag == _STR:
            return self._substitute(text, node, loc) if self.substitute_env else text
        if tag == _NULL:
            return None
        try:
            if tag == _BOOL:
                low = text.lower()
                if low in ("true", "yes", "on"):
                    return True
                if low in ("false", "no", "off"):
                    return False
                raise ValueError
            if tag == _INT:
                return _parse_int(text)
            if tag == _FLOAT:
                return _parse_float(text)
        except ValueError:
            self.problem(_mark(node), loc, f"invalid {_short_tag(tag)} value '{text}'")
            return None
        self.problem(_mark(node), loc, f"unsupported YAML tag '{_short_tag(tag)}'")
        return None

    def _substitute(self, text: str, node: yaml.ScalarNode, loc: Loc) -> str:
        if "$" not in text:
            return text

        def replace(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole == "$$":
                return "$"
            name = m.group("name")
            default = m.group("default")
            if name is None or (default is not None and "${" in default):
                # A lone "$" passes through untouched (regex anchors); a malformed "${" does not.
                what = "" if _is_secret_loc(loc) else f" '{_clip(text[m.start() :])}'"
                self.problem(
                    _mark(node),
                    loc,
                    f"invalid environment variable reference{what}: "
                    "use ${NAME} or ${NAME:-default}, and $$ for a literal $",
                )
                return whole
            value = self.env.get(name)
            if default is not None and not value:
                return default  # like the shell: ':-' also covers a variable set to ""
            if value is None:
                self.problem(_mark(node), loc, f"environment variable {name} is not set")
                return whole
            return value

        return _ENV_REF.sub(replace, text)

    # ----- collections

    def _sequence(self, node: yaml.SequenceNode, loc: Loc) -> list[Any]:
        out = []
        for i, item in enumerate(node.value):
            self.positions[(*loc, i)] = _mark(item)
            out.append(self.build(item, (*loc, i)))
        return out

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        explicit, merged = self._pairs(node, loc)
        out: dict[str, Any] = {}
        seen: dict[str, tuple[int, int]] = {}
        for key_node, value_node in explicit:
            key = self._key(key_node, loc)
            if key is None:
                continue
            pos = _mark(key_node)
            if key in seen:
                self.problem(
                    pos,
                    (*loc, key),
                    f"duplicate key '{key}' (first defined at line {seen[key][0]})",
                )
                continue
            seen[key] = pos
            self.positions[(*loc, key)] = pos
            out[key] = self.build(value_node, (*loc, key))
        # "<<: *base" entries: explicit keys win, and among several bases the first one wins.
        for key_node, value_node in merged:
            key = self._key(key_node, loc)
            if key is None or key in seen:
                continue
            seen[key] = _mark(key_node)
            self.positions[(*loc, key)] = seen[key]
            out[key] = self.build(value_node, (*loc, key))
        if self.read_secret_files:
            out = self._read_file_keys(out, loc)
        return out

    def _pairs(
        self, node: yaml.MappingNode, loc: Loc
    ) -> tuple[list[tuple[yaml.Node, yaml.Node]], list[tuple[yaml.Node, yaml.Node]]]:
        explicit: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                explicit.append((key_node, value_node))
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.problem(
                        _mark(source), loc, "'<<' must merge a mapping or a list of mappings"
                    )
                    continue
                if id(source) in self._active:
                    self.problem(
                        _mark(source), loc, "recursive alias: a node cannot contain itself"
                    )
                    continue
                self._active.add(id(source))
                try:
                    inner_explicit, inner_merged = self._pairs(source, loc)
                finally:
                    self._active.discard(id(source))
                merged.extend(inner_explicit)
                merged.extend(inner_merged)
        return explicit, merged

    def _key(self, key_node: yaml.Node, loc: Loc) -> str | None:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR:
            return str(key_node.value)
        if isinstance(key_node, yaml.ScalarNode):
            kind = {_INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean", _NULL: "null"}.get(
                key_node.tag, f"a {_short_tag(key_node.tag)} value"
            )
            shown = f" {key_node.value}" if key_node.value and key_node.tag != _NULL else ""
            message = f"keys must be strings, got {kind}{shown}; quote the key to use it as text"
        else:
            message = "keys must be strings, got a " + (
                "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            )
        self.problem(_mark(key_node), loc, message)
        return None

    # ----- secrets from files

    def _read_file_keys(self, mapping: dict[str, Any], loc: Loc) -> dict[str, Any]:
        replaced: dict[str, str] = {}
        for key, value in mapping.items():
            if not key.endswith("_file") or key == "_file":
                continue
            target = key[: -len("_file")]
            key_loc = (*loc, key)
            pos = self.positions[key_loc]
            if target in mapping:
                self.problem(pos, key_loc, f"both '{target}' and '{key}' are set; use only one")
                continue
            if not isinstance(value, str) or not value.strip():
                self.problem(pos, key_loc, f"'{key}' must be the path of a file to read")
                continue
            file_path = Path(value).expanduser()
            if not file_path.is_absolute():
                file_path = (self.base_dir or Path.cwd()) / file_path
            try:
                content = file_path.read_text(encoding="utf-8")
            except OSError as exc:
                self.problem(pos, key_loc, f"cannot read file '{file_path}': {exc.strerror or exc}")
                continue
            except UnicodeDecodeError:
                self.problem(pos, key_loc, f"cannot read file '{file_path}': not UTF-8 text")
                continue
            replaced[key] = content.rstrip("\r\n")
        if not replaced:
            return mapping
        out: dict[str, Any] = {}
        for key, value in mapping.items():
            if key in replaced:
                target = key[: -len("_file")]
                out[target] = replaced[key]
                # The value came from the *_file line, so errors about it point there.
                self.positions[(*loc, target)] = self.positions.pop((*loc, key))
            else:
                out[key] = value
        return out


# --------------------------------------------------------------------------- validation


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
        model = _model_named(err.title)
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
    return _sorted_unique(problems)


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
            hint = _suggest(last, model, loc[:-1], _walk(root, loc[:-1]))
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
    secret = _is_secret_loc((*prefix, *loc)) or _is_secret_field(model, loc)
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


def _clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= _VALUE_MAX else text[: _VALUE_MAX - 3] + "..."


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
    return f"'{_clip(str(value))}'"


def _is_secret_loc(loc: Sequence[str | int]) -> bool:
    names = [item for item in loc if isinstance(item, str)]
    return bool(names) and any(word in names[-1].lower() for word in _SECRET_WORDS)


# ----- walking the model's type tree (for "did you mean" and SecretStr detection)


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


def _types_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[Any]:
    current: list[Any] = [model]
    for item in loc:
        current = [c for t in _expand(current) for c in _children(t, item)]
        if not current:
            return []
    return _expand(current)


def _suggest(key: str, model: type[BaseModel], parent: Loc, present: Any) -> str | None:
    names: set[str] = set()
    for t in _types_at(model, parent):
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


def _model_named(name: str) -> type[BaseModel] | None:
    found: list[type[BaseModel]] = []
    seen: set[type] = set()
    stack: list[type] = [BaseModel]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                if sub.__name__ == name:
                    found.append(sub)
    return found[0] if len(found) == 1 else None


def _is_secret_field(model: type[BaseModel] | None, loc: Loc) -> bool:
    if model is None:
        return False
    return any(t in (SecretStr, SecretBytes) for t in _types_at(model, loc))


def _sorted_unique(problems: Iterable[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0, p.column or 0))
