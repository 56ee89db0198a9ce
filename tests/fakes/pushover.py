"""A fake Pushover API: the Message API and emergency-priority receipts.

A real aiohttp server on 127.0.0.1 (random port), following Pushover's documented contract
(https://pushover.net/api and https://pushover.net/api/receipts, see ``data/SOURCES.md``):

- ``POST /1/messages.json`` (form or JSON): ``token`` (the application's, 30 characters) and
  ``user`` (a user or group key it knows) are required, else 400 with ``{"token"|"user":
  "invalid", "errors": [...], "status": 0, "request"}``; ``message`` 1 to 1,024 characters,
  ``title`` ≤ 250, ``url`` ≤ 512, ``url_title`` ≤ 100, ``priority`` -2…2; priority 2 needs
  ``retry`` ≥ 30 and ``expire`` ≤ 10,800 seconds. Success: 200 ``{"status": 1, "request"}``,
  with a 30-character ``receipt`` for priority 2; every answer carries the
  ``X-Limit-App-Limit`` / ``-Remaining`` / ``-Reset`` headers, and an application over its
  monthly limit gets 429.
- ``GET /1/receipts/{receipt}.json?token=``: the receipt's ``acknowledged``,
  ``acknowledged_at``, ``acknowledged_by``, ``acknowledged_by_device``, ``last_delivered_at``,
  ``expired``, ``expires_at``, ``called_back``, ``called_back_at``.
- ``POST /1/receipts/{receipt}/cancel.json`` (``token``): stops the retries, ``{"status": 1}``;
  an unknown receipt: 400 ``{"receipt": "not found", "status": 0, "errors": [...]}``.
- ``fail("messages" | "cancel", *statuses)``: the next requests there are answered with those
  statuses and not acted on: a 5xx (Pushover's servers in trouble: an HTML error page, its body
  is not documented) or a 429 (the limit's JSON body). A request repeated within 5 seconds of a
  5xx to it (the same user's message, the same receipt's cancel) is a violation: Pushover asks
  for no more than one retry every 5 seconds. That window runs on ``clock`` (seconds; wall time
  unless a test sets it to the app's virtual clock).

``acknowledge(receipt)`` is a person pressing Acknowledge in the app: it marks the receipt and
returns the request Pushover's servers then make (a form POST to the message's ``callback``).
Requests refused for their content (tocsin built something Pushover would not take) are kept in
``violations`` and fail the test at ``close()`` unless ``expect_violations()`` was called.
"""

from __future__ import annotations

import json
import secrets
import string
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.serving import LocalFake

__all__ = ["APP_TOKEN", "FakePushover", "Receipt", "user_key"]

APP_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"  # the documentation's example shape: 30 characters
_ALNUM = string.ascii_letters + string.digits
_MONTHLY = 10_000  # the free monthly limit of an application
_FRIENDLY = 5.0  # seconds: Pushover asks for no more than one retry this often after a 5xx
_OVER_LIMIT = "application has exceeded its monthly limit"


def user_key(seed: str) -> str:
    """A 30-character user key (deterministic per ``seed``, for configs)."""
    return (seed.encode().hex() + "u" * 30)[:30].replace("0", "q")


@dataclass
class Receipt:
    """One emergency message: whether it rings, and who acknowledged it."""

    receipt: str
    message: dict[str, str]
    expires_at: int
    acknowledged_at: int = 0
    acknowledged_by: str = ""
    acknowledged_by_device: str = ""
    cancelled: bool = False
    called_back_at: int = 0
    polled: list[int] = field(default_factory=list)

    def status(self, now: int) -> dict[str, Any]:
        return {
            "status": 1,
            "acknowledged": int(bool(self.acknowledged_at)),
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_by_device": self.acknowledged_by_device,
            "last_delivered_at": now,
            "expired": int(now >= self.expires_at or self.cancelled),
            "expires_at": self.expires_at,
            "called_back": int(bool(self.called_back_at)),
            "called_back_at": self.called_back_at,
            "request": str(uuid.uuid4()),
        }


def _failed(status: int, errors: list[str], **fields: str) -> web.Response:
    body = {**fields, "errors": errors, "status": 0, "request": str(uuid.uuid4())}
    return web.json_response(body, status=status)


def _message_errors(m: dict[str, str]) -> list[str]:
    errors: list[str] = []
    message = m.get("message", "")
    if not message:
        errors.append("message cannot be blank")
    limits = {"message": 1024, "title": 250, "url": 512, "url_title": 100}
    errors += [f"{k} is too long" for k, n in limits.items() if len(m.get(k, "")) > n]
    try:
        priority = int(m.get("priority", "0"))
    except ValueError:
        return [*errors, "priority is invalid"]
    if not -2 <= priority <= 2:
        errors.append("priority is invalid")
    if priority == 2:
        retry, expire = m.get("retry", ""), m.get("expire", "")
        if not retry.isdigit() or int(retry) < 30:
            errors.append("retry is invalid; must be at least 30 seconds")
        if not expire.isdigit() or int(expire) > 10800:
            errors.append("expire is invalid; must be at most 10800 seconds")
    return errors


