"""Reloading into ``auth.receiver.insecure: true`` is held to the rule applied at start.

At start, an insecure receiver is only ever bound to loopback. A reload cannot move the socket,
so it is refused unless the server already listens on loopback only; there it is accepted with
a warning.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from config.errors import ConfigError
from config.load import load_config
from router.runtime import Runtime
from router.serve import start_http
from tests.router.conftest import AM_HEADERS, RECEIVER, SAMPLE_NAMES, router_config, sample_bytes

Serve = Callable[[str], Awaitable[tuple[Runtime, int]]]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Serve]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def serve(host: str) -> tuple[Runtime, int]:
        rt = Runtime(load_config(router_config(tmp_path), env={}))
        await rt.start(run_engine=False)
        runner = await start_http(rt, host, 0)
        cleanups.extend([rt.stop, runner.cleanup])
        return rt, runner.addresses[0][1]

    yield serve
    for cleanup in reversed(cleanups):
        await cleanup()


async def _post_unauthenticated(port: int) -> int:
    headers = {k: v for k, v in AM_HEADERS.items() if k != "Authorization"}
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}{RECEIVER}"
        async with http.post(url, data=sample_bytes(SAMPLE_NAMES[0]), headers=headers) as resp:
            return resp.status


async def test_reload_into_insecure_is_refused_when_listening_beyond_loopback(
    served: Serve, tmp_path: Path
) -> None:
    rt, port = await served("0.0.0.0")
    router_config(tmp_path, receiver_auth="    insecure: true")

    with pytest.raises(ConfigError) as e:
        await rt.reload()

    [problem] = e.value.problems
    assert problem.path == "auth.receiver.insecure"
    assert "listens on 0.0.0.0" in problem.message
    assert rt.loaded.config.auth.receiver.insecure is False
    assert await _post_unauthenticated(port) == 401


async def test_reload_into_insecure_on_loopback_is_accepted_with_a_warning(
    served: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rt, port = await served("127.0.0.1")
    router_config(tmp_path, receiver_auth="    insecure: true")

    with caplog.at_level(logging.WARNING):
        await rt.reload()

    assert rt.loaded.config.auth.receiver.insecure is True
    assert any("unauthenticated" in r.getMessage() for r in caplog.records)
    assert await _post_unauthenticated(port) == 200
