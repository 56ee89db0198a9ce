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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic

from adapters.http import is_loopback
from adapters.registry import adapter_problems
from config.errors import ConfigError, Problem
from config.heartbeats import heartbeat_refs
from config.loader import Document, load_document, problems_from_validation_error
from config.opsgenie import priority_refs
from config.push import emergency_refs
from config.salvage import Salvaged, salvage_document
from config.schema import TocsinConfig, cross_check, known_names
from config.server import PAGERDUTY_RETRY_HORIZON
from escalation.incidents.steps import MatrixTiers
from escalation.oncall.calendars import Calendar
from rules.classifier import Classifier
from rules.durations import format_duration
from rules.matrix import (
    BUSINESS_HOURS,
    LEVELS,
    Matrix,
    MatrixConfig,
    build_matrix,
    load_preset,
)
from rules.schema import Outcome, RuleFile

__all__ = ["LoadedConfig", "SecretsMode", "load_config", "load_rule_file"]

_TEST_SUFFIXES = ("_test.yaml", "_test.yml")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with its matrix, rule files and classifier built."""

    path: Path
    config: TocsinConfig
    matrix: Matrix
    rule_files: list[tuple[str, RuleFile]]
    classifier: Classifier
    # Secrets left unset, found while loading with secrets="deferred" (offline tools).
    warnings: list[Problem] = field(default_factory=list)
    # SHA-256 of the config file's bytes as loaded: what is in force, whatever the file on
    # disk says after an edit that a reload refused.
    sha256: str = ""


def _problem(doc: Document, loc: tuple[str | int, ...], message: str) -> Problem:
    from config.loader import format_path

    line, col = doc.position(loc)
    return Problem(doc.file, line, col, format_path(loc), message)


def load_rule_file(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[Document, RuleFile]:
    """One rule file, validated on its own; raises ConfigError."""
    doc, rf, problems = _read_rule_file(path, env)
    if rf is None or problems:
        raise ConfigError(problems)
    return doc, rf


def _read_rule_file(
    path: str | Path, env: Mapping[str, str] | None
) -> tuple[Document, RuleFile | None, list[Problem]]:
    """A rule file's document, its model (None if invalid) and its own problems.

    The document is returned even when the model is invalid, so that checks against the
    config (an unknown severity next to an unknown key) still run on what the file says.
    Raises ConfigError only when the file cannot be read or parsed at all.
    """
    doc = load_document(path, env=env, read_secret_files=False)
    duplicates = _duplicate_rule_names(doc)
    try:
        rf = RuleFile.model_validate(doc.data)
    except pydantic.ValidationError as e:
        problems = problems_from_validation_error(e, doc, model=RuleFile)
        if duplicates:  # the model's own, unlocated, duplicate-name error is replaced
            problems = [p for p in problems if p.path or "is used twice" not in p.message]
        return doc, None, sorted(duplicates + problems, key=_by_position)
    return doc, rf, duplicates


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


SecretsMode = Literal["required", "deferred"]


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, secrets: SecretsMode = "required"
) -> LoadedConfig:
    """Load, validate and cross-check ``path``; raises ConfigError listing every problem.

    Every file is checked even when an earlier one has problems: config errors do not hide
    rule-file errors. ``secrets="deferred"`` is for offline tools: an unset ``${VAR}`` in a
    secret position is a warning (``LoadedConfig.warnings``), not an error, and the config is
    validated with a placeholder in its place.
    """
    path = Path(path)
    model = TocsinConfig if secrets == "deferred" else None
    try:
        doc = load_document(path, env=env, defer_secrets=model)
    except ConfigError as e:
        raise ConfigError(e.problems + _rules_despite(path, env), e.warnings) from None
    problems: list[Problem] = []
    try:
        cfg = TocsinConfig.model_validate(doc.data)
    except pydantic.ValidationError as e:
        problems = problems_from_validation_error(e, doc, model=TocsinConfig)
        rules = _RuleFiles(doc, None, _Names.as_written(doc), env)
        rules.load(path.parent, _raw_rule_patterns(doc))
        raise ConfigError(problems + rules.problems, doc.warnings) from None

    if BUSINESS_HOURS not in cfg.calendars:
        # The presets' business-hours tiers need this calendar; without one configured it is
        # Mon-Fri 09:00-17:00 UTC, so a minimal config (auth only) is valid as documented.
        cfg.calendars[BUSINESS_HOURS] = Calendar()
    matrix: Matrix | None = None
    try:
        matrix, tiers = _build_matrix(cfg, doc)
    except ConfigError as e:
        problems += e.problems
    else:
        problems += [
            _problem(doc, _as_written(doc, loc), msg) for loc, msg in cross_check(cfg, tiers.levels)
        ]
        refs = [
            *priority_refs(cfg.opsgenie, matrix.resolve, matrix.level_keys()),
            *heartbeat_refs(cfg, matrix.resolve, matrix.level_keys()),
            *emergency_refs(cfg.adapters, matrix.resolve, matrix.level_keys()),
        ]
        problems += [_problem(doc, _as_written(doc, loc), msg) for loc, msg in refs]
    problems += _adapter_problems(cfg, doc)
    names = _Names(cfg.policies, cfg.teams, cfg.calendars, matrix, cfg.heartbeats)
    rules = _RuleFiles(doc, cfg.rules.default, names, env)
    rules.load(path.parent, cfg.rules.files)
    problems += rules.problems
    if problems or matrix is None:
        raise ConfigError(problems, doc.warnings)
    classifier = Classifier(
        [(f, rf.rules) for f, rf in rules.loaded], matrix, rules.default, calendars=cfg.calendars
    )
    return LoadedConfig(
        path, cfg, matrix, rules.loaded, classifier, _warnings(cfg, doc), doc.sha256
    )


def _adapter_problems(cfg: TocsinConfig, doc: Document) -> list[Problem]:
    """What would keep ``serve`` from building the adapters, at the keys as written."""
    return [
        _problem(doc, ("adapters", *loc), msg)
        for loc, msg in adapter_problems(cfg.adapters, cfg.server.public_url)
        # A placeholder (a deferred secret) is no Vonage key: its warning already says it all.
        if ("adapters", *loc) not in doc.deferred
    ]


def _warnings(cfg: TocsinConfig, doc: Document) -> list[Problem]:
    """What a config that loads may still get wrong (``check --strict`` counts these)."""
    return [
        *doc.warnings,
        *_public_url_warnings(cfg, doc),
        *_pagerduty_match_warnings(cfg, doc),
        *_slack_writer_warnings(cfg, doc),
    ]


def _public_url_warnings(cfg: TocsinConfig, doc: Document) -> list[Problem]:
    """A loopback ``server.public_url`` while a channel sends links (or takes callbacks) from
    outside: they would open nothing on anyone else's machine."""
    a = cfg.adapters
    # ntfy's buttons are POSTed from people's phones and Pushover calls back from its servers.
    if all(s is None for s in (a.pagerduty, a.email, a.phone, a.ntfy, a.pushover)):
        return []
    host = urlsplit(cfg.server.public_url.strip()).hostname or ""
    if not is_loopback(host):
        return []
    message = (
        f"{cfg.server.public_url!r} is a loopback address: links in pages and emails, and phone "
        "callbacks, will not reach tocsin from anywhere else"
    )
    return [_problem(doc, ("server", "public_url"), message)]


