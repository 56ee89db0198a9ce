"""Real ``tocsin serve`` processes, killed and restarted, against SQLite and PostgreSQL.

Helpers: a config writer (a ladder policy whose tiers fire seconds apart, the ``log`` channel),
Alertmanager payloads, a process wrapper whose output is shown when a test fails, and ``Db``, a
backend-agnostic reader of what the store holds (steps, outbox, timeline, migrations), so the
tests check the store itself rather than what a process says about it.

PostgreSQL tests need ``TOCSIN_TEST_POSTGRES_DSN`` (e.g.
``postgresql://postgres@127.0.0.1:5432/test``) and skip, naming it, when it is unset; each test
gets its own schema, dropped afterwards. Every wait is bounded and polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

DSN_ENV = "TOCSIN_TEST_POSTGRES_DSN"
RECEIVER_TOKEN = "rel-receiver-token"
REPO = Path(__file__).resolve().parents[2]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- PostgreSQL ---------------------------------------------------------------------------------


def pg_dsn() -> str:
    """The test DSN, or skip naming the variable."""
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        pytest.skip(f"set {DSN_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) to run")
    return dsn


async def _pg_fetch(dsn: str, schema: str | None, sql: str, *args: Any) -> list[asyncpg.Record]:
    settings = {"search_path": f'"{schema}"'} if schema else {}
    conn = await asyncpg.connect(dsn, timeout=10, server_settings=settings)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def pg_fetch(dsn: str, schema: str | None, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one query on a fresh connection (tests are synchronous; subprocesses do the work)."""
    return [dict(r) for r in asyncio.run(_pg_fetch(dsn, schema, sql, *args))]


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """(dsn, a fresh schema name); dropped after the test (its processes are stopped first)."""
    dsn = pg_dsn()
    name = f"tocsin_rel_{uuid.uuid4().hex[:12]}"
    yield dsn, name
    pg_fetch(dsn, None, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# -- reading the store --------------------------------------------------------------------------


@dataclass(frozen=True)
class Db:
    """Read-only view of one store: ``sqlite_path`` or (``dsn``, ``schema``)."""

    sqlite_path: Path | None = None
    dsn: str | None = None
    schema: str | None = None

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        if self.sqlite_path is not None:
            conn = sqlite3.connect(self.sqlite_path, timeout=10)
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute(sql)]
            finally:
                conn.close()
        assert self.dsn is not None
        return pg_fetch(self.dsn, self.schema, sql)

    def _time(self, v: Any) -> datetime | None:
        if v is None or isinstance(v, datetime):
            return v
        return _EPOCH + timedelta(microseconds=int(v))  # SQLite: µs since the epoch

    def _json(self, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    def steps(self) -> list[dict[str, Any]]:
        """Every step: id, incident_id, kind, tier, round, due_at, state, fired_at, note."""
        rows = self._rows(
            "SELECT id, incident_id, kind, tier, round, due_at, state, fired_at, note FROM steps"
            " ORDER BY due_at, id"
        )
        for r in rows:
            r["due_at"], r["fired_at"] = self._time(r["due_at"]), self._time(r["fired_at"])
        return rows

    def outbox(self) -> list[dict[str, Any]]:
        """Every outbox row: id, incident_id, step_id, kind, tier, round, person, channel, ..."""
        rows = self._rows(
            "SELECT id, incident_id, step_id, kind, tier, round, person, channel, state, attempts,"
            " created_at, sent_at FROM outbox ORDER BY created_at, id"
        )
        for r in rows:
            r["created_at"], r["sent_at"] = self._time(r["created_at"]), self._time(r["sent_at"])
        return rows

    def timeline(self) -> list[dict[str, Any]]:
        """Every timeline event: incident_id, at, kind, message, data (decoded)."""
        data = "data" if self.sqlite_path is not None else "data::text AS data"
        rows = self._rows(
            f"SELECT incident_id, at, kind, message, {data} FROM timeline ORDER BY at, id"
        )
        for r in rows:
            r["at"], r["data"] = self._time(r["at"]), self._json(r["data"])
        return rows

    def incidents(self) -> list[dict[str, Any]]:
        """id, number, key of every incident."""
        return self._rows("SELECT id, number, key FROM incidents ORDER BY number")

    def migrations(self) -> list[int]:
        """Versions in schema_migrations, one per row (duplicates would show)."""
        return [r["version"] for r in self._rows("SELECT version FROM schema_migrations")]


# -- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    every: float = 0.1,
    describe: Callable[[], object] | None = None,
) -> Any:
    """Poll ``predicate`` until truthy; fail naming ``what`` after ``timeout`` seconds.

    ``describe`` says what was still missing, for the failure message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    detail = describe() if describe is not None else last
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last: {detail!r})")


def unfinished(db: Db) -> list[tuple[str, str, str]]:
    """Steps not fired and outbox rows not sent: (table, id, state)."""
    return [("steps", s["id"], s["state"]) for s in db.steps() if s["state"] != "fired"] + [
        ("outbox", r["id"], r["state"]) for r in db.outbox() if r["state"] != "sent"
    ]


class Proc:
    """A ``tocsin serve`` child with its output in a file (shown when a test fails)."""

    def __init__(self, name: str, config: Path, port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self._fh = open(log, "ab")
        args = [sys.executable, "-m", "router.cli", "serve", "--config", str(config)]
        self.p = subprocess.Popen(
            [*args, "--listen", f"127.0.0.1:{port}"],
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},
        )

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases and open transactions are left behind."""
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=10)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self._fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """The process's JSON log lines (a line cut short by SIGKILL is skipped)."""
        out = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(
            lambda: http_status(f"{self.url}/readyz") == 200 or not self.alive(),
            timeout=timeout,
            what=f"{self.name} /readyz",
        )
        assert self.alive(), f"{self.name} exited:\n{self.output()[-4000:]}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
            return r.read().decode()


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[list[Proc]]:
    """Processes a test started; stopped afterwards, their output printed if it failed."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for p in started:
            print(f"----- {p.name} -----\n{p.output()[-6000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


def start_serve(
    procs: list[Proc], name: str, config: Path, tmp: Path, *, wait: bool = True
) -> Proc:
    """Start ``tocsin serve`` on a free port; wait for /readyz unless ``wait`` is False."""
    p = Proc(name, config, free_port(), tmp / f"{name}.log")
    procs.append(p)
    if wait:
        p.wait_ready()
    return p


# -- HTTP ---------------------------------------------------------------------------------------


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def post_alert(url: str, body: dict[str, Any]) -> int:
    """POST an Alertmanager webhook body; the HTTP status (0 when unreachable)."""
    req = urllib.request.Request(
        f"{url}/api/v1/alertmanager",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {RECEIVER_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def alert_body(name: str, *, receiver: str = "reliability") -> dict[str, Any]:
    """A firing Alertmanager v4 body with one alert; ``name`` makes its own incident."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    labels = {"alertname": name, "service": "api", "env": "production"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"{name} is failing"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{name} is failing"},
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:16],
            }
        ],
    }


