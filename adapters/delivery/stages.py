"""The stages one claim's bundles pass through, all with one signature.

A stage takes the round (what the claim read, the policy, the instant) and the claim's bundles,
and returns the bundles the next stage gets, in the way Alertmanager's notify pipeline passes
alerts from stage to stage. Only ``DropMoot`` drops rows (an ack made them moot); a stage that
settles a bundle (held, or failed before any send) marks it and passes it on, untouched by
later gates, so the last stage records everything in one write. ``Chain`` runs stages in
order; ``OneAtATime`` runs a chain on each bundle in turn, so each bundle's gates see the limit
slots and breaker probe the previous one took.

Every bundle's limit slot, bundling window and breaker probe is taken before the first send's
await, so bundles sent concurrently from one claim cannot all pass the same check. The gates
that take a bundling window or the breaker's probe (``HoldForBundling``, ``Breaker``) await the
policy, whose check-and-take is atomic where it is kept (in the store: every replica sees it);
``ReserveShared``, with limits shared by replicas, makes one check-and-count for the whole
round, atomic in the store; ``Classify`` gives back a bundling window that nothing reached the
person through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from adapters.delivery.channels import no_adapter
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason, Notifier
from adapters.delivery.policy import DeliveryPolicy
from adapters.delivery.retry import Verdict, verdict
from escalation.engine.metrics import EscalationMetrics
from escalation.incidents.directory import Directory
from escalation.incidents.fallback import fallback_row
from escalation.incidents.model import (
    AlertRecord,
    IncidentRecord,
    OutboxRecord,
    OutboxState,
    Status,
)
from escalation.oncall.targets import EDITED_CHANNELS

__all__ = [
    "BUNDLED_KINDS",
    "EDITS",
    "Breaker",
    "Bundle",
    "Chain",
    "Classify",
    "Compose",
    "DropMoot",
    "Hold",
    "HoldForBundling",
    "OneAtATime",
    "RateLimit",
    "Reserve",
    "ReserveShared",
    "Retry",
    "Round",
    "Route",
    "Send",
    "Stage",
    "bundled",
    "falls_back",
    "pending",
]

log = logging.getLogger("tocsin.dispatch")

BUNDLED_KINDS = ("page", "reminder")

EDITS = ("update", "acknowledge", "resolve")
"""Rows telling a change to a channel that keeps one message per incident and place
(``EDITED_CHANNELS``: Slack's card): each edits the card to the incident as it is now and
threads everything since the last post. Claimed together they are one delivery, so a storm of
changes (rows held by the conversation's rate limit gather meanwhile) costs one edit and one
reply per slot rather than a slot per change. Pages there (two tiers at once) go together but
apart from these: a page posts the card, and what happened while it waited is threaded by these
rows a slot later. A reminder (its own post) and an archive go on their own."""


@dataclass(frozen=True)
class Hold:
    """Wait until ``until`` without spending an attempt (none was made)."""

    until: datetime
    why: str
    note: bool  # also say so on the timeline (the breaker: a person wonders why nothing came)


@dataclass
class Bundle:
    """Rows to one person on one channel that travel as one message (often a single row)."""

    rows: list[OutboxRecord]
    hold: Hold | None = None
    result: DeliveryResult | None = None
    notifier: Notifier | None = None
    delivery: Delivery | None = None
    raised: Exception | None = None  # what the notifier raised instead of answering
    verdict: Verdict | None = None
    window: datetime | None = None  # when this message's bundling window was taken

    @property
    def reached(self) -> bool:
        """Something may have reached the person (the bundling window stands)."""
        r = self.result
        return self.delivery is not None and r is not None and (r.ok or r.unknown)

    @property
    def head(self) -> OutboxRecord:
        return self.rows[0]

    @property
    def travelling(self) -> bool:
        """Not yet held or given a result: the gates still apply."""
        return self.hold is None and self.result is None


@dataclass
class Round:
    """One claim's delivery: what was read in the claim's transaction, the policy, the instant."""

    incidents: dict[str, IncidentRecord]
    stored: dict[str, OutboxRecord]
    alerts: dict[str, list[AlertRecord]]
    skip: set[str]  # rows cancelled in the claim's transaction (their incident resolved)
    policy: DeliveryPolicy
    now: datetime


class Stage(Protocol):
    """One step of delivery: the bundles that travel on."""

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]: ...


class Chain:
    """Stages in order, each given what the previous returned."""

    def __init__(self, *stages: Stage) -> None:
        self.stages = stages

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        for stage in self.stages:
            bundles = await stage(rnd, bundles)
        return bundles

    def names(self) -> list[str]:
        """The stages' names in order (what a reader of logs and tests sees)."""
        return [
            n
            for s in self.stages
            for n in (s.names() if isinstance(s, Chain | OneAtATime) else [_n(s)])
        ]


class OneAtATime:
    """Run ``chain`` on one bundle after another, so each sees what the previous reserved."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        out: list[Bundle] = []
        for b in bundles:
            out += await self.chain(rnd, [b])
        return out

    def names(self) -> list[str]:
        return self.chain.names()


def _n(stage: Stage) -> str:
    return type(stage).__name__


def pending(row: OutboxRecord | None) -> bool:
    return row is not None and row.state == OutboxState.PENDING


def falls_back(row: OutboxRecord, inc: IncidentRecord, directory: Directory, now: datetime) -> bool:
    """Would failing ``row`` now write a fallback row (a page, still triggered, a next channel)?"""
    return (
        row.kind == "page"
        and inc.status == Status.TRIGGERED
        and fallback_row(row, directory.people.get(row.person), now) is not None
    )


# -- gates: one bundle at a time -------------------------------------------------------------


class DropMoot:
    """Drop rows an ack cancelled (or another replica settled) since the claim; fail rows whose
    incident is gone."""

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        out: list[Bundle] = []
        for b in bundles:
            rows = [r for r in b.rows if pending(rnd.stored.get(r.id)) and r.id not in rnd.skip]
            gone = [r for r in rows if r.incident_id not in rnd.incidents]
            if gone:
                out.append(Bundle(gone, result=DeliveryResult(False, error="incident not found")))
            live = [r for r in rows if r.incident_id in rnd.incidents]
            if live:
                out.append(Bundle(live))
        return out


class HoldForBundling:
    """Something went to this person moments ago (from any replica): hold these until its
    bundling window ends, to go together; else this message starts the window."""

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        for b in bundles:
            head = b.head
            if not b.travelling or not (
                rnd.policy.bundles(head.channel) and head.kind in BUNDLED_KINDS
            ):
                continue
            until = await rnd.policy.take_window(head.person, head.channel, rnd.now)
            if until is None:
                b.window = rnd.now
            else:
                b.hold = Hold(until, "bundling", note=False)
        return bundles


class RateLimit:
    """Hold what a per-channel or per-person limit does not admit now."""

    def __init__(self, metrics: EscalationMetrics) -> None:
        self.metrics = metrics

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        for b in bundles:
            until = rnd.policy.admit(b.head, rnd.now) if b.travelling else None
            if until is not None:
                self.metrics.notifications.labels(b.head.channel, "rate_limited").inc()
                b.hold = Hold(until, "rate limited", note=False)
        return bundles


class Route:
    """Find the channel's notifier; a channel without one fails (and falls back)."""

    def __init__(self, notifiers: Callable[[], Mapping[str, Notifier]]) -> None:
        self.notifiers = notifiers

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        notifiers = self.notifiers()
        for b in bundles:
            if not b.travelling:
                continue
            b.notifier = notifiers.get(b.head.channel)
            if b.notifier is None:
                error = no_adapter(b.head.channel, notifiers)
                b.result = DeliveryResult(False, FailureReason.NO_ADAPTER, error)
        return bundles


class Breaker:
    """Breaker open: fall back at once where the person has a next channel; hold the rest (no
    attempt spent) until the breaker lets a try through again."""

    def __init__(self, metrics: EscalationMetrics, directory: Callable[[], Directory]) -> None:
        self.metrics = metrics
        self.directory = directory

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        out: list[Bundle] = []
        for b in bundles:
            channel = b.head.channel
            reopen = await rnd.policy.breaker(channel, rnd.now) if b.travelling else None
            if reopen is None:
                out.append(b)
                continue
            why = f"circuit breaker open for {channel}"
            d = self.directory()
            now_fb = [r for r in b.rows if falls_back(r, rnd.incidents[r.incident_id], d, rnd.now)]
            held = [r for r in b.rows if r not in now_fb]
            if held:
                self.metrics.notifications.labels(channel, "breaker_open").inc()
                out.append(Bundle(held, hold=Hold(reopen, why, note=True), window=b.window))
            if now_fb:
                failed = DeliveryResult(ok=False, error=why)
                out.append(Bundle(now_fb, result=failed, window=b.window))
        return out


class Reserve:
    """Count the send against the in-process rate limits now, before the next bundle's gates."""

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        for b in bundles:
            if b.travelling:
                rnd.policy.sent(b.head, rnd.now)
        return bundles


class ReserveShared:
    """Count the round's sends against the rate limits shared with other replicas, in bundle
    order and in one go (one store transaction, none when nothing is limited); hold each send
    that has no room after all."""

    def __init__(self, metrics: EscalationMetrics) -> None:
        self.metrics = metrics

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        going = [b for b in bundles if b.travelling]
        untils = await rnd.policy.reserve([b.head for b in going], rnd.now)
        for b, until in zip(going, untils, strict=True):
            if until is not None:
                self.metrics.notifications.labels(b.head.channel, "rate_limited").inc()
                b.hold = Hold(until, "rate limited", note=False)
        return bundles


class Compose:
    """Build the message: the head row, its incident and alerts, the rows bundled with it."""

    def __init__(
        self,
        person_details: Callable[[str], dict[str, Any]],
        links: Callable[[IncidentRecord, OutboxRecord], dict[str, str]],
    ) -> None:
        self.person_details = person_details
        self.links = links

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        for b in bundles:
            if not b.travelling:
                continue
            head = b.head
            inc = rnd.incidents[head.incident_id]
            others = {r.incident_id for r in b.rows[1:]} - {inc.id}
            b.delivery = Delivery(
                head,
                inc,
                self.person_details(head.person),
                self.links(inc, head),
                bundle=tuple(b.rows[1:]),
                bundle_incidents={i: rnd.incidents[i] for i in others},
                alerts=tuple(rnd.alerts.get(inc.id, ())),
            )
        return bundles


# -- the attempt ------------------------------------------------------------------------------


class Send:
    """One attempt per travelling bundle, all concurrently."""

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        await asyncio.gather(*(self._one(b) for b in bundles if b.travelling))
        return bundles

    async def _one(self, b: Bundle) -> None:
        assert b.notifier is not None and b.delivery is not None
        try:
            b.result = await b.notifier.notify(b.delivery)
        except Exception as e:  # an adapter bug must not stop delivery of everything else
            b.raised = e


class Classify:
    """Map what came back into a result (a raise is retryable), feed the breakers, and give
    back the bundling window of a message that reached no one (failed, or never sent)."""

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        outcomes: list[tuple[str, bool]] = []
        unused: set[tuple[str, str, datetime]] = set()
        for b in bundles:
            head = b.head
            if b.delivery is not None:  # an attempt was made: it reached the channel
                if b.raised is not None:
                    b.result = _raised(b.raised, head)
                assert b.result is not None
                # A person without an address says nothing about the channel's health.
                if b.result.reason != FailureReason.NO_ADDRESS:
                    outcomes.append((head.channel, b.result.ok))
            if b.window is not None and not b.reached:
                unused.add((head.person, head.channel, b.window))
        await rnd.policy.outcomes(outcomes, rnd.now)
        for person, channel, at in sorted(unused):
            await rnd.policy.release_window(person, channel, at)
        return bundles


def _raised(e: Exception, head: OutboxRecord) -> DeliveryResult:
    log.error("notifier raised", exc_info=e, extra={"channel": head.channel, "outbox": head.id})
    error = f"{type(e).__name__}: {e}"
    return DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error=error)


class Retry:
    """Look every result up in the retry table (the policy spaces and budgets the retries)."""

    async def __call__(self, rnd: Round, bundles: list[Bundle]) -> list[Bundle]:
        for b in bundles:
            result = b.result
            if result is None:
                continue
            head = b.head

            def delay(head: OutboxRecord = head, result: DeliveryResult = result) -> float | None:
                return rnd.policy.retry_delay(head, head.attempts + 1, result, rnd.now)

            b.verdict = verdict(result, delay)
        return bundles


def bundled(rows: Sequence[OutboxRecord], policy: DeliveryPolicy) -> list[Bundle]:
    """Rows claimed together as bundles: pages to one person and channel travel as one, and
    so do the pages, and the changes, for one incident's edited message at one place
    (``EDITS``)."""
    groups: dict[tuple[str, ...], list[OutboxRecord]] = {}
    singles: list[Bundle] = []
    ordered = sorted(rows, key=lambda r: (r.not_before, r.created_at, r.id))
    for r in ordered:
        if policy.bundles(r.channel) and r.kind in BUNDLED_KINDS:
            groups.setdefault((r.person, r.channel), []).append(r)
        elif r.channel in EDITED_CHANNELS and r.kind in (*EDITS, "page"):
            # Pages apart from changes: see EDITS.
            what = "pages" if r.kind == "page" else "edits"
            groups.setdefault((r.incident_id, r.person, r.channel, what), []).append(r)
        else:
            singles.append(Bundle([r]))
    # The longest waiting first: a row a rate limit held (its not_before moved to the next
    # slot) is not overtaken, slot after slot, by rows made since (a storm on another card).
    place = {r.id: i for i, r in enumerate(ordered)}
    return sorted(
        singles + [Bundle(g) for g in groups.values()],
        key=lambda b: (min(r.created_at for r in b.rows), place[b.head.id]),
    )
