"""Escalation policies: ordered steps of whom to notify when, repeats, ack timeout.

A policy comes from the ``policies:`` config section or from a matrix level's own ``tiers``;
``rules`` keeps a level's tiers as the data written, and ``LevelTiers`` is where they become
steps (validated once when the config loads, then cached for incidents that open).
"""

from __future__ import annotations

import functools
import json
import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from escalation.oncall.targets import CHANNELS, parse_target
from rules.durations import Duration
from rules.matrix import CALENDAR_NAME, Level, Matrix, check_calendar

__all__ = ["LevelTiers", "MatrixTiers", "Policy", "Repeat", "Step", "Unless", "level_tiers"]

Unless = Literal["acknowledged", "mitigated", "resolved"]
"""The status that cancels a step once the incident reaches it."""

_AT_RE = re.compile(rf"^({CALENDAR_NAME}):(open|next-day)$")


class Step(BaseModel):
    """One escalation tier: whom to notify, when (from incident start), and what cancels it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    after: Duration = Field(default=timedelta(0))
    # "<calendar>:open" = next opening of that calendar at/after start+after;
    # "<calendar>:next-day" = opening of the next business day after start+after.
    at: str | None = None
    # The step is deferred (never dropped) until the instant falls inside this calendar.
    during: str | None = None
    unless: Unless | None = "acknowledged"
    notify: list[str]
    via: list[str] = []

    @field_validator("unless", mode="before")
    @classmethod
    def _regardless(cls, v: Any) -> Any:
        # YAML authors write "regardless" for "this step fires whatever the status".
        if isinstance(v, str) and v.strip().lower() == "regardless":
            return None
        return v

    @field_validator("at")
    @classmethod
    def _check_at(cls, v: str | None) -> str | None:
        if v is not None and not _AT_RE.match(v):
            raise ValueError(
                f"'at' must be '<calendar>:open' or '<calendar>:next-day' "
                f"(e.g. 'business-hours:next-day'), got {v!r}"
            )
        return v

    @field_validator("during")
    @classmethod
    def _check_during(cls, v: str | None) -> str | None:
        return check_calendar(v, "'during'")

    @field_validator("notify")
    @classmethod
    def _check_notify(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("notify must name at least one target")
        for ref in v:
            parse_target(ref)
        return v

    @field_validator("via")
    @classmethod
    def _check_via(cls, v: list[str]) -> list[str]:
        for channel in v:
            kind, _, instance = channel.partition(":")
            if kind not in CHANNELS or (":" in channel and not instance):
                raise ValueError(
                    f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}"
                )
        return v

    def target_refs(self) -> list[tuple[str, str]]:
        """The notify targets as ``(kind, name)`` pairs (bare names are roles)."""
        return [parse_target(ref) for ref in self.notify]


class Repeat(BaseModel):
    """Re-run the whole step list ``times`` more times, ``every`` apart, until cancelled."""

    model_config = ConfigDict(extra="forbid")

    times: int = Field(default=0, ge=0)
    every: Duration

    @model_validator(mode="after")
    def _positive_interval(self) -> Repeat:
        if self.times > 0 and self.every <= timedelta(0):
            raise ValueError("repeat.every must be longer than 0 when repeat.times > 0")
        return self


class Policy(BaseModel):
    """Ordered escalation steps, repeated while nobody has acknowledged."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    steps: list[Step] = Field(min_length=1)
    repeat: Repeat | None = None
    auto_resolve: bool = True
    ack_timeout: Duration | None = None
    reminders: bool = True

    @field_validator("ack_timeout")
    @classmethod
    def _positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("ack_timeout must be positive")
        return v


class LevelTiers(BaseModel):
    """A matrix level's escalation: the named policy it uses, or its own tiers and repeat."""

    # The rest of the level (names, targets, cadences) is the matrix's business.
    model_config = ConfigDict(extra="ignore")

    policy: str | None = None
    tiers: list[Step] = []
    repeat: Repeat | None = None


class MatrixTiers(BaseModel):
    """Every level's escalation, keyed by level as in the matrix.

    Validated as ``{"levels": {key: level}}`` so that an error's location
    (``levels.<key>.tiers.<i>.<field>``) is where the matrix section holds it.
    """

    levels: dict[str, LevelTiers]

    @classmethod
    def of(cls, matrix: Matrix) -> MatrixTiers:
        """Each level's tiers as steps; pydantic's ValidationError when one is not valid."""
        return cls.model_validate({"levels": {k: _raw(lv) for k, lv in matrix.levels.items()}})


def _raw(level: Level) -> dict[str, Any]:
    return {"policy": level.policy, "tiers": level.tiers, "repeat": level.repeat}


def level_tiers(level: Level) -> LevelTiers:
    """A level's escalation as steps (parsed once per distinct level: incidents open often)."""
    return _parse_level(json.dumps(_raw(level), sort_keys=True, default=str))


@functools.lru_cache(maxsize=256)
def _parse_level(encoded: str) -> LevelTiers:
    return LevelTiers.model_validate(json.loads(encoded))
