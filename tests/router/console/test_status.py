"""The Status page: the configuration in force and the same numbers as /metrics."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from tests.driver.app import App
from tests.driver.metrics import metric_value
from tests.driver.payloads import alert, notification
from tests.router.console.conftest import VIEWER_TOKEN, sign_in


def _dd(html: str, term: str) -> str:
    m = re.search(rf"<dt>{re.escape(term)}</dt><dd>(.*?)</dd>", html, re.S)
    assert m is not None, term
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


async def test_status_shows_the_config_in_force_and_the_metrics_numbers(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await console.tick()  # tier 0 pages through the log channel
    await sign_in(console.client, "vic", VIEWER_TOKEN)
    html = await (await console.client.get("/status")).text()
    assert _dd(html, "SHA-256 now") == hashlib.sha256(console.path.read_bytes()).hexdigest()
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


def _channel_row(html: str, channel: str) -> list[str]:
    m = re.search(rf'<tr data-channel="{re.escape(channel)}">(.*?)</tr>', html, re.S)
    assert m is not None, channel
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", m[1])]


async def _page_and_metrics(app: App) -> tuple[list[str], str]:
    html = await (await app.client.get("/status")).text()
    return _channel_row(html, "log"), await (await app.client.get("/metrics")).text()


async def test_each_channels_breaker_is_shown_as_metrics_says(console: App) -> None:
    """The log channel fails five times in a row (the default limit): its breaker opens, is
    half-open after ``breaker_reset`` (60 s), and a success closes it; page and /metrics agree."""
    await sign_in(console.client, "vic", VIEWER_TOKEN)

    async def state_in_metrics(metrics: str) -> str:
        [state] = [
            s
            for s in ("closed", "open", "half-open")
            if metric_value(metrics, "tocsin_breaker_state", {"channel": "log", "state": s}) == 1
        ]
        return state

    row, metrics = await _page_and_metrics(console)
    assert row == ["log", "0", "closed", "0"]
    assert await state_in_metrics(metrics) == "closed"
    now = console.clock.now()
    async with console.rt.store.transaction() as tx:
        await tx.record_breaker_outcomes([("log", False)] * 5, now, 5)
    for later, state in ((0, "open"), (60, "half-open")):
        console.clock.set(now + timedelta(seconds=later))
        row, metrics = await _page_and_metrics(console)
        assert row == ["log", "0", state, "5"]
        assert await state_in_metrics(metrics) == state
        assert metric_value(metrics, "tocsin_breaker_failures", {"channel": "log"}) == 5
    async with console.rt.store.transaction() as tx:
        await tx.record_breaker_outcomes([("log", True)], console.clock.now(), 5)
    row, metrics = await _page_and_metrics(console)
    assert row == ["log", "0", "closed", "0"]
    assert await state_in_metrics(metrics) == "closed"
