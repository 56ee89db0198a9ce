"""What Slack's Web API accepts from tocsin, from Slack's published OpenAPI (Swagger 2.0) document
(slackapi/slack-api-specs, vendored in part as ``data/slack_web_openapi_v2.subset.json``; source
and commit in ``data/SOURCES.md``), plus the Block Kit limits Slack's reference documents.

A request's arguments are read from wherever Slack takes them (the query string, a form body or a
JSON body, as slack_sdk sends them) and checked against the method's ``parameters``: every
required one present, none the document does not name (Slack answers ``invalid_arg_name``), each
of the declared type. In a JSON body ``blocks`` and ``attachments`` are JSON arrays (Slack's
"JSON-encoded" string in a form body). Answers the fake gives are checked against the method's
documented success or error schema (``response_violations``), so the fake itself cannot drift
from the contract either.

Block Kit limits (api.slack.com/reference/block-kit): at most 50 blocks in a message; a
``header`` is ``plain_text`` of at most 150 characters; a ``section`` text at most 3000; an
``actions`` block at most 25 elements; a ``context`` block at most 10; a button's text at most
75 characters, its ``action_id`` at most 255, its ``value`` at most 2000 and its ``url`` at most
3000; ``action_id``s are unique within a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = ["SPEC_PATH", "block_violations", "request_violations", "response_violations"]

SPEC_PATH = Path(__file__).parent / "data" / "slack_web_openapi_v2.subset.json"
_DOC = "urn:slack:web-api"
_SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
_REGISTRY: Registry[Any] = Registry().with_resource(
    _DOC, Resource.from_contents(_SPEC, default_specification=DRAFT4)
)
_JSON_ARRAYS = ("blocks", "attachments")


def _operation(method: str) -> tuple[str, dict[str, Any]] | None:
    found = _SPEC["paths"].get(f"/{method}")
    if found is None:
        return None
    verb, op = next(iter(found.items()))
    return verb, op


def _typed_ok(kind: str | None, name: str, value: Any, form: bool) -> bool:
    if kind == "boolean":
        if form:  # a form or query value: slack_sdk sends 1/0, people write true/false
            return str(value).lower() in ("1", "0", "true", "false")
        return isinstance(value, bool) or str(value) in ("1", "0", "true", "false")
    if kind == "integer":
        return str(value).lstrip("-").isdigit()
    if kind == "string":
        if not form and name in _JSON_ARRAYS:
            return isinstance(value, list | str)
        return isinstance(value, str)
    return True


def request_violations(method: str, args: Mapping[str, Any], *, form: bool) -> list[str]:
    """What in ``args`` (one call of ``method``) the document refuses; [] when it all fits."""
    found = _operation(method)
    if found is None:
        return [f"{method}: not a method of the vendored document"]
    _, op = found
    params = {p["name"]: p for p in op["parameters"] if p["name"] != "token"}
    errors = [f"{method}: unknown argument {n!r}" for n in args if n not in params]
    for name, p in params.items():
        if name not in args:
            if p.get("required"):
                errors.append(f"{method}: missing required argument {name!r}")
            continue
        if not _typed_ok(p.get("type"), name, args[name], form):
            errors.append(f"{method}: {name!r} is not a {p.get('type')}: {args[name]!r}")
    if "blocks" in args:
        blocks = args["blocks"]
        try:
            parsed = json.loads(blocks) if isinstance(blocks, str) else blocks
        except ValueError:
            return [*errors, f"{method}: blocks is not JSON"]
        errors += [f"{method}: {e}" for e in block_violations(parsed)]
    return errors


def response_violations(method: str, body: Mapping[str, Any]) -> list[str]:
    """What in the fake's own answer ``body`` to ``method`` the document does not describe."""
    found = _operation(method)
    if found is None:
        return [f"{method}: not a method of the vendored document"]
    verb = found[0]
    code = "200" if body.get("ok") else "default"
    escaped = f"/{method}".replace("~", "~0").replace("/", "~1")
    pointer = f"{_DOC}#/paths/{escaped}/{verb}/responses/{code}/schema"
    validator = Draft4Validator({"$ref": pointer}, registry=_REGISTRY)
    return [f"{method} answer: {e.message}" for e in validator.iter_errors(dict(body))]


def _text_len(obj: Any) -> int:
    return len(obj.get("text", "")) if isinstance(obj, dict) else 0


def _element(e: Any, seen: set[str]) -> list[str]:
    if not isinstance(e, dict):
        return ["an element is not an object"]
    out: list[str] = []
    if e.get("type") == "button":
        if _text_len(e.get("text")) > 75:
            out.append("button text over 75 characters")
        if len(str(e.get("value", ""))) > 2000:
            out.append("button value over 2000 characters")
        if len(str(e.get("url", ""))) > 3000:
            out.append("button url over 3000 characters")
    action_id = e.get("action_id")
    if action_id is not None:
        if len(str(action_id)) > 255:
            out.append("action_id over 255 characters")
        if action_id in seen:
            out.append(f"action_id {action_id!r} is not unique")
        seen.add(str(action_id))
    return out


def block_violations(blocks: Any) -> list[str]:
    """Block Kit limits ``blocks`` breaks (see the module's docstring)."""
    if not isinstance(blocks, list):
        return ["blocks is not an array"]
    out = ["more than 50 blocks"] if len(blocks) > 50 else []
    seen: set[str] = set()
    for b in blocks:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "header":
            text = b.get("text", {})
            if text.get("type") != "plain_text" or _text_len(text) > 150:
                out.append("a header's text is plain_text of at most 150 characters")
        elif kind == "section":
            if _text_len(b.get("text")) > 3000:
                out.append("a section's text is over 3000 characters")
            for f in b.get("fields", []):
                if _text_len(f) > 2000:
                    out.append("a section field is over 2000 characters")
        elif kind == "actions":
            elements = b.get("elements", [])
            if len(elements) > 25:
                out.append("an actions block has more than 25 elements")
            for e in elements:
                out += _element(e, seen)
        elif kind == "context":
            if len(b.get("elements", [])) > 10:
                out.append("a context block has more than 10 elements")
        elif kind not in ("divider", "image", "input", "rich_text", "file", "video"):
            out.append(f"unknown block type {kind!r}")
    return out
