"""SQLite store backend: the embedded default, one file, one process.

Threading: ``sqlite3`` blocks, so every database call runs on ONE dedicated worker thread
(``_Worker``: a FIFO queue and one thread); the event loop never touches the database. Each
``Tx`` method is a single hop to that thread. Because the worker is a FIFO, a rollback queued
after a cancelled call still runs after it, never before.

Durability: WAL journal with ``synchronous=FULL``, so a committed transaction survives power
loss (a 2xx means committed). Writers take ``BEGIN IMMEDIATE`` and an ``asyncio.Lock``
serialises transactions in-process. Reads outside a transaction use a second connection, so
they see committed data only, even while a transaction is open.

Single replica: an exclusive, non-blocking ``flock`` on ``<path>.lock``, held for the store's
lifetime, refuses a second process (or a second store in this one) on the same file.

Errors: ``sqlite3.Error`` and ``OSError`` surface as ``StoreError`` (chained with ``from``);
``Conflict`` stays distinct.

SQL: the shared layer (``escalation.store.sql``); the SQLite dialect in ``sql.sqlite`` stores
instants as INTEGER microseconds since the Unix epoch (UTC): exact, and ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from escalation.incidents.model import Changes
from escalation.oncall.overrides import StoredOverride
from escalation.store.base import StoreError, Tx
from escalation.store.migrations import migrate_sqlite
from escalation.store.sql.sqlite import QUERIES
from escalation.store.sql.statement import Mode, Query, Steps
from escalation.store.sql.tx import SqlReads, SqlTx

__all__ = ["SINGLE_REPLICA_MESSAGE", "SqliteStore"]

log = logging.getLogger(__name__)

SINGLE_REPLICA_MESSAGE = "SQLite is single-replica; use PostgreSQL for several replicas"

_T = TypeVar("_T")


# -- running queries (on the worker thread) --------------------------------------------------------


def _drive(conn: sqlite3.Connection, query: Query[_T]) -> _T:
    """Run ``query`` to its answer on ``conn``, one statement after another."""
    steps = Steps(query)
    result: Any = None
    while (stmt := steps.next(result)) is not None:
        if stmt.mode is Mode.FETCH:
            result = conn.execute(stmt.sql, stmt.params).fetchall()
        elif stmt.mode is Mode.COUNT:
            result = conn.execute(stmt.sql, stmt.params).rowcount
        else:
            conn.executemany(stmt.sql, stmt.params)
            result = None
    return steps.answer


def _q_apply(conn: sqlite3.Connection, ch: Changes) -> None:
    # A savepoint makes apply all-or-nothing even if the caller catches Conflict and commits.
    conn.execute("SAVEPOINT apply_changes")
    try:
        _drive(conn, QUERIES.apply(ch))
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO apply_changes")
                conn.execute("RELEASE apply_changes")
        raise
    conn.execute("RELEASE apply_changes")


def _begin(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # Left over from a BEGIN whose caller was cancelled before it could roll back.
        log.warning("SQLite connection was still in a transaction; rolling it back")
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


_MAX_BATCH = 128  # units per group commit at most


@dataclasses.dataclass
class _Batch:
    done: asyncio.Future[None]
    units: int = 0


def _with_prelude(
    conn: sqlite3.Connection,
    prelude: list[str | Changes],
    fn: Callable[..., _T],
    args: tuple[Any, ...],
) -> _T:
    for item in prelude:
        if isinstance(item, Changes):
            _q_apply(conn, item)
        elif item == "BEGIN IMMEDIATE":
            _begin(conn)
        else:
            conn.execute(item)
    return fn(conn, *args)


def _noop(conn: sqlite3.Connection) -> None:
    return None


def _rollback_unit(conn: sqlite3.Connection) -> bool:
    """Undo the current unit only; False if SQLite had to abandon the whole transaction."""
    if not conn.in_transaction:
        return False
    conn.execute("ROLLBACK TO unit")
    conn.execute("RELEASE unit")
    return conn.in_transaction


_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class _Worker:
    """One thread running calls in the order they were queued, each answered on its loop.

    What ``ThreadPoolExecutor(max_workers=1)`` with ``run_in_executor`` did, at about half the
    CPU per hop (no idle semaphore, no second future chained to the first): a hop is paid
    several times per transaction. A call whose future was cancelled before it started is
    skipped, as the executor skipped it.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_T] = loop.create_future()
        self._queue.put((loop, fut, fn, args))
        return fut

    def stop(self) -> None:
        """Let the thread end once the calls queued so far have run."""
        self._queue.put(None)

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, fut, fn, args = item
            if fut.cancelled():
                continue
            try:
                result = fn(*args)
            except BaseException as e:  # handed to the caller, like the executor did
                _answer(loop, fut, None, e)
            else:
                _answer(loop, fut, result, None)


