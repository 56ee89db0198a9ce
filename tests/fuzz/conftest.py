"""The fuzz suite's machinery: one app per module, a log trap, store snapshots, strategies.

Every test module gets ONE started app (``fuzz_app``, module-scoped, in the module's event loop;
modules mark themselves ``pytest.mark.asyncio(loop_scope="module")``). The app has every inbound
endpoint enabled: Alertmanager receiver (bearer + basic), API tokens (read, write), PagerDuty v3
webhooks (two secrets), signed email links, and the phone adapter pointed at the fake Twilio. Two
incidents are seeded and the engine has ticked once, so real incident ids, numbers, keys, outbox
rows and email tokens exist for the strategies to aim at.

A property test asks for ``batch`` (function-scoped: set up once per hypothesis run, not per
example) and, per example, calls ``app.begin()`` before the request and ``app.finish(...)`` after
it. ``finish`` fails on a 5xx, on any log record at ERROR or carrying a traceback, and (unless the
request was valid and authenticated) on any difference in the store's tables. When the batch
ends, ``still_serving`` sends one valid request to every endpoint and expects it to succeed.

Settings: ``fuzz_settings(n)``; ``deadline=None``; under ``CI=true`` the runs are derandomized
(same examples every run, no example database); ``TOCSIN_FUZZ_SCALE=10`` multiplies the example
counts for a deeper local run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import traceback
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from adapters.email.links import LinkSigner
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import OutboxRecord
from escalation.store.base import IncidentFilter
from router.console.identity import find_credential, issue_session
from router.console.view import CONSOLE
from router.keys import RUNTIME
from router.logs import quiet_client_protocol_errors
from router.runtime import Runtime
from router.serve import TocsinRunner, runner_options
from tests.driver import payloads
from tests.driver.app import App, Client, start_app
from tests.driver.config import (
    PUBLIC,
    email_adapter,
    pagerduty_adapter,
    phone_adapter,
    sqlite_store,
    write_config,
)
from tests.fakes.pagerduty import FakePagerDuty, sign
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER, FakeTwilio, twilio_signature

# -- constants ---------------------------------------------------------------------------------

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
SCALE = float(os.environ.get("TOCSIN_FUZZ_SCALE", "1") or 1)

MAX_BODY = 65536  # server.max_body_bytes: the receiver's and the API's body limit
FIRING = "alertmanager-0.25-firing.json"  # severity critical → P0
TWO = "alertmanager-0.25-firing-two-alerts.json"  # severity warning → P2

AM_TOKEN = "am-token-0123456789"
AM_USER, AM_PASSWORD = "am", "am-password"
READ_TOKEN = "api-read-token"
WRITE_TOKEN = "api-write-token"
PD_SECRETS = ("pd-secret-one", "pd-secret-two")
PD_API_TOKEN = "u+fuzzPdRestApiToken0123"
GENIE_KEY = "genie-key-5e1f0c7a9b"
SLACK_SIGNING_SECRET = "fuzz-slack-signing-secret-0123456789"
SLACK_BOT_TOKEN = "xoxb-fuzz-bot-token-0123456789"
LINK_SECRET = "fuzz-link-secret-0123456789abcdef"
TEAMS_LINK_SECRET = "fuzz-teams-link-secret-fedcba9876543210"
LINK_TTL = timedelta(hours=1)
OLLIE_PHONE = "+14155550100"
LEE_PHONE = "+14155550101"

RECEIVER = "/api/v1/alertmanager"
PD_WEBHOOK = "/api/v1/pagerduty/webhook"
GATEWAY_SECRET = "fuzz-gateway-inbound-secret-7d1e"
VONAGE_SECRET = "fuzz-vonage-signature-secret-2b9c"
_VONAGE_KEY = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)
GATHER = "/api/v1/phone/twilio/gather"
STATUS = "/api/v1/phone/twilio/status"
SMS = "/api/v1/phone/twilio/sms"
INCIDENTS = "/api/v1/incidents"
PUSHOVER_CALLBACK = "/api/v1/pushover/callback"
PUSHOVER_CALLBACK_SECRET = "fuzz-pushover-callback-secret-0123456789"
NTFY_LINK_SECRET = "fuzz-ntfy-link-secret-0123456789abcdef"
PUSHOVER_APP_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"

AM_HEADERS = {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}

RULES_YAML = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity, priority]
    continue: true
  - name: production-errors
    match: ['env="production"', 'alertname=~"HighErrorRate|InstanceDown"']
    incident_key: "{{ labels.alertname }}/{{ labels.service }}"
    title: "{{ labels.alertname }} on {{ labels.service }}: {{ annotations.summary }}"
"""


