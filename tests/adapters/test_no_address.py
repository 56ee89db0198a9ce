"""A delivery to someone with no address on its channel is never lost (issue 10).

``tocsin check`` refuses a configured person without the address a channel needs, but people can
still reach delivery without one (a PagerDuty-backed schedule's answer, a person added at run
time). Such a delivery cannot be attempted: it goes to the person's fallback, and past it to
``log`` with an ERROR line and ``tocsin_notifications_total{outcome="undeliverable"}``, as a
channel without an adapter does.

Everything here is real: the notifiers ``build_notifiers`` makes (email to aiosmtpd, phone and
SMS to the fake Twilio, ``log``), the dispatcher, a SQLite store, on a virtual clock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from adapters.config import AdaptersConfig, DispatchConfig
from adapters.delivery.dispatcher import OutboxDispatcher
from adapters.delivery.notifier import Notifier
from adapters.delivery.policy import store_policy
from adapters.registry import AdapterContext, build_notifiers
from escalation.engine.clock import VirtualClock
from escalation.engine.metrics import EscalationMetrics
from escalation.incidents.directory import Directory
from escalation.incidents.model import Changes, IncidentRecord, OutboxRecord, OutboxState, Status
from escalation.oncall.people import Person
from escalation.store.sqlite import SqliteStore
from rules.matrix import load_preset
from tests.driver.config import email_adapter, phone_adapter
from tests.driver.records import T0, incident
from tests.driver.records import page as row
from tests.fakes.smtp import SmtpServer
from tests.fakes.twilio import FakeTwilio

S = timedelta(seconds=1)

PEOPLE = {
    # pat texts first, then email; pat has no phone number.
    "pat": Person(name="Pat", email="pat@example.com", channels=["sms"], fallback=["sms", "email"]),
    # quinn has neither a phone number nor an email address.
    "quinn": Person(name="Quinn", channels=["phone"], fallback=["phone", "sms", "email"]),
    "sam": Person(name="Sam", phone="+14155550100", channels=["sms"]),
}


@dataclass
class World:
    store: SqliteStore
    clock: VirtualClock
    registry: CollectorRegistry
    dispatcher: OutboxDispatcher
    smtp: SmtpServer
    twilio: FakeTwilio

    async def add(self, *records: IncidentRecord | OutboxRecord) -> None:
        ch = Changes()
        for r in records:
            (ch.new_incidents if isinstance(r, IncidentRecord) else ch.new_outbox).append(r)
        async with self.store.transaction() as tx:
            await tx.apply(ch)

    async def tick(self, at: datetime) -> None:
        self.clock.set(at)
        async with self.store.transaction() as tx:
            rows = await tx.claim_outbox(at, "test", at + 30 * S, 200)
        if rows:
            await self.dispatcher.dispatch(rows)

    async def states(self) -> dict[str, tuple[OutboxState, str]]:
        async with self.store.transaction() as tx:
            return {r.id: (r.state, r.last_error) for r in await tx.outbox_of("inc1")}

    def count(self, channel: str, outcome: str) -> float:
        labels = {"channel": channel, "outcome": outcome}
        return self.registry.get_sample_value("tocsin_notifications_total", labels) or 0.0


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def world(tmp_path: Path, smtp: SmtpServer) -> AsyncIterator[World]:
    twilio = await FakeTwilio().start()
    session = aiohttp.ClientSession()
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    clock = VirtualClock(T0)
    cfg = AdaptersConfig.model_validate(
        {
            "email": email_adapter(smtp.host, smtp.port, link_secret="0123456789abcdef0123"),
            "phone": phone_adapter(twilio.url),
        }
    )
    notifiers: dict[str, Notifier] = build_notifiers(
        cfg, AdapterContext("https://tocsin.example.com", lambda: session, clock)
    )
    assert sorted(notifiers) == ["email", "log", "phone", "sms"]
    directory = Directory(matrix=load_preset("default"), people=PEOPLE)
    registry = CollectorRegistry()
    dispatcher = OutboxDispatcher(
        store, clock, lambda: notifiers, lambda: directory, EscalationMetrics(registry)
    )
    yield World(store, clock, registry, dispatcher, smtp, twilio)
    await store.close()
    await session.close()
    await twilio.close()


@pytest.mark.parametrize("kind", ["page", "resolve"])
async def test_a_person_without_an_address_is_reached_through_their_fallback(
    world: World, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    status = Status.TRIGGERED if kind == "page" else Status.RESOLVED
    first = row("pat", "sms", kind=kind)
    await world.add(incident(status=status), first)
    caplog.set_level(logging.INFO)
    await world.tick(T0)
    await world.tick(T0 + S)
    assert await world.states() == {
        first.id: (OutboxState.FAILED, "person 'pat' has no phone number"),
        f"{first.id}>email": (OutboxState.SENT, ""),
    }
    assert [m.rcpt_tos for m in world.smtp.messages] == [("pat@example.com",)]
    assert world.twilio.requests == []  # nothing was attempted without a number
    assert world.count("sms", "undeliverable") == 0  # pat's own fallback carried it
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_past_the_fallback_it_goes_to_log_with_an_error_line_and_the_metric(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    first = row("quinn", "phone")
    await world.add(incident(), first)
    caplog.set_level(logging.INFO)
    for i in range(4):  # phone, then quinn's fallbacks sms and email, then log
        await world.tick(T0 + i * S)
    chain = f"{first.id}>sms>email>log"
    assert await world.states() == {
        first.id: (OutboxState.FAILED, "person 'quinn' has no phone number"),
        f"{first.id}>sms": (OutboxState.FAILED, "person 'quinn' has no phone number"),
        f"{first.id}>sms>email": (OutboxState.FAILED, "no email address for quinn"),
        chain: (OutboxState.SENT, ""),
    }
    assert world.count("email", "undeliverable") == 1
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.getMessage() == (
        "page to quinn is undeliverable: no configured channel can carry it; "
        "writing it to the log channel"
    )
    assert (error.__dict__["person"], error.__dict__["incident"]) == ("quinn", "inc1")
    [line] = [r for r in caplog.records if r.getMessage() == "notification"]
    assert (line.__dict__["channel"], line.__dict__["person"]) == ("log", "quinn")
    assert world.twilio.requests == [] and world.smtp.messages == []


async def test_people_without_an_address_do_not_open_the_channels_breaker(world: World) -> None:
    policy = store_policy(
        DispatchConfig.model_validate({"breaker_failures": 2, "breaker_reset": "1h"}),
        world.store,
        shared=False,
    )
    world.dispatcher.policy = lambda: policy
    await world.add(incident(), row("quinn", "sms"), row("pat", "sms"))
    await world.tick(T0)
    await world.add(row("sam", "sms"))
    await world.tick(T0 + S)
    # Two failures without an address say nothing of SMS: sam's text is sent, not held.
    assert (await world.states())[row("sam", "sms").id] == (OutboxState.SENT, "")
    assert [dict(r.form)["To"] for r in world.twilio.requests_to("Messages")] == ["+14155550100"]
    assert world.count("sms", "breaker_open") == 0
