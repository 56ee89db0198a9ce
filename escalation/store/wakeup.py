"""Replicas waking each other when earlier work is scheduled.

Several engines share one PostgreSQL. When one replica schedules a step or an outbox row (an
alert it received, an acknowledgement, a fired step's notifications), the others may be asleep
until a later due time. The PostgreSQL store therefore sends ``NOTIFY tocsin_wakeup`` inside the
transaction that writes such rows (PostgreSQL delivers it at commit, never for a rollback), and
every replica keeps a dedicated connection that ``LISTEN``s and calls ``Engine.wake()``.

- The payload is the writer's ``current_schema()``; a listener ignores other schemas' wake-ups,
  so several deployments (or test runs) can share one database without waking each other.
- The listener reconnects with capped exponential backoff when its connection is lost, and
  wakes the engine after every (re)connect, since notifications sent meanwhile are gone.
- Notifications are a latency optimisation only: the engine's bounded poll (``engine.poll``)
  still finds everything a lost notification would have announced.

Backends without notifications (SQLite: one process, whose service wakes its own engine) get
``NullWakeup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "WAKEUP_CHANNEL",
    "NullWakeup",
    "PgWakeupListener",
    "SupportsWakeup",
    "WakeupListener",
    "listener_for",
]

log = logging.getLogger("tocsin.wakeup")

WAKEUP_CHANNEL = "tocsin_wakeup"
"""The PostgreSQL notification channel; the payload is the schema the change was written to."""


class WakeupListener(Protocol):
    """Delivers other replicas' wake-ups to a callback while started."""

    async def start(self) -> None:
        """Begin listening; connecting and reconnecting happen in the background."""

    async def stop(self) -> None:
        """Stop listening and release the connection."""


@runtime_checkable
class SupportsWakeup(Protocol):
    """A store whose writes can wake other replicas (PostgreSQL)."""

    def wakeup_listener(self, on_wake: Callable[[], None]) -> WakeupListener:
        """A listener calling ``on_wake`` whenever another replica scheduled work."""
        ...


class NullWakeup:
    """For stores without cross-process notifications: nothing to listen to."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def listener_for(store: object, on_wake: Callable[[], None]) -> WakeupListener:
    """The wake-up listener ``store`` offers, else a no-op one."""
    if isinstance(store, SupportsWakeup):
        return store.wakeup_listener(on_wake)
    return NullWakeup()


class PgWakeupListener:
    """``LISTEN`` on a dedicated connection; reconnect on loss; call ``on_wake`` per wake-up.

    ``server_settings`` should carry the store's ``search_path`` so ``current_schema()`` here
    matches the one writers send as the payload.
    """

    def __init__(
        self,
        dsn: str,
        on_wake: Callable[[], None],
        *,
        server_settings: Mapping[str, str] | None = None,
        channel: str = WAKEUP_CHANNEL,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        retry_min: float = 0.5,
        retry_max: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._on_wake = on_wake
        self._settings = dict(server_settings or {})
        self._channel = channel
        self._timeout = connect_timeout
        self._keepalive = keepalive
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._topic: str | None = None
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()  # set once the first connection attempt has ended
        self.received = 0  # wake-ups delivered to on_wake (for tests and debugging)
        self.connects = 0  # successful (re)connections
        self.backend_pid: int | None = None  # the LISTEN session's server process, while up

    def __repr__(self) -> str:
        # Never the DSN: it may carry a password.
        return f"PgWakeupListener(channel={self._channel!r}, topic={self._topic!r})"

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the background task that connects, listens and reconnects.

        Returns once the first connection attempt has succeeded or failed (bounded by the
        connect timeout), so a replica that reports ready is already listening when it can be.
        """
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="tocsin-wakeup-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), self._timeout + 1)

    async def stop(self) -> None:
        """Stop the task and close its connection."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._topic:
            return  # another schema's replicas
        self.received += 1
        self._on_wake()

    async def _run(self) -> None:
        import asyncpg

        delay = self._retry_min
        while not self._stopping.is_set():
            try:
                await self._session()
                delay = self._retry_min  # it was up: the next attempt may be quick again
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning(
                    "wake-up listener: connection failed; relying on the poll until it is back",
                    extra={"error": f"{type(e).__name__}: {e}", "retry_in": delay},
                )
            except Exception:
                # A bug here must not end listening for good: the poll hides it, the log not.
                log.exception("wake-up listener failed; restarting it")
            self._attempted.set()
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, self._retry_max)

    async def _session(self) -> None:
        """One connection's life: listen until it is lost (or we stop)."""
        import asyncpg

        conn = await asyncpg.connect(
            self._dsn, timeout=self._timeout, server_settings=self._settings
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            self._topic = await conn.fetchval("SELECT coalesce(current_schema(), '')")
            self.backend_pid = conn.get_server_pid()
            await conn.add_listener(self._channel, self._notified)
            self._connected.set()
            self._attempted.set()
            self.connects += 1
            if self.connects > 1:
                log.info("wake-up listener reconnected")
            # Anything scheduled while we were not listening announced itself to nobody.
            self._on_wake()
            while not lost.is_set() and not conn.is_closed():
                try:
                    await asyncio.wait_for(lost.wait(), self._keepalive)
                except TimeoutError:
                    # A half-open TCP connection never reports loss: ask the server.
                    await conn.fetchval("SELECT 1", timeout=self._timeout)
            if not self._stopping.is_set():
                log.warning("wake-up listener: connection lost; reconnecting")
        finally:
            self._connected.clear()
            self.backend_pid = None
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), self._timeout)
