"""An extra CA to trust (``tls_ca_path``), one rule for every channel that has one.

``check`` and the channel's construction both go through ``trust_context``, so ``tocsin check``
refuses exactly the CA files that would keep ``serve`` (and a reload) from building the channel.
"""

from __future__ import annotations

import ssl

__all__ = ["ca_file_problems", "trust_context"]


def trust_context(ca_file: str | None, ca_pem: str | None = None) -> ssl.SSLContext | None:
    """The system trust store plus an extra CA (a path or PEM text); None means the default.

    The extra CA is *added* to the default roots (a private proxy or a test CA), never a
    replacement for them. ValueError says why the CA cannot be loaded (never its contents).
    """
    if ca_file is None and not ca_pem:
        return None
    ctx = ssl.create_default_context()
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"the TLS CA file {ca_file!r} cannot be loaded: {_why(e)}") from None
    if ca_pem:
        try:
            ctx.load_verify_locations(cadata=ca_pem)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"the extra TLS CA cannot be loaded: {_why(e)}") from None
    return ctx


def ca_file_problems(
    ca_file: str | None, field: str = "tls_ca_path"
) -> list[tuple[tuple[str, ...], str]]:
    """What keeps ``ca_file`` from being trusted, as (path under the channel's section, message).

    A relative path is read from the working directory, as the channel reads it at start.
    """
    try:
        trust_context(ca_file)
    except ValueError as e:
        return [((field,), str(e))]
    return []


def _why(e: OSError) -> str:
    # ssl.SSLError is an OSError whose strerror is OpenSSL's own text ("[X509] PEM lib ...").
    if isinstance(e, ssl.SSLError):
        return "it holds no PEM certificate"
    return e.strerror or str(e)
