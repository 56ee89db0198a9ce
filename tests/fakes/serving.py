"""Serving a fake: every fake is a real HTTP server on 127.0.0.1 at a port the OS picks, so
tests run side by side (pytest-xdist) without choosing ports."""

from __future__ import annotations

from aiohttp import web

__all__ = ["serve_local"]


async def serve_local(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` listening on 127.0.0.1 at a free port: its runner (``cleanup()`` stops it) and
    its base URL ``http://127.0.0.1:<port>``."""
    # No signal handlers: the test's loop owns them. No access log: it would only add noise.
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
