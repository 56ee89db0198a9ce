"""The HTTP layer's and classification's metrics, on a registry owned by the app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RouterMetrics"]


class RouterMetrics:
    """Requests, alerts received and classified, config reloads."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "tocsin_http_requests_total",
            "HTTP requests by route and status code.",
            ["route", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "tocsin_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.alerts_received = Counter(
            "tocsin_alerts_received_total",
            "Alerts received from Alertmanager by alert status.",
            ["status"],
            registry=registry,
        )
        self.alerts_classified = Counter(
            "tocsin_alerts_classified_total",
            "Alerts classified by severity and the rule that decided it.",
            ["severity", "rule"],
            registry=registry,
        )
        self.unknown_severity = Counter(
            "tocsin_alerts_unknown_severity_total",
            "Alerts whose trusted severity label was not a known level (the default applied).",
            registry=registry,
        )
        self.reload_ok = Gauge(
            "tocsin_config_last_reload_successful",
            "Whether the last configuration reload attempt succeeded.",
            registry=registry,
        )
        self.reload_ts = Gauge(
            "tocsin_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            registry=registry,
        )
        # Labelled children by label values: ``labels()`` re-validates and locks on every call,
        # a measurable share of a request on the ingest path. Label values are bounded (route
        # templates, status codes, levels, rule names), so the caches stay small.
        self._served: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._received: dict[str, Counter] = {}
        self._classified: dict[tuple[str, str], Counter] = {}

    def served(self, route: str, status: int, seconds: float) -> None:
        """Count one request to ``route`` answered ``status`` after ``seconds``."""
        pair = self._served.get((route, status))
        if pair is None:
            pair = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._served[(route, status)] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def received(self, status: str) -> None:
        """Count one alert received with ``status``."""
        child = self._received.get(status)
        if child is None:
            child = self._received[status] = self.alerts_received.labels(status)
        child.inc()

    def classified(self, severity: str, rule: str) -> None:
        """Count one alert classified ``severity`` by ``rule``."""
        child = self._classified.get((severity, rule))
        if child is None:
            child = self._classified[(severity, rule)] = self.alerts_classified.labels(
                severity, rule
            )
        child.inc()
