"""Real Alertmanager payloads are accepted as they arrive, and classified as the rules say.

The fixtures were captured byte for byte from Alertmanager 0.25 (tests/fixtures). The variants
reproduce what other releases send (protocols.md §1): nine fractional digits and non-UTC
offsets, ``notification_reason`` (v0.32+), ``routeLabels`` (v0.34+), no ``truncatedAlerts``
(before v0.21), no ``fingerprint`` (before v0.19).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rules.alerts import fingerprint
from tests.driver.app import Client
from tests.router.conftest import (
    AM_HEADERS,
    READ_TOKEN,
    RECEIVER,
    SAMPLE_NAMES,
    App,
    sample,
    sample_bytes,
)

FIRING = "alertmanager-0.25-firing.json"
RESOLVED = "alertmanager-0.25-resolved.json"
TWO = "alertmanager-0.25-firing-two-alerts.json"

_HER = {
    "fingerprint": "7db01aa399468675",
    # severity="critical" trusted through the default matrix's aliases: P0 (SEV-1)
    "severity": "P0",
    "severity_name": "SEV-1",
    "rule": "trust-severity-label",
    "policy": None,
    "team": None,
    "incident_key": "HighErrorRate/api",
    "title": "HighErrorRate on api: 5xx rate above 5% on api",
}
_INSTANCE_DOWN = {
    # severity="warning" is P2, raised to P1 by many-instances-down (two firing in the group)
    "severity": "P1",
    "severity_name": "SEV-2",
    "rule": "trust-severity-label",
    "policy": None,
    "team": None,
    "incident_key": "InstanceDown/db",
    "title": "InstanceDown on db: Instance down",
}
EXPECTED: dict[str, list[dict[str, Any]]] = {
    FIRING: [_HER],
    RESOLVED: [_HER],
    TWO: [
        {"fingerprint": "039d85a68bde523d", **_INSTANCE_DOWN},
        {"fingerprint": "bde665be13f74703", **_INSTANCE_DOWN},
    ],
}


async def post(client: Client, body: bytes | str, **headers: str) -> tuple[int, Any]:
    resp = await client.post(RECEIVER, data=body, headers={**AM_HEADERS, **headers})
    return resp.status, await resp.json()


async def show(client: Client, ref: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/incidents/{ref}", headers=READ_TOKEN)
    assert resp.status == 200
    data: dict[str, Any] = await resp.json()
    return data


def encode(d: dict[str, Any]) -> bytes:
    """Encode as Go's json.Encoder would: compact, ``&<>`` escaped, trailing newline."""
    text = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return text.encode() + b"\n"


def test_fixtures_are_raw_go_output() -> None:
    for name in SAMPLE_NAMES:
        raw = sample_bytes(name)
        assert raw.endswith(b"}\n")
        assert b"\\u0026" in raw
        assert raw.startswith(b'{"receiver":"web\\\\.hook","status":')
    assert b"\\u003cfast\\u003e" in sample_bytes(FIRING)


def test_go_style_encoder_reproduces_the_fixtures() -> None:
    for name in SAMPLE_NAMES:
        assert encode(sample(name)) == sample_bytes(name)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
async def test_sample_is_accepted_byte_for_byte(app: App, name: str) -> None:
    status, body = await post(app.client, sample_bytes(name))
    assert status == 200
    assert body["status"] == "accepted"
    assert body["alerts"] == EXPECTED[name]


async def test_firing_then_resolved_opens_and_resolves_one_incident(app: App) -> None:
    status, opened = await post(app.client, sample_bytes(FIRING))
    assert status == 200
    assert [(i["key"], i["action"], i["status"]) for i in opened["incidents"]] == [
        ("HighErrorRate/api", "opened", "triggered")
    ]
    status, resolved = await post(app.client, sample_bytes(RESOLVED))
    assert status == 200
    assert [(i["key"], i["action"], i["status"]) for i in resolved["incidents"]] == [
        ("HighErrorRate/api", "resolved", "resolved")
    ]
    assert resolved["incidents"][0]["incident"] == opened["incidents"][0]["incident"]


async def test_go_escapes_and_quoted_receiver_are_decoded(app: App) -> None:
    _, body = await post(app.client, sample_bytes(FIRING))
    inc = await show(app.client, body["incidents"][0]["incident"])
    assert inc["receiver"] == "web.hook"
    assert inc["group_key"] == '{}:{alertname="HighErrorRate", service="api"}'
    (alert,) = inc["alerts"]
    assert alert["annotations"]["description"] == "Error rate is 7.2% & rising <fast>"
    assert alert["annotations"]["runbook_url"] == "https://runbooks.example.com/api?x=1&y=2"
    assert alert["generator_url"] == "http://vm:19090/graph?g0.expr=vector%287.2%29+%3E+5&g0.tab=1"
    assert alert["starts_at"] == "2026-11-22T12:52:03.310000+00:00"
    # endsAt of year 1 on a firing alert means "no end", not the year 1
    assert alert["ends_at"] is None


async def test_resolved_alert_keeps_its_real_end(app: App) -> None:
    await post(app.client, sample_bytes(FIRING))
    _, body = await post(app.client, sample_bytes(RESOLVED))
    inc = await show(app.client, body["incidents"][0]["incident"])
    assert inc["alerts"][0]["status"] == "resolved"
    assert inc["alerts"][0]["ends_at"] == "2026-11-22T12:53:28.310000+00:00"


