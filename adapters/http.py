"""HTTP details shared by the adapters that speak HTTP (PagerDuty, Twilio, webhooks, push)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from adapters.delivery.notifier import DeliveryResult, FailureReason

__all__ = [
    "Answer",
    "absolute_http_url",
    "exchange",
    "failed_answer",
    "is_loopback",
    "os_reason",
    "parse_retry_after",
    "private_in_transit",
    "status_failure",
    "transport_failure",
]

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


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


@dataclass(frozen=True)
class Answer:
    """What a provider answered: status, body (at most what was read) and its Retry-After."""

    status: int
    body: bytes
    retry_after: float | None


async def exchange(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    label: str,
    limit: float,
    now: datetime,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
) -> Answer | DeliveryResult:
    """One request; the answer, or the transport failure as a ``DeliveryResult`` naming
    ``label`` and never the URL (a push server's URL or query may carry a credential)."""
    try:
        # No redirects: a request carrying a token must not be re-sent wherever a 30x points.
        async with http.request(
            method,
            url,
            json=json_body,
            data=dict(form) if form is not None else None,
            headers=dict(headers or {}),
            timeout=aiohttp.ClientTimeout(total=limit),
            allow_redirects=False,
        ) as resp:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
            return Answer(resp.status, await resp.content.read(65536), retry_after)
    except (TimeoutError, aiohttp.ClientError) as e:
        return transport_failure(label, e)


def transport_failure(label: str, e: TimeoutError | aiohttp.ClientError) -> DeliveryResult:
    """A request that got no answer, naming ``label`` and never the URL: a URL that cannot be
    one is permanent; a timeout or a connection failure may pass, so it is retryable."""
    if isinstance(e, aiohttp.InvalidURL):
        return DeliveryResult(ok=False, error=f"{label}: invalid URL")
    if isinstance(e, TimeoutError):
        # The request may have reached the provider: the caller decides what that means.
        return DeliveryResult(False, FailureReason.RETRYABLE, f"{label}: timed out")
    return DeliveryResult(False, FailureReason.RETRYABLE, f"{label}: {os_reason(e)}")


def os_reason(e: BaseException) -> str:
    """A short cause without addresses (``Connection refused``), for the timeline: the
    exception's own text names the host and port, and a push server's address may be private."""
    err = getattr(e, "os_error", None)
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    return type(e).__name__


def status_failure(status: int, error: str, retry_after: float | None) -> DeliveryResult:
    """A non-2xx status as a failure: 429 rate limited, 5xx retryable, anything else permanent
    (``retry_after`` is kept only where a retry will follow)."""
    if status == 429:
        return DeliveryResult(False, FailureReason.RATE_LIMITED, error, retry_after=retry_after)
    if status >= 500:
        return DeliveryResult(False, FailureReason.RETRYABLE, error, retry_after=retry_after)
    return DeliveryResult(ok=False, error=error)


def failed_answer(label: str, answer: Answer, detail: str) -> DeliveryResult:
    """A non-2xx answer as a failure, as ``status_failure`` classes it."""
    error = f"{label}: HTTP {answer.status}" + (f": {detail}" if detail else "")
    return status_failure(answer.status, error, answer.retry_after)
