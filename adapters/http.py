"""HTTP details shared by the adapters that speak HTTP (PagerDuty, Twilio, webhooks)."""

from __future__ import annotations

import math
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

__all__ = ["absolute_http_url", "parse_retry_after", "private_in_transit"]

# RFC 3986's reserved and unreserved characters, and '%' of what is already percent-encoded:
# everything else (non-ASCII, '{', '|', ...) is percent-encoded, as a browser would send it.
_URL_SAFE = ":/?#[]@!$&'()*+,;=-._~%"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def absolute_http_url(value: str) -> tuple[str, str]:
    """(the URL to send, "") for an absolute http(s) URL, else ("", why it is not one).

    Surrounding whitespace is trimmed and characters RFC 3986 does not allow are percent-encoded;
    whitespace or control characters inside mean prose or a broken template, never a URL.
    """
    text = value.strip()
    if not text:
        return "", "empty"
    if any(c.isspace() or not c.isprintable() for c in text):
        return "", "contains whitespace or control characters"
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return "", "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"a {parts.scheme}: URL" if parts.scheme else "a relative reference"
        return "", f"{scheme}, not an absolute http(s) URL"
    if not host:
        return "", "has no host"
    return quote(_STRAY_PERCENT.sub("%25", text), safe=_URL_SAFE), ""


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def private_in_transit(url: str) -> bool:
    """Whether a credential in ``url`` (a bot token in its path, a ``sig`` in its query) stays
    off the network in clear text: ``https://``, or plain ``http://`` only to this machine (a
    local fake in tests, Telegram's self-hosted Bot API server)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme.lower() == "https":
        return bool(host)
    return parts.scheme.lower() == "http" and (host or "").lower() in _LOOPBACK
