"""The service façade: an inbound delivery and its effect commit together, once.

Run on both backends: on PostgreSQL two replicas meet in the database, not in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from escalation.engine.clock import VirtualClock
from escalation.engine.metrics import EscalationMetrics
from escalation.engine.service import (
    ActOn,
    Delivery,
    EscalationService,
    IncidentNotFound,
    Outcome,
    StoreUnavailable,
)
from escalation.incidents.actions import Action, IllegalTransition
from escalation.incidents.directory import Directory
from escalation.incidents.model import (
    Changes,
    IncidentRecord,
    KeyAlias,
    OutboxRecord,
    OutboxState,
    Status,
)
from escalation.oncall.people import Person
from escalation.store.base import Store, StoreError, Tx
from escalation.store.factory import StoreConfig, make_store
from rules.matrix import load_preset

DSN_ENV = "TOCSIN_TEST_POSTGRES_DSN"
T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
DIRECTORY = Directory(
    matrix=load_preset("default"),
    people={"alice": Person(name="Alice", fallback=["sms", "email"])},
)
KNOCK = Delivery("pagerduty", "W-1")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = make_store(StoreConfig(path=str(tmp_path / "tocsin.db")))
        await s.open()
        yield s
        await s.close()
        return
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        pytest.skip(f"set {DSN_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) to run")
    schema = f"tocsin_test_{uuid.uuid4().hex[:12]}"
    s = make_store(StoreConfig(backend="postgres", dsn=SecretStr(dsn), schema=schema))
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def service(store: Store) -> EscalationService:
    metrics = EscalationMetrics(CollectorRegistry())
    return EscalationService(
        store, VirtualClock(T0 + timedelta(minutes=3)), lambda: DIRECTORY, metrics
    )


async def open_incident(store: Store, iid: str = "inc-1", **kw: Any) -> IncidentRecord:
    fields: dict[str, Any] = {"status": Status.TRIGGERED} | kw
    inc = IncidentRecord(
        id=iid,
        number=0,
        key=f"key-{iid}",
        severity="P1",
        title=f"title {iid}",
        team=None,
        policy_name="default",
        policy={"steps": []},
        level={},
        opened_at=T0,
        updated_at=T0,
        **fields,
    )
    page = OutboxRecord(
        id=f"{iid}:s0:alice:phone",
        incident_id=iid,
        step_id=None,
        kind="page",
        tier=0,
        round=0,
        target="person:alice",
        person="alice",
        channel="phone",
        created_at=T0,
        not_before=T0,
        state=OutboxState.SENT,
        sent_at=T0,
    )
    async with store.transaction() as tx:
        await tx.apply(Changes(new_incidents=[inc], new_outbox=[page]))
    found = await store.get_incident(iid)
    assert found is not None
    return found


async def kinds(store: Store, incident_id: str, kind: str) -> list[str]:
    return [e.actor for e in await store.timeline(incident_id) if e.kind == kind]


async def test_the_same_delivery_acts_once(store: Store) -> None:
    svc = service(store)
    inc = await open_incident(store)
    first = await svc.act_once(KNOCK, [ActOn(inc.id, "jane")], Action.ACK, source="pagerduty")
    again = await svc.act_once(KNOCK, [ActOn(inc.id, "joe")], Action.ACK, source="pagerduty")

    assert first is not None and [a.outcome for a in first] == [Outcome.DONE]
    assert again is None
    assert await kinds(store, inc.id, "ack") == ["jane"]


async def test_the_same_delivery_at_once_acts_once(store: Store) -> None:
    svc = service(store)
    inc = await open_incident(store)
    replies = await asyncio.gather(
        *(
            svc.act_once(KNOCK, [ActOn(inc.id, "jane", "note")], Action.NOTE, source="pagerduty")
            for _ in range(3)
        )
    )

    assert sorted(r is None for r in replies) == [False, True, True]
    assert await kinds(store, inc.id, "note") == ["jane"]


class FailingApply:
    """The real store, except that the next ``apply`` fails as an unwritable store would."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.fail = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.inner.transaction() as tx:
            if self.fail:
                self.fail = False
                yield _Failing(tx)
            else:
                yield tx


class _Failing:
    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)

    async def apply(self, changes: Changes) -> None:
        raise StoreError("disk full")


async def test_a_delivery_whose_effect_failed_is_not_refused_on_retry(store: Store) -> None:
    inc = await open_incident(store)
    failing = FailingApply(store)
    svc = service(failing)  # type: ignore[arg-type]  # a Store by delegation

    with pytest.raises(StoreUnavailable, match="disk full"):
        await svc.act_once(KNOCK, [ActOn(inc.id, "jane")], Action.ACK, source="pagerduty")
    retried = await svc.act_once(KNOCK, [ActOn(inc.id, "jane")], Action.ACK, source="pagerduty")

    assert retried is not None and [a.outcome for a in retried] == [Outcome.DONE]
    assert (await store.get_incident(inc.id)) is not None
    assert await kinds(store, inc.id, "ack") == ["jane"]


