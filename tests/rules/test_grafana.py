"""Grafana's webhook contact point body (``tests/fixtures/grafana-webhook-firing.json``, shaped as
Grafana documents it) read as Alertmanager's notification, its extra fields kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.webhook.presets import summary_of
from router.errors import ApiError
from router.receiver import parse_notification
from rules.grafana import is_grafana
from tests.driver.payloads import sample, sample_bytes

GRAFANA = "grafana-webhook-firing.json"


def body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_the_documented_body_is_accepted_with_its_alerts_and_group() -> None:
    n = parse_notification(sample_bytes(GRAFANA))
    assert (n.receiver, n.status, n.group_key, n.truncated_alerts) == (
        "tocsin",
        "firing",
        "{}:{}",
        0,
    )
    assert [a.labels["alertname"] for a in n.alerts] == ["Disk almost full", "High CPU usage"]
    assert [a.fingerprint for a in n.alerts] == ["2f6c3c1a9b7e4d10", "8c0d6e4b2a1f3957"]
    assert n.alerts[0].starts_at is not None and n.alerts[0].starts_at.hour == 11  # +02:00
    assert n.alerts[0].ends_at is None  # Grafana's year-1 endsAt: no end
    assert n.common_labels == {"team": "storage"}


def test_grafanas_own_fields_become_annotations_and_the_rules_own_stay() -> None:
    first, second = parse_notification(sample_bytes(GRAFANA)).alerts
    assert first.annotations == {
        "description": "The root volume is over 95% full",
        "runbook_url": "https://runbooks.example.com/disk-full",
        "summary": "Disk almost full on db1 in zone eu-1",
        "grafana_org_id": "1",
        "grafana_dashboard_url": "https://grafana.example.com/d/disk01",
        "grafana_panel_url": "https://grafana.example.com/d/disk01?viewPanel=2",
        "grafana_silence_url": "https://grafana.example.com/alerting/silence/new?alertmanager="
        "grafana&matchers=alertname%3DDisk+almost+full%2Cteam%3Dstorage%2Czone%3Deu-1",
        "grafana_image_url": "https://grafana.example.com/public/img/attachments/disk01.png",
        "grafana_values": "B=95.6189347745192, C=1",
    }
    # Empty URLs are not annotations: a blank link tells nobody anything.
    assert "grafana_dashboard_url" not in second.annotations
    assert second.annotations["grafana_values"] == "B=81.9, C=1"


def test_the_groups_title_state_and_message_are_common_annotations() -> None:
    n = parse_notification(sample_bytes(GRAFANA))
    assert n.common_annotations["grafana_title"] == "[FIRING:2]  (storage)"
    assert n.common_annotations["grafana_state"] == "alerting"
    assert n.common_annotations["grafana_message"].startswith("**Firing**")


def test_an_annotation_the_rule_set_wins_over_grafanas_field() -> None:
    doc = sample(GRAFANA)
    doc["alerts"][0]["annotations"]["grafana_dashboard_url"] = "https://ops.example/d/mine"
    first = parse_notification(body(doc)).alerts[0]
    assert first.annotations["grafana_dashboard_url"] == "https://ops.example/d/mine"


def test_grafana_before_9_4_sends_value_string_instead_of_values() -> None:
    doc = sample(GRAFANA)
    del doc["alerts"][0]["values"]
    doc["alerts"][0]["valueString"] = "[ metric='' labels={} value=14151.33 ]"
    first = parse_notification(body(doc)).alerts[0]
    assert first.annotations["grafana_values"] == "[ metric='' labels={} value=14151.33 ]"


def test_a_resolved_grafana_alert_has_its_end() -> None:
    doc = sample(GRAFANA)
    doc["status"] = "resolved"
    doc["alerts"][0] |= {"status": "resolved", "endsAt": "2026-11-22T14:10:00+02:00"}
    first = parse_notification(body(doc)).alerts[0]
    assert (first.status, first.ends_at is not None) == ("resolved", True)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["alerts"][0].pop("labels"), "alerts[0].labels"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda d: d.update(orgId="one"), "orgId"),
        (lambda d: d["alerts"][0].update(values={"B": "high"}), "alerts[0].values.B"),
    ],
)
def test_a_broken_grafana_body_is_a_400_naming_the_field(change: Any, path: str) -> None:
    doc = sample(GRAFANA)
    change(doc)
    with pytest.raises(ApiError) as err:
        parse_notification(body(doc))
    assert (err.value.status, err.value.path) == (400, path)


def test_version_1_without_grafanas_org_id_is_still_an_unsupported_version() -> None:
    doc = sample(GRAFANA)
    del doc["orgId"]
    assert not is_grafana(doc)
    with pytest.raises(ApiError) as err:
        parse_notification(body(doc))
    assert (err.value.status, err.value.error) == (400, "unsupported version")


def test_chat_messages_link_grafanas_dashboard_and_panel_but_never_a_script() -> None:
    annotations = {
        "grafana_dashboard_url": "https://grafana.example.com/d/disk01",
        "grafana_panel_url": "javascript:alert(1)",
    }
    doc = {"incident": {"number": 7, "title": "Disk"}, "alerts": [{"annotations": annotations}]}
    assert summary_of(doc).links == (("Dashboard", "https://grafana.example.com/d/disk01"),)
