"""A channel a step would page through needs an adapter: ``check``, ``serve`` and reload refuse
the config otherwise (they share ``load_config``), so a page is never lost to configuration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.config import AdaptersConfig
from adapters.delivery.channels import configured_channels
from adapters.registry import AdapterContext, build_notifiers
from config.errors import ConfigError
from config.load import load_config
from escalation.engine.clock import VirtualClock

REPO = Path(__file__).resolve().parents[2]

AUTH = """\
auth:
  receiver:
    bearer_tokens: ["t0ken"]
adapters:
  email: {link_secret: "0123456789abcdef0123"}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "tocsin.yaml"
    path.write_text(AUTH + textwrap.dedent(text))
    try:
        load_config(path, env={})
    except ConfigError as e:
        return [str(p).removeprefix(f"{path}:") for p in e.problems]
    return []


def test_a_step_via_a_channel_without_an_adapter_is_refused(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        people:
          alice: {email: a@example.com, channels: [email]}
        policies:
          default:
            steps:
              - {notify: [person:alice], via: [email]}
              - notify: [person:alice]
                via: [log, phone]
        """,
    ) == [
        "13:20: policies.default.steps[1].via[1]: "
        "no adapter is configured for channel 'phone' (configured: log, email)"
    ]


def test_a_persons_own_channels_and_fallback_are_checked_where_a_step_uses_them(
    tmp_path: Path,
) -> None:
    assert problems(
        tmp_path,
        """\
        people:
          alice: {channels: [sms], fallback: [email, webhook], phone: "1", email: a@x.org}
          bob: {channels: [phone], fallback: [pagerduty], phone: "2"}  # paged by no step: not checked
        policies:
          default:
            steps:
              - notify: [person:alice]
        """,
    ) == [
        "7:22: people.alice.channels[0]: "
        "no adapter is configured for channel 'sms' (configured: log, email)",
        "7:46: people.alice.fallback[1]: "
        "no adapter is configured for channel 'webhook' (configured: log, email)",
    ]


def test_people_are_found_through_roles_teams_and_schedules(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        people:
          ann: {channels: [phone], phone: "1"}
          ben: {channels: [sms], phone: "2"}
          cat: {channels: [log]}
        roles:
          lead: [ann]
        teams:
          ops: {members: [ben]}
        schedules:
          primary: {members: [cat], start: "2026-01-05T09:00:00Z", shift: 7d}
        policies:
          default:
            steps:
              - notify: [lead, team:ops, schedule:primary]
        """,
    )
    assert [p.split(": ")[1] for p in found] == [
        "people.ann.channels[0]",
        "people.ben.channels[0]",
    ]


