"""Fixtures shared by the adapter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for an adapter under test, closed afterwards."""
    s = aiohttp.ClientSession()
    yield s
    await s.close()
