"""Store fixtures: a store of each backend (``store``, ``make``) and PostgreSQL schemas.

PostgreSQL tests need ``TOCSIN_TEST_POSTGRES_DSN`` (e.g.
``postgresql://postgres@127.0.0.1:5432/test``); each gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from escalation.store.base import Store
from escalation.store.postgres import PostgresStore
from escalation.store.sqlite import SqliteStore

DSN_ENV = "TOCSIN_TEST_POSTGRES_DSN"


# -- fixtures -----------------------------------------------------------------------------------


def _pg_dsn() -> str:
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        pytest.skip(f"set {DSN_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) to run")
    return dsn


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[tuple[str, str]]:
    """(dsn, a fresh schema name); the schema is dropped afterwards."""
    dsn = _pg_dsn()
    name = f"tocsin_test_{uuid.uuid4().hex[:12]}"
    try:
        yield dsn, name
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def pg_schema() -> AsyncIterator[tuple[str, str]]:
    async with fresh_schema() as pair:
        yield pair


@pytest.fixture(params=["sqlite", "postgres"])
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(backend_name: str, tmp_path: Path) -> AsyncIterator[Callable[[], Store]]:
    """A factory of unopened stores sharing one database of the parametrised backend."""
    if backend_name == "sqlite":
        path = tmp_path / "tocsin.db"
        yield lambda: SqliteStore(path)
        return
    async with fresh_schema() as (dsn, schema):
        yield lambda: PostgresStore(dsn, schema=schema, pool_min=1, pool_max=5)


@pytest.fixture
async def store(make: Callable[[], Store]) -> AsyncIterator[Store]:
    s = make()
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def pg_store(pg_schema: tuple[str, str]) -> AsyncIterator[PostgresStore]:
    dsn, schema = pg_schema
    s = PostgresStore(dsn, schema=schema, pool_min=1, pool_max=8)
    await s.open()
    yield s
    await s.close()
