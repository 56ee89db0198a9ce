"""Slack's Web API through slack_sdk's ``AsyncWebClient``, and what its errors mean for delivery.

Every call goes out on the process's shared aiohttp session with slack_sdk's own retries off:
retrying is the dispatcher's job (its one retry table), so a 429 is never waited out here.
People's Slack ids are looked up by email (``users.lookupByEmail``) and the other way round
(``users.info``), each cached in a ``cachetools.TTLCache`` timed by tocsin's clock.

Errors are named by Slack's error code and the method, never with the token (slack_sdk's own
exception text carries the whole answer, so it is not passed on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.config import SlackConfig
from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.http import parse_retry_after
from escalation.engine.clock import Clock

__all__ = ["PERMANENT_ERRORS", "SlackApi", "SlackError", "failure"]

# Codes that no retry can cure: a person has to fix the token, a scope or the channel first.
PERMANENT_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "users_not_found",
        "user_not_found",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_arguments",
        "invalid_arg_name",
        "restricted_action",
        "cant_update_message",
        "message_not_found",
    }
)
# Slack's own trouble: worth another try later.
_RETRYABLE_ERRORS = frozenset(
    {"fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)


class SlackError(Exception):
    """A Slack call that failed: the method, Slack's error code, HTTP status, Retry-After."""

    def __init__(
        self, method: str, code: str, status: int = 200, retry_after: str | None = None
    ) -> None:
        super().__init__(f"slack {method}: {code}")
        self.method, self.code, self.status, self.retry_after = method, code, status, retry_after


def failure(e: SlackError, clock: Clock) -> DeliveryResult:
    """A failed call as a delivery result: 429 → rate limited (with its Retry-After), 5xx and
    Slack's own errors → retryable, everything else (invalid_auth, channel_not_found, …) →
    permanent."""
    error = str(e)
    if e.status == 429 or e.code in ("ratelimited", "rate_limited"):
        wait = parse_retry_after(e.retry_after, clock.now())
        return DeliveryResult(False, FailureReason.RATE_LIMITED, error, retry_after=wait)
    if e.status >= 500 or e.code in _RETRYABLE_ERRORS or e.code == "network":
        return DeliveryResult(False, FailureReason.RETRYABLE, error)
    return DeliveryResult(False, FailureReason.PERMANENT, error)


class SlackApi:
    """The calls tocsin makes, each raising ``SlackError`` on any failure."""

    def __init__(
        self, cfg: SlackConfig, http: Callable[[], aiohttp.ClientSession], clock: Clock
    ) -> None:
        self.cfg = cfg
        self._http = http
        ttl = cfg.user_cache_ttl.total_seconds()
        timer: Callable[[], float] = lambda: clock.now().timestamp()  # noqa: E731
        self._ids: TTLCache[str, str] = TTLCache(maxsize=10_000, ttl=ttl, timer=timer)
        self._emails: TTLCache[str, str] = TTLCache(maxsize=10_000, ttl=ttl, timer=timer)

    def _client(self) -> AsyncWebClient:
        return AsyncWebClient(
            token=self.cfg.bot_token.get_secret_value(),
            base_url=self.cfg.base_url,
            session=self._http(),
            timeout=max(1, int(self.cfg.timeout.total_seconds())),
            retry_handlers=[],
        )

    async def call(self, method: str, *, get: bool = False, **args: Any) -> dict[str, Any]:
        """One Web API call; its answer's data, or SlackError.

        JSON bodies for the chat methods (Block Kit arrays as they are), form/query arguments
        for the others, as slack_sdk's own per-method helpers send them.
        """
        client = self._client()
        try:
            if get:
                resp = await client.api_call(method, http_verb="GET", params=args)
            elif method.startswith("chat."):
                resp = await client.api_call(method, json=args)
            else:
                resp = await client.api_call(method, params=args)
        except SlackApiError as e:
            r = e.response
            code = r.get("error", "") if isinstance(r.data, dict) else ""
            raise SlackError(
                method,
                str(code or f"HTTP {r.status_code}"),
                r.status_code,
                r.headers.get("Retry-After"),
            ) from None
        except (TimeoutError, aiohttp.ClientError) as e:
            raise SlackError(method, f"network ({type(e).__name__})", 599) from None
        data = resp.data
        return dict(data) if isinstance(data, dict) else {}

    async def user_id(self, email: str) -> str:
        """The Slack user with this email (cached); SlackError ``users_not_found`` if none."""
        key = email.strip().lower()
        found = self._ids.get(key)
        if found is None:
            user = (await self.call("users.lookupByEmail", get=True, email=key))["user"]
            found = str(user["id"])
            self._ids[key] = found
            self._emails[found] = key
        return found

    async def email_of(self, user_id: str) -> str:
        """The email of Slack user ``user_id`` (cached; "" when Slack shows none)."""
        found = self._emails.get(user_id)
        if found is None:
            user = (await self.call("users.info", get=True, user=user_id))["user"]
            found = str(user.get("profile", {}).get("email") or "").lower()
            if found:
                self._emails[user_id] = found
                self._ids[found] = user_id
        return found
