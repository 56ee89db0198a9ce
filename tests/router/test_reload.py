"""Reload: ``POST /-/reload`` and SIGHUP swap in a good config; a bad one keeps the old running.

The probe alert (``DiskFull``) matches no rule, so its severity is the config's
``rules.default.severity``: changing that line is the simplest visible change of behaviour.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.driver.app import Client
from tests.driver.process import ServeProc, start_serve
from tests.router.conftest import (
    AM_HEADERS,
    READ_TOKEN,
    RECEIVER,
    WRITE_TOKEN,
    App,
    metric_value,
    router_config,
    sample,
    scrape,
)

REPO = Path(__file__).resolve().parents[2]
OK = "tocsin_config_last_reload_successful"
TS = "tocsin_config_last_reload_success_timestamp_seconds"
DEFAULT_LINE = "    severity: P3"


def probe_body(n: int = 0, alertname: str = "DiskFull") -> bytes:
    """A firing alert no rule matches (its own group, so each probe is a fresh alert)."""
    d = sample("alertmanager-0.25-firing.json")
    labels = {"alertname": alertname, "instance": f"db{n}"}
    d["alerts"][0]["labels"] = labels
    d["alerts"][0].pop("fingerprint")
    d["commonLabels"] = labels
    d["groupLabels"] = {"alertname": alertname}
    d["groupKey"] = f'{{}}:{{alertname="{alertname}", instance="db{n}"}}'
    return json.dumps(d).encode()


async def classify(client: Client, n: int = 0, alertname: str = "DiskFull") -> tuple[str, str]:
    """(severity, rule) tocsin gives the probe alert now."""
    resp = await client.post(RECEIVER, data=probe_body(n, alertname), headers=AM_HEADERS)
    assert resp.status == 200
    (alert,) = (await resp.json())["alerts"]
    return alert["severity"], alert["rule"]


async def reload(client: Client) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/-/reload", headers=WRITE_TOKEN)
    return resp.status, await resp.json()


async def reload_gauges(client: Client) -> tuple[float | None, float | None]:
    text = await scrape(client)
    return metric_value(text, OK), metric_value(text, TS)


def set_default(path: Path, line: str) -> None:
    text = path.read_text()
    assert text.count(DEFAULT_LINE) == 1
    path.write_text(text.replace(DEFAULT_LINE, line))


def line_of(path: Path, needle: str) -> int:
    """1-based number of the line containing ``needle``."""
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


# -- POST /-/reload ---------------------------------------------------------------------------


async def test_reload_applies_a_changed_default(app: App) -> None:
    c = app.client
    assert await classify(c, 1) == ("P3", "default")
    ok, ts0 = await reload_gauges(c)
    assert ok == 1
    assert ts0 is not None
    set_default(app.path, "    severity: P2")
    assert await reload(c) == (200, {"status": "reloaded"})
    assert await classify(c, 2) == ("P2", "default")
    ok, ts1 = await reload_gauges(c)
    assert ok == 1
    assert ts1 is not None and ts1 > ts0


async def test_reload_picks_up_a_new_rule_file(app: App) -> None:
    c = app.client
    assert await classify(c, 1) == ("P3", "default")
    (app.path.parent / "rules" / "zz-disk.yaml").write_text(
        "rules:\n  - name: disk-full\n    match: 'alertname=\"DiskFull\"'\n    severity: high\n"
    )
    assert (await reload(c))[0] == 200
    assert await classify(c, 2) == ("P1", "disk-full")
    assert await classify(c, 3, "Other") == ("P3", "default")


async def test_reload_rotates_receiver_credentials(app: App) -> None:
    c = app.client
    receiver = '    bearer_tokens: ["tok-b", "tok-c"]\n    basic_auth:\n      - {username: am, password: pw}'
    router_config(app.path.parent, receiver_auth=receiver)
    assert (await reload(c))[0] == 200
    resp = await c.post(RECEIVER, data=probe_body(), headers=AM_HEADERS)  # tok-a
    assert resp.status == 401
    headers = {**AM_HEADERS, "Authorization": "Bearer tok-c"}
    resp = await c.post(RECEIVER, data=probe_body(), headers=headers)
    assert resp.status == 200


def _yaml_syntax_error(path: Path) -> tuple[int, int, str]:
    set_default(path, "    severity: P1: 2")
    return line_of(path, "severity: P1: 2"), 17, "invalid YAML: mapping values are not allowed here"


def _tab_indent(path: Path) -> tuple[int, int, str]:
    set_default(path, "    severity: P1\n\tbad: 1")
    return line_of(path, "\tbad: 1"), 1, "invalid YAML: found character '\\t'"


def _unknown_key(path: Path) -> tuple[int, int, str]:
    set_default(path, "    severity: P1\n    severty: P2")
    return line_of(path, "severty: P2"), 5, "rules.default.severty: unknown key 'severty'"


def _unknown_top_key(path: Path) -> tuple[int, int, str]:
    path.write_text(path.read_text().replace("matrix:", "matrx:"))
    return line_of(path, "matrx:"), 1, "matrx: unknown key 'matrx'"


def _wrong_type(path: Path) -> tuple[int, int, str]:
    path.write_text(path.read_text().replace("max_body_bytes: 8192", "max_body_bytes: lots"))
    return line_of(path, "max_body_bytes: lots"), 3, "server.max_body_bytes:"


BROKEN: dict[str, Callable[[Path], tuple[int, int, str]]] = {
    "yaml-syntax-error": _yaml_syntax_error,
    "tab-indentation": _tab_indent,
    "unknown-key": _unknown_key,
    "unknown-top-level-key": _unknown_top_key,
    "wrong-type": _wrong_type,
}


@pytest.mark.parametrize("breakage", list(BROKEN), ids=list(BROKEN))
async def test_broken_config_is_refused_and_old_one_keeps_running(app: App, breakage: str) -> None:
    c = app.client
    path = app.path
    good = path.read_text()
    _, ts0 = await reload_gauges(c)
    line, column, message = BROKEN[breakage](path)

    status, body = await reload(c)
    assert status == 400
    assert body["error"] == "reload failed"
    assert body["detail"] == "the previous configuration stays in force"
    assert body["path"] == str(path)
    (problem,) = body["problems"]
    assert (problem["file"], problem["line"], problem["column"]) == (str(path), line, column)
    assert problem["text"].startswith(f"{path}:{line}:{column}: ")
    assert message in problem["text"]

    # the old config (default P3) keeps classifying; the gauges say the reload failed
    assert await classify(c, 1) == ("P3", "default")
    assert await reload_gauges(c) == (0, ts0)

    path.write_text(good.replace(DEFAULT_LINE, "    severity: P1"))
    assert (await reload(c))[0] == 200
    assert await classify(c, 2) == ("P1", "default")
    ok, ts1 = await reload_gauges(c)
    assert ok == 1
    assert ts1 is not None and ts0 is not None and ts1 > ts0


async def test_broken_rule_file_points_into_that_file(app: App) -> None:
    c = app.client
    _, ts0 = await reload_gauges(c)
    rules = app.path.parent / "rules" / "main.yaml"
    good_rules = rules.read_text()
    rules.write_text(
        good_rules.replace("match: 'alertname=\"InstanceDown\"'", "match: 'alertname=~\"(\"'")
    )
    line = line_of(rules, "alertname=~")
    status, body = await reload(c)
    assert status == 400
    (problem,) = body["problems"]
    assert (problem["file"], problem["line"], problem["column"]) == (str(rules), line, 5)
    assert problem["path"] == "rules[1].match"
    assert "bad matcher" in problem["message"]
    assert await reload_gauges(c) == (0, ts0)
    assert await classify(c, 1) == ("P3", "default")


async def test_rule_naming_an_unknown_severity_is_refused(app: App) -> None:
    c = app.client
    extra = app.path.parent / "rules" / "zz.yaml"
    extra.write_text(
        "rules:\n  - name: bogus\n    match: 'alertname=\"DiskFull\"'\n    severity: P9\n"
    )
    status, body = await reload(c)
    assert status == 400
    (problem,) = body["problems"]
    assert (problem["file"], problem["line"], problem["column"]) == (str(extra), 4, 5)
    assert problem["path"] == "rules[0].severity"
    assert "unknown severity 'P9'" in problem["message"]
    assert await classify(c, 1) == ("P3", "default")


async def test_missing_config_file_is_refused(app: App) -> None:
    c = app.client
    app.path.unlink()
    status, body = await reload(c)
    assert status == 400
    (problem,) = body["problems"]
    assert problem["file"] == str(app.path)
    assert "cannot read file" in problem["message"]
    assert (await reload_gauges(c))[0] == 0
    assert await classify(c, 1) == ("P3", "default")


async def test_incident_api_still_works_after_a_failed_reload(app: App) -> None:
    c = app.client
    await classify(c, 1)
    set_default(app.path, "    severity: P1: 2")
    assert (await reload(c))[0] == 400
    resp = await c.get("/api/v1/incidents", headers=READ_TOKEN)
    assert resp.status == 200
    assert len((await resp.json())["incidents"]) == 1


# -- SIGHUP on a real `tocsin serve` ----------------------------------------------------------


async def _until(check: Callable[[], Awaitable[bool]], proc: ServeProc, what: str) -> None:
    """Poll ``check`` with short sleeps until true; fail (with the server log) after a deadline."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.alive(), f"tocsin exited ({proc.p.returncode}):\n{proc.output()}"
        try:
            if await check():
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}:\n{proc.output()}")


