"""The explicit table of channel adapters: config section → notifiers, all build errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from adapters.config import AdaptersConfig
from escalation.clock import Clock
from escalation.notifier import LogNotifier, Notifier

__all__ = ["AdapterBuildError", "AdapterContext", "build_notifiers"]


@dataclass(frozen=True)
class AdapterContext:
    """What adapters get from the process: never globals."""

    public_url: str
    http: Callable[[], aiohttp.ClientSession]  # the shared client session (created in the loop)
    clock: Clock


class AdapterBuildError(ValueError):
    """One or more adapters could not be built; ``problems`` lists (channel, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"adapters.{c}: {m}" for c, m in problems))
        self.problems = problems


def build_notifiers(cfg: AdaptersConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """channel name → notifier, for every configured adapter."""
    out: dict[str, Notifier] = {}
    problems: list[tuple[str, str]] = []
    if cfg.log.enabled:
        out["log"] = LogNotifier()
    table: list[tuple[str, object, Callable[[], Callable[..., dict[str, Notifier]]]]] = [
        ("pagerduty", cfg.pagerduty, _pagerduty),
        ("email", cfg.email, _email),
        ("phone", cfg.phone, _phone),
        ("webhook", cfg.webhook, _webhook),
    ]
    for name, section, loader in table:
        if section is None:
            continue
        try:
            out.update(loader()(section, ctx))
        except (ValueError, OSError) as e:
            problems.append((name, str(e)))
    if problems:
        raise AdapterBuildError(problems)
    return out


# Imported lazily so a deployment without a channel never loads its client code.
def _pagerduty() -> Callable[..., dict[str, Notifier]]:
    from adapters.pagerduty import build

    return build


def _email() -> Callable[..., dict[str, Notifier]]:
    from adapters.email import build

    return build


def _phone() -> Callable[..., dict[str, Notifier]]:
    from adapters.phone import build

    return build


def _webhook() -> Callable[..., dict[str, Notifier]]:
    from adapters.webhook import build

    return build
