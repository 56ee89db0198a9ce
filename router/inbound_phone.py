"""Inbound phone callbacks (being built)."""

from __future__ import annotations

from aiohttp import web


def add_phone_routes(app: web.Application) -> None:
    """Register the phone callback routes."""
