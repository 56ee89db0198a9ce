"""The whole app in-process: a Runtime on a virtual clock, served through an aiohttp client.

The engine loop is NOT started; tests move time themselves, in one of two ways:

- ``tick()`` / ``at(delta)``: set the clock, then let the engine do what is due once (a step
  that comes due inside the jump fires late, as it would after a stall);
- ``run_until(t)`` / ``advance(delta)``: walk through every due time up to ``t`` in order,
  exactly as the engine loop would have.

Everything is observable through the HTTP API (``api``, ``incident``, ``incidents``, ``act``)
and, for assertions on what is stored, through the store (``record``, ``outbox``, ``timeline``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from config.load import load_config
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import IncidentRecord, OutboxRecord, TimelineEvent
from escalation.store.base import IncidentFilter
from router.app import create_app
from router.runtime import Runtime
from tests.driver.config import READ_TOKEN, RECEIVER_TOKEN, WRITE_TOKEN
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.smtp import SmtpServer
from tests.fakes.twilio import FakeTwilio

__all__ = ["AM", "READ", "START", "WRITE", "App", "Client", "MakeApp", "make_app", "start_app"]

START = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
"""Where the virtual clock starts unless a test says otherwise: just after the samples fired."""

AM = {"Authorization": f"Bearer {RECEIVER_TOKEN}", "Content-Type": "application/json"}
"""What Alertmanager sends with every webhook (with the base config's receiver token)."""
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}

RECEIVER = "/api/v1/alertmanager"

_F = TypeVar("_F")

Client = TestClient[web.Request, web.Application]
"""pytest-aiohttp's client for a served ``web.Application``."""