def _pagerduty_match_warnings(cfg: TocsinConfig, doc: Document) -> list[Problem]:
    """Webhooks verified but no REST API token: PagerDuty's deliveries about incidents opened
    through the Events API carry no incident key, only its incidents' alerts (over REST) tell
    which tocsin incident they are about."""
    pd = cfg.adapters.pagerduty
    if pd is None or not pd.webhook_secrets:
        return []
    out: list[Problem] = []
    if pd.api_token is None:
        message = (
            "PagerDuty acks cannot be matched to incidents without adapters.pagerduty.api_token "
            "(a REST API key that can read incidents)"
        )
        out.append(_problem(doc, ("adapters", "pagerduty", "webhook_secrets"), message))
    window = cfg.server.replay_window
    if window < PAGERDUTY_RETRY_HORIZON:
        # A delivery answered 503 (store or REST lookup down) is retried by PagerDuty for up to
        # 48 hours; a retry older than the window is refused as stale and its ack is lost.
        message = (
            f"PagerDuty retries a webhook tocsin could not take for up to 48 hours; a retry more "
            f"than {format_duration(window)} after its event is refused as stale and lost"
        )
        out.append(_problem(doc, ("server", "replay_window"), message))
    return out


def _slack_writer_warnings(cfg: TocsinConfig, doc: Document) -> list[Problem]:
    """Every person may act from Slack (no ``adapters.slack.writers``) while the console lets
    some people only read: Slack's write scope is its own list, never the console's scopes
    (console sign-ins are token names or proxy emails, not necessarily people), so say so."""
    slack, console = cfg.adapters.slack, cfg.auth.console
    if slack is None or slack.writers:
        return []
    signers = [*console.users, *(cfg.auth.api_tokens if console.api_tokens else ())]
    readers = sorted({s.name for s in signers if s.scope == "read" and s.name in cfg.people})
    if console.proxy.trusted_proxies and console.proxy.scope == "read":
        narrowed = "auth.console.proxy lets only its writers act"
    elif readers:
        narrowed = f"the console lets {', '.join(readers)} only read"
    else:
        return []
    message = (
        f"every person may act from Slack (adapters.slack.writers is empty), though {narrowed}:"
        " Slack does not read the console's scopes; list who may act in adapters.slack.writers"
    )
    return [_problem(doc, ("adapters", "slack"), message)]


