"""Fault-injection helpers for the reliability tests: what breaks, and how the tests watch it.

- ``LoopThread`` / ``ThreadedPagerDuty``: the fake PagerDuty on its own event loop thread, so
  the synchronous tests that drive ``tocsin serve`` subprocesses can block without stalling it.
- ``TcpProxy``: an asyncio TCP forwarder between tocsin and something it talks to (PostgreSQL,
  PagerDuty). ``cut()`` aborts every open connection and stops listening, so new connections are
  refused, as when the server is stopped; ``restore()`` listens again on the same port.
- ``HttpGate``: an HTTP forwarder that answers 503 (PagerDuty's error body) while ``down``.
- ``refuse_file_writes`` / ``restore_file_writes``: make a process's file writes fail. Running as
  root, ``chmod`` and read-only files stop nothing, and renaming the database directory away
  does not stop writes through descriptors SQLite already holds. Lowering the process's
  ``RLIMIT_FSIZE`` soft limit to 0 (``prlimit``) makes every write to a regular file fail with
  EFBIG (Python ignores SIGXFSZ), exactly like a disk that refuses writes; it needs no
  privileges (only the soft limit is lowered and later put back) and no mounts. Pipes are not
  affected, so the child's log lines still arrive: ``ServeProc`` reads them through a pipe.
- ``ServeProc``: a ``tocsin serve`` child whose output is read through a pipe into memory and a
  log file (shown by the tests when they fail).
- ``serve_config``: a config file for those processes, written as JSON (valid YAML).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from tests.fakes.pagerduty import FakeAlert, FakePagerDuty, Recorded
from tests.reliability.conftest import free_port, http_status, wait_for

__all__ = [
    "API_TOKEN",
    "RECEIVER_TOKEN",
    "REPO",
    "HttpGate",
    "LoopThread",
    "PdSnapshot",
    "Poster",
    "ServeProc",
    "TcpProxy",
    "ThreadedPagerDuty",
    "am_body",
    "dsn_via",
    "eventually",
    "pg_target",
    "post",
    "postgres_section",
    "refuse_file_writes",
    "restore_file_writes",
    "serve_config",
    "sqlite_section",
]

REPO = Path(__file__).resolve().parents[2]
RECEIVER_TOKEN = "fault-receiver-token"
API_TOKEN = "fault-api-token"

_T = TypeVar("_T")


# -- an event loop on a thread ------------------------------------------------------------------


class LoopThread:
    """An asyncio loop running on a daemon thread; ``run`` a coroutine on it from any thread."""

    def __init__(self, name: str = "fault-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 30) -> _T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], _T], timeout: float = 30) -> _T:
        """Run ``fn`` on the loop thread (to read state only that thread mutates)."""

        async def go() -> _T:
            return fn()

        return self.run(go(), timeout)

    def close(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# -- the fake PagerDuty on a thread -------------------------------------------------------------


@dataclass(frozen=True)
class PdSnapshot:
    """A consistent copy of what the fake PagerDuty has received and holds."""

    requests: list[Recorded]
    alerts: list[FakeAlert]
    dropped: list[dict[str, Any]]

    @property
    def events(self) -> list[Recorded]:
        """``/v2/enqueue`` requests, in arrival order."""
        return [r for r in self.requests if r.path == "/v2/enqueue"]

    def actions(self, action: str) -> list[tuple[str, str]]:
        """(routing_key, dedup_key) of every accepted (202) event with ``event_action``."""
        return [
            (r.json["routing_key"], r.json["dedup_key"])
            for r in self.events
            if r.status == 202 and r.json.get("event_action") == action
        ]


class ThreadedPagerDuty:
    """``FakePagerDuty`` served from its own loop thread; close with ``close()``."""

    def __init__(self, tmp: Path) -> None:
        self.thread = LoopThread("fake-pagerduty")
        self.fake = self.thread.run(FakePagerDuty(tmp).start())

    @property
    def http_url(self) -> str:
        return self.fake.http_url

    def snapshot(self) -> PdSnapshot:
        """Copies taken on the fake's own thread."""
        return self.thread.call(
            lambda: PdSnapshot(
                list(self.fake.requests),
                copy.deepcopy(self.fake.alerts),
                copy.deepcopy(self.fake.dropped),
            )
        )

    def close(self) -> None:
        self.thread.run(self.fake.close())
        self.thread.close()


