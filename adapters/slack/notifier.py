"""The ``slack`` channel: one message per incident, edited as it changes, its thread the timeline.

A row to ``slack:<channel>`` (a notify target naming a place) goes to that channel; a row to a
person (``via: [slack]``) goes to their direct message with the app, found by their email
(``users.lookupByEmail``). The first row for an incident there posts the card and records
``<channel id>/<ts>/<events told>`` as the row's provider id; every later row for the same place (an
escalation's next round, a status-update reminder, an acknowledgement made anywhere, the
resolve) reads those earlier rows, edits the card (``chat.update``) and posts what happened
since the last post into the card's thread, all of it in one reply, so a storm of changes is
one edit and one reply per delivery, not one per event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.config import SlackConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.slack.api import SlackApi, SlackError, failure
from adapters.slack.blocks import card, thread_text
from escalation.engine.clock import Clock
from escalation.engine.service import IncidentDetail
from escalation.incidents.model import EventKind, OutboxKind, OutboxState, TimelineEvent

__all__ = ["DetailReader", "SlackNotifier"]

DetailReader = Callable[[str], Awaitable[IncidentDetail | None]]
"""Reads an incident with its outbox and timeline (the service façade's ``detail``)."""

# Bookkeeping of delivery itself, not news for the people in the channel.
_QUIET = (EventKind.DELIVERY, EventKind.SKIP, EventKind.HELD, EventKind.DEFERRED)
_NEWS = {
    OutboxKind.REMINDER: ":memo: Status update due: post what is known, what is being tried, "
    "and when the next update comes.",
}


@dataclass(frozen=True)
class _Posted:
    """The card already posted for an incident at one place, and when it was last touched."""

    channel: str
    ts: str


class SlackNotifier:
    """Posts, edits and threads incident cards; maps every Slack error to a FailureReason."""

    def __init__(
        self,
        cfg: SlackConfig,
        api: SlackApi,
        clock: Clock,
        public_url: str,
        detail: DetailReader | None = None,
    ) -> None:
        self.cfg = cfg
        self.api = api
        self._clock = clock
        self._public_url = public_url
        self._detail = detail

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """One attempt: post the card, or edit it and reply in its thread."""
        try:
            return await self._send(delivery)
        except SlackError as e:
            return failure(e, self._clock)

    async def _destination(self, d: Delivery) -> str | None:
        place, _, name = d.row.person.partition(":")
        if place == "slack" and name:
            return self.cfg.channels.get(name, name)
        email = d.person.get("email")
        if not email:
            return None
        return await self.api.user_id(str(email))

    async def _send(self, d: Delivery) -> DeliveryResult:
        dest = await self._destination(d)
        if dest is None:
            return DeliveryResult(
                False, FailureReason.PERMANENT, f"slack: {d.row.person} has no email to find"
            )
        posted, news, seen = await self._earlier(d)
        text, blocks = card(d.incident, d.alerts, self._public_url)
        if posted is None:
            answer = await self.api.call("chat.postMessage", channel=dest, text=text, blocks=blocks)
            return DeliveryResult(ok=True, provider_id=f"{answer['channel']}/{answer['ts']}/{seen}")
        await self.api.call(
            "chat.update", channel=posted.channel, ts=posted.ts, text=text, blocks=blocks
        )
        reply = thread_text(news, _NEWS.get(d.row.kind, ""))
        if reply:
            await self.api.call(
                "chat.postMessage", channel=posted.channel, thread_ts=posted.ts, text=reply
            )
        return DeliveryResult(ok=True, provider_id=f"{posted.channel}/{posted.ts}/{seen}")

    async def _earlier(self, d: Delivery) -> tuple[_Posted | None, list[TimelineEvent], int]:
        """The card posted before for this incident and place, the timeline events since the
        last post there, and how many events the timeline holds now.

        Each row's provider id is ``<channel>/<ts>/<n>``: the card, and that the first ``n``
        timeline events were told (on the card or in its thread) when the row was sent.
        """
        if self._detail is None:
            return None, [], 0
        found = await self._detail(d.incident.id)
        if found is None:
            return None, [], 0
        seen = len(found.timeline)
        sent = sorted(
            (
                r
                for r in found.outbox
                if r.channel == "slack"
                and r.person == d.row.person
                and r.id != d.row.id
                and r.state == OutboxState.SENT
                and r.sent_at is not None
                and r.provider_id.count("/") == 2
            ),
            key=lambda r: (r.sent_at, r.id),
        )
        if not sent:
            return None, [], seen
        channel, ts, _ = sent[0].provider_id.split("/")
        told = max(
            int(n) if n.isdigit() else 0 for *_, n in (r.provider_id.split("/") for r in sent)
        )
        news = [e for e in found.timeline[told:] if e.kind not in _QUIET]
        return _Posted(channel, ts), news, seen