def _answer(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, fut, result, error)
    except RuntimeError:
        pass  # the loop closed meanwhile: nobody is waiting any more


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return  # cancelled while the call ran
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


# -- the store ----------------------------------------------------------------------------------


class _SqliteTx(SqlTx):
    """One write transaction on the store's writer connection (each call: one trip there)."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(QUERIES)
        self._store = store
        self.done = False

    async def _run(self, query: Query[_T]) -> _T:
        if self.done:
            raise StoreError("transaction already finished")
        return await self._store._run_in_tx(_drive, query)

    async def overrides(
        self,
        schedule: str | None = None,
        *,
        ending_after: datetime | None = None,
        removed: bool = False,
    ) -> list[StoredOverride]:
        """As ``SqlTx.overrides``; the live ones (what the engine lays over the schedules for
        every step it fires) from the store's cache when nothing could have changed them."""
        if removed or ending_after is None:
            return await super().overrides(schedule, ending_after=ending_after, removed=removed)
        store = self._store
        cached = store._live_overrides
        if cached is None or cached[0] != store._overrides_gen or ending_after < cached[1]:
            found = await super().overrides(ending_after=ending_after)
            cached = store._live_overrides = (store._overrides_gen, ending_after, found)
        return [
            o
            for o in cached[2]
            if o.ends_at > ending_after and (schedule is None or o.schedule == schedule)
        ]

    async def add_override(self, override: StoredOverride) -> None:
        self._store._forget_overrides()
        await super().add_override(override)

    async def remove_override(
        self, schedule: str, override_id: str, at: datetime, by: str, on_behalf_of: str = ""
    ) -> StoredOverride | None:
        self._store._forget_overrides()
        return await super().remove_override(schedule, override_id, at, by, on_behalf_of)

    async def lock_keys(self, keys: Sequence[str]) -> None:
        """No-op: ``BEGIN IMMEDIATE`` plus the in-process lock already serialise every writer."""
        if self.done:
            raise StoreError("transaction already finished")

    async def apply(self, changes: Changes) -> None:
        """Write ``changes`` all-or-nothing; raises Conflict if an updated incident moved.

        Changes without a compare-and-set ride along with the unit's next trip to the worker
        thread (a later read in the same unit, or the unit's release/commit), so their errors
        surface there at the latest; a compare-and-set runs at once so Conflict comes from here.
        """
        if self.done:
            raise StoreError("transaction already finished")
        if changes.updated_incidents:
            await self._store._run_in_tx(_q_apply, changes)  # may raise Conflict: now
        else:
            self._store._prelude.append(changes)


