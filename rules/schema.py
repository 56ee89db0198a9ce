"""The rule-file schema: what an SRE writes to say how bad an alert is.

A rule file holds ``rules:`` (tried in order, first match wins unless ``continue: true``) and at
most one ``default:`` for alerts no rule matches. See the README's rule-file reference.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from rules.matchers import Matcher, MatcherError, parse_matchers
from rules.templates import Template, TemplateLimitExceeded, TemplateSyntaxProblem

__all__ = ["Compare", "Conditions", "Outcome", "Rule", "RuleFile"]

CompareOp = Literal[">", ">=", "<", "<=", "==", "!="]


class Compare(BaseModel):
    """Numeric comparison of one label's or annotation's value."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, min_length=1)
    annotation: str | None = Field(default=None, min_length=1)
    op: CompareOp
    value: float

    @model_validator(mode="after")
    def _one_source(self) -> Compare:
        if (self.label is None) == (self.annotation is None):
            raise ValueError("give exactly one of 'label' or 'annotation'")
        return self

    @property
    def source(self) -> str:
        return f"label {self.label}" if self.label is not None else f"annotation {self.annotation}"


class Conditions(BaseModel):
    """Conditions beyond label matchers; all given must hold."""

    model_config = ConfigDict(extra="forbid")

    firing_at_least: int | None = Field(default=None, ge=1)
    compare: list[Compare] = Field(default_factory=list)
    calendar: str | None = None
    outside_calendar: str | None = None


class Outcome(BaseModel):
    """What a rule (or the default) sets."""

    model_config = ConfigDict(extra="forbid")

    severity: str | None = None
    severity_from: list[str] = Field(default_factory=list)
    policy: str | None = None
    team: str | None = None
    incident_key: str | None = None
    title: str | None = None
    # A matching alert pings this heartbeat instead of opening an incident (the Watchdog).
    heartbeat: str | None = Field(default=None, min_length=1)

    _key_tpl: Template | None = PrivateAttr(default=None)
    _title_tpl: Template | None = PrivateAttr(default=None)

    @field_validator("severity_from", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("incident_key", "title")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                Template(v).check_limits()
            except TemplateSyntaxProblem as e:
                raise ValueError(str(e)) from None
            except TemplateLimitExceeded as e:
                # Refused here rather than failing on every alert at run time.
                raise ValueError(f"template {v!r} exceeds a rendering limit: {e}") from None
        return v

    def model_post_init(self, _ctx: Any) -> None:
        self._key_tpl = Template(self.incident_key) if self.incident_key else None
        self._title_tpl = Template(self.title) if self.title else None

    @property
    def key_template(self) -> Template | None:
        return self._key_tpl

    @property
    def title_template(self) -> Template | None:
        return self._title_tpl


class Rule(Outcome):
    """One classification rule: matchers + conditions → outcome."""

    name: str = Field(min_length=1)
    match: list[str] = Field(default_factory=list)
    when: Conditions = Field(default_factory=Conditions)
    continue_: bool = Field(default=False, alias="continue")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _matchers: list[Matcher] = PrivateAttr(default_factory=list)

    @field_validator("match", mode="before")
    @classmethod
    def _match_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("match")
    @classmethod
    def _parse(cls, v: list[str]) -> list[str]:
        for text in v:
            try:
                parse_matchers(text)
            except MatcherError as e:
                raise ValueError(f"bad matcher {text!r}: {e}") from None
        return v

    def model_post_init(self, ctx: Any) -> None:
        super().model_post_init(ctx)
        self._matchers = [m for text in self.match for m in parse_matchers(text)]

    @property
    def matchers(self) -> list[Matcher]:
        return self._matchers


class RuleFile(BaseModel):
    """One rule file as written."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    default: Outcome | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> RuleFile:
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"rule name {r.name!r} is used twice")
            seen.add(r.name)
        return self
