"""The escalation sections of the config: people, roles, teams, policies.

Schedules, calendars and maintenance windows have their own modules; this module only holds
who can be notified and how an incident climbs the tiers, plus the engine's own knobs.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from escalation.calendars import QuietHours
from rules.durations import Duration
from rules.matrix import CHANNELS, TARGET_KINDS, Repeat, Step, parse_target

__all__ = [
    "CHANNELS",
    "TARGET_KINDS",
    "EngineConfig",
    "Person",
    "Policy",
    "Team",
    "parse_target",
]


class Person(BaseModel):
    """Someone who can be paged, and how."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    email: str | None = None
    phone: str | None = None
    pagerduty_user: str | None = None
    timezone: str = "UTC"
    channels: list[str] = Field(default_factory=lambda: ["log"])
    fallback: list[str] = Field(default_factory=list)
    quiet_hours: QuietHours | None = None

    @field_validator("channels", "fallback")
    @classmethod
    def _known_channels(cls, v: list[str]) -> list[str]:
        for c in v:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r} (expected one of {', '.join(CHANNELS)})")
        return v


class Team(BaseModel):
    """A group of people, optionally with its own on-call schedule."""

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(default_factory=list)
    schedule: str | None = None


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


class EngineConfig(BaseModel):
    """How the escalation engine claims and waits for work (the ``engine:`` section).

    ``lease`` bounds how long a step or outbox row claimed by a replica that died stays
    untouched before another replica takes it over; it must comfortably exceed the time one
    batch takes to fire and deliver. ``poll`` is the longest the engine sleeps without looking
    at the store, the fallback for a lost wake-up notification.
    """

    model_config = ConfigDict(extra="forbid")

    lease: Duration = timedelta(seconds=30)
    poll: Duration = timedelta(seconds=5)
    batch: int = Field(default=200, ge=1, le=10000)

    @field_validator("lease", "poll")
    @classmethod
    def _positive_duration(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be positive")
        return v
