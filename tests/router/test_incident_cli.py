"""``tocsin incidents list|show|ack|resolve``, ``tocsin review`` and ``tocsin simulate --json``.

A real ``tocsin serve`` runs as a subprocess on a free port (real clock, real engine loop); the
CLI is run as a subprocess against it with ``TOCSIN_URL`` and ``TOCSIN_API_TOKEN``, as an SRE
would. Exit codes follow DESIGN.md §10: 0 success, 1 failure, 2 usage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.driver.app import AM
from tests.driver.cli import cli_process
from tests.driver.payloads import alert, notification
from tests.driver.process import ServeProc, free_port
from tests.driver.team import team_config

DATA = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass
class Server:
    url: str
    log: Path
    env: dict[str, str]

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.url}/api/v1/alertmanager", data=json.dumps(body).encode(), headers=AM
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
            return dict(json.loads(r.read()))

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return cli_process(*args, env={**self.env, **env})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``tocsin serve`` on a free port; fails the tests if it logged anything at error level."""
    tmp = tmp_path_factory.mktemp("serve")
    path = team_config(tmp)
    path.write_text(path.read_text().replace("log_format: text", "log_format: json"))
    log = tmp / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    proc = ServeProc("tocsin", path, log)
    try:
        proc.wait_ready()
        yield Server(
            proc.url, log, {**env, "TOCSIN_URL": proc.url, "TOCSIN_API_TOKEN": "api-write"}
        )
    finally:
        rc = proc.stop()
    assert not proc.errors(), proc.errors()
    assert rc == 0, proc.output()


def open_incident(server: Server, name: str) -> dict[str, Any]:
    body = notification([alert(name)], group_key=f'{{}}:{{alertname="{name}"}}')
    reply = server.post(body)
    assert [i["action"] for i in reply["incidents"]] == ["opened"]
    return dict(reply["incidents"][0])


def wait_for_page(server: Server, inc_id: str) -> dict[str, Any]:
    """Wait until the engine loop has paged tier 0 (real clock: a few milliseconds)."""
    deadline = time.monotonic() + 20
    while True:
        r = server.cli("incidents", "show", inc_id, "--json")
        assert r.returncode == 0, r.stderr
        data = dict(json.loads(r.stdout))
        if any(n["state"] == "sent" for n in data["notifications"]):
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.1)


# -- incidents ----------------------------------------------------------------------------------