# -- network faults -----------------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` drops everything, ``restore()`` heals.

    Runs on whatever loop calls ``start()``; every method must be awaited on that loop.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections aborted because the proxy was cut
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._down = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        """Listen (on a free port the first time, on the same port after a cut)."""
        self._down = False
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Abort every forwarded connection and stop listening: new connections are refused."""
        self._down = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self.start()

    async def close(self) -> None:
        """Cut, then let the forwarding tasks finish (cancelling them would log an error)."""
        await self.cut()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        link = (writer, up_writer)
        self._links.add(link)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._links.discard(link)
            if task is not None:
                self._tasks.discard(task)
            for w in link:
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            # One side is done: so is the conversation (PostgreSQL and HTTP both tolerate this).
            writer.transport.abort()


class HttpGate:
    """Forwards HTTP to ``upstream``; while ``down`` answers 503 with PagerDuty's error body.

    Runs on whatever loop calls ``start()``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.down = False
        self.answered_503 = 0
        self.forwarded = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> HttpGate:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.down:
            self.answered_503 += 1
            return web.json_response(
                {"status": "error", "message": "Service Unavailable", "errors": ["try later"]},
                status=503,
            )
        assert self._session is not None
        self.forwarded += 1
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as r:
            raw = await r.read()
            out = {
                k: v for k, v in r.headers.items() if k.lower() in ("content-type", "retry-after")
            }
            return web.Response(status=r.status, body=raw, headers=out)


def dsn_via(dsn: str, port: int, host: str = "127.0.0.1") -> str:
    """``dsn`` with its host and port replaced (to go through a proxy)."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def pg_target(dsn: str) -> tuple[str, int]:
    """(host, port) a PostgreSQL DSN points at."""
    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


# -- file-write faults --------------------------------------------------------------------------


def refuse_file_writes(pid: int) -> tuple[int, int]:
    """Make every write ``pid`` does to a regular file fail (EFBIG); returns the old limits."""
    old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, old[1]))
    return old


def restore_file_writes(pid: int, old: tuple[int, int]) -> None:
    """Put back the limits ``refuse_file_writes`` returned."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, old)


# -- tocsin serve -------------------------------------------------------------------------------


