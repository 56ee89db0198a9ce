"""What only the PostgreSQL backend does: row locks, SKIP LOCKED, advisory locks, replicas
migrating together, a server that goes away."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from escalation.incidents.model import Changes
from escalation.store.base import StoreError
from escalation.store.postgres import PostgresStore
from tests.escalation.store.records import (
    ALL_VERSIONS,
    apply,
    claim_outbox,
    claim_steps,
    incident,
    m,
    outbox,
    step,
)


async def test_pg_skip_locked_while_another_claim_is_uncommitted(pg_store: PostgresStore) -> None:
    store = pg_store
    await apply(
        store,
        new_steps=[step(f"s{i}", due=m(i)) for i in range(5)],
        new_outbox=[outbox(f"o{i}", not_before=m(i)) for i in range(5)],
    )
    first_claimed = asyncio.Event()
    release = asyncio.Event()

    async def slow_claimer() -> tuple[list[str], list[str]]:
        async with store.transaction() as tx:
            s = [x.id for x in await tx.claim_due_steps(m(10), "slow", m(20), 2)]
            o = [x.id for x in await tx.claim_outbox(m(10), "slow", m(20), 2)]
            first_claimed.set()
            await release.wait()  # keep the rows locked, uncommitted
        return s, o

    slow = asyncio.create_task(slow_claimer())
    await first_claimed.wait()
    # The other claimer is not blocked by the open transaction: it skips the locked rows.
    fast_steps = await asyncio.wait_for(claim_steps(store, m(10), "fast", m(20)), 5)
    fast_outbox = await asyncio.wait_for(claim_outbox(store, m(10), "fast", m(20)), 5)
    release.set()
    assert await slow == (["s0", "s1"], ["o0", "o1"])
    assert fast_steps == ["s2", "s3", "s4"]
    assert fast_outbox == ["o2", "o3", "o4"]
    # Committed leases are live now: nobody gets anything before they expire.
    assert await claim_steps(store, m(10), "third", m(30)) == []
    assert await claim_outbox(store, m(10), "third", m(30)) == []
    assert await claim_steps(store, m(20), "third", m(30)) == [f"s{i}" for i in range(5)]


async def test_pg_lock_keys_on_other_keys_do_not_wait(pg_store: PostgresStore) -> None:
    release = asyncio.Event()
    locked = asyncio.Event()

    async def holder() -> None:
        async with pg_store.transaction() as tx:
            await tx.lock_keys(["k1"])
            locked.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await locked.wait()
    async with pg_store.transaction() as tx:
        await asyncio.wait_for(tx.lock_keys(["k2", "k3"]), 5)
        await tx.lock_keys([])
    release.set()
    await task


async def test_pg_get_incident_in_tx_locks_the_row(pg_store: PostgresStore) -> None:
    await apply(pg_store, new_incidents=[incident("a")])
    order: list[str] = []
    locked = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with pg_store.transaction() as tx:
            assert await tx.get_incident("a") is not None
            locked.set()
            await release.wait()
            order.append("first done")

    async def second() -> None:
        async with pg_store.transaction() as tx:
            await tx.get_incident("a")
            order.append("second read")

    t1 = asyncio.create_task(first())
    await locked.wait()
    t2 = asyncio.create_task(second())
    await asyncio.sleep(0.2)
    assert order == []
    release.set()
    await asyncio.gather(t1, t2)
    assert order == ["first done", "second read"]


async def test_pg_concurrent_open_migrates_once(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    stores = [PostgresStore(dsn, schema=schema, pool_min=1, pool_max=2) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                f'SELECT version, count(*) AS n FROM "{schema}".schema_migrations'
                " GROUP BY version ORDER BY version"
            )
        finally:
            await conn.close()
        assert [(r["version"], r["n"]) for r in rows] == [(v, 1) for v in ALL_VERSIONS]
        await apply(stores[0], new_incidents=[incident("a")])
        assert (await stores[2].get_incident("a")).number == 1  # type: ignore[union-attr]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_pg_unreachable_server_is_a_store_error() -> None:
    with socket_closed_port() as port:
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout=2)
        with pytest.raises(StoreError) as caught:
            await store.open()
    assert isinstance(caught.value.__cause__, OSError)
    assert "PostgreSQL open" in str(caught.value)


@contextlib.contextmanager
def socket_closed_port() -> Any:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port  # nothing listens there any more


async def test_pg_ping_fails_when_the_server_goes_away(pg_schema: tuple[str, str]) -> None:
    # A TCP proxy stands in for the server: cutting it is PostgreSQL going away.
    dsn, schema = pg_schema
    parts = urlsplit(dsn)
    target_host, target_port = parts.hostname or "127.0.0.1", parts.port or 5432
    links: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        links.extend([writer, up_writer])
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    proxied = urlunsplit(parts._replace(netloc=netloc))
    store = PostgresStore(proxied, schema=schema, pool_min=1, pool_max=1, connect_timeout=2)
    await store.open()
    try:
        await store.ping()
        for w in links:
            w.close()
        proxy.close()
        await proxy.wait_closed()
        await asyncio.sleep(0.1)
        with pytest.raises(StoreError):
            await store.ping()
        with pytest.raises(StoreError):
            await apply(store, new_incidents=[incident("a")])
    finally:
        await store.close()


async def test_pg_a_connection_goes_back_to_the_pool_without_a_reset_round_trip(
    pg_schema: tuple[str, str],
) -> None:
    # asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a round trip
    # per unit of work; pooled connections keep no session state, so none is sent. What the
    # server saw last on the pooled connection tells.
    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema, pool_min=1, pool_max=1)
    await store.open()
    try:
        pool = store._pool
        assert pool is not None
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()  # no query: the last one stays what the unit sent
        await apply(store, new_incidents=[incident("a")])
        outside = await asyncpg.connect(dsn)
        try:
            last = await outside.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        finally:
            await outside.close()
        assert last.strip() == "COMMIT;"
        # A unit that fails is rolled back before its connection is reused (asyncpg still does
        # that part): the next unit on the one connection starts cleanly and commits.
        with pytest.raises(RuntimeError, match="abandon"):
            async with store.transaction() as tx:
                await tx.apply(Changes(new_incidents=[incident("b")]))
                raise RuntimeError("abandon")
        await apply(store, new_incidents=[incident("c")])
        assert await store.get_incident("b") is None
        assert await store.get_incident("c") is not None
    finally:
        await store.close()