@pytest.fixture
def served(tmp_path: Path, procs: list[ServeProc]) -> tuple[ServeProc, Path]:
    """``tocsin serve`` as a real process on a free port (stopped at teardown), its config."""
    path = router_config(tmp_path)
    return start_serve(procs, "tocsin", path, tmp_path, wait=False), path


async def test_sighup_reload_keeps_old_config_on_error_then_applies_fix(
    served: tuple[ServeProc, Path],
) -> None:
    proc, path = served
    async with aiohttp.ClientSession(proc.url) as http:

        async def healthy() -> bool:
            async with http.get("/healthz") as r:
                return r.status == 200

        async def severity(n: int) -> str:
            async with http.post(RECEIVER, data=probe_body(n), headers=AM_HEADERS) as r:
                assert r.status == 200, await r.text()
                return str((await r.json())["alerts"][0]["severity"])

        async def gauges() -> tuple[float | None, float | None]:
            async with http.get("/metrics") as r:
                text = await r.text()
            return metric_value(text, OK), metric_value(text, TS)

        await _until(healthy, proc, "tocsin to serve")
        assert await severity(1) == "P3"
        ok, ts0 = await gauges()
        assert ok == 1

        # a broken file: SIGHUP is refused, the process keeps serving the old config
        set_default(path, "    severity: P1: 2")
        proc.p.send_signal(signal.SIGHUP)

        async def failed() -> bool:
            return (await gauges())[0] == 0

        await _until(failed, proc, "the failed reload to be recorded")
        assert await severity(2) == "P3"
        assert (await gauges())[1] == ts0
        assert proc.alive()
        assert "reload failed; keeping the running config" in proc.output()

        # fixed: SIGHUP again and the new default applies
        router_config(path.parent, default_severity="P1")
        proc.p.send_signal(signal.SIGHUP)

        async def succeeded() -> bool:
            return (await gauges())[0] == 1

        await _until(succeeded, proc, "the good reload")
        assert await severity(3) == "P1"
        ts1 = (await gauges())[1]
        assert ts1 is not None and ts0 is not None and ts1 > ts0

    proc.p.send_signal(signal.SIGTERM)
    assert proc.p.wait(timeout=20) == 0


async def test_a_reload_refused_through_the_api_is_logged_as_sighup_logs_it(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    set_default(app.path, "    severity: P1: 2")
    assert (await reload(app.client))[0] == 400
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # The same line the SIGHUP path writes (see the serve test below), with the problems.
    assert (record.name, record.getMessage()) == (
        "tocsin.runtime",
        "reload failed; keeping the running config",
    )
    assert record.__dict__["path"] == str(app.path)
    [problem] = record.__dict__["problems"]
    assert problem.startswith(f"{app.path}:")
