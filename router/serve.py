"""``tocsin serve``: load the config, start the app, reload on SIGHUP, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from config.errors import ConfigError
from config.load import load_config
from config.server import is_loopback, split_listen
from router.app import create_app
from router.logs import setup_logging
from router.runtime import Runtime

__all__ = ["serve"]

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


async def _serve(runtime: Runtime, listen: str) -> int:
    host, port = bind_address(listen, runtime.loaded.config.auth.receiver.insecure)
    await runtime.start()
    app = create_app(runtime)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
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
