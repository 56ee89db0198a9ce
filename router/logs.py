"""Log lines for everything tocsin logs: one JSON object per line, or one text line.

Messages and fields carry what clients sent (label values, titles, header values), so neither
format lets them break a line or reach the operator's terminal as control characters: JSON
escapes them by encoding, the text format writes them out visibly (``router.terminal``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from aiohttp.http_exceptions import HttpProcessingError

from router.terminal import escape, escape_line

__all__ = [
    "ClientProtocolErrorFilter",
    "JsonFormatter",
    "TextFormatter",
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
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # ensure_ascii (the default) also escapes C1 controls and bidirectional overrides.
        return json.dumps(out, default=str)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """The fields a call passed as ``extra={...}``."""
    return {k: v for k, v in record.__dict__.items() if k not in _STD and not k.startswith("_")}


# A field value shown bare; anything else is quoted, so a value cannot pose as another field.
_BARE = re.compile(r"[\w.,:/@+\-\[\]]+", re.ASCII)


def _text_value(value: object) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple | dict):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + escape_line(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``: one line per record, whatever it carries.

    Control characters in the message and the fields are written out (``\\x1b``, ``\\n``), and a
    field value that is not a plain word is quoted. A traceback follows on lines of its own, each
    indented, so nothing a client sent can start a line that looks like another record.
    """

    def format(self, record: logging.LogRecord) -> str:
        head = f"{self.formatTime(record)} {record.levelname} {record.name}: "
        line = head + escape_line(record.getMessage())
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in _extras(record).items())
        if fields:
            line += " " + fields
        tail = [self.formatException(record.exc_info)] if record.exc_info else []
        if record.stack_info:
            tail.append(self.formatStack(record.stack_info))
        for block in tail:
            line += "".join(f"\n    {escape(x)}" for x in block.splitlines())
        return line


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
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    quiet_client_protocol_errors()
