"""The web console: sign-in, live board, incident pages, on call, status (server-rendered, htmx,
SSE).

``add_console_routes`` serves it at ``/`` and, when ``server.public_url`` has a path (tocsin
behind a proxy at ``https://ops.example.com/tocsin``), under that path too, so it works whether
or not the proxy strips the prefix. Links always carry the prefix.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from router.console.board import board, board_rows, events
from router.console.calendars import calendar_create, calendar_revoke
from router.console.incident import act, incident_live, incident_page
from router.console.oncall import oncall_page, override_create, override_remove
from router.console.rules import rules_page
from router.console.signin import show_signin, sign_in, sign_out
from router.console.status import status_page
from router.console.view import CONSOLE, SECURITY_HEADERS, Console
from router.errors import Outage, on_store_outage
from router.keys import RUNTIME

__all__ = ["add_console_routes"]

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


async def static_file(request: web.Request) -> web.StreamResponse:
    """``/static/{name}``: cached for a year; a file's URL changes when its content does."""
    name = request.match_info["name"]
    files = request.app[CONSOLE].static.files
    suffix = name[name.rfind(".") :] if "." in name else ""
    if name not in files or suffix not in _TYPES:
        raise web.HTTPNotFound()
    return web.Response(
        body=files[name],
        headers={
            "Content-Type": _TYPES[suffix],
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _outage_page() -> web.StreamResponse:
    text = (
        "<!doctype html><html lang=en><title>tocsin: store unavailable</title>"
        "<h1>The store is unavailable</h1><p>Nothing was changed. Retry in a moment.</p></html>"
    )
    resp = web.Response(text=text, status=503, content_type="text/html")
    resp.headers.update(SECURITY_HEADERS)
    return resp


def add_console_routes(app: web.Application) -> None:
    rt = app[RUNTIME]
    cfg = rt.loaded.config
    secret = cfg.auth.console.session_secret
    console = Console.create(secret.get_secret_value() if secret is not None else None)
    app[CONSOLE] = console
    rt.service.on_change = console.feed.notify
    rt.engine.on_change = console.feed.notify

    async def close_streams(app: web.Application) -> None:
        console.feed.close()

    app.on_shutdown.append(close_streams)
    base = urlsplit(cfg.server.public_url).path.rstrip("/")
    for prefix in dict.fromkeys(("", base)):
        r = app.router
        r.add_get(f"{prefix}/", board)
        r.add_get(f"{prefix}/board/rows", board_rows)
        r.add_get(f"{prefix}/events", events)
        r.add_get(f"{prefix}/signin", show_signin)
        r.add_post(f"{prefix}/signin", sign_in)
        r.add_post(f"{prefix}/signout", sign_out)
        r.add_get(f"{prefix}/incidents/{{id:[^/]+}}", incident_page)
        r.add_get(f"{prefix}/incidents/{{id:[^/]+}}/live", incident_live)
        r.add_post(f"{prefix}/incidents/{{id:[^/]+}}/{{action}}", act)
        r.add_get(f"{prefix}/static/{{name}}", static_file)
        r.add_get(f"{prefix}/oncall", oncall_page)
        r.add_get(f"{prefix}/status", status_page)
        r.add_get(f"{prefix}/rules", rules_page)
        r.add_post(f"{prefix}/oncall/{{schedule:[^/]+}}/overrides", override_create)
        r.add_post(
            f"{prefix}/oncall/{{schedule:[^/]+}}/overrides/{{id:[^/]+}}/remove", override_remove
        )
        r.add_post(f"{prefix}/oncall/calendars", calendar_create)
        r.add_post(f"{prefix}/oncall/calendars/{{id:[^/]+}}/revoke", calendar_revoke)
    outage = Outage(page=_outage_page)
    pages = (board, board_rows, incident_page, incident_live, act, oncall_page)
    forms = (override_create, override_remove, calendar_create, calendar_revoke)
    on_store_outage(app, outage, *pages, *forms)
