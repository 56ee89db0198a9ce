"""``tocsin import opsgenie``: an Opsgenie account (exported files, or live from a fake of its REST
API with pagination and rate limits) becomes a config that passes ``tocsin check``, whose
rotations hand off exactly when Opsgenie's do, and which ``tocsin simulate`` rehearses.

The account (tests/fakes/data/opsgenie_account) is shaped as Opsgenie's documentation shows
its answers. What Opsgenie would do is computed here from its documented rotation semantics, not
by the importer: participant ``k mod n`` takes turn ``k``; a daily / weekly turn hands off at the
``startDate``'s wall time in the schedule's zone every ``length`` days / weeks; a restricted
rotation is on call only inside its windows; an override replaces whoever is on call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from config.load import load_config
from escalation.oncall.schedules import Schedule
from router.opsgenie_import import fetch, read_dir
from tests.driver.cli import run
from tests.driver.payloads import alert, notification
from tests.fakes.opsgenie import ACCOUNT, FakeOpsgenie

AT = "2027-03-15T00:00:00+00:00"
T0 = datetime.fromisoformat(AT)
END = T0 + timedelta(weeks=4)  # across 2027-03-28, when London moves to summer time
LONDON = ZoneInfo("Europe/London")
KEY = "6f4c0e2a-opsgenie-test-key"

Piece = tuple[datetime, datetime, str]
RULE_4_LEFT_OUT = (
    "repeats every 25m as in Opsgenie (last rule at 15m + waitInterval 10m), but rule 4 (at "
    "15m) was left out: in tocsin it pages no one, in the first round or any repeat"
)


def imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *source: str
) -> tuple[Path, list[dict[str, str]], str]:
    out, report = tmp_path / "tocsin.yaml", tmp_path / "report.json"
    argv = ["import", "opsgenie", *source, "--out", str(out), "--report", str(report)]
    code, _, err = run(capsys, *argv, "--at", AT)
    assert code == 0, err
    return out, json.loads(report.read_text(encoding="utf-8")), err


@pytest.fixture
def fake() -> Iterator[FakeOpsgenie]:
    f = FakeOpsgenie(KEY, throttle={2})
    yield f
    f.close()


# -- what Opsgenie does, from its documentation ---------------------------------------------


def opsgenie_turns(
    start: str, days: int, members: list[str], frm: datetime, to: datetime
) -> Iterator[tuple[datetime, datetime, str]]:
    """Turn k: ``members[k % n]`` from startDate's wall time + k·days (in London) to the next."""
    local = datetime.fromisoformat(start).astimezone(LONDON).replace(tzinfo=None)
    k = 0
    while (a := (local + timedelta(days=k * days)).replace(tzinfo=LONDON)) < to:
        b = (local + timedelta(days=(k + 1) * days)).replace(tzinfo=LONDON)
        if b > frm:
            yield max(a, frm), min(b, to), members[k % len(members)]
        k += 1


def within(
    turns: Iterator[tuple[datetime, datetime, str]], windows: list[tuple[datetime, datetime]]
) -> list[Piece]:
    """The turns cut to the restriction's windows."""
    out = []
    for a, b, who in turns:
        for wa, wb in windows:
            lo, hi = max(a, wa), min(b, wb)
            if lo < hi:
                out.append((lo, hi, who))
    return out


def overlay(pieces: list[Piece], start: str, end: str, who: str) -> list[Piece]:
    """An override: ``who`` instead of anyone over [start, end)."""
    s, e = datetime.fromisoformat(start), datetime.fromisoformat(end)
    out: list[Piece] = []
    for a, b, p in pieces:
        out += [(a, min(b, s), p)] if a < s else []
        out += [(max(a, e), b, p)] if b > e else []
    return sorted([*out, (s, e, who)])


def utc(pieces: list[Piece]) -> list[Piece]:
    return [(a.astimezone(UTC), b.astimezone(UTC), p) for a, b, p in pieces]


def schedule(config: Path, name: str) -> Schedule:
    return load_config(config, env={"TOCSIN_RECEIVER_TOKEN": "t"}).config.schedules[name]


# -- tests --------------------------------------------------------------------------------------


