"""A fake Twilio: the REST contract for Calls and Messages, and Twilio's signed callbacks to tocsin.

A real aiohttp server on 127.0.0.1 (random port). Every create request is validated against
Twilio's published OpenAPI document (``twilio_schema``); what it refuses is kept in ``violations``
and fails the test at ``close()`` unless the test said ``expect_violations()``. Requests are also
checked as Twilio checks them:
HTTP basic auth ``AccountSid:AuthToken`` (else 401 with error 20003), the account in the path,
form-encoded PascalCase parameters, required ``To`` / ``From`` / call content, the 4000-character
``Twiml`` limit, E.164 numbers (else 400 with 21211). Accepted requests are answered 201 with a
Call / Message resource (``CA…`` / ``SM…`` sids, RFC 2822 dates). Every request is recorded.

``script("Calls", ...)`` queues canned answers for the next requests to a resource: an error
status with Twilio's error body (500, 429 + Retry-After, 400 + code), a hang (the resource is
created, the answer comes too late) or a dropped connection (created, no answer at all).

The fake then plays the callbacks as Twilio would: ``play_status`` POSTs the call's
StatusCallback, ``press`` POSTs the ``<Gather>`` action of the call's TwiML with ``Digits``,
``text_in`` POSTs an inbound SMS, each with Twilio's form fields and an ``X-Twilio-Signature``
computed here (independently of tocsin's code) over the PUBLIC URL. ``route`` maps that public
URL to where tocsin really listens in the test, as a reverse proxy would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import yarl
from aiohttp import web

from tests.fakes.serving import LocalFake
from tests.fakes.twilio_schema import form_violations

__all__ = [
    "ACCOUNT_SID",
    "AUTH_TOKEN",
    "TWILIO_NUMBER",
    "CallbackReply",
    "FakeTwilio",
    "Recorded",
    "Scripted",
    "twilio_signature",
]

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
TWILIO_NUMBER = "+15005550006"
API = "/2010-04-01"
MAX_TWIML = 4000
MAX_BODY = 1600
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's callback signature: base64 HMAC-SHA1 of the URL followed by each POST parameter's
    name and value, sorted by name (then value), each distinct pair once, as Twilio's security
    documentation and its helper libraries' published vectors show."""
    data = url
    for name, value in sorted(set(params)):
        data += name + value
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    form: tuple[tuple[str, str], ...]  # the decoded form parameters, in order
    status: int  # what the fake answered (0: the connection was dropped)


@dataclass(frozen=True)
class Scripted:
    """A canned answer for the next request to a resource.

    ``status`` with ``code``: Twilio's error body. ``hang``: create the resource, then wait
    that many seconds before answering. ``drop``: create the resource and close the connection
    without an answer.
    """

    status: int | None = None
    code: int | None = None
    message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: float = 0.0
    drop: bool = False


@dataclass(frozen=True)
class CallbackReply:
    """What tocsin answered to a callback the fake played."""

    status: int
    text: str
    url: str  # the public URL that was signed
    params: tuple[tuple[str, str], ...]


def _error(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
        headers=dict(headers or {}),
    )


def _rfc2822(t: datetime) -> str:
    return format_datetime(t)  # "Sun, 22 Nov 2026 13:00:00 +0000", as Twilio writes dates


