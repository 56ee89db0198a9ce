"""A fake regional SMS gateway: the shape most HTTP SMS gateways share, for the generic provider.

There is no one published contract for "an SMS gateway"; this fake speaks the common one the
generic provider's README example configures (JSON in, JSON out, an API key as a bearer token),
with the behaviours such gateways document:

- ``POST {url}/v1/messages`` with ``Authorization: Bearer <api key>`` and a JSON body
  ``{"to": "+E164", "from": "...", "text": "..."}``;
- 200 ``{"status": "queued", "id": "msg_…"}`` on success;
- 401 ``{"status": "error", "error": "invalid api key"}``; 400 for a missing field or a number
  that is not E.164; 429 with ``Retry-After`` when scripted (rate limits);
- scripted answers for the next requests: any status with an error body, a 200 that reports an
  error in its body (``{"status": "error"}``: what ``success_path`` exists for), or a dropped
  connection.

A request the gateway refuses for its shape (not a POST, not JSON, a missing field, a number
that is not E.164: what tocsin's templates rendered wrong) is kept in ``violations`` and fails the
test at ``close()`` unless ``expect_violations()`` was called, as with the other fakes; a wrong
API key (401) is a configuration a test may choose, and is not one.

Inbound: ``forward(sender, text)`` POSTs a text to tocsin's inbound route as the gateway's MO
webhook does, as a form (or JSON) with ``from``, ``text``, ``id``, authenticated the way the test configures:
``X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` or HTTP basic auth. ``url`` is the
base URL tocsin is configured with.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.fakes.serving import LocalFake

__all__ = ["API_KEY", "FakeSmsGateway", "GatewayAnswer", "GatewayRequest"]

API_KEY = "gw-api-key-5f0c9d1e7a"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass(frozen=True)
class GatewayRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the decoded JSON (None when it was not JSON)
    status: int  # what the fake answered (0: dropped)


@dataclass(frozen=True)
class GatewayAnswer:
    """A canned answer for the next send: ``status`` + ``body``, or ``drop`` the connection."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"status": "error", "error": "failed"})
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


class FakeSmsGateway(LocalFake[str]):
    """The gateway's send API on 127.0.0.1 (random port) and its inbound forwards to tocsin."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__("requests the SMS gateway refuses were sent")
        self.api_key = api_key
        self.requests: list[GatewayRequest] = []
        self.sent: list[dict[str, str]] = []
        self._script: deque[GatewayAnswer] = deque()

    async def start(self) -> FakeSmsGateway:
        app = web.Application()
        app.router.add_route("*", "/v1/messages", self._handle)
        self.url = await self._serve(app)
        return self

    def script(self, *answers: GatewayAnswer) -> None:
        """Queue canned answers for the next sends."""
        self._script.extend(answers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        resp = self._answer(request, body)
        status = 0 if resp is None else resp.status
        self.requests.append(
            GatewayRequest(request.method, request.path, dict(request.headers), body, status)
        )
        if resp is None:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return resp

    def _refuse(self, status: int, error: str) -> web.Response:
        """A request refused for its shape: answered as the gateway does, and remembered."""
        self.violations.append(f"{status} {error}")
        return web.json_response({"status": "error", "error": error}, status=status)

    def _answer(self, request: web.Request, body: Any) -> web.Response | None:
        if request.method != "POST":
            return self._refuse(405, "method not allowed")
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return web.json_response({"status": "error", "error": "invalid api key"}, status=401)
        if request.content_type != "application/json" or not isinstance(body, dict):
            return self._refuse(400, "expected JSON")
        missing = [k for k in ("to", "from", "text") if not isinstance(body.get(k), str)]
        if missing:
            return self._refuse(400, f"missing field: {', '.join(missing)}")
        if not E164.match(body["to"]):
            return self._refuse(400, "invalid destination")
        if self._script:
            canned = self._script.popleft()
            if canned.drop:
                return None
            return web.json_response(canned.body, status=canned.status, headers=canned.headers)
        msg_id = "msg_" + uuid.uuid4().hex[:16]
        self.sent.append({"id": msg_id, **body})
        return web.json_response({"status": "queued", "id": msg_id})

    # -- inbound -----------------------------------------------------------------------------

    async def forward(
        self,
        target: str,
        sender: str,
        text: str,
        *,
        hmac_secret: str | None = None,
        basic: tuple[str, str] | None = None,
        message_id: str | None = None,
        as_json: bool = False,
    ) -> tuple[int, Any]:
        """POST an inbound text to ``target`` (tocsin's route) signed or authenticated as
        configured; (status, decoded JSON answer)."""
        fields = {"from": sender, "text": text, "id": message_id or "mo_" + uuid.uuid4().hex[:12]}
        raw = json.dumps(fields).encode() if as_json else urlencode(fields).encode()
        kind = "application/json" if as_json else "application/x-www-form-urlencoded"
        headers = {"Content-Type": kind}
        if hmac_secret is not None:
            mac = hmac.new(hmac_secret.encode(), raw, hashlib.sha256).hexdigest()
            headers["X-Signature"] = f"sha256={mac}"
        if basic is not None:
            cred = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {cred}"
        async with (
            aiohttp.ClientSession() as s,
            s.post(target, data=raw, headers=headers) as resp,
        ):
            answer = await resp.json(content_type=None)
            return resp.status, answer
