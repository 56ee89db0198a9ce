"""Escalation policies as configured: ordered steps, repeats, auto-resolve and ack timeout."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rules.durations import Duration
from rules.matrix import CHANNELS, TARGET_KINDS, Repeat, Step, parse_target

__all__ = ["CHANNELS", "TARGET_KINDS", "Policy", "Repeat", "Step", "parse_target"]


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
