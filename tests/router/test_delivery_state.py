"""Where the delivery limits live: in the store only where replicas share it.

Keeping breakers and bundling windows in a SQLite store cost a store transaction per send on
the single writer thread and made alert-to-page about 9 x slower (bench/alert_to_page.py);
SQLite has one process, so memory is exact there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.delivery.limits import (
    LocalBreakers,
    LocalWindows,
    StoreBreakers,
    StoreRateLimits,
    StoreWindows,
)
from tests.driver.app import MakeApp
from tests.driver.config import postgres_store, write_config


async def test_one_sqlite_process_keeps_limits_breakers_and_windows_in_memory(
    tmp_path: Path, make_app: MakeApp
) -> None:
    app = await make_app(write_config(tmp_path))
    policy = app.rt._policy
    assert policy.shared is None
    assert isinstance(policy.breakers, LocalBreakers)
    assert isinstance(policy.windows, LocalWindows)


@pytest.fixture
async def pg_schema() -> AsyncIterator[tuple[str, str]]:
    dsn = os.environ.get("TOCSIN_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("TOCSIN_TEST_POSTGRES_DSN is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield dsn, schema
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_replicas_on_postgresql_share_them_through_the_store(
    tmp_path: Path, make_app: MakeApp, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    app = await make_app(write_config(tmp_path, {"store": postgres_store(dsn, schema)}))
    policy = app.rt._policy
    assert isinstance(policy.shared, StoreRateLimits)
    assert isinstance(policy.breakers, StoreBreakers)
    assert isinstance(policy.windows, StoreWindows)