def test_an_exported_account_becomes_a_config_that_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, report, err = imported(tmp_path, capsys, "--from", str(ACCOUNT))
    code, out, _ = run(capsys, "check", str(config))
    assert code == 0 and out.startswith("SUCCESS"), out
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert list(cfg["people"]) == ["alice", "bob", "carol", "dave"]
    assert cfg["people"]["alice"] == {
        "name": "Alice Smith",
        "timezone": "Europe/London",
        "email": "alice@example.com",
        "channels": ["log"],
    }
    assert cfg["teams"] == {
        "ops-team": {"members": ["alice", "bob", "carol"], "schedule": "ops_schedule"},
        "db": {"members": ["dave"]},
    }
    assert list(cfg["schedules"]) == [
        "ops_schedule",
        "follow_the_sun-business",
        "follow_the_sun-nights",
    ]
    assert cfg["policies"]["ops_escalation"] == {
        "description": "Ops: on call, then Bob, then the team",
        "steps": [
            {
                "name": "rule 1",
                "after": "0m",
                "notify": ["schedule:ops_schedule"],
                "unless": "acknowledged",
            },
            {"name": "rule 2", "after": "5m", "notify": ["person:bob"], "unless": "acknowledged"},
            {"name": "rule 3", "after": "10m", "notify": ["team:ops-team"], "unless": "resolved"},
        ],
        # Opsgenie repeats "after processing the last escalation rule": rule 4 (15m, notifying
        # the `next` on-call) is left out, but Opsgenie's round still runs to it: 15m + 10m.
        "repeat": {"times": 2, "every": "25m"},
    }
    # A schedule of several rotations: Opsgenie notifies everyone on call in each.
    assert cfg["policies"]["sun_escalation"]["steps"][0]["notify"] == [
        "schedule:follow_the_sun-business",
        "schedule:follow_the_sun-nights",
    ]
    why = {(r["kind"], r["id"]): r["why"] for r in report}
    expected = {
        ("user", "0d1f7a6c-3b1e-4c8a-b0f4-2c6d9e8a7b51"): "time zone 'Mars/Olympus_Mons'",
        ("rotation", "a0a0a0a0-0003-4000-8000-000000000003"): "participant of type 'none'",
        ("rotation", "a0a0a0a0-0004-4000-8000-000000000004"): "no participant is an imported user",
        ("rotation", "a0a0a0a0-0005-4000-8000-000000000005"): "ended 2026-12-28",
        ("schedule", "e1e2e3e4-2222-4333-8444-a55566677788"): "no rotation could be translated",
        ("team", "7b6c1d2e-8f9a-4b3c-9d2e-1f0a3b4c5d6e"): "owns 2 schedules",
        ("rule", "f1f2f3f4-3333-4444-8555-b66677788899"): "(next): tocsin pages who is on call now",
        ("rule", "f1f2f3f4-4444-4555-8666-c77788899900"): "escalation 'ops_escalation'",
        ("escalation", "f1f2f3f4-4444-4555-8666-c77788899900"): "closeAlertAfterAll",
    }
    for key, words in expected.items():
        assert words in why.get(key, ""), (key, why)
    # Several reasons for one escalation or team: each is its own item.
    whys = [(r["kind"], r["id"], r["why"]) for r in report]
    ops = "f1f2f3f4-3333-4444-8555-b66677788899"
    assert ("escalation", ops, RULE_4_LEFT_OUT) in whys
    assert any(k == "escalation" and i == ops and "resetRecipientStates" in w for k, i, w in whys)
    assert all(r["id"] for r in report)
    assert "imported 4 people, 2 teams, 3 schedules, 2 policies" in err
    assert f"{len(report)} item(s) not translated" in err
    # The report also heads the file, for whoever edits it next.
    assert "# Not translated" in config.read_text(encoding="utf-8")


