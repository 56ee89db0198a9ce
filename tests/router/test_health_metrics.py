"""``/healthz``, ``/readyz`` and ``/metrics``: liveness, readiness on the store, exact counters."""

from __future__ import annotations

import json

from tests.router.conftest import (
    AM_HEADERS,
    JSON,
    READ_TOKEN,
    RECEIVER,
    SAMPLE_NAMES,
    App,
    metric_value,
    sample,
    sample_bytes,
    scrape,
)

ROUTE = {"route": RECEIVER}


async def test_healthz(app: App) -> None:
    resp = await app.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_with_store_open(app: App) -> None:
    resp = await app.client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready"}


async def test_readyz_503_once_store_closed_while_healthz_stays_200(app: App) -> None:
    await app.rt.store.close()
    resp = await app.client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    assert body["problems"] == [f"store: SQLite store {app.db_path} is not open"]
    resp = await app.client.get("/healthz")
    assert resp.status == 200


async def test_readyz_503_when_database_file_vanishes(app: App) -> None:
    app.db_path.unlink()
    resp = await app.client.get("/readyz")
    assert resp.status == 503
    (problem,) = (await resp.json())["problems"]
    assert problem.startswith("store: SQLite file ")
    assert "t.db is gone" in problem


async def test_receiver_answers_503_not_4xx_when_store_is_down(app: App) -> None:
    """Alertmanager retries 5xx only: a store outage must not look like bad input."""
    await app.rt.store.close()
    resp = await app.client.post(RECEIVER, data=sample_bytes(SAMPLE_NAMES[0]), headers=AM_HEADERS)
    assert resp.status == 503
    assert await resp.json() == {
        "error": "store unavailable",
        "detail": "the notification was not stored; retry",
        "path": "",
    }
    text = await scrape(app.client)
    assert metric_value(text, "tocsin_http_requests_total", {**ROUTE, "code": "503"}) == 1


async def test_metrics_exposition_format(app: App) -> None:
    resp = await app.client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert "# TYPE tocsin_http_requests_total counter" in text
    assert "# TYPE tocsin_http_request_duration_seconds histogram" in text
    assert "# TYPE tocsin_alerts_received_total counter" in text
    assert "# TYPE tocsin_alerts_classified_total counter" in text


async def test_metrics_count_exactly_after_the_samples(app: App) -> None:
    c = app.client
    for name in SAMPLE_NAMES:
        resp = await c.post(RECEIVER, data=sample_bytes(name), headers=AM_HEADERS)
        assert resp.status == 200
    # one bad request and one unauthenticated request, counted by their codes
    resp = await c.post(RECEIVER, data=b"[]", headers=AM_HEADERS)
    assert resp.status == 400
    resp = await c.post(RECEIVER, data=b"{}", headers=JSON)
    assert resp.status == 401
    # an alert no rule matches: the default decides
    d = sample("alertmanager-0.25-firing.json")
    d["alerts"][0]["labels"] = {"alertname": "DiskFull"}
    resp = await c.post(RECEIVER, data=json.dumps(d), headers=AM_HEADERS)
    assert resp.status == 200

    text = await scrape(c)
    requests = "tocsin_http_requests_total"
    assert metric_value(text, requests, {**ROUTE, "code": "200"}) == 4
    assert metric_value(text, requests, {**ROUTE, "code": "400"}) == 1
    assert metric_value(text, requests, {**ROUTE, "code": "401"}) == 1
    assert metric_value(text, requests, {**ROUTE, "code": "500"}) is None

    latency = "tocsin_http_request_duration_seconds"
    assert metric_value(text, f"{latency}_count", ROUTE) == 6
    assert metric_value(text, f"{latency}_bucket", {**ROUTE, "le": "+Inf"}) == 6
    total = metric_value(text, f"{latency}_sum", ROUTE)
    assert total is not None and total > 0

    received = "tocsin_alerts_received_total"
    # firing: 1 (HighErrorRate) + 2 (InstanceDown) + 1 (DiskFull); resolved: 1
    assert metric_value(text, received, {"status": "firing"}) == 4
    assert metric_value(text, received, {"status": "resolved"}) == 1

    classified = "tocsin_alerts_classified_total"
    # HighErrorRate firing + resolved: P0 by its severity="critical" label
    assert metric_value(text, classified, {"severity": "P0", "rule": "trust-severity-label"}) == 2
    # InstanceDown x2: warning (P2) raised to P1 by many-instances-down; first rule is named
    assert metric_value(text, classified, {"severity": "P1", "rule": "trust-severity-label"}) == 2
    assert metric_value(text, classified, {"severity": "P3", "rule": "default"}) == 1
    assert (
        metric_value(text, classified, {"severity": "P2", "rule": "trust-severity-label"}) is None
    )
    assert metric_value(text, "tocsin_alerts_unknown_severity_total") == 0


async def test_unknown_trusted_severity_is_counted_not_dropped(app: App) -> None:
    d = sample("alertmanager-0.25-firing.json")
    d["alerts"][0]["labels"]["severity"] = "apocalyptic"
    d["alerts"][0].pop("fingerprint")
    resp = await app.client.post(RECEIVER, data=json.dumps(d), headers=AM_HEADERS)
    assert resp.status == 200
    (alert,) = (await resp.json())["alerts"]
    assert alert["severity"] == "P3"  # the config's default severity
    text = await scrape(app.client)
    assert metric_value(text, "tocsin_alerts_unknown_severity_total") == 1
    assert (
        metric_value(
            text,
            "tocsin_alerts_classified_total",
            {"severity": "P3", "rule": "trust-severity-label"},
        )
        == 1
    )


async def test_health_and_metrics_routes_are_counted(app: App) -> None:
    c = app.client
    for _ in range(3):
        assert (await c.get("/healthz")).status == 200
    assert (await c.get("/readyz")).status == 200
    text = await scrape(c)
    requests = "tocsin_http_requests_total"
    assert metric_value(text, requests, {"route": "/healthz", "code": "200"}) == 3
    assert metric_value(text, requests, {"route": "/readyz", "code": "200"}) == 1
    assert (
        metric_value(text, "tocsin_http_request_duration_seconds_count", {"route": "/healthz"}) == 3
    )


async def test_unknown_paths_share_one_route_label(app: App) -> None:
    """Arbitrary paths must not mint new label values (unbounded metric cardinality)."""
    c = app.client
    for path in ("/nope", "/api/v1/nope/1", "/x" * 20):
        resp = await c.get(path)
        assert resp.status == 404
        assert await resp.json() == {"error": "Not Found", "detail": "404: Not Found", "path": path}
    text = await scrape(c)
    assert (
        metric_value(text, "tocsin_http_requests_total", {"route": "unmatched", "code": "404"}) == 3
    )
    assert "/nope" not in text


async def test_wrong_method_on_receiver_is_json_405(app: App) -> None:
    resp = await app.client.get(RECEIVER, headers=AM_HEADERS)
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert (await resp.json())["path"] == RECEIVER


async def test_the_incident_api_answers_503_with_the_stores_words_when_it_is_down(
    app: App,
) -> None:
    """Store failures leave the service as one error type; the API says what the store said."""
    await app.rt.store.close()
    resp = await app.client.get("/api/v1/incidents", headers=READ_TOKEN)
    body = await resp.json()
    assert resp.status == 503
    assert (body["error"], body["path"]) == ("store unavailable", "")
    assert body["detail"] not in ("", "the notification was not stored; retry")
