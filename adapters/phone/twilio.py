"""Twilio's REST contract for calls and texts, spoken directly with aiohttp.

``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json`` and ``.../Messages.json``,
form-encoded PascalCase parameters, HTTP basic auth ``AccountSid:AuthToken``, JSON answers.
Why not the twilio SDK: its async client opens its own aiohttp session (ours is shared and
closed by the runtime), it retries by itself (the dispatcher owns retries, and a repeated call
request must never happen blindly), and its exceptions lose the one fact we need most: whether
the request may have reached Twilio. The contract is four form fields and a status code.

Outcome of one attempt (``DeliveryResult``):

    201 / 2xx ...................................... ok, provider_id = the Call / Message sid
    429 ............................................ rate limited (Retry-After honoured)
    5xx ............................................ retryable (Retry-After honoured)
    400 (21211 invalid To, 21608 unverified,
         21610 unsubscribed, anything else), 401,
         403, 404, other 4xx ........................ permanent
    connection refused / DNS / connect timeout ..... retryable (nothing reached Twilio)
    timeout or disconnect after the request went out
         call .................................... unknown outcome (it may be ringing:
                                                   never re-dial)
         text .................................... retryable (a duplicate text is harmless)
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

from adapters.config import PhoneConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.http import os_reason, parse_retry_after, status_failure
from adapters.phone.provider import VoicePage
from adapters.phone.twiml import call_twiml

__all__ = [
    "FALLBACK_STATUSES",
    "GATHER_PATH",
    "SMS_PATH",
    "STATUS_PATH",
    "TwilioProvider",
    "callback_url",
    "needs_fallback",
]

log = logging.getLogger("tocsin.adapters.phone")

API_VERSION = "2010-04-01"
GATHER_PATH = "/api/v1/phone/twilio/gather"
STATUS_PATH = "/api/v1/phone/twilio/status"
SMS_PATH = "/api/v1/phone/twilio/sms"

FALLBACK_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})
"""Final CallStatus values meaning nobody heard the page: try the person's next channel."""

_MAX_RING = 600  # Twilio's ceiling on Timeout
_MAX_ERROR = 200


def needs_fallback(call_status: str) -> bool:
    """Whether a status callback's ``CallStatus`` means the person was not reached."""
    return call_status in FALLBACK_STATUSES


def callback_url(public_url: str, path: str, refs: Sequence[str]) -> str:
    """``{public_url}{path}?row=<id>[&row=<id>...]``, absolute, as Twilio requests and signs it."""
    query = urlencode([("row", r) for r in refs], safe=":")
    return f"{public_url.rstrip('/')}{path}?{query}"


def _describe(body: str) -> tuple[int | None, str]:
    """Twilio's error code and message from a legacy or RFC 9457 error body."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    code = data.get("code")
    message = data.get("message") or data.get("detail") or data.get("title") or ""
    return (code if isinstance(code, int) else None), str(message)[:_MAX_ERROR]


class TwilioProvider:
    """A ``PhoneProvider`` speaking Twilio's REST API; callbacks point at ``public_url``."""

    def __init__(self, cfg: PhoneConfig, ctx: AdapterContext) -> None:
        self.cfg = cfg
        self.public_url = ctx.public_url.rstrip("/")
        self._http = ctx.http
        self._clock = ctx.clock
        self._account = f"{cfg.base_url.rstrip('/')}/{API_VERSION}/Accounts/{cfg.account_sid}"
        token = cfg.auth_token.get_secret_value() if cfg.auth_token is not None else ""
        credentials = f"{cfg.account_sid}:{token}".encode()
        self._auth = "Basic " + base64.b64encode(credentials).decode("ascii")
        seconds = cfg.timeout.total_seconds()
        # A short connect phase tells "never reached Twilio" (safe to repeat) apart from
        # "sent, answer lost" (a call may be ringing).
        self._timeout = aiohttp.ClientTimeout(total=seconds, connect=min(5.0, seconds / 2))

    # -- what is sent ------------------------------------------------------------------------

    def call_form(self, to: str, page: VoicePage) -> list[tuple[str, str]]:
        """The form parameters of the Calls.json request for ``page``."""
        twiml = call_twiml(
            page.speech,
            page.prompt,
            callback_url(self.public_url, GATHER_PATH, page.refs),
            page.goodbye,
        )
        ring = max(1, min(_MAX_RING, int(self.cfg.ring_timeout.total_seconds())))
        return [
            ("To", to),
            ("From", self.cfg.from_number),
            ("Twiml", twiml),
            ("StatusCallback", callback_url(self.public_url, STATUS_PATH, page.refs)),
            ("StatusCallbackEvent", "completed"),
            ("StatusCallbackMethod", "POST"),
            ("Timeout", str(ring)),
        ]

    def sms_form(self, to: str, body: str) -> list[tuple[str, str]]:
        """The form parameters of the Messages.json request."""
        return [("To", to), ("From", self.cfg.from_number), ("Body", body)]

    # -- PhoneProvider -----------------------------------------------------------------------

    async def place_call(self, to: str, page: VoicePage) -> DeliveryResult:
        """Create the call; a lost answer is ``unknown`` (the phone may already be ringing)."""
        try:
            form = self.call_form(to, page)
        except ValueError as e:
            return DeliveryResult(ok=False, error=f"twilio call not sent: {e}")
        return await self._post("Calls.json", form, repeat_safe=False)

    async def send_sms(self, to: str, body: str) -> DeliveryResult:
        """Create the message."""
        return await self._post("Messages.json", self.sms_form(to, body), repeat_safe=True)

    async def _post(
        self, resource: str, form: list[tuple[str, str]], *, repeat_safe: bool
    ) -> DeliveryResult:
        what = "call" if resource == "Calls.json" else "sms"
        try:
            async with self._http().post(
                f"{self._account}/{resource}",
                data=form,
                timeout=self._timeout,
                headers={"Accept": "application/json", "Authorization": self._auth},
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                body = await resp.text()
        except aiohttp.InvalidURL:
            return DeliveryResult(ok=False, error=f"twilio {what}: invalid base_url")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            # Nothing reached Twilio: safe to try again, even for a call.
            reason = os_reason(e)
            error = f"twilio {what}: cannot connect ({reason})"
            return DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error=error)
        except (TimeoutError, aiohttp.ClientError) as e:
            reason = "timed out" if isinstance(e, TimeoutError) else type(e).__name__
            if repeat_safe:
                error = f"twilio {what}: {reason}"
                return DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error=error)
            log.warning("twilio call request outcome unknown", extra={"reason": reason})
            return DeliveryResult(
                ok=False,
                reason=FailureReason.UNKNOWN_OUTCOME,
                error=f"twilio {what}: {reason} after the request was sent; it may be ringing",
            )
        return self._result(what, status, body, retry_after)

    def _result(self, what: str, status: int, body: str, retry_after: str | None) -> DeliveryResult:
        if 200 <= status < 300:
            try:
                sid = json.loads(body).get("sid", "")
            except (ValueError, AttributeError):
                sid = ""
            return DeliveryResult(ok=True, provider_id=str(sid))
        code, message = _describe(body)
        error = f"twilio {what} {status}" + (f" {code}" if code is not None else "")
        if message:
            error += f": {message}"
        return status_failure(status, error, parse_retry_after(retry_after, self._clock.now()))
