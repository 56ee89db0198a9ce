"""The seam between the HTTP receiver and what happens to a notification next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from escalation.engine.service import StoreUnavailable
from rules.alerts import Notification
from rules.classifier import Classification

__all__ = ["Pipeline", "PipelineResult", "StoreUnavailable"]


@dataclass(frozen=True)
class PipelineResult:
    """What the pipeline did with one notification (echoed to the caller as JSON)."""

    classifications: list[tuple[str, Classification]] = field(default_factory=list)
    incidents: list[dict[str, object]] = field(default_factory=list)
    heartbeats: list[str] = field(default_factory=list)  # pinged by Watchdog alerts


class Pipeline(Protocol):
    """Takes a validated notification; returns only once its effects are durable.

    Raises StoreUnavailable when it could not make them durable (→ 503). ``adjust``, if given,
    amends each verdict before ingest: a source that says more than labels can (Opsgenie's
    priority and alias) decides severity and incident key itself.
    """

    async def submit(
        self,
        notification: Notification,
        adjust: Callable[[Classification], Classification] | None = None,
    ) -> PipelineResult: ...
