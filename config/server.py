"""The router's sections (``server:``, ``auth:``).

They live here rather than in ``router/`` because imports flow router → config: the HTTP layer
reads these models, config composes them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.http import absolute_http_url
from config.console import ConsoleAuth
from rules.durations import Duration

__all__ = [
    "PAGERDUTY_RETRY_HORIZON",
    "REPLAY_CLOCK_SKEW",
    "ApiToken",
    "AuthConfig",
    "BasicCredential",
    "GenieKey",
    "ReceiverAuth",
    "ServerConfig",
]

# A signed webhook's clock and ours may disagree a little: an event this far in the future is
# accepted, and its dedup id is kept this much longer than the replay window.
REPLAY_CLOCK_SKEW = timedelta(minutes=5)
# PagerDuty retries a webhook that failed (5xx, 429, timeout) "for up to 48 hours" (its webhook
# behaviour docs). The replay window defaults to that, so a retry after tocsin answered 503 still
# acts; a replay within it is refused by its remembered event id, which is kept as long.
PAGERDUTY_RETRY_HORIZON = timedelta(hours=48)


class ServerConfig(BaseModel):
    """Where tocsin listens, how big and how slow a request may be, how old a webhook may be.

    ``replay_window``: a signed webhook event (PagerDuty's ``occurred_at``) older than this is
    refused; its dedup id is kept this long (plus the clock skew), so a replay is refused either
    way. It defaults to PagerDuty's retry horizon: a shorter one drops PagerDuty's later retries.
    ``header_timeout`` / ``body_timeout``: a client that has not sent its request headers (or
    its whole body) by then is disconnected, so slow clients cannot hold connections forever.
    """

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:9095"
    public_url: str = "http://127.0.0.1:9095"
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    replay_window: Duration = PAGERDUTY_RETRY_HORIZON
    header_timeout: Duration = timedelta(seconds=10)
    body_timeout: Duration = timedelta(seconds=30)

    @field_validator("replay_window", "header_timeout", "body_timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be positive")
        return v

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, v: str) -> str:
        # Links in pages and emails, and the phone provider's callbacks, are built on it: a
        # relative or empty one would send people (and PagerDuty) links that open nothing.
        url, why = absolute_http_url(v)
        if not url:
            raise ValueError(f"must be an absolute http(s) URL: {why}")
        return v

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        _, port = split_listen(v)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        return v

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(v: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9095`` for IPv6) → (host, port)."""
    host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class BasicCredential(BaseModel):
    """One username/password pair Alertmanager may send as HTTP basic auth."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr


class ReceiverAuth(BaseModel):
    """Credentials accepted on the Alertmanager receiver; several at once allow rotation."""

    model_config = ConfigDict(extra="forbid")

    bearer_tokens: list[SecretStr] = Field(default_factory=list)
    basic_auth: list[BasicCredential] = Field(default_factory=list)
    insecure: bool = False

    @field_validator("bearer_tokens")
    @classmethod
    def _drop_empty(cls, v: list[SecretStr]) -> list[SecretStr]:
        # `${TOKEN:-}` left unset must not become "the empty token is valid".
        return [t for t in v if t.get_secret_value().strip()]

    @model_validator(mode="after")
    def _not_open_by_accident(self) -> ReceiverAuth:
        if not self.bearer_tokens and not self.basic_auth and not self.insecure:
            raise ValueError(
                "the receiver has no credentials: set bearer_tokens or basic_auth "
                "(or insecure: true for local use only)"
            )
        return self


class ApiToken(BaseModel):
    """A bearer token for the incident API and reload."""

    model_config = ConfigDict(extra="forbid")

    # The name is the identity every action taken with this token is recorded under, so it is
    # required and unique: an unnamed token would make the timeline say who acted by guesswork.
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    token: SecretStr
    scope: Literal["read", "write"] = "read"


class GenieKey(BaseModel):
    """A key an Opsgenie-compatible sender presents as ``Authorization: GenieKey <key>``."""

    model_config = ConfigDict(extra="forbid")

    # As for API tokens: the name is who acts (an acknowledge or close sent with this key).
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    key: SecretStr


class AuthConfig(BaseModel):
    """Who may call tocsin."""

    model_config = ConfigDict(extra="forbid")

    receiver: ReceiverAuth
    api_tokens: list[ApiToken] = Field(default_factory=list)
    # Opsgenie's Alert API (router/opsgenie_api.py); none configured: those routes answer 401.
    genie_keys: list[GenieKey] = Field(default_factory=list)
    console: ConsoleAuth = Field(default_factory=ConsoleAuth)

    @field_validator("api_tokens")
    @classmethod
    def _drop_empty(cls, v: list[ApiToken]) -> list[ApiToken]:
        return [t for t in v if t.token.get_secret_value().strip()]

    @field_validator("genie_keys")
    @classmethod
    def _drop_empty_keys(cls, v: list[GenieKey]) -> list[GenieKey]:
        return [k for k in v if k.key.get_secret_value().strip()]

    @field_validator("api_tokens", "genie_keys")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for t in v:
            if t.name in seen:
                raise ValueError(
                    f"two {'API tokens' if isinstance(t, ApiToken) else 'Genie keys'} are named "
                    f"{t.name!r}: each one's name is the identity "
                    "its actions are recorded under, so names must differ"
                )
            seen.add(t.name)
        return v
