"""Drive the whole tocsin app in-process on a virtual clock, for behaviour tests.

A config is written into ``tmp_path`` (SQLite store there, five people on the ``log`` channel,
an on-call schedule, roles, a write and a read API token), loaded with ``load_config`` and run
by a ``Runtime`` whose engine loop is NOT started: tests move time with :meth:`App.run_until`,
which fires every due step in due order exactly as the engine loop would. The app is served
through pytest-aiohttp's ``aiohttp_client``; everything is observed through the HTTP API.

``strict_logs`` (import it into a test module) fails any test that logs at ERROR or above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.load import load_config
from escalation.engine.clock import VirtualClock
from router.app import create_app
from router.runtime import Runtime

__all__ = [
    "AM",
    "READ",
    "T0",
    "WRITE",
    "App",
    "MakeApp",
    "alert",
    "make_app",
    "notification",
    "strict_logs",
    "write_config",
]

# Tuesday 2026-01-06 10:00 UTC: inside London business hours, alice on call (weekly rotation
# alice, bob from Monday 2026-01-05 09:00 London).
T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)

AM = {"Authorization": "Bearer am-token", "Content-Type": "application/json"}
WRITE = {"Authorization": "Bearer api-write"}
READ = {"Authorization": "Bearer api-read"}

RULES = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity]
    continue: true
"""


def write_config(
    tmp_path: Path,
    *,
    rules: str = "",
    policies: str = "",
    matrix: str = "",
    people: str = "",
    extra: str = "",
) -> Path:
    """Write ``tocsin.yaml`` and ``rules/main.yaml`` into ``tmp_path``; return the config path.

    ``rules`` are appended to the rule file (YAML list items, indented two spaces); ``policies``
    is a ``policies:`` section body; ``matrix`` goes under ``matrix:`` after the preset;
    ``people`` replaces the default people section body; ``extra`` is appended verbatim.
    """
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "main.yaml").write_text(RULES + rules)
    if not people:
        people = "\n".join(
            f"  {p}: {{name: {p.title()}, channels: [log]}}"
            for p in ("alice", "bob", "carol", "dave", "erin")
        )
    text = f"""\
server:
  listen: "127.0.0.1:9095"
  public_url: "http://tocsin.test"
  log_format: text
auth:
  receiver:
    bearer_tokens: ["am-token"]
  api_tokens:
    - {{name: writer, token: api-write, scope: write}}
    - {{name: reader, token: api-read, scope: read}}
store:
  backend: sqlite
  path: {json.dumps(str(tmp_path / "tocsin.db"))}
matrix:
  preset: default
{matrix}
rules:
  files: ["rules/*.yaml"]
  default:
    severity: P3
calendars:
  business-hours:
    timezone: Europe/London
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:30"
people:
{people}
schedules:
  primary:
    timezone: Europe/London
    members: [alice, bob]
    start: "2026-01-05T09:00:00"
    shift: 1w
roles:
  oncall: ["schedule:primary"]
  lead: ["person:carol"]
  manager: ["person:dave"]
  vp: ["person:erin"]
"""
    if policies:
        text += f"policies:\n{policies}"
    text += extra
    path = tmp_path / "tocsin.yaml"
    path.write_text(text)
    return path


def _ts(t: datetime | None) -> str:
    if t is None:
        return "0001-01-01T00:00:00Z"
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert(
    name: str = "DiskFull",
    *,
    severity: str = "critical",
    instance: str = "db-1",
    starts: datetime = T0,
    status: str = "firing",
    ends: datetime | None = None,
    labels: dict[str, str] | None = None,
    with_fingerprint: bool = True,
) -> dict[str, Any]:
    """One alert as Alertmanager renders it (``fingerprint`` computed as Alertmanager does)."""
    from rules.alerts import fingerprint

    lbls = {"alertname": name, "instance": instance, "severity": severity, **(labels or {})}
    out: dict[str, Any] = {
        "status": status,
        "labels": lbls,
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": _ts(starts),
        "endsAt": _ts(ends if status == "resolved" else None),
        "generatorURL": f"http://prometheus:9090/graph?g0.expr={name}",
    }
    if with_fingerprint:
        out["fingerprint"] = fingerprint(lbls)
    return out


