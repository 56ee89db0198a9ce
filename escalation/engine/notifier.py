"""The seam to the outside world: one ``Notifier`` per channel delivers outbox rows.

``escalation`` defines the protocol; ``adapters`` implements it for PagerDuty, email, phone and
webhooks. The built-in ``log`` channel lives here so the whole path is visible with no adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from escalation.incidents.model import AlertRecord, IncidentRecord, OutboxRecord

__all__ = ["Delivery", "DeliveryResult", "LogNotifier", "Notifier"]

log = logging.getLogger("tocsin.notify")


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
class DeliveryResult:
    """The outcome of one attempt.

    ``retryable`` says a later attempt may succeed; ``unknown`` says the provider may have
    acted (a call placed but the answer lost), so the row must not be blindly repeated.
    """

    ok: bool
    retryable: bool = False
    unknown: bool = False
    error: str = ""
    provider_id: str = ""
    retry_after: float | None = None


class Notifier(Protocol):
    """Sends one outbox row over one channel."""

    async def notify(self, delivery: Delivery) -> DeliveryResult: ...


class LogNotifier:
    """The ``log`` channel: a structured log line per notification; the outbox row is the record."""

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        row, inc = delivery.row, delivery.incident
        log.info(
            "notification",
            extra={
                "channel": "log",
                "kind": row.kind,
                "incident": inc.id,
                "number": inc.number,
                "severity": inc.severity,
                "severity_name": inc.level.get("name", inc.severity),
                "title": inc.title,
                "tier": row.tier,
                "round": row.round,
                "target": row.target,
                "person": row.person,
                "status": inc.status.value,
            },
        )
        return DeliveryResult(ok=True, provider_id=f"log:{row.id}")
