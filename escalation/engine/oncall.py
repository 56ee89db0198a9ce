"""The on-call side of the façade: who is on call, overrides made at run time, calendar feeds.

Overrides live in the store, so every replica's engine sees one as soon as it commits: the
engine lays the overrides in force over the configured schedules (``live_directory``) in the
transaction that fires a step. Calendar-feed tokens are kept as SHA-256 hashes only; the secret
is shown once, when it is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from escalation.engine.clock import Clock
from escalation.engine.service import StoreUnavailable
from escalation.incidents.directory import Directory
from escalation.incidents.oncall_view import RoleView, ScheduleView, oncall_view
from escalation.oncall.overrides import (
    CalendarToken,
    OverrideProblem,
    StoredOverride,
    check_override,
    overrides_by_schedule,
    person_shifts,
)
from escalation.store.base import Store, StoreError

__all__ = [
    "FEED_BACK",
    "Feed",
    "OncallService",
    "OverrideNotFound",
    "OverrideRefused",
    "ScheduleNotFound",
    "live_directory",
    "token_hash",
]

log = logging.getLogger("tocsin.oncall")

# A feed also lists the last week, so a shift that just ended still shows in the calendar.
FEED_BACK = timedelta(days=7)


class _Overrides(Protocol):
    async def overrides(
        self,
        schedule: str | None = None,
        *,
        ending_after: datetime | None = None,
        removed: bool = False,
    ) -> list[StoredOverride]: ...


async def live_directory(source: _Overrides, base: Directory, now: datetime) -> Directory:
    """``base`` with the stored overrides not yet ended at ``now`` laid over its schedules."""
    stored = await source.overrides(ending_after=now)
    return base.with_overrides(overrides_by_schedule(stored))


def token_hash(secret: str) -> str:
    """What is stored for a calendar token (the secret is long and random: no slow hash)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class ScheduleNotFound(LookupError):
    """No schedule (or person, for a person's feed) by that name is configured."""


class OverrideNotFound(LookupError):
    """The schedule has no override by that id that is not already removed."""


class OverrideRefused(ValueError):
    """The override may not be made; ``problems`` say why (a conflict or bad input)."""

    def __init__(self, problems: list[OverrideProblem]) -> None:
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Feed:
    """What one calendar feed lists: (schedule, person, from, to) shifts with their zones."""

    kind: Literal["schedule", "person"]
    name: str
    zones: dict[str, str]  # schedule → its IANA timezone
    shifts: list[tuple[str, str, datetime, datetime]]


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except StoreError as e:
        raise StoreUnavailable(str(e) or type(e).__name__) from e


