"""Vonage: the Voice API for calls (an inline NCCO with a one-digit ``input``), the Messages API
for texts, and the JWTs on both sides.

- ``POST {base_url}/v1/calls``: ``to: [{type: phone, number}]``, ``from``, ``ncco`` (talk with
  ``bargeIn``, then ``input`` of one DTMF digit whose ``eventUrl`` is tocsin's
  ``/api/v1/phone/vonage/input?row=…``), ``event_url`` (``/api/v1/phone/vonage/event?row=…``: the
  call's status events), ``ringing_timer``. 201 ``{"uuid": …}``.
- ``POST {base_url}/v1/messages``: ``{"message_type": "text", "channel": "sms", "to", "from",
  "text"}``. 202 ``{"message_uuid": …}``.
- Numbers are E.164 without the ``+`` (``447700900123``), as both APIs take them.
- Requests carry ``Authorization: Bearer <JWT>``: RS256 over ``{application_id, iat, jti, exp}``
  signed with the application's private key (what Vonage's SDKs generate; 15 minutes).
- Vonage signs its webhooks with a JWT in ``Authorization: Bearer``: HS256 keyed with the
  account's signature secret, whose ``payload_hash`` claim is the SHA-256 (hex) of the body and
  whose ``iat`` is when it was signed. ``verify_webhook`` checks all three: the signature proves
  the sender, the hash that the body is the one signed, and the age (at most
  ``WEBHOOK_MAX_AGE``, give or take ``WEBHOOK_SKEW``) that it is not a capture replayed later.

Failures map as for Twilio: 429 rate limited, 5xx retryable (``Retry-After`` honoured), other 4xx
permanent (RFC 7807 ``title``/``detail`` in the error), a lost answer to a call request is an
unknown outcome (it may be ringing), to a text retryable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.config import PhoneConfig, VonageConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.http import parse_retry_after, status_failure
from adapters.phone.provider import VoicePage
from adapters.phone.twiml import clean_text

__all__ = [
    "EVENT_PATH",
    "FALLBACK_STATUSES",
    "INBOUND_PATH",
    "INPUT_PATH",
    "WEBHOOK_MAX_AGE",
    "WEBHOOK_SKEW",
    "VonageProvider",
    "app_jwt",
    "input_ncco",
    "private_key_problem",
    "say_ncco",
    "verify_webhook",
]

EVENT_PATH = "/api/v1/phone/vonage/event"
INPUT_PATH = "/api/v1/phone/vonage/input"
INBOUND_PATH = "/api/v1/phone/vonage/inbound"

FALLBACK_STATUSES = frozenset({"busy", "timeout", "failed", "rejected", "unanswered", "cancelled"})
"""Final call statuses meaning nobody heard the page: try the person's next channel."""

