"""Twilio's request signature: ``X-Twilio-Signature`` on every callback Twilio sends us.

signature = base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...)) where
``url`` is the full URL Twilio requested (scheme, host, path and query exactly as configured)
and the POST parameters are taken in sorted order (by name, then value for repeated names).
This is what twilio-python's ``RequestValidator`` computes; its published test vector is in
``tests/adapters/test_twilio.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Params", "compute_signature", "signature_urls", "verify_signature"]

Params = Mapping[str, str] | Iterable[tuple[str, str]]
"""POST parameters: a mapping, or (name, value) pairs when a name repeats."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _pairs(params: Params) -> list[tuple[str, str]]:
    # Sorted by name, then value, each distinct pair once (twilio-python and twilio-php do the
    # same; their published vector with a repeated parameter shows it).
    items = params.items() if isinstance(params, Mapping) else params
    return sorted({(str(k), str(v)) for k, v in items})


def compute_signature(auth_token: str, url: str, params: Params = ()) -> str:
    """The ``X-Twilio-Signature`` value Twilio sends for a POST of ``params`` to ``url``."""
    data = url + "".join(k + v for k, v in _pairs(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def signature_urls(url: str) -> list[str]:
    """``url`` as configured plus its variant with the default port added or removed.

    Twilio signs the URL as it requested it; whether an explicit ``:443`` survives depends on
    how the URL was written, so (like twilio-python) both spellings are accepted.
    """
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    out = [url]
    if parts.port is None and default is not None:
        out.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    elif parts.port is not None and parts.port == default:
        out.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    return out


def verify_signature(auth_token: str, url: str, params: Params, signature: str | None) -> bool:
    """True when ``signature`` is Twilio's signature of this request; compared in constant time."""
    if not signature or not auth_token:
        return False
    # Header bytes that are not UTF-8 reach us as lone surrogates: such a value can never be a
    # base64 signature, but it must compare unequal (403), not fail to encode (500).
    given = signature.strip().encode("utf-8", "replace")
    pairs = _pairs(params)  # an iterator would be spent by the first candidate
    ok = False
    for candidate in signature_urls(url):
        # Every candidate is computed and compared: no early exit that would time the match.
        ok |= hmac.compare_digest(compute_signature(auth_token, candidate, pairs).encode(), given)
    return ok
