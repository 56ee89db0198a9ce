"""Shared pieces of the benchmarks: payloads, load generation, percentiles, process control."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


# The head every benchmark's config starts with ({{ }} are literal braces for str.format).
CONFIG_HEAD = """
server: {{listen: "127.0.0.1:{port}", log_level: warning}}
auth:
  receiver: {{bearer_tokens: [bench]}}
matrix: {{preset: default}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu or platform.processor()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def payload(i: int, alerts: int = 1, status: str = "firing", group: str | None = None) -> bytes:
    """An Alertmanager v4 body; ``i`` makes the group (and so the incident) distinct."""
    g = group or f"bench-{i}"
    items = [
        {
            "status": status,
            "fingerprint": f"{hash((g, j)) & 0xFFFFFFFFFFFFFFFF:016x}",  # Alertmanager sends one
            "labels": {
                "alertname": "BenchAlert",
                "group": g,
                "instance": f"host-{j}:9100",
                "severity": "critical",
            },
            "annotations": {"summary": f"bench alert {j} of {g}"},
            "startsAt": "2026-11-22T12:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0\u0026g0.tab=1",
        }
        for j in range(alerts)
    ]
    body = {
        "receiver": "tocsin",
        "status": status,
        "alerts": items,
        "groupLabels": {"group": g},
        "commonLabels": {"alertname": "BenchAlert", "group": g},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{group="{g}"}}',
        "truncatedAlerts": 0,
    }
    return (json.dumps(body) + "\n").encode()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


async def load(
    url: str,
    make_body: Callable[[int], bytes],
    *,
    seconds: float,
    concurrency: int,
    headers: dict[str, str],
    warmup: float = 1.0,
) -> tuple[float, list[float], int]:
    """Closed-loop load: ``concurrency`` clients for ``seconds``; (req/s, latencies, errors)."""
    counter = iter(range(10**9))
    lat: list[float] = []
    errors = 0
    stop_at = 0.0
    measure_from = 0.0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                async with session.post(url, data=make_body(next(counter)), headers=headers) as r:
                    await r.read()
                    ok = r.status < 300
            except aiohttp.ClientError:
                ok = False
            t1 = time.perf_counter()
            if t0 >= measure_from:
                lat.append(t1 - t0)
                if not ok:
                    errors += 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + seconds
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return len(lat) / seconds, lat, errors


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 300:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def spawn(
    args: list[str],
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def serve_tocsin(config: Path, log: Path, tree: Path | None = None) -> subprocess.Popen[bytes]:
    """``tocsin serve`` on ``config``, from this checkout or from ``tree`` (another checkout).

    ``tree`` lets one run measure an earlier commit side by side with this one (e.g. a
    ``git worktree add /tmp/before <commit>``): its code comes first on the import path.
    """
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return spawn(
        [PY, "-m", "router.cli", "serve", "--config", str(config)],
        env=env,
        log=log,
        cwd=tree or ROOT,
    )


def add_baseline_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="DIR",
        help="also measure the tocsin checkout in DIR (an earlier commit), side by side",
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


PY = sys.executable


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Served:
    """``tocsin serve`` on ``config`` in a child process, its peak RSS sampled in a thread."""

    def __init__(self, config: Path, log: Path, every: float = 0.1) -> None:
        import threading

        self.proc = serve_tocsin(config, log)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._every = every
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, rss_mb(self.proc.pid))
            except OSError:
                pass
            time.sleep(self._every)

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(30)
