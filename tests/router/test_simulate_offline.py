"""Offline tools never touch the network: PagerDuty-backed schedules are not simulated.

``tocsin simulate`` runs where secrets are placeholders (a rules repository's CI). A config whose
schedule is PagerDuty-backed must not make it ask PagerDuty's REST API who is on call (that
would need the real token, and logs a failure with the placeholder); it says instead that such
a schedule is not simulated. The fake PagerDuty records every request it gets: none may arrive.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.cli import main
from tests.driver.threaded import ThreadedPagerDuty

PAYLOAD = (
    '{"version": "4", "status": "firing", "receiver": "r", "groupKey": "{}:{}", "alerts":'
    ' [{"status": "firing", "labels": {"alertname": "Down"}, "startsAt": "2026-01-05T10:00:00Z"}]}'
)


@pytest.fixture
def pagerduty(tmp_path: Path) -> Iterator[ThreadedPagerDuty]:
    pd = ThreadedPagerDuty(tmp_path)
    pd.thread.call(lambda: pd.fake.add_oncall("alice@example.com", schedule_id="PSCHED1"))
    yield pd
    pd.close()


def _config(tmp_path: Path, pd: ThreadedPagerDuty) -> Path:
    path = tmp_path / "tocsin.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            auth:
              receiver:
                bearer_tokens: ["${{TOCSIN_RECEIVER_TOKEN}}"]
            people:
              alice: {{email: alice@example.com, channels: [log]}}
            schedules:
              primary: {{pagerduty: {{schedule_id: PSCHED1}}}}
            policies:
              oncall:
                steps:
                  - {{after: 0s, notify: ["schedule:primary"], via: [log]}}
            rules:
              default: {{severity: P2, policy: oncall}}
            adapters:
              pagerduty:
                api_url: "{pd.fake.https_url}"
                tls_ca_path: "{pd.fake.ca_file}"
                api_token: "${{PAGERDUTY_API_TOKEN}}"
            """
        )
    )
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_never_asks_pagerduty_and_says_the_schedule_is_not_simulated(
    tmp_path: Path,
    pagerduty: ThreadedPagerDuty,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("TOCSIN_RECEIVER_TOKEN", "PAGERDUTY_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)  # CI has no secrets: both are placeholders
    caplog.set_level(logging.DEBUG)
    config = _config(tmp_path, pagerduty)
    payload = tmp_path / "payload.json"
    payload.write_text(PAYLOAD)
    sim = ["simulate", "--config", str(config), "--payload", str(payload), "--until", "10m"]

    code, out, err = _run(capsys, *sim, "--json")
    assert (code, err) == (0, "")
    events = [json.loads(line) for line in out.splitlines()]
    skips = [e["message"] for e in events if e["event"] == "skip"]
    assert skips == [
        "tier 0: schedule:primary: schedule 'primary' is PagerDuty-backed: who is on call is not "
        "simulated (offline runs never ask PagerDuty)"
    ]

    code, out, err = _run(capsys, *sim)
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == (
        "note: schedule 'primary' is PagerDuty-backed: who is on call there is not simulated "
        "(a step that reaches it shows a skip)"
    )

    code, out, err = _run(capsys, "explain", "--config", str(config), "--labels", "alertname=Down")
    assert (code, err) == (0, "")

    assert pagerduty.snapshot().requests == []
    noisy = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records]
    assert [x for x in noisy if x.split()[0] in ("WARNING", "ERROR", "CRITICAL")] == []
