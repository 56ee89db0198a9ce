"""A fake PagerDuty: Events API v2, REST ``/oncalls`` and ``/incidents/{id}/alerts``, plus signed
v3 webhooks towards tocsin.

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
``script_events`` / ``script_rest`` queue canned answers (500, 429 + Retry-After, 400, delays;
``Scripted.rest_rate_limited`` is a REST 429 with PagerDuty's ``ratelimit-*`` headers).

As in PagerDuty, every new alert opens its own incident (``FakeAlert.incident_id``) unless
``group_alerts`` is set (alert grouping: a new alert joins the newest open incident of its
service); ``merge`` moves incidents' alerts into another, as PagerDuty's merge does, and
``merge_delivery`` is the ``incident.resolved`` it sends about a merged incident.
``GET /incidents/{id}/alerts`` lists them (paginated with limit/offset/more) and every REST body
is validated against PagerDuty's REST OpenAPI document (``pagerduty_rest``). ``delivery`` builds
the v3 webhook PagerDuty sends about that incident: ``incident_key`` null, as captured from a real
delivery (``pagerduty_webhooks``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from tests.fakes.pagerduty_events import INVALID_EVENT, MAX_EVENT_BYTES, validate_event
from tests.fakes.pagerduty_rest import RATE_LIMITED, rest_violations
from tests.fakes.pagerduty_webhooks import (
    WebhookReply,
    incident_delivery,
    incident_webhook,
    note_webhook,
    ping_webhook,
    secrets_in,
    send_webhook,
    sign,
)
from tests.fakes.pagerduty_webhooks import (
    pd_ref as _ref,
)

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
    "secrets_in",
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
    # The headers the fake chose to answer with (a scripted answer's; aiohttp's own aside).
    answer_headers: Mapping[str, str] = field(default_factory=dict)

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
    def rest_rate_limited(cls, reset: int = 20) -> Scripted:
        """A REST 429 as PagerDuty documents it: ``ratelimit-*`` headers, ``reset`` seconds."""
        headers = {"ratelimit-limit": "960", "ratelimit-remaining": "0"}
        return cls(429, RATE_LIMITED, headers | {"ratelimit-reset": str(reset)})

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
    incident_id: str = field(default_factory=lambda: _pd_id("Q", 13))  # its own incident
    alert_id: str = field(default_factory=lambda: _pd_id("P", 6))
    created_at: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )


@dataclass(frozen=True)
class _Oncall:
    user_id: str
    name: str
    email: str
    schedule_id: str | None
    escalation_policy_id: str
    level: int
    start: datetime | None = None  # None: a permanent on-call
    end: datetime | None = None


def _pd_id(prefix: str, n: int) -> str:
    return prefix + uuid.uuid4().hex.upper()[: n - 1]


class FakePagerDuty:
    """Start with ``await fake.start()``; stop with ``await fake.close()``."""

    def __init__(self, tmp_dir: Path, *, api_token: str = "u+fakeRestApiToken00") -> None:
        self.api_token = api_token
        self.requests: list[Recorded] = []
        self.alerts: list[FakeAlert] = []
        self.dropped: list[dict[str, Any]] = []  # ack/resolve events with no open alert
        self.violations: list[list[str]] = []  # schema errors of each invalid event received
        self.rest_violations: list[str] = []  # the fake's own REST bodies the document refuses
        self._violations_expected = False
        self.events_https_only = False
        self.group_alerts = False
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
        app.router.add_get("/incidents/{id}/alerts", self._alerts_handler)
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
        if self.rest_violations:
            raise AssertionError(f"REST bodies PagerDuty would not send: {self.rest_violations}")

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
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """Someone on call from ``start`` to ``end`` (both None: permanently, start/end null)."""
        uid = user_id or "PU" + hashlib.sha1(email.encode()).hexdigest()[:5].upper()
        display = name or email.split("@")[0]
        self._oncalls.append(
            _Oncall(uid, display, email, schedule_id, escalation_policy_id, level, start, end)
        )

    def incident_of(self, dedup_key: str) -> str:
        """PagerDuty's id of the incident holding the newest alert with ``dedup_key``."""
        alert = self.alert(dedup_key)
        assert alert is not None, f"no alert with dedup key {dedup_key!r} was triggered"
        return alert.incident_id

    def delivery(
        self,
        event_type: str,
        dedup_key: str,
        *,
        occurred_at: str,
        agent: str | None = "Test User",
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """The v3 delivery PagerDuty sends when its incident for ``dedup_key`` changes.

        ``incident_key`` is null, as for every incident opened through the Events API. A resolve
        in PagerDuty resolves the incident's alerts here too (a later trigger opens a new one).
        """
        alert = self.alert(dedup_key)
        assert alert is not None, f"no alert with dedup key {dedup_key!r} was triggered"
        if event_type == "incident.resolved":
            for grouped in self.alerts:
                if grouped.incident_id == alert.incident_id:
                    grouped.status = "resolved"
        summary = str(alert.payload.get("summary", ""))
        return incident_delivery(
            event_type,
            alert.incident_id,
            agent=agent,
            occurred_at=occurred_at,
            event_id=event_id,
            title=summary,
        )

    def merge(self, into: str, *others: str) -> list[str]:
        """Merge the incidents holding the alerts ``others`` (dedup keys) into the one holding
        ``into``: their alerts move to it, as in PagerDuty. The merged incidents' ids."""
        target = self.incident_of(into)
        merged = [self.incident_of(k) for k in others]
        for alert in self.alerts:
            if alert.incident_id in merged:
                alert.incident_id = target
        return merged

    def merge_delivery(
        self, merged_id: str, into: str, *, occurred_at: str, agent: str | None = "Test User"
    ) -> dict[str, Any]:
        """The ``incident.resolved`` PagerDuty sends about incident ``merged_id`` once merged
        into the one holding alert ``into``: ``resolve_reason`` names the target."""
        target = self.incident_of(into)
        doc = incident_delivery(
            "incident.resolved", merged_id, agent=agent, occurred_at=occurred_at
        )
        doc["event"]["data"]["resolve_reason"] = {
            "type": "merge_resolve_reason",
            "incident": {
                "id": target,
                "type": "incident_reference",
                "summary": "merged into",
                "self": f"https://api.pagerduty.com/incidents/{target}",
                "html_url": f"https://example-inc.pagerduty.com/incidents/{target}",
            },
        }
        return doc

    def note_delivery(
        self, dedup_key: str, content: str, *, occurred_at: str, agent: str | None = "Test User"
    ) -> dict[str, Any]:
        """The v3 ``incident.annotated`` delivery for a note added to that incident."""
        doc = note_webhook(self.incident_of(dedup_key), content, agent=agent)
        doc["event"]["occurred_at"] = occurred_at
        return doc

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

    async def _record(
        self,
        request: web.Request,
        status: int,
        body: bytes,
        answer_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                query=tuple(request.query.items()),
                headers=dict(request.headers),
                body=body,
                secure=request.secure,
                status=status,
                answer_headers=dict(answer_headers or {}),
            )
        )

    async def _answer(
        self, request: web.Request, body: bytes, answer: Scripted
    ) -> web.StreamResponse:
        if answer.delay:
            await asyncio.sleep(answer.delay)
        assert answer.status is not None
        await self._record(request, answer.status, body, answer.headers)
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
                group = [a for a in self.open_alerts() if a.routing_key == key]
                if self.group_alerts and group:
                    open_.incident_id = group[-1].incident_id
                self.alerts.append(open_)
            open_.actions.append("trigger")
        elif open_ is None:
            self.dropped.append(event)  # PagerDuty answers 202 and drops it
        else:
            open_.actions.append(action)
            open_.status = "acknowledged" if action == "acknowledge" else "resolved"
        return dedup

    async def _rest_gate(self, request: web.Request) -> web.StreamResponse | None:
        """A scripted answer or PagerDuty's refusal, else None: serve the request."""
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
        return None

    async def _page(
        self, request: web.Request, template: str | None, key: str, items: list[dict[str, Any]]
    ) -> web.StreamResponse:
        """Classic offset pagination, as PagerDuty pages its index endpoints."""
        q = request.query
        try:
            limit = min(int(q.get("limit", "25")), 100)
            offset = int(q.get("offset", "0"))
        except ValueError:
            await self._record(request, 400, b"")
            return _rest_error(400, "Invalid Input Provided", 2001)
        body = {
            key: items[offset : offset + limit],
            "limit": limit,
            "offset": offset,
            "more": offset + limit < len(items),
            "total": len(items) if q.get("total") == "true" else None,
        }
        if template is not None:
            self.rest_violations.extend(rest_violations(template, 200, body))
        await self._record(request, 200, b"")
        return web.json_response(body)

    async def _oncalls_handler(self, request: web.Request) -> web.StreamResponse:
        refused = await self._rest_gate(request)
        if refused is not None:
            return refused
        q = request.query
        schedules = set(q.getall("schedule_ids[]", []))
        policies = set(q.getall("escalation_policy_ids[]", []))
        users = set(q.getall("user_ids[]", []))
        try:
            since = _instant(q.get("since")) or datetime.now(UTC)
            until = _instant(q.get("until")) or since
        except ValueError:
            await self._record(request, 400, b"")
            return _rest_error(400, "Invalid Input Provided", 2001)
        found = [
            _oncall_json(o)
            for o in self._oncalls
            if (not schedules or o.schedule_id in schedules)
            and (not policies or o.escalation_policy_id in policies)
            and (not users or o.user_id in users)
            # On call at some time in [since, until] (both "now" when not given).
            and (o.start is None or o.start <= until)
            and (o.end is None or o.end > since)
        ]
        self.rest_violations.extend(rest_violations("/oncalls", 200, {"oncalls": found}))
        if "users" in set(q.getall("include[]", [])):
            emails = {o.user_id: o for o in self._oncalls}
            for entry in found:
                entry["user"] = _full_user(entry["user"], emails[entry["user"]["id"]].email)
        # Validated above, before include[] expanded the references.
        return await self._page(request, None, "oncalls", found)

    async def _alerts_handler(self, request: web.Request) -> web.StreamResponse:
        refused = await self._rest_gate(request)
        if refused is not None:
            return refused
        incident_id = request.match_info["id"]
        mine = [a for a in self.alerts if a.incident_id == incident_id]
        if not mine:
            await self._record(request, 404, b"")
            return _rest_error(404, "Not Found", 2100)
        alerts = [_alert_json(a) for a in mine]
        return await self._page(request, "/incidents/{id}/alerts", "alerts", alerts)

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


