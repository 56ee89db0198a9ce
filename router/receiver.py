"""``POST /api/v1/alertmanager``: authenticate, bound, parse and validate, then hand over.

Alertmanager never retries a 4xx (protocols.md §1.4), so only truly bad input gets one; anything
that might succeed on a retry (the store being down) is a 503.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy
from pydantic import ValidationError

from router.errors import ApiError
from rules.alerts import Notification
from rules.grafana import GrafanaNotification, is_grafana

__all__ = ["clean_text", "parse_notification", "read_body", "read_form"]

_PREVIEW = 80
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with every lone surrogate replaced by U+FFFD, so it can be stored and logged.

    Request text can hold them two ways: header bytes that are not UTF-8 (aiohttp decodes them
    with ``surrogateescape``) and ``\\udc80`` escapes in JSON (``json.loads`` keeps them). The
    store cannot encode such a string and would fail with a 500.
    """
    return _SURROGATE.sub("\ufffd", value)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise ApiError(413, "body too large", f"{declared} bytes declared; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413, "body too large", f"more than {limit} bytes sent; the limit is {limit}"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """``request.post()``, with a body aiohttp cannot decode answered 400 instead of 500.

    aiohttp raises UnicodeDecodeError for a form that is not in its declared charset and
    LookupError for a charset Python does not know; a too-large body stays its 413.
    """
    try:
        return await request.post()
    except (ValueError, LookupError) as e:  # UnicodeDecodeError is a ValueError
        raise ApiError(
            400, "bad request", f"the form body cannot be decoded: {type(e).__name__}"
        ) from None


def check_content_type(request: web.Request) -> None:
    """415 unless the body is declared JSON."""
    ctype = request.content_type
    got = request.headers.get("Content-Type", "")
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(
            415,
            "unsupported media type",
            f"Content-Type must be application/json, got {got!r}",
        )


def parse_notification(body: bytes) -> Notification:
    """Validate an Alertmanager (or Grafana) webhook body; ApiError(400) names the bad field.

    Grafana's webhook contact point sends Alertmanager's body as version "1" with its own
    ``orgId``; only a body naming ``orgId`` is decoded twice to find out.
    """
    try:
        if b'"orgId"' in body:
            grafana = _grafana(body)
            if grafana is not None:
                return grafana
        return Notification.model_validate_json(body)
    except ValidationError as e:
        raise _explain(e, body) from None


def _grafana(body: bytes) -> Notification | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None  # the Alertmanager path explains what is wrong with it
    if not is_grafana(doc):
        return None
    return GrafanaNotification.model_validate(doc).to_notification()


def _explain(err: ValidationError, body: bytes) -> ApiError:
    errors = err.errors(include_url=False)
    first = errors[0]
    kind = first["type"]
    loc = tuple(first["loc"])
    if kind == "json_invalid":
        # The parser reports bad UTF-8 as "invalid unicode code point"; say what it really is.
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as u:
            return ApiError(
                400, "invalid JSON", f"body is not valid UTF-8: {u.reason} at byte {u.start}"
            )
        return ApiError(400, "invalid JSON", first["msg"].removeprefix("Invalid JSON: "))
    if not loc and kind in ("model_type", "model_attributes_type"):
        return ApiError(400, "invalid payload", f"expected a JSON object, got {_json_kind(body)}")
    path = json_path(loc)
    if loc == ("version",) and kind != "missing":
        got = first.get("input")
        return ApiError(
            400,
            "unsupported version",
            f'expected webhook payload version "4", got {_preview(got)}',
            "version",
        )
    detail = _message(first)
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ApiError(400, "invalid payload", detail, path)


def _message(e: Any) -> str:
    kind = e["type"]
    if kind == "missing":
        return f"missing required field {e['loc'][-1]!r}"
    if kind == "value_error":
        return str(e["ctx"]["error"]) if "ctx" in e else e["msg"]
    if kind == "literal_error":
        return f"{e['msg'].lower()}, got {_preview(e.get('input'))}"
    return f"{e['msg'].lower()}, got {_preview(e.get('input'))}"


def _preview(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else json.dumps(v)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def _json_kind(body: bytes) -> str:
    stripped = body.lstrip()[:1]
    return {
        b"[": "an array",
        b'"': "a string",
        b"t": "a boolean",
        b"f": "a boolean",
        b"n": "null",
    }.get(stripped, "a number")


def json_path(loc: tuple[Any, ...]) -> str:
    """Pydantic's loc → ``alerts[0].labels.severity``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
