"""A fake ntfy server: "Publish as JSON" (``POST /`` with ``{"topic", "message", ...}``).

A real aiohttp server on 127.0.0.1 (random port), following ntfy's documented contract
(docs/publish.md and server/errors.go of github.com/binwiederhier/ntfy, see
``data/SOURCES.md``; the error values are vendored in ``data/ntfy_errors.json``):

- access control as a server with ``auth-default-access: deny-all``: no ``Authorization`` → 403
  ``40301``; a Bearer token it does not know → 401 ``40101``; a token without write access to
  the topic → 403 ``40301``;
- the JSON body at most twice the message size limit (8,192 bytes) → else 413 ``41303``; not
  JSON → 400 ``40024``; ``topic`` must match ``^[-_A-Za-z0-9]{1,64}$`` → else 400 ``40009``;
  ``priority`` 0 or 1 to 5 → else 400 ``40007``; at most three ``actions``, each ``view``,
  ``broadcast`` or ``http`` with a ``label`` (and a ``url`` for view/http; an http ``method``
  one of GET/POST/PUT) → else 400 ``40018``;
- a ``message`` over 4,096 bytes becomes an attachment, which a server without an attachment
  cache (this one) refuses: 400 ``40014``;
- ``limit(n)``: after ``n`` more accepted messages, 429 ``42901`` (the visitor's request bucket).

Accepted messages are answered as ntfy does, with the message as JSON (``id``, ``time``,
``expires``, ``event: "message"``, ``topic``, ...) and kept in ``messages``. Refusals of a
well-authenticated request (tocsin built something ntfy would not take) are kept in
``violations``, and ``close()`` fails the test on any unless ``expect_violations()`` was called.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.serving import LocalFake

__all__ = ["NTFY_TOKEN", "FakeNtfy", "ntfy_error"]

NTFY_TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"  # ntfy access tokens: tk_ + 29 characters
MESSAGE_LIMIT = 4096
JSON_LIMIT = 2 * MESSAGE_LIMIT  # "2x to account for JSON format overhead"
TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
ACTIONS_MAX = 3
_ERRORS = Path(__file__).parent / "data" / "ntfy_errors.json"


@cache
def _errors() -> Mapping[str, Mapping[str, Any]]:
    doc: dict[str, dict[str, Any]] = json.loads(_ERRORS.read_text(encoding="utf-8"))
    return doc


def ntfy_error(name: str) -> web.Response:
    """ntfy's answer for the error ``name`` (as in server/errors.go): ``{"code", "http",
    "error"[, "link"]}`` with that HTTP status (``link`` is omitted when empty)."""
    e = _errors()[name]
    body = {k: v for k, v in e.items() if k != "link" or v}
    return web.json_response(body, status=int(e["http"]))


def _action_ok(a: Any) -> bool:
    if not isinstance(a, dict) or not isinstance(a.get("label"), str) or not a["label"]:
        return False
    kind = a.get("action")
    if kind == "broadcast":
        return True
    if kind not in ("view", "http") or not isinstance(a.get("url"), str) or not a["url"]:
        return False
    return kind == "view" or a.get("method", "POST") in ("GET", "POST", "PUT")


class FakeNtfy(LocalFake[str]):
    """Start with ``await fake.start()``; ``url`` is the server's base URL."""

    def __init__(self, *, token: str = NTFY_TOKEN, topics: tuple[str, ...] = ()) -> None:
        super().__init__("publications ntfy would refuse")
        self.token = token
        self.writable = set(topics)  # empty: the token may write every topic
        self.messages: list[dict[str, Any]] = []  # accepted, as ntfy answered them
        self.requests: list[tuple[dict[str, str], bytes]] = []  # every request: headers, body
        self._left: int | None = None

    async def start(self) -> FakeNtfy:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        base = await self._serve(app)
        self.url = base
        return self

    def limit(self, accepted: int) -> None:
        """Accept ``accepted`` more messages, then answer 429 (42901) until ``limit`` again."""
        self._left = accepted

    def _auth(self, request: web.Request, topic: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return ntfy_error("errHTTPForbidden")  # anonymous: deny-all
        if not secrets.compare_digest(header, f"Bearer {self.token}"):
            return ntfy_error("errHTTPUnauthorized")
        if self.writable and topic not in self.writable:
            return ntfy_error("errHTTPForbidden")
        return None

    def _refuse(self, name: str, why: str) -> web.Response:
        self.violations.append(why)
        return ntfy_error(name)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        if request.method not in ("POST", "PUT") or request.path != "/":
            return web.json_response({"code": 40401, "http": 404, "error": "page not found"}, 404)
        if len(body) > JSON_LIMIT:
            return self._refuse("errHTTPEntityTooLargeJSONBody", f"body of {len(body)} bytes")
        try:
            m = json.loads(body)
        except ValueError:
            return self._refuse("errHTTPBadRequestJSONInvalid", "body is not JSON")
        if not isinstance(m, dict):
            return self._refuse("errHTTPBadRequestJSONInvalid", "body is not a JSON object")
        topic = m.get("topic")
        if not isinstance(topic, str) or not TOPIC.match(topic):
            return self._refuse("errHTTPBadRequestTopicInvalid", f"topic {topic!r}")
        refused = self._auth(request, topic)
        if refused is not None:
            return refused
        return self._publish(m)

    def _publish(self, m: dict[str, Any]) -> web.Response:
        priority = m.get("priority", 0)
        if not isinstance(priority, int) or not 0 <= priority <= 5:
            return self._refuse("errHTTPBadRequestPriorityInvalid", f"priority {priority!r}")
        actions = m.get("actions", [])
        if not isinstance(actions, list) or len(actions) > ACTIONS_MAX:
            return self._refuse("errHTTPBadRequestActionsInvalid", "more than three actions")
        if not all(_action_ok(a) for a in actions):
            return self._refuse("errHTTPBadRequestActionsInvalid", f"actions {actions!r}")
        message = m.get("message") or "triggered"
        if not isinstance(message, str) or len(message.encode()) > MESSAGE_LIMIT:
            return self._refuse("errHTTPBadRequestAttachmentsDisallowed", "message over 4096 B")
        if self._left is not None:
            if self._left <= 0:
                return ntfy_error("errHTTPTooManyRequestsLimitRequests")
            self._left -= 1
        now = int(time.time())
        out: dict[str, Any] = {
            "id": secrets.token_urlsafe(9)[:12],
            "time": now,
            "expires": now + 12 * 3600,
            "event": "message",
            "topic": m["topic"],
            "message": message,
        }
        for key in ("title", "tags", "click", "icon"):
            if m.get(key):
                out[key] = m[key]
        if priority:
            out["priority"] = priority
        if actions:
            out["actions"] = [{"id": secrets.token_urlsafe(6), **a} for a in actions]
        self.messages.append(out)
        return web.json_response(out)
