"""PostgreSQL store backend: several replicas share one database.

- Connections come from an ``asyncpg`` pool; ``search_path`` is set per connection when a
  schema is configured, so every statement names bare tables.
- Migrations run at ``open()`` on a dedicated connection under ``pg_advisory_lock`` (see
  ``migrations``), so replicas starting together are safe.
- Writers on the same incident keys serialise through ``pg_advisory_xact_lock``
  (``Tx.lock_keys``); ``Tx.get_incident`` takes the row lock (``FOR UPDATE``); updated incidents
  are compare-and-set on ``version``.
- Due steps and outbox rows are claimed with ``FOR UPDATE SKIP LOCKED`` plus a lease
  (owner, expiry): two replicas never get the same row while its lease is live, and a dead
  replica's rows come back once their lease expires.
- A transaction that schedules steps or outbox rows sends ``pg_notify('tocsin_wakeup', schema)``
  (delivered at commit); ``wakeup_listener()`` gives each replica's engine the LISTEN side
  (``escalation.store.wakeup``).

Errors, as a tree::

    StoreError            asyncpg.PostgresError, asyncpg.InterfaceError, OSError (incl. timeouts)
    └── Conflict          a stale version in apply(), or TransactionRollbackError
                          (serialization failure, deadlock): retry the unit of work
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

import asyncpg

from escalation.incidents.model import Changes
from escalation.store.base import Conflict, StoreError, Tx
from escalation.store.migrations import migrate_postgres, quote_ident
from escalation.store.sql.dialect import dumps
from escalation.store.sql.postgres import QUERIES, numbered
from escalation.store.sql.statement import Mode, Query, Steps
from escalation.store.sql.tx import SqlReads, SqlTx
from escalation.store.wakeup import PgWakeupListener

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Translate driver exceptions into the store's own (chained with ``from``)."""
    try:
        yield
    except StoreError:
        raise
    except asyncpg.TransactionRollbackError as e:
        raise Conflict(f"PostgreSQL {what}: {e}") from e
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        raise StoreError(f"PostgreSQL {what}: {type(e).__name__}: {e}") from e


# -- running queries ------------------------------------------------------------------------------


def _count(status: str) -> int:
    # asyncpg returns the command tag: "UPDATE 3", "INSERT 0 1".
    return int(status.rsplit(" ", 1)[-1])


