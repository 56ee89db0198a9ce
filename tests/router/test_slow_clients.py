"""Slow clients cannot hold connections open forever (served exactly as ``tocsin serve`` does).

A client that trickles its request headers is disconnected after ``server.header_timeout``; one
that sends its headers but not its whole body gets a 408 after ``server.body_timeout``. The
tests wait for the server to act; without the timeouts it never does, and a generous safety
bound (far above the configured 1 s) fails them instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from config.load import load_config
from router.runtime import Runtime
from router.serve import start_http
from tests.router.conftest import AM_HEADERS, RECEIVER, router_config

_NEVER = 60  # seconds: a safety bound, not a measurement (the server acts after about 1 s)


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    path = router_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["server"] |= {"header_timeout": "1s", "body_timeout": "1s"}
    path.write_text(yaml.safe_dump(cfg))
    rt = Runtime(load_config(path, env={}))
    await rt.start(run_engine=False)
    runner = await start_http(rt, "127.0.0.1", 0)
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
        await rt.stop()


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    async with asyncio.timeout(_NEVER):
        with contextlib.suppress(ConnectionError):
            return await reader.read()
    return b""


async def test_trickled_headers_are_disconnected(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    await writer.drain()

    answered = await _until_closed(reader)

    assert answered == b""  # closed, never answered: there was no request to answer
    writer.close()


async def test_a_body_that_never_completes_is_a_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"POST {RECEIVER} HTTP/1.1", "Host: x", "Content-Length: 100"]
    head += [f"{k}: {v}" for k, v in AM_HEADERS.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"version": ')
    await writer.drain()

    answered = await _until_closed(reader)

    status_line, _, rest = answered.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answered
    assert b'"error": "request timeout"' in rest
    assert b"server.body_timeout" in rest
    writer.close()
