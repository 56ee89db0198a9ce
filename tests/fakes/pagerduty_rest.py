"""What the fake PagerDuty's REST API answers, held to PagerDuty's published REST OpenAPI document.

The document (``reference/REST/openapiv3.json`` of PagerDuty/api-schema) is vendored in part as
``data/pagerduty_rest.alerts_oncalls.json``: the 200 and 429 responses of ``GET
/incidents/{id}/alerts`` and ``GET /oncalls`` and the components they reference, each copied
unchanged at its original JSON pointer (source and commit in ``data/SOURCES.md``). Every body the
fake answers with is validated against it, so a test never passes on a shape PagerDuty would not
send.

Two things PagerDuty sends that the document does not describe, allowed here on purpose:

- ``include[]=users`` expands each ``user_reference`` into a full user (PagerDuty's documented
  ``include`` behaviour): the entry is validated in its reference form, before the expansion;
- an on-call's ``start`` and ``end`` are ``null`` for a permanent on-call (the document's own
  description says so, though its schema types them as strings), and its ``schedule`` is
  ``null`` when the escalation policy names the user directly.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = ["RATE_LIMITED", "SPEC_PATH", "rest_violations"]

SPEC_PATH = Path(__file__).parent / "data" / "pagerduty_rest.alerts_oncalls.json"
_DOC = "urn:pagerduty:rest"
# PagerDuty's body for a REST 429 (developer-docs, docs/REST-API/04-Rate-Limits.md).
RATE_LIMITED = {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
_FORMATS = copy.deepcopy(oas30_format_checker)


def _registry() -> Registry[Any]:
    doc = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return Registry().with_resource(_DOC, Resource.from_contents(doc, default_specification=DRAFT4))


_REGISTRY = _registry()


def _pointer(path: str, status: int) -> str:
    escaped = path.replace("~", "~0").replace("/", "~1")
    if status == 429:
        return f"{_DOC}#/components/responses/TooManyRequests/content/application~1json/schema"
    return f"{_DOC}#/paths/{escaped}/get/responses/{status}/content/application~1json/schema"


def rest_violations(path: str, status: int, body: Any) -> list[str]:
    """What in ``body`` (the answer to ``GET path`` with ``status``) the document refuses.

    ``path`` is the document's path template (``/incidents/{id}/alerts``, ``/oncalls``).
    """
    validator = OAS30Validator(
        {"$ref": _pointer(path, status)}, registry=_REGISTRY, format_checker=_FORMATS
    )
    errors = []
    for e in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in e.absolute_path) or "body"
        if path == "/oncalls" and _permanent_bound(e.absolute_path, e.instance):
            continue
        errors.append(f"GET {path} {status}: {where}: {e.message[:200]}")
    return errors


def _permanent_bound(where: Any, value: Any) -> bool:
    parts = list(where)
    nullable = ("start", "end", "schedule")
    return value is None and len(parts) == 3 and parts[0] == "oncalls" and parts[2] in nullable
