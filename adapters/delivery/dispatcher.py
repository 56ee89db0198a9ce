"""The outbox dispatcher: claimed rows through the chain of stages, one write at the end.

    claim (the engine, in its transaction: ``prepare`` reads the rows, their incidents and
           alerts, and cancels pages about incidents that are over)
    → drop what an ack made moot → hold for bundling → rate limit → route to the channel
    → breaker → reserve the limit slot                                     (each bundle in turn)
    → reserve the slots shared with other replicas (one store transaction for the round, and
      only when a limit applies) → compose the message
    → send → classify the outcome → retry table → record            (all bundles together)

Quiet hours and maintenance windows are decided when a step fires (the engine), so no row
reaches delivery during them. The engine knows delivery only through its small port
(``prepare`` / ``finish``); the process wires this dispatcher in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.delivery.notifier import Notifier
from adapters.delivery.policy import DeliveryPolicy, SimplePolicy
from adapters.delivery.record import Record, moot_at_claim
from adapters.delivery.stages import (
    Breaker,
    Bundle,
    Chain,
    Classify,
    Compose,
    DropMoot,
    HoldForBundling,
    OneAtATime,
    RateLimit,
    Reserve,
    ReserveShared,
    Retry,
    Round,
    Route,
    Send,
    bundled,
)
from escalation.engine.clock import Clock
from escalation.engine.metrics import EscalationMetrics
from escalation.incidents.directory import Directory
from escalation.incidents.model import IncidentRecord, OutboxRecord
from escalation.store.base import DeliveryState, Store, Tx

__all__ = ["OutboxDispatcher", "Prepared"]


@dataclass
class Prepared:
    """What ``prepare`` read for one claim, and the bundles it made of the rows."""

    round: Round
    bundles: list[Bundle]


class OutboxDispatcher:
    """Sends claimed outbox rows and records every attempt on the row and the timeline."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        notifiers: Callable[[], Mapping[str, Notifier]],
        directory: Callable[[], Directory],
        metrics: EscalationMetrics,
        policy: Callable[[], DeliveryPolicy] | None = None,
        *,
        public_url: Callable[[], str] | None = None,
        person_details: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        _simple = SimplePolicy()
        self.policy = policy or (lambda: _simple)
        self.directory = directory
        self.public_url = public_url
        self.person_details = person_details or self._person_details
        self.stages = Chain(
            OneAtATime(
                Chain(
                    DropMoot(),
                    HoldForBundling(),
                    RateLimit(metrics),
                    Route(notifiers),
                    Breaker(metrics, directory),
                    Reserve(),
                )
            ),
            ReserveShared(metrics),
            Compose(lambda p: self.person_details(p), self._links),
            Send(),
            Classify(),
            Retry(),
            Record(store, metrics, directory),
        )

    async def dispatch(self, rows: Sequence[OutboxRecord]) -> None:
        """Deliver rows claimed together (``prepare`` in its own transaction, then ``finish``)."""
        async with self.store.transaction() as tx:
            prepared = await self.prepare(tx, rows)
        await self.finish(prepared)

    async def prepare(
        self, tx: Tx, rows: Sequence[OutboxRecord], state: DeliveryState | None = None
    ) -> Prepared:
        """Read what the rows and their incidents are now, inside the claim's transaction.

        Reading the incidents takes their locks (PostgreSQL), so an acknowledgement cannot
        cancel these rows between this read and the cancellations written here.
        """
        policy, now = self.policy(), self.clock.now()
        if state is None:
            state = await tx.delivery_state(
                [r.incident_id for r in rows], [r.id for r in rows], alerts=True
            )
        incidents, stored, alerts = state
        moot = moot_at_claim(rows, incidents, stored)
        if moot:
            await tx.apply(moot)
        skip = {d.outbox_id for d in moot.deliveries}
        rnd = Round(incidents, stored, alerts, skip, policy, now)
        return Prepared(rnd, bundled(rows, policy))

    async def finish(self, prepared: Prepared) -> None:
        """Run the stages on what ``prepare`` read (after its transaction committed)."""
        await self.stages(prepared.round, prepared.bundles)

    def _person_details(self, person: str) -> dict[str, Any]:
        p = self.directory().people.get(person)
        return p.model_dump(mode="json") if p is not None else {}

    def _links(self, inc: IncidentRecord, row: OutboxRecord) -> dict[str, str]:
        if self.public_url is None:
            return {}
        base = self.public_url().rstrip("/")
        return {"incident": f"{base}/api/v1/incidents/{inc.id}"}
