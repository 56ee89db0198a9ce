"""The façade's units of work and the values routes hand it and get back.

A unit is one store transaction, retried on a concurrency conflict: read what the store holds,
decide with the pure functions, apply. An inbound delivery (a webhook, a keypress, a text) is
remembered in the same transaction as its effect, so a replay is refused and a delivery that
failed leaves no mark that would refuse its retry. Every store failure leaves as
``StoreUnavailable``, so callers map one error type to "nothing changed, try again".
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from escalation.engine.clock import Clock
from escalation.incidents.model import Changes, TimelineEvent
from escalation.store.base import Conflict, Store, StoreError, Tx

if TYPE_CHECKING:
    from escalation.incidents.model import AlertRecord, IncidentRecord, OutboxRecord, StepRecord

__all__ = [
    "ActOn",
    "Acted",
    "Delivery",
    "IncidentDetail",
    "IncidentNotFound",
    "Outcome",
    "StoreUnavailable",
    "run_unit",
    "unavailable",
]

_RETRIES = 8
_T = TypeVar("_T")


class StoreUnavailable(Exception):
    """The store could not do what was asked; nothing changed and a retry may succeed (→ 503)."""


class IncidentNotFound(LookupError):
    """No incident has that id, number or key."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """An inbound delivery (a signed webhook, keypress or text), acted on at most once."""

    source: str
    id: str


@dataclass(frozen=True, slots=True)
class ActOn:
    """One incident to act on (by id, number or key), and who asks with what note."""

    ref: str
    actor: str
    note: str = ""
    # Act only while the incident is still in this escalation run (a reopen, severity raise or
    # ack timeout starts a new one): a signed webhook about the old run must not act on the new.
    epoch: int | None = None
    on_behalf_of: str = ""  # what an authenticated caller says about whom they act for
    occurred_at: datetime | None = None  # when a signed source says it happened (timeline data)


class Outcome(StrEnum):
    DONE = "done"
    ILLEGAL = "illegal"  # the action does not apply to the incident's status now
    MISSING = "missing"  # no incident by that reference


@dataclass(frozen=True, slots=True)
class Acted:
    """What became of one ``ActOn``: the incident after the action (done), as it is (illegal)."""

    ref: str
    outcome: Outcome
    incident: IncidentRecord | None = None
    reason: str = ""


@dataclass(frozen=True)
class IncidentDetail:
    """Everything about one incident, as the incident API shows it."""

    incident: IncidentRecord
    alerts: list[AlertRecord]
    steps: list[StepRecord]
    outbox: list[OutboxRecord]
    timeline: list[TimelineEvent]


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Store failures leave the façade as StoreUnavailable (chained, for the log)."""
    try:
        yield
    except StoreError as e:
        raise StoreUnavailable(str(e) or type(e).__name__) from e


async def run_unit(
    store: Store,
    clock: Clock,
    what: str,
    delivery: Delivery | None,
    body: Callable[[Tx, datetime], Awaitable[tuple[_T, Changes]]],
    then: Callable[[Tx, Changes, datetime], Awaitable[Changes]] | None = None,
) -> tuple[_T, Changes] | None:
    """Run ``body`` and apply its changes in one transaction, retried on a conflict.

    None when ``delivery`` was seen before: it is remembered in the same transaction, so
    it is refused only once its effect has committed. ``then`` runs after the apply, in
    the same transaction; what it applied itself joins the changes returned.
    """
    with unavailable():
        for _ in range(_RETRIES):
            now = clock.now()
            try:
                async with store.transaction() as tx:
                    if delivery is not None and await tx.seen_delivery(
                        delivery.source, delivery.id, now
                    ):
                        return None
                    result, changes = await body(tx, now)
                    if changes:
                        await tx.apply(changes)
                    if then is not None:
                        changes.merge(await then(tx, changes, now))
            except Conflict:
                continue
            return result, changes
    raise StoreUnavailable(f"{what} kept conflicting with concurrent writers")
