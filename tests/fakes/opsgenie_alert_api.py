"""Opsgenie's Alert API contract, to hold tocsin's Opsgenie-compatible routes to it.

The schemas are Opsgenie's own OpenAPI document (vendored subset, tests/fakes/data/SOURCES.md);
the samples are the requests and answer Opsgenie's Alert API documentation shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = ["SAMPLES", "response_errors"]

_DATA = Path(__file__).parent / "data"
_DOC = "urn:opsgenie:alert-api"
SAMPLES: dict[str, Any] = json.loads(
    (_DATA / "opsgenie_alert_api.samples.json").read_text(encoding="utf-8")
)


def _registry() -> Registry[Any]:
    doc = json.loads((_DATA / "opsgenie_alert_api.subset.json").read_text(encoding="utf-8"))
    return Registry().with_resource(_DOC, Resource.from_contents(doc, default_specification=DRAFT4))


_REGISTRY = _registry()


def response_errors(path: str, status: int, body: Any) -> list[str]:
    """What in ``body`` the documented ``status`` answer of ``POST path`` would not allow.

    ``path`` is the template (``/v2/alerts/{identifier}/close``). Opsgenie's schemas allow
    extra fields, so the test also checks the fields it needs are present.
    """
    pointer = path.replace("~", "~0").replace("/", "~1")
    ref = f"{_DOC}#/paths/{pointer}/post/responses/{status}/content/application~1json/schema"
    validator = OAS30Validator({"$ref": ref}, registry=_REGISTRY)
    errors = [e.message for e in validator.iter_errors(body)]
    need = ("result",) if status == 202 else ("message",)
    errors += [f"{f!r} is missing" for f in (*need, "took", "requestId") if f not in body]
    return errors
