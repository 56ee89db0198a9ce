"""Server-Sent Events: the console's live board and incident pages, woken when incidents change.

The service façade and the engine call ``ChangeFeed.notify`` after each commit that changed
incidents (opened, acknowledged, a step fired), naming them; every open ``/events`` stream then
sends one ``change`` event (the board listens for it) and one ``incident-<id>`` event per
incident changed (that incident's page listens for its own). When the incidents are not known
(too many, or a change that names none) ``incidents`` is sent instead, which every incident
page listens for too. Changes made by another replica are picked up by a periodic ``change``
and ``incidents`` every ``REFRESH`` as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections import deque
from collections.abc import Collection

from aiohttp import web

__all__ = ["REFRESH", "ChangeFeed", "incident_event", "stream_changes"]

REFRESH = 20.0  # seconds: the longest a change made elsewhere waits to show
_KEEPALIVE = 15.0  # a comment line keeps proxies from closing an idle stream
_REMEMBERED = 256  # changes whose incidents a lagging stream can still be told
_MAX_NAMED = 50  # more incidents than this in one write: "incidents" (all) instead
# An id that is safe as an SSE event name and inside htmx's hx-trigger (the store's are hex).
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def incident_event(incident_id: str) -> str:
    """The event an incident's page listens for ("incidents" when its id cannot be one)."""
    return f"incident-{incident_id}" if _PLAIN_ID.fullmatch(incident_id) else "incidents"


class ChangeFeed:
    """A counter of changes that any number of streams wait on.

    ``notify`` may be called from any thread (the SQLite store's writer, a threaded test
    driver); waiters live on the event loop that served them.
    """

    def __init__(self) -> None:
        self.version = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        # (version, incidents it changed); empty: not known which.
        self._changed: deque[tuple[int, frozenset[str]]] = deque(maxlen=_REMEMBERED)
        self.closed = False

    def notify(self, incidents: Collection[str] = ()) -> None:
        """A commit changed ``incidents`` (none named: any may have changed)."""
        with self._lock:
            self.version += 1
            self._changed.append((self.version, frozenset(incidents)))
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        self.closed = True
        self.notify()

    def changed_since(self, seen: int) -> frozenset[str] | None:
        """The incidents changed after version ``seen``; None when that is not known."""
        with self._lock:
            sets = [ids for version, ids in self._changed if version > seen]
            if len(sets) < self.version - seen or not all(sets):
                return None  # forgotten (a lagging stream), or a change that named nothing
        return frozenset(i for ids in sets for i in ids)

    async def wait(self, seen: int, within: float) -> int:
        """The version once it is past ``seen`` (or as it is after ``within`` seconds)."""
        event = asyncio.Event()
        me = (asyncio.get_running_loop(), event)
        with self._lock:
            if self.version != seen or self.closed:
                return self.version
            self._waiters.add(me)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), within)
        finally:
            with self._lock:
                self._waiters.discard(me)
        return self.version


def _events(version: int, incidents: frozenset[str] | None) -> bytes:
    """``change``, then the changed incidents' own events (or ``incidents`` for all)."""
    names = ["change"]
    if incidents is None or len(incidents) > _MAX_NAMED:
        names.append("incidents")
    else:
        names += sorted({incident_event(i) for i in incidents})
    return "".join(f"event: {name}\ndata: {version}\n\n" for name in names).encode()


async def stream_changes(request: web.Request, feed: ChangeFeed) -> web.StreamResponse:
    """Send the events of each change whenever the feed moves (and ``change`` and
    ``incidents`` every REFRESH), until the client leaves or the server stops."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx would otherwise hold events back
        }
    )
    seen = feed.version  # before the reader hears the stream is open: it misses no change
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    refresh_at = loop.time() + REFRESH
    with contextlib.suppress(ConnectionResetError):  # the reader went away: nothing to tell
        while not feed.closed:
            now = feed.version if feed.version != seen else await feed.wait(seen, _KEEPALIVE)
            if feed.closed:
                break
            if now != seen or loop.time() >= refresh_at:
                changed = feed.changed_since(seen) if now != seen else None
                seen = now
                refresh_at = loop.time() + REFRESH
                await resp.write(_events(now, changed))
            else:
                await resp.write(b": keepalive\n\n")
    return resp
