"""The Status page: the configuration in force and the same numbers as /metrics."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.driver.app import App, MakeApp
from tests.driver.metrics import metric_value
from tests.driver.payloads import alert, notification
from tests.fakes.webhook_sink import Reply, WebhookSink
from tests.router.console.conftest import VIEWER_TOKEN, console_config, sign_in


def _dd(html: str, term: str) -> str:
    m = re.search(rf"<dt>{re.escape(term)}</dt><dd>(.*?)</dd>", html, re.S)
    assert m is not None, term
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


async def test_status_shows_the_config_in_force_and_the_metrics_numbers(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await console.tick()  # tier 0 pages through the log channel
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    html = await (await console.client.get("/status")).text()
    assert _dd(html, "SHA-256") == hashlib.sha256(console.path.read_bytes()).hexdigest()
    assert _dd(html, "Last reload") == "succeeded"
    metrics = await (await console.client.get("/metrics")).text()
    fired = metric_value(metrics, "tocsin_escalation_lateness_seconds_count")
    assert fired is not None and fired >= 1
    assert _dd(html, "Steps fired since start") == str(int(fired))
    sent = metric_value(
        metrics, "tocsin_notifications_total", {"channel": "log", "outcome": "sent"}
    )
    assert sent is not None
    assert f"<td>log</td><td>sent</td><td>{int(sent)}</td>" in html


async def test_a_refused_reload_is_shown_by_where_never_by_value(console: App) -> None:
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    text = console.path.read_text()
    console.path.write_text(text.replace("log_format: text", "log_format: s3cr3t-value"))
    r = await console.client.post("/-/reload", headers={"Authorization": "Bearer api-write"})
    assert r.status == 400
    html = await (await console.client.get("/status")).text()
    assert _dd(html, "Last reload").startswith("refused")
    assert "server.log_format" in html
    assert "s3cr3t-value" not in html


async def test_the_checksum_is_of_the_config_in_force_not_of_a_refused_edit(
    console: App,
) -> None:
    """An edit that a reload refuses changes the file on disk, not the configuration in force:
    the page keeps the loaded file's SHA-256 and shows where the refused reload went wrong."""
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    loaded = hashlib.sha256(console.path.read_bytes()).hexdigest()
    console.path.write_text(console.path.read_text() + "not_a_section: true\n")
    edited = hashlib.sha256(console.path.read_bytes()).hexdigest()
    r = await console.client.post("/-/reload", headers={"Authorization": "Bearer api-write"})
    assert r.status == 400
    html = await (await console.client.get("/status")).text()
    assert _dd(html, "SHA-256") == loaded
    assert _dd(html, "Last reload").startswith("refused")
    assert "not_a_section" in html  # where the refused reload's problem is
    # The edit is pointed out, by its own checksum, as not in force.
    assert _dd(html, "On disk now") == f"{edited} (differs: not in force)"

    # A reload that succeeds puts the new file's checksum in force.
    console.path.write_text(console.path.read_text().replace("not_a_section: true", "# ok"))
    r = await console.client.post("/-/reload", headers={"Authorization": "Bearer api-write"})
    assert r.status == 200
    html = await (await console.client.get("/status")).text()
    assert _dd(html, "SHA-256") == hashlib.sha256(console.path.read_bytes()).hexdigest() != loaded
    assert _dd(html, "Last reload") == "succeeded"
    assert "On disk now" not in html


OPS = "webhook"


def _channel_row(html: str, channel: str) -> list[str]:
    m = re.search(rf'<tr data-channel="{re.escape(channel)}">(.*?)</tr>', html, re.S)
    assert m is not None, channel
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", m[1])]


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    server = await WebhookSink().start()
    yield server
    await server.close()


async def test_each_channels_breaker_is_shown_as_metrics_says(
    tmp_path: Path, make_app: MakeApp, sink: WebhookSink
) -> None:
    """alice is paged through a webhook that answers 500 once; with a breaker of one failure
    it opens, is half-open after ``breaker_reset`` (60 s), and the retry's success closes it.
    The page and /metrics say the same at every step."""
    people = {"alice": {"name": "Alice", "channels": ["webhook"]}, "bob": {"channels": ["log"]}}
    adapters = {
        "webhook": {"endpoints": {"ops": {"url": f"{sink.url}/hook"}}},
        "dispatch": {"breaker_failures": 1},
    }
    app = await make_app(console_config(tmp_path, people=people, adapters=adapters))
    await sign_in(app.client, "vic", VIEWER_TOKEN)

    async def shown() -> tuple[list[str], str]:
        html = await (await app.client.get("/status")).text()
        metrics = await (await app.client.get("/metrics")).text()
        [state] = [
            s
            for s in ("closed", "open", "half-open")
            if metric_value(metrics, "tocsin_breaker_state", {"channel": OPS, "state": s}) == 1
        ]
        failures = metric_value(metrics, "tocsin_breaker_failures", {"channel": OPS})
        waiting = metric_value(metrics, "tocsin_outbox_depth", {"channel": OPS})
        assert failures is not None and waiting is not None
        row = _channel_row(html, OPS)
        assert row == [OPS, str(int(waiting)), state, str(int(failures))]  # page == metrics
        return row, _channel_row(html, "log")[2]

    assert await shown() == ([OPS, "0", "closed", "0"], "closed")
    sink.script(Reply(status=500))
    await app.post(notification([alert("DiskFull")]))
    await app.tick()  # tier 0 pages alice: the webhook answers 500
    assert len(sink.received) == 1
    assert await shown() == ([OPS, "1", "open", "1"], "closed")
    app.clock.set(app.clock.now() + timedelta(seconds=60))
    assert await shown() == ([OPS, "1", "half-open", "1"], "closed")
    await app.tick()  # the retry is the trial send, and it goes through
    assert len(sink.received) == 2
    assert (await shown())[0][2:] == ["closed", "0"]


async def test_status_lists_the_heartbeats_with_their_state_and_last_ping(
    tmp_path: Path, make_app: MakeApp
) -> None:
    beats = {
        "backup": {"expect_every": "1h", "grace": "5m", "severity": "P2"},
        "watchdog": {"expect_every": "1m", "severity": "P1"},
    }
    app = await make_app(console_config(tmp_path, heartbeats=beats))
    r = await app.client.post(
        "/api/v1/heartbeats/backup/ping", headers={"Authorization": "Bearer am-token"}
    )
    assert r.status == 200
    await app.tick(timedelta(minutes=2))  # the watchdog was never pinged: it expires
    await sign_in(app.client, "vic", VIEWER_TOKEN)
    html = await (await app.client.get("/status")).text()
    # Listed once, in the page: none of it leaks into the <title>.
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    assert title is not None and title[1] == "Status · tocsin"
    assert html.count('<tr data-heartbeat="backup">') == 1
    backup = _heartbeat_row(html, "backup")
    assert backup[:3] == ["backup", "ok", "2026-11-22 13:00:00 UTC"]
    assert backup[3:] == ["2026-11-22 14:05:00 UTC", "1h 0m (+ 5m grace)"]
    watchdog = _heartbeat_row(html, "watchdog")
    assert watchdog[:4] == ["watchdog", "expired since 2026-11-22 13:02:00 UTC", "never", "—"]


def _heartbeat_row(html: str, name: str) -> list[str]:
    m = re.search(rf'<tr data-heartbeat="{re.escape(name)}">(.*?)</tr>', html, re.S)
    assert m is not None, name
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", m.group(1))]
