"""Who may call: Alertmanager's bearer / basic credentials, and API tokens with scopes.

Every comparison is constant-time and runs against every configured credential, so neither
timing nor early exit tells an attacker which credential came close.
"""

from __future__ import annotations

import base64
import hmac
from typing import Literal

from aiohttp import web

from config.server import ApiToken, ReceiverAuth
from router.errors import ApiError

__all__ = ["require_api_token", "require_receiver_auth", "same_secret"]


def same_secret(a: str, b: str) -> bool:
    """``a == b`` in constant time, for a presented credential against a configured one."""
    # Header values arrive with undecodable bytes as surrogate escapes; a strict encode
    # would raise (→ 500) instead of simply not matching.
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )


def _unauthorized(
    detail: str, realm: str, schemes: tuple[str, ...] = ("Bearer", "Basic")
) -> ApiError:
    # Advertise only the schemes this endpoint accepts (the API takes bearer tokens only).
    challenge = ", ".join(f'{s} realm="{realm}"' for s in schemes)
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def require_receiver_auth(request: web.Request, auth: ReceiverAuth) -> None:
    """Accept the request's Authorization header or raise 401."""
    header = request.headers.get("Authorization", "")
    if auth.insecure and not auth.bearer_tokens and not auth.basic_auth:
        return
    if not header:
        raise _unauthorized("missing Authorization header", "tocsin")
    scheme, _, cred = header.partition(" ")
    cred = cred.strip()
    ok = False
    if scheme.lower() == "bearer":
        for token in auth.bearer_tokens:
            ok |= same_secret(cred, token.get_secret_value())
    elif scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(cred, validate=True).decode().partition(":")
        except ValueError:  # binascii.Error, non-ASCII input, UnicodeDecodeError
            raise _unauthorized("malformed basic credentials", "tocsin") from None
        for c in auth.basic_auth:
            ok |= same_secret(user, c.username) & same_secret(
                password, c.password.get_secret_value()
            )
    else:
        raise _unauthorized(f"unsupported authorization scheme {scheme[:20]!r}", "tocsin")
    if not ok:
        raise _unauthorized("invalid credentials", "tocsin")


def require_api_token(
    request: web.Request, tokens: list[ApiToken], need: Literal["read", "write"]
) -> ApiToken:
    """The API token presented, if it exists and has scope ``need``; else 401 / 403."""
    header = request.headers.get("Authorization", "")
    scheme, _, cred = header.partition(" ")
    if scheme.lower() != "bearer" or not cred.strip():
        raise _unauthorized("an API bearer token is required", "tocsin-api", ("Bearer",))
    found: ApiToken | None = None
    for t in tokens:
        if same_secret(cred.strip(), t.token.get_secret_value()):
            found = t
    if found is None:
        raise _unauthorized("invalid API token", "tocsin-api", ("Bearer",))
    if need == "write" and found.scope != "write":
        raise ApiError(403, "forbidden", f"token {found.name!r} has scope read; write is needed")
    return found