async def test_outcomes_per_incident_and_aliases_in_the_same_unit(store: Store) -> None:
    svc = service(store)
    a = await open_incident(store, "inc-a")
    b = await open_incident(store, "inc-b", status=Status.ACKNOWLEDGED, acknowledged_at=T0)
    acted = await svc.act_once(
        KNOCK,
        [ActOn(a.id, "jane"), ActOn(b.id, "jane"), ActOn("#999", "jane")],
        Action.ACK,
        source="sms",
        aliases=[
            KeyAlias("pagerduty-incident:P1", a.id),
            KeyAlias("pagerduty-incident:P1#2", b.id),
        ],
    )

    assert acted is not None
    assert [(x.ref, x.outcome) for x in acted] == [
        (a.id, Outcome.DONE),
        (b.id, Outcome.ILLEGAL),
        ("#999", Outcome.MISSING),
    ]
    assert acted[0].incident is not None and acted[0].incident.status == Status.ACKNOWLEDGED
    assert acted[1].incident == b and "acknowledged" in acted[1].reason
    found = await svc.incidents_by_keys(["pagerduty-incident:P1", "pagerduty-incident:P1#2", "x"])
    assert {k: i.id for k, i in found.items()} == {
        "pagerduty-incident:P1": a.id,
        "pagerduty-incident:P1#2": b.id,
    }


async def test_a_delivery_naming_nothing_is_still_remembered(store: Store) -> None:
    svc = service(store)
    assert await svc.act_once(KNOCK, [], Action.ACK, source="pagerduty") == []
    assert await svc.act_once(KNOCK, [], Action.ACK, source="pagerduty") is None


async def test_act_raises_what_the_api_answers(store: Store) -> None:
    svc = service(store)
    inc = await open_incident(store)
    done = await svc.act(inc.id, Action.ACK, actor="jane", source="api")

    assert done.status == Status.ACKNOWLEDGED
    with pytest.raises(IllegalTransition, match="it is acknowledged"):
        await svc.act(inc.id, Action.ACK, actor="jane", source="api")
    with pytest.raises(IncidentNotFound):
        await svc.act("nope", Action.ACK, actor="jane", source="api")


async def test_a_status_callback_delivered_twice_falls_back_once(store: Store) -> None:
    svc = service(store)
    inc = await open_incident(store)
    row = f"{inc.id}:s0:alice:phone"
    call = Delivery("twilio-status", "CA1:no-answer")
    first = await svc.fallback_once(call, [row, f"{inc.id}:gone"], "no answer", source="phone")
    again = await svc.fallback_once(call, [row], "no answer", source="phone")

    assert first is not None and [r.channel if r else None for r in first] == ["sms", None]
    assert again is None
    assert [r.id for r in await svc.outbox_rows([row, f"{row}>sms", "x:y"])] == [row, f"{row}>sms"]


async def test_the_latest_page_by_text_or_call(store: Store) -> None:
    svc = service(store)
    await open_incident(store, "inc-a")
    assert await svc.latest_page("alice", ("sms", "phone")) == ["inc-a"]
    assert await svc.latest_page("alice", ("email",)) == []
    assert await svc.latest_page("bob", ("sms", "phone")) == []


async def test_every_store_failure_leaves_as_store_unavailable(store: Store) -> None:
    svc = service(store)
    inc = await open_incident(store)
    await store.close()
    calls: list[Callable[[], Any]] = [
        lambda: svc.get_incident(inc.id),
        lambda: svc.find_incident("#1"),
        lambda: svc.list_incidents(),
        lambda: svc.detail(inc.id),
        lambda: svc.timeline(inc.id),
        lambda: svc.act(inc.id, Action.ACK, actor="jane", source="api"),
        lambda: svc.act_once(KNOCK, [ActOn(inc.id, "jane")], Action.ACK, source="pagerduty"),
        lambda: svc.fallback_once(KNOCK, [f"{inc.id}:s0:alice:phone"], "busy", source="phone"),
        lambda: svc.outbox_rows([f"{inc.id}:s0:alice:phone"]),
        lambda: svc.remember_aliases([KeyAlias("pagerduty-incident:P1", inc.id)]),
        lambda: svc.incidents_by_keys(["pagerduty-incident:P1"]),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable):
            await call()
    await store.open()  # the fixture closes it again
