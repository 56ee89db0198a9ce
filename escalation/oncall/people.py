"""People and teams: who can be notified, on which channels, and when they are quiet."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from escalation.oncall.calendars import QuietHours
from escalation.oncall.targets import CHANNELS

__all__ = ["ADDRESSES", "Person", "Team", "missing_address"]

_NTFY_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")  # what an ntfy server accepts as a topic
_PUSHOVER_KEY = re.compile(r"^[A-Za-z0-9]{30}$")  # Pushover user and group keys

ADDRESSES: dict[str, tuple[str, str]] = {
    "email": ("email", "email address"),
    "phone": ("phone", "phone number"),
    "sms": ("phone", "phone number"),
    # Slack finds the person's own user by their email address.
    "slack": ("email", "email address"),
    "ntfy": ("ntfy_topic", "ntfy_topic"),
    "pushover": ("pushover_user", "pushover_user"),
}
"""Channel kind → the person's field it sends to, and how to name it. The other channels need
nothing of the person: ``log`` writes a line, ``pagerduty`` pages through a service's routing
key, ``webhook`` and ``teams`` post to configured endpoints."""


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

    @field_validator("ntfy_topic")
    @classmethod
    def _ntfy_topic(cls, v: str | None) -> str | None:
        if v is not None and not _NTFY_TOPIC.match(v):
            raise ValueError("an ntfy topic is 1 to 64 of A-Z, a-z, 0-9, _ and -")
        return v

    @field_validator("pushover_user")
    @classmethod
    def _pushover_user(cls, v: str | None) -> str | None:
        if v is not None and not _PUSHOVER_KEY.match(v):
            raise ValueError("a Pushover user or group key is 30 letters and digits")
        return v

    @model_validator(mode="after")
    def _reachable(self) -> Person:
        # A channel listed without its address would fail every page sent through it.
        need = {"ntfy": self.ntfy_topic, "pushover": self.pushover_user}
        for channel, address in need.items():
            if channel in (*self.channels, *self.fallback) and address is None:
                field = "ntfy_topic" if channel == "ntfy" else "pushover_user"
                raise ValueError(f"channel {channel!r} needs {field}")
        return self


def missing_address(person: Person | Mapping[str, Any], channel: str) -> str | None:
    """What ``person`` lacks to be sent anything over ``channel`` (``kind`` or ``kind:instance``):
    ``"phone number"``, or None when the channel can be attempted for them."""
    need = ADDRESSES.get(channel.partition(":")[0])
    if need is None:
        return None
    field, what = need
    value = getattr(person, field) if isinstance(person, Person) else person.get(field)
    return None if value else what


class Team(BaseModel):
    """A group of people, optionally with its own on-call schedule."""

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(default_factory=list)
    schedule: str | None = None
