"""Fakes served from their own event-loop thread, for tests that block (waiting on processes).

A synchronous test that drives ``tocsin serve`` children blocks its own thread while it waits;
a fake served from that thread's loop would stall. ``LoopThread`` runs a loop on a daemon
thread; ``ThreadedPagerDuty`` serves ``FakePagerDuty`` from one and hands out consistent
``snapshot()``s of what it received.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.fakes.pagerduty import FakeAlert, FakePagerDuty, Recorded

__all__ = ["LoopThread", "PdSnapshot", "ThreadedPagerDuty"]

_T = TypeVar("_T")


class LoopThread:
    """An asyncio loop running on a daemon thread; ``run`` a coroutine on it from any thread."""

    def __init__(self, name: str = "fault-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 30) -> _T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], _T], timeout: float = 30) -> _T:
        """Run ``fn`` on the loop thread (to read state only that thread mutates)."""

        async def go() -> _T:
            return fn()

        return self.run(go(), timeout)

    def close(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass(frozen=True)
class PdSnapshot:
    """A consistent copy of what the fake PagerDuty has received and holds."""

    requests: list[Recorded]
    alerts: list[FakeAlert]
    dropped: list[dict[str, Any]]

    @property
    def events(self) -> list[Recorded]:
        """``/v2/enqueue`` requests, in arrival order."""
        return [r for r in self.requests if r.path == "/v2/enqueue"]

    def accepted(self, action: str) -> list[dict[str, Any]]:
        """The body of every accepted (202) event with ``event_action``, in arrival order."""
        return [
            r.json for r in self.events if r.status == 202 and r.json.get("event_action") == action
        ]

    def actions(self, action: str) -> list[tuple[str, str]]:
        """(routing_key, dedup_key) of every accepted (202) event with ``event_action``."""
        return [(e["routing_key"], e["dedup_key"]) for e in self.accepted(action)]


class ThreadedPagerDuty:
    """``FakePagerDuty`` served from its own loop thread; close with ``close()``."""

    def __init__(self, tmp: Path) -> None:
        self.thread = LoopThread("fake-pagerduty")
        self.fake = self.thread.run(FakePagerDuty(tmp).start())

    @property
    def http_url(self) -> str:
        return self.fake.http_url

    def snapshot(self) -> PdSnapshot:
        """Copies taken on the fake's own thread."""
        return self.thread.call(
            lambda: PdSnapshot(
                list(self.fake.requests),
                copy.deepcopy(self.fake.alerts),
                copy.deepcopy(self.fake.dropped),
            )
        )

    def close(self) -> None:
        self.thread.run(self.fake.close())
        self.thread.close()
