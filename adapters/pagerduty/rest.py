"""PagerDuty's REST API through python-pagerduty, shared by on-call lookups and webhook matching.

python-pagerduty is synchronous, so ``list_all`` is meant to run in a worker thread
(``asyncio.to_thread``). Two of its behaviours are changed here, on purpose:

- a 429 is retried by PagerDuty's own word: the ``ratelimit-reset`` header says how many seconds
  until the limit resets (the library ignores it and retries forever on its own schedule). A
  429 without the header waits ``retry_delay``, doubling. Either way the retries are bounded by
  a count and by the call's time budget: a wait whose retry could end past the budget is not
  waited, the call fails (a webhook has to be answered within PagerDuty's 5 seconds); each
  request's timeout is at most half the budget;
- network errors are not retried inside the thread: the caller decides (a webhook answers 503
  and PagerDuty retries the delivery).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any, cast

from adapters.config import PagerDutyConfig
from adapters.pagerduty.tls import config_ssl_context, redact

__all__ = ["RestClient", "RestError", "reset_seconds"]


class RestError(RuntimeError):
    """PagerDuty's REST API did not answer; ``status`` is the HTTP status, if there was one.

    The message never holds the API token.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def reset_seconds(headers: Any) -> float | None:
    """``ratelimit-reset`` as seconds to wait (None when absent or not a number)."""
    raw = headers.get("ratelimit-reset") if headers is not None else None
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return max(value, 0.0) if value is not None and value == value else None  # NaN is no answer


class _RateLimited(Exception):
    """Raised from the client's response hook to take a 429 out of the library's own loop."""

    def __init__(self, response: Any) -> None:
        super().__init__("429")
        self.response = response


class RestClient:
    """One configured REST client: ``list_all(path, params)`` in a worker thread."""

    def __init__(
        self,
        cfg: PagerDutyConfig,
        *,
        budget: float | None = None,
        max_429_retries: int = 2,
        retry_delay: float = 1.5,
    ) -> None:
        if importlib.util.find_spec("pagerduty") is None:
            raise ValueError("PagerDuty REST calls need the python-pagerduty package (`pagerduty`)")
        if cfg.api_token is None:
            raise ValueError("adapters.pagerduty.api_token is needed for PagerDuty REST calls")
        if not cfg.api_url.startswith("https://"):
            raise ValueError("adapters.pagerduty.api_url must use https:// (PagerDuty's REST API)")
        self.cfg = cfg
        self._token = cfg.api_token.get_secret_value()
        timeout = cfg.timeout.total_seconds()
        # A call's whole time, 429 waits included; each request's timeout fits inside it.
        self.budget = budget if budget is not None else max(timeout * (max_429_retries + 1), 1.0)
        # At most half the budget per request, so a retry after a 429 can still fit in it.
        self._timeout = min(timeout, self.budget / 2)
        self._max_429 = max_429_retries
        self._retry_delay = retry_delay
        self._client: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def list_all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every entry of an index endpoint, all pages (blocking: run it in a thread)."""
        import pagerduty  # only deployments that call the REST API load the client library

        self._local.deadline = time.monotonic() + self.budget
        what = f"PagerDuty GET {path.split('?')[0]}"
        try:
            return list(self._client_now().iter_all(path, params=params or {}))
        except pagerduty.HttpError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            message = f"{what} failed: HTTP {status}" if status else f"{what} failed"
            raise RestError(message, status) from None
        except pagerduty.Error as e:
            raise RestError(redact(f"{what} failed ({type(e).__name__})", [self._token])) from None
        except Exception as e:  # httpx2 transport errors and the like
            raise RestError(f"{what} failed ({type(e).__name__})") from None

    def close(self) -> None:
        """Close the HTTP client (blocking)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- in the worker thread -------------------------------------------------------------------

    def wait_for_429(self, response: Any, attempt: int) -> float | None:
        """Seconds to wait before retrying a 429, or None: give up (count or budget spent)."""
        if attempt >= self._max_429:
            return None
        wait = reset_seconds(getattr(response, "headers", None))
        if wait is None:
            wait = self._retry_delay * (2**attempt)
        deadline = getattr(self._local, "deadline", None)
        # The wait and the retried request (up to its timeout) must both end within the budget.
        if deadline is not None and time.monotonic() + wait + self._timeout > deadline:
            return None
        return wait

    def _client_now(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _build(self)
            return self._client


def _build(owner: RestClient) -> Any:
    import pagerduty

    class _Client(pagerduty.RestApiV2Client):
        def postprocess(self, response: Any, suffix: str | None = None) -> None:
            super().postprocess(response, suffix)
            if response.status_code == 429:
                raise _RateLimited(response)

        # The library's own signature (it narrows httpx's, which mypy reports as an override).
        def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
            attempt = 0
            while True:
                try:
                    return super().request(method, url, **kwargs)
                except _RateLimited as limited:
                    wait = owner.wait_for_429(limited.response, attempt)
                    if wait is None:
                        return limited.response  # the caller raises HttpError for it
                    attempt += 1
                    time.sleep(wait)

    ctx = config_ssl_context(owner.cfg)
    kw: dict[str, Any] = {"verify": ctx} if ctx is not None else {}
    client = _Client(
        owner.cfg.api_token.get_secret_value() if owner.cfg.api_token else "",
        default_from=owner.cfg.from_email,
        base_url=owner.cfg.api_url,
        **kw,
    )
    # Typed as int by the library; httpx takes seconds as a float.
    cast(Any, client).timeout = owner._timeout
    client.max_network_attempts = 0  # no retry in the thread: the caller decides
    return client
