"""Record builders and shorthands shared by the store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from escalation.incidents.model import (
    AlertRecord,
    Changes,
    IncidentRecord,
    OutboxRecord,
    Status,
    StepRecord,
    TimelineEvent,
)
from escalation.store.base import Store
from escalation.store.migrations import MIGRATIONS

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
ALL_VERSIONS = [mig.version for mig in MIGRATIONS]


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- record builders ----------------------------------------------------------------------------


def incident(
    iid: str, *, key: str | None = None, opened: datetime = T0, **kw: Any
) -> IncidentRecord:
    fields: dict[str, Any] = {
        "id": iid,
        "number": 0,
        "key": key or f"key-{iid}",
        "status": Status.TRIGGERED,
        "severity": "P1",
        "title": f"title {iid}",
        "team": "db",
        "policy_name": "default",
        "policy": {"steps": [{"after": "0s", "notify": ["schedule:primary"]}]},
        "level": {"ack": "5m"},
        "opened_at": opened,
        "updated_at": opened,
    }
    fields.update(kw)
    return IncidentRecord(**fields)


def step(sid: str, incident_id: str = "inc-1", *, due: datetime = T0, **kw: Any) -> StepRecord:
    return StepRecord(
        id=sid,
        incident_id=incident_id,
        kind=kw.pop("kind", "page"),
        epoch=kw.pop("epoch", 0),
        round=kw.pop("round", 0),
        tier=kw.pop("tier", 0),
        due_at=due,
        **kw,
    )


def outbox(
    oid: str, incident_id: str = "inc-1", *, not_before: datetime = T0, **kw: Any
) -> OutboxRecord:
    fields: dict[str, Any] = {
        "id": oid,
        "incident_id": incident_id,
        "step_id": None,
        "kind": "page",
        "tier": 0,
        "round": 0,
        "target": "schedule:primary",
        "person": "alice",
        "channel": "pagerduty",
        "created_at": T0,
        "not_before": not_before,
    }
    fields.update(kw)
    return OutboxRecord(**fields)


def alert(incident_id: str, fp: str, starts: datetime = T0, **kw: Any) -> AlertRecord:
    fields: dict[str, Any] = {
        "incident_id": incident_id,
        "fingerprint": fp,
        "starts_at": starts,
        "status": "firing",
        "ends_at": None,
        "labels": {"alertname": "HighLatency", "service": "api"},
        "annotations": {"summary": "slow"},
        "generator_url": "http://prom/graph",
        "severity": "P1",
        "rule": "latency",
        "first_seen": starts,
        "last_seen": starts,
    }
    fields.update(kw)
    return AlertRecord(**fields)


def event(incident_id: str, at: datetime, kind: str, message: str = "") -> TimelineEvent:
    return TimelineEvent(
        incident_id=incident_id, at=at, kind=kind, actor="tocsin", source="engine", message=message
    )


async def apply(store: Store, **changes: Any) -> None:
    async with store.transaction() as tx:
        await tx.apply(Changes(**changes))


async def steps_of(
    store: Store, incident_id: str, *, pending_only: bool = False
) -> list[StepRecord]:
    async with store.transaction() as tx:
        return await tx.steps_of(incident_id, pending_only=pending_only)


async def outbox_of(store: Store, incident_id: str) -> list[OutboxRecord]:
    async with store.transaction() as tx:
        return await tx.outbox_of(incident_id)


async def claim_steps(
    store: Store, now: datetime, owner: str, lease: datetime, limit: int = 10
) -> list[str]:
    async with store.transaction() as tx:
        return [s.id for s in await tx.claim_due_steps(now, owner, lease, limit)]


async def claim_outbox(
    store: Store, now: datetime, owner: str, lease: datetime, limit: int = 10
) -> list[str]:
    async with store.transaction() as tx:
        return [o.id for o in await tx.claim_outbox(now, owner, lease, limit)]


def states(records: list[StepRecord] | list[OutboxRecord]) -> dict[str, str]:
    return {r.id: str(r.state) for r in records}
