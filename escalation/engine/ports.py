"""The engine's port to delivery, which lives outside escalation (``adapters/delivery``).

Both paths that hand outbox rows to delivery use it: the engine's loop (rows it claims) and
the ingest's page-at-once (rows its transaction leases, ``immediate.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from escalation.incidents.model import OutboxRecord
from escalation.store.base import DeliveryState, Tx

__all__ = ["OutboxDelivery"]

_P = TypeVar("_P")


class OutboxDelivery(Protocol[_P]):
    """What the engine hands claimed outbox rows to.

    ``prepare`` runs inside the claim's transaction, so what it reads and cancels commits with
    the claim (rows an acknowledgement made moot are never sent); ``finish`` sends and records
    after that commit. A crash between the two leaves the rows claimed: their lease runs out
    and they are sent again, never lost.
    """

    async def prepare(
        self, tx: Tx, rows: Sequence[OutboxRecord], state: DeliveryState | None = None
    ) -> _P:
        """``state``: the rows' ``delivery_state`` (with alerts) when the caller read it in the
        same transaction already (``Tx.lease_for_delivery``); else ``prepare`` reads it."""
        ...

    async def finish(self, prepared: _P) -> None: ...
