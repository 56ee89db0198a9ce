"""Real Prometheus and Alertmanager (Debian packages) firing into a real ``tocsin serve``.

Everything listens on 127.0.0.1 with free ports; every wait is bounded and polls. The tests skip,
naming the missing binary, where the packages are not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.driver.config import pagerduty_adapter, write_config
from tests.driver.process import ServeProc, free_port, wait_for
from tests.driver.threaded import ThreadedPagerDuty

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


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
def procs(request: pytest.FixtureRequest) -> Iterator[list[Proc | ServeProc]]:
    """Processes a test started (the binaries and tocsin); stopped, output shown on failure."""
    started: list[Proc | ServeProc] = []
    yield started
    failed = getattr(request.node, "rep_call", None)
    for p in reversed(started):
        p.stop()
    if failed is not None and failed.failed:
        for p in started:
            print(f"----- {p.name} -----\n{p.output()}")


def need_binaries() -> None:
    if PROMETHEUS is None:
        pytest.skip("the `prometheus` binary is not installed (Debian package prometheus)")
    if ALERTMANAGER is None:
        pytest.skip(
            "the `prometheus-alertmanager` binary is not installed (Debian package prometheus-alertmanager)"
        )


def start_tocsin(
    tmp: Path, config: Path, port: int, procs: list[Proc | ServeProc], token: str
) -> ServeProc:
    """``tocsin serve`` on ``port`` with its tokens in the environment, as a deployment has."""
    env = {"TOCSIN_RECEIVER_TOKEN": token, "TOCSIN_API_TOKEN": "api-token"}
    p = ServeProc("tocsin", config, tmp / "tocsin.log", env=env, port=port)
    procs.append(p)
    return p.wait_ready()


def start_prometheus(
    tmp: Path,
    exporter: Exporter,
    am_ports: list[int],
    procs: list[Proc | ServeProc],
    *,
    extra_rules: str = "",
) -> int:
    """Prometheus with the ``ApiErrors`` rule (and ``extra_rules``: more items of its list)."""
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
        + extra_rules
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
    procs: list[Proc | ServeProc],
    *,
    cluster_port: int | None = None,
    peers: list[int] = (),  # type: ignore[assignment]
    port: int | None = None,
) -> int:
    port = port or free_port()
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
            return bool(200 <= r.status < 300)
    return False


@pytest.fixture
def fake_pd(tmp_path: Path) -> Iterator[ThreadedPagerDuty]:
    f = ThreadedPagerDuty(tmp_path)
    yield f
    f.close()


ROUTING_KEY = "e2eroutingkey0000000000000000001"  # 32 characters, as PagerDuty requires


E2E_RULES = """\
rules:
  - name: trust-severity
    match: '{severity=~".+"}'
    severity_from: [severity]
    title: "{{ labels.alertname }} on {{ labels.service }}"
"""


def tocsin_config(tmp: Path, port: int, events_url: str) -> Path:
    """Tokens from the environment; the on-call is the PagerDuty service ``api``."""
    url = f"127.0.0.1:{port}"
    return write_config(
        tmp,
        {
            "server": {"listen": url, "public_url": f"http://{url}", "log_level": "info"},
            "auth": {
                "receiver": {"bearer_tokens": ["${TOCSIN_RECEIVER_TOKEN}"]},
                "api_tokens": [{"name": "e2e", "token": "${TOCSIN_API_TOKEN}", "scope": "write"}],
            },
            "rules": {"files": ["rules/*.yaml"]},
            "people": {"alice": {"channels": ["log"]}},
            "roles": {
                "oncall": ["pagerduty:api"],
                "lead": ["person:alice"],
                "manager": ["person:alice"],
                "vp": ["person:alice"],
            },
            "adapters": {"pagerduty": pagerduty_adapter(events_url, {"api": ROUTING_KEY})},
        },
        rules=E2E_RULES,
        rule_file="e2e.yaml",
    )


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
