"""A fake Vonage: the Voice API's create-call and the Messages API's send, and Vonage's signed
webhooks back to tocsin.

A real aiohttp server on 127.0.0.1 (random port); ``url`` is the base URL tocsin is configured
with (``adapters.phone.vonage.base_url``). Requests are checked as Vonage documents them:

- ``Authorization: Bearer <JWT>`` signed RS256 with the application's private key (the fake's
  own ``private_key_pem``), with ``application_id``, ``iat``, ``jti`` and an ``exp`` not past;
  else 401 with Vonage's RFC 7807 error body.
- ``POST /v1/calls``: validated against the Voice API OpenAPI document's create-call request
  (vendored in part, ``data/vonage_voice.create_call.json``) and the NCCO reference's rules for
  the actions tocsin sends (``talk`` needs ``text``; ``input`` of ``type: [dtmf]`` with
  ``dtmf.maxDigits`` 1-20 and ``dtmf.timeOut`` 0-10, absolute ``eventUrl``s). Answered 201 with
  the documented body (``data/vonage_voice.create_call.response.json``'s shape, a fresh uuid).
- ``POST /v1/messages``: an SMS text (``message_type: text``, ``channel: sms``, ``to``/``from``
  E.164 without ``+``, ``text`` ≤ 1000 characters); 202 ``{"message_uuid"}``; else 422 with the
  documented "Invalid params" body (``data/vonage_messages.invalid_error.json``).

What the validators refuse is kept in ``violations`` and fails the test at ``close()``.
``script(...)`` queues canned answers (an error status, a dropped connection after the call
was created).

Rate limits, as Vonage documents its defaults (``RATE_LIMITS``): at most 3 calls created per
rolling second (the Voice API's calls-per-second limit) and 30 Messages API requests per second
(an API key's throughput). A request over the limit is refused 429 with Vonage's RFC 7807 "Rate
Limit Hit" body (``data/vonage_rate_limit.json``, a fresh ``instance``) and no ``Retry-After``:
Vonage documents none. The window runs on ``clock`` (seconds; wall time unless a test sets it to
the app's virtual clock), and only accepted requests count toward it. ``throttled`` lists what
was refused so.

Webhooks, as Vonage sends them (JSON, ``Authorization: Bearer <JWT>`` HS256 keyed with the
signature secret, claims ``iat``, ``jti``, ``iss: Vonage``, ``api_key``, ``application_id`` and
``payload_hash`` = SHA-256 hex of the body, ``iat`` = ``clock()``), computed here independently
of tocsin's code:
``press`` (the NCCO input's ``eventUrl`` with ``dtmf``), ``play_status`` (the call's
``event_url``), ``text_in`` (a Messages API inbound SMS). ``forge=True`` signs with a wrong
secret; ``tamper=True`` changes the body after signing; ``age=s`` signs it ``s`` seconds ago (a
captured webhook replayed later).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.fakes.serving import LocalFake

__all__ = [
    "APPLICATION_ID",
    "RATE_LIMITS",
    "SIGNATURE_SECRET",
    "VONAGE_NUMBER",
    "FakeVonage",
    "VonageScript",
]

DATA = Path(__file__).parent / "data"
APPLICATION_ID = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
SIGNATURE_SECRET = "fake-vonage-signature-secret-0123456789abcdef"
API_KEY = "abcd1234"
VONAGE_NUMBER = "+447700900001"
NUMBER = re.compile(r"^[1-9]\d{6,14}$")
_DOC = "urn:vonage:voice"
# The documented answers (vendored examples), with fresh ids.
_CREATED = json.loads((DATA / "vonage_voice.create_call.response.json").read_text("utf-8"))
_SENT = json.loads((DATA / "vonage_messages.send.response.json").read_text("utf-8"))
_INVALID = json.loads((DATA / "vonage_messages.invalid_error.json").read_text("utf-8"))
_RATE_LIMITED = json.loads((DATA / "vonage_rate_limit.json").read_text("utf-8"))
RATE_LIMITS = {"calls": 3, "messages": 30}
"""Requests Vonage accepts per rolling second by default, by resource (see ``data/SOURCES.md``)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vonage_webhook_jwt(secret: str, body: bytes, now: float) -> str:
    """Vonage's signed-webhook JWT for ``body``: HS256 with the signature secret."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {
        "iat": int(now),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": API_KEY,
        "application_id": APPLICATION_ID,
    }
    payload = _b64url(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(mac)}"


def _validator(schema: str) -> OAS30Validator:
    doc = json.loads((DATA / "vonage_voice.create_call.json").read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        _DOC, Resource.from_contents(doc, default_specification=DRAFT4)
    )
    return OAS30Validator({"$ref": f"{_DOC}#/components/schemas/{schema}"}, registry=registry)


def _where(e: Any) -> str:
    return ".".join(str(p) for p in e.absolute_path) or "body"


def ncco_violations(ncco: Any) -> list[str]:
    """What the NCCO reference refuses in the actions tocsin sends."""
    out: list[str] = []
    if not isinstance(ncco, list) or not ncco:
        return ["ncco: not a non-empty array"]
    for i, a in enumerate(ncco):
        kind = a.get("action") if isinstance(a, dict) else None
        if kind == "talk":
            if not isinstance(a.get("text"), str) or not a["text"]:
                out.append(f"ncco.{i}: talk needs text")
            if "loop" in a and not (isinstance(a["loop"], int) and a["loop"] >= 0):
                out.append(f"ncco.{i}: loop must be an integer >= 0")
        elif kind == "input":
            dtmf = a.get("dtmf", {})
            if a.get("type") != ["dtmf"]:
                out.append(f"ncco.{i}: input type must be [dtmf] here")
            if not 1 <= dtmf.get("maxDigits", 4) <= 20 or not 0 <= dtmf.get("timeOut", 3) <= 10:
                out.append(f"ncco.{i}: dtmf maxDigits 1-20, timeOut 0-10")
            urls = a.get("eventUrl")
            if not (isinstance(urls, list) and all(re.match(r"^https?://", u) for u in urls)):
                out.append(f"ncco.{i}: eventUrl must be a list of absolute URLs")
        else:
            out.append(f"ncco.{i}: unexpected action {kind!r}")
    return out


@dataclass(frozen=True)
class VonageScript:
    """A canned answer for the next request to ``calls`` or ``messages``."""

    status: int | None = None
    title: str = "Internal Error"
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False  # create the call, then close the connection without an answer


@dataclass(frozen=True)
class Sent:
    path: str
    headers: Mapping[str, str]
    body: Any
    status: int


def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    body = {
        "type": f"https://developer.vonage.com/api-errors#{title.lower().replace(' ', '-')}",
        "title": title,
        "detail": detail,
        "instance": uuid.uuid4().hex,
        **extra,
    }
    return web.json_response(body, status=status)


class FakeVonage(LocalFake[list[str]]):
    """Vonage's Voice and Messages APIs and its signed webhooks, on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__("requests Vonage's API documents refuse were sent")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self._public = key.public_key()
        self.requests: list[Sent] = []
        self.calls: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.answers: list[tuple[int, Any]] = []  # what tocsin answered each webhook
        self._script: dict[str, deque[VonageScript]] = {"calls": deque(), "messages": deque()}
        self._routes: list[tuple[str, str]] = []
        self.clock: Callable[[], float] = time.time
        self.throttled: list[str] = []  # the resource of each request refused by the rate limit
        self._accepted: dict[str, deque[float]] = {r: deque() for r in RATE_LIMITS}
        self._validator = _validator("CreateCallRequestNcco")
        self._phone_to = _validator("EndpointPhoneTo")

    async def start(self) -> FakeVonage:
        app = web.Application()
        app.router.add_post("/v1/{resource}", self._handle)
        base = await self._serve(app)
        self.url = base
        return self

    def script(self, resource: str, *answers: VonageScript) -> None:
        self._script[resource].extend(answers)

    def route(self, public_prefix: str, actual_base: str) -> None:
        """Deliver webhooks for URLs under ``public_prefix`` to ``actual_base`` (a proxy)."""
        self._routes.append((public_prefix.rstrip("/"), actual_base.rstrip("/")))

    # -- REST ----------------------------------------------------------------------------------

    def _authorised(self, header: str) -> str | None:
        """Why the bearer JWT is refused, or None."""
        scheme, _, token = header.partition(" ")
        parts = token.split(".")
        if scheme != "Bearer" or len(parts) != 3:
            return "missing bearer JWT"
        try:
            head = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            self._public.verify(
                _unb64url(parts[2]),
                f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return "invalid token signature"
        if head.get("alg") != "RS256" or claims.get("application_id") != APPLICATION_ID:
            return "wrong algorithm or application"
        if not claims.get("jti") or not isinstance(claims.get("iat"), int):
            return "jti and iat are required"
        if claims.get("exp", 0) <= time.time():
            return "token expired"
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        resp = self._answer(request, body)
        status = 0 if resp is None else resp.status
        self.requests.append(Sent(request.path, dict(request.headers), body, status))
        if resp is None:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return resp

    def _answer(self, request: web.Request, body: Any) -> web.Response | None:
        refused = self._authorised(request.headers.get("Authorization", ""))
        if refused is not None:
            return _problem(401, "Unauthorized", refused)
        resource = request.match_info["resource"]
        if resource not in self._script:
            return _problem(404, "Not Found", f"no such resource {request.path}")
        if request.content_type != "application/json" or not isinstance(body, dict):
            return _problem(400, "Bad Request", "the body must be a JSON object")
        problems = self._call_problems(body) if resource == "calls" else self._sms_problems(body)
        if problems:
            self.violations.append(problems)
            invalid = [{"name": p.split(":")[0], "reason": p} for p in problems]
            return _problem(
                422 if resource == "messages" else 400,
                _INVALID["title"],
                _INVALID["detail"],
                invalid_parameters=invalid,
            )
        if self._over_limit(resource):
            self.throttled.append(resource)
            return web.json_response({**_RATE_LIMITED, "instance": uuid.uuid4().hex}, status=429)
        canned = self._script[resource].popleft() if self._script[resource] else None
        if canned is not None and canned.status is not None:
            resp = _problem(canned.status, canned.title, canned.title)
            resp.headers.update(canned.headers)
            return resp
        self._accepted[resource].append(self.clock())
        if resource == "messages":
            ident = str(uuid.uuid4())
            self.messages[ident] = body
            return web.json_response({**_SENT, "message_uuid": ident}, status=202)
        ident = str(uuid.uuid4())
        self.calls[ident] = {**body, "current": body["ncco"]}
        if canned is not None and canned.drop:
            return None
        answer = {**_CREATED, "uuid": ident, "conversation_uuid": f"CON-{uuid.uuid4()}"}
        return web.json_response(answer, status=201)

    def _over_limit(self, resource: str) -> bool:
        """Whether ``resource`` already accepted its limit within the last second."""
        now, accepted = self.clock(), self._accepted[resource]
        while accepted and accepted[0] <= now - 1.0:
            accepted.popleft()
        return len(accepted) >= RATE_LIMITS[resource]

    def _call_problems(self, body: dict[str, Any]) -> list[str]:
        # The document's ``to`` items are a oneOf whose EndpointSip requires nothing, so a phone
        # endpoint matches two branches; each item is held to EndpointPhoneTo instead.
        out = [
            f"{_where(e)}: {e.message[:200]}"
            for e in self._validator.iter_errors(body)
            if not (e.validator == "oneOf" and list(e.absolute_path)[:1] == ["to"])
        ]
        for item in body.get("to", []):
            out += [f"to: {e.message[:200]}" for e in self._phone_to.iter_errors(item)]
        for end in [*body.get("to", []), body.get("from", {})]:
            if not NUMBER.match(str(end.get("number", ""))):
                out.append(f"number: {end.get('number')!r} is not E.164 without '+'")
        return out + ncco_violations(body.get("ncco"))

    def _sms_problems(self, body: dict[str, Any]) -> list[str]:
        out = []
        if body.get("message_type") != "text" or body.get("channel") != "sms":
            out.append("message_type/channel: text over sms expected")
        for k in ("to", "from"):
            if not NUMBER.match(str(body.get(k, ""))):
                out.append(f"{k}: not E.164 without '+'")
        text = body.get("text")
        if not isinstance(text, str) or not 1 <= len(text) <= 1000:
            out.append("text: 1 to 1000 characters")
        return out

    # -- webhooks ------------------------------------------------------------------------------

    def _actual(self, url: str) -> str:
        for public, actual in self._routes:
            if url.startswith(public):
                return actual + url[len(public) :]
        return url

    async def _webhook(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        forge: bool = False,
        tamper: bool = False,
        age: float = 0.0,
    ) -> tuple[int, Any]:
        raw = json.dumps(payload).encode()
        secret = "not-the-signature-secret" if forge else SIGNATURE_SECRET
        headers = {
            "Authorization": f"Bearer {vonage_webhook_jwt(secret, raw, self.clock() - age)}",
            "Content-Type": "application/json",
        }
        if tamper:
            raw = raw.replace(b'"digits": "2"', b'"digits": "1"').replace(b"ACK", b"ack ")
        async with (
            aiohttp.ClientSession() as s,
            s.post(self._actual(url), data=raw, headers=headers) as resp,
        ):
            text = await resp.text()
            answer = json.loads(text) if text else None
        self.answers.append((resp.status, answer))
        return resp.status, answer

    def _stamp(self, call: dict[str, Any], ident: str) -> dict[str, Any]:
        return {
            "from": call["from"]["number"],
            "to": call["to"][0]["number"],
            "uuid": ident,
            "conversation_uuid": f"CON-{ident}",
            "timestamp": datetime.now(UTC).isoformat(),
        }

    async def press(self, ident: str, digits: str, **kw: Any) -> tuple[int, Any]:
        """The callee pressed ``digits`` during the call's current NCCO input."""
        call = self.calls[ident]
        [action] = [a for a in call["current"] if a.get("action") == "input"]
        payload = {
            "speech": {"results": []},
            "dtmf": {"digits": digits, "timed_out": digits == ""},
            **self._stamp(call, ident),
        }
        status, answer = await self._webhook(action["eventUrl"][0], payload, **kw)
        if status == 200 and isinstance(answer, list):
            call["current"] = answer  # the NCCO returned replaces the call's
        return status, answer

    async def play_status(self, ident: str, status: str, **kw: Any) -> tuple[int, Any]:
        """A call event (``answered``, ``completed``, ``busy``, ``unanswered``...)."""
        call = self.calls[ident]
        payload = {"status": status, "direction": "outbound", **self._stamp(call, ident)}
        return await self._webhook(call["event_url"][0], payload, **kw)

    async def text_in(self, url: str, sender: str, text: str, **kw: Any) -> tuple[int, Any]:
        """A Messages API inbound SMS from ``sender`` (+E.164) to the Vonage number."""
        payload = {
            "channel": "sms",
            "message_uuid": str(uuid.uuid4()),
            "to": VONAGE_NUMBER.removeprefix("+"),
            "from": sender.removeprefix("+"),
            "timestamp": datetime.now(UTC).isoformat(),
            "text": text,
            "message_type": "text",
            "sms": {"num_messages": "1"},
        }
        return await self._webhook(url, payload, **kw)