@dataclass
class App:
    """A started Runtime, its virtual clock and config, and an HTTP client talking to it."""

    rt: Runtime
    client: Client
    clock: VirtualClock
    path: Path
    start: datetime
    fakes: dict[type, object] = field(default_factory=dict)
    """The local fake servers the config points at, by type (see ``fake``)."""

    def fake(self, kind: type[_F]) -> _F:
        """The fake server of type ``kind`` this app was wired to."""
        found = self.fakes[kind]
        assert isinstance(found, kind)
        return found

    @property
    def pagerduty(self) -> FakePagerDuty:
        return self.fake(FakePagerDuty)

    @property
    def twilio(self) -> FakeTwilio:
        return self.fake(FakeTwilio)

    @property
    def smtp(self) -> SmtpServer:
        return self.fake(SmtpServer)

    @property
    def now(self) -> datetime:
        return self.clock.now()

    @property
    def db_path(self) -> Path:
        """The SQLite file the store writes (the app must run on SQLite)."""
        path = self.rt.loaded.config.store.path
        assert path is not None
        return Path(path)

    # -- input --

    async def post(
        self,
        body: dict[str, Any] | bytes,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST a webhook body to the receiver; assert the HTTP status; the JSON reply."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = await self.client.post(RECEIVER, data=data, headers=headers or AM)
        reply = await r.json()
        assert r.status == status, reply
        await self.settle()
        return dict(reply)

    async def settle(self) -> None:
        """Wait for the pages an ingest handed to delivery after its commit (sent at once,
        as a due first tier is: see ``escalation/engine/immediate.py``)."""
        await self.rt.service.settle()

    async def fire(
        self, body: dict[str, Any] | bytes, *, headers: dict[str, str] | None = None
    ) -> IncidentRecord:
        """POST a webhook body that must be accepted; the one incident the store holds."""
        await self.post(body, headers=headers)
        [inc] = await self.rt.store.list_incidents(IncidentFilter())
        return inc

    # -- time --

    async def tick(self, after: timedelta | None = None) -> None:
        """Move the clock by ``after`` (if given) and let the engine do what is due, once."""
        if after is not None:
            self.clock.set(self.clock.now() + after)
        await self.rt.engine.tick()

    async def at(self, delta: timedelta) -> None:
        """Set the clock to ``start + delta`` and let the engine do what is due, once."""
        self.clock.set(self.start + delta)
        await self.rt.engine.tick()

    async def run_until(self, t: datetime) -> None:
        """Move the clock to ``t``, firing every step and delivering every row due on the way."""
        for _ in range(10_000):
            nxt = await self.rt.store.next_due()
            if nxt is None or nxt > t:
                break
            self.clock.set(max(nxt, self.clock.now()))
            await self.rt.engine.tick()
        else:  # pragma: no cover - a store that never drains is a bug worth a loud failure
            raise AssertionError("the engine never drained its due work")
        self.clock.set(t)
        await self.rt.engine.tick()

    async def advance(self, delta: timedelta) -> None:
        """``run_until(now + delta)``."""
        await self.run_until(self.clock.now() + delta)

    # -- the HTTP API --

    async def api(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any]:
        """One API call (write token by default); (status, decoded JSON body)."""
        r = await self.client.request(method, path, headers=headers or WRITE, **kw)
        return r.status, await r.json()

    async def incident(self, ref: str) -> dict[str, Any]:
        """``GET /api/v1/incidents/{ref}`` (must answer 200)."""
        status, body = await self.api("GET", f"/api/v1/incidents/{ref}", headers=READ)
        assert status == 200, body
        return dict(body)

    async def incidents(self, query: str = "") -> list[dict[str, Any]]:
        """``GET /api/v1/incidents?{query}`` (must answer 200), newest first."""
        status, body = await self.api("GET", f"/api/v1/incidents?{query}", headers=READ)
        assert status == 200, body
        return list(body["incidents"])

    async def act(self, ref: str, action: str, *, status: int = 200, **body: Any) -> dict[str, Any]:
        """``POST /api/v1/incidents/{ref}/{action}`` with the write token; assert the status."""
        code, reply = await self.api("POST", f"/api/v1/incidents/{ref}/{action}", json=body)
        assert code == status, reply
        return dict(reply)

    async def state(self) -> dict[str, Any]:
        """Everything observable about every incident, for "nothing changed" comparisons."""
        return {s["id"]: await self.incident(s["id"]) for s in await self.incidents("limit=1000")}

    def pages(self, inc: dict[str, Any], kind: str = "page") -> list[tuple[float, int, str, str]]:
        """(seconds after start, tier, person, state) of the incident's outbox rows of ``kind``."""
        return [
            (
                (datetime.fromisoformat(n["created_at"]) - self.start).total_seconds(),
                n["tier"],
                n["person"],
                n["state"],
            )
            for n in inc["notifications"]
            if n["kind"] == kind
        ]

    # -- the store --

    async def record(self, inc_id: str) -> IncidentRecord:
        """The stored incident (it must exist)."""
        inc = await self.rt.store.get_incident(inc_id)
        assert inc is not None
        return inc

    async def outbox(self, inc_id: str) -> list[OutboxRecord]:
        async with self.rt.store.transaction() as tx:
            return await tx.outbox_of(inc_id)

    async def timeline(self, inc_id: str) -> list[TimelineEvent]:
        return await self.rt.store.timeline(inc_id)

    async def messages(self, inc_id: str) -> list[str]:
        """The timeline's messages, in order."""
        return [e.message for e in await self.timeline(inc_id)]


Serve = Callable[[web.Application], Awaitable[Client]]


async def _serve_standalone(app: web.Application) -> Client:
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def start_app(
    path: Path,
    *,
    start: datetime = START,
    serve: Serve = _serve_standalone,
    env: dict[str, str] | None = None,
    fakes: tuple[object, ...] = (),
    **runtime: Any,
) -> App:
    """Load ``path``, start its Runtime (no engine loop) on a virtual clock, serve it.

    ``serve`` defaults to a stand-alone test server (the caller closes ``app.client``); the
    ``make_app`` fixture serves through pytest-aiohttp's ``aiohttp_client`` instead.
    ``fakes`` are the fake servers the config points at (``App.fake`` finds them by type);
    further keyword arguments go to ``Runtime``.
    """
    clock = VirtualClock(start)
    rt = Runtime(load_config(path, env=env or {}), clock=clock, **runtime)
    await rt.start(run_engine=False)
    try:
        client = await serve(create_app(rt))
    except BaseException:
        await rt.stop()
        raise
    return App(rt, client, clock, path, start, {type(f): f for f in fakes})


MakeApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[MakeApp]:
    """Factory: ``await make_app(path)`` → a started App; every one is stopped at teardown.

    Keyword arguments go to ``start_app`` (``start``, ``env``, ``fakes``, Runtime's).
    """
    started: list[Runtime] = []

    async def make(path: Path, **kw: Any) -> App:
        app = await start_app(path, serve=aiohttp_client, **kw)
        started.append(app.rt)
        return app

    yield make
    for rt in started:
        await rt.stop()
