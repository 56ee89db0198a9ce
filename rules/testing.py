"""Rule unit tests (``tocsin test``): alerts in, expected classification out, like promtool.

A test file::

    config: ../tocsin.yaml          # the service config whose matrix, rules and calendars apply
    rule_files: [../rules/*.yaml]   # optional: test these rule files instead of the config's
    at: 2026-11-23T10:00:00Z        # optional: instant for calendar conditions (default: this)
    tests:
      - name: API errors page the on-call
        alerts:
          - labels: {alertname: HighErrorRate, service: api, severity: critical}
            expect: {severity: P1, policy: api-urgent, rule: api-critical}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rules.alerts import Alert, Notification
from rules.classifier import Classification, Classifier

__all__ = ["CaseResult", "TestAlert", "TestCase", "TestFile", "run_case"]

DEFAULT_AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday morning, inside business hours


def _utc_if_naive(t: datetime | None) -> datetime | None:
    # A test author writing "2026-01-05T10:00:00" means UTC; a naive instant would crash the
    # calendar checks and the alert's own timestamp validation.
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


Instant = Annotated[datetime | None, AfterValidator(_utc_if_naive)]


class Expect(BaseModel):
    """What the classification must be; fields left out are not checked."""

    model_config = ConfigDict(extra="forbid")

    severity: str | None = None
    policy: str | None = None
    team: str | None = None
    rule: str | None = None
    incident_key: str | None = None
    title: str | None = None


class TestAlert(BaseModel):
    """One alert of a test case."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    expect: Expect


class TestCase(BaseModel):
    """Alerts that arrive together in one notification."""

    model_config = ConfigDict(extra="forbid")

    name: str
    at: Instant = None
    receiver: str = "tocsin"
    group_key: str = "{}:{}"
    alerts: list[TestAlert] = Field(min_length=1)


class TestFile(BaseModel):
    """A whole rule test file."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = None
    rule_files: list[str] | None = None
    at: Instant = None
    tests: list[TestCase] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    """One alert's outcome: empty ``failures`` means it passed."""

    case: str
    index: int
    labels: dict[str, str]
    got: Classification
    failures: tuple[str, ...]


def run_case(
    classifier: Classifier, case: TestCase, at: datetime | None = None
) -> list[CaseResult]:
    """Classify every alert of ``case`` and compare with its expectation."""
    when = case.at or at or DEFAULT_AT
    alerts = [
        Alert(
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            startsAt=when,
            endsAt=when if a.status == "resolved" else None,
        )
        for a in case.alerts
    ]
    group = Notification(
        version="4",
        receiver=case.receiver,
        status="firing" if any(a.firing for a in alerts) else "resolved",
        alerts=alerts,
        groupKey=case.group_key,
    )
    out = []
    for i, (ta, alert) in enumerate(zip(case.alerts, alerts, strict=True)):
        got = classifier.classify(alert, group, when)
        out.append(
            CaseResult(case.name, i, ta.labels, got, tuple(_compare(classifier, ta.expect, got)))
        )
    return out


def _compare(classifier: Classifier, exp: Expect, got: Classification) -> list[str]:
    fails: list[str] = []
    matrix = classifier.matrix
    if exp.severity is not None:
        want = matrix.resolve(exp.severity)
        if want is None:
            fails.append(f"severity: expected {exp.severity!r}, which the matrix does not know")
        elif want != got.severity:
            w, g = matrix.level(want).name, got.severity_name
            fails.append(f"severity: expected {want} ({w}), got {got.severity} ({g})")
    for field in ("policy", "team", "rule", "incident_key", "title"):
        want_v = getattr(exp, field)
        got_v = getattr(got, field)
        if want_v is not None and want_v != got_v:
            shown = repr(got_v) if got_v is not None else _NOT_SET[field]
            fails.append(f"{field}: expected {want_v!r}, got {shown}")
    return fails


# What an unset field means, so a failure never reads "got None".
_NOT_SET = {
    "policy": "no policy: no matching rule or default sets one (the matrix tiers apply)",
    "team": "no team: no matching rule or default sets one",
    "rule": "no rule",
    "incident_key": (
        "no incident key: no matching rule sets one, or its template failed or rendered "
        "empty (receiver + groupKey is used)"
    ),
    "title": "no title",
}
