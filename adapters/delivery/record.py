"""What delivery writes: the moot rows of a claim, and (the last stage) every hold and every
attempt's outcome of one claim, in one write.

The write re-reads the rows and their incidents in its own transaction (reading an incident
takes its lock on PostgreSQL): a row an acknowledgement cancelled while its attempt was in
flight is neither held (which would revive it), nor retried, nor fallen back; what went out (or
may have) is still recorded as such. Fallback rows are written only while the incident is
still triggered as it is now. A crash before this write re-sends rather than loses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.delivery.retry import Verdict
from adapters.delivery.stages import BUNDLED_KINDS, Bundle, Hold, Round, pending
from escalation.engine.metrics import EscalationMetrics
from escalation.incidents.directory import Directory
from escalation.incidents.fallback import fallback_row, fallback_to, tried_channels
from escalation.incidents.model import (
    Changes,
    DeliveryOutcome,
    EventKind,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
    TimelineEvent,
)
from escalation.store.base import Store

__all__ = ["Record", "moot_at_claim"]

log = logging.getLogger("tocsin.dispatch")

_MOOT = "(cancelled meanwhile: no retry, no fallback)"
_WHAT = {"page": "page", "resolve": "resolved notice", "reminder": "reminder"}
# Failures where nothing could be attempted: carried on by the fallback, then ``log``.
_UNATTEMPTED = (FailureReason.NO_ADAPTER, FailureReason.NO_ADDRESS)


class Record:
    """Write the round's holds and outcomes in one transaction (nothing when there are none)."""

    def __init__(
        self, store: Store, metrics: EscalationMetrics, directory: Callable[[], Directory]
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.directory = directory

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        # Failures decided before any send first, then the attempts: the order events were made.
        settled = sorted(bundles, key=lambda b: b.delivery is not None)
        if not any(b.hold or b.verdict for b in settled):
            return bundles
        touched = [r for b in settled for r in b.rows]
        async with self.store.transaction() as tx:
            current, stored, _ = await tx.delivery_state(
                [r.incident_id for r in touched], [r.id for r in touched]
            )
            ch = Changes()
            for b in settled:
                if b.hold is not None:
                    _hold(ch, b.rows, stored, b.hold, rnd.now)
            for b in settled:
                if b.result is not None and b.verdict is not None:
                    self._count(b.rows, b.result, b.verdict)
                    for r in b.rows:
                        self._row(ch, r, len(b.rows), b.result, b.verdict, current, stored, rnd)
            if ch:
                await tx.apply(ch)
        return bundles

    def _count(self, rows: list[OutboxRecord], result: DeliveryResult, v: Verdict) -> None:
        head = rows[0]
        self.metrics.notifications.labels(head.channel, v.outcome).inc()
        if not result.ok:
            log.warning(
                "delivery %s",
                v.outcome,
                extra={
                    "channel": head.channel,
                    "outbox": head.id,
                    "error": result.error,
                    "rows": len(rows),
                },
            )

    def _row(
        self,
        ch: Changes,
        r: OutboxRecord,
        size: int,
        result: DeliveryResult,
        v: Verdict,
        current: Mapping[str, IncidentRecord],
        stored: Mapping[str, OutboxRecord],
        rnd: Round,
    ) -> None:
        """One row's outcome of an attempt; a fallback on failure while still triggered."""
        now = rnd.now
        what = _WHAT.get(r.kind, r.kind)
        tried = f"{what} to {r.person} via {r.channel}"
        attempt = f"(attempt {r.attempts + 1}): {result.error}"
        data: dict[str, Any] = {
            "outbox": r.id,
            "outcome": v.outcome,
            "attempt": r.attempts + 1,
            "provider_id": result.provider_id,
        }
        if not pending(stored.get(r.id)) and v.state in (OutboxState.PENDING, OutboxState.FAILED):
            # Cancelled while the attempt was in flight (an ack): a failed attempt is noted,
            # but neither retried nor fallen back, and the row stays cancelled.
            msg = f"{tried} failed {attempt} {_MOOT}"
            ch.timeline.append(_event(r, now, msg, {**data, "outcome": "failed"}))
            return
        # What went out (or may have) is recorded as such even if cancelled meanwhile.
        retry_at = now + timedelta(seconds=v.delay) if v.delay is not None else None
        ch.deliveries.append(
            DeliveryOutcome(
                r.id,
                v.state,
                r.attempts + 1,
                result.error,
                result.provider_id,
                sent_at=now if result.ok else None,
                not_before=retry_at if v.state == OutboxState.PENDING else None,
            )
        )
        if result.ok:
            bundled = f" (bundle of {size})" if size > 1 else ""
            msg = f"{what} delivered to {r.person} via {r.channel}{bundled}"
        else:
            msg = f"{tried} {v.outcome} {attempt}"
        if result.attempts:
            # Which provider carried it (or failed) when the channel fails over across several.
            msg += "; " + _providers(result)
            data["providers"] = [asdict(a) for a in result.attempts]
        if result.notes:
            # What the channel left out to send it (a link that was no URL): said where people look.
            msg += "; " + "; ".join(result.notes)
            data["notes"] = list(result.notes)
        ch.timeline.append(_event(r, now, msg, data))
        # The incident as it is now: no fallback once someone has acknowledged.
        inc = current.get(r.incident_id)
        if v.state == OutboxState.FAILED and inc is not None:
            self._fall_back(ch, r, inc, now, unattempted=result.reason in _UNATTEMPTED)

    def _fall_back(
        self, ch: Changes, r: OutboxRecord, inc: IncidentRecord, now: datetime, *, unattempted: bool
    ) -> None:
        """The person's next channel; for a row that could not even be attempted (no adapter,
        no address), for any kind of message, and past the person's channels ``log``."""
        if r.kind == "page" and inc.status != Status.TRIGGERED:
            return  # someone is on it: the page is moot
        if r.kind != "page" and not unattempted:
            return
        nxt = fallback_row(r, self.directory().people.get(r.person), now)
        if nxt is None and unattempted:
            nxt = self._undeliverable(r, inc, now)
        if nxt is None:
            return
        ch.new_outbox.append(nxt)
        ch.timeline.append(
            TimelineEvent(
                r.incident_id,
                now,
                EventKind.FALLBACK,
                "tocsin",
                "engine",
                f"{r.channel} to {r.person} failed; falling back to {nxt.channel}",
                {"outbox": r.id, "next": nxt.id},
            )
        )

    def _undeliverable(
        self, r: OutboxRecord, inc: IncidentRecord, now: datetime
    ) -> OutboxRecord | None:
        """No channel of the person's can carry ``r``: say so loudly, and write it to ``log``."""
        self.metrics.notifications.labels(r.channel, "undeliverable").inc()
        to_log = "log" not in tried_channels(r)
        log.error(
            "%s to %s is undeliverable: no configured channel can carry it; %s",
            _WHAT.get(r.kind, r.kind),
            r.person,
            "writing it to the log channel" if to_log else "the log channel is not configured",
            extra={
                "channel": r.channel,
                "outbox": r.id,
                "incident": inc.id,
                "number": inc.number,
                "person": r.person,
                "title": inc.title,
            },
        )
        return fallback_to(r, "log", now) if to_log else None


def _providers(result: DeliveryResult) -> str:
    """Each provider's part: ``twilio retryable (twilio sms 503), gateway delivered``."""
    return ", ".join(
        f"{a.provider} {a.outcome}" + (f" ({a.error})" if a.error else "") for a in result.attempts
    )


def _hold(
    ch: Changes,
    rows: list[OutboxRecord],
    stored: Mapping[str, OutboxRecord],
    hold: Hold,
    now: datetime,
) -> None:
    """Hold rows until ``hold.until`` without spending an attempt (none was made)."""
    for r in rows:
        if not pending(stored.get(r.id)):
            continue  # cancelled meanwhile (an ack): holding it would revive it
        ch.deliveries.append(
            DeliveryOutcome(r.id, OutboxState.PENDING, r.attempts, hold.why, not_before=hold.until)
        )
        if hold.note:
            what, when = _WHAT.get(r.kind, r.kind), hold.until.isoformat()
            msg = f"{what} to {r.person} via {r.channel} held until {when}: {hold.why}"
            ch.timeline.append(
                _event(r, now, msg, {"outbox": r.id, "outcome": "held", "until": when})
            )


def _event(r: OutboxRecord, now: datetime, message: str, data: dict[str, Any]) -> TimelineEvent:
    return TimelineEvent(r.incident_id, now, EventKind.DELIVERY, "tocsin", r.channel, message, data)


def moot_at_claim(
    rows: Sequence[OutboxRecord],
    incidents: Mapping[str, IncidentRecord],
    stored: Mapping[str, OutboxRecord],
) -> Changes:
    """Cancel pages and reminders about incidents that are over (in the claim's transaction).

    A page about an incident that is over is moot; its "resolved" notice is not.
    """
    return Changes(
        deliveries=[
            DeliveryOutcome(r.id, OutboxState.CANCELLED, r.attempts, "incident resolved")
            for r in rows
            if pending(stored.get(r.id))
            and r.kind in BUNDLED_KINDS
            and r.incident_id in incidents
            and incidents[r.incident_id].status == Status.RESOLVED
        ]
    )
