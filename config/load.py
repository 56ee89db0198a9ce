"""Load a service config and everything it names (matrix, rule files) into ready parts.

All problems of all files are gathered before failing, so ``tocsin check`` shows every one.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config.errors import ConfigError, Problem
from config.loader import Document, load_document, problems_from_validation_error
from config.schema import TocsinConfig, cross_check
from rules.classifier import Classifier
from rules.matrix import Matrix, build_matrix
from rules.schema import Outcome, RuleFile

__all__ = ["LoadedConfig", "load_config", "load_rule_file"]


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


def load_rule_file(path: str | Path, env: Mapping[str, str] | None = None) -> tuple[Document, RuleFile]:
    """One rule file, validated on its own; raises ConfigError."""
    import pydantic

    doc = load_document(path, env=env, read_secret_files=False)
    try:
        return doc, RuleFile.model_validate(doc.data)
    except pydantic.ValidationError as e:
        raise ConfigError(problems_from_validation_error(e, doc, model=RuleFile)) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load, validate and cross-check ``path``; raises ConfigError listing every problem."""
    import pydantic

    path = Path(path)
    doc = load_document(path, env=env)
    try:
        cfg = TocsinConfig.model_validate(doc.data)
    except pydantic.ValidationError as e:
        raise ConfigError(problems_from_validation_error(e, doc, model=TocsinConfig)) from None

    problems: list[Problem] = []
    try:
        matrix = build_matrix(cfg.matrix)
    except (ValueError, pydantic.ValidationError) as e:
        raise ConfigError([_problem(doc, ("matrix",), str(e))]) from None
    problems += [_problem(doc, loc, msg) for loc, msg in cross_check(cfg, matrix.levels)]

    rule_files: list[tuple[str, RuleFile]] = []
    default: Outcome | None = cfg.rules.default
    default_from = "the config's rules.default"
    for i, pattern in enumerate(cfg.rules.files):
        full = pattern if Path(pattern).is_absolute() else str(path.parent / pattern)
        matches = sorted(glob.glob(full))
        if not matches:
            problems.append(_problem(doc, ("rules", "files", i), f"no rule file matches {pattern!r}"))
        for file in matches:
            try:
                rdoc, rf = load_rule_file(file, env)
            except ConfigError as e:
                problems += e.problems
                continue
            problems += _check_rules(rdoc, rf, cfg, matrix)
            if rf.default is not None:
                if default is not None:
                    problems.append(
                        _problem(rdoc, ("default",), f"a default is already given by {default_from}")
                    )
                else:
                    default, default_from = rf.default, file
            rule_files.append((file, rf))
    names: dict[str, str] = {}
    for file, rf in rule_files:
        for r in rf.rules:
            if r.name in names and names[r.name] != file:
                problems.append(Problem(file, None, None, "rules", f"rule {r.name!r} is also defined in {names[r.name]}"))
            names.setdefault(r.name, file)
    if problems:
        raise ConfigError(problems)
    classifier = Classifier(
        [(f, rf.rules) for f, rf in rule_files], matrix, default, calendars=cfg.calendars
    )
    return LoadedConfig(path, cfg, matrix, rule_files, classifier)


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
            out.append(_problem(doc, (*loc, "severity"), f"unknown severity {o.severity!r}; matrix {matrix.name!r} has {levels}"))
        if o.policy is not None and o.policy not in cfg.policies:
            out.append(_problem(doc, (*loc, "policy"), f"unknown policy {o.policy!r}{_known(cfg.policies)}"))
        if o.team is not None and o.team not in cfg.teams:
            out.append(_problem(doc, (*loc, "team"), f"unknown team {o.team!r}{_known(cfg.teams)}"))
        when = getattr(o, "when", None)
        if when is not None:
            for field in ("calendar", "outside_calendar"):
                cal = getattr(when, field)
                if cal is not None and cal not in cfg.calendars:
                    out.append(_problem(doc, (*loc, "when", field), f"unknown calendar {cal!r}{_known(cfg.calendars)}"))
    return out


def _known(d: Mapping[str, object]) -> str:
    return f" (known: {', '.join(sorted(d))})" if d else " (none are configured)"
