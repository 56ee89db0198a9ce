"""Load tocsin's YAML files (service config and rule files) keeping every key's position.

The pipeline is: YAML text -> node tree (``yaml.compose`` with the YAML 1.2 scalars of
``config.yaml12``, which keeps marks) -> plain Python data (dict/list/str/int/float/bool/None)
plus a map from each key's path to its line and column (``config.document``) -> ``${ENV}``
substitution in string values -> ``*_file`` secrets -> pydantic validation, whose errors
``config.validation`` turns back into ``file:line:column: path: message`` Problems.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel

from config.document import Document, Loc, clip, format_path, is_secret_loc
from config.errors import ConfigError, Problem, sorted_problems
from config.model_types import is_secret_field
from config.validation import BaseModelT, problems_from_validation_error, validate
from config.yaml12 import (
    BOOL,
    FLOAT,
    INT,
    MERGE,
    NULL,
    STR,
    Loader,
    parse_float,
    parse_int,
    short_tag,
)

# Loading is the entry point: what callers need to load and validate a file imports from here.
__all__ = [
    "BaseModelT",
    "Document",
    "format_path",
    "load_document",
    "parse_document",
    "problems_from_validation_error",
    "validate",
]


def load_document(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    substitute_env: bool = True,
    read_secret_files: bool = True,
    defer_secrets: type[BaseModel] | None = None,
) -> Document:
    """Read and parse a YAML file; ``*_file`` paths resolve against the file's directory.

    Raises ConfigError (naming the file) if it cannot be read or is not valid. With
    ``defer_secrets`` (the model the file is validated against), see ``parse_document``.
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
    doc = parse_document(
        text,
        file,
        base_dir=Path(path).parent,
        env=env,
        substitute_env=substitute_env,
        read_secret_files=read_secret_files,
        defer_secrets=defer_secrets,
    )
    doc.sha256 = hashlib.sha256(raw).hexdigest()
    return doc


def parse_document(
    text: str,
    file: str = "<string>",
    *,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    substitute_env: bool = True,
    read_secret_files: bool = True,
    defer_secrets: type[BaseModel] | None = None,
) -> Document:
    """Parse YAML text into a Document, collecting every problem before raising ConfigError.

    ``env`` defaults to ``os.environ``; relative ``*_file`` paths resolve against ``base_dir``
    (the current directory when None). An empty document gives ``{}``.

    ``defer_secrets``: offline tools (check, test, explain, simulate) run where production
    secrets are absent, as in a rules repository's CI. With the model the document is
    validated against, an unset ``${VAR}`` in a secret position (a SecretStr field or a
    secret-looking key), or a ``*_file`` for one that cannot be read, becomes a placeholder and a
    warning in ``Document.warnings`` instead of an error; anything else unset stays an error.
    """
    try:
        root = yaml.compose(text, Loader=Loader)
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
        defer_secrets=defer_secrets,
    )
    builder.positions[()] = _mark(root)
    data = builder.build(root, ())
    if builder.problems:
        raise ConfigError(sorted_problems(builder.problems))
    return Document(
        file=file,
        data=data,
        positions=builder.positions,
        warnings=builder.warnings,
        deferred=builder.deferred,
    )


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


# How many values aliases may add beyond what the text itself holds: a few lines of anchors
# repeating anchors ("billion laughs") would otherwise expand to billions of values.
_MAX_ALIASED_VALUES = 100_000

# Long enough for every length rule a secret has (link_secret's minimum, a PagerDuty routing
# key's exact 32), so a deferred secret does not turn into a spurious length error.
SECRET_PLACEHOLDER_LENGTH = 32


def _placeholder(name: str) -> str:
    return f"unset-{name}"[:SECRET_PLACEHOLDER_LENGTH].ljust(SECRET_PLACEHOLDER_LENGTH, "-")


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
        defer_secrets: type[BaseModel] | None = None,
    ) -> None:
        self.file = file
        self.defer_secrets = defer_secrets
        self.warnings: list[Problem] = []
        # Where a placeholder stands in for a deferred secret (see ``Document.deferred``).
        self.deferred: set[Loc] = set()
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
            # yaml.compose makes scalars, sequences and mappings only.
            return self._mapping(cast(yaml.MappingNode, node), loc)
        finally:
            self._active.discard(id(node))

    # ----- scalars

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        tag, text = node.tag, node.value
        if tag == STR:
            return self._substitute(text, node, loc) if self.substitute_env else text
        if tag == NULL:
            return None
        try:
            if tag == BOOL:
                low = text.lower()
                if low in ("true", "yes", "on"):
                    return True
                if low in ("false", "no", "off"):
                    return False
                raise ValueError
            if tag == INT:
                return parse_int(text)
            if tag == FLOAT:
                return parse_float(text)
        except ValueError:
            self.problem(_mark(node), loc, f"invalid {short_tag(tag)} value '{text}'")
            return None
        self.problem(_mark(node), loc, f"unsupported YAML tag '{short_tag(tag)}'")
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
                what = "" if is_secret_loc(loc) else f" '{clip(text[m.start() :])}'"
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
                return self._unset(name, whole, node, loc)
            return value

        return _ENV_REF.sub(replace, text)

    def _unset(self, name: str, whole: str, node: yaml.ScalarNode, loc: Loc) -> str:
        model = self.defer_secrets
        if model is not None and (is_secret_loc(loc) or is_secret_field(model, loc)):
            line, col = _mark(node)
            message = f"serve will refuse to start: {name} is not set"
            self.warnings.append(Problem(self.file, line, col, format_path(loc), message))
            self.deferred.add(loc)
            return _placeholder(name)
        self.problem(_mark(node), loc, f"environment variable {name} is not set")
        return whole

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
            if key_node.tag != MERGE:
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
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == STR:
            return str(key_node.value)
        if isinstance(key_node, yaml.ScalarNode):
            kind = {INT: "an integer", FLOAT: "a number", BOOL: "a boolean", NULL: "null"}.get(
                key_node.tag, f"a {short_tag(key_node.tag)} value"
            )
            shown = f" {key_node.value}" if key_node.value and key_node.tag != NULL else ""
            message = f"keys must be strings, got {kind}{shown}; quote the key to use it as text"
        else:
            message = "keys must be strings, got a " + (
                "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            )
        self.problem(_mark(key_node), loc, message)
        return None

    # ----- secrets from files

    def _defer_file(
        self, pos: tuple[int, int], key_loc: Loc, target: Loc, shown: str, reason: str
    ) -> bool:
        """Like an unset ``${VAR}``: a secret file the offline tools cannot read (absent from a
        rules repository's CI, or there but not readable by it) is a warning and a placeholder.

        Only a file the file system refuses: one that was read but is not UTF-8 text is wrong
        wherever it is read, and stays an error.
        """
        model = self.defer_secrets
        if model is None or not (is_secret_loc(target) or is_secret_field(model, target)):
            return False
        message = f"serve will refuse to start: {shown} cannot be read: {reason}"
        self.warnings.append(Problem(self.file, pos[0], pos[1], format_path(key_loc), message))
        self.deferred.add(target)
        return True

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
                reason = exc.strerror or str(exc)
                if not self._defer_file(pos, key_loc, (*loc, target), f"'{file_path}'", reason):
                    self.problem(pos, key_loc, f"cannot read file '{file_path}': {reason}")
                    continue
                content = _placeholder(target)
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
