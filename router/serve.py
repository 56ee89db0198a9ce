"""``tocsin serve``: load the config, start the app, reload on SIGHUP, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from config.errors import ConfigError
from config.load import load_config
from config.server import ServerConfig, is_loopback, split_listen
from router.app import create_app
from router.logs import setup_logging
from router.runtime import Runtime

__all__ = ["runner_options", "serve", "start_http"]

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


def serve(config_path: str, listen: str | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    loaded = load_config(config_path)
    setup_logging(loaded.config.server.log_level, loaded.config.server.log_format)
    return asyncio.run(_serve(Runtime(loaded), listen or loaded.config.server.listen))


def runner_options(server: ServerConfig) -> dict[str, Any]:
    """How ``web.AppRunner`` is set up to serve tocsin (see ``start_http``)."""
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
    runner = web.AppRunner(create_app(runtime), **runner_options(runtime.loaded.config.server))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    runtime.bound_host = host
    return runner


async def _serve(runtime: Runtime, listen: str) -> int:
    host, port = bind_address(listen, runtime.loaded.config.auth.receiver.insecure)
    await runtime.start()
    runner = await start_http(runtime, host, port)
    log.info(
        "tocsin listening", extra={"host": host, "port": port, "config": str(runtime.config_path)}
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def _reload() -> None:
        async def go() -> None:
            try:
                await runtime.reload()
            except ConfigError as e:
                log.error(
                    "reload failed; keeping the running config",
                    extra={"problems": [str(p) for p in e.problems]},
                )

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