class OncallService:
    """Reads and writes of the on-call side; each write is one store transaction."""

    def __init__(self, store: Store, clock: Clock, directory: Callable[[], Directory]) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory

    async def live(self, now: datetime | None = None) -> Directory:
        """The directory as the engine sees it at ``now`` (default: the clock's now)."""
        with _unavailable():
            return await live_directory(self.store, self.directory(), now or self.clock.now())

    async def view(self) -> tuple[datetime, list[ScheduleView], list[RoleView]]:
        """Now, and who is on call now and next for every schedule and role."""
        now = self.clock.now()
        schedules, roles = oncall_view(await self.live(now), now)
        return now, schedules, roles

    async def shifts(
        self, schedule: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime, str]]:
        """``schedule``'s timeline over [start, end) with the stored overrides laid over it
        (empty for a PagerDuty-kept schedule: PagerDuty knows its future, tocsin does not)."""
        self._schedule(schedule)
        sched = (await self.live(start)).schedules[schedule]
        return [] if sched.pagerduty is not None else sched.shifts(start, end)

    def _schedule(self, name: str) -> None:
        if name not in self.directory().schedules:
            raise ScheduleNotFound(name)

    async def overrides(self, schedule: str, *, ended: bool = False) -> list[StoredOverride]:
        """``schedule``'s overrides not removed (and not ended, unless ``ended``)."""
        self._schedule(schedule)
        with _unavailable():
            after = None if ended else self.clock.now()
            return await self.store.overrides(schedule, ending_after=after)

    async def create_override(
        self,
        schedule: str,
        person: str,
        start: datetime | None,
        end: datetime,
        *,
        replaces: str | None = None,
        actor: str,
        on_behalf_of: str = "",
    ) -> StoredOverride:
        """Store a new override (start defaults to now); OverrideRefused says why not."""
        self._schedule(schedule)
        d = self.directory()
        with _unavailable():
            async with self.store.transaction() as tx:
                now = self.clock.now()
                new = StoredOverride(
                    id=f"ovr-{secrets.token_hex(6)}",
                    schedule=schedule,
                    person=person,
                    starts_at=start or now,
                    ends_at=end,
                    replaces=replaces,
                    created_at=now,
                    created_by=actor,
                    on_behalf_of=on_behalf_of,
                )
                # Two overlapping requests at once must not both pass the overlap check.
                await tx.lock_keys([f"overrides:{schedule}"])
                existing = await tx.overrides(schedule, ending_after=now)
                problems = check_override(d.schedules[schedule], d.people, existing, new, now)
                if problems:
                    raise OverrideRefused(problems)
                await tx.add_override(new)
        log.info(
            "schedule override created",
            extra={
                "override": new.id,
                "schedule": schedule,
                "person": person,
                "replaces": replaces,
                "start": new.starts_at.isoformat(),
                "end": new.ends_at.isoformat(),
                "actor": actor,
                "on_behalf_of": on_behalf_of,
            },
        )
        return new

    async def remove_override(
        self, schedule: str, override_id: str, *, actor: str, on_behalf_of: str = ""
    ) -> StoredOverride:
        """Mark the override removed (it stays stored for the audit trail)."""
        self._schedule(schedule)
        with _unavailable():
            async with self.store.transaction() as tx:
                await tx.lock_keys([f"overrides:{schedule}"])
                now = self.clock.now()
                gone = await tx.remove_override(schedule, override_id, now, actor, on_behalf_of)
        if gone is None:
            raise OverrideNotFound(override_id)
        log.info(
            "schedule override removed",
            extra={
                "override": override_id,
                "schedule": schedule,
                "actor": actor,
                "on_behalf_of": on_behalf_of,
            },
        )
        return gone

    async def create_calendar_token(
        self, kind: Literal["schedule", "person"], name: str, *, actor: str
    ) -> tuple[CalendarToken, str]:
        """A new feed token and its secret (shown this once; only the hash is stored)."""
        d = self.directory()
        if name not in (d.schedules if kind == "schedule" else d.people):
            raise ScheduleNotFound(name)
        if kind == "schedule" and d.schedules[name].pagerduty is not None:
            problem = OverrideProblem("schedule", "PagerDuty keeps this schedule; use its feed")
            raise OverrideRefused([problem])
        secret = secrets.token_urlsafe(32)
        token = CalendarToken(
            id=f"cal-{secrets.token_hex(6)}",
            kind=kind,
            name=name,
            token_hash=token_hash(secret),
            created_at=self.clock.now(),
            created_by=actor,
        )
        with _unavailable():
            async with self.store.transaction() as tx:
                await tx.add_calendar_token(token)
        log.info(
            "calendar feed token created",
            extra={"token_id": token.id, "kind": kind, "feed_of": name, "actor": actor},
        )
        return token, secret

    async def calendar_tokens(self) -> list[CalendarToken]:
        with _unavailable():
            return await self.store.calendar_tokens()

    async def revoke_calendar_token(self, token_id: str, *, actor: str) -> bool:
        """False when no live token has that id."""
        with _unavailable():
            async with self.store.transaction() as tx:
                done = await tx.revoke_calendar_token(token_id, self.clock.now(), actor)
        if done:
            log.info("calendar feed token revoked", extra={"token_id": token_id, "actor": actor})
        return done

    async def feed(self, secret: str, weeks: int) -> Feed | None:
        """The shifts the feed opened by ``secret`` lists, from a week ago to ``weeks`` ahead;
        None when the token is unknown or revoked (or names what is no longer configured)."""
        with _unavailable():
            token = await self.store.calendar_token(token_hash(secret))
        if token is None:
            return None
        now = self.clock.now()
        start, end = now - FEED_BACK, now + timedelta(weeks=weeks)
        with _unavailable():
            stored = await self.store.overrides(ending_after=start)
        d = self.directory().with_overrides(overrides_by_schedule(stored))
        zones = {name: s.timezone for name, s in d.schedules.items()}
        if token.kind == "person":
            if token.name not in d.people:
                return None
            found = person_shifts(d.schedules, token.name, start, end)
            shifts = [(s, token.name, a, b) for s, a, b in found]
        else:
            sched = d.schedules.get(token.name)
            if sched is None or sched.pagerduty is not None:
                return None
            shifts = [(token.name, who, a, b) for a, b, who in sched.shifts(start, end)]
        return Feed(token.kind, token.name, zones, shifts)
