"""``tocsin serve``: load the config, start the app, reload on SIGHUP, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from adapters.http import is_loopback
from config.errors import ConfigError
from config.load import load_config
from config.server import ServerConfig, split_listen
from router.app import create_app
from router.errors import json_error
from router.logs import setup_logging
from router.runtime import Runtime

__all__ = ["TocsinRunner", "runner_options", "serve", "start_http"]

log = logging.getLogger("tocsin.serve")


def bind_address(listen: str, insecure: bool) -> tuple[str, int]:
    """Where to bind; an unauthenticated receiver is only ever reachable from this machine."""
    host, port = split_listen(listen)
    if insecure and not is_loopback(host):
        log.warning(
            "auth.receiver.insecure is true: binding to 127.0.0.1 instead of %s; "
            "configure credentials to listen on other addresses",
            host,
        )
        host = "127.0.0.1"
    elif insecure:
        log.warning("auth.receiver.insecure is true: the receiver accepts unauthenticated requests")
    return host, port


class CannotListen(Exception):
    """The listen address could not be bound (in use, not this host's, a privileged port)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        # aiohttp re-raises bind errors with a long message; the errno's own text is enough.
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        super().__init__(f"cannot listen on {host}:{port} (--listen or server.listen): {reason}")


def serve(config_path: str, listen: str | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    loaded = load_config(config_path)
    setup_logging(loaded.config.server.log_level, loaded.config.server.log_format)
    return asyncio.run(_serve(Runtime(loaded), listen or loaded.config.server.listen))


class _JsonErrorsHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse in JSON like the app.

    aiohttp answers a malformed request (bad request line, a header over its size limit) itself,
    before any route or middleware runs, in plain text that quotes the offending bytes (a
    credential, for an oversized Authorization header). The README promises JSON errors.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; checks nothing was sent
        try:
            error = HTTPStatus(status).phrase.lower()
        except ValueError:
            error = "bad request"
        detail = f"the request could not be parsed ({type(exc).__name__})" if exc else ""
        resp = json_error(status, error, detail)
        resp.force_close()
        return resp


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        # Same slots, one method overridden: aiohttp offers no hook to choose the class.
        handler.__class__ = _JsonErrorsHandler
        return handler


class TocsinRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer even unparseable requests in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer
        return server


def runner_options(server: ServerConfig) -> dict[str, Any]:
    """How ``TocsinRunner`` is set up to serve tocsin (see ``start_http``)."""
    return {
        "access_log": None,
        "handler_cancellation": False,
        "keepalive_timeout": server.header_timeout.total_seconds(),
    }


async def start_http(runtime: Runtime, host: str, port: int) -> web.AppRunner:
    """Serve ``runtime``'s app on ``host:port`` as ``tocsin serve`` does; the caller cleans up.

    A connection that has not sent a whole request's headers within ``server.header_timeout``
    (or sits idle between requests that long) is closed: aiohttp's keep-alive timer also runs
    while a request's headers are arriving, so it bounds slow-header clients (slowloris). Body
    reads are bounded by ``server.body_timeout`` where they happen. A client that disconnects
    does not cancel its handler: what it sent is handled, and a half-read body ends as a 400.
    """
    runner = TocsinRunner(create_app(runtime), **runner_options(runtime.loaded.config.server))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    runtime.bound_host = host
    return runner


async def _serve(runtime: Runtime, listen: str) -> int:
    host, port = bind_address(listen, runtime.loaded.config.auth.receiver.insecure)
    await runtime.start()
    try:
        runner = await start_http(runtime, host, port)
    except OSError as e:
        await runtime.stop()
        raise CannotListen(host, port, e) from e
    # What start-up made (modules, the config, compiled rules and templates) lives as long as
    # the process: frozen out of the collector's sight, a full collection walks only what came
    # after. Under wrk a full collection paused the loop for up to 80 ms before (README,
    # "Ingest under wrk").
    gc.freeze()
    log.info(
        "tocsin listening",
        extra={
            "host": host,
            "port": port,
            "config": str(runtime.config_path),
            "startup_objects": gc.get_freeze_count(),  # how much start-up left frozen
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def _reload() -> None:
        async def go() -> None:
            try:
                await runtime.reload()
            except ConfigError:
                pass  # the runtime logged it, as it does for POST /-/reload

        task = loop.create_task(go())
        reloads.add(task)  # keep a reference until it is done (the loop holds only weak ones)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, _reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
        await runtime.stop()
    return 0