_FUZZ_PEOPLE = f"""\
people:
  ollie:
    name: Ollie Oncall
    phone: "+1 415 555 0100"
    email: ollie@example.com
    channels: [phone]
    fallback: [phone, sms]
  lee:
    name: Lee Lead
    phone: "{LEE_PHONE}"
    channels: [phone]
    fallback: [phone, sms]
roles:
  oncall: [ollie]
  lead: [lee]
  manager: [lee]
  vp: [lee]
"""


def fuzz_config(
    tmp_path: Path,
    twilio_url: str,
    pagerduty: FakePagerDuty,
    console: dict[str, Any] | None = None,
) -> Path:
    """The fuzz app's config: every inbound endpoint enabled, outbound only to the fake Twilio
    and to the fake PagerDuty's REST API (webhook matching looks incidents' alerts up there).
    ``console``: ``auth.console``, when a module needs one (e.g. a trusted auth proxy)."""
    server = {"listen": "127.0.0.1:9095", "public_url": PUBLIC, "log_format": "text"}
    auth = {
        "receiver": {
            "bearer_tokens": [AM_TOKEN],
            "basic_auth": [{"username": AM_USER, "password": AM_PASSWORD}],
        },
        "api_tokens": [
            {"name": "writer", "token": WRITE_TOKEN, "scope": "write"},
            {"name": "reader", "token": READ_TOKEN, "scope": "read"},
        ],
        "genie_keys": [{"name": "opsgenie-sender", "key": GENIE_KEY}],
    }
    if console is not None:
        auth["console"] = console
    adapters = {
        # Nothing listens on port 9: PagerDuty's events and email are there for their inbound
        # routes. Webhooks are matched through the fake's REST API, as PagerDuty's real
        # deliveries (incident_key null) need; it knows no incident, so every lookup is a 404.
        "pagerduty": pagerduty_adapter(
            "http://127.0.0.1:9",
            {"main": "0123456789abcdef0123456789abcdef"},
            webhook_secrets=list(PD_SECRETS),
            api_url=pagerduty.https_url,
            api_token=PD_API_TOKEN,
            tls_ca_path=pagerduty.ca_file,
        ),
        "email": email_adapter("127.0.0.1", 9, link_secret=LINK_SECRET, link_ttl="1h"),
        # No webhook: the Teams adapter is there for its cards' link routes.
        "teams": {"link_secret": TEAMS_LINK_SECRET, "link_ttl": "1h"},
        # Nothing listens on port 9 either: Slack is there for its interactivity and command
        # routes (who clicked can never be looked up, so no signed click acts).
        "slack": {
            "bot_token": SLACK_BOT_TOKEN,
            "signing_secret": SLACK_SIGNING_SECRET,
            "base_url": "http://127.0.0.1:9/api/",
        },
        # Nothing listens on port 9: ntfy and Pushover are there for their inbound routes.
        "ntfy": {"server_url": "http://127.0.0.1:9", "link_secret": NTFY_LINK_SECRET},
        "pushover": {
            "api_url": "http://127.0.0.1:9",
            "token": PUSHOVER_APP_TOKEN,
            "callback_secret": PUSHOVER_CALLBACK_SECRET,
        },
        "phone": phone_adapter(
            twilio_url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=TWILIO_NUMBER
        )
        # The other providers' inbound routes verify for real (nothing is sent to them).
        | {
            "gateway": {
                "url": "http://127.0.0.1:9/send",
                "inbound": {"auth": "hmac-sha256", "secret": GATEWAY_SECRET},
            },
            "vonage": {
                "application_id": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
                "private_key": _VONAGE_KEY,
                "signature_secret": VONAGE_SECRET,
                "from_number": "+447700900001",
                "base_url": "http://127.0.0.1:9",
            },
        },
    }
    return write_config(
        tmp_path,
        {
            "server": {**server, "max_body_bytes": MAX_BODY},
            "auth": auth,
            "store": sqlite_store(tmp_path / "fuzz.db"),
            "heartbeats": {"nightly": {"expect_every": "1h", "severity": "P2"}},
        },
        _FUZZ_PEOPLE,
        {"adapters": adapters},
        rules=RULES_YAML,
    )


