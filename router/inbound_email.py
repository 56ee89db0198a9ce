"""Inbound email callbacks (being built)."""

from __future__ import annotations

from aiohttp import web


def add_email_routes(app: web.Application) -> None:
    """Register the email callback routes."""
