"""People and teams: who can be notified, on which channels, and when they are quiet."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from escalation.oncall.calendars import QuietHours
from escalation.oncall.targets import CHANNELS

__all__ = ["Person", "Team"]


class Person(BaseModel):
    """Someone who can be paged, and how."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    email: str | None = None
    phone: str | None = None
    pagerduty_user: str | None = None
    ntfy_topic: str | None = None  # the ntfy topic this person's phone subscribes to
    pushover_user: str | None = None  # a Pushover user (or group) key
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
