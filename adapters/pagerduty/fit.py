"""Fitting an Events API v2 event to what PagerDuty accepts, so every page can be sent.

PagerDuty documents 1024 characters for ``payload.summary``, 255 for ``dedup_key`` and 512 KB
for the whole event, and its OpenAPI document types ``links[].href`` and ``client_url`` as URLs.
It documents no length for ``source``, ``component``, ``group``, ``class`` or a link's text; tocsin
caps those at ``MAX_FIELD`` so that no single label (they come from alert labels) can push an
event over 512 KB. A URL cut short would point somewhere else, so an unusable one is dropped
instead, and the caller is told why (it goes into the incident's timeline).
"""

from __future__ import annotations

import json
from typing import Any

from adapters.http import absolute_http_url

__all__ = [
    "MAX_DEDUP_KEY",
    "MAX_EVENT_BYTES",
    "MAX_FIELD",
    "MAX_SUMMARY",
    "MAX_URL",
    "SIZE_ERROR_DETAILS",
    "EventTooLarge",
    "dumps",
    "fit_event",
    "truncate",
]

MAX_SUMMARY = 1024  # characters (payload.summary), documented
MAX_DEDUP_KEY = 255  # characters, documented
MAX_FIELD = 1024  # tocsin's cap on source, component, group, class and link text
MAX_URL = 2048  # a longer href or client_url is dropped (browsers and proxies refuse longer)
MAX_DETAIL_STRING = 1024  # a string in custom_details, when the whole event is too large
MAX_EVENT_BYTES = 512_000  # the encoded event, as Alertmanager counts PagerDuty's 512 KB
# Alertmanager's wording, so operators see the same note whichever tool sent the event.
SIZE_ERROR_DETAILS = {
    "error": "Custom details have been removed because the original event exceeds the "
    "maximum size of 512KB"
}
_CAPPED = ("source", "component", "group", "class")


class EventTooLarge(ValueError):
    """The event exceeds 512000 bytes even without its custom details."""


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters; when cut, the last one is '…' (as Alertmanager does)."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def fit_event(event: dict[str, Any]) -> tuple[bytes, list[str]]:
    """The JSON bytes to send and what had to be left out to send them (for the timeline).

    Fields are cut to their limits, unusable URLs dropped; then, only if the event is still
    over 512 KB, long strings in ``custom_details`` are cut, and at last the details replaced.
    """
    notes: list[str] = []
    event = _fit_fields(event, notes)
    body = dumps(event)
    payload = event.get("payload")
    if len(body) <= MAX_EVENT_BYTES or not isinstance(payload, dict):
        return _checked(body), notes
    if "custom_details" in payload:
        cut = _cut_strings(payload["custom_details"])
        body = dumps(event | {"payload": payload | {"custom_details": cut}})
        if len(body) <= MAX_EVENT_BYTES:
            notes.append(
                f"long values in the PagerDuty event's custom details were cut to "
                f"{MAX_DETAIL_STRING} characters (the event was over 512 KB)"
            )
            return body, notes
        body = dumps(event | {"payload": payload | {"custom_details": SIZE_ERROR_DETAILS}})
        notes.append("the PagerDuty event's custom details were left out (over 512 KB)")
    return _checked(body), notes


def _checked(body: bytes) -> bytes:
    if len(body) > MAX_EVENT_BYTES:
        raise EventTooLarge(
            f"the event is {len(body)} bytes even without custom details; PagerDuty's limit is "
            f"{MAX_EVENT_BYTES}"
        )
    return body


def _fit_fields(event: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out = dict(event)
    payload = out.get("payload")
    if isinstance(payload, dict):
        payload = dict(payload)
        if isinstance(payload.get("summary"), str):
            payload["summary"] = truncate(payload["summary"], MAX_SUMMARY)
        for name in _CAPPED:
            if isinstance(payload.get(name), str):
                payload[name] = truncate(payload[name], MAX_FIELD)
        out["payload"] = payload
    if isinstance(out.get("dedup_key"), str):
        out["dedup_key"] = truncate(out["dedup_key"], MAX_DEDUP_KEY)
    if "client_url" in out:
        url, why = _usable_url(str(out["client_url"]))
        if url:
            out["client_url"] = url
        else:
            del out["client_url"]
            notes.append(f"client_url not sent to PagerDuty: {why}")
    if "links" in out:
        out["links"] = _fit_links(out["links"], notes)
        if not out["links"]:
            del out["links"]
    return out


def _fit_links(links: list[dict[str, str]], notes: list[str]) -> list[dict[str, str]]:
    kept: list[dict[str, str]] = []
    for link in links:
        text = truncate(str(link.get("text", "")), MAX_FIELD)
        url, why = _usable_url(str(link.get("href", "")))
        if not url:
            notes.append(f"link {truncate(text, 80)!r} not sent to PagerDuty: {why}")
            continue
        kept.append({"href": url, "text": text} if text else {"href": url})
    return kept


def _usable_url(value: str) -> tuple[str, str]:
    url, why = absolute_http_url(value)
    if url and len(url) > MAX_URL:
        return "", f"longer than {MAX_URL} characters"
    return url, why


def _cut_strings(value: Any) -> Any:
    """``value`` with every string (keys included) cut to ``MAX_DETAIL_STRING`` characters."""
    if isinstance(value, str):
        return truncate(value, MAX_DETAIL_STRING)
    if isinstance(value, dict):
        return {truncate(str(k), MAX_DETAIL_STRING): _cut_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v) for v in value]
    return value
