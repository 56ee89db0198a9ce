"""Real Prometheus and Alertmanager (Debian packages) firing into a real ``tocsin serve``.

Everything listens on 127.0.0.1 with free ports; every wait is bounded and polls. The tests skip,
naming the missing binary, where the packages are not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], object], *, timeout: float, what: str, every: float = 0.2
) -> object:
    """Poll ``predicate`` until truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Exporter:
    """A tiny metrics endpoint whose value the test sets (Prometheus scrapes it)."""

    def __init__(self) -> None:
        self.value = 0.0
        self.port = free_port()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "# TYPE tocsin_e2e_errors gauge\n"
                    f'tocsin_e2e_errors{{service="api"}} {exporter.value}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Proc:
    """A child process with its output in a file (shown when a test fails)."""

    def __init__(
        self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log = log
        self._fh = open(log, "wb")
        self.p = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env=env)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self._fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter()
    yield e
    e.close()


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    failed = getattr(request.node, "rep_call", None)
    for p in reversed(started):
        p.stop()
    if failed is not None and failed.failed:
        for p in started:
            print(f"----- {p.name} -----\n{p.output()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


def need_binaries() -> None:
    if PROMETHEUS is None:
        pytest.skip("the `prometheus` binary is not installed (Debian package prometheus)")
    if ALERTMANAGER is None:
        pytest.skip(
            "the `prometheus-alertmanager` binary is not installed (Debian package prometheus-alertmanager)"
        )


def start_tocsin(tmp: Path, config: Path, port: int, procs: list[Proc], token: str) -> Proc:
    env = dict(os.environ, TOCSIN_RECEIVER_TOKEN=token, TOCSIN_API_TOKEN="api-token")
    p = Proc(
        "tocsin",
        [
            sys.executable,
            "-m",
            "router.cli",
            "serve",
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        tmp / "tocsin.log",
        env,
    )
    procs.append(p)
    wait_for(
        lambda: _http_ok(f"http://127.0.0.1:{port}/readyz") or not p.alive(),
        timeout=30,
        what="tocsin /readyz",
    )
    assert p.alive(), p.output()
    return p


def start_prometheus(tmp: Path, exporter: Exporter, am_ports: list[int], procs: list[Proc]) -> int:
    port = free_port()
    (tmp / "rules.yml").write_text(
        """groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: ApiErrors
        expr: tocsin_e2e_errors > 5
        labels: {severity: critical, env: production}
        annotations: {summary: "errors above 5 on {{ $labels.service }}"}
"""
    )
    targets = ", ".join(f'"127.0.0.1:{p}"' for p in am_ports)
    (tmp / "prometheus.yml").write_text(
        f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{tmp / "rules.yml"}"]
alerting:
  alertmanagers:
    - static_configs: [{{targets: [{targets}]}}]
scrape_configs:
  - job_name: e2e
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
"""
    )
    assert PROMETHEUS is not None
    p = Proc(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--rules.alert.for-grace-period=1s",
        ],
        tmp / "prometheus.log",
    )
    procs.append(p)
    wait_for(
        lambda: _http_ok(f"http://127.0.0.1:{port}/-/ready") or not p.alive(),
        timeout=30,
        what="prometheus ready",
    )
    assert p.alive(), p.output()
    return port


def start_alertmanager(
    tmp: Path,
    name: str,
    tocsin_port: int,
    token: str,
    procs: list[Proc],
    *,
    cluster_port: int | None = None,
    peers: list[int] = (),  # type: ignore[assignment]
) -> int:
    port = free_port()
    cfg = tmp / f"{name}.yml"
    cfg.write_text(
        f"""route:
  receiver: tocsin
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4s
receivers:
  - name: tocsin
    webhook_configs:
      - url: http://127.0.0.1:{tocsin_port}/api/v1/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: {token}
"""
    )
    assert ALERTMANAGER is not None
    args = [
        ALERTMANAGER,
        f"--config.file={cfg}",
        f"--storage.path={tmp / (name + '-data')}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if cluster_port is None:
        args.append("--cluster.listen-address=")
    else:
        args += [
            f"--cluster.listen-address=127.0.0.1:{cluster_port}",
            f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
            "--cluster.peer-timeout=2s",
            "--cluster.gossip-interval=100ms",
            "--cluster.pushpull-interval=2s",
            "--cluster.settle-timeout=2s",
        ]
        args += [f"--cluster.peer=127.0.0.1:{p}" for p in peers]
    p = Proc(name, args, tmp / f"{name}.log")
    procs.append(p)
    wait_for(
        lambda: _http_ok(f"http://127.0.0.1:{port}/-/ready") or not p.alive(),
        timeout=30,
        what=f"{name} ready",
    )
    assert p.alive(), p.output()
    return port


def _http_ok(url: str) -> bool:
    import urllib.request

    with contextlib.suppress(OSError):
        with urllib.request.urlopen(url, timeout=2) as r:
            return 200 <= r.status < 300
    return False


class ThreadedFakePagerDuty:
    """The fake PagerDuty on its own event loop thread, so blocking waits here never stall it."""

    def __init__(self, tmp: Path) -> None:
        import asyncio

        from tests.fakes.pagerduty import FakePagerDuty

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = asyncio.run_coroutine_threadsafe(FakePagerDuty(tmp).start(), self.loop).result(
            30
        )

    def triggers(self) -> list[dict]:
        return [
            r.json
            for r in self.fake.event_requests
            if r.status == 202 and r.json.get("event_action") == "trigger"
        ]

    def resolves(self) -> list[dict]:
        return [
            r.json
            for r in self.fake.event_requests
            if r.status == 202 and r.json.get("event_action") == "resolve"
        ]

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def fake_pd(tmp_path: Path) -> Iterator[ThreadedFakePagerDuty]:
    f = ThreadedFakePagerDuty(tmp_path)
    yield f
    f.close()


ROUTING_KEY = "e2eroutingkey0000000000000000001"  # 32 characters, as PagerDuty requires


def tocsin_config(tmp: Path, port: int, events_url: str) -> Path:
    (tmp / "rules").mkdir(exist_ok=True)
    (tmp / "rules" / "e2e.yaml").write_text(
        """rules:
  - name: trust-severity
    match: '{severity=~".+"}'
    severity_from: [severity]
    title: "{{ labels.alertname }} on {{ labels.service }}"
"""
    )
    cfg = tmp / "tocsin.yaml"
    cfg.write_text(
        f"""server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}", log_level: info}}
auth:
  receiver: {{bearer_tokens: ["${{TOCSIN_RECEIVER_TOKEN}}"]}}
  api_tokens: [{{name: e2e, token: "${{TOCSIN_API_TOKEN}}", scope: write}}]
store: {{backend: sqlite, path: "{tmp / "tocsin.db"}"}}
matrix: {{preset: default}}
rules: {{files: ["rules/*.yaml"]}}
people:
  alice: {{channels: [log]}}
roles:
  oncall: ["pagerduty:api"]
  lead: ["person:alice"]
  manager: ["person:alice"]
  vp: ["person:alice"]
adapters:
  pagerduty:
    events_url: "{events_url}"
    services: {{api: "{ROUTING_KEY}"}}
"""
    )
    return cfg


def api_get(port: int, path: str) -> object:
    import json
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Bearer api-token"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def metric(port: int, name: str, labels: dict[str, str]) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
