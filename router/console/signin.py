"""Built-in sign-in: a named token in, a signed session cookie out; and signing out."""

from __future__ import annotations

import logging

from aiohttp import web

from router.console.identity import SESSION_COOKIE, find_credential, issue_session
from router.console.pages import Visit, cookie_options, page, safe_next, signin_page
from router.console.view import base_path, console_of, see_other
from router.keys import RUNTIME

__all__ = ["show_signin", "sign_in", "sign_out"]

log = logging.getLogger("tocsin.console")


@page(None)
async def show_signin(request: web.Request, visit: Visit) -> web.StreamResponse:
    if visit.viewer is not None:
        return see_other(f"{base_path(request)}/")
    return signin_page(request, status=200)


@page(None)
async def sign_in(request: web.Request, visit: Visit) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    form = await request.post()
    name, token, wanted = (str(form.get(k, "")) for k in ("name", "token", "next"))
    cred = find_credential(rt.loaded.config.auth, name.strip(), token.strip())
    if cred is None:
        # Neither the name tried nor the token reaches the log: a token typed into the name
        # field would otherwise be written down.
        log.info("console sign-in refused", extra={"peer": request.remote})
        return signin_page(request, problem="That name and token do not match.")
    ttl = rt.loaded.config.auth.console.session_ttl
    cookie = issue_session(console_of(request).key, cred, rt.clock.now() + ttl)
    log.info("console sign-in", extra={"who": cred.name, "scope": cred.scope})
    resp = see_other(safe_next(request, wanted))
    opts = cookie_options(request)
    resp.set_cookie(SESSION_COOKIE, cookie, max_age=int(ttl.total_seconds()), **opts)  # type: ignore[arg-type]
    return resp


@page(None)
async def sign_out(request: web.Request, visit: Visit) -> web.StreamResponse:
    resp = see_other(f"{base_path(request)}/signin")
    resp.del_cookie(SESSION_COOKIE, path=base_path(request) or "/")
    return resp
