"""What only the SQLite backend does: WAL and full sync, one process per file, in-memory stores."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from escalation.store.base import StoreError
from escalation.store.sqlite import SINGLE_REPLICA_MESSAGE, SqliteStore
from tests.escalation.store.records import (
    ALL_VERSIONS,
    apply,
    incident,
)


async def test_sqlite_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:
        sync = await store._call(
            lambda: store._writer_conn().execute("PRAGMA synchronous").fetchone()[0]
        )
        assert sync == 2  # FULL
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == ALL_VERSIONS
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["parent-is-a-file", "path-is-a-directory"])
async def test_sqlite_unwritable_path_is_a_store_error(tmp_path: Path, kind: str) -> None:
    if kind == "parent-is-a-file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "tocsin.db"
    else:
        path = tmp_path / "dir.db"
        path.mkdir()
    store = SqliteStore(path)
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, (OSError, sqlite3.Error))
    with pytest.raises(StoreError):
        await store.ping()


async def test_sqlite_ping_fails_when_the_file_is_removed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:
        await store.ping()
        (tmp_path / "t.db").unlink()
        with pytest.raises(StoreError, match="gone"):
            await store.ping()
    finally:
        await store.close()


_OPEN_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from escalation.store.sqlite import SqliteStore
    from escalation.store.base import StoreError

    async def main():
        store = SqliteStore(sys.argv[1])
        try:
            await store.open()
        except StoreError as e:
            print(e)
            return 3
        await store.close()
        print("opened")
        return 0

    sys.exit(asyncio.run(main()))
    """
)


def _open_in_subprocess(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _OPEN_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_sqlite_second_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    await store.open()
    try:
        proc = await asyncio.to_thread(_open_in_subprocess, path)
        assert proc.returncode == 3, proc.stderr
        assert SINGLE_REPLICA_MESSAGE in proc.stdout
        assert (
            SINGLE_REPLICA_MESSAGE
            == "SQLite is single-replica; use PostgreSQL for several replicas"
        )
        assert f"pid {os.getpid()}" in proc.stdout
        second = SqliteStore(path)  # also a second store in this process
        with pytest.raises(StoreError, match="single-replica"):
            await second.open()
        await store.ping()  # the refused opener did not disturb the holder
    finally:
        await store.close()
    proc = await asyncio.to_thread(_open_in_subprocess, path)
    assert (proc.returncode, proc.stdout.strip()) == (0, "opened")


async def test_sqlite_in_memory_store(tmp_path: Path) -> None:
    store = SqliteStore(":memory:")
    await store.open()
    try:
        await apply(store, new_incidents=[incident("a")])
        assert (await store.find_incident("#1")).id == "a"  # type: ignore[union-attr]
        await store.ping()
    finally:
        await store.close()
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
