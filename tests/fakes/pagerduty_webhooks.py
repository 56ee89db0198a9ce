"""v3 webhook deliveries shaped like the ones PagerDuty really sends, signed and posted to tocsin.

Built from a captured delivery (``data/pagerduty_webhook_v3.incident_resolved.json``; source and
commit in ``data/SOURCES.md``): an ``incident.*`` event about an incident created through the
Events API carries ``"incident_key": null`` (PagerDuty's REST reference: "Incidents with child
alerts do not have an incident key"), so the only way back to the dedup key tocsin sent is the
incident's alerts over REST. Only what changes per event is replaced; everything else stays as
captured.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

__all__ = [
    "CAPTURED_PATH",
    "WebhookReply",
    "captured_delivery",
    "incident_delivery",
    "incident_webhook",
    "note_webhook",
    "pd_ref",
    "ping_webhook",
    "secrets_in",
    "send_webhook",
    "sign",
]

CAPTURED_PATH = Path(__file__).parent / "data" / "pagerduty_webhook_v3.incident_resolved.json"
_CAPTURED: dict[str, Any] = json.loads(CAPTURED_PATH.read_text(encoding="utf-8"))
_STATUS = {
    "incident.acknowledged": "acknowledged",
    "incident.resolved": "resolved",
    "incident.unacknowledged": "triggered",
    "incident.reopened": "triggered",
    "incident.triggered": "triggered",
}


def captured_delivery() -> dict[str, Any]:
    """The captured delivery, unchanged (a fresh copy)."""
    return copy.deepcopy(_CAPTURED)


def incident_delivery(
    event_type: str,
    pd_incident_id: str,
    *,
    agent: str | None = "Test User",
    occurred_at: str,
    event_id: str | None = None,
    title: str = "",
    number: int = 29,
) -> dict[str, Any]:
    """An ``incident.*`` delivery about PagerDuty's incident ``pd_incident_id``.

    ``agent`` None is an automated change (PagerDuty sends ``"agent": null``).
    """
    doc = captured_delivery()
    ev = doc["event"]
    ev["id"] = event_id or uuid.uuid4().hex.upper()[:26]
    ev["event_type"] = event_type
    ev["occurred_at"] = occurred_at
    if agent is None:
        ev["agent"] = None
    else:
        ev["agent"]["summary"] = agent
    data = ev["data"]
    data["id"] = pd_incident_id
    data["self"] = f"https://api.pagerduty.com/incidents/{pd_incident_id}"
    data["html_url"] = f"https://example-inc.pagerduty.com/incidents/{pd_incident_id}"
    data["number"] = number
    data["status"] = _STATUS.get(event_type, data["status"])
    data["title"] = title or data["title"]
    assert data["incident_key"] is None  # as captured: what PagerDuty sends for these incidents
    return doc


def pd_ref(kind: str, id_: str, summary: str) -> dict[str, Any]:
    plural = {
        "user": "users",
        "service": "services",
        "schedule": "schedules",
        "escalation_policy": "escalation_policies",
    }
    return {
        "id": id_,
        "type": f"{kind}_reference",
        "summary": summary,
        "self": f"https://api.pagerduty.com/{plural[kind]}/{id_}",
        "html_url": f"https://acme.pagerduty.com/{plural[kind]}/{id_}",
    }


# -- webhooks v3 towards tocsin ---------------------------------------------------------------


def sign(body: bytes, *secrets: str) -> str:
    """``X-PagerDuty-Signature`` as PagerDuty sends it: one ``v1=`` entry per secret."""
    return ",".join(
        "v1=" + hmac.new(s.encode("utf-8"), body, hashlib.sha256).hexdigest() for s in secrets
    )


def _agent(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    return pd_ref("user", "PLH1HKV", name)


def incident_webhook(
    event_type: str,
    pd_incident_id: str = "PGR0VU2",
    *,
    incident_key: str | None = None,
    agent: str | None = "Tenex Engineer",
    event_id: str | None = None,
    title: str = "A little bump in the road",
    occurred_at: str = "2026-11-22T13:01:00.000Z",
) -> dict[str, Any]:
    """A v3 ``incident.*`` delivery about PagerDuty's incident ``pd_incident_id``, shaped as
    PagerDuty sends it (the captured delivery): ``incident_key`` null, as for every incident
    opened through the Events API (all of tocsin's), so tocsin has to match it through the REST
    lookup of the incident's alerts, or the alias an earlier lookup recorded.

    ``incident_key`` given is an incident that has a key (opened some other way): only tests of
    tocsin's first, free try at matching send one.
    """
    doc = incident_delivery(
        event_type,
        pd_incident_id,
        agent=agent,
        occurred_at=occurred_at,
        event_id=event_id or uuid.uuid4().hex,
        title=title,
        number=2,
    )
    doc["event"]["data"]["incident_key"] = incident_key
    return doc


def note_webhook(
    pd_incident_id: str, content: str, *, agent: str | None = "Tenex Engineer"
) -> dict[str, Any]:
    """A v3 ``incident.annotated`` body (data is an ``incident_note``: no incident_key)."""
    return {
        "event": {
            "id": uuid.uuid4().hex,
            "event_type": "incident.annotated",
            "resource_type": "incident",
            "occurred_at": "2026-11-22T13:02:00.000Z",
            "agent": _agent(agent),
            "client": None,
            "data": {
                "incident": {
                    "html_url": f"https://acme.pagerduty.com/incidents/{pd_incident_id}",
                    "id": pd_incident_id,
                    "self": f"https://api.pagerduty.com/incidents/{pd_incident_id}",
                    "summary": "A little bump in the road",
                    "type": "incident_reference",
                },
                "id": "P2LA89X",
                "content": content,
                "trimmed": False,
                "type": "incident_note",
            },
        }
    }


def ping_webhook() -> dict[str, Any]:
    """The test delivery PagerDuty sends when a subscription is created or tested."""
    return {
        "event": {
            "id": uuid.uuid4().hex,
            "event_type": "pagey.ping",
            "resource_type": "pagey",
            "occurred_at": "2026-11-22T13:00:00.000Z",
            "agent": None,
            "client": None,
            "data": {"type": "ping", "message": "Hello from your friend Pagey!"},
        }
    }


@dataclass(frozen=True)
class WebhookReply:
    status: int
    body: Any


async def send_webhook(
    client: TestClient,
    payload: Mapping[str, Any] | bytes,
    *,
    secrets: Sequence[str] = (),
    webhook_id: str | None = None,
    signature: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    path: str = "/api/v1/pagerduty/webhook",
) -> WebhookReply:
    """POST a webhook to tocsin the way PagerDuty does (``signature`` overrides the computed one;
    pass ``secrets=()`` and no signature to send none)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Webhook-Subscription": "PY1OQ9Z",
    }
    sig = signature if signature is not None else (sign(body, *secrets) if secrets else None)
    if sig is not None:
        headers["X-PagerDuty-Signature"] = sig
    headers.update(extra_headers or {})
    resp = await client.post(path, data=body, headers=headers)
    try:
        answer = await resp.json(content_type=None)
    except ValueError:
        answer = await resp.text()
    return WebhookReply(resp.status, answer)


def secrets_in(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Which of ``secrets`` appear in any of ``texts`` (for leak checks)."""
    blob = "\n".join(texts)
    return [s for s in secrets if s and s in blob]