class ServeProc:
    """A ``tocsin serve`` child; its output (stdout and stderr) is read through a pipe."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._fh = open(log, "a", encoding="utf-8")
        args = [sys.executable, "-m", "router.cli", "serve", "--config", str(config)]
        self.p = subprocess.Popen(
            [*args, "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},
        )
        self._reader = threading.Thread(target=self._pump, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        try:
            for raw in self.p.stdout:
                line = raw.decode("utf-8", errors="replace")
                with self._lock:
                    self._lines.append(line.rstrip("\n"))
                self._fh.write(f"[{self.name}] {line}")
                self._fh.flush()
        finally:
            self._fh.close()

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs; leases and open transactions are left behind."""
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=10)
        self._reader.join(10)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s) and wait for the output to be read."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self._reader.join(10)

    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def json_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (a line cut short by SIGKILL is skipped)."""
        with self._lock:
            lines = list(self._lines)
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def errors(self) -> list[str]:
        """``logger: msg`` of every line logged at error level or above."""
        return [
            f"{r.get('logger')}: {r.get('msg')}"
            for r in self.json_lines()
            if r.get("level") in ("error", "critical")
        ]

    def wait_ready(self, timeout: float = 30) -> ServeProc:
        """Poll ``/readyz`` until 200; fail (with the output) if the process exits."""
        wait_for(
            lambda: not self.alive() or http_status(f"{self.url}/readyz") == 200,
            timeout=timeout,
            what=f"{self.name} /readyz",
            every=0.05,
        )
        assert self.alive(), f"{self.name} exited:\n{self.output()[-4000:]}"
        return self

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of a GET; status 0 when unreachable."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def metrics(self) -> str:
        status, text = self.get("/metrics")
        assert status == 200, (status, text)
        return text


# -- Alertmanager -------------------------------------------------------------------------------


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def am_body(name: str, starts: datetime, *, status: str = "firing") -> dict[str, Any]:
    """An Alertmanager v4 body with one alert ``name`` (its own group, so its own incident)."""
    labels = {"alertname": name, "service": "api", "env": "production", "severity": "error"}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{name} is failing"},
        "startsAt": _ts(starts),
        "endsAt": _ts(datetime.now(UTC)) if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:16],
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "faults",
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"{name} is failing"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def post(url: str, body: Mapping[str, Any], timeout: float = 10) -> tuple[int, Any]:
    """POST a webhook body to ``url``'s receiver: (status, decoded JSON); (0, None) when
    unreachable."""
    req = urllib.request.Request(
        f"{url}/api/v1/alertmanager",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {RECEIVER_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        with contextlib.suppress(ValueError):
            return int(e.code), json.loads(raw)
        return int(e.code), raw.decode(errors="replace")
    except (OSError, http.client.HTTPException):
        # Refused, reset, or cut short (the process was killed mid-answer): no answer.
        return 0, None


class Poster(threading.Thread):
    """Posts each body until it is answered 200, as Alertmanager retries; ``url()`` may change.

    Records every attempt's status, so a test can check nothing but 200, 503 and "no answer"
    (0: the process was down or died mid-request) was ever seen.
    """

    def __init__(
        self, bodies: Sequence[Mapping[str, Any]], url: Callable[[], str], *, interval: float
    ) -> None:
        super().__init__(name="alertmanager", daemon=True)
        self.bodies = list(bodies)
        self.url = url
        self.interval = interval
        self.statuses: list[int] = []
        self.accepted = 0
        self._halted = threading.Event()

    def run(self) -> None:
        for body in self.bodies:
            start = time.monotonic()
            while not self._halted.is_set():
                status, _ = post(self.url(), body, timeout=5)
                self.statuses.append(status)
                if status == 200:
                    self.accepted += 1
                    break
                time.sleep(0.05)
            time.sleep(max(0.0, self.interval - (time.monotonic() - start)))

    def halt(self) -> None:
        """Stop retrying (the current attempt still finishes)."""
        self._halted.set()

    @property
    def retried(self) -> int:
        """Attempts that were not answered 200."""
        return sum(1 for s in self.statuses if s != 200)


# -- config -------------------------------------------------------------------------------------


def sqlite_section(path: Path) -> dict[str, Any]:
    """The ``store:`` section for a SQLite file."""
    return {"backend": "sqlite", "path": str(path)}


def postgres_section(dsn: str, schema: str, pool_max: int = 10) -> dict[str, Any]:
    """The ``store:`` section for PostgreSQL at ``dsn``, in its own ``schema``."""
    return {
        "backend": "postgres",
        "dsn": dsn,
        "schema": schema,
        "pool_min": 1,
        "pool_max": pool_max,
    }


def serve_config(
    tmp: Path,
    store: Mapping[str, Any],
    *,
    steps: Sequence[Mapping[str, Any]],
    people: Sequence[str],
    pagerduty: Mapping[str, Any] | None = None,
    dispatch: Mapping[str, Any] | None = None,
    lease: str = "2s",
    poll: str = "1s",
) -> Path:
    """``tocsin.yaml`` for ``tocsin serve``: every alert is P1 on policy ``faults`` (``steps``).

    People are on the ``log`` channel; reminders are off so only the steps page. Rate limits
    are lifted unless ``dispatch`` says otherwise: the storms here are meant to go through.
    """
    adapters: dict[str, Any] = {
        "log": {"enabled": True},
        "dispatch": {
            "channel_rate": {},
            "person_rate": {"count": 10_000, "per": "1m"},
            "backoff_initial": "1s",
            "backoff_max": "2s",
            **(dispatch or {}),
        },
    }
    if pagerduty is not None:
        adapters["pagerduty"] = dict(pagerduty)
    cfg = {
        "server": {"log_format": "json", "log_level": "info", "public_url": "http://tocsin.test"},
        "auth": {
            "receiver": {"bearer_tokens": [RECEIVER_TOKEN]},
            "api_tokens": [{"name": "ops", "token": API_TOKEN, "scope": "write"}],
        },
        "store": dict(store),
        "engine": {"lease": lease, "poll": poll},
        "rules": {"default": {"severity": "P1", "policy": "faults"}},
        "people": {p: {"name": p, "channels": ["log"]} for p in people},
        "policies": {"faults": {"reminders": False, "steps": [dict(s) for s in steps]}},
        "adapters": adapters,
    }
    path = tmp / "tocsin.yaml"
    path.write_text(json.dumps(cfg, indent=2))
    return path


async def eventually(predicate: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll ``predicate`` (without blocking the loop between polls) until True; fail naming
    ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")
