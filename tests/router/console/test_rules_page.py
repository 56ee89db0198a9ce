"""The Rules page: rule files, Explain, and the simulated escalation chart."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

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


async def test_a_mitigation_stops_the_escalation_and_is_marked(console: App) -> None:
    html = await _rules(console, labels="alertname=DiskFull,severity=critical", mitigate="10")
    assert 'id="mitigate" name="mitigate" inputmode="decimal" value="10"' in html
    bars = re.findall(r'<rect class="bar" data-tier="(\d+)"', html)
    assert bars == ["0", "1"]  # tier 1 pages at +5m; the mitigation at +10m stops the rest
    markers = re.findall(r'<line class="marker" data-kind="(\w+)" x1="([\d.]+)"', html)
    assert [(kind, float(x)) for kind, x in markers] == [
        ("mitigate", pytest.approx(60 + 520 * 10 / 60))  # minute 10 of the 60 drawn
    ]


async def test_an_ack_and_a_later_mitigation_are_both_marked(console: App) -> None:
    html = await _rules(
        console, labels="alertname=DiskFull,severity=critical", ack="3", mitigate="20"
    )
    bars = re.findall(r'<rect class="bar" data-tier="(\d+)"', html)
    assert bars == ["0"]  # the ack at +3m comes before tier 1's page at +5m
    kinds = re.findall(r'<line class="marker" data-kind="(\w+)"', html)
    assert kinds == ["ack", "mitigate"]
    assert "; ack at minute 3; mitigate at minute 20</title>" in html
