"""The HTTP receiver's tests: their config, and the app (the whole-app driver's) serving it.

The config (``router_config``) has a SQLite store, two rotated bearer tokens, one basic-auth
pair, a read and a write API token, one rule file and the default matrix preset; ``app`` is
the app in-process on a virtual clock, with no engine loop.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from escalation.store.base import IncidentFilter
from router.runtime import Runtime
from tests.driver.app import App, Client, MakeApp
from tests.driver.config import LONDON_BUSINESS_HOURS, base_config, sqlite_store, write_config
from tests.driver.metrics import metric_value
from tests.driver.payloads import sample, sample_bytes

__all__ = ["App", "MakeApp", "metric_value", "sample", "sample_bytes"]

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


def router_config(
    tmp_path: Path,
    *,
    receiver_auth: str | None = None,
    default_severity: str = "P3",
    extra: str = "",
) -> Path:
    """Write the receiver tests' config and rule file into ``tmp_path``; return the config path.

    ``receiver_auth`` replaces the ``auth.receiver`` block's body (YAML indented four spaces);
    ``extra`` holds further top-level sections.
    """
    if receiver_auth is None:
        receiver_auth = """\
    bearer_tokens: ["tok-a", "tok-b"]
    basic_auth:
      - {username: am, password: pw}"""
    auth = yaml.safe_load(f"receiver:\n{receiver_auth}")
    auth["api_tokens"] = base_config(tmp_path)["auth"]["api_tokens"]
    return write_config(
        tmp_path,
        {
            "server": {
                "listen": "127.0.0.1:9095",
                "max_body_bytes": MAX_BODY,
                "log_format": "text",
            },
            "auth": auth,
            "store": sqlite_store(tmp_path / "t.db"),
            "rules": {"files": ["rules/*.yaml"], "default": {"severity": default_severity}},
            **LONDON_BUSINESS_HOURS,
        },
        extra,
        rules=RULES_YAML,
    )


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """The standard test config on disk."""
    return router_config(tmp_path)


@pytest.fixture
async def app(make_app: MakeApp, config_path: Path) -> App:
    """The standard app: the standard config, served in-process (no engine loop)."""
    return await make_app(config_path, start=START)


@pytest.fixture
def client(app: App) -> Client:
    """The standard app's client."""
    return app.client


async def scrape(client: Client) -> str:
    """GET /metrics and return the exposition text."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def incident_count(rt: Runtime) -> int:
    """How many incidents the store holds."""
    return len(await rt.store.list_incidents(IncidentFilter()))
