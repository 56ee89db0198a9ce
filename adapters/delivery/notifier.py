"""The one small protocol a channel implements, and what crosses it.

A channel package exposes ``Notifier``s: ``notify(Delivery) -> DeliveryResult``, one attempt,
never raising. Every failure a channel meets (an HTTP status, an SMTP reply, a socket error, a
provider's error code) is mapped into one ``FailureReason`` at the channel's own boundary, the
way httpx maps its transport's foreign exceptions into its own: the dispatcher's retry table
then decides what happens next without knowing any provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from escalation.incidents.model import AlertRecord, IncidentRecord, OutboxRecord

__all__ = ["Delivery", "DeliveryResult", "FailureReason", "Notifier", "ProviderAttempt"]


class FailureReason(StrEnum):
    """Why an attempt failed, as far as what to do next is concerned."""

    RETRYABLE = "retryable"  # a later attempt may succeed (5xx, timeouts, refused connections)
    PERMANENT = "permanent"  # needs a person to fix an address or configuration first
    UNKNOWN_OUTCOME = "unknown outcome"  # the provider may have acted: never blindly repeated
    RATE_LIMITED = "rate limited"  # the provider asked us to slow down (HTTP 429)
    # Nothing was attempted: no adapter is configured for the channel. The person's fallback
    # carries it, else the ``log`` channel: such a page is never silently dropped.
    NO_ADAPTER = "no adapter"
    # Nothing was attempted: the person has no address on the channel (no email address, no
    # phone number, ...; a person config does not describe, or an unusable one). Handled as
    # NO_ADAPTER is: the person's fallback, else ``log``.
    NO_ADDRESS = "no address"


@dataclass(frozen=True)
class Delivery:
    """What a notifier needs to send one row: the row, its incident, and the recipient's details."""

    row: OutboxRecord
    incident: IncidentRecord
    person: Mapping[str, Any] = field(default_factory=dict)  # email, phone, pagerduty_user, name
    links: Mapping[str, str] = field(default_factory=dict)  # incident URL and the like
    bundle: tuple[
        OutboxRecord, ...
    ] = ()  # further rows to the same person folded into this message
    bundle_incidents: Mapping[str, IncidentRecord] = field(default_factory=dict)  # their incidents
    alerts: tuple[AlertRecord, ...] = ()  # the incident's alerts (labels, annotations, links)


@dataclass(frozen=True)
class ProviderAttempt:
    """One provider's part in an attempt that fails over across providers (phone, sms)."""

    provider: str  # twilio, vonage, gateway
    outcome: str  # delivered, retryable, permanent, unknown outcome, breaker open, ...
    error: str = ""
    provider_id: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one attempt: ok, or a failure with its reason.

    A failure built without a reason is ``PERMANENT``, so a channel has to say so explicitly
    before anything is retried or treated as possibly delivered.
    """

    ok: bool
    reason: FailureReason | None = None
    error: str = ""
    provider_id: str = ""
    retry_after: float | None = None  # seconds the provider asked us to wait (Retry-After)
    # What the channel had to leave out or change to send it (a dropped link): for the timeline.
    notes: tuple[str, ...] = ()
    # Each provider tried, in order, when the channel fails over across several.
    attempts: tuple[ProviderAttempt, ...] = ()

    def __post_init__(self) -> None:
        if self.ok and self.reason is not None:
            raise ValueError("a successful delivery has no failure reason")
        if not self.ok and self.reason is None:
            object.__setattr__(self, "reason", FailureReason.PERMANENT)

    @property
    def retryable(self) -> bool:
        """A later attempt may succeed."""
        return self.reason in (FailureReason.RETRYABLE, FailureReason.RATE_LIMITED)

    @property
    def unknown(self) -> bool:
        """The provider may have acted (a call placed but the answer lost)."""
        return self.reason == FailureReason.UNKNOWN_OUTCOME


class Notifier(Protocol):
    """Sends one outbox row over one channel: one attempt, never raising."""

    async def notify(self, delivery: Delivery) -> DeliveryResult: ...