def test_list_show_ack_resolve_review(server: Server) -> None:
    opened = open_incident(server, "DiskFull")
    inc_id = opened["incident"]
    shown = wait_for_page(server, inc_id)
    number = shown["number"]

    r = server.cli("incidents", "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["#", "ID", "SEVERITY", "STATUS", "OPENED", "TITLE"]
    row = next(x for x in rows if inc_id in x)
    assert row.split()[:4] == [str(number), inc_id, "SEV-1", "triggered"]
    opened_at = datetime.fromisoformat(shown["opened_at"]).isoformat(timespec="seconds")
    assert row.split()[4] == opened_at  # to the second, with its offset
    assert row.endswith("DiskFull: DiskFull on db-1")

    r = server.cli("incidents", "list", "--json", "--severity", "critical")
    assert r.returncode == 0, r.stderr
    assert inc_id in [i["id"] for i in json.loads(r.stdout)]

    r = server.cli("incidents", "show", inc_id)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"#{number} {inc_id}  SEV-1 (P0)  triggered"
    assert lines[1] == "  DiskFull: DiskFull on db-1"
    assert "  pending:" in lines
    assert "  timeline:" in lines
    assert any(
        re.search(r"notify\s+tocsin\s+tier 0 \(on-call\): page \w+ via log", x) for x in lines
    )

    # By number too, and with an explicit actor and note.
    r = server.cli("incidents", "ack", str(number), "--actor", "alice", "--note", "on it")
    assert (r.returncode, r.stdout) == (0, f"incident #{number} {inc_id} is now acknowledged\n")
    r = server.cli("incidents", "ack", inc_id)  # already acknowledged: the server says 409
    assert r.returncode == 1
    assert r.stderr == f"tocsin: 409 conflict: cannot ack incident {inc_id}: it is acknowledged\n"
    r = server.cli("incidents", "resolve", inc_id, "--note", "cleaned up")
    assert (r.returncode, r.stdout) == (0, f"incident #{number} {inc_id} is now resolved\n")

    data = json.loads(server.cli("incidents", "show", inc_id, "--json").stdout)
    assert data["status"] == "resolved"
    acts = [
        (e["kind"], e["actor"], e["source"], e["message"])
        for e in data["timeline"]
        if e["kind"] in ("ack", "resolve")
    ]
    assert acts == [
        ("ack", "writer", "api", "acknowledged by writer on behalf of alice: on it"),
        ("resolve", "writer", "api", "resolved by writer: cleaned up"),
    ]

    r = server.cli("review", inc_id)
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert md.startswith(f"# Post-Incident Review: #{number} DiskFull: DiskFull on db-1\n")
    assert "- **Severity**: SEV-1 (P0)\n" in md
    assert "- **Status**: resolved\n" in md
    assert re.search(r"^- \*\*Time to acknowledge\*\*: 0m \d\ds \(within target\)$", md, re.M)
    assert re.search(r"^- \*\*Time to resolve\*\*: 0m \d\ds \(within target\)$", md, re.M)
    assert (
        "## Timeline\n\n| Time (UTC) | Event | Actor | Source | Details |\n|---|---|---|---|---|\n"
        in md
    )
    table = [x for x in md.splitlines() if x.startswith("| 20")]
    assert [x.split(" | ")[1:4] for x in table][:2] == [
        ["open", "alertmanager", "alert"],
        ["alert", "alertmanager", "alert"],
    ]
    assert ["ack", "writer", "api"] in [x.split(" | ")[1:4] for x in table]
    assert ["resolve", "writer", "api"] in [x.split(" | ")[1:4] for x in table]
    for section in (
        "## Summary",
        "## Impact",
        "## Root Cause",
        "## Action Items",
        "## Lessons Learned",
    ):
        assert f"\n{section}\n" in md


def test_list_filters_by_status(server: Server) -> None:
    a = open_incident(server, "ListedOpen")["incident"]
    b = open_incident(server, "ListedResolved")["incident"]
    assert server.cli("incidents", "resolve", b).returncode == 0
    open_ids = [i["id"] for i in json.loads(server.cli("incidents", "list", "--json").stdout)]
    assert a in open_ids and b not in open_ids
    r = server.cli("incidents", "list", "--json", "--status", "resolved")
    resolved = [i["id"] for i in json.loads(r.stdout)]
    assert b in resolved and a not in resolved


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (
            ("incidents", "show", "no-such-incident"),
            "tocsin: 404 not found: no incident 'no-such-incident'\n",
        ),
        (
            ("incidents", "ack", "no-such-incident"),
            "tocsin: 404 not found: no incident 'no-such-incident'\n",
        ),
        (("incidents", "resolve", "9999"), "tocsin: 404 not found: no incident '9999'\n"),
        (("review", "no-such-incident"), "tocsin: 404 not found: no incident 'no-such-incident'\n"),
        (
            ("incidents", "list", "--status", "closed"),
            "tocsin: 400 bad query: unknown status 'closed'; expected triggered, acknowledged,"
            " mitigated, resolved or open\n",
        ),
    ],
)
def test_failures_exit_1(server: Server, args: tuple[str, ...], stderr: str) -> None:
    r = server.cli(*args)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", stderr)


def test_bad_or_read_only_token_exits_1(server: Server) -> None:
    inc_id = open_incident(server, "TokenCheck")["incident"]
    r = server.cli("incidents", "list", TOCSIN_API_TOKEN="wrong")
    assert (r.returncode, r.stderr) == (1, "tocsin: 401 unauthorized: invalid API token\n")
    r = server.cli("incidents", "ack", inc_id, TOCSIN_API_TOKEN="api-read")
    assert r.returncode == 1
    assert r.stderr == "tocsin: 403 forbidden: token 'reader' has scope read; write is needed\n"
    r = server.cli("incidents", "show", inc_id, "--json", TOCSIN_API_TOKEN="api-read")
    assert (r.returncode, json.loads(r.stdout)["status"]) == (0, "triggered")