def test_a_daily_rotation_hands_off_as_opsgenie_for_four_weeks_across_dst(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = imported(tmp_path, capsys, "--from", str(ACCOUNT))
    [rotation] = json.loads((ACCOUNT / "schedules.json").read_text())["data"][0]["rotations"]
    members = ["alice", "bob", "carol"]
    expected = list(opsgenie_turns(rotation["startDate"], 1, members, T0, END))
    got = schedule(config, "ops_schedule")
    assert got.model_copy(update={"overrides": []}).shifts(T0, END) == utc(expected)
    # 09:00 in London: 09:00 UTC before the change, 08:00 UTC after it.
    starts = {a.astimezone(UTC).strftime("%m-%d %H:%M") for a, _, _ in utc(expected)}
    assert {"03-27 09:00", "03-28 08:00"} <= starts
    # With Opsgenie's override (the one that ended before --at is not carried over).
    [override, _ended] = json.loads(
        (ACCOUNT / "overrides" / "d875a1f4-9b4e-4219-a1f3-0c26936d18de.json").read_text()
    )["data"]
    with_override = overlay(expected, override["startDate"], override["endDate"], "dave")
    assert got.shifts(T0, END) == utc(with_override)


def test_a_restricted_weekly_rotation_hands_off_as_opsgenie_across_dst(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = imported(tmp_path, capsys, "--from", str(ACCOUNT))
    rotation = json.loads((ACCOUNT / "schedules.json").read_text())["data"][1]["rotations"][0]
    assert rotation["timeRestriction"]["restrictions"] == [
        {"startDay": "monday", "startHour": 9, "startMin": 0,
         "endDay": "friday", "endHour": 17, "endMin": 0}
    ]  # fmt: skip
    mondays = [datetime(2027, 3, 15) + timedelta(weeks=w) for w in range(4)]
    windows = [
        ((m + timedelta(hours=9)).replace(tzinfo=LONDON), (m + timedelta(days=4, hours=17)).replace(tzinfo=LONDON))
        for m in mondays
    ]  # fmt: skip
    turns = opsgenie_turns(rotation["startDate"], 7, ["bob", "carol"], T0, END)
    expected = within(turns, windows)
    assert expected[0][2] == "bob" and expected[2][0].hour == 9  # 09:00 local after the change
    got = schedule(config, "follow_the_sun-business")
    assert got.model_copy(update={"overrides": []}).shifts(T0, END) == utc(expected)
    [override] = json.loads(
        (ACCOUNT / "overrides" / "c1d2e3f4-1111-4222-8333-944455566677.json").read_text()
    )["data"]
    with_override = overlay(expected, override["startDate"], override["endDate"], "alice")
    assert got.shifts(T0, END) == utc(with_override)


def test_a_live_import_through_pages_and_a_rate_limit_equals_the_exported_one(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fake: FakeOpsgenie,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSGENIE_API_KEY", KEY)
    (tmp_path / "dir").mkdir()
    (tmp_path / "live").mkdir()
    from_dir, _, _ = imported(tmp_path / "dir", capsys, "--from", str(ACCOUNT))
    live, _, err = imported(tmp_path / "live", capsys, "--api-url", fake.url)
    body = [line for line in live.read_text().splitlines() if "Imported from Opsgenie" not in line]
    want = [line for line in from_dir.read_text().splitlines() if "Imported from" not in line]
    assert body == want
    assert KEY not in err and KEY not in live.read_text()
    statuses = [s for s, _ in fake.requests]
    assert statuses[1] == 429 and statuses.count(429) == 1 and statuses[2] == 200
    paths = [p for _, p in fake.requests]
    assert paths[1] == paths[2]  # the throttled request, retried
    assert "/v2/schedules?expand=rotation" in paths
    teams = [p for p in paths if p.startswith("/v2/teams/")]
    assert sum(p.endswith("?identifierType=id") for p in teams) == 2  # each team, its members
    assert sum("/routing-rules?" in p for p in teams) == 2
    assert sum(p.endswith("/notification-rules") for p in paths) == 4  # each user's
    assert "/v2/integrations" in paths


def test_users_are_read_page_by_page_and_a_429_waits_its_period(fake: FakeOpsgenie) -> None:
    slept: list[float] = []
    export = fetch(fake.url, KEY, sleep=slept.append, page_size=3)
    assert [u["username"] for u in export.users] == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ]
    pages = [p for s, p in fake.requests if p.startswith("/v2/users?") and s == 200]
    assert pages == ["/v2/users?limit=3&offset=0", "/v2/users?limit=3&offset=3"]
    assert slept == [1.0]  # X-RateLimit-Period-In-Sec of the 429
    # The same account as exported (what is empty, e.g. the overrides of a schedule without any,
    # has no file there).
    assert replace(
        export,
        overrides={k: v for k, v in export.overrides.items() if v},
        notification_rules={k: v for k, v in export.notification_rules.items() if v},
        routing_rules={k: v for k, v in export.routing_rules.items() if v},
    ) == read_dir(ACCOUNT)


def test_a_wrong_key_or_none_fails_without_showing_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fake: FakeOpsgenie,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["import", "opsgenie", "--api-url", fake.url, "--out", str(tmp_path / "x.yaml")]
    monkeypatch.delenv("OPSGENIE_API_KEY", raising=False)
    code, _, err = run(capsys, *argv)
    assert code == 2 and "OPSGENIE_API_KEY" in err
    monkeypatch.setenv("OPSGENIE_API_KEY", "not-the-key")
    code, _, err = run(capsys, *argv)
    assert code == 1 and "401 Could not authenticate" in err and "not-the-key" not in err
    assert not (tmp_path / "x.yaml").exists()


def test_simulate_rehearses_a_migrated_escalation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = imported(tmp_path, capsys, "--from", str(ACCOUNT))
    cfg: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["rules"] = {"default": {"severity": "P1", "policy": "ops_escalation"}}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    start = datetime(2027, 3, 19, 10, 0, tzinfo=UTC)  # alice's turn on ops_schedule
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(notification([alert("ApiDown", starts=start)])))
    argv = ["simulate", "--config", str(config), "--payload", str(payload)]
    code, out, err = run(capsys, *argv, "--start", start.isoformat(), "--until", "15m", "--json")
    assert (code, err) == (0, "")
    events = [json.loads(line) for line in out.splitlines()]
    paged = [(e["t"], e["person"], e["target"]) for e in events if e["event"] == "notify"]
    # Opsgenie's rules: the schedule's on-call at once, Bob after 5m, the team after 10m (its
    # schedule: alice again, whom tocsin does not page twice).
    assert paged == [(0.0, "alice", "schedule:ops_schedule"), (300.0, "bob", "person:bob")]
    skips = [(e["t"], e["message"]) for e in events if e["event"] == "skip"]
    assert skips == [(600.0, "tier 2 (rule 3): alice already paged via log")]
    [pending] = [e for e in events if e["event"] == "pending"]
    rounds = [(s["t"], s["round"]) for s in pending["steps"] if s["kind"] == "page"]
    # The second round starts 25m in, as Opsgenie's (its last rule at 15m + waitInterval 10m).
    assert rounds[:3] == [(1500.0, 1), (1800.0, 1), (2100.0, 1)]
