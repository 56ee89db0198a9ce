"""Typed aiohttp app keys, in their own module so routes need not import the app factory."""

from __future__ import annotations

from aiohttp import web

from router.runtime import Runtime

__all__ = ["RUNTIME"]

RUNTIME = web.AppKey("runtime", Runtime)
