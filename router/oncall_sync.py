"""Keeps PagerDuty-backed schedules' on-call answers warm, so target resolution stays synchronous.

The escalation engine resolves targets inside a transaction with pure code; it cannot wait for
PagerDuty's REST API there. This task asks PagerDuty (through ``OncallLookup``: python-pagerduty
in a thread, TTL-cached) for every schedule configured as ``pagerduty:``, before the engine starts
and then at half the cache TTL, and keeps the last good answer when a lookup fails.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from prometheus_client import CollectorRegistry

from config.load import LoadedConfig
from escalation.engine.clock import Clock

__all__ = ["OncallSync"]

log = logging.getLogger("tocsin.oncall")

Key = tuple[str | None, str | None]


class OncallSync:
    """The last known on-call emails per PagerDuty schedule / escalation policy."""

    def __init__(self, registry: CollectorRegistry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock
        self.known: dict[Key, list[str]] = {}
        self._lookup: object | None = None
        self._keys: list[Key] = []
        self._every = timedelta(seconds=30)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def get(self, key: Key) -> list[str] | None:
        return self.known.get(key)

    def configure(self, loaded: LoadedConfig) -> None:
        """Follow the (re)loaded config: which keys to look up, and with which credentials."""
        keys = [
            s.pagerduty.key for s in loaded.config.schedules.values() if s.pagerduty is not None
        ]
        pd = loaded.config.adapters.pagerduty
        self._keys = list(dict.fromkeys(keys))
        if not self._keys or pd is None or pd.api_token is None:
            self._lookup = None
            return
        from adapters.pagerduty.oncall import OncallLookup

        self._lookup = OncallLookup(pd, self.registry, clock=self.clock)
        self._every = max(timedelta(seconds=5), pd.oncall_cache_ttl / 2)
        if self._task is not None:
            self._wake.set()  # a reload: look up with the new settings now

    async def refresh(self) -> None:
        """Ask PagerDuty now for every configured key; keep the last answer on failure."""
        lookup = self._lookup
        if lookup is None:
            return
        for key in self._keys:
            try:
                emails = await lookup.oncall(schedule_id=key[0], escalation_policy_id=key[1])  # type: ignore[attr-defined]
            except Exception as e:  # the REST API being down must not stop paging
                log.warning(
                    "PagerDuty on-call lookup failed", extra={"key": list(key), "error": str(e)}
                )
                continue
            self.known[key] = emails

    async def run(self) -> None:
        """After ``start``'s first lookup: again every half TTL, or at once after a reload."""
        while True:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._every.total_seconds())
            except TimeoutError:
                pass
            await self.refresh()

    async def start(self) -> None:
        await self.refresh()
        if self._keys:
            self._task = asyncio.create_task(self.run(), name="tocsin-oncall-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
