"""TLS trust and secret hygiene shared by the PagerDuty clients."""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from adapters.tls import trust_context

__all__ = ["config_ssl_context", "redact", "ssl_context"]


def ssl_context(ca_file: str | None, ca_pem: str | None = None) -> ssl.SSLContext | None:
    """The system trust store plus an extra CA (a path or PEM text); None means the default.

    ValueError (reported by the registry as a problem of ``adapters.pagerduty``) when the CA
    cannot be loaded; ``check`` finds the same through ``adapters.tls.ca_file_problems``.
    """
    return trust_context(ca_file, ca_pem)


def config_ssl_context(cfg: object) -> ssl.SSLContext | None:
    """``ssl_context`` for a config section with ``tls_ca_path`` and, if it has one, ``tls_ca``.

    The config loader turns a YAML ``tls_ca_path: PATH`` into ``tls_ca: <file contents>`` (its
    ``*_file`` secret rule), so a section that declares ``tls_ca`` gets the PEM that way.
    """
    return ssl_context(getattr(cfg, "tls_ca_path", None), getattr(cfg, "tls_ca", None))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced, so it may be logged or stored."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text