def fuzz_settings(max_examples: int = 200) -> settings:
    """Hypothesis settings for one property: bounded, no deadline, reproducible under CI."""
    return settings(
        max_examples=max(1, int(max_examples * SCALE)),
        deadline=None,
        derandomize=CI,
        database=None if CI else settings.default.database,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # `batch` is meant to span the whole run
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


def sample_bytes(name: str = FIRING) -> bytes:
    """A captured Alertmanager 0.25 body, byte for byte."""
    return payloads.sample_bytes(name)


def sample(name: str = FIRING) -> dict[str, Any]:
    """A captured Alertmanager 0.25 body, decoded."""
    return payloads.sample(name)


# -- logs --------------------------------------------------------------------------------------


class LogTrap(logging.Handler):
    """Keeps every record at ERROR or above, and every record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def render(self) -> str:
        """The trapped records, with their tracebacks, for a failure message."""
        out = []
        for r in self.records:
            out.append(f"{r.levelname} {r.name}: {r.getMessage()}")
            if r.exc_info:
                out.append("".join(traceback.format_exception(*r.exc_info)))
        return "\n".join(out)


# -- raw HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    """What came back on a raw socket: status 0 when the server closed without answering."""

    status: int
    headers: dict[str, str]
    body: bytes


def build_request(
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    """An HTTP/1.1 request with exactly these bytes (plus Host, Content-Length, Connection)."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [k + b": " + v for k, v in headers or []]
    if content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_RAW_TIMEOUT = 10.0  # seconds to wait for the server to answer and close


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """What arrives until the end of the response's head (or the server closes)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = await reader.read(65536)
        if not chunk:
            break
        received += chunk
    return received


async def raw_http(port: int, data: bytes, *, head_only: bool = False) -> RawResponse:
    """Send ``data`` on a fresh connection, read until the server closes, parse the answer.

    ``head_only``: stop reading (and close) once the head has arrived, for a response that is
    an endless stream (the console's Server-Sent Events).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(ConnectionError):
            read = _read_head(reader) if head_only else reader.read()
            received = await asyncio.wait_for(read, _RAW_TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2) if lines and lines[0] else []
    if len(parts) < 2 or not parts[1].isdigit():
        return RawResponse(0, {}, received)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return RawResponse(int(parts[1]), headers, body)


# -- the app -----------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, str]]

# Written by readiness pings and migrations, not by requests' effects.
_VOLATILE_TABLES = {"store_health", "schema_migrations", "sqlite_sequence"}


@dataclass
class Seeded:
    """What exists before the fuzzing starts: two incidents, the P0 one paged by phone."""

    incident_ids: list[str]
    numbers: list[int]
    keys: list[str]
    row_ids: list[str]
    ack_tokens: dict[str, str]  # incident id -> a valid ack link token for ollie


@dataclass
class FuzzApp:
    """One started app (the whole-app driver's) served on a real port, its fake Twilio, and
    the checks."""

    app: App
    trap: LogTrap
    seeded: Seeded
    signer: LinkSigner
    requests: int = 0
    changes: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rt(self) -> Runtime:
        return self.app.rt

    @property
    def client(self) -> Client:
        return self.app.client

    @property
    def clock(self) -> VirtualClock:
        return self.app.clock

    @property
    def port(self) -> int:
        port = self.client.server.port
        assert port is not None
        return port

    # -- per example --

    def begin(self) -> Snapshot:
        """Forget earlier log records; the store as it is now."""
        self.trap.records.clear()
        return self.snapshot()

    def finish(self, before: Snapshot, status: int, *, may_change: bool, what: str = "") -> bool:
        """Fail on a 5xx, a trapped log record, or a store change not allowed; True if changed."""
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if self.trap.records:
            pytest.fail(f"{what}: answered {status} and logged:\n{self.trap.render()}")
        assert 0 < status < 500, f"{what}: answered {status}"
        after = self.snapshot()
        if after == before:
            return False
        if not may_change:
            diff = {t: (before.get(t), after.get(t)) for t in after if before.get(t) != after[t]}
            pytest.fail(f"{what}: answered {status} but the store changed: {diff}")
        self.changes += 1
        return True

    def snapshot(self) -> Snapshot:
        """Row count and content hash of every table the request path may write."""
        conn = sqlite3.connect(f"file:{self.app.db_path}?mode=ro", uri=True)
        try:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            out: Snapshot = {}
            for name in sorted(set(names) - _VOLATILE_TABLES):
                rows = sorted(repr(tuple(r)) for r in conn.execute(f'SELECT * FROM "{name}"'))
                digest = hashlib.sha256("\n".join(rows).encode("utf-8", "backslashreplace"))
                out[name] = (len(rows), digest.hexdigest())
            return out
        finally:
            conn.close()

    def assert_quiet(self) -> None:
        if self.trap.records:
            pytest.fail(f"logged at ERROR or with a traceback:\n{self.trap.render()}")

    # -- valid requests --

    def console_session(self) -> str:
        """A console session cookie's value for the write API token (signing in with it)."""
        cred = find_credential(self.rt.loaded.config.auth, "writer", WRITE_TOKEN)
        assert cred is not None
        key = self.client.server.app[CONSOLE].key
        return issue_session(key, cred, self.clock.now() + timedelta(hours=1))

    def phone_url(self, path_qs: str) -> str:
        return PUBLIC + path_qs

    def twilio_sign(self, path_qs: str, params: list[tuple[str, str]]) -> str:
        return twilio_signature(AUTH_TOKEN, self.phone_url(path_qs), params)

    async def still_serving(self) -> None:
        """One valid request to every endpoint; each must succeed exactly as documented."""
        c = self.client
        resp = await c.get("/healthz")
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
        resp = await c.get("/readyz")
        assert resp.status == 200, await resp.text()

        resp = await c.post(RECEIVER, data=sample_bytes(FIRING), headers=AM_HEADERS)
        body = await resp.json()
        assert (resp.status, body["status"]) == (200, "accepted"), body

        first = self.seeded.incident_ids[0]
        resp = await c.get(INCIDENTS, headers=READ)
        assert resp.status == 200
        assert first in [i["id"] for i in (await resp.json())["incidents"]]
        resp = await c.get(f"{INCIDENTS}/{first}", headers=READ)
        assert (resp.status, (await resp.json())["id"]) == (200, first)

        ping = json.dumps(
            {"event": {"id": uuid.uuid4().hex, "event_type": "pagey.ping", "data": {}}}
        ).encode()
        resp = await c.post(
            PD_WEBHOOK,
            data=ping,
            headers={"X-PagerDuty-Signature": sign(ping, PD_SECRETS[1])},
        )
        assert (resp.status, await resp.json()) == (
            200,
            {"status": "ignored", "event_type": "pagey.ping"},
        )

        path_qs = f"{STATUS}?row={quote(self.seeded.row_ids[0], safe=':')}"
        params = [("CallSid", "CA" + "9" * 32), ("CallStatus", "completed")]
        resp = await c.post(
            path_qs, data=params, headers={"X-Twilio-Signature": self.twilio_sign(path_qs, params)}
        )
        assert (resp.status, resp.content_type) == (200, "text/xml"), await resp.text()

        # A link for the incident's current run (fuzzed webhooks may have reopened it since).
        current = await self.rt.store.get_incident(first)
        assert current is not None
        token = self.signer.token(first, "ack", "ollie", self.clock.now(), epoch=current.epoch)
        resp = await c.get("/api/v1/email/ack", params={"token": token})
        text = await resp.text()
        assert resp.status == 200, text
        assert f"incident #{self.seeded.numbers[0]}" in text.lower(), text
        self.assert_quiet()


async def _seed(rt: Runtime, client: Client, signer: LinkSigner) -> Seeded:
    for name in (FIRING, TWO):
        resp = await client.post(RECEIVER, data=sample_bytes(name), headers=AM_HEADERS)
        assert resp.status == 200, await resp.text()
    await rt.engine.tick()  # the P0 incident's first tier: a phone call to ollie
    incidents = sorted(await rt.store.list_incidents(IncidentFilter()), key=lambda i: i.number)
    assert len(incidents) == 2
    rows: list[OutboxRecord] = []
    for inc in incidents:
        async with rt.store.transaction() as tx:
            rows += await tx.outbox_of(inc.id)
    assert rows, "the engine tick should have paged ollie"
    now = rt.clock.now()
    return Seeded(
        incident_ids=[i.id for i in incidents],
        numbers=[i.number for i in incidents],
        keys=[i.key for i in incidents],
        row_ids=[r.id for r in rows],
        ack_tokens={i.id: signer.token(i.id, "ack", "ollie", now) for i in incidents},
    )


class _ServedAsTocsin(TestServer):
    """aiohttp's test server, but its runner set up as ``tocsin serve`` sets its own up.

    (The test server cancels a handler when its client disconnects; ``tocsin serve`` does not,
    and the header timeout is its keep-alive timeout.)
    """

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs |= runner_options(self.app[RUNTIME].loaded.config.server)
        return TocsinRunner(self.app, **kwargs)


async def _serve_as_tocsin(app: web.Application) -> Client:
    client: Client = TestClient(_ServedAsTocsin(app))
    await client.start_server()
    return client


@pytest.fixture(scope="module")
def console_auth() -> dict[str, Any] | None:
    """The fuzz app's ``auth.console`` (None: the default); a module overrides this fixture."""
    return None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_app(
    tmp_path_factory: pytest.TempPathFactory, console_auth: dict[str, Any] | None
) -> AsyncIterator[FuzzApp]:
    """ONE app for the whole test module, seeded, with the log trap on the root logger."""
    tmp = tmp_path_factory.mktemp("fuzz")
    server_log = logging.getLogger("aiohttp.server")
    filters_before = list(server_log.filters)
    quiet_client_protocol_errors()  # as `tocsin serve` does (router.logs.setup_logging)
    trap = LogTrap()
    root = logging.getLogger()
    root.addHandler(trap)
    twilio = await FakeTwilio().start()
    pagerduty = await FakePagerDuty(tmp, api_token=PD_API_TOKEN).start()
    app = await start_app(
        fuzz_config(tmp, twilio.url, pagerduty, console_auth),
        fakes=(twilio, pagerduty),
        serve=_serve_as_tocsin,
    )
    twilio.route(PUBLIC, str(app.client.make_url("/")).rstrip("/"))
    signer = LinkSigner(LINK_SECRET, LINK_TTL, PUBLIC)
    try:
        seeded = await _seed(app.rt, app.client, signer)
        fuzz = FuzzApp(app, trap, seeded, signer)
        fuzz.assert_quiet()
        yield fuzz
    finally:
        await app.client.close()
        await app.rt.stop()
        await twilio.close()
        await pagerduty.close()
        root.removeHandler(trap)
        server_log.filters[:] = filters_before


@pytest_asyncio.fixture(loop_scope="module")
async def batch(fuzz_app: FuzzApp) -> AsyncIterator[FuzzApp]:
    """The app for one hypothesis run; afterwards every endpoint must still answer properly."""
    fuzz_app.trap.records.clear()
    yield fuzz_app
    fuzz_app.trap.records.clear()
    await fuzz_app.still_serving()


# -- strategies --------------------------------------------------------------------------------

# Text a JSON encoder can carry as UTF-8 (lone surrogates cannot be encoded).
TEXT_CHARS = st.characters(exclude_categories=("Cs",))
texts = st.text(TEXT_CHARS, max_size=40)
# Any string JSON can carry: also lone surrogates (written as \udXXX escapes by `dumps`).
any_texts = st.one_of(
    texts, st.text(max_size=10), st.sampled_from(["\udc80", "\ud800", "a\udfffb", "\x00", "\u2028"])
)
_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
label_names = st.builds(
    str.__add__,
    st.sampled_from(["alertname", "severity", "env", "service", "team", "job", *_NAME_START]),
    st.text(_NAME_START + "0123456789", max_size=8),
)
label_values = st.one_of(
    st.text(TEXT_CHARS, max_size=30),
    st.sampled_from(["critical", "warning", "info", "P0", "P1", "SEV-2", "page", "none", ""]),
)
label_sets = st.dictionaries(label_names, label_values, min_size=1, max_size=8)


def _json(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        strings,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(strings, inner, max_size=5)
        ),
        max_leaves=20,
    )


json_values = _json(any_texts)  # anything JSON can carry
plain_json_values = _json(texts)  # what Go's encoder can produce (no lone surrogates)


FIXED_TIMESTAMPS = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00-00:01",
    "0001-01-01T00:00:00+14:00",
    "0002-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999Z",
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T20:00:00+05:45",
    "2016-12-31T23:59:60Z",
    "2026-06-30T23:59:60.5+00:00",
    "2026-11-22T12:52:03.123456789Z",
    "2026-11-22T12:52:03.1234567891234Z",
    "2026-11-22T12:52:03.Z",
    "2026-11-22T12:52:03,5Z",
    "2026-11-22T12:52:03Z",
    "2026-11-22t12:52:03z",
    "2026-11-22 12:52:03Z",
    "2026-11-22T12:52:03",
    "2026-11-22T12:52:03+24:00",
    "2026-11-22T12:52:03+23:59:59.999999",
    "2026-11-22T12:52:03-00:00",
    "2026-11-22T12:52:03+0530",
    "2026-11-22T12:52:03+05",
    "2026-11-22",
    "2026-W47-7T12:00:00Z",
    "2026-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999999Z",
    "+2026-11-22T12:52:03Z",
    "-0001-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "",
    " ",
    "now",
    "\u0662\u0660\u0662\u0666-11-22T12:52:03Z",  # Arabic-Indic digits
]


