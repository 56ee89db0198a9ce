"""The Rules page: rule files, Explain, and the simulated escalation chart."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from tests.driver.app import App, MakeApp
from tests.router.console.conftest import VIEWER_TOKEN, console_config, sign_in


async def _rules(app: App, **params: str) -> str:
    await sign_in(app.client, "vic", VIEWER_TOKEN)
    r = await app.client.get("/rules", params=params)
    assert r.status == 200
    return await r.text()


async def test_the_loaded_rule_files_are_listed_with_their_matchers(console: App) -> None:
    html = await _rules(console)
    assert "<strong>team-db</strong> <code>{team=&#34;db&#34;}</code>" in html
    assert 'id="simulation"' not in html  # nothing asked yet


async def test_explain_names_the_rule_and_the_chart_has_one_bar_per_tier(
    tmp_path: Path, make_app: MakeApp
) -> None:
    roles = {"oncall": ["alice"], "lead": ["bob"], "manager": ["bob"], "vp": ["alice"]}
    # A Monday afternoon: the default matrix's manager and VP tiers run in business hours
    # (here they reach people already paged: their bars say so).
    monday = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    console = await make_app(console_config(tmp_path, roles=roles), start=monday)
    html = await _rules(console, labels="alertname=DiskFull\nseverity=critical\nteam=db")
    assert "<dt>Rule</dt><dd>team-db</dd>" in html
    assert "<dt>Team</dt><dd>db</dd>" in html
    tiers = console.rt.loaded.matrix.levels["P0"].tiers
    bars = re.findall(r'<rect class="bar" data-tier="(\d+)"', html)
    assert bars == [str(i) for i in range(len(tiers))]
    assert 'class="marker"' not in html


async def test_an_ack_stops_the_escalation_and_is_marked(console: App) -> None:
    html = await _rules(console, labels="alertname=DiskFull,severity=critical", ack="10")
    bars = re.findall(r'<rect class="bar" data-tier="(\d+)"', html)
    assert bars == ["0", "1"]  # the matrix pages tier 1 at +5m; the ack at +10m stops the rest
    assert '<line class="marker" data-kind="ack"' in html
