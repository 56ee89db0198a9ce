"""Server-Sent Events: the console's live board, woken when incidents change.

The service façade and the engine call ``ChangeFeed.notify`` after each commit that changed
an incident (opened, acknowledged, a step fired); every open ``/events`` stream then sends one
``change`` event and htmx re-reads the part of the page that listens for it. Changes made by
another replica are picked up by a periodic ``change`` every ``REFRESH`` as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from aiohttp import web

__all__ = ["REFRESH", "ChangeFeed", "stream_changes"]

REFRESH = 20.0  # seconds: the longest a change made elsewhere waits to show
_KEEPALIVE = 15.0  # a comment line keeps proxies from closing an idle stream


class ChangeFeed:
    """A counter of changes that any number of streams wait on.

    ``notify`` may be called from any thread (the SQLite store's writer, a threaded test
    driver); waiters live on the event loop that served them.
    """

    def __init__(self) -> None:
        self.version = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self.closed = False

    def notify(self) -> None:
        with self._lock:
            self.version += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        self.closed = True
        self.notify()

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


async def stream_changes(request: web.Request, feed: ChangeFeed) -> web.StreamResponse:
    """Send ``event: change`` whenever the feed moves (and every REFRESH), until the client
    leaves or the server stops."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx would otherwise hold events back
        }
    )
    await resp.prepare(request)
    seen = feed.version
    loop = asyncio.get_running_loop()
    refresh_at = loop.time() + REFRESH
    with contextlib.suppress(ConnectionResetError):  # the reader went away: nothing to tell
        while not feed.closed:
            now = feed.version if feed.version != seen else await feed.wait(seen, _KEEPALIVE)
            if feed.closed:
                break
            if now != seen or loop.time() >= refresh_at:
                seen = now
                refresh_at = loop.time() + REFRESH
                await resp.write(f"event: change\ndata: {now}\n\n".encode())
            else:
                await resp.write(b": keepalive\n\n")
    return resp
