"""Load a service config and everything it names (matrix, rule files) into ready parts.

All problems of all files are gathered before failing, so ``tocsin check`` shows every one.

``rules.files`` globs skip rule unit-test files (``*_test.yaml`` / ``*_test.yml``, the files
``tocsin test`` runs), so tests can live next to the rules they test; naming such a file
literally, without wildcards, still loads it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from config.errors import ConfigError, Problem
from config.loader import Document, load_document, problems_from_validation_error
from config.schema import TocsinConfig, cross_check, known_names
from escalation.incidents.steps import MatrixTiers
from escalation.oncall.calendars import Calendar
from rules.classifier import Classifier
from rules.matrix import BUSINESS_HOURS, LEVELS, Matrix, build_matrix, load_preset
from rules.schema import Outcome, RuleFile

__all__ = ["LoadedConfig", "load_config", "load_rule_file"]

_TEST_SUFFIXES = ("_test.yaml", "_test.yml")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with its matrix, rule files and classifier built."""

    path: Path
    config: TocsinConfig
    matrix: Matrix
    rule_files: list[tuple[str, RuleFile]]
    classifier: Classifier


def _problem(doc: Document, loc: tuple[str | int, ...], message: str) -> Problem:
    from config.loader import format_path

    line, col = doc.position(loc)
    return Problem(doc.file, line, col, format_path(loc), message)


