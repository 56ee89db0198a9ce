"""The config checks and signer every channel with signed links (email, Teams, ntfy, Pushover)
shares, so that a secret's rules and the refusal at start are the same for all of them."""

from __future__ import annotations

from datetime import timedelta

from pydantic import SecretStr

from adapters.email.links import MIN_SECRET_LENGTH, LinkSigner

__all__ = ["Problem", "checked_signer", "public_url_problems", "secret_problems"]

Problem = tuple[tuple[str, ...], str]
"""(path under the channel's config section, message), as ``tocsin check`` prints it."""


def secret_problems(
    secret: SecretStr | None, field: str, required: str, signs: str
) -> list[Problem]:
    """What is wrong with the signing secret ``field``: absent (``required`` says why it must be
    there) or too short (``signs`` says what it signs)."""
    if secret is None:
        return [((), f"{field} is required: {required}")]
    if len(secret.get_secret_value().encode()) < MIN_SECRET_LENGTH:
        message = f"{field} must be at least {MIN_SECRET_LENGTH} characters ({signs})"
        return [((field,), message)]
    return []


def public_url_problems(public_url: str, used_for: str) -> list[Problem]:
    """Signed links are absolute: ``server.public_url`` must be an http(s) URL."""
    if public_url.startswith(("http://", "https://")):
        return []
    return [((), f"server.public_url must be an http(s) URL for {used_for}, not {public_url!r}")]


def checked_signer(
    problems: list[Problem],
    secret: SecretStr | None,
    ttl: timedelta,
    public_url: str,
    channel: str,
) -> LinkSigner:
    """The channel's signer; ValueError naming every problem when the check found any, so
    ``serve`` refuses exactly what ``tocsin check`` reports."""
    if problems or secret is None:
        raise ValueError("; ".join(message for _, message in problems))
    return LinkSigner(secret.get_secret_value(), ttl, public_url, channel=channel)