JWT_TTL = 15 * 60
# A signed webhook is refused once its ``iat`` is older than this (Vonage sends and retries a
# webhook within seconds), as Slack's signed requests are after 5 minutes; and refused if it
# claims to come from further in the future than the two clocks may disagree.
WEBHOOK_MAX_AGE = 5 * 60
WEBHOOK_SKEW = 60
_MAX_RING = 120  # Voice API's ceiling on ringing_timer
_MAX_ERROR = 200
INPUT_TIMEOUT = 10  # seconds of silence after the prompt (the API's DTMF maximum)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def app_jwt(application_id: str, key: rsa.RSAPrivateKey, now: float) -> str:
    """The RS256 JWT a request to Vonage's APIs carries (the SDKs' claims and lifetime)."""
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {
        "application_id": application_id,
        "iat": int(now),
        "jti": str(uuid.uuid4()),
        "exp": int(now) + JWT_TTL,
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fresh(claims: dict[str, Any], now: float) -> bool:
    """Whether the token was signed (``iat``) within the window around ``now`` and has not
    expired (``exp``, if it carries one)."""
    iat, exp = _number(claims.get("iat")), _number(claims.get("exp"))
    if iat is None or not now - WEBHOOK_MAX_AGE - WEBHOOK_SKEW <= iat <= now + WEBHOOK_SKEW:
        return False
    return "exp" not in claims or (exp is not None and now < exp + WEBHOOK_SKEW)


def verify_webhook(secret: str, authorization: str | None, body: bytes, now: float) -> bool:
    """Whether a webhook's ``Authorization: Bearer`` JWT is Vonage's HS256 signature (keyed
    with the signature secret) of this very ``body`` (its ``payload_hash`` claim), signed no
    longer ago than ``WEBHOOK_MAX_AGE`` before ``now`` (UNIX seconds)."""
    if not secret or not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return False
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
        given = _unb64url(parts[2])
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        return False  # "none" or an RS/HS confusion is never accepted
    want = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(want, given):
        return False
    payload_hash = claims.get("payload_hash")
    digest = hashlib.sha256(body).hexdigest()
    if not (isinstance(payload_hash, str) and hmac.compare_digest(payload_hash.lower(), digest)):
        return False
    return _fresh(claims, now)


def callback_url(public_url: str, path: str, refs: Sequence[str]) -> str:
    """``{public_url}{path}?row=<id>[&row=<id>...]``."""
    return f"{public_url.rstrip('/')}{path}?{urlencode([('row', r) for r in refs], safe=':')}"


def input_ncco(text: str, input_url: str, *, loop: int = 2) -> list[dict[str, Any]]:
    """Say ``text`` (interruptible) and wait for one digit, posted to ``input_url``."""
    return [
        {"action": "talk", "text": clean_text(text, 1500), "bargeIn": True, "loop": loop},
        {
            "action": "input",
            "type": ["dtmf"],
            "dtmf": {"maxDigits": 1, "timeOut": INPUT_TIMEOUT},
            "eventUrl": [input_url],
            "eventMethod": "POST",
        },
    ]


def say_ncco(text: str) -> list[dict[str, Any]]:
    """Say ``text``; the call ends after the last action."""
    return [{"action": "talk", "text": clean_text(text, 1500)}]


def _load_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), None)
    except (ValueError, TypeError):
        raise ValueError(
            "vonage.private_key is not a PEM private key without a passphrase"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("vonage.private_key is not an RSA key (the application's key is)")
    return key


def private_key_problem(pem: str) -> str:
    """Why ``pem`` cannot sign Vonage's JWTs, or "" (for ``tocsin check``)."""
    try:
        _load_key(pem)
    except ValueError as e:
        return str(e)
    return ""


def _plain(number: str) -> str:
    return number.removeprefix("+")


def _describe(body: str) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    parts = [str(data[k]) for k in ("title", "detail") if data.get(k)]
    return ": ".join(parts)[:_MAX_ERROR]


class VonageProvider:
    """A ``PhoneProvider`` speaking Vonage's Voice and Messages APIs."""

    voice = True

    def __init__(self, phone: PhoneConfig, cfg: VonageConfig, ctx: AdapterContext) -> None:
        self.cfg = cfg
        self.public_url = ctx.public_url.rstrip("/")
        self.ring = max(1, min(_MAX_RING, int(phone.ring_timeout.total_seconds())))
        self._http = ctx.http
        self._clock = ctx.clock
        self._key = _load_key(cfg.private_key.get_secret_value())
        seconds = cfg.timeout.total_seconds()
        self._timeout = aiohttp.ClientTimeout(total=seconds, connect=min(5.0, seconds / 2))

    def call_body(self, to: str, page: VoicePage) -> dict[str, Any]:
        """The create-call request for ``page``."""
        text = f"{page.speech} {page.prompt}"
        return {
            "to": [{"type": "phone", "number": _plain(to)}],
            "from": {"type": "phone", "number": _plain(self.cfg.from_number)},
            "ncco": input_ncco(text, callback_url(self.public_url, INPUT_PATH, page.refs)),
            "event_url": [callback_url(self.public_url, EVENT_PATH, page.refs)],
            "event_method": "POST",
            "ringing_timer": self.ring,
        }

    def sms_body(self, to: str, body: str) -> dict[str, Any]:
        """The Messages API request texting ``body``."""
        return {
            "message_type": "text",
            "channel": "sms",
            "to": _plain(to),
            "from": _plain(self.cfg.from_number),
            "text": body[:1000],
        }

    async def place_call(self, to: str, page: VoicePage) -> DeliveryResult:
        """Create the call; a lost answer is ``unknown`` (the phone may already be ringing)."""
        return await self._post("/v1/calls", self.call_body(to, page), "call", "uuid")

    async def send_sms(self, to: str, body: str) -> DeliveryResult:
        """Send the text."""
        return await self._post("/v1/messages", self.sms_body(to, body), "sms", "message_uuid")

    async def _post(
        self, path: str, body: dict[str, Any], what: str, id_key: str
    ) -> DeliveryResult:
        token = app_jwt(self.cfg.application_id, self._key, time.time())
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            async with self._http().post(
                self.cfg.base_url.rstrip("/") + path,
                json=body,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                text = await resp.text()
        except aiohttp.InvalidURL:
            return DeliveryResult(ok=False, error=f"vonage {what}: invalid base_url")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            error = f"vonage {what}: cannot connect ({type(e).__name__})"
            return DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error=error)
        except (TimeoutError, aiohttp.ClientError) as e:
            reason = "timed out" if isinstance(e, TimeoutError) else type(e).__name__
            if what == "sms":
                error = f"vonage sms: {reason}"
                return DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error=error)
            return DeliveryResult(
                ok=False,
                reason=FailureReason.UNKNOWN_OUTCOME,
                error=f"vonage call: {reason} after the request was sent; it may be ringing",
            )
        return self._result(what, id_key, status, text, retry_after)

    def _result(
        self, what: str, id_key: str, status: int, text: str, retry_after: str | None
    ) -> DeliveryResult:
        if 200 <= status < 300:
            try:
                ident = json.loads(text).get(id_key, "")
            except (ValueError, AttributeError):
                ident = ""
            return DeliveryResult(ok=True, provider_id=str(ident))
        detail = _describe(text)
        error = f"vonage {what} {status}" + (f": {detail}" if detail else "")
        return status_failure(status, error, parse_retry_after(retry_after, self._clock.now()))