async def _drive(conn: asyncpg.Connection, query: Query[_T]) -> _T:
    """Run ``query`` to its answer on ``conn``, awaiting one statement after another."""
    steps = Steps(query)
    result: Any = None
    with _errors(steps.name):
        while (stmt := steps.next(result)) is not None:
            sql = numbered(stmt.sql)
            if stmt.mode is Mode.FETCH:
                result = await conn.fetch(sql, *stmt.params)
            elif stmt.mode is Mode.COUNT:
                result = _count(await conn.execute(sql, *stmt.params))
            else:
                result = await conn.executemany(sql, stmt.params)  # None
    return steps.answer


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does (roll back an open
    transaction, drop listeners).

    asyncpg's default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``, a
    round trip per unit of work (one in ten of an ingest batch's). Pooled connections hold no
    such session state: advisory locks are transaction-scoped (``lock_keys``), no cursors,
    LISTEN runs on its own connection (``store/wakeup.py``), settings are fixed at connect
    (``server_settings``), and the migration's session lock is on a dedicated connection.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json (not jsonb) columns: key order survives, and Python objects go in and come out.
    await conn.set_type_codec("json", encoder=dumps, decoder=json.loads, schema="pg_catalog")


# -- the store ------------------------------------------------------------------------------------


class _PgTx(SqlTx):
    """One transaction on one pooled connection; reads lock incident rows (``FOR UPDATE``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(QUERIES)
        self._conn = conn
        self.done = False

    def _c(self) -> asyncpg.Connection:
        if self.done:
            raise StoreError("transaction already finished")
        return self._conn

    async def _run(self, query: Query[_T]) -> _T:
        return await _drive(self._c(), query)

    async def lock_keys(self, keys: Sequence[str]) -> None:
        """Serialise writers on the same incident keys with transaction-scoped advisory locks.

        Locks are taken in hash order so two writers with overlapping keys cannot deadlock.
        """
        conn = self._c()
        if not keys:
            return
        with _errors("lock_keys"):
            await conn.execute(
                "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h"
                " FROM unnest($1::text[]) AS k ORDER BY h) AS ordered",
                list(keys),
            )

    async def apply(self, changes: Changes) -> None:
        """Write ``changes`` all-or-nothing; raises Conflict if an updated incident moved."""
        conn = self._c()
        with _errors("apply"):
            # A savepoint: apply stays all-or-nothing even if the caller catches Conflict.
            async with conn.transaction():
                await _drive(conn, self._q.apply(changes))


class PostgresStore(SqlReads):
    """The shared store for several replicas (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        schema: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(QUERIES)
        self._dsn = dsn
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._schema = schema
        self._timeout = connect_timeout
        self._settings = {"application_name": "tocsin"}
        if schema:
            self._settings["search_path"] = quote_ident(schema)
        self._pool: asyncpg.Pool | None = None

    def __repr__(self) -> str:
        # Never the DSN: it may carry a password.
        return f"PostgresStore(schema={self._schema!r})"

    @property
    def schema(self) -> str | None:
        """The configured schema (``search_path``), if any."""
        return self._schema

    def wakeup_listener(self, on_wake: Callable[[], None]) -> PgWakeupListener:
        """A LISTEN connection on this store's database and schema calling ``on_wake``.

        Every transaction that schedules steps or outbox rows sends the notification (see
        ``escalation.store.wakeup``); start the listener after ``open()``.
        """
        settings = {**self._settings, "application_name": "tocsin-wakeup"}
        return PgWakeupListener(
            self._dsn, on_wake, server_settings=settings, connect_timeout=self._timeout
        )

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("PostgreSQL store is not open")
        return self._pool

    async def open(self) -> None:
        """Migrate (on a dedicated connection, under the advisory lock), then start the pool."""
        if self._pool is not None:
            raise StoreError("PostgreSQL store is already open")
        with _errors("open"):
            conn = await asyncpg.connect(
                self._dsn, timeout=self._timeout, server_settings=self._settings
            )
            try:
                await migrate_postgres(conn, self._schema)
            finally:
                # Closing the session also drops the session-level migration lock.
                await conn.close(timeout=self._timeout)
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._pool_min,
                max_size=self._pool_max,
                init=_init_connection,
                reset=_keep_session,
                timeout=self._timeout,
                server_settings=self._settings,
            )

    async def close(self) -> None:
        """Wait for connections in use to come back, then close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with _errors("close"):
                await pool.close()

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A unit of work on one connection; commit on exit, roll back on exception."""
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        pool = self._require_pool()
        with _errors("acquire"):
            conn = await pool.acquire(timeout=self._timeout)
        try:
            tr = conn.transaction()
            with _errors("begin"):
                await tr.start()
            tx = _PgTx(conn)
            try:
                yield tx
            except BaseException:
                tx.done = True
                try:
                    await tr.rollback()
                except Exception:
                    # The original error matters more; the pool resets the connection anyway.
                    log.warning("PostgreSQL rollback failed", exc_info=True)
                raise
            tx.done = True
            with _errors("commit"):
                await tr.commit()
        finally:
            try:
                await pool.release(conn)
            except Exception:
                log.warning("releasing a PostgreSQL connection failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        pool = self._require_pool()
        with _errors(what):
            async with pool.acquire(timeout=self._timeout) as conn:
                yield conn

    async def ping(self) -> None:
        """StoreError unless a connection is available and the server accepts writes."""
        async with self._connection("ping") as conn:
            row = await conn.fetchrow(
                "SELECT pg_is_in_recovery() AS standby,"
                " current_setting('transaction_read_only') AS read_only"
            )
        if row is None or row["standby"] or row["read_only"] == "on":
            raise StoreError("PostgreSQL is read-only (a standby, or read-only transactions)")

    async def _read(self, query: Query[_T]) -> _T:
        async with self._connection(Steps(query).name) as conn:
            return await _drive(conn, query)