@dataclass(frozen=True)
class _Names:
    """What rule files may refer to: the config's policies, teams, calendars and matrix."""

    # None: not known (the section could not be read), names of that kind are not checked.
    policies: Mapping[str, Any] | None
    teams: Mapping[str, Any] | None
    calendars: Mapping[str, Any] | None
    matrix: Matrix | None  # None: the matrix is invalid, severities are not checked
    heartbeats: Mapping[str, Any] | None = None

    @classmethod
    def salvaged(cls, s: Salvaged) -> _Names:
        """What a config with a YAML syntax error certainly defines (``config.salvage``): the
        names of a section that could not be wholly read are unknown, not absent."""
        names = cls.as_written(s.doc)
        return cls(
            names.policies if s.readable("policies") else None,
            names.teams if s.readable("teams") else None,
            names.calendars if s.readable("calendars") else None,
            names.matrix if s.readable("matrix") else None,
            names.heartbeats if s.readable("heartbeats") else None,
        )

    @classmethod
    def as_written(cls, doc: Document) -> _Names:
        """The names a config that did not validate defines, so rule files are still checked."""
        data = doc.data if isinstance(doc.data, dict) else {}

        def section(name: str) -> dict[str, Any]:
            value = data.get(name)
            return value if isinstance(value, dict) else {}

        try:
            matrix: Matrix | None = build_matrix(
                MatrixConfig.model_validate(data.get("matrix") or {"preset": "default"})
            )
        except (pydantic.ValidationError, ValueError):
            matrix = None  # the config's own errors say why
        calendars = {BUSINESS_HOURS: None, **section("calendars")}
        return cls(section("policies"), section("teams"), calendars, matrix, section("heartbeats"))


