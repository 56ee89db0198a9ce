"""Shared fixtures for the HTTP receiver's tests: a config on disk, a started Runtime, a client.

The config is written into ``tmp_path`` (SQLite store, two rotated bearer tokens, one basic-auth
pair, a read and a write API token, one rule file, the default matrix preset), loaded with
``load_config`` and served in-process through pytest-aiohttp's ``aiohttp_client``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from config.load import load_config
from escalation.engine.clock import VirtualClock
from escalation.store.base import IncidentFilter
from router.app import create_app
from router.runtime import Runtime

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLE_NAMES = (
    "alertmanager-0.25-firing.json",
    "alertmanager-0.25-resolved.json",
    "alertmanager-0.25-firing-two-alerts.json",
)

RECEIVER = "/api/v1/alertmanager"
MAX_BODY = 8192

BEARER_A = {"Authorization": "Bearer tok-a"}
BEARER_B = {"Authorization": "Bearer tok-b"}
WRITE_TOKEN = {"Authorization": "Bearer api-write"}
READ_TOKEN = {"Authorization": "Bearer api-read"}
JSON = {"Content-Type": "application/json"}
# What Alertmanager 0.25 sends with every webhook (tests/fixtures/README: captured headers).
AM_HEADERS = {**BEARER_A, **JSON, "User-Agent": "Alertmanager/0.25.0"}

# The instant the virtual clock starts at: shortly after the samples' startsAt.
START = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)

RULES_YAML = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity, priority]
    continue: true
  - name: many-instances-down
    match: 'alertname="InstanceDown"'
    when:
      firing_at_least: 2
    severity: P1
    continue: true
  - name: production-errors
    match: ['env="production"', 'alertname=~"HighErrorRate|InstanceDown"']
    incident_key: "{{ labels.alertname }}/{{ labels.service }}"
    title: "{{ labels.alertname }} on {{ labels.service }}: {{ annotations.summary }}"
"""


def basic(user: str, password: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header as Alertmanager's ``http_config.basic_auth`` sends it."""
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def config_yaml(
    tmp_path: Path,
    *,
    receiver_auth: str | None = None,
    default_severity: str = "P3",
    extra: str = "",
) -> str:
    """The test config's text; ``receiver_auth`` replaces the ``auth.receiver`` block's body."""
    if receiver_auth is None:
        receiver_auth = """\
    bearer_tokens: ["tok-a", "tok-b"]
    basic_auth:
      - {username: am, password: pw}"""
    return f"""\
server:
  listen: "127.0.0.1:9095"
  max_body_bytes: {MAX_BODY}
  log_format: text
auth:
  receiver:
{receiver_auth}
  api_tokens:
    - {{name: writer, token: api-write, scope: write}}
    - {{name: reader, token: api-read, scope: read}}
store:
  backend: sqlite
  path: {json.dumps(str(tmp_path / "t.db"))}
matrix:
  preset: default
rules:
  files: ["rules/*.yaml"]
  default:
    severity: {default_severity}
calendars:
  business-hours:
    timezone: Europe/London
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:30"
{extra}"""


def write_config(tmp_path: Path, **kwargs: Any) -> Path:
    """Write ``tocsin.yaml`` and ``rules/main.yaml`` into ``tmp_path``; return the config path."""
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "main.yaml").write_text(RULES_YAML)
    path = tmp_path / "tocsin.yaml"
    path.write_text(config_yaml(tmp_path, **kwargs))
    return path


def sample_bytes(name: str) -> bytes:
    """A captured Alertmanager body, byte for byte."""
    return (FIXTURES / name).read_bytes()


def sample(name: str) -> dict[str, Any]:
    """A captured Alertmanager body, decoded (for building variants)."""
    return json.loads(sample_bytes(name))


@dataclass
class Harness:
    """A started Runtime, its config file and an HTTP client talking to its app."""

    rt: Runtime
    client: TestClient
    config_path: Path
    clock: VirtualClock


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """The standard test config on disk."""
    return write_config(tmp_path)


@pytest.fixture
async def make_harness(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[MakeHarness]:
    """Factory: load a config, start a Runtime (no engine), serve it; stopped at teardown."""
    started: list[Runtime] = []

    async def make(path: Path | None = None) -> Harness:
        path = path or write_config(tmp_path)
        clock = VirtualClock(START)
        rt = Runtime(load_config(path, env={}), clock=clock)
        await rt.start(run_engine=False)
        started.append(rt)
        client = await aiohttp_client(create_app(rt))
        return Harness(rt, client, path, clock)

    yield make
    for rt in started:
        await rt.stop()


@pytest.fixture
async def harness(make_harness: MakeHarness, config_path: Path) -> Harness:
    """The standard harness."""
    return await make_harness(config_path)


@pytest.fixture
def client(harness: Harness) -> TestClient:
    """The standard harness's client."""
    return harness.client


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of sample ``name`` with exactly ``labels`` in exposition ``text``, or None."""
    want = labels or {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == want:
                return float(s.value)
    return None


async def scrape(client: TestClient) -> str:
    """GET /metrics and return the exposition text."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def incident_count(rt: Runtime) -> int:
    """How many incidents the store holds."""
    return len(await rt.store.list_incidents(IncidentFilter()))
