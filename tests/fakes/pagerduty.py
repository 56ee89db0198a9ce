"""A fake PagerDuty: Events API v2 and REST ``/oncalls``, plus signed v3 webhooks towards tocsin.

One aiohttp application served twice on 127.0.0.1: over plain HTTP (``http_url``) and over TLS
(``https_url``) with a certificate from a throw-away trustme CA (``ca_file``), because
python-pagerduty refuses any base URL that is not https.

Events (``POST /v2/enqueue``) are validated against PagerDuty's published Events v2 OpenAPI
document and documented limits (``pagerduty_events``) and answered with its documented bodies;
every event that fails is also kept in ``violations``, and ``close()`` fails the test unless it
said ``expect_violations()``: every event tocsin sends in the test-suite has to validate, scripted
answers included. With ``events_https_only`` set, an event over plain HTTP is refused with
PagerDuty's error code 2009 (Only HTTPS Allowed For This Call). accepted events drive an alert state machine keyed by (routing_key, dedup_key):
a trigger opens an alert (or adds to the open one), acknowledge/resolve apply only to an open
alert and are otherwise dropped silently with 202, as PagerDuty does. Every request is recorded.
``script_events`` / ``script_rest`` queue canned answers (500, 429 + Retry-After, 400, delays).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import ssl
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.fakes.pagerduty_events import INVALID_EVENT, MAX_EVENT_BYTES, validate_event

__all__ = [
    "INVALID_EVENT",
    "FakeAlert",
    "FakePagerDuty",
    "Recorded",
    "Scripted",
    "WebhookReply",
    "incident_webhook",
    "note_webhook",
    "ping_webhook",
    "send_webhook",
    "sign",
]


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    secure: bool
    status: int  # what the fake answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Scripted:
    """A canned answer for the next request: ``status`` None means "process it normally"."""

    status: int | None = None
    body: Any = None  # a JSON value, or bytes sent as they are
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a hang, for timeouts)

    @classmethod
    def error(cls, status: int = 500) -> Scripted:
        return cls(
            status,
            {"status": "error", "message": "Internal Server Error", "errors": ["try again later"]},
        )

    @classmethod
    def rate_limited(cls, retry_after: str | None = None) -> Scripted:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(
            429, {"status": "throttled", "message": "Too many API calls at a time."}, headers
        )

    @classmethod
    def invalid(cls, *errors: str) -> Scripted:
        return cls(400, INVALID_EVENT | {"errors": list(errors)})

    @classmethod
    def slow(cls, seconds: float) -> Scripted:
        """Wait, then process the request normally (the client may have given up by then)."""
        return cls(None, delay=seconds)


@dataclass
class FakeAlert:
    """One PagerDuty alert opened by a trigger."""

    routing_key: str
    dedup_key: str
    status: str  # triggered | acknowledged | resolved
    payload: dict[str, Any]
    actions: list[str] = field(default_factory=list)  # every event applied, in order


@dataclass(frozen=True)
class _Oncall:
    user_id: str
    name: str
    email: str
    schedule_id: str | None
    escalation_policy_id: str
    level: int


class FakePagerDuty:
    """Start with ``await fake.start()``; stop with ``await fake.close()``."""

    def __init__(self, tmp_dir: Path, *, api_token: str = "u+fakeRestApiToken00") -> None:
        self.api_token = api_token
        self.requests: list[Recorded] = []
        self.alerts: list[FakeAlert] = []
        self.dropped: list[dict[str, Any]] = []  # ack/resolve events with no open alert
        self.violations: list[list[str]] = []  # schema errors of each invalid event received
        self._violations_expected = False
        self.events_https_only = False
        self._events_script: deque[Scripted] = deque()
        self._rest_script: deque[Scripted] = deque()
        self._oncalls: list[_Oncall] = []
        self._ca = trustme.CA()
        self.ca_file = str(tmp_dir / "fake-pagerduty-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self._runner: web.AppRunner | None = None
        self.http_url = ""
        self.https_url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakePagerDuty:
        app = web.Application(client_max_size=4 * MAX_EVENT_BYTES)
        app.router.add_post("/v2/enqueue", self._enqueue)
        app.router.add_get("/oncalls", self._oncalls_handler)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
        plain, tls = _listener(), _listener()
        await web.SockSite(self._runner, plain).start()
        await web.SockSite(self._runner, tls, ssl_context=server_ctx).start()
        self.http_url = f"http://127.0.0.1:{plain.getsockname()[1]}"
        self.https_url = f"https://127.0.0.1:{tls.getsockname()[1]}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.violations and not self._violations_expected:
            raise AssertionError(f"events PagerDuty would refuse were sent: {self.violations}")

    def expect_violations(self) -> None:
        """This test sends invalid events on purpose: ``close()`` does not fail on them."""
        self._violations_expected = True

    @property
    def ca_pem(self) -> str:
        """The test CA's certificate as PEM text."""
        return self._ca.cert_pem.bytes().decode("ascii")

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the fake's CA."""
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    # -- scripting and inspection ---------------------------------------------------------------

    def script_events(self, *answers: Scripted) -> None:
        """Answer the next ``/v2/enqueue`` requests with these, in order."""
        self._events_script.extend(answers)

    def script_rest(self, *answers: Scripted) -> None:
        """Answer the next REST requests with these, in order."""
        self._rest_script.extend(answers)

    def add_oncall(
        self,
        email: str,
        *,
        name: str = "",
        user_id: str = "",
        schedule_id: str | None = None,
        escalation_policy_id: str = "PEPDEF1",
        level: int = 1,
    ) -> None:
        """Someone on call now (permanently: start/end null)."""
        uid = user_id or "PU" + hashlib.sha1(email.encode()).hexdigest()[:5].upper()
        self._oncalls.append(
            _Oncall(
                uid, name or email.split("@")[0], email, schedule_id, escalation_policy_id, level
            )
        )

    @property
    def event_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v2/enqueue"]

    @property
    def rest_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path != "/v2/enqueue"]

    def open_alerts(self) -> list[FakeAlert]:
        return [a for a in self.alerts if a.status != "resolved"]

    def alert(self, dedup_key: str) -> FakeAlert | None:
        """The newest alert with ``dedup_key`` (any routing key)."""
        found = [a for a in self.alerts if a.dedup_key == dedup_key]
        return found[-1] if found else None

    # -- handlers -------------------------------------------------------------------------------

    async def _record(self, request: web.Request, status: int, body: bytes) -> None:
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                query=tuple(request.query.items()),
                headers=dict(request.headers),
                body=body,
                secure=request.secure,
                status=status,
            )
        )

    async def _answer(
        self, request: web.Request, body: bytes, answer: Scripted
    ) -> web.StreamResponse:
        if answer.delay:
            await asyncio.sleep(answer.delay)
        assert answer.status is not None
        await self._record(request, answer.status, body)
        if isinstance(answer.body, bytes):
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        if answer.body is None:
            return web.Response(status=answer.status, headers=answer.headers)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)

    async def _enqueue(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        errors, event = validate_event(body)
        if errors:
            self.violations.append(errors)
        if self.events_https_only and not request.secure:
            await self._record(request, 403, body)
            return _rest_error(403, "Only HTTPS Allowed For This Call", 2009)
        scripted = self._events_script.popleft() if self._events_script else None
        if scripted is not None and scripted.status is not None:
            return await self._answer(request, body, scripted)
        if scripted is not None and scripted.delay:
            await asyncio.sleep(scripted.delay)
        if errors:
            await self._record(request, 400, body)
            return web.json_response(INVALID_EVENT | {"errors": errors}, status=400)
        dedup_key = self._apply(event)
        await self._record(request, 202, body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
            status=202,
        )

    def _apply(self, event: dict[str, Any]) -> str:
        action = event["event_action"]
        key = event["routing_key"]
        dedup = event.get("dedup_key") or uuid.uuid4().hex
        open_ = next(
            (
                a
                for a in reversed(self.alerts)
                if a.routing_key == key and a.dedup_key == dedup and a.status != "resolved"
            ),
            None,
        )
        if action == "trigger":
            if open_ is None:
                open_ = FakeAlert(key, dedup, "triggered", event["payload"])
                self.alerts.append(open_)
            open_.actions.append("trigger")
        elif open_ is None:
            self.dropped.append(event)  # PagerDuty answers 202 and drops it
        else:
            open_.actions.append(action)
            open_.status = "acknowledged" if action == "acknowledge" else "resolved"
        return dedup

    async def _oncalls_handler(self, request: web.Request) -> web.StreamResponse:
        scripted = self._rest_script.popleft() if self._rest_script else None
        if scripted is not None and scripted.status is not None:
            return await self._answer(request, b"", scripted)
        if scripted is not None and scripted.delay:
            await asyncio.sleep(scripted.delay)
        if not request.secure:
            await self._record(request, 403, b"")
            return _rest_error(403, "HTTPS is required", 2100)
        if request.headers.get("Authorization") != f"Token token={self.api_token}":
            await self._record(request, 401, b"")
            return _rest_error(401, "Authentication failed", 2006)
        q = request.query
        schedules = set(q.getall("schedule_ids[]", []))
        policies = set(q.getall("escalation_policy_ids[]", []))
        users = set(q.getall("user_ids[]", []))
        include = set(q.getall("include[]", []))
        try:
            limit = min(int(q.get("limit", "25")), 100)
            offset = int(q.get("offset", "0"))
        except ValueError:
            await self._record(request, 400, b"")
            return _rest_error(400, "Invalid Input Provided", 2001)
        found = [
            o
            for o in self._oncalls
            if (not schedules or o.schedule_id in schedules)
            and (not policies or o.escalation_policy_id in policies)
            and (not users or o.user_id in users)
        ]
        page = found[offset : offset + limit]
        await self._record(request, 200, b"")
        return web.json_response(
            {
                "oncalls": [_oncall_json(o, "users" in include) for o in page],
                "limit": limit,
                "offset": offset,
                "more": offset + limit < len(found),
                "total": len(found) if q.get("total") == "true" else None,
            }
        )

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        await self._record(request, 404, body)
        return web.json_response({"error": {"message": "Not Found", "code": 2100}}, status=404)


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _rest_error(status: int, message: str, code: int) -> web.Response:
    return web.json_response({"error": {"message": message, "code": code}}, status=status)


def _ref(kind: str, id_: str, summary: str) -> dict[str, Any]:
    plural = {
        "user": "users",
        "service": "services",
        "schedule": "schedules",
        "escalation_policy": "escalation_policies",
    }
    return {
        "id": id_,
        "type": f"{kind}_reference",
        "summary": summary,
        "self": f"https://api.pagerduty.com/{plural[kind]}/{id_}",
        "html_url": f"https://acme.pagerduty.com/{plural[kind]}/{id_}",
    }


def _oncall_json(o: _Oncall, full_user: bool) -> dict[str, Any]:
    user = _ref("user", o.user_id, o.name)
    if full_user:
        user = user | {"type": "user", "name": o.name, "email": o.email, "time_zone": "UTC"}
    return {
        "user": user,
        "schedule": _ref("schedule", o.schedule_id, o.schedule_id) if o.schedule_id else None,
        "escalation_policy": _ref("escalation_policy", o.escalation_policy_id, "Policy"),
        "escalation_level": o.level,
        "start": None,
        "end": None,
    }


# -- webhooks v3 towards tocsin ---------------------------------------------------------------


def sign(body: bytes, *secrets: str) -> str:
    """``X-PagerDuty-Signature`` as PagerDuty sends it: one ``v1=`` entry per secret."""
    return ",".join(
        "v1=" + hmac.new(s.encode("utf-8"), body, hashlib.sha256).hexdigest() for s in secrets
    )


def _agent(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    return _ref("user", "PLH1HKV", name)


def incident_webhook(
    event_type: str,
    incident_key: str | None,
    *,
    pd_incident_id: str = "PGR0VU2",
    agent: str | None = "Tenex Engineer",
    status: str = "acknowledged",
    event_id: str | None = None,
    title: str = "A little bump in the road",
    occurred_at: str = "2026-11-22T13:01:00.000Z",
) -> dict[str, Any]:
    """A v3 webhook body for an ``incident.*`` event whose data is an incident."""
    return {
        "event": {
            "id": event_id or uuid.uuid4().hex,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred_at,
            "agent": _agent(agent),
            "client": {"name": "PagerDuty"},
            "data": {
                "id": pd_incident_id,
                "type": "incident",
                "self": f"https://api.pagerduty.com/incidents/{pd_incident_id}",
                "html_url": f"https://acme.pagerduty.com/incidents/{pd_incident_id}",
                "number": 2,
                "status": status,
                "incident_key": incident_key,
                "created_at": "2026-11-22T13:00:00Z",
                "title": title,
                "service": _ref("service", "PF9KMXH", "API Service"),
                "assignees": [_ref("user", "PTUXL6G", "User 123")],
                "escalation_policy": _ref("escalation_policy", "PUS0KTE", "Default"),
                "teams": [],
                "priority": None,
                "urgency": "high",
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }
    }


def note_webhook(
    pd_incident_id: str, content: str, *, agent: str | None = "Tenex Engineer"
) -> dict[str, Any]:
    """A v3 ``incident.annotated`` body (data is an ``incident_note``: no incident_key)."""
    return {
        "event": {
            "id": uuid.uuid4().hex,
            "event_type": "incident.annotated",
            "resource_type": "incident",
            "occurred_at": "2026-11-22T13:02:00.000Z",
            "agent": _agent(agent),
            "client": None,
            "data": {
                "incident": {
                    "html_url": f"https://acme.pagerduty.com/incidents/{pd_incident_id}",
                    "id": pd_incident_id,
                    "self": f"https://api.pagerduty.com/incidents/{pd_incident_id}",
                    "summary": "A little bump in the road",
                    "type": "incident_reference",
                },
                "id": "P2LA89X",
                "content": content,
                "trimmed": False,
                "type": "incident_note",
            },
        }
    }


def ping_webhook() -> dict[str, Any]:
    """The test delivery PagerDuty sends when a subscription is created or tested."""
    return {
        "event": {
            "id": uuid.uuid4().hex,
            "event_type": "pagey.ping",
            "resource_type": "pagey",
            "occurred_at": "2026-11-22T13:00:00.000Z",
            "agent": None,
            "client": None,
            "data": {"type": "ping", "message": "Hello from your friend Pagey!"},
        }
    }


@dataclass(frozen=True)
class WebhookReply:
    status: int
    body: Any


async def send_webhook(
    client: TestClient,
    payload: Mapping[str, Any] | bytes,
    *,
    secrets: Sequence[str] = (),
    webhook_id: str | None = None,
    signature: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    path: str = "/api/v1/pagerduty/webhook",
) -> WebhookReply:
    """POST a webhook to tocsin the way PagerDuty does (``signature`` overrides the computed one;
    pass ``secrets=()`` and no signature to send none)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Webhook-Subscription": "PY1OQ9Z",
    }
    sig = signature if signature is not None else (sign(body, *secrets) if secrets else None)
    if sig is not None:
        headers["X-PagerDuty-Signature"] = sig
    headers.update(extra_headers or {})
    resp = await client.post(path, data=body, headers=headers)
    try:
        answer = await resp.json(content_type=None)
    except ValueError:
        answer = await resp.text()
    return WebhookReply(resp.status, answer)


def secrets_in(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Which of ``secrets`` appear in any of ``texts`` (for leak checks)."""
    blob = "\n".join(texts)
    return [s for s in secrets if s and s in blob]