_EPOCH = datetime(1970, 1, 1)
_DIGITS = "0123456789"


def _offset(sign: str, h: int, m: int) -> str:
    return f"{sign}{h:02d}:{m:02d}"


@st.composite
def generated_timestamps(draw: st.DrawFn) -> str:
    """RFC 3339-ish text from year 1 to 9999, drawn towards the edges of the range.

    Dates and times favour their extremes (a year-9999 instant with a negative offset is
    past what ``datetime`` holds once converted to UTC); 0-12 fraction digits; offsets from the
    usual to the impossible (``+25:61``).
    """
    date = draw(
        st.sampled_from(["9999-12-31", "0001-01-01", "0001-01-02", "9999-12-30", "1970-01-01"])
        | st.builds(
            "{:04d}-{:02d}-{:02d}".format,
            st.sampled_from([1, 2, 1969, 1970, 2026, 9998, 9999]) | st.integers(1, 9999),
            st.integers(1, 12),
            st.sampled_from([1, 28, 29, 30, 31]) | st.integers(1, 28),
        )
    )
    hms = draw(
        st.sampled_from(["00:00:00", "23:59:59", "23:59:60", "12:00:00"])
        | st.builds(
            "{:02d}:{:02d}:{:02d}".format,
            st.integers(0, 24),
            st.integers(0, 59),
            st.integers(0, 60),
        )
    )
    digits = draw(st.integers(0, 12))
    frac = "." + (_DIGITS * 2)[draw(st.integers(0, 9)) :][:digits] if digits else ""
    offset = draw(
        st.sampled_from(["Z", "z", "+00:00", "-00:00", "", "-12:00", "+14:00", "-23:59"])
        | st.builds(_offset, st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61))
    )
    return f"{date}T{hms}{frac}{offset}"


