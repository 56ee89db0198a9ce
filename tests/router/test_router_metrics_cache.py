"""RouterMetrics' cached labelled children count exactly what ``labels()`` would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from router.metrics import RouterMetrics


def _value(reg: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return reg.get_sample_value(name, labels)


def test_cached_children_count_every_call_under_their_own_labels() -> None:
    reg = CollectorRegistry()
    m = RouterMetrics(reg)
    for _ in range(3):
        m.received("firing")
    m.received("resolved")
    m.classified("P1", "db")
    m.classified("P1", "db")
    m.classified("P2", "default")
    m.served("/api/v1/alertmanager", 200, 0.002)
    m.served("/api/v1/alertmanager", 200, 0.2)
    m.served("/api/v1/alertmanager", 400, 0.001)
    assert _value(reg, "tocsin_alerts_received_total", {"status": "firing"}) == 3
    assert _value(reg, "tocsin_alerts_received_total", {"status": "resolved"}) == 1
    assert _value(reg, "tocsin_alerts_classified_total", {"severity": "P1", "rule": "db"}) == 2
    assert _value(reg, "tocsin_alerts_classified_total", {"severity": "P2", "rule": "default"}) == 1
    route = {"route": "/api/v1/alertmanager"}
    assert _value(reg, "tocsin_http_requests_total", {**route, "code": "200"}) == 2
    assert _value(reg, "tocsin_http_requests_total", {**route, "code": "400"}) == 1
    assert _value(reg, "tocsin_http_request_duration_seconds_count", route) == 3
    assert _value(reg, "tocsin_http_request_duration_seconds_bucket", {**route, "le": "0.01"}) == 2