def load_rule_file(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[Document, RuleFile]:
    """One rule file, validated on its own; raises ConfigError."""
    doc = load_document(path, env=env, read_secret_files=False)
    duplicates = _duplicate_rule_names(doc)
    try:
        rf = RuleFile.model_validate(doc.data)
    except pydantic.ValidationError as e:
        problems = problems_from_validation_error(e, doc, model=RuleFile)
        if duplicates:  # the model's own, unlocated, duplicate-name error is replaced
            problems = [p for p in problems if p.path or "is used twice" not in p.message]
        raise ConfigError(sorted(duplicates + problems, key=_by_position)) from None
    if duplicates:
        raise ConfigError(duplicates)
    return doc, rf


def _duplicate_rule_names(doc: Document) -> list[Problem]:
    """Rule names used twice in one file, located at the second use."""
    rules = doc.data.get("rules") if isinstance(doc.data, dict) else None
    out: list[Problem] = []
    first: dict[str, int] = {}
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            line = doc.position(("rules", first[name]))[0]
            msg = f"rule name {name!r} is already used by rules[{first[name]}] (line {line})"
            out.append(_problem(doc, ("rules", i, "name"), msg))
        else:
            first[name] = i
    return out


def _by_position(p: Problem) -> tuple[bool, int, int]:
    return (p.line is None, p.line or 0, p.column or 0)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load, validate and cross-check ``path``; raises ConfigError listing every problem."""
    path = Path(path)
    doc = load_document(path, env=env)
    try:
        cfg = TocsinConfig.model_validate(doc.data)
    except pydantic.ValidationError as e:
        raise ConfigError(problems_from_validation_error(e, doc, model=TocsinConfig)) from None

    if BUSINESS_HOURS not in cfg.calendars:
        # The presets' business-hours tiers need this calendar; without one configured it is
        # Mon-Fri 09:00-17:00 UTC, so a minimal config (auth only) is valid as documented.
        cfg.calendars[BUSINESS_HOURS] = Calendar()
    matrix, tiers = _build_matrix(cfg, doc)
    problems = [
        _problem(doc, _as_written(doc, loc), msg) for loc, msg in cross_check(cfg, tiers.levels)
    ]
    rules = _RuleFiles(doc, cfg, matrix, env)
    rules.load(path.parent)
    problems += rules.problems
    if problems:
        raise ConfigError(problems)
    classifier = Classifier(
        [(f, rf.rules) for f, rf in rules.loaded], matrix, rules.default, calendars=cfg.calendars
    )
    return LoadedConfig(path, cfg, matrix, rules.loaded, classifier)


class _RuleFiles:
    """The rule files a config names, each loaded and checked against the config.

    Problems are collected rather than raised, so that one run reports every rule file's.
    """

    def __init__(
        self, doc: Document, cfg: TocsinConfig, matrix: Matrix, env: Mapping[str, str] | None
    ) -> None:
        self.doc, self.cfg, self.matrix, self.env = doc, cfg, matrix, env
        self.default: Outcome | None = cfg.rules.default
        self.default_from = "the config's rules.default"
        self.loaded: list[tuple[str, RuleFile]] = []
        self.docs: dict[str, Document] = {}
        self.problems: list[Problem] = []

    def load(self, config_dir: Path) -> None:
        """Load every file ``rules.files`` names, relative paths from ``config_dir``."""
        for i, pattern in enumerate(self.cfg.rules.files):
            full = os.path.normpath(
                pattern if Path(pattern).is_absolute() else config_dir / pattern
            )
            matches = sorted(glob.glob(full))
            if glob.has_magic(pattern):
                matches = [m for m in matches if not m.endswith(_TEST_SUFFIXES)]
            if not matches:
                where = ("rules", "files", i)
                self.problems.append(_problem(self.doc, where, f"no rule file matches {pattern!r}"))
            for file in matches:
                self._add(file)
        self._check_names_across_files()

    def _add(self, file: str) -> None:
        try:
            rdoc, rf = load_rule_file(file, self.env)
        except ConfigError as e:
            self.problems += e.problems
            return
        self.problems += _check_rules(rdoc, rf, self.cfg, self.matrix)
        if rf.default is not None:
            if self.default is not None:
                message = f"a default is already given by {self.default_from}"
                self.problems.append(_problem(rdoc, ("default",), message))
            else:
                self.default, self.default_from = rf.default, file
        self.loaded.append((file, rf))
        self.docs[file] = rdoc

    def _check_names_across_files(self) -> None:
        names: dict[str, str] = {}
        for file, rf in self.loaded:
            for i, r in enumerate(rf.rules):
                if r.name in names and names[r.name] != file:
                    message = f"rule {r.name!r} is also defined in {names[r.name]}"
                    self.problems.append(_problem(self.docs[file], ("rules", i, "name"), message))
                names.setdefault(r.name, file)


def _check_rules(doc: Document, rf: RuleFile, cfg: TocsinConfig, matrix: Matrix) -> list[Problem]:
    out: list[Problem] = []
    entries: list[tuple[tuple[str | int, ...], Outcome]] = [
        (("rules", i), r) for i, r in enumerate(rf.rules)
    ]
    if rf.default is not None:
        entries.append((("default",), rf.default))
    for loc, o in entries:
        if o.severity is not None and matrix.resolve(o.severity) is None:
            levels = ", ".join(f"{k} ({lv.name})" for k, lv in matrix.levels.items())
            out.append(
                _problem(
                    doc,
                    (*loc, "severity"),
                    f"unknown severity {o.severity!r}; matrix {matrix.name!r} has {levels}",
                )
            )
        if o.policy is not None and o.policy not in cfg.policies:
            out.append(
                _problem(
                    doc, (*loc, "policy"), f"unknown policy {o.policy!r}{known_names(cfg.policies)}"
                )
            )
        if o.team is not None and o.team not in cfg.teams:
            out.append(
                _problem(doc, (*loc, "team"), f"unknown team {o.team!r}{known_names(cfg.teams)}")
            )
        when = getattr(o, "when", None)
        if when is not None:
            for field in ("calendar", "outside_calendar"):
                cal = getattr(when, field)
                if cal is not None and cal not in cfg.calendars:
                    out.append(
                        _problem(
                            doc,
                            (*loc, "when", field),
                            f"unknown calendar {cal!r}{known_names(cfg.calendars)}",
                        )
                    )
    return out


def _as_written(doc: Document, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Map a location in the validated model back to where the YAML wrote it.

    A schedule written in shorthand (``members``/``start`` at its top level) is validated as
    ``layers[0]``; errors about it must point at the shorthand keys the file really has.
    """
    if (
        len(loc) > 4
        and loc[0] == "schedules"
        and loc[2:4] == ("layers", 0)
        and (loc[:3] not in doc.positions)
    ):
        return (*loc[:2], *loc[4:])
    return loc


def _build_matrix(cfg: TocsinConfig, doc: Document) -> tuple[Matrix, MatrixTiers]:
    """The effective matrix and its levels' tiers as escalation steps; ConfigError if invalid."""
    try:
        matrix = build_matrix(cfg.matrix)
    except pydantic.ValidationError as e:
        raise ConfigError(_matrix_problems(e, doc, cfg, Matrix)) from None
    except ValueError as e:
        raise ConfigError([_problem(doc, ("matrix",), str(e))]) from None
    try:
        return matrix, MatrixTiers.of(matrix)
    except pydantic.ValidationError as e:
        # Same locations (``levels.<key>.tiers.<i>``) as the matrix's own errors.
        raise ConfigError(_matrix_problems(e, doc, cfg, MatrixTiers)) from None


def _matrix_problems(
    err: pydantic.ValidationError,
    doc: Document,
    cfg: TocsinConfig,
    model: type[pydantic.BaseModel],
) -> list[Problem]:
    """Locate a merged matrix's validation errors at the ``matrix.levels`` keys as written.

    The effective matrix uses canonical keys (``P1``); the config may have overridden that
    level under one of its names or aliases (``SEV2``), which is what the error must name.
    """
    base = load_preset(cfg.matrix.preset) if cfg.matrix.preset else None
    written: dict[str, str] = {}
    for key in cfg.matrix.levels:
        canon: str | None = key.strip().upper()
        if canon not in LEVELS:
            canon = base.resolve(key) if base is not None else None
        if canon is not None:
            written[canon] = key
    errors: list[Any] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        if len(loc) >= 2 and loc[0] == "levels" and isinstance(loc[1], str):
            loc = ("levels", written.get(loc[1], loc[1]), *loc[2:])
            e = {**e, "loc": loc}
        elif not loc and "default_level" in e["msg"] and cfg.matrix.default_level is not None:
            e = {**e, "loc": ("default_level",), "input": cfg.matrix.default_level}
        errors.append(e)
    remapped = pydantic.ValidationError.from_exception_data(err.title, errors)
    return problems_from_validation_error(remapped, doc, prefix=("matrix",), model=model)
