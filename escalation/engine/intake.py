"""The ingest decision inside a transaction: alerts grouped by incident key, read, decided.

Shared by the façade's ``ingest`` (several concurrent notifications at once, see
``engine.batching``) and by heartbeat expiries, which open their incident through the same
decision in their own transaction.
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

__all__ = ["Intake", "ingest_in", "ingest_many_in", "touches"]

# One notification and its classified alerts.
Intake = tuple[Notification, Sequence[Classified]]


@dataclass
class _Group:
    key: str
    items: list[Classified]


def _groups(n: Notification, classified: Sequence[Classified]) -> dict[str, _Group]:
    groups: dict[str, _Group] = {}
    for c in classified:
        key = c.verdict.incident_key or default_key(n.receiver_name, n.group_key)
        groups.setdefault(key, _Group(key, [])).items.append(c)
    return groups


def touches(n: Notification, classified: Sequence[Classified]) -> frozenset[str]:
    """What a notification's decision reads besides its incidents: its keys and fingerprints.

    Two notifications that share none of these can be decided in one transaction as if one
    came after the other (``ingest_many_in``); two that share one must be decided in turn.
    """
    keys = {"key:" + k for k in _groups(n, classified)}
    return frozenset(keys | {"fp:" + c.alert.fingerprint for c in classified})


async def ingest_in(
    tx: Tx,
    now: datetime,
    n: Notification,
    classified: Sequence[Classified],
    directory: Directory,
) -> tuple[list[IngestOutcome], Changes]:
    """The decision for ``n``'s classified alerts in ``tx`` (the caller applies it)."""
    [outcomes], changes = await ingest_many_in(tx, now, [(n, classified)], directory)
    assert outcomes is not None  # the first notification of a batch is never deferred
    return outcomes, changes


async def ingest_many_in(
    tx: Tx, now: datetime, batch: Sequence[Intake], directory: Directory
) -> tuple[list[list[IngestOutcome] | None], Changes]:
    """The decisions for several notifications in ``tx``, with one read for all of them.

    The notifications must not share what ``touches`` names. One that would change an incident
    an earlier one of the batch already changes is deferred (None in its place, nothing of it
    in the changes): decided against the same read, the second would undo the first. The first
    notification is never deferred. The caller applies the changes.
    """
    grouped = [_groups(n, classified) for n, classified in batch]
    keys = sorted({k for groups in grouped for k in groups})
    await tx.lock_keys(keys)
    ctx = await tx.ingest_context(
        {
            k: [
                (c.alert.fingerprint, c.alert.starts_at)
                for c in g.items
                if c.alert.starts_at is not None
            ]
            for groups in grouped
            for k, g in groups.items()
        }
    )
    all_changes = Changes()
    results: list[list[IngestOutcome] | None] = []
    changed: set[str] = set()  # incidents an earlier notification of the batch changes
    for (n, _), groups in zip(batch, grouped, strict=True):
        changes = Changes()
        targets = _merge_targets(ctx, groups, changes)
        ids = {inc.id for _, _, inc in targets if inc is not None}
        if ids & changed:
            results.append(None)
            continue
        changed |= ids
        results.append(_decide(n, targets, ctx, changes, now, directory))
        all_changes.merge(changes)
    return results, all_changes


def _decide(
    n: Notification,
    targets: list[tuple[str, list[Classified], IncidentRecord | None]],
    ctx: IngestContext,
    changes: Changes,
    now: datetime,
    directory: Directory,
) -> list[IngestOutcome]:
    outcomes: list[IngestOutcome] = []
    for key, items, inc in targets:
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
        changes.merge(ch)
        outcomes.append(outcome)
    return outcomes


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