def test_unreachable_server_exits_1() -> None:
    port = free_port()
    env = {**os.environ, "TOCSIN_URL": f"http://127.0.0.1:{port}", "TOCSIN_API_TOKEN": "x"}
    r = cli_process("incidents", "list", env=env)
    assert r.returncode == 1
    assert r.stderr.startswith(f"tocsin: cannot reach http://127.0.0.1:{port}")


@pytest.mark.parametrize(
    "args",
    [
        ("incidents",),
        ("incidents", "frobnicate"),
        ("incidents", "show"),
        ("incidents", "ack"),
        ("review",),
        ("incidents", "list", "--bogus"),
        ("simulate", "--config", "x.yaml"),
        ("simulate", "--config", "x.yaml", "--payload", "p.json", "--ack-at", "soon"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    r = cli_process(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "usage: tocsin" in r.stderr
    assert "error:" in r.stderr


# -- simulate --json ----------------------------------------------------------------------------


def simulate_json(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    path = team_config(tmp_path)
    r = cli_process(
        "simulate",
        "--config",
        str(path),
        "--payload",
        str(DATA / "simulate-critical.json"),
        "--json",
        *args,
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_simulate_json_line_format(tmp_path: Path) -> None:
    lines = simulate_json(tmp_path, "--ack-at", "7m", "--resolve-at", "40m", "--until", "1h")
    incident = lines[0]["incident"]
    for line in lines:
        assert {"t", "event", "incident", "severity"} <= set(line)
        assert (line["incident"], line["severity"]) == (incident, "P0")
        if line["event"] == "notify":
            assert {"tier", "round", "target", "person", "channel"} <= set(line)
    assert [line["t"] for line in lines] == sorted(line["t"] for line in lines)
    compact = [
        (
            x["t"],
            x["event"],
            x.get("tier"),
            x.get("round"),
            x.get("target"),
            x.get("person"),
            x.get("channel"),
        )
        for x in lines
    ]
    assert compact == [
        (0.0, "open", None, None, None, None, None),
        (0.0, "notify", 0, 0, "role:oncall", "alice", "log"),
        (300.0, "notify", 1, 0, "role:lead", "carol", "log"),
        (420.0, "ack", None, None, None, None, None),
        (1800.0, "reminder", None, None, None, None, None),
        (2400.0, "resolve", None, None, None, None, None),
    ]


def test_simulate_json_without_ack_climbs_every_tier(tmp_path: Path) -> None:
    lines = simulate_json(tmp_path, "--until", "45m")
    notify = [(x["t"], x["tier"], x["person"]) for x in lines if x["event"] == "notify"]
    assert notify == [
        (0.0, 0, "alice"),
        (300.0, 1, "carol"),
        (900.0, 2, "dave"),
        (1800.0, 3, "erin"),
    ]
    assert [x["event"] for x in lines] == [
        "open",
        "notify",
        "notify",
        "notify",
        "notify",
        "reminder",
        "pending",  # what --until cut off: the summary line comes last
    ]
    assert lines[-1]["t"] == 2700.0
    assert lines[-1]["steps"]


def test_simulate_with_a_missing_payload_exits_1(tmp_path: Path) -> None:
    path = team_config(tmp_path)
    r = cli_process("simulate", "--config", str(path), "--payload", str(tmp_path / "nope.json"))
    assert r.returncode == 1
    assert r.stderr.startswith(f"tocsin: error: cannot read {tmp_path / 'nope.json'}")


def test_list_and_show_escape_control_characters(server: Server) -> None:
    """A label value carrying ANSI escapes reaches the operator's screen visibly, not obeyed."""
    inc_id = open_incident(server, "Evil\x1b[2J\x1b]0;owned\x07")["incident"]
    for args in (("incidents", "list"), ("incidents", "show", inc_id), ("review", inc_id)):
        r = server.cli(*args)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout, args
        assert "Evil\\x1b[2J\\x1b]0;owned\\x07" in r.stdout, args
    # JSON output stays JSON: the exact label value, escaped by JSON itself.
    r = server.cli("incidents", "show", inc_id, "--json")
    assert json.loads(r.stdout)["labels"]["alertname"] == "Evil\x1b[2J\x1b]0;owned\x07"
