"""The ingest decision inside a transaction: alerts grouped by incident key, read, decided.

Shared by the façade's ``ingest`` and by heartbeat expiries, which open their incident through
the same decision in their own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from escalation.incidents.directory import Directory
from escalation.incidents.ingest import Classified, IngestOutcome, decide_ingest, default_key
from escalation.incidents.model import Changes, IncidentRecord, KeyAlias
from escalation.store.base import IngestContext, Tx
from rules.alerts import Notification

__all__ = ["ingest_in"]


@dataclass
class _Group:
    key: str
    items: list[Classified]


async def ingest_in(
    tx: Tx,
    now: datetime,
    n: Notification,
    classified: Sequence[Classified],
    directory: Directory,
) -> tuple[list[IngestOutcome], Changes]:
    """The decision for ``n``'s classified alerts in ``tx`` (the caller applies it)."""
    groups: dict[str, _Group] = {}
    for c in classified:
        key = c.verdict.incident_key or default_key(n.receiver_name, n.group_key)
        groups.setdefault(key, _Group(key, [])).items.append(c)
    keys = sorted(groups)
    await tx.lock_keys(keys)
    ctx = await tx.ingest_context(
        {
            k: [
                (c.alert.fingerprint, c.alert.starts_at)
                for c in groups[k].items
                if c.alert.starts_at is not None
            ]
            for k in keys
        }
    )
    all_changes = Changes()
    outcomes: list[IngestOutcome] = []
    for key, items, inc in _merge_targets(ctx, groups, all_changes):
        ch, outcome = decide_ingest(
            key,
            items,
            inc,
            ctx.alerts.get(inc.id, []) if inc is not None else [],
            ctx.outbox.get(inc.id, []) if inc is not None else [],
            now=now,
            directory=directory,
            receiver=n.receiver_name,
            group_key=n.group_key,
            common_labels=dict(n.common_labels),
        )
        all_changes.merge(ch)
        outcomes.append(outcome)
    return outcomes, all_changes


def _merge_targets(
    ctx: IngestContext, groups: dict[str, _Group], changes: Changes
) -> list[tuple[str, list[Classified], IncidentRecord | None]]:
    """Resolve each key to an incident; keys landing on the same incident decide together."""
    merged: dict[str, tuple[str, list[Classified], IncidentRecord | None]] = {}
    for k in sorted(groups):
        inc = ctx.by_key.get(k)
        if inc is None and k in ctx.by_occurrence:
            inc = ctx.incidents[ctx.by_occurrence[k]]
            # A `continue: true` route or a second receiver: same alerts, same incident.
            changes.key_aliases.append(KeyAlias(k, inc.id))
        slot = inc.id if inc is not None else f"new:{k}"
        if slot in merged:
            merged[slot][1].extend(groups[k].items)
        else:
            merged[slot] = (k, list(groups[k].items), inc)
    return list(merged.values())