class FakeTwilio(LocalFake[list[str]]):
    """Twilio's Calls / Messages REST contract and its signed callbacks, on 127.0.0.1."""

    def __init__(
        self,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        *,
        number: str = TWILIO_NUMBER,
        unsubscribed: Iterable[str] = (),
        unverified: Iterable[str] = (),
    ) -> None:
        super().__init__("requests Twilio's API document refuses were sent")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.number = number
        self.unsubscribed = set(unsubscribed)
        self.unverified = set(unverified)
        self.requests: list[Recorded] = []
        self.calls: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.callbacks: list[CallbackReply] = []
        # What Twilio's OpenAPI document refuses in each create request received (see close()).
        self._script: dict[str, deque[Scripted]] = {"Calls": deque(), "Messages": deque()}
        self._routes: list[tuple[str, str]] = []
        self._session: aiohttp.ClientSession | None = None
        self.now = lambda: datetime.now(UTC)
        self._closing = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> FakeTwilio:
        app = web.Application()
        app.router.add_route("*", API + "/Accounts/{account}/{resource}", self._handle)
        base = await self._serve(app)
        self.url = base
        return self

    async def _sleep(self, seconds: float) -> None:
        # Cut short by close(), so a hang never holds up the test's teardown.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def close(self) -> None:
        self._closing.set()
        if self._session is not None:
            await self._session.close()
        await super().close()

    # -- scripting ---------------------------------------------------------------------------

    def script(self, resource: str, *answers: Scripted) -> None:
        """Queue canned answers for the next requests to ``Calls`` or ``Messages``."""
        self._script[resource].extend(answers)

    def route(self, public_prefix: str, actual_base: str) -> None:
        """Deliver callbacks for URLs under ``public_prefix`` to ``actual_base`` (a proxy)."""
        self._routes.append((public_prefix.rstrip("/"), actual_base.rstrip("/")))

    def requests_to(self, resource: str) -> list[Recorded]:
        """Recorded requests to ``Calls`` or ``Messages``."""
        suffix = f"/{resource}.json"
        return [r for r in self.requests if r.path.endswith(suffix)]

    # -- the REST side -----------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(f"{user}:{password}", f"{self.account_sid}:{self.auth_token}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        form: tuple[tuple[str, str], ...] = ()
        if request.content_type == "application/x-www-form-urlencoded":
            form = tuple(parse_qsl(body.decode(), keep_blank_values=True))
        resp = await self._answer(request, dict(form), form)
        status = 0 if resp is None else resp.status
        self.requests.append(
            Recorded(request.method, request.path, dict(request.headers), body, form, status)
        )
        if resp is None:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # no answer at all: the client sees a disconnect
        return resp

    async def _answer(
        self, request: web.Request, params: dict[str, str], form: tuple[tuple[str, str], ...]
    ) -> web.StreamResponse | None:
        if not self._authorised(request):
            return _error(
                401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        resource = request.match_info["resource"]
        if request.match_info["account"] != self.account_sid or resource not in (
            "Calls.json",
            "Messages.json",
        ):
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method != "POST":
            return _error(405, 20004, "Method not allowed")
        name = resource.removesuffix(".json")
        violations = form_violations(name, form)
        if violations:
            self.violations.append(violations)
        scripted = self._script[name].popleft() if self._script[name] else None
        if scripted is not None and scripted.status is not None:
            return _error(
                scripted.status,
                scripted.code or scripted.status * 100,
                scripted.message or "Error",
                scripted.headers,
            )
        problem = self._validate_call(params) if name == "Calls" else self._validate_message(params)
        if problem is not None:
            return problem
        resource_json = (
            self._create_call(params, form) if name == "Calls" else self._create_message(params)
        )
        if scripted is not None and scripted.drop:
            return None
        if scripted is not None and scripted.hang:
            await self._sleep(scripted.hang)
        return web.json_response(resource_json, status=201)

    def _validate_call(self, p: dict[str, str]) -> web.Response | None:
        if not p.get("To"):
            return _error(400, 21201, "No 'To' number is specified")
        if not p.get("From"):
            return _error(400, 21213, "No 'From' number is specified")
        if not (p.get("Url") or p.get("Twiml") or p.get("ApplicationSid")):
            return _error(400, 21205, "Url parameter is required.")
        if len(p.get("Twiml", "")) > MAX_TWIML:
            return _error(
                400, 32018, f"Twiml size exceeded maximum allowed value of {MAX_TWIML} characters"
            )
        if not E164.match(p["To"]):
            return _error(400, 21211, f"The 'To' number {p['To']} is not a valid phone number.")
        if p["To"] in self.unverified:
            return _error(400, 21219, f"The number {p['To']} is unverified.")
        cb = p.get("StatusCallback")
        if cb is not None and not re.match(r"^https?://[^/]+", cb):
            return _error(400, 21205, f"Url is not a valid URL: {cb}")
        return None

    def _validate_message(self, p: dict[str, str]) -> web.Response | None:
        if not p.get("To"):
            return _error(400, 21604, "A 'To' phone number is required.")
        if not (p.get("From") or p.get("MessagingServiceSid")):
            return _error(400, 21603, "A 'From' phone number is required.")
        if not p.get("Body"):
            return _error(400, 21602, "Message body is required.")
        if len(p["Body"]) > MAX_BODY:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if not E164.match(p["To"]):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {p['To']}")
        if p["To"] in self.unverified:
            return _error(
                400,
                21608,
                f"The number {p['To']} is unverified. "
                "Trial accounts cannot send messages to unverified numbers",
            )
        if p["To"] in self.unsubscribed:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        return None

    def _create_call(self, p: dict[str, str], form: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        sid = "CA" + uuid.uuid4().hex
        now = _rfc2822(self.now())
        base = f"{API}/Accounts/{self.account_sid}/Calls/{sid}"
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": p["To"],
            "to_formatted": p["To"],
            "from": p["From"],
            "from_formatted": p["From"],
            "status": "queued",
            "direction": "outbound-api",
            "answered_by": None,
            "caller_name": None,
            "duration": None,
            "start_time": None,
            "end_time": None,
            "date_created": now,
            "date_updated": now,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "group_sid": None,
            "forwarded_from": None,
            "trunk_sid": None,
            "api_version": "2010-04-01",
            "uri": base + ".json",
            "subresource_uris": {
                "notifications": base + "/Notifications.json",
                "recordings": base + "/Recordings.json",
                "events": base + "/Events.json",
                "payments": base + "/Payments.json",
                "siprec": base + "/Siprec.json",
                "streams": base + "/Streams.json",
                "transcriptions": base + "/Transcriptions.json",
                "user_defined_message_subscriptions": base
                + "/UserDefinedMessageSubscriptions.json",
                "user_defined_messages": base + "/UserDefinedMessages.json",
            },
        }
        self.calls[sid] = {
            "resource": resource,
            "form": form,
            "twiml": p.get("Twiml"),
            "status_callback": p.get("StatusCallback"),
            "events": [v for k, v in form if k == "StatusCallbackEvent"] or ["completed"],
            "sequence": 0,
        }
        return resource

    def _create_message(self, p: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = _rfc2822(self.now())
        base = f"{API}/Accounts/{self.account_sid}/Messages/{sid}"
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": p["To"],
            "from": p.get("From"),
            "messaging_service_sid": p.get("MessagingServiceSid"),
            "body": p["Body"],
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1" if len(p["Body"]) <= 160 else str(-(-len(p["Body"]) // 153)),
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "api_version": "2010-04-01",
            "uri": base + ".json",
            "subresource_uris": {
                "media": base + "/Media.json",
                "feedback": base + "/Feedback.json",
            },
        }
        self.messages[sid] = {"resource": resource, "params": dict(p)}
        return resource

    # -- the callbacks Twilio sends ----------------------------------------------------------

    def _call_params(self, sid: str, status: str) -> list[tuple[str, str]]:
        r = self.calls[sid]["resource"]
        return [
            ("AccountSid", self.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", sid),
            ("CallStatus", status),
            ("Called", r["to"]),
            ("CalledCountry", "US"),
            ("Caller", r["from"]),
            ("CallerCountry", "US"),
            ("Direction", "outbound-api"),
            ("From", r["from"]),
            ("FromCountry", "US"),
            ("To", r["to"]),
            ("ToCountry", "US"),
        ]

    async def _post(self, public_url: str, params: list[tuple[str, str]]) -> CallbackReply:
        actual = public_url
        for prefix, base in self._routes:
            if public_url.startswith(prefix):
                actual = base + public_url[len(prefix) :]
                break
        signature = twilio_signature(self.auth_token, public_url, params)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            yarl.URL(actual, encoded=True),  # the query exactly as written, as Twilio sends it
            data=params,
            headers={"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"},
        ) as resp:
            reply = CallbackReply(resp.status, await resp.text(), public_url, tuple(params))
        self.callbacks.append(reply)
        return reply

    async def play_status(self, call_sid: str, status: str, duration: int = 0) -> CallbackReply:
        """The call ended with ``status`` (completed, no-answer, busy, failed, canceled)."""
        call = self.calls[call_sid]
        call["resource"]["status"] = status
        assert call["status_callback"], "the call was created without a StatusCallback"
        assert "completed" in call["events"], "the call did not ask for the completed event"
        params = [
            *self._call_params(call_sid, status),
            ("CallDuration", str(duration)),
            ("CallbackSource", "call-progress-events"),
            ("Duration", str(-(-duration // 60))),
            ("SequenceNumber", str(call["sequence"])),
            ("Timestamp", _rfc2822(self.now())),
        ]
        call["sequence"] += 1
        return await self._post(call["status_callback"], params)

    def gather_of(self, call_sid: str) -> ET.Element:
        """The ``<Gather>`` element of the call's inline TwiML (which must parse as XML)."""
        twiml = self.calls[call_sid]["twiml"]
        assert twiml is not None, "the call has no inline Twiml"
        root = ET.fromstring(twiml)
        assert root.tag == "Response"
        gather = root.find("Gather")
        assert gather is not None, "the call's TwiML has no <Gather>"
        return gather

    async def press(self, call_sid: str, digits: str) -> CallbackReply:
        """The callee pressed ``digits``: POST them to the ``<Gather>`` action, as Twilio does."""
        gather = self.gather_of(call_sid)
        action = gather.get("action")
        assert action and re.match(r"^https?://", action), (
            "inline TwiML needs an absolute action URL"
        )
        assert gather.get("method", "POST") == "POST"
        self.calls[call_sid]["resource"]["status"] = "in-progress"
        params = [
            *self._call_params(call_sid, "in-progress"),
            ("Digits", digits),
            ("FinishedOnKey", ""),
            ("msg", "Gather End"),
        ]
        return await self._post(action, params)

    async def text_in(
        self, url: str, from_: str, body: str, *, to: str | None = None
    ) -> CallbackReply:
        """An SMS from ``from_`` to the Twilio number arrives: POST it to the messaging webhook."""
        sid = "SM" + uuid.uuid4().hex
        params = [
            ("AccountSid", self.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("Body", body),
            ("From", from_),
            ("FromCountry", "US"),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("NumSegments", "1"),
            ("SmsMessageSid", sid),
            ("SmsSid", sid),
            ("SmsStatus", "received"),
            ("To", to or self.number),
            ("ToCountry", "US"),
        ]
        return await self._post(url, params)