boundary_timestamps = st.one_of(st.sampled_from(FIXED_TIMESTAMPS), generated_timestamps())


def _valid_timestamp(seconds: int, micros: int, digits: int, offset: str) -> str:
    dt = _EPOCH + timedelta(seconds=seconds)
    frac = f"{micros:06d}123"[:digits]
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + offset


# Timestamps Alertmanager really sends: 2000-2100, 0-9 fraction digits, any sane offset.
valid_timestamps = st.builds(
    _valid_timestamp,
    st.integers(946_684_800, 4_102_444_800),
    st.integers(0, 999_999),
    st.integers(0, 9),
    st.just("Z")
    | st.builds(_offset, st.sampled_from("+-"), st.integers(0, 14), st.sampled_from([0, 30, 45])),
)


@st.composite
def valid_notifications(
    draw: st.DrawFn, min_alerts: int = 1, max_alerts: int = 50
) -> dict[str, Any]:
    """A whole webhook body as some Alertmanager (0.19 .. 0.28) would send it.

    1-50 alerts sharing the group's labels and each differing in a few of their own, as alerts
    of one aggregation group do; optional fields of the different versions present or not.
    """
    group = draw(st.dictionaries(label_names, label_values, max_size=3))
    common = group | draw(st.dictionaries(label_names, label_values, max_size=3))
    n = draw(st.integers(min_alerts, max_alerts))
    # Pools drawn by hypothesis, combined per alert by a seeded Random: 50 alerts drawn field
    # by field would make generation, not the app, the slow part of the suite.
    names = draw(st.lists(label_names, min_size=1, max_size=4))
    values = draw(st.lists(label_values, min_size=1, max_size=6))
    stamps = draw(st.lists(valid_timestamps, min_size=1, max_size=4))
    notes = draw(st.lists(texts, min_size=1, max_size=3))
    rnd = draw(st.randoms(use_true_random=False))
    alerts = []
    for i in range(n):
        labels = common | {rnd.choice(names): rnd.choice(values) for _ in range(rnd.randint(0, 2))}
        labels["instance"] = f"host-{i}"  # distinct label sets, as Alertmanager guarantees
        status = rnd.choice(["firing", "resolved"])
        alert: dict[str, Any] = {
            "status": status,
            "labels": labels,
            "annotations": {rnd.choice(names): rnd.choice(notes) for _ in range(rnd.randint(0, 2))},
            "startsAt": rnd.choice(stamps),
            "endsAt": rnd.choice(
                ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z", None, *stamps]
            )
            if status == "firing"
            else rnd.choice(stamps),
        }
        if alert["endsAt"] is None:
            del alert["endsAt"]
        if rnd.random() < 0.5:
            alert["generatorURL"] = "http://prometheus:9090/graph?g0.expr=up"
        if rnd.random() < 0.5:  # since 0.19; absent → computed as Alertmanager does
            alert["fingerprint"] = f"{rnd.getrandbits(64):016x}"
        alerts.append(alert)
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    doc: dict[str, Any] = {
        "version": "4",
        "receiver": draw(st.sampled_from(["web\\.hook", "tocsin", "team-a"]) | texts),
        "status": status,
        "alerts": alerts,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": draw(st.dictionaries(label_names, texts, max_size=2)),
        "externalURL": draw(st.sampled_from(["http://alertmanager:9093", ""])),
        "groupKey": "{}:" + json.dumps(group, ensure_ascii=False, sort_keys=True) + draw(texts),
    }
    if draw(st.booleans()):  # 0.21
        doc["truncatedAlerts"] = draw(st.integers(0, 1000))
    if draw(st.booleans()):  # 0.32
        doc["notification_reason"] = draw(st.sampled_from(["first", "repeat", "update", ""]))
    if draw(st.booleans()):  # 0.34
        doc["routeLabels"] = draw(st.dictionaries(label_names, label_values, max_size=3))
    if draw(st.booleans()):  # a field from the future: ignored
        doc[draw(st.sampled_from(["futureField", "x-extra"]))] = draw(plain_json_values)
    return doc


