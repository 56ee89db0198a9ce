"""What Twilio's API accepts in a create-Call or create-Message request, from its published OpenAPI
document (twilio/twilio-oai, vendored in part as ``data/twilio_api_v2010.calls_messages.json``;
source and commit in ``data/SOURCES.md``).

The request bodies are form-encoded; each parameter is read as the schema types it (an integer,
a boolean, an array of repeated values), then the body is validated with openapi-schema-validator.
A parameter the document does not name is reported too: Twilio would ignore it, so sending one is
a mistake on tocsin's side. Formats given a meaning here: ``uri`` (an absolute RFC 3986 URI) and
``twiml`` (well-formed XML).
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = ["SPEC_PATH", "form_violations"]

SPEC_PATH = Path(__file__).parent / "data" / "twilio_api_v2010.calls_messages.json"
_DOC = "urn:twilio:api-v2010"
_FORM = "application/x-www-form-urlencoded"
_FORMATS = copy.deepcopy(oas30_format_checker)


@_FORMATS.checks("twiml", raises=ET.ParseError)
def _is_twiml(value: object) -> bool:
    return not isinstance(value, str) or ET.fromstring(value) is not None


def _load() -> tuple[dict[str, Any], Registry[Any]]:
    doc = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    resource = Resource.from_contents(doc, default_specification=DRAFT4)
    return doc, Registry().with_resource(_DOC, resource)


_SPEC, _REGISTRY = _load()


def _schema(resource: str) -> tuple[str, dict[str, Any]]:
    path = f"/2010-04-01/Accounts/{{AccountSid}}/{resource}.json"
    schema = _SPEC["paths"][path]["post"]["requestBody"]["content"][_FORM]["schema"]
    escaped = path.replace("~", "~0").replace("/", "~1")
    pointer = f"{_DOC}#/paths/{escaped}/post/requestBody/content/{_FORM.replace('/', '~1')}/schema"
    return pointer, schema


def _typed(prop: dict[str, Any], values: list[str]) -> Any:
    kind = prop.get("type")
    if kind == "array":
        return list(values)
    value = values[-1]
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value  # left a string: the schema reports it
    if kind == "boolean" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def form_violations(resource: str, form: Iterable[tuple[str, str]]) -> list[str]:
    """What in ``form`` (a create request to ``Calls`` or ``Messages``) the document refuses."""
    pointer, schema = _schema(resource)
    props: dict[str, Any] = schema["properties"]
    values: dict[str, list[str]] = {}
    for name, value in form:
        values.setdefault(name, []).append(value)
    errors = [f"{resource}: unknown parameter {n!r}" for n in values if n not in props]
    body = {n: _typed(props[n], v) for n, v in values.items() if n in props}
    validator = OAS30Validator({"$ref": pointer}, registry=_REGISTRY, format_checker=_FORMATS)
    for e in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in e.absolute_path) or "body"
        message = e.message if len(e.message) <= 200 else e.message[:199] + "…"
        errors.append(f"{resource}: {where}: {message}")
    return errors
