"""Fault-injection helpers for the reliability tests: what breaks, and how the tests watch it.

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
  affected, so the child's log lines still arrive: the driver's ``ServeProc`` reads them
  through a pipe.
- ``Poster``: Alertmanager's retries against processes that come and go.

The processes themselves, their config and the fakes on their own threads are the whole-app
driver's (``tests.driver.process``, ``tests.driver.threaded``).
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from tests.driver.process import free_port, post

__all__ = [
    "HttpGate",
    "Poster",
    "TcpProxy",
    "dsn_via",
    "eventually",
    "pg_target",
    "refuse_file_writes",
    "restore_file_writes",
]

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


# -- Alertmanager -------------------------------------------------------------------------------


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


async def eventually(predicate: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll ``predicate`` (without blocking the loop between polls) until True; fail naming
    ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")
