"""What one webhook endpoint is sent: tocsin's JSON document, a preset's, or a template's.

A ``template`` is a Jinja2 body rendered in the rule templates' bounded sandbox
(``rules.templates``: step budget, time limit, output cap) over tocsin's JSON document
(``incident``, ``notification``, ``alerts``, ``bundle``, ``sent_at``). ``check`` renders each
template on a sample notification, as ``tocsin check`` does for rule templates, and for a JSON
``content_type`` insists the result parses as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from adapters.config import WebhookConfig, WebhookEndpoint
from adapters.webhook.presets import preset_body
from rules.templates import Template, TemplateLimitExceeded, TemplateSyntaxProblem

__all__ = ["SAMPLE_DOCUMENT", "body_for", "check", "content_type_of", "url_of"]

SAMPLE_DOCUMENT: dict[str, Any] = {
    "version": "1",
    "sent_at": "2024-01-01T00:05:00+00:00",
    "incident": {
        "id": "0123456789abcdef0123",
        "number": 42,
        "key": 'am/{}:{alertname="SampleAlert"}',
        "title": "SampleAlert on api",
        "status": "triggered",
        "severity": "P1",
        "severity_name": "SEV-2",
        "team": "api",
        "policy": "default",
        "labels": {"alertname": "SampleAlert", "service": "api"},
        "opened_at": "2024-01-01T00:00:00+00:00",
        "acknowledged_at": None,
        "mitigated_at": None,
        "resolved_at": None,
        "url": "https://tocsin.example/api/v1/incidents/0123456789abcdef0123",
        "page": "https://tocsin.example/incidents/0123456789abcdef0123",
    },
    "notification": {
        "id": "0123456789abcdef0123:0:page:0:1:alice:webhook",
        "kind": "page",
        "tier": 1,
        "round": 0,
        "target": "role:oncall",
        "person": "alice",
        "person_name": "Alice",
        "channel": "webhook",
    },
    "alerts": [
        {
            "fingerprint": "0123456789abcdef",
            "status": "firing",
            "starts_at": "2024-01-01T00:00:00+00:00",
            "ends_at": None,
            "labels": {
                "alertname": "SampleAlert",
                "service": "api",
                "severity": "critical",
                "instance": "host-1:9100",
                "job": "node",
            },
            "annotations": {"summary": "Sample summary", "runbook_url": "https://runbooks.example"},
            "generator_url": "http://prometheus.example/graph",
        }
    ],
    "bundle": [],
}
"""A plausible notification: what ``check`` renders every body template against."""


@lru_cache(maxsize=64)
def _compiled(source: str) -> Template:
    return Template(source)


def _is_json(content_type: str) -> bool:
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or main.endswith("+json")


def content_type_of(ep: WebhookEndpoint) -> str:
    """The Content-Type header of ``ep``'s requests."""
    return ep.content_type if ep.template is not None else "application/json"


def url_of(ep: WebhookEndpoint, doc: Mapping[str, Any] | None = None) -> str:
    """Where ``ep`` posts ``doc``; Telegram's URL holds the bot token, so it is never logged.

    Google Chat messages about one incident go to one thread: its incoming webhook takes a
    ``threadKey`` (here the incident's id) and, with ``REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD``,
    starts the thread with the first one.
    """
    if ep.preset == "telegram" and ep.bot_token is not None:
        base = ep.api_url.rstrip("/")
        return f"{base}/bot{ep.bot_token.get_secret_value()}/sendMessage"
    if ep.preset == "google_chat" and doc is not None:
        parts = urlsplit(ep.url)
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("threadKey", "messageReplyOption")
        ]
        query += [
            ("threadKey", f"tocsin-{doc['incident']['id']}"),
            ("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"),
        ]
        return urlunsplit(parts._replace(query=urlencode(query)))
    return ep.url


def body_for(ep: WebhookEndpoint, doc: Mapping[str, Any], plain: bytes) -> bytes:
    """The bytes ``ep`` is sent for ``doc`` (``plain``: tocsin's own document, serialised).

    ValueError when a template fails on this notification (the page then fails permanently
    and goes to the person's fallback, with the reason on the timeline).
    """
    if ep.preset is not None:
        return preset_body(ep.preset, doc, ep)
    if ep.template is None:
        return plain
    text = _compiled(ep.template).render_document(doc)
    if _is_json(ep.content_type):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"template output is not JSON ({e.msg} at {e.pos})") from None
    return text.encode()


def check(cfg: WebhookConfig) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``cfg``'s endpoints from working, as (path under ``adapters.webhook``, message):
    a template that does not compile, goes past a cap on the sample notification, or (for a JSON
    content type) does not render JSON there."""
    out: list[tuple[tuple[str, ...], str]] = []
    for name, ep in cfg.endpoints.items():
        if ep.template is None:
            continue
        where = ("endpoints", name, "template")
        try:
            template = _compiled(ep.template)
            template.check_limits(SAMPLE_DOCUMENT)
            body_for(ep, SAMPLE_DOCUMENT, b"")
        except TemplateSyntaxProblem as e:
            out.append((where, str(e)))
        except TemplateLimitExceeded as e:
            out.append((where, f"template goes past a limit on a sample notification: {e}"))
        except ValueError as e:
            out.append((where, f"on a sample notification: {e}"))
    return out
