"""Who is looking: a signed session cookie, or an auth proxy we trust; and CSRF tokens.

A session cookie holds the credential's name and kind, a keyed fingerprint of its token and an
expiry, signed with the console key (HMAC-SHA256). It never holds the token. Each request looks
the credential up again in the current configuration, so removing or rotating a token, or
lowering its scope, takes effect on the next click.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aiohttp import web

from config.schema import TocsinConfig
from config.server import AuthConfig

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "Credential",
    "ProxyRefused",
    "Viewer",
    "csrf_token",
    "find_credential",
    "issue_session",
    "proxy_viewer",
    "read_session",
]

SESSION_COOKIE = "tocsin_session"
CSRF_COOKIE = "tocsin_csrf"
NONCE = re.compile(r"[A-Za-z0-9_-]{20,64}")

Scope = Literal["read", "write"]
Kind = Literal["user", "api"]


@dataclass(frozen=True)
class Viewer:
    """The signed-in identity: the name every action is recorded under, and its scope."""

    name: str
    scope: Scope
    via: Literal["session", "proxy"]

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


@dataclass(frozen=True)
class Credential:
    kind: Kind
    name: str
    token: str
    scope: Scope


class ProxyRefused(Exception):
    """The trusted proxy vouched for someone who is not one of tocsin's people."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, *parts: str) -> str:
    msg = "\0".join((purpose, *parts)).encode("utf-8", "surrogateescape")
    return _b64(hmac.new(key, msg, hashlib.sha256).digest())


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )


def credentials(auth: AuthConfig) -> list[Credential]:
    """Every credential that may sign in: console users, then (if allowed) the API tokens."""
    out = [
        Credential("user", u.name, u.token.get_secret_value(), u.scope) for u in auth.console.users
    ]
    if auth.console.api_tokens:
        out += [
            Credential("api", t.name, t.token.get_secret_value(), t.scope) for t in auth.api_tokens
        ]
    return out


def find_credential(auth: AuthConfig, name: str, token: str) -> Credential | None:
    """The credential named ``name`` whose token is ``token``; every one is compared in
    constant time, so the answer's timing tells nothing about which came close."""
    found: Credential | None = None
    for c in credentials(auth):
        if _eq(name, c.name) & _eq(token, c.token) and found is None:
            found = c
    return found


def issue_session(key: bytes, cred: Credential, expires: datetime) -> str:
    payload = {
        "k": cred.kind,
        "n": cred.name,
        "f": _mac(key, "token", cred.token),
        "e": int(expires.timestamp()),
    }
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_mac(key, 'session', body)}"


def read_session(key: bytes, value: str, now: datetime, auth: AuthConfig) -> Viewer | None:
    """The viewer a session cookie stands for, or None (forged, expired or revoked)."""
    body, _, sig = value.partition(".")
    if not body or not _eq(sig, _mac(key, "session", body)):
        return None
    try:
        payload = json.loads(_unb64(body))
        kind, name, fingerprint, expires = payload["k"], payload["n"], payload["f"], payload["e"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(expires, int) or expires <= now.timestamp():
        return None
    for c in credentials(auth):
        if c.kind == kind and c.name == name and _eq(str(fingerprint), _mac(key, "token", c.token)):
            return Viewer(c.name, c.scope, "session")
    return None


def proxy_viewer(request: web.Request, cfg: TocsinConfig) -> Viewer | None:
    """Who the auth proxy says this is, when the request comes from a trusted proxy.

    Headers from any other address are ignored: anyone can send them. Raises ProxyRefused when
    the proxy vouches for someone no person of the configuration matches.
    """
    proxy = cfg.auth.console.proxy
    email = request.headers.get(proxy.email_header, "").strip()
    user = request.headers.get(proxy.user_header, "").strip()
    if not proxy.trusted_proxies or not (email or user) or not _trusted(request, cfg):
        return None
    wanted = (email or user).casefold()
    for name, person in cfg.people.items():
        if (person.email or "").casefold() == wanted or (not email and name.casefold() == wanted):
            scope: Scope = "write" if proxy.scope == "write" or name in proxy.writers else "read"
            return Viewer(name, scope, "proxy")
    raise ProxyRefused(email or user)


def _trusted(request: web.Request, cfg: TocsinConfig) -> bool:
    try:
        peer = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    return any(peer in net for net in cfg.auth.console.proxy.trusted_proxies)


def csrf_token(key: bytes, nonce: str, who: str) -> str:
    """The token every form of this browser (``nonce``, its CSRF cookie) carries for ``who``."""
    return _mac(key, "csrf", nonce, who)
