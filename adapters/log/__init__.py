"""The built-in ``log`` channel: a structured log line per notification.

The outbox row is the record, so the whole path is visible with no outside adapter configured.
"""

from __future__ import annotations

import logging

from adapters.delivery.notifier import Delivery, DeliveryResult

__all__ = ["LogNotifier"]

log = logging.getLogger("tocsin.notify")


class LogNotifier:
    """The ``log`` channel's Notifier."""

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
                "severity_name": inc.severity_name,
                "title": inc.title,
                "tier": row.tier,
                "round": row.round,
                "target": row.target,
                "person": row.person,
                "status": inc.status.value,
                # The other pages bundled into this one (``adapters.dispatch.bundle_channels``):
                # recorded as delivered with it, so the line names them.
                "bundled": [{"incident": r.incident_id, "kind": r.kind} for r in delivery.bundle],
            },
        )
        return DeliveryResult(ok=True, provider_id=f"log:{row.id}")
