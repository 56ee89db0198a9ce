"""An incident's own Slack channel: named by the procedure's rule, joined by whom it pages.

``#<prefix>-YYYYMMDD-HHMM-<slug>`` (the incident's open time in UTC, the slug from its title),
cut to Slack's rules: lowercase letters, digits, ``-`` and ``_``, at most 80 characters. When
the name is taken (``name_taken``) the next one gets ``-2``, ``-3``, … Everyone the incident
has paged so far (any channel) is invited, found by their ``email``, those already asked
left out; people Slack does not know are left out and said so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from adapters.slack.api import SlackApi, SlackError
from escalation.incidents.model import IncidentRecord, OutboxKind, OutboxRecord, OutboxState
from escalation.oncall.people import Person

__all__ = ["MAX_NAME", "Rooms", "room_name"]

MAX_NAME = 80  # Slack's limit on a channel name
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")
_REMEMBER = 10_000  # incidents whose channel this process made, kept in mind
_ATTEMPTS = 20  # names tried before giving up (each taken one adds a suffix)
# Pages that reached someone or are on their way: those people are responders.
_PAGED = (OutboxState.SENT, OutboxState.UNKNOWN, OutboxState.PENDING)


def room_name(inc: IncidentRecord, prefix: str, attempt: int = 1) -> str:
    """The channel name for ``inc`` (``attempt`` > 1 adds ``-<attempt>`` after a collision)."""
    stamp = inc.opened_at.strftime("%Y%m%d-%H%M")
    slug = _NOT_ALLOWED.sub("-", inc.title.lower()).strip("-_")
    slug = re.sub(r"-{2,}", "-", slug)
    suffix = f"-{attempt}" if attempt > 1 else ""
    base = f"{prefix}-{stamp}"
    room = MAX_NAME - len(base) - len(suffix) - 1
    slug = slug[:room].rstrip("-_") if room > 0 else ""
    return (f"{base}-{slug}" if slug else base) + suffix


def responders(outbox: Iterable[OutboxRecord]) -> list[str]:
    """People (not places) the incident has paged, in the order it paged them."""
    out: dict[str, None] = {}
    for r in outbox:
        if r.kind == OutboxKind.PAGE and r.state in _PAGED and ":" not in r.person:
            out[r.person] = None
    return list(out)


class Rooms:
    """Creates, fills and archives incident channels."""

    def __init__(self, api: SlackApi, people: Callable[[], Mapping[str, Person]] | None) -> None:
        self.api = api
        self._people = people
        # Channels made per incident by this process: a retry after a failed invite or post
        # reuses its channel instead of making another.
        self._made: dict[str, str] = {}
        # Who this process has had join each channel: only the others are invited.
        self._invited: dict[str, set[str]] = {}

    async def create(self, inc: IncidentRecord) -> str:
        """A new channel for ``inc`` (the one made before, on a retry); its id."""
        if inc.id in self._made:
            return self._made[inc.id]
        prefix = str(inc.level.get("incident_channel_prefix") or "incident")
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                made = await self.api.call(
                    "conversations.create", name=room_name(inc, prefix, attempt)
                )
            except SlackError as e:
                if e.code == "name_taken":
                    continue
                raise
            while len(self._made) >= _REMEMBER:  # oldest first (dicts keep insertion order)
                del self._made[next(iter(self._made))]
            self._made[inc.id] = str(made["channel"]["id"])
            return self._made[inc.id]
        raise SlackError("conversations.create", "name_taken")

    async def invite(self, channel: str, outbox: Iterable[OutboxRecord]) -> list[str]:
        """Invite everyone paged so far; notes on whom Slack could not find."""
        people = self._people() if self._people is not None else {}
        ids: list[str] = []
        notes: list[str] = []
        for name in responders(outbox):
            person = people.get(name)
            if person is None or not person.email:
                notes.append(f"{name} has no email: not invited to the incident channel")
                continue
            try:
                ids.append(await self.api.user_id(person.email))
            except SlackError as e:
                if e.code != "users_not_found":
                    raise
                notes.append(f"{name} has no Slack account: not invited to the incident channel")
        known = self._invited.setdefault(channel, set())
        new = [u for u in dict.fromkeys(ids) if u not in known]
        if new:
            await self._invite(channel, new)
            known.update(new)
            while len(self._invited) > _REMEMBER:  # oldest first (dicts keep insertion order)
                del self._invited[next(iter(self._invited))]
        return notes

    async def _invite(self, channel: str, users: list[str]) -> None:
        """Have ``users`` join ``channel``. One of them in already (a later tier's call after a
        restart) makes Slack refuse the whole call and invite nobody, so each then goes alone."""
        try:
            await self.api.call("conversations.invite", channel=channel, users=",".join(users))
        except SlackError as e:
            if e.code != "already_in_channel":
                raise
            if len(users) > 1:
                for user in users:
                    await self._invite(channel, [user])

    async def archive(self, channel: str) -> None:
        try:
            await self.api.call("conversations.archive", channel=channel)
        except SlackError as e:
            if e.code != "already_archived":
                raise