def test_a_pagerduty_service_target_needs_the_pagerduty_adapter(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        policies:
          default:
            steps:
              - {notify: [pagerduty:PXYZ], via: [email]}
        """,
    ) == [
        "9:19: policies.default.steps[0].notify[0]: "
        "no adapter is configured for channel 'pagerduty' (configured: log, email)"
    ]


PRESET = """\
matrix:
  preset: llm-research-lab
people:
  mo: {channels: [log], email: mo@x.org, phone: "1"%s}
roles:
  oncall: [mo]
  oncall-secondary: [mo]
  manager: [mo]
  vp: [mo]
"""


def test_a_preset_tier_via_a_missing_channel_is_refused_without_a_usable_fallback(
    tmp_path: Path,
) -> None:
    # The preset's SEV-1 manager and VP tiers ring by phone; no phone adapter is configured.
    found = problems(tmp_path, PRESET % "")
    assert [p.split(": ", 1)[1] for p in found] == [
        "matrix.levels.P0.tiers[2].via[0]: no adapter is configured for channel 'phone' "
        "(configured: log, email); this preset tier would page mo through it, with no fallback "
        "on a configured channel (configure the adapter, or give them a `fallback`)",
        "matrix.levels.P0.tiers[3].via[0]: no adapter is configured for channel 'phone' "
        "(configured: log, email); this preset tier would page mo through it, with no fallback "
        "on a configured channel (configure the adapter, or give them a `fallback`)",
    ]
    assert all(p.startswith("6:1: ") for p in found)  # at the matrix section
    # A fallback on a configured channel carries the page: accepted.
    assert problems(tmp_path, PRESET % ", fallback: [email]") == []
    # A fallback on another missing channel does not.
    assert len(problems(tmp_path, PRESET % ", fallback: [sms]")) == 3


def test_a_preset_role_nobody_fills_pages_nobody_and_is_not_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, "matrix:\n  preset: llm-research-lab\n") == []


@pytest.mark.parametrize(
    "adapters",
    [
        {},
        {"log": {"enabled": False}},
        {
            "pagerduty": {"services": {"svc": "a" * 32}},
            "email": {"link_secret": "0123456789abcdef0123"},
            "phone": {"account_sid": "AC1", "auth_token": "t", "from_number": "+15550100"},
            "webhook": {"endpoints": {"ops": {"url": "https://example.com/hook"}}},
        },
    ],
)
def test_check_knows_the_channels_the_running_service_builds(adapters: dict[str, object]) -> None:
    cfg = AdaptersConfig.model_validate(adapters)
    built = build_notifiers(
        cfg,
        AdapterContext("https://tocsin.example.com", lambda: None, VirtualClock()),  # type: ignore[arg-type,return-value]
    )
    assert sorted(configured_channels(cfg)) == sorted(built)


# -- a channel needs the person's address on it -------------------------------------------------

ADDRESSES = """\
auth:
  receiver:
    bearer_tokens: ["t0ken"]
adapters:
  email: {link_secret: "0123456789abcdef0123"}
  phone: {account_sid: AC1, auth_token: t, from_number: "+15550100"}
"""


def address_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "tocsin.yaml"
    path.write_text(ADDRESSES + textwrap.dedent(text))
    try:
        load_config(path, env={})
    except ConfigError as e:
        return [str(p).removeprefix(f"{path}:") for p in e.problems]
    return []


def test_a_persons_channel_without_their_address_on_it_is_refused(tmp_path: Path) -> None:
    assert address_problems(
        tmp_path,
        """\
        people:
          alice: {email: a@example.com, channels: [email, phone]}
          bob: {phone: "+15550123", channels: [sms], fallback: [email]}  # paged by no step
          cy: {channels: [slack]}
        """,
    ) == [
        "8:51: people.alice.channels[1]: person 'alice' has no phone number for channel 'phone'",
        "9:57: people.bob.fallback[0]: person 'bob' has no email address for channel 'email'",
        "10:19: people.cy.channels[0]: person 'cy' has no email address for channel 'slack'",
    ]


def test_a_step_via_a_channel_someone_it_reaches_has_no_address_on_is_refused(
    tmp_path: Path,
) -> None:
    assert address_problems(
        tmp_path,
        """\
        people:
          ann: {phone: "+15550123", channels: [sms]}
          cy: {channels: [log]}
          dee: {channels: [log]}
          eve: {email: e@example.com, channels: [log], fallback: [email]}  # email carries it
        teams:
          ops: {members: [ann, cy, dee, eve]}
        policies:
          default:
            steps:
              - {notify: [team:ops], via: [log, phone]}
        """,
    ) == [
        "17:41: policies.default.steps[0].via[1]: people 'cy', 'dee' have no phone number for "
        "channel 'phone', and no `fallback` that could carry the page instead"
    ]


def test_a_preset_tier_reaching_someone_without_its_address_is_refused(tmp_path: Path) -> None:
    # The preset's SEV-1 manager and VP tiers ring by phone; mo has no number.
    preset = PRESET % ""
    found = address_problems(tmp_path, preset.replace(', email: mo@x.org, phone: "1"', ""))
    assert [p.split(": ", 1)[1] for p in found] == [
        f"matrix.levels.P0.tiers[{i}].via[0]: person 'mo' has no phone number for channel "
        "'phone', and no `fallback` that could carry the page instead"
        for i in (2, 3)
    ]
    fallback = preset.replace('phone: "1"', "fallback: [email]")
    assert address_problems(tmp_path, fallback) == []


def test_check_and_serve_refuse_a_channel_without_its_address(tmp_path: Path) -> None:
    path = tmp_path / "tocsin.yaml"
    path.write_text(
        ADDRESSES
        + f"store: {{path: {tmp_path / 'tocsin.db'}}}\n"
        + "people:\n  alice: {email: a@example.com, channels: [email, phone]}\n"
    )
    problem = (
        f"{path}:9:51: people.alice.channels[1]: "
        "person 'alice' has no phone number for channel 'phone'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    check = subprocess.run(
        [sys.executable, "-m", "router.cli", "check", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (check.returncode, check.stdout) == (1, "")
    assert check.stderr == f"{problem}\nFAILED: 1 problem(s) in {path}\n"
    with socket.socket() as taken:  # were the config accepted, serve would fail to listen
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        serve = subprocess.run(
            [
                sys.executable,
                "-m",
                "router.cli",
                "serve",
                "--config",
                str(path),
                "--listen",
                listen,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert (serve.returncode, serve.stderr) == (1, f"{problem}\n")