def _oncall_json(o: _Oncall) -> dict[str, Any]:
    return {
        "user": _ref("user", o.user_id, o.name),
        "schedule": _ref("schedule", o.schedule_id, o.schedule_id) if o.schedule_id else None,
        "escalation_policy": _ref("escalation_policy", o.escalation_policy_id, "Policy"),
        "escalation_level": o.level,
        "start": _iso(o.start),
        "end": _iso(o.end),
    }


def _full_user(ref: dict[str, Any], email: str) -> dict[str, Any]:
    """What ``include[]=users`` puts in place of a user reference."""
    name = ref["summary"]
    return ref | {"type": "user", "name": name, "email": email, "time_zone": "UTC"}


def _alert_json(a: FakeAlert) -> dict[str, Any]:
    service = _ref("service", "PF9KMXH", "API Service")
    return {
        "id": a.alert_id,
        "type": "alert",
        "summary": str(a.payload.get("summary", "")),
        "self": f"https://api.pagerduty.com/incidents/{a.incident_id}/alerts/{a.alert_id}",
        "html_url": f"https://acme.pagerduty.com/alerts/{a.alert_id}",
        "created_at": a.created_at,
        # Acknowledgement is the incident's state; an alert is triggered or resolved.
        "status": "resolved" if a.status == "resolved" else "triggered",
        "alert_key": a.dedup_key,
        "service": service,
        "incident": {
            "id": a.incident_id,
            "type": "incident_reference",
            "summary": str(a.payload.get("summary", "")),
            "self": f"https://api.pagerduty.com/incidents/{a.incident_id}",
            "html_url": f"https://acme.pagerduty.com/incidents/{a.incident_id}",
        },
        "suppressed": False,
        "severity": str(a.payload.get("severity", "critical")),
        "body": {
            "type": "alert_body",
            "contexts": [],
            "details": a.payload.get("custom_details") or {},
        },
    }


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else None


def _instant(v: str | None) -> datetime | None:
    """A ``since``/``until`` parameter (ValueError when it is not an ISO 8601 instant)."""
    if not v:
        return None
    at = datetime.fromisoformat(v)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
