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

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from adapters.config import SlackConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.slack.api import SlackApi, SlackError, failure
from adapters.slack.blocks import card, thread_text
from adapters.slack.rooms import Rooms
from escalation.engine.clock import Clock
from escalation.engine.service import IncidentDetail
from escalation.incidents.model import (
    EventKind,
    OutboxKind,
    OutboxRecord,
    OutboxState,
    Status,
    TimelineEvent,
)
from escalation.oncall.people import Person
from escalation.oncall.targets import INCIDENT_ROOM

__all__ = ["DetailReader", "SlackNotifier"]

DetailReader = Callable[[str], Awaitable[IncidentDetail | None]]
"""Reads an incident with its outbox and timeline (the service façade's ``detail``)."""

_REMEMBER = 10_000  # incidents and places whose card (and lock) this process keeps in mind
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
        people: Callable[[], Mapping[str, Person]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.api = api
        self.rooms = Rooms(api, people)
        self._clock = clock
        self._public_url = public_url
        self._detail = detail
        # One delivery at a time per incident and place, and the cards this process posted
        # (with how many timeline events they told): rows claimed together for one incident
        # (two tiers at once) find the card the first one posted instead of posting another.
        self._locks: OrderedDict[tuple[str, str], asyncio.Lock] = OrderedDict()
        self._cards: OrderedDict[tuple[str, str], tuple[_Posted, int]] = OrderedDict()
        self._shown: dict[tuple[str, str], str] = {}  # the card each one shows now (a digest)

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
            while len(self._locks) > _REMEMBER:
                self._locks.popitem(last=False)
        return lock

    def _remember(self, d: Delivery, provider_id: str) -> None:
        channel, ts, told = provider_id.split("/")
        self._cards[(d.incident.id, d.row.person)] = (_Posted(channel, ts), int(told))
        while len(self._cards) > _REMEMBER:
            gone, _ = self._cards.popitem(last=False)
            self._shown.pop(gone, None)

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """One attempt: post the card, or edit it and reply in its thread."""
        try:
            async with self._lock((delivery.incident.id, delivery.row.person)):
                result = await self._send(delivery)
                if result.ok and result.provider_id.count("/") == 2:
                    self._remember(delivery, result.provider_id)
                return result
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
        if d.row.person == f"slack:{INCIDENT_ROOM}":
            return await self._room(d)
        dest = await self._destination(d)
        if dest is None:
            return DeliveryResult(
                False, FailureReason.NO_ADDRESS, f"slack: {d.row.person} has no email to find"
            )
        posted, news, seen, _ = await self._earlier(d)
        return await self._card(d, dest, posted, news, seen)

    async def _card(
        self,
        d: Delivery,
        dest: str,
        posted: _Posted | None,
        news: list[TimelineEvent],
        seen: int,
        notes: tuple[str, ...] = (),
    ) -> DeliveryResult:
        """Post the card to ``dest``, or edit the one ``posted`` and thread ``news`` under it."""
        text, blocks = card(d.incident, d.alerts, self._public_url)
        digest = hashlib.sha256(json.dumps([text, blocks], sort_keys=True).encode()).hexdigest()
        key = (d.incident.id, d.row.person)
        if posted is None:
            answer = await self.api.call("chat.postMessage", channel=dest, text=text, blocks=blocks)
            self._shown[key] = digest
            channel, ts = str(answer["channel"]), str(answer["ts"])
            # A card posted late (a storm held it) with no row left to thread what happened
            # meanwhile: threaded now, under it.
            reply = thread_text(news, "")
            if reply:
                await self.api.call("chat.postMessage", channel=channel, thread_ts=ts, text=reply)
            return DeliveryResult(ok=True, provider_id=f"{channel}/{ts}/{seen}", notes=notes)
        # Coalescing: rows about changes an earlier edit already showed (several claimed
        # together, a storm) cost no call at all, so Slack's per-channel limit is spared.
        if self._shown.get(key) != digest:
            await self.api.call(
                "chat.update", channel=posted.channel, ts=posted.ts, text=text, blocks=blocks
            )
            self._shown[key] = digest
        reply = thread_text(news, _NEWS.get(d.row.kind, ""))
        if reply:
            await self.api.call(
                "chat.postMessage", channel=posted.channel, thread_ts=posted.ts, text=reply
            )
        return DeliveryResult(
            ok=True, provider_id=f"{posted.channel}/{posted.ts}/{seen}", notes=notes
        )

    async def _room(self, d: Delivery) -> DeliveryResult:
        """The incident's own channel: made on its first row, then kept up and archived."""
        posted, news, seen, outbox = await self._earlier(d)
        if d.row.kind == OutboxKind.ARCHIVE:
            return await self._archive(d, posted)
        channel = posted.channel if posted is not None else await self.rooms.create(d.incident)
        notes = tuple(await self.rooms.invite(channel, outbox))
        if posted is not None and d.row.kind == OutboxKind.REMINDER:
            # The status-update reminder goes to the channel itself, where everyone sees it.
            text = thread_text(news, _NEWS[OutboxKind.REMINDER])
            await self.api.call("chat.postMessage", channel=channel, text=text)
            sent = f"{posted.channel}/{posted.ts}/{seen}"
            return DeliveryResult(ok=True, provider_id=sent, notes=notes)
        return await self._card(d, channel, posted, news, seen, notes)

    async def _archive(self, d: Delivery, posted: _Posted | None) -> DeliveryResult:
        if posted is None:
            return DeliveryResult(ok=True, notes=("no incident channel was made",))
        keep = ""
        if not self.cfg.archive_incident_channels:
            keep = "kept: adapters.slack.archive_incident_channels is off"
        elif d.incident.status != Status.RESOLVED:
            keep = f"kept: the incident is {d.incident.status.value} again"
        elif d.incident.resolved_at is not None and d.incident.resolved_at > d.row.created_at:
            # Reopened and resolved again since this row was made: that resolve's own archive
            # row waits out the monitoring window from then.
            keep = "kept: resolved again since; archived after that resolve's window"
        if keep:
            return DeliveryResult(ok=True, provider_id=posted.channel, notes=(keep,))
        await self.rooms.archive(posted.channel)
        return DeliveryResult(ok=True, provider_id=posted.channel)

    async def _earlier(
        self, d: Delivery
    ) -> tuple[_Posted | None, list[TimelineEvent], int, list[OutboxRecord]]:
        """The card posted before for this incident and place, the timeline events since the
        last post there, and how many events the timeline holds now.

        Each row's provider id is ``<channel>/<ts>/<n>``: the card, and that the first ``n``
        timeline events were told (on the card or in its thread) when the row was sent.
        """
        if self._detail is None:
            return None, [], 0, []
        found = await self._detail(d.incident.id)
        if found is None:
            return None, [], 0, []
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
        known = self._cards.get((d.incident.id, d.row.person))
        if not sent and known is None:
            return None, *self._catch_up(d, found), found.outbox
        told = max(
            (int(n) if n.isdigit() else 0 for *_, n in (r.provider_id.split("/") for r in sent)),
            default=0,
        )
        if sent:
            channel, ts, _ = sent[0].provider_id.split("/")
            posted = _Posted(channel, ts)
        else:
            assert known is not None
            posted = known[0]
        # What this process told since (rows not recorded yet) counts too.
        told = max(told, known[1] if known is not None and known[0] == posted else 0)
        news = [e for e in found.timeline[told:] if e.kind not in _QUIET]
        return posted, news, seen, found.outbox

    def _catch_up(self, d: Delivery, found: IncidentDetail) -> tuple[list[TimelineEvent], int]:
        """For a card not posted yet: what to thread under it, and how many events it tells.

        The card shows the incident as it is now, but what happened since it was first due
        here (a storm held it) belongs in its thread. A row still to come for this place (a
        change made while it waited) threads it a slot later, keeping to one message a
        delivery; with none left, this delivery threads it itself.
        """
        mine = [r for r in found.outbox if r.channel == "slack" and r.person == d.row.person]
        due = min((r.created_at for r in mine), default=d.row.created_at)
        told = next((i for i, e in enumerate(found.timeline) if e.at > due), len(found.timeline))
        going = {d.row.id, *(r.id for r in d.bundle)}
        later = [r for r in mine if r.state == OutboxState.PENDING and r.id not in going]
        if any(r.kind != OutboxKind.ARCHIVE for r in later):
            return [], told
        news = [e for e in found.timeline[told:] if e.kind not in _QUIET]
        return news, len(found.timeline)
