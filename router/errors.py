"""Every error tocsin answers is JSON: ``{"error", "detail", "path"}``.

The store being unavailable is answered here, in one place: the service façade raises
``StoreUnavailable`` and this middleware turns it into a 503 (callers retry 5xx). A route only
declares what its caller is told (``on_store_outage``); a route a person or a phone reads
declares its own page instead of JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from escalation.engine.service import StoreUnavailable

__all__ = [
    "SECRET_PATH_PREFIXES",
    "ApiError",
    "Outage",
    "error_middleware",
    "json_error",
    "loggable_path",
    "on_store_outage",
]

log = logging.getLogger("tocsin.http")

# Paths whose last segment is a secret (a calendar feed's token): logged without it.
SECRET_PATH_PREFIXES = ("/calendar/",)


def loggable_path(request: web.Request) -> str:
    """The request path as it may be logged or echoed: a secret in it is replaced."""
    path = request.path
    for prefix in SECRET_PATH_PREFIXES:
        # Anywhere in the path: under server.public_url's path the feeds are /tocsin/calendar/.
        at = path.find(prefix)
        if at >= 0:
            return path[: at + len(prefix)] + "<redacted>"
    return path


class ApiError(Exception):
    """An expected client-visible failure with its status code."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str = "",
        path: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.path = path
        self.headers = headers or {}

    def response(self) -> web.Response:
        return json_error(self.status, self.error, self.detail, self.path, self.headers)


def json_error(
    status: int, error: str, detail: str = "", path: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON error response."""
    return web.json_response(
        {"error": error, "detail": detail, "path": path}, status=status, headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Outage:
    """What a route answers while the store is unavailable (nothing was changed)."""

    detail: str = ""  # "" → the store's own words
    log: str = ""  # logged at error level on ``logger`` when set: the caller will retry
    logger: str = "tocsin.http"
    with_path: bool = False  # the request path as the body's "path"
    page: Callable[[], web.StreamResponse] | None = None  # a reply for a person, not JSON

    def reply(self, request: web.Request, e: StoreUnavailable) -> web.StreamResponse:
        if self.log:
            logging.getLogger(self.logger).error(self.log, extra={"error": str(e)})
        if self.page is not None:
            return self.page()
        path = loggable_path(request) if self.with_path else ""
        return json_error(503, "store unavailable", self.detail or str(e), path)


_OUTAGES = web.AppKey("store_outages", dict[Handler, Outage])


def on_store_outage(app: web.Application, outage: Outage, *handlers: Handler) -> None:
    """Declare what ``handlers``' routes answer while the store is unavailable."""
    app.setdefault(_OUTAGES, {}).update(dict.fromkeys(handlers, outage))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError, StoreUnavailable and aiohttp's HTTP exceptions into JSON; log and 500
    anything else."""
    try:
        return await handler(request)
    except ApiError as e:
        return e.response()
    except StoreUnavailable as e:
        outages = request.app.get(_OUTAGES, {})
        return outages.get(request.match_info.handler, Outage()).reply(request, e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return json_error(e.status, e.reason, e.text or "", loggable_path(request), headers)
    except Exception as e:
        if _client_went_away(request, e):
            # Not our fault and nobody is there to read an answer: no ERROR, no 5xx.
            log.info(
                "client closed the connection before sending the whole body",
                extra={"path": loggable_path(request), "method": request.method},
            )
            path = loggable_path(request)
            return json_error(400, "incomplete request", "the body ended early", path)
        path = loggable_path(request)
        log.exception("unhandled error", extra={"path": path, "method": request.method})
        return json_error(500, "internal error", "see the server log", path)


def _client_went_away(request: web.Request, e: Exception) -> bool:
    """True when ``e`` is the body stream's own failure: the client disconnected mid-body or
    broke its framing (aiohttp sets that exception on the stream, and every read raises it)."""
    return e is request.content.exception() or (
        isinstance(e, ConnectionResetError) and request.transport is None
    )
