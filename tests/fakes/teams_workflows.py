"""A fake Teams Workflows webhook: the "When a Teams webhook request is received" trigger.

A real aiohttp server on 127.0.0.1 (random port). ``url`` has the shape of a workflow's trigger
URL (``/workflows/{id}/triggers/manual/paths/invoke?api-version=1&sp=...&sv=1.0&sig=...``); a
request whose ``sig`` does not match answers 401 as Power Automate does. The body must be the
message envelope the "Post card in a chat or channel" step takes:
``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"content": {card}}]}``, each card valid against the Adaptive Card JSON schema of the version it
declares (vendored from github.com/microsoft/AdaptiveCards, see ``data/SOURCES.md``) and the
message under Teams' 28 KB. A valid request is answered ``202 Accepted`` with no body (Workflows
runs the flow later and returns no message id); an invalid one 400, kept in ``violations``, and
``close()`` fails the test on any unless ``expect_violations()`` was called.
"""

from __future__ import annotations

import json
from collections import deque
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft6Validator

from tests.fakes.chat_webhooks import ChatReceived, Scripted
from tests.fakes.serving import LocalFake

__all__ = ["SIG", "FakeTeamsWorkflows", "card_errors"]

SIG = "fake-workflow-sig-0123456789abcdef"
_PATH = "/workflows/0f1e2d3c4b5a69788796a5b4c3d2e1f0/triggers/manual/paths/invoke"
_SCHEMAS = {"1.4": Path(__file__).parent / "data" / "adaptive-card-1.4.json"}
_MAX_BYTES = 28 * 1024
CARD = "application/vnd.microsoft.card.adaptive"


@cache
def _validator(version: str) -> Draft6Validator:
    schema = json.loads(_SCHEMAS[version].read_text(encoding="utf-8"))
    Draft6Validator.check_schema(schema)
    # Formats checked too: an action's url is a "uri-reference", "$schema" a "uri".
    return Draft6Validator(schema, format_checker=Draft6Validator.FORMAT_CHECKER)


def card_errors(card: Any) -> list[str]:
    """Why ``card`` is not a valid Adaptive Card of the version it declares."""
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return ["content is not an AdaptiveCard"]
    version = card.get("version")
    if version not in _SCHEMAS:
        return [f"no schema vendored for declared version {version!r}"]
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(version).iter_errors(card)
    ]


def envelope_errors(body: Any, size: int) -> list[str]:
    """Why the trigger's "Post card" step would fail on ``body``."""
    if not isinstance(body, dict) or body.get("type") != "message":
        return ['body is not {"type": "message", ...}']
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments: a non-empty list is required"]
    errors: list[str] = []
    for i, a in enumerate(attachments):
        if not isinstance(a, dict) or a.get("contentType") != CARD:
            errors.append(f"attachments[{i}].contentType must be {CARD}")
            continue
        errors += [f"attachments[{i}].content.{e}" for e in card_errors(a.get("content"))]
    if size > _MAX_BYTES:
        errors.append(f"message is {size} bytes, over Teams' 28 KB")
    return errors


class FakeTeamsWorkflows(LocalFake[list[str]]):
    """Start with ``await fake.start()``; ``url`` is the workflow's webhook URL."""

    def __init__(self) -> None:
        super().__init__("messages Teams Workflows would refuse")
        self.received: list[ChatReceived] = []
        self.cards: list[dict[str, Any]] = []  # the cards of accepted messages, in order
        self._script: deque[Scripted] = deque()

    async def start(self) -> FakeTeamsWorkflows:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        base = await self._serve(app)
        query = f"api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
        self.url = f"{base}{_PATH}?{query}"
        return self

    def script(self, *answers: Scripted) -> None:
        """Answer the next valid requests with these, in order."""
        self._script.extend(answers)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            ChatReceived(request.path, dict(request.query), dict(request.headers), body)
        )
        if request.method != "POST" or request.path != _PATH:
            return _error(404, "TriggerNotFound", "The workflow trigger could not be found.")
        if request.query.get("sig") != SIG:
            return _error(
                401, "DirectApiAuthorizationRequired", "The request must be authenticated."
            )
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        errors = envelope_errors(doc, len(body)) if doc is not None else ["body is not JSON"]
        if errors:
            self.violations.append(errors)
            return _error(400, "InvalidRequestContent", "; ".join(errors))
        if self._script:
            s = self._script.popleft()
            return web.json_response(s.body, status=s.status, headers=s.headers)
        self.cards += [a["content"] for a in doc["attachments"]]
        return web.Response(status=202)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
