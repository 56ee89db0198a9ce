"""Alertmanager's webhook notification (version "4") as it really arrives, v0.19 onwards.

Shapes and quirks: ../shared/protocols.md §1. Firing alerts carry ``endsAt`` of year 1, which we
read as "no end"; timestamps may carry nine fractional digits and any offset; fields added in later
releases (``fingerprint`` 0.19, ``truncatedAlerts`` 0.21, ``notification_reason`` 0.32,
``routeLabels`` 0.34) are optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

__all__ = ["Alert", "Notification", "fingerprint", "parse_timestamp"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's label-set fingerprint (FNV-1a 64 over sorted names and values, 0xff-split).

    Used when a payload predates v0.19 and has none, so dedup keys match what newer
    Alertmanagers would have sent for the same alert.
    """
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for b in part.encode():
                h = ((h ^ b) * _FNV_PRIME) & _MASK
            h = ((h ^ 0xFF) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 with up to nine fractional digits and any offset → aware UTC; year 1 → None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value[:64]!r}") from None
    else:
        raise ValueError(f"expected an RFC 3339 timestamp string, got {type(value).__name__}")
    if dt.tzinfo is None:
        raise ValueError(f"timestamp has no timezone offset: {str(value)[:64]!r}")
    if dt.year <= 1:
        return None
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-12:00 is past year 9999 in UTC
        raise ValueError(f"timestamp is out of range in UTC: {str(value)[:64]!r}") from None


Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]
LabelSet = dict[str, str]


class Alert(BaseModel):
    """One alert of the group, with its own status and fingerprint."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: LabelSet = Field(default_factory=dict)
    starts_at: Timestamp = Field(alias="startsAt")
    ends_at: Timestamp = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _labels_not_empty(cls, v: LabelSet) -> LabelSet:
        if not v:
            raise ValueError("an alert must have at least one label")
        return v

    @field_validator("starts_at")
    @classmethod
    def _starts_at_required(cls, v: datetime | None) -> datetime | None:
        if v is None:
            raise ValueError("startsAt must be a real time, not the zero time")
        return v

    def model_post_init(self, _ctx: Any) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))

    @property
    def firing(self) -> bool:
        return self.status == "firing"


class Notification(BaseModel):
    """The whole webhook body: one aggregation group's current alerts."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    version: Literal["4"]
    receiver: str
    status: Literal["firing", "resolved"]
    alerts: list[Alert]
    group_labels: LabelSet = Field(default_factory=dict, alias="groupLabels")
    common_labels: LabelSet = Field(default_factory=dict, alias="commonLabels")
    common_annotations: LabelSet = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    group_key: str = Field(alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    notification_reason: str | None = None
    route_labels: LabelSet = Field(default_factory=dict, alias="routeLabels")

    @property
    def receiver_name(self) -> str:
        """The receiver as configured: Alertmanager passes it through regexp.QuoteMeta."""
        return unquote_meta(self.receiver)

    @property
    def firing_count(self) -> int:
        return sum(1 for a in self.alerts if a.firing)


def unquote_meta(s: str) -> str:
    """Undo Go's regexp.QuoteMeta (``web\\.hook`` → ``web.hook``)."""
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)
