"""Alertmanager webhook bodies as Alertmanager renders them, and the captured samples."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rules.alerts import fingerprint

__all__ = [
    "FIXTURES",
    "T0",
    "alert",
    "am_body",
    "notification",
    "rfc3339",
    "sample",
    "sample_bytes",
    "severity_body",
]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
"""Tuesday 2026-01-06 10:00 UTC: when ``alert`` fires unless told (the team's start)."""

_ZERO = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt for an alert still firing


def rfc3339(t: datetime | None) -> str:
    """A time as Alertmanager writes it (UTC, ``Z``); ``None`` is Go's zero time."""
    if t is None:
        return _ZERO
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert(
    name: str = "DiskFull",
    *,
    severity: str = "critical",
    instance: str = "db-1",
    starts: datetime = T0,
    status: str = "firing",
    ends: datetime | None = None,
    labels: dict[str, str] | None = None,
    with_fingerprint: bool = True,
) -> dict[str, Any]:
    """One alert as Alertmanager renders it (``fingerprint`` computed as Alertmanager does)."""
    lbls = {"alertname": name, "instance": instance, "severity": severity, **(labels or {})}
    out: dict[str, Any] = {
        "status": status,
        "labels": lbls,
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends if status == "resolved" else None),
        "generatorURL": f"http://prometheus:9090/graph?g0.expr={name}",
    }
    if with_fingerprint:
        out["fingerprint"] = fingerprint(lbls)
    return out


def notification(
    alerts: list[dict[str, Any]],
    *,
    receiver: str = "web\\.hook",
    group_key: str = '{}:{alertname="DiskFull"}',
    external_url: str = "http://alertmanager-0:9093",
) -> dict[str, Any]:
    """A webhook body (version 4) around ``alerts``; top-level status as Alertmanager sets it."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {
        "version": "4",
        "receiver": receiver,
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]} if alerts else {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": external_url,
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }


def sample_bytes(name: str) -> bytes:
    """A captured Alertmanager body (``tests/fixtures``), byte for byte."""
    return (FIXTURES / name).read_bytes()


def sample(name: str) -> dict[str, Any]:
    """A captured Alertmanager body, decoded (for building variants)."""
    return dict(json.loads(sample_bytes(name)))


def severity_body(
    severity_label: str,
    *,
    alertname: str = "X",
    status: str = "firing",
    starts_at: datetime = datetime(2026, 1, 5, 9, 59, tzinfo=UTC),
    ends_at: datetime | None = None,
) -> bytes:
    """A webhook body (version 4) with one alert labelled only ``alertname`` and ``severity``."""
    labels = {"alertname": alertname, "severity": severity_label}
    end = ends_at if ends_at is not None else (starts_at if status == "resolved" else None)
    one: dict[str, Any] = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{alertname} is {severity_label}"},
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(end),
        "generatorURL": "http://prometheus:9090/graph",
    }
    body = {
        "version": "4",
        "receiver": "tocsin",
        "status": status,
        "alerts": [one],
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": one["annotations"],
        "externalURL": "http://alertmanager:9093",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
    }
    return json.dumps(body).encode()


def am_body(name: str, starts: datetime | None = None, *, status: str = "firing") -> dict[str, Any]:
    """A webhook body (version 4) with one alert ``name``, its own group (so its own incident).

    ``starts`` defaults to now: these bodies go to real ``tocsin serve`` processes.
    """
    now = datetime.now(UTC)
    labels = {"alertname": name, "service": "api", "env": "production", "severity": "error"}
    one = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{name} is failing"},
        "startsAt": rfc3339(starts or now),
        "endsAt": rfc3339(now if status == "resolved" else None),
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:16],
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "faults",
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"{name} is failing"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [one],
    }
