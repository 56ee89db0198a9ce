"""Inbound pagerduty callbacks (being built)."""

from __future__ import annotations

from aiohttp import web


def add_pagerduty_routes(app: web.Application) -> None:
    """Register the pagerduty callback routes."""
