"""Which dedup keys a PagerDuty incident holds: ``GET /incidents/{id}/alerts``, cached.

A v3 webhook about an incident PagerDuty opened for an Events API alert carries
``"incident_key": null`` ("Incidents with child alerts do not have an incident key", PagerDuty's
REST reference); only the incident's alerts tell the ``alert_key``, which is the ``dedup_key``
tocsin sent (its incident id). The answer is kept in a ``cachetools.TTLCache`` for a few
minutes, and deliveries arriving while it is being asked wait for that same request, so a burst
of deliveries about one incident asks PagerDuty once; the webhook route
then records an alias, so later deliveries need no lookup at all.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from cachetools import TTLCache

from adapters.config import PagerDutyConfig
from adapters.pagerduty.rest import RestClient, RestError
from escalation.engine.clock import Clock

__all__ = ["LOOKUP_BUDGET", "AlertLookupError", "IncidentAlerts"]

# PagerDuty waits 5 s for a webhook's answer; the lookup (429 waits included) must fit well
# inside, leaving time for the store.
LOOKUP_BUDGET = 3.0
_CACHE_TTL = 300.0
_CACHE_SIZE = 4096
# PagerDuty's object ids are letters and digits; anything else is not an id of theirs.
_PD_ID = re.compile(r"[A-Za-z0-9]{1,64}")


class AlertLookupError(RuntimeError):
    """PagerDuty could not say (down, 5xx, 429 past the budget, timeout, credentials refused)."""


class IncidentAlerts:
    """``await alert_keys(pd_incident_id)`` → the ``alert_key`` of each of its alerts.

    An incident PagerDuty does not know (404) has none: it is not tocsin's. Any other failure
    raises ``AlertLookupError`` and is not cached.
    """

    def __init__(
        self,
        cfg: PagerDutyConfig,
        *,
        clock: Clock | None = None,
        budget: float = LOOKUP_BUDGET,
        ttl: float = _CACHE_TTL,
        max_429_retries: int = 2,
        retry_delay: float = 0.5,
    ) -> None:
        self.cfg = cfg
        self._rest = RestClient(
            cfg, budget=budget, max_429_retries=max_429_retries, retry_delay=retry_delay
        )
        timer: Callable[[], float] = (
            (lambda: clock.now().timestamp()) if clock is not None else time.monotonic
        )
        self._cache: TTLCache[str, tuple[str, ...]] = TTLCache(_CACHE_SIZE, ttl, timer=timer)
        self._inflight: dict[str, asyncio.Future[tuple[str, ...]]] = {}

    async def alert_keys(self, pd_incident_id: str, *, fresh: bool = False) -> tuple[str, ...]:
        """The dedup keys of the incident's alerts (empty: none, or not an incident of ours).

        ``fresh``: ask PagerDuty even if a cached answer is there (the incident's alerts are
        known to have changed: another incident was merged into it).
        """
        if not _PD_ID.fullmatch(pd_incident_id):
            return ()
        cached = None if fresh else self._cache.get(pd_incident_id)
        if cached is not None:
            return cached
        # Concurrent first deliveries about one incident (a note and an ack at once) share one
        # request. A fresh ask does not join one that may have started before the change.
        task = None if fresh else self._inflight.get(pd_incident_id)
        if task is None:
            task = asyncio.ensure_future(self._lookup(pd_incident_id))
            self._inflight[pd_incident_id] = task
            task.add_done_callback(lambda t: self._landed(pd_incident_id, t))
        # Shielded: one waiting delivery given up on must not cancel the others' request.
        return await asyncio.shield(task)

    async def _lookup(self, pd_incident_id: str) -> tuple[str, ...]:
        keys = await asyncio.to_thread(self._fetch, pd_incident_id)
        self._cache[pd_incident_id] = keys
        return keys

    def _landed(self, pd_incident_id: str, task: asyncio.Future[tuple[str, ...]]) -> None:
        if self._inflight.get(pd_incident_id) is task:
            del self._inflight[pd_incident_id]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have been cancelled

    async def close(self) -> None:
        await asyncio.to_thread(self._rest.close)

    def _fetch(self, pd_incident_id: str) -> tuple[str, ...]:
        """In the worker thread: ask PagerDuty."""
        try:
            alerts = self._rest.list_all(f"/incidents/{pd_incident_id}/alerts")
        except RestError as e:
            if e.status == 404:
                return ()
            raise AlertLookupError(str(e)) from None
        keys = (a.get("alert_key") for a in alerts if isinstance(a, dict))
        return tuple(dict.fromkeys(k for k in keys if isinstance(k, str) and k))
