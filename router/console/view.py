"""What every console page shares: templates, security headers, links under the public path.

Pages are rendered on the server from autoescaped Jinja2 templates shipped as package data.
Every response carries a Content-Security-Policy that allows scripts and styles from our own
``/static/`` only (no inline script or style), so markup that slipped through escaping still
cannot run.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from router.console.events import ChangeFeed
from router.keys import RUNTIME

__all__ = [
    "CONSOLE",
    "CSRF",
    "SECURITY_HEADERS",
    "VIEWER",
    "Console",
    "Static",
    "base_path",
    "console_of",
    "render",
    "see_other",
]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Links to generatorURL and runbooks must not carry the incident's address away.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Static:
    """The files under ``/static/``, read once: name → bytes, and each one's cache-busting URL."""

    files: dict[str, bytes]
    vendored: dict[str, dict[str, str]]

    @classmethod
    def load(cls) -> Static:
        root = resources.files("router.console") / "static"
        files = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
        vendored = json.loads(files.pop("VENDORED.json"))
        return cls(files, vendored)

    def version(self, name: str) -> str:
        """A short content hash: our own files change with the code, so their URL does too."""
        return hashlib.sha256(self.files[name]).hexdigest()[:12]


@dataclass
class Console:
    """The console's process-wide state: signing key, change feed, templates, static files."""

    key: bytes
    feed: ChangeFeed = field(default_factory=ChangeFeed)
    static: Static = field(default_factory=Static.load)
    env: jinja2.Environment = field(
        default_factory=lambda: jinja2.Environment(
            loader=jinja2.PackageLoader("router.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    )

    @classmethod
    def create(cls, secret: str | None) -> Console:
        # Without a configured secret, a random key: sessions last as long as the process.
        raw = secret.encode() if secret else secrets.token_bytes(32)
        return cls(key=hashlib.sha256(b"tocsin-console\0" + raw).digest())


CONSOLE = web.AppKey("console", Console)
# Set on the request by the page gate; every template sees who is looking and the form token.
VIEWER = "tocsin.console.viewer"
CSRF = "tocsin.console.csrf"


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def base_path(request: web.Request) -> str:
    """The path prefix of ``server.public_url`` (``""`` when tocsin is served at the root)."""
    return urlsplit(request.app[RUNTIME].loaded.config.server.public_url).path.rstrip("/")


def see_other(location: str) -> web.Response:
    """A 303 to ``location`` (after a form: the browser GETs the page it lands on)."""
    resp = web.Response(status=303, headers={"Location": location})
    resp.headers.update(SECURITY_HEADERS)
    return resp


def ago(delta: timedelta) -> str:
    """``3m``, ``2h 5m``, ``4d 1h``: the age of something, rounded down."""
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def utc(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else ""


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> web.Response:
    """The page ``template`` as an HTML response with the console's security headers."""
    console = console_of(request)
    base = base_path(request)
    static = console.static
    now = request.app[RUNTIME].clock.now()

    def asset(name: str) -> str:
        if name in static.vendored:  # versioned by name: cached forever
            return f"{base}/static/{name}"
        return f"{base}/static/{name}?v={static.version(name)}"

    html = console.env.get_template(template).render(
        base=base,
        asset=asset,
        now=now,
        ago=lambda at: ago(now - at) if at is not None else "",
        until=lambda at: ago(at - now) if at is not None else "",
        utc=utc,
        viewer=request.get(VIEWER),
        csrf=request.get(CSRF, ""),
        **context,
    )
    resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    resp.headers.update(SECURITY_HEADERS)
    resp.headers.update(headers or {})
    return resp