def _rules_despite(path: Path, env: Mapping[str, str] | None) -> list[Problem]:
    """The rule files' problems when the config itself could not be read as written.

    An unset variable must not hide the rule files: read the config again without
    substituting, only to find ``rules.files``. Nor must a YAML syntax error: then the sections
    that still parse on their own are read (``config.salvage``), and the rule files are checked
    only against the names those sections certainly define.
    """
    try:
        doc = load_document(path, env=env, substitute_env=False, read_secret_files=False)
        names = _Names.as_written(doc)
    except ConfigError:
        salvaged = salvage_document(path)
        if salvaged is None:
            return []
        doc, names = salvaged.doc, _Names.salvaged(salvaged)
    rules = _RuleFiles(doc, None, names, env)
    rules.load(path.parent, _raw_rule_patterns(doc))
    return rules.problems


def _raw_rule_patterns(doc: Document) -> list[str]:
    """``rules.files`` as written, for a config whose model did not validate."""
    section = doc.data.get("rules") if isinstance(doc.data, dict) else None
    files = section.get("files") if isinstance(section, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


class _RuleFiles:
    """The rule files a config names, each loaded and checked against the config.

    Problems are collected rather than raised, so that one run reports every rule file's.
    """

    def __init__(
        self,
        doc: Document,
        default: Outcome | None,
        names: _Names,
        env: Mapping[str, str] | None,
    ) -> None:
        self.doc, self.names, self.env = doc, names, env
        self.default = default
        self.default_from = "the config's rules.default"
        self.loaded: list[tuple[str, RuleFile]] = []
        self.docs: dict[str, Document] = {}
        self.problems: list[Problem] = []

    def load(self, config_dir: Path, patterns: list[str]) -> None:
        """Load every file ``patterns`` (``rules.files``) name, relative to ``config_dir``."""
        for i, pattern in enumerate(patterns):
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
            rdoc, rf, problems = _read_rule_file(file, self.env)
        except ConfigError as e:
            self.problems += e.problems
            return
        self.problems += sorted(problems + _check_rules(rdoc, self.names), key=_by_position)
        if rf is None:
            return
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


def _check_rules(doc: Document, names: _Names) -> list[Problem]:
    """Names a rule file uses that the config does not define.

    Reads the document as written, not the model, so these are found even in a file that has
    other errors (an unknown key must not hide an unknown severity).
    """
    data = doc.data if isinstance(doc.data, dict) else {}
    rules = data.get("rules")
    entries: list[tuple[tuple[str | int, ...], Any]] = [
        (("rules", i), r) for i, r in enumerate(rules if isinstance(rules, list) else [])
    ]
    entries.append((("default",), data.get("default")))
    out: list[Problem] = []
    for loc, o in entries:
        if isinstance(o, dict):
            out += [_problem(doc, (*loc, *where), msg) for where, msg in _unknown(o, names)]
    return out


def _unknown(o: dict[str, Any], names: _Names) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    severity, policy, team = o.get("severity"), o.get("policy"), o.get("team")
    matrix = names.matrix
    if isinstance(severity, str) and matrix is not None and matrix.resolve(severity) is None:
        levels = ", ".join(f"{k} ({lv.name})" for k, lv in matrix.levels.items())
        out.append(
            (
                ("severity",),
                f"unknown severity {severity!r}; matrix {matrix.name!r} has {levels}",
            )
        )
    policies, teams, calendars = names.policies, names.teams, names.calendars
    if isinstance(policy, str) and policies is not None and policy not in policies:
        out.append((("policy",), f"unknown policy {policy!r}{known_names(policies)}"))
    if isinstance(team, str) and teams is not None and team not in teams:
        out.append((("team",), f"unknown team {team!r}{known_names(teams)}"))
    beat, beats = o.get("heartbeat"), names.heartbeats
    if isinstance(beat, str) and beats is not None and beat not in beats:
        out.append((("heartbeat",), f"unknown heartbeat {beat!r}{known_names(beats)}"))
    when = o.get("when")
    for key in ("calendar", "outside_calendar"):
        cal = when.get(key) if isinstance(when, dict) else None
        if isinstance(cal, str) and calendars is not None and cal not in calendars:
            message = f"unknown calendar {cal!r}{known_names(calendars)}"
            out.append((("when", key), message))
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
