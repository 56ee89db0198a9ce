"""Structured JSON log lines (one object per line) for everything tocsin logs."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from aiohttp.http_exceptions import HttpProcessingError

__all__ = [
    "ClientProtocolErrorFilter",
    "JsonFormatter",
    "quiet_client_protocol_errors",
    "setup_logging",
]

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; extras come from ``extra={...}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ClientProtocolErrorFilter(logging.Filter):
    """Demote aiohttp's log of a malformed request it answered 4xx to one WARNING line.

    aiohttp logs every request it cannot parse (bad header bytes, a broken chunked body) at
    ERROR with a traceback, although it answered 400 and nothing failed on our side; anyone who
    can reach the port could otherwise fill the log with tracebacks that look like crashes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            # The exception's text quotes the offending request bytes (the first ~100 of a
            # header line that is too long: a whole bearer token): only its kind is logged.
            what = type(exc).__name__
            record.msg = f"{record.getMessage()}: malformed request answered {exc.code}: {what}"
            record.args = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_protocol_errors() -> None:
    """Install ClientProtocolErrorFilter on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientProtocolErrorFilter) for f in logger.filters):
        logger.addFilter(ClientProtocolErrorFilter())


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    """Route the root logger to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    quiet_client_protocol_errors()