def json_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``doc`` (the root excluded)."""
    out: list[tuple[Any, ...]] = []
    items: Any = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for k, v in items:
        out.append((*prefix, k))
        out += json_paths(v, (*prefix, k))
    return out


def _kind(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def set_path(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    """``doc[path] = value``."""
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def del_path(doc: Any, path: tuple[Any, ...]) -> None:
    """Remove ``doc[path]``."""
    for k in path[:-1]:
        doc = doc[k]
    del doc[path[-1]]


@st.composite
def wrong_typed(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> Any:
    """A document from ``docs`` with 1-3 fields replaced by values of another JSON type,
    a boundary timestamp, or removed."""
    doc = draw(docs)
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        old: Any = doc
        for k in path:
            old = old[k]
        how = draw(st.sampled_from(["type", "type", "timestamp", "delete"]))
        if how == "delete":
            del_path(doc, path)
        elif how == "timestamp":
            set_path(doc, path, draw(boundary_timestamps))
        else:
            new = draw(json_values.filter(lambda v, old=old: _kind(v) != _kind(old)))
            set_path(doc, path, new)
    return doc


def dumps(doc: Any) -> bytes:
    """Compact JSON with non-ASCII kept as UTF-8, as Go's encoder writes it.

    A document holding lone surrogates (which JSON can carry as ``\\udc80`` escapes, and
    ``json.loads`` turns back into unencodable strings) is written with ASCII escapes.
    """
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, separators=(",", ":")).encode("ascii")


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    """Arrays or objects nested up to 20,000 deep, closed or not, optionally inside a payload."""
    # Mostly past Python's recursion limit (json.loads) and jiter's (pydantic) depth limit.
    depth = draw(
        st.sampled_from([255, 256, 257, 1000, 2000, 5000, 10_000, 10_000, 20_000])
        | st.integers(1, 3000)
    )
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")]))
    inner = opener * depth + b"1" + closer * draw(st.sampled_from([depth, 0, max(0, depth - 1)]))
    where = draw(st.sampled_from(["bare", "alerts", "labels", "event", "note"]))
    if where == "bare":
        return inner
    if where == "alerts":
        return (
            b'{"version":"4","receiver":"r","status":"firing","groupKey":"g","alerts":'
            + inner
            + b"}"
        )
    if where == "labels":
        return (
            b'{"version":"4","receiver":"r","status":"firing","groupKey":"g","alerts":[{"status":'
            b'"firing","startsAt":"2026-11-22T12:52:03Z","labels":{"a":' + inner + b"}}]}"
        )
    if where == "event":
        return b'{"event":{"event_type":"incident.acknowledged","data":' + inner + b"}}"
    return b'{"note":' + inner + b"}"


INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",  # bad continuation
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # UTF-16 surrogate half, UTF-8 encoded
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated
    b"\x80",  # lone continuation
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
]


@st.composite
def invalid_utf8(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """``base`` with an invalid UTF-8 sequence spliced in (inside a string or between tokens)."""
    data = draw(base)
    bad = draw(st.sampled_from(INVALID_UTF8))
    # Prefer the inside of a string value, where a lenient decoder would swallow it silently.
    quotes = [i for i, b in enumerate(data) if b == ord('"')]
    pos = (
        draw(st.sampled_from(quotes)) + 1
        if quotes and draw(st.booleans())
        else draw(st.integers(0, len(data)))
    )
    return data[:pos] + bad + data[pos:]


def sized_payload(size: int, doc: dict[str, Any], path: tuple[Any, ...]) -> bytes:
    """``doc`` with the string at ``path`` padded so the encoded body is exactly ``size`` bytes."""
    set_path(doc, path, "")
    base = len(dumps(doc))
    pad = size - base
    assert pad >= 0, (size, base)
    set_path(doc, path, "x" * pad)
    body = dumps(doc)
    assert len(body) == size
    return body


header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}", fullmatch=True)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from(["\t", "é", "\u2603"]),
    max_size=80,
).map(str.strip)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/jsonx",
            "text/json",
            "text/plain",
            "text/html; charset=utf-8",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "multipart/form-data",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=abc",
            "application/octet-stream",
            "*/*",
            "",
            ";",
            "application/json; boundary",
            "application/json;;;charset=",
        ]
    ),
    header_values,
)


@st.composite
def random_headers(draw: st.DrawFn) -> dict[str, str]:
    """A handful of arbitrary headers (never Host / Content-Length / Transfer-Encoding)."""
    hop = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"}
    raw = draw(st.dictionaries(header_names, header_values, max_size=5))
    return {k: v for k, v in raw.items() if k.lower() not in hop}


@st.composite
def raw_header_bytes(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Header lines as bytes: any octets but CR and LF, so invalid UTF-8 reaches the server."""
    octets = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    names = st.one_of(header_names.map(str.encode), octets)
    return draw(st.lists(st.tuples(names, octets), max_size=4))


def arbitrary_bodies(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Garbage, deep nesting, invalid UTF-8 in a valid body, random JSON, mutated valid JSON."""
    return st.one_of(
        st.binary(max_size=512),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        deep_nesting(),
        invalid_utf8(valid),
        json_values.map(dumps),
        valid,
        valid.map(lambda b: b[: len(b) // 2]),
        st.sampled_from(
            [b"", b"null", b"[]", b"{}", b'""', b"0", b"-0", b"1e999", b"NaN", b"\x00"]
        ),
    )
