"""The store goes away under a running ``tocsin serve``, then comes back: nothing is lost.

Two ways to lose the store, one scenario:

- PostgreSQL refuses connections: tocsin reaches PostgreSQL through a TCP proxy in the test;
  ``cut()`` aborts every open connection and stops listening (what a stopped server looks like).
- SQLite cannot write: the process's ``RLIMIT_FSIZE`` is lowered to 0 (see ``faultkit``), so
  every write to the database or its WAL fails with EFBIG, as on a disk that refuses writes.
  (``chmod`` does not stop root, and replacing the directory does not stop writes through the
  descriptors SQLite already holds.)

The scenario: incident A is open and has paged tier 0; the store goes away. An Alertmanager POST
for B is answered 503 (Alertmanager retries 5xx) with a JSON error, ``/readyz`` answers 503,
``/healthz`` still 200; A's tier 1 comes due and the engine fails, logs, counts
``tocsin_engine_errors_total`` and keeps running. The store returns: ``/readyz`` is 200 again,
the retried POST for B is accepted, A's overdue tier 1 fires (marked late) and everything else
follows on time — each step exactly once, each page exactly once, as read from the store.
The error-level log lines the outage causes are asserted, not treated as failures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.load import load_config
from escalation.store.factory import make_store
from router.app import create_app
from router.runtime import Runtime
from tests.driver.config import RECEIVER_TOKEN, postgres_store, sqlite_store
from tests.driver.payloads import am_body
from tests.driver.process import ServeProc, post, serve_config, wait_for
from tests.driver.threaded import LoopThread
from tests.reliability.conftest import Db, metric_value
from tests.reliability.faultkit import (
    TcpProxy,
    dsn_via,
    eventually,
    pg_target,
    refuse_file_writes,
    restore_file_writes,
)

STEPS = [
    {"after": "0s", "notify": ["person:p0"], "via": ["log"]},
    {"after": "3s", "notify": ["person:p1"], "via": ["log"]},
    {"after": "6s", "notify": ["person:p2"], "via": ["log"]},
]
PERSON = {0: "p0", 1: "p1", 2: "p2"}
RECEIVER = "/api/v1/alertmanager"
# What an outage may legitimately log at error level (logger: message).
OUTAGE_ERRORS = {
    "tocsin.http: store unavailable; asking Alertmanager to retry",
    "tocsin.engine: engine tick failed; retrying",
}


@dataclass
class Outage:
    """A store section for the config, a reader, and how to take the store away and back."""

    store: dict[str, Any]
    db: Db
    cut: Callable[[ServeProc], None]
    restore: Callable[[ServeProc], None]


@pytest.fixture(params=["postgres-refused", "sqlite-unwritable"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "sqlite-unwritable":
        path = tmp_path / "tocsin.db"
        saved: dict[int, tuple[int, int]] = {}

        def cut_sqlite(p: ServeProc) -> None:
            saved[p.pid] = refuse_file_writes(p.pid)

        def restore_sqlite(p: ServeProc) -> None:
            restore_file_writes(p.pid, saved.pop(p.pid))

        yield Outage(sqlite_store(path), Db(sqlite_path=path), cut_sqlite, restore_sqlite)
        return
    dsn, schema = request.getfixturevalue("pg_schema")
    thread = LoopThread("pg-proxy")
    proxy = thread.run(TcpProxy(*pg_target(dsn)).start())
    try:
        yield Outage(
            postgres_store(dsn_via(dsn, proxy.port), schema),
            Db(dsn=dsn, schema=schema),  # the test reads PostgreSQL directly, not through the proxy
            lambda _p: thread.run(proxy.cut()),
            lambda _p: thread.run(proxy.restore()),
        )
    finally:
        thread.run(proxy.close())
        thread.close()


def _seconds_until(when: datetime) -> float:
    return (when - datetime.now(UTC)).total_seconds()


def test_store_outage_answers_503_and_resumes_with_nothing_lost(
    tmp_path: Path, outage: Outage
) -> None:
    db = outage.db
    config = serve_config(tmp_path, outage.store, steps=STEPS, people=["p0", "p1", "p2"])
    proc = ServeProc("tocsin", config, tmp_path / "tocsin.log").wait_ready()
    try:
        _scenario(proc, outage)
    except BaseException:
        print(proc.output()[-6000:])
        raise
    finally:
        proc.stop()

    # -- the store: each step once, each page once -------------------------------------------------
    [a, b] = [r["id"] for r in db.incidents()]
    steps = db.steps()
    assert Counter((s["incident_id"], s["tier"], s["state"]) for s in steps) == Counter(
        (i, t, "fired") for i in (a, b) for t in range(len(STEPS))
    )
    outbox = db.outbox()
    assert Counter((r["incident_id"], r["tier"], r["person"], r["state"]) for r in outbox) == (
        Counter((i, t, PERSON[t], "sent") for i in (a, b) for t in range(len(STEPS)))
    )
    timeline = db.timeline()
    assert Counter(
        (e["incident_id"], e["data"]["tier"], e["data"]["person"])
        for e in timeline
        if e["kind"] == "notify"
    ) == Counter((i, t, PERSON[t]) for i in (a, b) for t in range(len(STEPS)))
    # A's tier 1 came due during the outage: it fired late, and says so.
    late = [e for e in timeline if e["kind"] == "late"]
    assert [
        e["incident_id"]
        for e in late
        if e["message"].startswith("page step (tier 1, round 0) fired late")
    ] == [a]
    a1 = next(s for s in steps if s["incident_id"] == a and s["tier"] == 1)
    assert a1["fired_at"] - a1["due_at"] > timedelta(seconds=2)
    # B opened only when its retried POST was accepted, after the outage: everything on time.
    assert all(e["incident_id"] == a for e in late)

    # -- the log: the outage is loud, and nothing else is ------------------------------------------
    errors = Counter(proc.errors())
    assert set(errors) <= OUTAGE_ERRORS, errors
    assert errors["tocsin.http: store unavailable; asking Alertmanager to retry"] == 2
    assert errors["tocsin.engine: engine tick failed; retrying"] >= 1


def _scenario(proc: ServeProc, outage: Outage) -> None:
    db = outage.db
    opened = datetime.now(UTC)
    status, reply = post(proc.url, am_body("OutageA", opened))
    assert status == 200, reply
    [a] = [r["id"] for r in db.incidents()]
    wait_for(
        lambda: [(r["tier"], r["state"]) for r in db.outbox()] == [(0, "sent")],
        timeout=10,
        what="A's tier 0 delivered",
    )
    due = {s["tier"]: s["due_at"] for s in db.steps()}

    outage.cut(proc)
    body_b = am_body("OutageB", datetime.now(UTC))
    status, reply = post(proc.url, body_b)
    assert (status, reply["error"]) == (503, "store unavailable"), reply
    assert reply["detail"] == "the notification was not stored; retry"
    wait_for(lambda: proc.get("/readyz")[0] == 503, timeout=10, what="/readyz 503")
    ready = json.loads(proc.get("/readyz")[1])
    assert ready["status"] == "unavailable"
    assert [p.split(":")[0] for p in ready["problems"]] == ["store"], ready
    # The engine meets the outage when A's tier 1 comes due, and keeps trying.
    wait_for(
        lambda: (metric_value(proc.metrics(), "tocsin_engine_errors_total") or 0) >= 2,
        timeout=_seconds_until(due[1]) + 10,
        what="the engine failing and retrying",
    )
    time.sleep(max(0.0, _seconds_until(due[1] + timedelta(seconds=2))))
    assert proc.alive()
    assert proc.get("/healthz")[0] == 200
    assert proc.get("/readyz")[0] == 503
    status, reply = post(proc.url, body_b)  # Alertmanager's retry, still during the outage
    assert status == 503, reply
    assert [(s["tier"], s["state"]) for s in db.steps() if s["incident_id"] == a] == [
        (0, "fired"),
        (1, "pending"),
        (2, "pending"),
    ]

    outage.restore(proc)
    wait_for(lambda: proc.get("/readyz")[0] == 200, timeout=15, what="/readyz 200 again")
    status, reply = post(proc.url, body_b)
    assert status == 200, reply
    assert len(db.incidents()) == 2
    wait_for(
        lambda: (
            len(db.outbox()) == 2 * len(STEPS) and all(r["state"] == "sent" for r in db.outbox())
        ),
        timeout=_seconds_until(datetime.now(UTC) + timedelta(seconds=6)) + 10,
        what="every step of A and B fired and delivered",
    )
    # Healthy again: two more poll cycles without a failed tick.
    recovered = metric_value(proc.metrics(), "tocsin_engine_errors_total")
    assert recovered is not None and recovered >= 2
    time.sleep(2.5)
    metrics = proc.metrics()
    assert metric_value(metrics, "tocsin_engine_errors_total") == recovered
    codes = {
        code: metric_value(metrics, "tocsin_http_requests_total", {"route": RECEIVER, "code": code})
        for code in ("200", "503")
    }
    assert codes == {"200": 2.0, "503": 2.0}


class UntranslatedFailure:
    """A real store that, while ``broken``, raises from ``next_due`` what a driver bug would:
    not a ``StoreError`` (the backend failed to translate it) but anything else."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.broken = False
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def next_due(self) -> datetime | None:
        if self.broken:
            self.raised += 1
            raise RuntimeError("driver bug: unexpected reply from the database")
        result: datetime | None = await self.inner.next_due()
        return result