def notification(
    alerts: list[dict[str, Any]],
    *,
    receiver: str = "web\\.hook",
    group_key: str = '{}:{alertname="DiskFull"}',
    external_url: str = "http://alertmanager-0:9093",
) -> dict[str, Any]:
    """A webhook body (version 4) around ``alerts``; top-level status as Alertmanager sets it."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {
        "version": "4",
        "receiver": receiver,
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]} if alerts else {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": external_url,
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }


@dataclass
class App:
    """A started Runtime on a virtual clock, served through an aiohttp test client."""

    rt: Runtime
    client: TestClient
    clock: VirtualClock
    path: Path
    posted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def now(self) -> datetime:
        return self.clock.now()

    async def post(self, body: dict[str, Any] | bytes, *, status: int = 200) -> dict[str, Any]:
        """POST a webhook body to the receiver; assert the HTTP status; return the JSON reply."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = await self.client.post("/api/v1/alertmanager", data=data, headers=AM)
        reply = await r.json()
        assert r.status == status, reply
        return reply

    async def run_until(self, t: datetime) -> None:
        """Move the clock to ``t``, firing every step and delivering every row due on the way."""
        for _ in range(10_000):
            nxt = await self.rt.store.next_due()
            if nxt is None or nxt > t:
                break
            self.clock.set(max(nxt, self.clock.now()))
            await self.rt.engine.tick()
        else:  # pragma: no cover - a store that never drains is a bug worth a loud failure
            raise AssertionError("the engine never drained its due work")
        self.clock.set(t)
        await self.rt.engine.tick()

    async def advance(self, delta: timedelta) -> None:
        """``run_until(now + delta)``."""
        await self.run_until(self.clock.now() + delta)

    async def api(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any]:
        """One API call (write token by default); (status, decoded JSON body)."""
        r = await self.client.request(method, path, headers=headers or WRITE, **kw)
        return r.status, await r.json()

    async def incident(self, ref: str) -> dict[str, Any]:
        """``GET /api/v1/incidents/{ref}`` (must answer 200)."""
        status, body = await self.api("GET", f"/api/v1/incidents/{ref}", headers=READ)
        assert status == 200, body
        return body

    async def incidents(self, query: str = "") -> list[dict[str, Any]]:
        """``GET /api/v1/incidents?{query}`` (must answer 200), newest first."""
        status, body = await self.api("GET", f"/api/v1/incidents?{query}", headers=READ)
        assert status == 200, body
        return body["incidents"]

    async def act(self, ref: str, action: str, *, status: int = 200, **body: Any) -> dict[str, Any]:
        """``POST /api/v1/incidents/{ref}/{action}`` with the write token; assert the status."""
        code, reply = await self.api("POST", f"/api/v1/incidents/{ref}/{action}", json=body)
        assert code == status, reply
        return reply

    async def state(self) -> dict[str, Any]:
        """Everything observable about every incident, for "nothing changed" comparisons."""
        out: dict[str, Any] = {}
        for summary in await self.incidents("limit=1000"):
            full = await self.incident(summary["id"])
            out[summary["id"]] = full
        return out

    def pages(self, inc: dict[str, Any], kind: str = "page") -> list[tuple[float, int, str, str]]:
        """(seconds after T0, tier, person, state) of the incident's outbox rows of ``kind``."""
        return [
            (
                (datetime.fromisoformat(n["created_at"]) - T0).total_seconds(),
                n["tier"],
                n["person"],
                n["state"],
            )
            for n in inc["notifications"]
            if n["kind"] == kind
        ]


MakeApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[MakeApp]:
    """Factory: ``await make_app(**write_config kwargs)`` → a started App; stopped at teardown."""
    started: list[Runtime] = []

    async def make(*, start: datetime = T0, **kwargs: Any) -> App:
        path = write_config(tmp_path, **kwargs)
        clock = VirtualClock(start)
        rt = Runtime(load_config(path, env={}), clock=clock)
        await rt.start(run_engine=False)
        started.append(rt)
        client = await aiohttp_client(create_app(rt))
        return App(rt, client, clock, path)

    yield make
    for rt in started:
        await rt.stop()


@pytest.fixture(autouse=True)
def strict_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if anything logged at ERROR or above."""
    caplog.set_level(logging.INFO)
    yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR
    ]
    errors += [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.get_records("teardown")
        if r.levelno >= logging.ERROR
    ]
    assert not errors, f"error-level log lines: {errors}"
