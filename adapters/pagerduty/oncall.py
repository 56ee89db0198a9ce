"""Who is on call in PagerDuty: ``GET /oncalls`` through python-pagerduty, cached with a TTL.

python-pagerduty is synchronous, so every call runs in a worker thread through the shared
``RestClient`` (``rest.py``: 429s wait for ``ratelimit-reset``, bounded). Results are kept in a
``cachetools.TTLCache`` for ``oncall_cache_ttl`` so a page storm asks PagerDuty once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from prometheus_client import CollectorRegistry, Counter

from adapters.config import PagerDutyConfig
from adapters.pagerduty.rest import RestClient, RestError
from escalation.engine.clock import Clock

__all__ = ["OncallLookup", "OncallLookupError"]

_CACHE_SIZE = 1024


class OncallLookupError(RuntimeError):
    """PagerDuty could not say who is on call (the message holds no credential)."""


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.hits = Counter(
            "tocsin_pagerduty_oncall_cache_hits",
            "PagerDuty on-call lookups answered from the TTL cache.",
            registry=registry,
        )
        self.misses = Counter(
            "tocsin_pagerduty_oncall_cache_misses",
            "PagerDuty on-call lookups that asked the REST API.",
            registry=registry,
        )
        self.errors = Counter(
            "tocsin_pagerduty_oncall_errors",
            "PagerDuty on-call lookups that failed.",
            registry=registry,
        )


# One set of counters per registry: a config reload builds a new lookup on the same registry.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()
_METRICS_LOCK = threading.Lock()


def _metrics(registry: CollectorRegistry) -> _Metrics:
    with _METRICS_LOCK:
        m = _METRICS.get(registry)
        if m is None:
            m = _METRICS[registry] = _Metrics(registry)
        return m


Key = tuple[str | None, str | None]


class OncallLookup:
    """``await oncall(schedule_id=..., escalation_policy_id=...)`` → the on-call users' emails.

    For an escalation policy only its first (lowest) escalation level is returned: the people
    PagerDuty would notify first. Concurrent lookups of the same key share one request.
    """

    def __init__(
        self,
        cfg: PagerDutyConfig,
        registry: CollectorRegistry,
        *,
        clock: Clock | None = None,
        max_429_retries: int = 2,
        retry_delay: float = 1.5,
    ) -> None:
        if cfg.api_token is None:
            raise ValueError("adapters.pagerduty.api_token is needed for on-call lookups")
        self.cfg = cfg
        self._rest = RestClient(cfg, max_429_retries=max_429_retries, retry_delay=retry_delay)
        self._metrics = _metrics(registry)
        timer: Callable[[], float] = (
            (lambda: clock.now().timestamp()) if clock is not None else time.monotonic
        )
        ttl = max(cfg.oncall_cache_ttl.total_seconds(), 0.0)
        self._cache: TTLCache[Key, tuple[str, ...]] = TTLCache(_CACHE_SIZE, ttl, timer=timer)
        self._inflight: dict[Key, asyncio.Future[tuple[str, ...]]] = {}

    async def oncall(
        self, schedule_id: str | None = None, escalation_policy_id: str | None = None
    ) -> list[str]:
        """Emails of whoever is on call now (in PagerDuty's order, without duplicates)."""
        if not schedule_id and not escalation_policy_id:
            raise ValueError("name a schedule_id or an escalation_policy_id")
        key: Key = (schedule_id or None, escalation_policy_id or None)
        cached = self._cache.get(key)
        if cached is not None:
            self._metrics.hits.inc()
            return list(cached)
        running = self._inflight.get(key)
        if running is not None:
            self._metrics.hits.inc()  # served by the request already under way
            return list(await asyncio.shield(running))
        self._metrics.misses.inc()
        fut: asyncio.Future[tuple[str, ...]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            emails = await asyncio.to_thread(self._fetch, key)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as e:
            if isinstance(e, OncallLookupError):
                self._metrics.errors.inc()
            fut.set_exception(e)
            fut.exception()  # marks it retrieved: nobody else may be waiting
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(emails)
        self._cache[key] = emails
        return list(emails)

    async def close(self) -> None:
        """Close the HTTP client (in a thread: it is synchronous)."""
        await asyncio.to_thread(self._rest.close)

    def _fetch(self, key: Key) -> tuple[str, ...]:
        """In the worker thread: ask PagerDuty."""
        schedule_id, policy_id = key
        params: dict[str, Any] = {"include": ["users"]}
        if schedule_id:
            params["schedule_ids"] = [schedule_id]
        if policy_id:
            params["escalation_policy_ids"] = [policy_id]
        try:
            entries = self._rest.list_all("/oncalls", params)
        except RestError as e:
            raise OncallLookupError(str(e)) from None
        return _emails(entries, first_level_only=bool(policy_id))


def _emails(entries: list[dict[str, Any]], *, first_level_only: bool) -> tuple[str, ...]:
    levels = [lvl for e in entries if isinstance(lvl := e.get("escalation_level"), int)]
    lowest = min(levels) if (first_level_only and levels) else None
    out: list[str] = []
    for e in entries:
        if lowest is not None and e.get("escalation_level") != lowest:
            continue
        user = e.get("user") or {}
        email = user.get("email") if isinstance(user, dict) else None
        if isinstance(email, str) and email and email not in out:
            out.append(email)
    return tuple(out)