async def test_nine_fractional_digits_and_non_utc_offset(app: App) -> None:
    d = sample(FIRING)
    d["alerts"][0]["startsAt"] = "2023-03-25T14:41:06.68943305+08:00"
    raw = encode(d)
    assert b'"startsAt":"2023-03-25T14:41:06.68943305+08:00"' in raw
    status, body = await post(app.client, raw)
    assert status == 200
    assert body["alerts"] == [_HER]
    inc = await show(app.client, body["incidents"][0]["incident"])
    # converted to UTC; Python keeps microseconds (the ninth digit is dropped, not rounded)
    assert inc["alerts"][0]["starts_at"] == "2023-03-25T06:41:06.689433+00:00"


async def test_negative_offset_resolved_time(app: App) -> None:
    d = sample(RESOLVED)
    d["alerts"][0]["endsAt"] = "2026-11-22T07:53:28.310000001-05:00"
    await post(app.client, sample_bytes(FIRING))
    status, body = await post(app.client, encode(d))
    assert status == 200
    inc = await show(app.client, body["incidents"][0]["incident"])
    assert inc["alerts"][0]["ends_at"] == "2026-11-22T12:53:28.310000+00:00"


def _v034(d: dict[str, Any], reason: str, route_labels: dict[str, str]) -> dict[str, Any]:
    """Re-key ``d`` in Alertmanager v0.34's field order with the new fields added."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        out[key] = value
        if key == "alerts":
            out["notification_reason"] = reason
        if key == "commonAnnotations":
            out["routeLabels"] = route_labels
    return out


@pytest.mark.parametrize(
    ("name", "reason"),
    [(FIRING, "first notification"), (RESOLVED, "all alerts resolved"), (TWO, "new alerts added")],
)
async def test_notification_reason_and_route_labels(app: App, name: str, reason: str) -> None:
    raw = encode(_v034(sample(name), reason, {"team": "api", "tier": "1"}))
    assert f'"notification_reason":"{reason}"'.encode() in raw
    assert b'"routeLabels":{"team":"api","tier":"1"}' in raw
    status, body = await post(app.client, raw)
    assert status == 200
    assert body["alerts"] == EXPECTED[name]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
async def test_v018_payload_without_fingerprint_gets_alertmanagers_fingerprint(
    app: App, name: str
) -> None:
    d = sample(name)
    originals = [a.pop("fingerprint") for a in d["alerts"]]
    d.pop("truncatedAlerts")  # also absent before v0.21
    raw = encode(d)
    assert b"fingerprint" not in raw
    status, body = await post(app.client, raw)
    assert status == 200
    assert [a["fingerprint"] for a in body["alerts"]] == originals
    assert body["alerts"] == EXPECTED[name]


def test_fingerprint_function_matches_alertmanager_on_every_captured_alert() -> None:
    seen = 0
    for name in SAMPLE_NAMES:
        for a in sample(name)["alerts"]:
            assert fingerprint(a["labels"]) == a["fingerprint"]
            seen += 1
    assert seen == 4


async def test_v020_payload_without_truncated_alerts(app: App) -> None:
    d = sample(TWO)
    del d["truncatedAlerts"]
    status, body = await post(app.client, encode(d))
    assert status == 200
    assert body["alerts"] == EXPECTED[TWO]


async def test_truncated_group_is_accepted(app: App) -> None:
    d = sample(TWO)
    d["truncatedAlerts"] = 3
    status, body = await post(app.client, encode(d))
    assert status == 200
    assert body["alerts"] == EXPECTED[TWO]


async def test_regex_escaped_receiver_names_the_default_incident_key(app: App) -> None:
    """No rule sets a key for staging alerts, so the key is receiver + groupKey, unescaped."""
    d = sample(FIRING)
    d["receiver"] = "team-a\\.pager \\(prod\\)"  # QuoteMeta("team-a.pager (prod)")
    d["alerts"][0]["labels"]["env"] = "staging"
    del d["alerts"][0]["fingerprint"]
    raw = encode(d)
    assert b'"receiver":"team-a\\\\.pager \\\\(prod\\\\)"' in raw
    status, body = await post(app.client, raw)
    assert status == 200
    (alert,) = body["alerts"]
    assert alert["incident_key"] is None
    assert alert["severity"] == "P0"  # still critical by its label
    (inc,) = body["incidents"]
    assert inc["key"] == 'team-a.pager (prod)/{}:{alertname="HighErrorRate", service="api"}'
    full = await show(app.client, inc["incident"])
    assert full["receiver"] == "team-a.pager (prod)"


async def test_unknown_fields_of_future_versions_are_ignored(app: App) -> None:
    d = copy.deepcopy(sample(FIRING))
    d["someFutureField"] = {"nested": [1, 2]}
    d["alerts"][0]["silencedBy"] = []
    status, body = await post(app.client, encode(d))
    assert status == 200
    assert body["alerts"] == [_HER]


async def test_charset_parameter_on_content_type_is_accepted(app: App) -> None:
    status, body = await post(
        app.client, sample_bytes(FIRING), **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert status == 200
    assert body["alerts"] == [_HER]


async def test_alert_matching_no_rule_gets_the_default(app: App) -> None:
    d = sample(FIRING)
    d["alerts"][0]["labels"] = {"alertname": "DiskFull", "instance": "db1"}
    del d["alerts"][0]["fingerprint"]
    status, body = await post(app.client, encode(d))
    assert status == 200
    (alert,) = body["alerts"]
    assert (alert["severity"], alert["severity_name"], alert["rule"]) == ("P3", "SEV-4", "default")
    assert alert["incident_key"] is None
    assert alert["fingerprint"] == fingerprint({"alertname": "DiskFull", "instance": "db1"})