async def test_an_unexpected_store_exception_does_not_stop_the_engine(
    tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tocsin.db"
    config = serve_config(tmp_path, sqlite_store(path), steps=STEPS, people=["p0", "p1", "p2"])
    loaded = load_config(config, env={})
    store = UntranslatedFailure(make_store(loaded.config.store))
    rt = Runtime(loaded, store=store)
    await rt.start()
    try:
        client = await aiohttp_client(create_app(rt))
        store.broken = True
        r = await client.post(
            RECEIVER,
            data=json.dumps(am_body("Odd", datetime.now(UTC))),
            headers={
                "Authorization": f"Bearer {RECEIVER_TOKEN}",
                "Content-Type": "application/json",
            },
        )
        assert r.status == 200, await r.text()
        db = Db(sqlite_path=path)

        def delivered() -> int:
            return sum(1 for row in db.outbox() if row["state"] == "sent")

        # Every tick ends in the exception, yet the loop goes on: tiers 1 and 2 still fire.
        await eventually(lambda: delivered() == 3, within=15, what="all tiers delivered")
        assert store.raised >= 3
        r = await client.get("/readyz")
        assert r.status == 200, await r.text()
        store.broken = False
        raised = store.raised
        await asyncio.sleep(1.5)
        assert store.raised == raised
        r = await client.get("/metrics")
        errors = metric_value(await r.text(), "tocsin_engine_errors_total")
        assert errors is not None and errors >= 3
    finally:
        await rt.stop()
    unexpected = [
        rec
        for rec in caplog.records
        if rec.levelno >= logging.ERROR and rec.name == "tocsin.engine"
    ]
    assert unexpected and {rec.getMessage() for rec in unexpected} == {
        "engine tick failed unexpectedly; retrying"
    }
    assert all(rec.exc_info is not None for rec in unexpected)  # the traceback is in the log
