"""A webhook receiver (a chat tool's incoming-webhook endpoint, say): records and answers.

A real aiohttp server on 127.0.0.1 (random port) accepting POSTs on any path. It answers 200
unless told otherwise: ``script(...)`` queues canned answers (status, headers such as
Retry-After, a hang longer than the client's timeout). Every request is recorded with its
headers and raw body, so tests can check the signature over exactly the bytes sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.serving import serve_local

__all__ = ["Received", "Reply", "WebhookSink"]


@dataclass(frozen=True)
class Received:
    """One request as the sink received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A canned answer: ``status`` and ``headers``, after ``hang`` seconds."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: float = 0.0
    body: str = ""


class WebhookSink:
    """Records every request; answers from the script, else 200 ``ok``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._closing = asyncio.Event()

    async def start(self) -> WebhookSink:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, base = await serve_local(app)
        self.url = base
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests."""
        self._script.extend(replies)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.method, request.path_qs, dict(request.headers), body))
        reply = self._script.popleft() if self._script else Reply(body="ok")
        if reply.hang:
            # Cut short by close(), so a hang never holds up the test's teardown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.hang)
        return web.Response(status=reply.status, text=reply.body, headers=dict(reply.headers))