# -- config -------------------------------------------------------------------------------------


def write_config(
    tmp: Path,
    store: str,
    *,
    tiers: Sequence[tuple[str, Sequence[str]]],
    lease: str = "2s",
    poll: str = "1s",
    pagerduty_url: str | None = None,
) -> Path:
    """``tocsin.yaml`` with a ``ladder`` policy: ``tiers`` = [(after, [people...]), ...].

    ``store`` is the YAML flow mapping of the ``store:`` section. Every alert is P1 on that
    policy; reminders are off so only the ladder pages, each person via ``log`` only, and the
    per-person rate limit is lifted. With ``pagerduty_url``, one more step (after the ladder, at
    0s) triggers the PagerDuty service ``svc`` at that (fake) Events API.
    """
    people = sorted({p for _, who in tiers for p in who})
    steps = "\n".join(
        f"      - {{after: {after}, notify: {json.dumps([f'person:{p}' for p in who])},"
        " via: [log]}"
        for after, who in tiers
    )
    pagerduty = ""
    if pagerduty_url is not None:
        steps += '\n      - {after: 0s, notify: ["pagerduty:svc"]}'
        pagerduty = (
            f'  pagerduty: {{events_url: "{pagerduty_url}",'
            ' services: {svc: "hafakeroutingkey0000000000000001"}}\n'
        )
    text = f"""\
server:
  log_format: json
  log_level: info
auth:
  receiver:
    bearer_tokens: ["{RECEIVER_TOKEN}"]
store: {store}
engine: {{lease: {lease}, poll: {poll}}}
rules:
  default: {{severity: P1, policy: ladder}}
people:
{chr(10).join(f"  {p}: {{name: {p}, channels: [log]}}" for p in people)}
policies:
  ladder:
    reminders: false
    steps:
{steps}
adapters:
  log: {{enabled: true}}
{pagerduty}  # A storm pages each person dozens of times a minute; this is not a rate-limit test.
  dispatch: {{person_rate: {{count: 10000, per: 1m}}}}
"""
    path = tmp / "tocsin.yaml"
    path.write_text(text)
    return path


def sqlite_store(tmp: Path) -> tuple[str, Db]:
    path = tmp / "tocsin.db"
    return f"{{backend: sqlite, path: {json.dumps(str(path))}}}", Db(sqlite_path=path)


def postgres_store(dsn: str, schema: str, pool_max: int = 5) -> tuple[str, Db]:
    cfg = (
        f"{{backend: postgres, dsn: {json.dumps(dsn)}, schema: {schema},"
        f" pool_min: 1, pool_max: {pool_max}}}"
    )
    return cfg, Db(dsn=dsn, schema=schema)


# -- metrics ------------------------------------------------------------------------------------


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in Prometheus text format, or None if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (
                labels is None or all(s.labels.get(k) == v for k, v in labels.items())
            ):
                return float(s.value)
    return None
