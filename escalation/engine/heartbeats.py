"""Heartbeats in the store: arming, pings and expiries, each one transaction.

The decisions are ``incidents.heartbeats``'; this façade runs them in transactions. An expiry
is claimed like a due step (a lease, ``SKIP LOCKED`` on PostgreSQL) and fired in the claiming
transaction together with the incident it opens, so across replicas it opens one incident, once,
and a crash before the commit leaves it due for the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from escalation.engine.clock import Clock
from escalation.engine.service import EscalationService, StoreUnavailable
from escalation.incidents.heartbeats import (
    EXPIRED,
    Heartbeat,
    HeartbeatRecord,
    HeartbeatState,
    arm,
    decide_expiry,
    decide_ping,
    heartbeat_alert,
    retire,
    state_of,
)
from escalation.incidents.model import Changes
from escalation.store.base import Conflict, Store, StoreError, Tx

__all__ = ["HeartbeatService", "HeartbeatView", "UnknownHeartbeat"]

log = logging.getLogger("tocsin.heartbeats")

_RETRIES = 8


class UnknownHeartbeat(LookupError):
    """No heartbeat of that name is configured."""


@dataclass(frozen=True)
class HeartbeatView:
    """One configured heartbeat as the API, console and metrics show it."""

    name: str
    config: Heartbeat
    state: HeartbeatState
    last_ping: datetime | None
    due_at: datetime | None
    expired_at: datetime | None


class HeartbeatService:
    """Arms configured heartbeats, takes pings, and fires expiries for the engine."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        service: EscalationService,
        configured: Callable[[], Mapping[str, Heartbeat]],
    ) -> None:
        self.store = store
        self.clock = clock
        self.service = service
        self.configured = configured

    async def arm_all(self) -> None:
        """Arm every configured heartbeat not yet stored, and retire the pending ones no longer
        configured (at start and after a reload): the engine then never waits on a row it
        would not fire."""
        wanted = self.configured()
        try:
            gone = [r.id for r in await self.store.heartbeats() if r.id not in wanted]
            if not wanted and not gone:
                return
            async with self.store.transaction() as tx:
                now = self.clock.now()
                for name in sorted(wanted):
                    stored = await tx.heartbeat(name)
                    row = arm(name, wanted[name], stored, now)
                    if row is not None:
                        # Another replica may be arming it too: the first one's row stands.
                        await tx.put_heartbeat(row, only_new=stored is None)
                for name in gone:
                    stored = await tx.heartbeat(name)
                    if stored is not None and (row := retire(stored)) is not None:
                        await tx.put_heartbeat(row)
        except StoreError as e:
            raise StoreUnavailable(str(e) or type(e).__name__) from e

    async def views(self) -> list[HeartbeatView]:
        """Every configured heartbeat with its stored state, by name."""
        try:
            stored = {r.id: r for r in await self.store.heartbeats()}
        except StoreError as e:
            raise StoreUnavailable(str(e) or type(e).__name__) from e
        out = []
        for name, hb in sorted(self.configured().items()):
            rec = stored.get(name)
            out.append(
                HeartbeatView(
                    name,
                    hb,
                    state_of(rec),
                    rec.last_ping if rec else None,
                    rec.due_at if rec and rec.state != EXPIRED else None,
                    rec.expired_at if rec and rec.state == EXPIRED else None,
                )
            )
        return out

    async def ping(self, name: str) -> HeartbeatRecord:
        """Re-arm ``name``; if it had expired, resolve its incident in the same transaction."""
        hb = self.configured().get(name)
        if hb is None:
            raise UnknownHeartbeat(name)
        for _ in range(_RETRIES):
            now = self.clock.now()
            try:
                async with self.store.transaction() as tx:
                    after, expired_at = decide_ping(name, hb, await tx.heartbeat(name), now)
                    changes = Changes()
                    if expired_at is not None:
                        changes = await self._ingest(tx, name, hb, after, now, resolved=True)
                    await tx.put_heartbeat(after)
            except Conflict:
                continue
            except StoreError as e:
                raise StoreUnavailable(str(e) or type(e).__name__) from e
            self.service.ingested(changes, now)
            return after
        raise StoreUnavailable("a heartbeat ping kept conflicting with concurrent writers")

    async def expire_due(self, now: datetime, owner: str, lease: timedelta, batch: int) -> int:
        """Fire the heartbeats due at ``now`` (the engine's tick); how many were claimed."""
        if not self.configured():
            return 0  # no transaction per tick for a feature not in use (``arm_all`` retired
            # the rows of heartbeats no longer configured, so none of them is due)
        fired: list[Changes] = []
        try:
            async with self.store.transaction() as tx:
                claimed = await tx.claim_due_heartbeats(now, owner, now + lease, batch)
                for rec in claimed:
                    hb = self.configured().get(rec.id)
                    after = decide_expiry(hb, rec, now) or rec
                    if hb is not None and after.state == EXPIRED:
                        log.warning("heartbeat expired", extra={"heartbeat": rec.id})
                        fired.append(await self._ingest(tx, rec.id, hb, after, now))
                    await tx.put_heartbeat(after)
        except Conflict:
            return 0  # rolled back, nothing claimed: the next tick tries again
        for changes in fired:
            self.service.ingested(changes, now)
        return len(claimed)

    async def _ingest(
        self,
        tx: Tx,
        name: str,
        hb: Heartbeat,
        rec: HeartbeatRecord,
        now: datetime,
        *,
        resolved: bool = False,
    ) -> Changes:
        d = self.service.directory()
        n, classified = heartbeat_alert(
            name, hb, rec, d.matrix, resolved_at=now if resolved else None
        )
        _, changes = await self.service.ingest_in(tx, now, n, classified)
        # The ingest decision writes what Alertmanager's alerts did; this one was tocsin's own.
        changes.timeline[:] = [
            replace(e, actor="tocsin", source="heartbeat") if e.source == "alert" else e
            for e in changes.timeline
        ]
        if changes:
            await tx.apply(changes)
        return changes
