"""Decide how bad one alert is: rules in order, first match wins, ``continue`` adds or raises.

Pure and synchronous: ``classify`` takes the alert, its group and the instant to judge calendar
conditions at, and returns a ``Classification`` saying what was decided and why.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rules.alerts import Alert, Notification
from rules.matchers import Matcher
from rules.matrix import Matrix, rank
from rules.schema import Compare, Conditions, Outcome, Rule
from rules.templates import Template

__all__ = ["Classification", "Classifier", "RuleTrace", "TimeWindow"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class TimeWindow(Protocol):
    """A named calendar, as far as classification cares."""

    def contains(self, t: datetime) -> bool: ...


@dataclass(frozen=True)
class Classification:
    """The verdict for one alert."""

    severity: str
    severity_name: str
    policy: str | None
    team: str | None
    incident_key: str | None
    title: str
    rule: str
    matched: tuple[str, ...]
    reasons: tuple[str, ...]
    unknown_severity: str | None = None
    heartbeat: str | None = None  # a rule's ``heartbeat:``: this alert is that heartbeat's ping


@dataclass(frozen=True)
class RuleTrace:
    """How one rule fared against one alert (for ``tocsin explain``)."""

    rule: str
    file: str
    matched: bool
    why: tuple[str, ...]
    applied: bool = False


@dataclass
class _Acc:
    severity: str | None = None
    policy: str | None = None
    team: str | None = None
    key: str | None = None
    title: str | None = None
    heartbeat: str | None = None
    matched: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    unknown: str | None = None


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    name: str
    matchers: tuple[Matcher, ...]
    when: Conditions
    cont: bool
    key: Template | None
    title: Template | None


@dataclass(frozen=True)
class _Located:
    rule: Rule
    file: str


class Classifier:
    """Rules from several files, a matrix, a default and named calendars, ready to classify."""

    def __init__(
        self,
        rule_files: Sequence[tuple[str, Sequence[Rule]]],
        matrix: Matrix,
        default: Outcome | None = None,
        calendars: Mapping[str, TimeWindow] | None = None,
    ) -> None:
        self.matrix = matrix
        self.default = default or Outcome()
        self.calendars = dict(calendars or {})
        self._rules = [_Located(r, f) for f, rules in rule_files for r in rules]
        # Plain fields read once: pydantic's private attributes are slow on a hot path.
        self._compiled = [
            _Compiled(
                lr.rule,
                lr.rule.name,
                tuple(lr.rule.matchers),
                lr.rule.when,
                lr.rule.continue_,
                lr.rule.key_template,
                lr.rule.title_template,
            )
            for lr in self._rules
        ]
        self._default_tpls = (self.default.key_template, self.default.title_template)
        self._last_group: Notification | None = None
        self._last_firing = 0

    @property
    def rules(self) -> list[Rule]:
        return [lr.rule for lr in self._rules]

    # -- classification -------------------------------------------------------------------

    def _firing(self, group: Notification) -> int:
        # Every alert of a group is classified in turn; count its firing alerts once.
        if self._last_group is not group:
            self._last_group, self._last_firing = group, group.firing_count
        return self._last_firing

    def classify(self, alert: Alert, group: Notification, now: datetime) -> Classification:
        """Classify ``alert`` (one of ``group.alerts``) as of ``now``."""
        acc = _Acc()
        for c in self._compiled:
            if self._fails_fast(c, alert, group, now):
                continue
            self._apply(acc, c.rule, alert, group, first=not acc.matched, tpls=(c.key, c.title))
            acc.matched.append(c.name)
            if not c.cont:
                break
        if not acc.matched:
            self._apply(acc, self.default, alert, group, first=True, tpls=self._default_tpls)
            acc.reasons.append("no rule matched: default applies")
        if acc.severity is None:
            acc.severity = self._default_severity()
            acc.reasons.append(f"severity from the default: {acc.severity}")
        level_name = self.matrix.level(acc.severity).name
        key = acc.key
        title = acc.title
        dkey, dtitle = self._default_tpls
        if key is None and dkey is not None and acc.matched:
            key = dkey.render(_context(alert, group, level_name))
        if title is None:
            title = (
                dtitle.render(_context(alert, group, level_name)) if dtitle else None
            ) or _fallback_title(alert)
        return Classification(
            severity=acc.severity,
            severity_name=level_name,
            policy=acc.policy if acc.policy is not None else self.default.policy,
            team=acc.team if acc.team is not None else self.default.team,
            incident_key=key or None,
            title=title,
            rule=acc.matched[0] if acc.matched else "default",
            matched=tuple(acc.matched),
            reasons=tuple(acc.reasons),
            unknown_severity=acc.unknown,
            heartbeat=acc.heartbeat,
        )

    def _default_severity(self) -> str:
        if self.default.severity is not None:
            resolved = self.matrix.resolve(self.default.severity)
            if resolved is not None:
                return resolved
        return self.matrix.default_level

    def _apply(
        self,
        acc: _Acc,
        out: Outcome,
        alert: Alert,
        group: Notification,
        *,
        first: bool,
        tpls: tuple[Template | None, Template | None] | None = None,
    ) -> None:
        name = out.name if isinstance(out, Rule) else "default"
        key_tpl, title_tpl = tpls if tpls is not None else (out.key_template, out.title_template)
        sev = self._severity_of(acc, out, alert, name)
        if sev is not None:
            if acc.severity is None:
                acc.severity = sev
                acc.reasons.append(f"{name}: severity {sev}")
            elif rank(sev) < rank(acc.severity):
                acc.reasons.append(f"{name}: raised severity {acc.severity} -> {sev}")
                acc.severity = sev
        for attr, value in (
            ("policy", out.policy),
            ("team", out.team),
            ("heartbeat", out.heartbeat),
        ):
            if value is not None and getattr(acc, attr) is None:
                setattr(acc, attr, value)
        want_key = acc.key is None and key_tpl is not None
        want_title = acc.title is None and title_tpl is not None
        if not (want_key or want_title):
            return
        level = self.matrix.level(acc.severity or self._default_severity())
        ctx = _context(alert, group, level.name)
        # A template that fails or renders empty sets nothing: a later rule or the fallback
        # decides, so no incident is keyed or titled "".
        if want_key and key_tpl is not None:
            acc.key = key_tpl.render(ctx) or None
            if acc.key is None:
                acc.reasons.append(
                    f"{name}: incident_key template failed or was empty; using the group key"
                )
        if want_title and title_tpl is not None:
            acc.title = title_tpl.render(ctx) or None

    def _severity_of(self, acc: _Acc, out: Outcome, alert: Alert, name: str) -> str | None:
        for label in out.severity_from:
            value = alert.labels.get(label)
            if not value:  # as in Alertmanager, an empty label is a missing one
                continue
            resolved = self.matrix.resolve(value)
            if resolved is not None:
                acc.reasons.append(f"{name}: trusted label {label}={value!r} -> {resolved}")
                return resolved
            acc.unknown = value
            acc.reasons.append(f"{name}: label {label}={value!r} is not a known severity")
        if out.severity is not None:
            return self.matrix.resolve(out.severity)
        return None

    def _fails_fast(self, c: _Compiled, alert: Alert, group: Notification, now: datetime) -> bool:
        """The classify() path of ``_failures``: stop at the first thing that does not hold."""
        labels = alert.labels
        for m in c.matchers:
            if not m.matches(labels.get(m.name) or ""):
                return True
        w = c.when
        if (
            w.firing_at_least is None
            and not w.compare
            and w.calendar is None
            and w.outside_calendar is None
        ):
            return False
        return bool(self._failures(c.rule, alert, group, now, first_only=True))

    # -- explanation ------------------------------------------------------------------------

    def _failures(
        self, rule: Rule, alert: Alert, group: Notification, now: datetime, *, first_only: bool
    ) -> list[str]:
        why: list[str] = []
        for m in rule.matchers:
            actual = alert.labels.get(m.name)
            if not m.matches(actual or ""):
                shown = "missing" if actual is None else repr(actual)
                why.append(f"{m} did not match ({m.name} is {shown})")
                if first_only:
                    return why
        c = rule.when
        if c.firing_at_least is not None and self._firing(group) < c.firing_at_least:
            why.append(f"firing_at_least {c.firing_at_least}: {self._firing(group)} firing")
            if first_only:
                return why
        for cmp in c.compare:
            failed = _compare_failure(cmp, alert)
            if failed:
                why.append(failed)
                if first_only:
                    return why
        if c.calendar is not None:
            cal = self.calendars.get(c.calendar)
            if cal is None:
                why.append(f"calendar {c.calendar!r} is not configured")
            elif not cal.contains(now):
                why.append(f"outside calendar {c.calendar!r} at {now.isoformat()}")
        if c.outside_calendar is not None:
            cal = self.calendars.get(c.outside_calendar)
            if cal is None:
                why.append(f"calendar {c.outside_calendar!r} is not configured")
            elif cal.contains(now):
                why.append(f"inside calendar {c.outside_calendar!r} at {now.isoformat()}")
        return why

    def explain(
        self, alert: Alert, group: Notification, now: datetime
    ) -> tuple[Classification, list[RuleTrace]]:
        """Classify and say, for every rule, whether it matched and why not."""
        result = self.classify(alert, group, now)
        traces = []
        for lr in self._rules:
            why = self._failures(lr.rule, alert, group, now, first_only=False)
            traces.append(
                RuleTrace(
                    rule=lr.rule.name,
                    file=lr.file,
                    matched=not why,
                    why=tuple(why) if why else ("all matchers and conditions hold",),
                    applied=lr.rule.name in result.matched,
                )
            )
        return result, traces


def _compare_failure(cmp: Compare, alert: Alert) -> str | None:
    if cmp.label is not None:
        raw = alert.labels.get(cmp.label)
    else:
        raw = alert.annotations.get(cmp.annotation or "")
    if raw is None:
        return f"{cmp.source} is missing"
    try:
        value = float(raw.strip().rstrip("%"))
    except ValueError:
        return f"{cmp.source} is {raw!r}, not a number"
    if not _OPS[cmp.op](value, cmp.value):
        return f"{cmp.source} {value:g} {cmp.op} {cmp.value:g} is false"
    return None


def _context(alert: Alert, group: Notification, severity_name: str) -> dict[str, Any]:
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "status": alert.status,
        "fingerprint": alert.fingerprint,
        "startsAt": alert.starts_at.isoformat() if alert.starts_at else "",
        "generatorURL": alert.generator_url,
        "severity": severity_name,
        "receiver": group.receiver_name,
        "groupKey": group.group_key,
        "groupLabels": dict(group.group_labels),
        "commonLabels": dict(group.common_labels),
        "commonAnnotations": dict(group.common_annotations),
        "externalURL": group.external_url,
        "firing": group.firing_count,  # only built when a template renders
    }


def _fallback_title(alert: Alert) -> str:
    summary = alert.annotations.get("summary")
    name = alert.labels.get("alertname", "alert")
    return f"{name}: {summary}" if summary else name
