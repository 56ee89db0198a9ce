"""Stored records built by hand for tests that drive the dispatcher directly."""

from __future__ import annotations

from datetime import UTC, datetime

from escalation.incidents.model import IncidentRecord, OutboxRecord, Status

__all__ = ["T0", "incident", "page"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def incident(
    iid: str = "inc1", *, status: Status = Status.TRIGGERED, number: int = 1
) -> IncidentRecord:
    """A P1 incident of the default policy, opened (and, if resolved, resolved) at ``T0``."""
    return IncidentRecord(
        id=iid,
        number=number,
        key=f"am/{iid}",
        status=status,
        severity="P1",
        title=f"DiskFull {iid}",
        team=None,
        policy_name="default",
        policy={"steps": []},
        level={"name": "SEV-2"},
        opened_at=T0,
        updated_at=T0,
        resolved_at=T0 if status == Status.RESOLVED else None,
    )


def page(
    person: str,
    channel: str,
    *,
    iid: str = "inc1",
    kind: str = "page",
    at: datetime = T0,
) -> OutboxRecord:
    """An outbox row of tier 0 for ``person`` on ``channel`` (a page, or a ``kind`` notice)."""
    step = f"{iid}:0:page:0:0"
    rid = f"{step}:{person}:{channel}" if kind == "page" else f"{iid}:{kind}:0:{person}:{channel}"
    return OutboxRecord(
        id=rid,
        incident_id=iid,
        step_id=step if kind == "page" else None,
        kind=kind,
        tier=0,
        round=0,
        target=f"person:{person}",
        person=person,
        channel=channel,
        created_at=at,
        not_before=at,
    )
