"""Every error tocsin answers is JSON: ``{"error", "detail", "path"}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["ApiError", "error_middleware", "json_error"]

log = logging.getLogger("tocsin.http")


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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP exceptions into JSON; log and 500 anything else."""
    try:
        return await handler(request)
    except ApiError as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return json_error(e.status, e.reason, e.text or "", request.path, headers)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return json_error(500, "internal error", "see the server log", request.path)
