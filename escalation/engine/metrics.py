"""Incident and escalation metrics (names as seed 004's dashboards query them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from escalation.incidents.actions import Action

if TYPE_CHECKING:
    from datetime import datetime

    from escalation.incidents.model import IncidentRecord

__all__ = ["EscalationMetrics"]

_DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600)


class EscalationMetrics:
    """Counters, gauges and histograms for incidents, steps and the outbox."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.incidents = Counter(
            "tocsin_incidents_total", "Incidents opened, by severity.", ["severity"], registry=r
        )
        self.open_incidents = Gauge(
            "tocsin_open_incidents",
            "Incidents not yet resolved, by severity and status.",
            ["severity", "status"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "tocsin_incident_ack_seconds",
            "Time from incident open to first acknowledgement (MTTA), by severity.",
            ["severity"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.resolution_seconds = Histogram(
            "tocsin_incident_resolution_time_seconds",
            "Time from incident open to resolution (MTTR), by severity.",
            ["severity"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.sla_breaches = Counter(
            "tocsin_sla_breaches_total",
            "Acknowledgement or resolution later than the matrix target, by kind and severity.",
            ["kind", "severity"],
            registry=r,
        )
        self.steps_fired = Counter(
            "tocsin_escalation_steps_fired_total",
            "Escalation steps fired, by tier (0-based) and kind.",
            ["tier", "kind"],
            registry=r,
        )
        self.lateness = Histogram(
            "tocsin_escalation_lateness_seconds",
            "How long after its due time a step fired.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.ingest_batch = Histogram(
            "tocsin_ingest_batch_notifications",
            "Notifications decided and committed together in one ingest transaction.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self._channel_metrics(r)
        self.engine_errors = Counter(
            "tocsin_engine_errors_total",
            "Engine loop iterations that failed (e.g. the store was unavailable).",
            registry=r,
        )

    def _channel_metrics(self, r: CollectorRegistry) -> None:
        """Per channel: what waits, its breaker, and every delivery attempt's outcome."""
        self.outbox_depth = Gauge(
            "tocsin_outbox_depth",
            "Notifications waiting to be delivered, by channel.",
            ["channel"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "tocsin_breaker_state",
            "Each channel's circuit breaker: 1 for its state (closed, open, half-open), 0 else.",
            ["channel", "state"],
            registry=r,
        )
        self.breaker_failures = Gauge(
            "tocsin_breaker_failures",
            "Sends that failed in a row on each channel (its breaker opens at the limit).",
            ["channel"],
            registry=r,
        )
        self.heartbeat_last_ping = Gauge(
            "tocsin_heartbeat_last_ping_timestamp_seconds",
            "When each configured heartbeat was last pinged (Unix time; 0: never).",
            ["name"],
            registry=r,
        )
        self.heartbeat_expired = Gauge(
            "tocsin_heartbeat_expired",
            "1 while a heartbeat is expired (its incident open until the next ping), else 0.",
            ["name"],
            registry=r,
        )
        self.notifications = Counter(
            "tocsin_notifications_total",
            "Notification delivery attempts by channel and outcome.",
            ["channel", "outcome"],
            registry=r,
        )

    def observe_action(self, action: Action, before: IncidentRecord, new: IncidentRecord) -> None:
        if action == Action.ACK or (
            action in (Action.MITIGATE, Action.RESOLVE) and before.acknowledged_at is None
        ):
            self._observe_ack(new)
        if action == Action.RESOLVE:
            self.observe_resolved(new)

    def _observe_ack(self, inc: IncidentRecord) -> None:
        self._observe(inc, inc.acknowledged_at, "ack", self.ack_seconds, "ack_target")

    def observe_resolved(self, inc: IncidentRecord) -> None:
        self._observe(inc, inc.resolved_at, "resolve", self.resolution_seconds, "resolve_target")

    def _observe(
        self,
        inc: IncidentRecord,
        at: datetime | None,
        kind: str,
        histogram: Histogram,
        target_key: str,
    ) -> None:
        """Time from open to ``at`` into ``histogram``; a breach of the level's target counted."""
        if at is None:
            return
        took = (at - inc.opened_at).total_seconds()
        histogram.labels(inc.severity).observe(took)
        target = inc.level.get(target_key)
        if target is not None and took > float(target):
            self.sla_breaches.labels(kind, inc.severity).inc()