class FakePushover(LocalFake[list[str]]):
    """Start with ``await fake.start()``; ``url`` is the API's base URL."""

    def __init__(self, *, token: str = APP_TOKEN, users: tuple[str, ...] = ()) -> None:
        super().__init__("requests Pushover would refuse")
        self.token = token
        self.users = set(users)
        self.messages: list[dict[str, str]] = []  # accepted, as sent
        self.receipts: dict[str, Receipt] = {}
        self.cancels: list[str] = []  # receipts cancelled, in order
        self.remaining = _MONTHLY
        self.clock: Callable[[], float] = time.monotonic
        self.failed: list[tuple[str, int]] = []  # (endpoint, status) of each scripted failure
        self._fail: dict[str, deque[int]] = {"messages": deque(), "cancel": deque()}
        self._troubled: dict[tuple[str, str], float] = {}  # (endpoint, key) → when 5xx answered

    def fail(self, endpoint: str, *statuses: int) -> None:
        """Answer the next requests to ``endpoint`` ("messages", "cancel") with ``statuses``."""
        self._fail[endpoint].extend(statuses)

    async def start(self) -> FakePushover:
        app = web.Application()
        app.router.add_post("/1/messages.json", self._messages)
        app.router.add_get("/1/receipts/{receipt}.json", self._receipt)
        app.router.add_post("/1/receipts/{receipt}/cancel.json", self._cancel)
        base = await self._serve(app)
        self.url = base
        return self

    def acknowledge(
        self, receipt: str, user: str, device: str = "iphone"
    ) -> tuple[str, dict[str, str]]:
        """Someone acknowledges in the app: (callback URL, form) of Pushover's callback POST."""
        r = self.receipts[receipt]
        now = int(time.time())
        r.acknowledged_at, r.acknowledged_by, r.acknowledged_by_device = now, user, device
        r.called_back_at = now
        form = {
            "receipt": receipt,
            "acknowledged": "1",
            "acknowledged_at": str(now),
            "acknowledged_by": user,
            "acknowledged_by_device": device,
        }
        return r.message["callback"], form

    async def _form(self, request: web.Request) -> dict[str, str]:
        if request.content_type == "application/json":
            doc = json.loads(await request.read())
            return {k: str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
        return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}

    def _scripted(self, endpoint: str, key: str) -> web.Response | None:
        """A scripted failure for this request, if one is queued; a retry within 5 seconds
        of a 5xx for the same ``key`` is remembered as a violation either way."""
        now = self.clock()
        troubled = self._troubled.pop((endpoint, key), None)
        if troubled is not None and now - troubled < _FRIENDLY:
            self.violations.append([f"{endpoint} {key} retried {now - troubled:.1f}s after a 5xx"])
        if not self._fail[endpoint]:
            return None
        status = self._fail[endpoint].popleft()
        self.failed.append((endpoint, status))
        if status == 429:
            return self._limited({"status": 0, "errors": [_OVER_LIMIT]}, 429)
        self._troubled[(endpoint, key)] = now
        page = f"<html><body><h1>{status} Server Error</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")

    def _limited(self, body: dict[str, Any], status: int = 200) -> web.Response:
        headers = {
            "X-Limit-App-Limit": str(_MONTHLY),
            "X-Limit-App-Remaining": str(max(self.remaining, 0)),
            "X-Limit-App-Reset": str(int(time.time()) + 30 * 86400),
        }
        return web.json_response(body, status=status, headers=headers)

    async def _messages(self, request: web.Request) -> web.Response:
        m = await self._form(request)
        if not secrets.compare_digest(m.get("token", ""), self.token):
            return _failed(400, ["application token is invalid"], token="invalid")
        if m.get("user") not in self.users:
            return _failed(400, ["user identifier is invalid"], user="invalid")
        scripted = self._scripted("messages", m["user"])
        if scripted is not None:
            return scripted
        if self.remaining <= 0:
            return self._limited({"status": 0, "errors": [_OVER_LIMIT]}, 429)
        errors = _message_errors(m)
        if errors:
            self.violations.append(errors)
            return _failed(400, errors)
        self.remaining -= 1
        self.messages.append(m)
        out: dict[str, Any] = {"status": 1, "request": str(uuid.uuid4())}
        if m.get("priority") == "2":
            receipt = "".join(secrets.choice(_ALNUM) for _ in range(30))
            expires = int(time.time()) + int(m["expire"])
            self.receipts[receipt] = Receipt(receipt, m, expires)
            out["receipt"] = receipt
        return self._limited(out)

    async def _receipt(self, request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.query.get("token", ""), self.token):
            return _failed(400, ["application token is invalid"], token="invalid")
        r = self.receipts.get(request.match_info["receipt"])
        if r is None:
            return _failed(
                404, ["receipt not found; may be invalid or expired"], receipt="not found"
            )
        now = int(time.time())
        r.polled.append(now)
        return web.json_response(r.status(now))

    async def _cancel(self, request: web.Request) -> web.Response:
        m = await self._form(request)
        if not secrets.compare_digest(m.get("token", ""), self.token):
            return _failed(400, ["application token is invalid"], token="invalid")
        scripted = self._scripted("cancel", request.match_info["receipt"])
        if scripted is not None:
            return scripted
        r = self.receipts.get(request.match_info["receipt"])
        if r is None:
            return _failed(
                400, ["receipt not found; may be invalid or expired"], receipt="not found"
            )
        r.cancelled = True
        self.cancels.append(r.receipt)
        return web.json_response({"status": 1, "request": str(uuid.uuid4())})
