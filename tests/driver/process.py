"""``tocsin serve`` as a real child process, for tests that need one (restarts, kills, HA).

``ServeProc`` starts ``python -m router.cli serve`` on a free port and reads its output
(stdout and stderr) through a pipe, into memory and a log file; a pipe keeps working when the
child's file writes are made to fail. ``procs`` (a fixture) stops every process a test
started and prints their output when the test failed. ``serve_config`` writes a config for
them: every alert is P1 on one policy of the test's steps, people on the ``log`` channel.
Every wait here is bounded and polls.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.driver.config import RECEIVER_TOKEN, WRITE_TOKEN, write_config

__all__ = [
    "REPO",
    "ServeProc",
    "free_port",
    "http_status",
    "post",
    "post_alert",
    "procs",
    "serve_config",
    "start_serve",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[2]


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


def http_status(url: str, timeout: float = 2) -> int:
    """The status of a GET; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def post(
    url: str, body: Mapping[str, Any], *, token: str = RECEIVER_TOKEN, timeout: float = 10
) -> tuple[int, Any]:
    """POST a webhook body to ``url``'s receiver: (status, decoded JSON); (0, None) when
    nothing answers."""
    req = urllib.request.Request(
        f"{url}/api/v1/alertmanager",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        with contextlib.suppress(ValueError):
            return int(e.code), json.loads(raw)
        return int(e.code), raw.decode(errors="replace")
    except (OSError, http.client.HTTPException):
        # Refused, reset, or cut short (the process was killed mid-answer): no answer.
        return 0, None


def post_alert(url: str, body: Mapping[str, Any]) -> int:
    """POST a webhook body; the HTTP status (0 when nothing answers)."""
    return post(url, body)[0]


class ServeProc:
    """A ``tocsin serve`` child; its output (stdout and stderr) is read through a pipe."""

    def __init__(
        self,
        name: str,
        config: Path,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        """Start it; ``env`` adds to this process's environment; ``port`` defaults to a free one."""
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._fh = open(log, "a", encoding="utf-8")  # closed by the reader thread
        args = [sys.executable, "-m", "router.cli", "serve", "--config", str(config)]
        # The child sees only the settings its test gives it, not the test run's own.
        base = {
            k: v
            for k, v in os.environ.items()
            if k != "PYTHONWARNINGS" and not k.startswith("TOCSIN_")
        }
        self.p = subprocess.Popen(
            [*args, "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            # Unbuffered, so every line is readable as soon as it is written (and survives a kill).
            env={**base, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._pump, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        try:
            for raw in self.p.stdout:
                line = raw.decode("utf-8", errors="replace")
                with self._lock:
                    self._lines.append(line.rstrip("\n"))
                self._fh.write(f"[{self.name}] {line}")
                self._fh.flush()
        finally:
            self._fh.close()

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs; leases and open transactions are left behind."""
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=10)
        self._reader.join(10)

    def stop(self) -> int:
        """SIGTERM (SIGKILL after 10 s), wait for the output to be read; the exit status."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self._reader.join(10)
        return self.p.returncode

    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def json_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (a line cut short by SIGKILL is skipped)."""
        with self._lock:
            lines = list(self._lines)
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def errors(self) -> list[str]:
        """``logger: msg`` of every line logged at error level or above."""
        return [
            f"{r.get('logger')}: {r.get('msg')}"
            for r in self.json_lines()
            if r.get("level") in ("error", "critical")
        ]

    def wait_ready(self, timeout: float = 30) -> ServeProc:
        """Poll ``/readyz`` until 200; fail (with the output) if the process exits."""
        wait_for(
            lambda: not self.alive() or http_status(f"{self.url}/readyz") == 200,
            timeout=timeout,
            what=f"{self.name} /readyz",
            every=0.05,
        )
        assert self.alive(), f"{self.name} exited:\n{self.output()[-4000:]}"
        return self

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """(status, body) of a GET; status 0 when unreachable."""
        req = urllib.request.Request(f"{self.url}{path}", headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def api(self, path: str, token: str = WRITE_TOKEN) -> Any:
        """``GET path`` with an API token (must answer 200); the decoded JSON."""
        status, text = self.get(path, {"Authorization": f"Bearer {token}"})
        assert status == 200, (status, text)
        return json.loads(text)

    def metrics(self) -> str:
        status, text = self.get("/metrics")
        assert status == 200, (status, text)
        return text


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[list[ServeProc]]:
    """Processes a test started; stopped afterwards, their output printed if it failed."""
    started: list[ServeProc] = []
    yield started
    for p in reversed(started):
        p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for p in started:
            print(f"----- {p.name} -----\n{p.output()[-6000:]}")


def start_serve(
    procs: list[ServeProc],
    name: str,
    config: Path,
    tmp: Path,
    *,
    wait: bool = True,
    env: Mapping[str, str] | None = None,
) -> ServeProc:
    """Start ``tocsin serve`` on a free port (output in ``tmp/<name>.log``); wait for /readyz
    unless ``wait`` is False."""
    p = ServeProc(name, config, tmp / f"{name}.log", env=env)
    procs.append(p)
    if wait:
        p.wait_ready()
    return p


def serve_config(
    tmp: Path,
    store: Mapping[str, Any],
    *,
    steps: Sequence[Mapping[str, Any]],
    people: Sequence[str],
    pagerduty: Mapping[str, Any] | None = None,
    dispatch: Mapping[str, Any] | None = None,
    lease: str = "2s",
    poll: str = "1s",
) -> Path:
    """``tocsin.yaml`` for ``tocsin serve``: every alert is P1 on policy ``faults`` (``steps``).

    People are on the ``log`` channel; reminders are off so only the steps page. Rate limits
    are lifted (the storms here are meant to go through) and retries come quickly; ``dispatch``
    adds to or overrides that section. Logs are JSON, so ``ServeProc.errors`` can read them.
    """
    adapters: dict[str, Any] = {
        "log": {"enabled": True},
        "dispatch": {
            "channel_rate": {},
            "person_rate": {"count": 10_000, "per": "1m"},
            "backoff_initial": "1s",
            "backoff_max": "2s",
            **(dispatch or {}),
        },
    }
    if pagerduty is not None:
        adapters["pagerduty"] = dict(pagerduty)
    return write_config(
        tmp,
        {
            "server": {
                "log_format": "json",
                "log_level": "info",
                "public_url": "http://tocsin.test",
            },
            "store": dict(store),
            "engine": {"lease": lease, "poll": poll},
            "matrix": None,
            "rules": {"default": {"severity": "P1", "policy": "faults"}},
            "people": {p: {"name": p, "channels": ["log"]} for p in people},
            "policies": {"faults": {"reminders": False, "steps": [dict(s) for s in steps]}},
            "adapters": adapters,
        },
        rules=None,
    )
