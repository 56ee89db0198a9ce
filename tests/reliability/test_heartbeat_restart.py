"""Heartbeats across a SIGKILL and across replicas: the expiry is a durable due row.

A real ``tocsin serve`` arms a heartbeat (4 s window) and takes a ping; it is killed (SIGKILL)
and stays down past the heartbeat's due time. The restarted process opens the incident and
pages once; it never re-arms the heartbeat it found stored. Two replicas on one PostgreSQL
store open one incident for an expiry, and page once.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.driver.config import RECEIVER_TOKEN
from tests.driver.process import ServeProc, serve_config, start_serve, wait_for
from tests.reliability.conftest import Db, postgres_backend, sqlite_backend, unfinished

BEAT = {"expect_every": "3s", "grace": "1s", "severity": "P1", "policy": "faults"}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, Any], Db]:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path)
    dsn, schema = request.getfixturevalue("pg_schema")
    return postgres_backend(dsn, schema)


def beat_config(tmp: Path, store: dict[str, Any]) -> Path:
    """Every alert P1 on ``faults`` (page p0 at once), and the heartbeat ``cron``."""
    path = serve_config(
        tmp, store, steps=[{"after": "0s", "notify": ["person:p0"], "via": ["log"]}], people=["p0"]
    )
    cfg = yaml.safe_load(path.read_text())
    cfg["heartbeats"] = {"cron": BEAT}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def ping(proc: ServeProc) -> int:
    req = urllib.request.Request(
        f"{proc.url}/api/v1/heartbeats/cron/ping",
        method="POST",
        headers={"Authorization": f"Bearer {RECEIVER_TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(r.status)


def pages(db: Db) -> list[tuple[str, str, str]]:
    return [(r["incident_id"], r["person"], r["kind"]) for r in db.outbox()]


def test_a_heartbeat_that_expires_while_tocsin_is_killed_pages_once_after_the_restart(
    tmp_path: Path, procs: list[ServeProc], store: tuple[dict[str, Any], Db]
) -> None:
    store_yaml, db = store
    config = beat_config(tmp_path, store_yaml)
    first = start_serve(procs, "first", config, tmp_path)
    assert ping(first) == 200
    first.kill()

    [row] = db.heartbeats()
    assert (row["id"], row["state"]) == ("cron", "pending")
    assert db.incidents() == []
    # Stay down until the heartbeat is overdue: nothing ran when it came due.
    time.sleep(max(0.0, (row["due_at"] + timedelta(seconds=1) - datetime.now(UTC)).total_seconds()))
    assert db.incidents() == [] and db.heartbeats()[0]["state"] == "pending"

    second = start_serve(procs, "restarted", config, tmp_path)
    wait_for(
        lambda: len(db.outbox()) == 1 and not unfinished(db),
        timeout=15,
        what="the heartbeat's incident opened and paged after the restart",
        describe=lambda: (db.incidents(), db.outbox()),
    )
    [inc] = db.incidents()
    assert inc["key"] == "heartbeat/cron"
    [expired] = db.heartbeats()
    assert expired["state"] == "expired"
    assert expired["due_at"] == row["due_at"]  # the restart did not re-arm it
    assert expired["expired_at"] is not None and expired["expired_at"] >= row["due_at"]

    # Exactly once: later ticks of the restarted engine leave it expired, with one page.
    listed = lambda: second.api("/api/v1/heartbeats")["heartbeats"][0]  # noqa: E731
    wait_for(lambda: listed()["state"] == "expired", timeout=10, what="listed as expired")
    assert pages(db) == [(inc["id"], "p0", "page")]

    assert ping(second) == 200  # it is back: the incident resolves
    wait_for(
        lambda: second.api(f"/api/v1/incidents/{inc['id']}")["status"] == "resolved",
        timeout=10,
        what="the incident resolved by the ping",
    )
    assert db.incidents() == [inc]
    assert [p for p in pages(db) if p[2] == "page"] == [(inc["id"], "p0", "page")]
    assert second.errors() == []


def test_two_replicas_on_postgres_open_one_incident_for_one_expiry(
    tmp_path: Path, procs: list[ServeProc], pg_schema: tuple[str, str]
) -> None:
    store_yaml, db = postgres_backend(*pg_schema)
    config = beat_config(tmp_path, store_yaml)
    a = start_serve(procs, "replica-a", config, tmp_path)
    b = start_serve(procs, "replica-b", config, tmp_path)
    wait_for(
        lambda: len(db.outbox()) == 1 and not unfinished(db),
        timeout=20,
        what="the never-pinged heartbeat expired and paged",
        describe=lambda: (db.heartbeats(), db.incidents()),
    )
    [inc] = db.incidents()
    # Both replicas keep ticking (each polls every second) and see it fired: one of each.
    for proc in (a, b):
        wait_for(
            lambda p=proc: p.api("/api/v1/heartbeats")["heartbeats"][0]["state"] == "expired",
            timeout=10,
            what=f"{proc.name} lists it expired",
        )
    time_of = db.heartbeats()[0]["expired_at"]
    assert [r["id"] for r in db.incidents()] == [inc["id"]]
    assert pages(db) == [(inc["id"], "p0", "page")]
    assert db.heartbeats()[0]["expired_at"] == time_of
    assert a.errors() == [] and b.errors() == []
