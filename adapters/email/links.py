"""Signed, expiring acknowledge / resolve links for emails and Teams cards.

A link is ``{public_url}/api/v1/{channel}/{action}?token=<payload>.<mac>`` (``channel``: ``email``,
``teams`` or ``ntfy``, each with its own secret; Pushover's callback URL carries such a token too):
``payload`` is the base64url of a compact JSON object naming the incident, the action, the expiry
(Unix seconds), the person the email went to and the incident's epoch when it was sent (its
escalation run: a reopen, severity raise or ack timeout starts a new one, and then the link no
longer acts); ``mac`` is the base64url of HMAC-SHA256 over a domain string naming the channel and
the payload bytes, keyed with the channel's ``link_secret``. Verification is constant-time, rejects
non-canonical base64 (so flipping a character can never yield the same bytes) and checks the action
named by the URL path against the signed one.

Pure: the caller passes the current time (the runtime clock), so the virtual clock drives tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

__all__ = [
    "ACTION_LINK_CHANNELS",
    "LINK_ACTIONS",
    "LINK_CHANNELS",
    "MIN_SECRET_LENGTH",
    "BadLink",
    "LinkClaims",
    "LinkSigner",
    "link_path",
]

LINK_ACTIONS: tuple[str, ...] = ("ack", "resolve")
"""Actions an email link can perform (the values of ``escalation.actions.Action``)."""

LINK_CHANNELS: tuple[str, ...] = ("email", "teams", "ntfy", "pushover")
"""Channels whose messages carry signed links (each its own path, domain and secret)."""

ACTION_LINK_CHANNELS: tuple[str, ...] = ("email", "teams", "ntfy")
"""Channels whose links are ``/api/v1/{channel}/{action}`` (Pushover's is its callback route)."""

MIN_SECRET_LENGTH = 16
"""Shorter keys could be brute-forced offline from one received link."""


# Domain separation: a MAC made for anything else with the same key (another channel's link
# included) never verifies here.
def _domain(channel: str) -> bytes:
    return f"tocsin-{channel}-link-v1\x00".encode()


_B64 = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_TOKEN = 4096  # incident ids and person names are short; anything longer is not ours


def link_path(action: str, channel: str = "email") -> str:
    """The HTTP path of ``action``'s link endpoint for ``channel``'s links."""
    return f"/api/v1/{channel}/{action}"


class BadLink(Exception):
    """The link must not act: ``reason`` is malformed, bad signature, wrong action or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def expired(self) -> bool:
        return self.reason == "expired"


@dataclass(frozen=True)
class LinkClaims:
    """What a verified link says: who may do what to which incident, until when."""

    incident_id: str
    action: str
    person: str
    expires: datetime
    epoch: int = 0  # the incident's state the link was sent for


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or not _B64.match(text):
        raise BadLink("malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadLink("malformed") from None
    # Unpadded base64 has spare low bits in its last character: insist on the one canonical
    # spelling so a tampered character is always a different token.
    if _b64encode(raw) != text:
        raise BadLink("malformed")
    return raw


class LinkSigner:
    """Makes and verifies link tokens with one secret, ttl and public base URL."""

    def __init__(
        self, secret: str | bytes, ttl: timedelta, public_url: str, *, channel: str = "email"
    ) -> None:
        if channel not in LINK_CHANNELS:
            raise ValueError(f"unknown link channel {channel!r}")
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"link_secret must be at least {MIN_SECRET_LENGTH} characters "
                "(it signs the acknowledge links in emails)"
            )
        if ttl <= timedelta(0):
            raise ValueError("link_ttl must be positive")
        self._key = key
        self.channel = channel
        self._domain = _domain(channel)
        self.ttl = ttl
        self.public_url = public_url.rstrip("/")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, self._domain + payload, hashlib.sha256).digest()

    def token(
        self, incident_id: str, action: str, person: str, now: datetime, *, epoch: int = 0
    ) -> str:
        """A token letting ``person`` perform ``action`` on the incident until ``now + ttl``,
        while the incident is still in escalation run ``epoch``."""
        if action not in LINK_ACTIONS:
            raise ValueError(f"unknown link action {action!r}")
        expires = int((now + self.ttl).timestamp())
        payload = json.dumps(
            {"i": incident_id, "a": action, "e": expires, "p": person, "v": epoch},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def url(
        self, incident_id: str, action: str, person: str, now: datetime, *, epoch: int = 0
    ) -> str:
        """The full link to put into a message."""
        query = urlencode({"token": self.token(incident_id, action, person, now, epoch=epoch)})
        return f"{self.public_url}{link_path(action, self.channel)}?{query}"

    def verify(self, token: str, action: str, now: datetime) -> LinkClaims:
        """The claims of a genuine, unexpired ``token`` for ``action``; BadLink otherwise."""
        if len(token) > _MAX_TOKEN or token.count(".") != 1:
            raise BadLink("malformed")
        payload_b64, mac_b64 = token.split(".")
        payload = _b64decode(payload_b64)
        mac = _b64decode(mac_b64)
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise BadLink("bad signature")
        try:
            data = json.loads(payload)
            incident_id, signed_action = data["i"], data["a"]
            person, expires = data["p"], data["e"]
            epoch = data.get("v", 0)  # links sent before epochs were signed: the first run
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BadLink("malformed") from None  # signed by us, so only an old format
        if not (
            isinstance(incident_id, str)
            and isinstance(signed_action, str)
            and isinstance(person, str)
            and isinstance(expires, int)
            and isinstance(epoch, int)
            and not isinstance(epoch, bool)
            and epoch >= 0
            and 0 < expires < 253402300800  # before 10000-01-01: a datetime can hold it
        ):
            raise BadLink("malformed")
        if signed_action != action:
            raise BadLink("wrong action")
        if now.timestamp() >= expires:
            raise BadLink("expired")
        return LinkClaims(
            incident_id=incident_id,
            action=signed_action,
            person=person,
            expires=datetime.fromtimestamp(expires, UTC),
            epoch=epoch,
        )
