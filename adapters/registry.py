"""The explicit table of channel adapters: config section → notifiers, all build errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from adapters import email, ntfy, pagerduty, phone, pushover, slack, teams, webhook
from adapters.config import AdaptersConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.log import LogNotifier

__all__ = [
    "AdapterBuildError",
    "AdapterContext",
    "adapter_problems",
    "build_notifiers",
]  # AdapterContext re-exported


class AdapterBuildError(ValueError):
    """One or more adapters could not be built; ``problems`` lists (channel, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"adapters.{c}: {m}" for c, m in problems))
        self.problems = problems


def adapter_problems(cfg: AdaptersConfig, public_url: str) -> list[tuple[tuple[str, ...], str]]:
    """What would keep the configured adapters from being built, as (path, message).

    The config loader applies these, so ``tocsin check`` refuses what ``serve`` would.
    """
    out: list[tuple[tuple[str, ...], str]] = []
    if cfg.email is not None:
        out += [(("email", *loc), m) for loc, m in email.check(cfg.email, public_url)]
    if cfg.pagerduty is not None:
        out += [(("pagerduty", *loc), m) for loc, m in pagerduty.check(cfg.pagerduty)]
    if cfg.phone is not None:
        out += [(("phone", *loc), m) for loc, m in phone.check(cfg.phone)]
    if cfg.webhook is not None:
        out += [(("webhook", *loc), m) for loc, m in webhook.check(cfg.webhook)]
    if cfg.slack is not None:
        out += [(("slack", *loc), m) for loc, m in slack.check(cfg.slack)]
    if cfg.teams is not None:
        out += [(("teams", *loc), m) for loc, m in teams.check(cfg.teams, public_url)]
    if cfg.ntfy is not None:
        out += [(("ntfy", *loc), m) for loc, m in ntfy.check(cfg.ntfy, public_url)]
    if cfg.pushover is not None:
        out += [(("pushover", *loc), m) for loc, m in pushover.check(cfg.pushover, public_url)]
    return out


def build_notifiers(cfg: AdaptersConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """channel name → notifier, for every configured adapter."""
    out: dict[str, Notifier] = {}
    problems: list[tuple[str, str]] = []
    if cfg.log.enabled:
        out["log"] = LogNotifier()
    table: list[tuple[str, Any, Callable[..., dict[str, Notifier]]]] = [
        ("pagerduty", cfg.pagerduty, pagerduty.build),
        ("email", cfg.email, email.build),
        ("phone", cfg.phone, functools.partial(phone.build, dispatch=cfg.dispatch)),
        ("webhook", cfg.webhook, webhook.build),
        ("slack", cfg.slack, slack.build),
        ("teams", cfg.teams, teams.build),
        ("ntfy", cfg.ntfy, ntfy.build),
        ("pushover", cfg.pushover, pushover.build),
    ]
    for name, section, loader in table:
        if section is None:
            continue
        try:
            out.update(loader(section, ctx))
        except (ValueError, OSError) as e:
            problems.append((name, str(e)))
    if problems:
        raise AdapterBuildError(problems)
    return out