class SqliteStore(SqlReads):
    """The embedded store: one SQLite file, one process (see the module docstring).

    ``path`` may be ``":memory:"`` for a throw-away store (tests, ``tocsin simulate``): then one
    connection serves reads and writes, and there is no lock file.
    """

    def __init__(
        self, path: str | os.PathLike[str] = "tocsin.db", *, busy_timeout: float = 5.0
    ) -> None:
        super().__init__(QUERIES)
        self._path = os.fspath(path)
        self._memory = self._path == ":memory:"
        self._busy_ms = int(busy_timeout * 1000)
        self._lock = asyncio.Lock()
        self._queued = 0
        self._batch: _Batch | None = None
        self._prelude: list[str | Changes] = []
        self._unit_started = False  # the current unit's SAVEPOINT has reached the database
        self._executor: _Worker | None = None
        self._closing = False
        # Owned by the worker thread once open.
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None
        # The live overrides as last read (generation, read as of, overrides): only this process
        # writes the file (the lock file), so they change only through its own writes and
        # rollbacks, each of which starts a new generation. The engine reads them per step.
        self._overrides_gen = 0
        self._live_overrides: tuple[int, datetime, list[StoredOverride]] | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    def _forget_overrides(self) -> None:
        """An override write, or a rollback that may undo one: the cache is stale."""
        self._overrides_gen += 1
        self._live_overrides = None

    @property
    def path(self) -> str:
        """The database file (or ``:memory:``)."""
        return self._path

    # -- plumbing --

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        executor = self._executor
        if executor is None or self._closing:
            raise StoreError(f"SQLite store {self._path} is not open")
        try:
            return await executor.call(fn, *args)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"SQLite {self._path}: {e}") from e

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreError(f"SQLite store {self._path} is not open")
        return self._writer

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreError(f"SQLite store {self._path} is not open")
        return self._reader

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_ms / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        return conn

    def _take_lock_file(self) -> None:
        lock_path = Path(self._path + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreError(f"cannot create lock file {lock_path}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"{self._path} is in use (lock {lock_path} held by pid {holder}): "
                + SINGLE_REPLICA_MESSAGE
            ) from e
        except OSError as e:
            os.close(fd)
            raise StoreError(f"cannot lock {lock_path}: {e.strerror or e}") from e
        # Who holds it, for the message a second process prints.
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _open_sync(self) -> None:
        if not self._memory:
            self._take_lock_file()
        writer = self._connect()
        self._writer = writer
        if not self._memory:
            mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"SQLite {self._path}: cannot use WAL journal (got {mode!r})")
        writer.execute("PRAGMA synchronous = FULL")
        migrate_sqlite(writer)
        if self._memory:
            self._reader = writer
        else:
            reader = self._connect()
            reader.execute("PRAGMA query_only = ON")
            self._reader = reader
            st = os.stat(self._path)
            self._inode = (st.st_dev, st.st_ino)

    def _close_sync(self) -> None:
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("closing SQLite connection failed", exc_info=True)
        self._reader = self._writer = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _ping_sync(self, conn: sqlite3.Connection) -> None:
        if self._inode is not None:
            try:
                st = os.stat(self._path)
            except OSError as e:
                raise StoreError(f"SQLite file {self._path} is gone: {e.strerror or e}") from e
            if (st.st_dev, st.st_ino) != self._inode:
                raise StoreError(f"SQLite file {self._path} was replaced since the store opened")
        conn.execute(
            "INSERT INTO store_health (id, pinged) VALUES (1, 1)"
            " ON CONFLICT (id) DO UPDATE SET pinged = pinged + 1"
        )

    # -- Store --

    async def open(self) -> None:
        """Take the lock file, connect, set WAL/FULL, and apply pending migrations."""
        if self._executor is not None:
            raise StoreError(f"SQLite store {self._path} is already open")
        self._closing = False
        self._executor = _Worker("tocsin-sqlite")
        try:
            await self._call(self._open_sync)
        except BaseException:
            await self._shutdown()
            raise

    async def _shutdown(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await executor.call(self._close_sync)
        finally:
            self._executor = None
            executor.stop()

    async def close(self) -> None:
        """Wait for the running transaction, then close connections and release the lock file."""
        if self._executor is None:
            return
        async with self._lock:
            self._closing = True
            await self._shutdown()

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A write unit of work (``BEGIN IMMEDIATE``); commit on exit, roll back on exception."""
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        # Group commit: units run one after another inside one SQLite transaction, each in its own
        # savepoint; the last unit of a burst commits for all, and every unit returns only after
        # that COMMIT (fsync), so "returned" still means "durable" but a burst pays one fsync.
        # Statements that open and close units ride along with the unit's first real call
        # (`_prelude`), so a unit costs no extra trips to the worker thread.
        if self._executor is None or self._closing:
            raise StoreError(f"SQLite store {self._path} is not open")
        self._queued += 1
        batch: _Batch | None = None
        try:
            async with self._lock:
                self._queued -= 1
                batch = self._batch
                if batch is None:
                    batch = self._batch = _Batch(asyncio.get_running_loop().create_future())
                    self._prelude.append("BEGIN IMMEDIATE")
                mark = len(self._prelude)
                self._prelude.append("SAVEPOINT unit")
                self._unit_started = False
                batch.units += 1
                tx = _SqliteTx(self)
                try:
                    yield tx
                except BaseException:
                    tx.done = True
                    if not self._unit_started:
                        del self._prelude[mark:]  # nothing of this unit reached the database
                    else:
                        await self._undo_unit(batch)
                    raise
                tx.done = True
                writes = any(isinstance(x, Changes) for x in self._prelude)
                if not self._unit_started and not writes:
                    del self._prelude[mark:]  # the unit never touched the database
                else:
                    self._prelude.append("RELEASE unit")
                commit_now = self._queued == 0 or batch.units >= _MAX_BATCH
                if commit_now:
                    await self._commit_batch(batch)
                elif writes:
                    # Write now (the next unit commits for us) so this unit's errors are its own.
                    try:
                        await self._run_in_tx(_noop)
                    except BaseException:
                        await self._undo_unit(batch)
                        raise
        except BaseException:
            if batch is None:
                self._queued -= 1
            raise
        if not commit_now:
            await self._await_commit(batch)

    async def _await_commit(self, batch: _Batch) -> None:
        """Return once a later unit committed ``batch`` (raise what that commit raised)."""
        while not batch.done.done():
            try:
                await asyncio.wait_for(asyncio.shield(batch.done), timeout=0.05)
            except TimeoutError:
                # The unit expected to commit next went away (cancelled while queued): commit.
                async with self._lock:
                    if self._batch is batch:
                        await self._commit_batch(batch)
        batch.done.result()

    async def _run_in_tx(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run pending unit statements, then ``fn``, in one trip to the worker thread."""
        prelude, self._prelude = self._prelude, []
        if prelude:
            self._unit_started = True
        return await self._call(_with_prelude, self._writer_conn(), prelude, fn, args)

    async def _commit_batch(self, batch: _Batch) -> None:
        self._batch = None
        prelude, self._prelude = self._prelude, []
        try:
            # A batch whose BEGIN never ran and that holds no write has nothing to commit.
            if "BEGIN IMMEDIATE" not in prelude or any(isinstance(x, Changes) for x in prelude):
                await self._call(_with_prelude, self._writer_conn(), prelude, _commit, ())
        except BaseException as e:
            await self._rollback_quietly()
            err = (
                e
                if isinstance(e, StoreError)
                else StoreError(f"SQLite {self._path}: commit failed: {e}")
            )
            if not batch.done.done():
                batch.done.set_exception(err)
                batch.done.exception()  # retrieved: the units awaiting it re-raise it
            raise
        if not batch.done.done():
            batch.done.set_result(None)

    async def _undo_unit(self, batch: _Batch) -> None:
        self._forget_overrides()
        try:
            still_open = await self._run_in_tx(_rollback_unit)
        except StoreError:
            log.warning("SQLite savepoint rollback failed", exc_info=True)
            still_open = False
        if not still_open:
            # The whole transaction is gone: earlier units of this batch were not committed.
            self._batch = None
            self._prelude = []
            await self._rollback_quietly()
            if not batch.done.done():
                batch.done.set_exception(
                    StoreError(f"SQLite {self._path}: transaction rolled back")
                )
                batch.done.exception()
        elif self._queued == 0:
            await self._commit_batch(batch)

    async def _rollback_quietly(self) -> None:
        # The original exception matters more than a failed rollback; _begin cleans up later.
        self._forget_overrides()
        try:
            await self._call(_rollback, self._writer_conn())
        except StoreError:
            log.warning("SQLite rollback failed", exc_info=True)

    async def ping(self) -> None:
        """Commit a tiny write now; StoreError if the file is gone, replaced or unwritable."""
        async with self.transaction():
            await self._run_in_tx(self._ping_sync)

    async def _read(self, query: Query[_T]) -> _T:
        return await self._call(_drive, self._reader_conn(), query)
