"""Serving a fake: every fake is a real HTTP server on 127.0.0.1 at a port the OS picks, so
tests run side by side (pytest-xdist) without choosing ports."""

from __future__ import annotations

from typing import Generic, TypeVar

from aiohttp import web

__all__ = ["LocalFake", "serve_local"]

V = TypeVar("V")  # one violation: a message, or the messages of one request


async def serve_local(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` listening on 127.0.0.1 at a free port: its runner (``cleanup()`` stops it) and
    its base URL ``http://127.0.0.1:<port>``."""
    # No signal handlers: the test's loop owns them. No access log: it would only add noise.
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


class LocalFake(Generic[V]):
    """What every contract-checking fake shares: its server (``_serve``), the requests the
    provider's published contract refuses (``violations``), and ``close()``, which stops the
    server and then fails the test on them, so a request the real provider would refuse can
    never pass unnoticed."""

    def __init__(self, refuses: str) -> None:
        self.violations: list[V] = []
        self.url = ""
        self._refuses = refuses  # "requests Pushover would refuse": what a violation is
        self._violations_expected = False
        self._runner: web.AppRunner | None = None

    async def _serve(self, app: web.Application) -> str:
        """Serve ``app``; its base URL."""
        self._runner, base = await serve_local(app)
        return base

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.violations and not self._violations_expected:
            raise AssertionError(f"{self._refuses}: {self.violations}")

    def expect_violations(self) -> None:
        """This test sends invalid requests on purpose: ``close()`` does not fail on them."""
        self._violations_expected = True
