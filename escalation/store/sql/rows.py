"""Rows to records and records to parameters, for any dialect.

Mappers are closures over the dialect's converters, built once per backend, so mapping a row
costs what a hand-written mapper for that backend costs. Parameter tuples follow the column
order of ``dialect.cols`` (the records' field order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from escalation.incidents.model import (
    AlertRecord,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
    StepRecord,
    StepState,
    TimelineEvent,
)
from escalation.store.sql.dialect import Dialect, Row

__all__ = [
    "Mappers",
    "alert_rows",
    "event_rows",
    "incident_values",
    "mappers",
    "outbox_rows",
    "step_rows",
]


@dataclass(frozen=True, slots=True)
class Mappers:
    """Row → record, one function per table."""

    incident: Callable[[Row], IncidentRecord]
    alert: Callable[[Row], AlertRecord]
    step: Callable[[Row], StepRecord]
    outbox: Callable[[Row], OutboxRecord]
    event: Callable[[Row], TimelineEvent]


def mappers(d: Dialect) -> Mappers:
    """The mappers for dialect ``d``."""
    return Mappers(
        incident=_incident_mapper(d),
        alert=_alert_mapper(d),
        step=_step_mapper(d),
        outbox=_outbox_mapper(d),
        event=_event_mapper(d),
    )


def _incident_mapper(d: Dialect) -> Callable[[Row], IncidentRecord]:
    t, t_opt, j = d.time_in, d.time_in_opt, d.json_in

    def incident(r: Row) -> IncidentRecord:
        return IncidentRecord(
            id=r["id"],
            number=r["number"],
            key=r["key"],
            status=Status(r["status"]),
            severity=r["severity"],
            title=r["title"],
            team=r["team"],
            policy_name=r["policy_name"],
            policy=j(r["policy"]),
            level=j(r["level"]),
            opened_at=t(r["opened_at"]),
            updated_at=t(r["updated_at"]),
            acknowledged_at=t_opt(r["acknowledged_at"]),
            mitigated_at=t_opt(r["mitigated_at"]),
            resolved_at=t_opt(r["resolved_at"]),
            epoch=r["epoch"],
            receiver=r["receiver"],
            group_key=r["group_key"],
            rule=r["rule"],
            labels=j(r["labels"]),
            version=r["version"],
        )

    return incident


def _alert_mapper(d: Dialect) -> Callable[[Row], AlertRecord]:
    t, t_opt, j = d.time_in, d.time_in_opt, d.json_in

    def alert(r: Row) -> AlertRecord:
        return AlertRecord(
            incident_id=r["incident_id"],
            fingerprint=r["fingerprint"],
            starts_at=t(r["starts_at"]),
            status=r["status"],
            ends_at=t_opt(r["ends_at"]),
            labels=j(r["labels"]),
            annotations=j(r["annotations"]),
            generator_url=r["generator_url"],
            severity=r["severity"],
            rule=r["rule"],
            first_seen=t(r["first_seen"]),
            last_seen=t(r["last_seen"]),
        )

    return alert


def _step_mapper(d: Dialect) -> Callable[[Row], StepRecord]:
    t, t_opt = d.time_in, d.time_in_opt

    def step(r: Row) -> StepRecord:
        return StepRecord(
            id=r["id"],
            incident_id=r["incident_id"],
            kind=r["kind"],
            epoch=r["epoch"],
            round=r["round"],
            tier=r["tier"],
            due_at=t(r["due_at"]),
            state=StepState(r["state"]),
            unless=r["unless"],
            fired_at=t_opt(r["fired_at"]),
            note=r["note"],
        )

    return step


def _outbox_mapper(d: Dialect) -> Callable[[Row], OutboxRecord]:
    t, t_opt, j = d.time_in, d.time_in_opt, d.json_in

    def outbox(r: Row) -> OutboxRecord:
        return OutboxRecord(
            id=r["id"],
            incident_id=r["incident_id"],
            step_id=r["step_id"],
            kind=r["kind"],
            tier=r["tier"],
            round=r["round"],
            target=r["target"],
            person=r["person"],
            channel=r["channel"],
            created_at=t(r["created_at"]),
            not_before=t(r["not_before"]),
            state=OutboxState(r["state"]),
            attempts=r["attempts"],
            last_error=r["last_error"],
            sent_at=t_opt(r["sent_at"]),
            provider_id=r["provider_id"],
            payload=j(r["payload"]),
        )

    return outbox


def _event_mapper(d: Dialect) -> Callable[[Row], TimelineEvent]:
    t, j = d.time_in, d.json_in

    def event(r: Row) -> TimelineEvent:
        return TimelineEvent(
            incident_id=r["incident_id"],
            at=t(r["at"]),
            kind=r["kind"],
            actor=r["actor"],
            source=r["source"],
            message=r["message"],
            data=j(r["data"]),
        )

    return event


def incident_values(d: Dialect, i: IncidentRecord) -> tuple[Any, ...]:
    """The incident's columns from ``key`` to ``labels`` (id, number and version are set apart:
    an insert and a compare-and-set place them differently)."""
    t, t_opt, j = d.time_out, d.time_out_opt, d.json_out
    return (
        i.key,
        Status(i.status).value,
        i.severity,
        i.title,
        i.team,
        i.policy_name,
        j(i.policy),
        j(i.level),
        t(i.opened_at),
        t(i.updated_at),
        t_opt(i.acknowledged_at),
        t_opt(i.mitigated_at),
        t_opt(i.resolved_at),
        i.epoch,
        i.receiver,
        i.group_key,
        i.rule,
        j(i.labels),
    )


def alert_rows(d: Dialect, alerts: Sequence[AlertRecord]) -> list[tuple[Any, ...]]:
    """Parameter rows for inserting ``alerts`` (one comprehension: executemany's hot path)."""
    t, t_opt, j = d.time_out, d.time_out_opt, d.json_out
    return [
        (
            a.incident_id,
            a.fingerprint,
            t(a.starts_at),
            a.status,
            t_opt(a.ends_at),
            j(a.labels),
            j(a.annotations),
            a.generator_url,
            a.severity,
            a.rule,
            t(a.first_seen),
            t(a.last_seen),
        )
        for a in alerts
    ]


def event_rows(d: Dialect, events: Sequence[TimelineEvent]) -> list[tuple[Any, ...]]:
    t, j = d.time_out, d.json_out
    return [
        (e.incident_id, t(e.at), e.kind, e.actor, e.source, e.message, j(e.data)) for e in events
    ]


def step_rows(d: Dialect, steps: Sequence[StepRecord]) -> list[tuple[Any, ...]]:
    t, t_opt = d.time_out, d.time_out_opt
    return [
        (
            s.id,
            s.incident_id,
            s.kind,
            s.epoch,
            s.round,
            s.tier,
            t(s.due_at),
            StepState(s.state).value,
            s.unless,
            t_opt(s.fired_at),
            s.note,
        )
        for s in steps
    ]


def outbox_rows(d: Dialect, rows: Sequence[OutboxRecord]) -> list[tuple[Any, ...]]:
    t, t_opt, j = d.time_out, d.time_out_opt, d.json_out
    return [
        (
            o.id,
            o.incident_id,
            o.step_id,
            o.kind,
            o.tier,
            o.round,
            o.target,
            o.person,
            o.channel,
            t(o.created_at),
            t(o.not_before),
            OutboxState(o.state).value,
            o.attempts,
            o.last_error,
            t_opt(o.sent_at),
            o.provider_id,
            j(o.payload),
        )
        for o in rows
    ]
