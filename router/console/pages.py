"""The gate in front of every console page: who is looking, may they, and is the form theirs.

``page(need)`` wraps a handler: a visitor nobody vouches for gets the sign-in page (never
data), one without the scope gets a 403 page, and a POST without this browser's CSRF token is
refused before the handler runs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from router.console.identity import (
    CSRF_COOKIE,
    NONCE,
    SESSION_COOKIE,
    ProxyRefused,
    Viewer,
    csrf_token,
    proxy_viewer,
    read_session,
)
from router.console.view import CSRF, VIEWER, base_path, console_of, render
from router.keys import RUNTIME

__all__ = ["Visit", "cookie_options", "error_page", "page", "signin_page"]

log = logging.getLogger("tocsin.console")

PageHandler = Callable[[web.Request, "Visit"], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Visit:
    """One request's visitor: who (if anyone), and this browser's CSRF nonce."""

    viewer: Viewer | None
    nonce: str
    new_nonce: bool
    refused: str = ""  # the identity a trusted proxy vouched for that no person has

    @classmethod
    def of(cls, request: web.Request) -> Visit:
        cfg = request.app[RUNTIME].loaded.config
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = NONCE.fullmatch(nonce) is None
        if fresh:
            nonce = secrets.token_urlsafe(24)
        viewer: Viewer | None = None
        refused = ""
        try:
            viewer = proxy_viewer(request, cfg)
        except ProxyRefused as e:
            refused = str(e)
        cookie = request.cookies.get(SESSION_COOKIE)
        if viewer is None and not refused and cookie:
            now = request.app[RUNTIME].clock.now()
            viewer = read_session(console_of(request).key, cookie, now, cfg.auth)
        return cls(viewer, nonce, fresh, refused)

    def csrf(self, request: web.Request) -> str:
        who = self.viewer.name if self.viewer is not None else ""
        return csrf_token(console_of(request).key, self.nonce, who)


def cookie_options(request: web.Request) -> dict[str, object]:
    """HttpOnly, SameSite=Strict, scoped to the console's path; Secure behind https."""
    public = request.app[RUNTIME].loaded.config.server.public_url
    return {
        "httponly": True,
        "samesite": "Strict",
        "secure": public.startswith("https://"),
        "path": base_path(request) or "/",
    }


def signin_page(request: web.Request, *, status: int = 401, problem: str = "") -> web.Response:
    base = base_path(request)
    wanted = request.path_qs if request.method == "GET" else f"{base}/"
    return render(
        request, "signin.html", status=status, problem=problem, next=safe_next(request, wanted)
    )


def safe_next(request: web.Request, wanted: str) -> str:
    """Where to go after signing in: a path of this console only (never another site)."""
    base = base_path(request)
    ok = wanted.startswith(f"{base}/") and not wanted.startswith("//") and "\\" not in wanted
    return wanted if ok else f"{base}/"


def error_page(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    return render(request, "error.html", status=status, title=title, detail=detail)


def page(need: Literal["read", "write"] | None) -> Callable[[PageHandler], Handler]:
    """Wrap a console handler with the gate (``need=None``: anyone, e.g. the sign-in form)."""

    def wrap(handler: PageHandler) -> Handler:
        async def gated(request: web.Request) -> web.StreamResponse:
            visit = Visit.of(request)
            request[VIEWER] = visit.viewer
            request[CSRF] = visit.csrf(request)
            resp = await _gate(request, visit, need) or await handler(request, visit)
            if visit.new_nonce and resp.prepared is False:
                resp.set_cookie(CSRF_COOKIE, visit.nonce, **cookie_options(request))  # type: ignore[arg-type]
            return resp

        gated.__name__ = handler.__name__
        gated.__doc__ = handler.__doc__
        return gated

    return wrap


async def _gate(
    request: web.Request, visit: Visit, need: Literal["read", "write"] | None
) -> web.Response | None:
    if visit.refused:
        detail = (
            f"The sign-in proxy says you are {visit.refused!r}, but no person in tocsin's "
            "configuration has that email. Ask an administrator to add it under people:."
        )
        return error_page(request, 403, "Not one of tocsin's people", detail)
    if need is not None and visit.viewer is None:
        return signin_page(request)
    if request.method == "POST":
        form = await request.post()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not secrets.compare_digest(
            sent.encode(), visit.csrf(request).encode()
        ):
            detail = "This form is out of date or did not come from this console. Reload and retry."
            return error_page(request, 403, "Form refused", detail)
    if need == "write" and visit.viewer is not None and not visit.viewer.can_write:
        detail = f"{visit.viewer.name} may look (scope read) but not act; ask for scope write."
        return error_page(request, 403, "Read-only", detail)
    return None
