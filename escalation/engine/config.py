"""The engine's own knobs (the ``engine:`` section of the config)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rules.durations import Duration

__all__ = ["EngineConfig"]


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
