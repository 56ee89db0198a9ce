"""What the fake PagerDuty's Events API accepts: PagerDuty's published Events v2 OpenAPI document,
plus the limits its developer documentation states that the document does not encode.

The document is vendored unchanged as ``data/pagerduty_events_v2.openapiv3.json`` (its source and
commit are in ``data/SOURCES.md``); the request body schema of ``POST /enqueue`` is applied with
openapi-schema-validator (OpenAPI 3.0 semantics). Two formats in it need a meaning:

- ``date-time`` is RFC 3339 (a timestamp must carry its zone);
- ``url`` is not one of OpenAPI's registered formats; PagerDuty shows these values as links to
  open in a browser, so here it is an absolute RFC 3986 URI with an ``http``/``https`` scheme and
  a host.

From the developer documentation (``docs/events-API-v2`` of PagerDuty/developer-docs): an event is
at most 512 KB, ``payload.summary`` at most 1024 characters, ``dedup_key`` at most 255, a
``trigger`` needs a ``payload`` and an ``acknowledge``/``resolve`` a ``dedup_key``, and a routing
(integration) key is 32 characters long.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = ["INVALID_EVENT", "MAX_EVENT_BYTES", "SCHEMA_PATH", "validate_event"]

SCHEMA_PATH = Path(__file__).parent / "data" / "pagerduty_events_v2.openapiv3.json"
MAX_EVENT_BYTES = 512_000
INVALID_EVENT = {"status": "invalid event", "message": "Event object is invalid"}
_DOC = "urn:pagerduty:events-v2"
_ENQUEUE = f"{_DOC}#/paths/~1enqueue/post/requestBody/content/application~1json/schema"


def _is_url(value: object) -> bool:
    if not isinstance(value, str) or not _FORMATS.conforms(value, "uri"):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


_FORMATS = copy.deepcopy(oas30_format_checker)
_FORMATS.checks("url")(_is_url)


def _validator() -> OAS30Validator:
    doc = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    resource = Resource.from_contents(doc, default_specification=DRAFT4)
    registry: Registry[Any] = Registry().with_resource(_DOC, resource)
    return OAS30Validator({"$ref": _ENQUEUE}, registry=registry, format_checker=_FORMATS)


_ENQUEUE_VALIDATOR = _validator()


def validate_event(body: bytes) -> tuple[list[str], dict[str, Any]]:
    """PagerDuty's checks on an alert event: (errors, the decoded event)."""
    if len(body) > MAX_EVENT_BYTES:
        return ["Event object exceeds the maximum size of 512KB"], {}
    try:
        event = json.loads(body)
    except ValueError:
        return ["Event object is not valid JSON"], {}
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"], {}
    errors = [
        f"'{_where(e.absolute_path)}' {e.message}"
        for e in sorted(_ENQUEUE_VALIDATOR.iter_errors(event), key=lambda e: list(e.path))
    ]
    return errors + _documented_limits(event), event


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "event"


def _documented_limits(event: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    key = event.get("routing_key")
    if isinstance(key, str) and len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    dedup = event.get("dedup_key")
    if isinstance(dedup, str) and len(dedup) > 255:
        errors.append("Length of 'dedup_key' is incorrect (should be at most 255 characters)")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is missing or blank")
    payload = event.get("payload")
    if action == "trigger":
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or invalid")
        else:
            errors.extend(_payload_limits(payload))
    return errors


def _payload_limits(payload: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for name in ("summary", "source"):
        v = payload.get(name)
        if isinstance(v, str) and not v.strip():
            errors.append(f"'payload.{name}' is missing or blank")
    summary = payload.get("summary")
    if isinstance(summary, str) and len(summary) > 1024:
        errors.append(
            "Length of 'payload.summary' is incorrect (should be at most 1024 characters)"
        )
    return errors
