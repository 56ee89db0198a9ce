"""The console's section (``auth.console``): who may open the web console, and how.

Two ways in. Built-in: a person signs in with a named token (``users``, or the API tokens) and
gets a signed, expiring session cookie. Behind an auth proxy (oauth2-proxy and the like): the
proxy's ``X-Forwarded-Email`` is believed only from ``proxy.trusted_proxies`` and mapped to a
person of ``people:`` by email.
"""

from __future__ import annotations

from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from rules.durations import Duration

__all__ = ["ConsoleAuth", "ConsoleUser", "ProxyAuth"]


class ConsoleUser(BaseModel):
    """Someone who signs in to the console with a token of their own."""

    model_config = ConfigDict(extra="forbid")

    # The name is who the timeline says acted, so it follows the API tokens' rule.
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    token: SecretStr
    scope: Literal["read", "write"] = "read"


class ProxyAuth(BaseModel):
    """An auth proxy in front of tocsin that tells who the visitor is."""

    model_config = ConfigDict(extra="forbid")

    # Only a request whose peer address is in one of these may speak for a visitor: anyone
    # else sending the headers is ignored (and gets the sign-in page).
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    email_header: str = Field(default="X-Forwarded-Email", min_length=1)
    user_header: str = Field(default="X-Forwarded-User", min_length=1)
    scope: Literal["read", "write"] = "read"
    # People (names under `people:`) who may act even though `scope` is read.
    writers: list[str] = Field(default_factory=list)


class ConsoleAuth(BaseModel):
    """Who may see the console (scope read) and act from it (scope write)."""

    model_config = ConfigDict(extra="forbid")

    users: list[ConsoleUser] = Field(default_factory=list)
    api_tokens: bool = True  # the API tokens sign in too, under their names and scopes
    session_ttl: Duration = timedelta(hours=12)
    # Signs session cookies. Unset: a random key per process (sessions end at a restart, and
    # replicas do not share them): set it when running more than one replica.
    session_secret: SecretStr | None = None
    proxy: ProxyAuth = Field(default_factory=ProxyAuth)

    @field_validator("users")
    @classmethod
    def _named_once(cls, v: list[ConsoleUser]) -> list[ConsoleUser]:
        v = [u for u in v if u.token.get_secret_value().strip()]
        names = [u.name for u in v]
        if len(set(names)) != len(names):
            raise ValueError("two console users share a name; each name is an identity")
        return v

    @field_validator("session_ttl")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be positive")
        return v

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return v
