"""Concurrent notifications share one ingest transaction (``escalation/engine/batching.py``).

Through the whole app: concurrent notifications are decided in batches and each caller gets its
own outcomes; notifications that lead to one incident by different keys never undo each other.
Through the batcher alone (with a scripted run): order per key, a failure stays its own, a
caller gone before its batch leaves nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from escalation.engine.batching import IngestBatcher
from escalation.engine.intake import Intake, ingest_many_in
from escalation.engine.units import StoreUnavailable
from escalation.incidents.ingest import Classified, IngestAction, IngestOutcome
from router.receiver import parse_notification
from rules.alerts import Notification
from rules.classifier import Classification
from tests.driver.app import App
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp

pytestmark = pytest.mark.usefixtures("strict_logs")

M = timedelta(minutes=1)


def batches(app: App) -> tuple[float, float]:
    """(batches committed, notifications in them) from the app's metrics."""
    get = app.rt.registry.get_sample_value
    count = get("tocsin_ingest_batch_notifications_count") or 0.0
    return count, get("tocsin_ingest_batch_notifications_sum") or 0.0


async def test_concurrent_notifications_share_transactions_and_each_gets_its_own_outcome(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    bodies = [
        notification([alert(instance=f"db-{i}")], group_key=f'{{}}:{{instance="db-{i}"}}')
        for i in range(12)
    ]
    replies = await asyncio.gather(*(app.post(b) for b in bodies))

    for body, reply in zip(bodies, replies, strict=True):
        [outcome] = reply["incidents"]
        assert outcome["action"] == "opened"
        assert outcome["key"] == f"web.hook/{body['groupKey']}"
        assert [a["fingerprint"] for a in reply["alerts"]] == [body["alerts"][0]["fingerprint"]]
    assert len({r["incidents"][0]["incident"] for r in replies}) == 12
    count, total = batches(app)
    assert total == 12
    assert count < 12  # some shared a transaction
    listed = await app.incidents("limit=100")
    assert len(listed) == 12


async def test_two_keys_of_one_incident_at_once_both_join_it(make_team_app: MakeTeamApp) -> None:
    app = await make_team_app()
    a = alert(instance="db-1")
    k1, k2 = '{}/{team="db"}:{alertname="DiskFull"}', '{}/{env="prod"}:{alertname="DiskFull"}'
    await app.post(notification([a], receiver="team\\-db", group_key=k1))
    # A `continue: true` route: the second key becomes an alias of the same incident.
    await app.post(notification([a], receiver="sre", group_key=k2))
    await app.run_until(T0 + 2 * M)
    b = alert(instance="db-2", starts=T0 + 2 * M)
    c = alert(instance="db-3", starts=T0 + 2 * M)
    elsewhere = notification([alert(instance="web-1")], group_key="{}:{elsewhere}")
    # The first notification's batch starts at once; the two others wait for the next, together.
    _, *replies = await asyncio.gather(
        app.post(elsewhere),
        app.post(notification([b], receiver="team\\-db", group_key=k1)),
        app.post(notification([c], receiver="sre", group_key=k2)),
    )
    assert [[i["action"] for i in r["incidents"]] for r in replies] == [["joined"], ["joined"]]
    [one] = {i["incident"] for r in replies for i in r["incidents"]}
    inc = await app.incident(one)
    assert sorted(x["labels"]["instance"] for x in inc["alerts"]) == ["db-1", "db-2", "db-3"]


async def test_a_notification_changing_an_incident_another_of_the_batch_changes_is_deferred(
    make_team_app: MakeTeamApp,
) -> None:
    app = await make_team_app()
    a = alert(instance="db-1")
    k1, k2 = '{}/{team="db"}:{alertname="DiskFull"}', '{}/{env="prod"}:{alertname="DiskFull"}'
    await app.post(notification([a], receiver="team\\-db", group_key=k1))
    await app.post(notification([a], receiver="sre", group_key=k2))
    first = intake(app, notification([alert(instance="db-2")], receiver="team\\-db", group_key=k1))
    second = intake(app, notification([alert(instance="db-3")], receiver="sre", group_key=k2))
    other = intake(app, notification([alert(instance="db-4")], group_key="{}:{other}"))

    store = app.rt.service.store
    directory = app.rt.service.directory()
    async with store.transaction() as tx:
        results, changes = await ingest_many_in(tx, app.now, [first, second, other], directory)
    assert results[1] is None  # decided against the same read, it would undo the first
    assert [[o.action for o in r] for r in results if r is not None] == [
        [IngestAction.JOINED],
        [IngestAction.OPENED],
    ]
    fingerprints = {r.fingerprint for r in changes.upsert_alerts}
    assert second[1][0].alert.fingerprint not in fingerprints
    assert {first[1][0].alert.fingerprint, other[1][0].alert.fingerprint} <= fingerprints


def intake(app: App, body: dict[str, Any]) -> Intake:
    n = parse_notification(json.dumps(body).encode())
    return n, app.rt.classify(n)


# -- the batcher alone ------------------------------------------------------------------------


def make(key: str, fingerprint: str) -> Intake:
    body = notification([alert(instance=fingerprint)], group_key=key)
    n = Notification.model_validate(body)
    verdict = Classification("P3", "SEV-3", None, None, key, "t", "r", (), ())
    return n, [Classified(a, verdict) for a in n.alerts]


class Scripted:
    """A run function that records each batch (by incident key) and answers as told."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_key: str | None = None
        self.defer_key: str | None = None

    async def __call__(self, batch: Sequence[Intake]) -> list[list[IngestOutcome] | None]:
        keys = [c[0].verdict.incident_key or "" for _, c in batch]
        self.batches.append(keys)
        await self.gate.wait()
        if self.fail_key in keys:
            raise ValueError(f"bad notification {self.fail_key}")
        out: list[list[IngestOutcome] | None] = []
        for i, k in enumerate(keys):
            if k == self.defer_key and i > 0:
                out.append(None)
            else:
                out.append([IngestOutcome(k, IngestAction.OPENED)])
        return out


async def submit_all(b: IngestBatcher, intakes: list[Intake]) -> list[Any]:
    tasks = [asyncio.create_task(b.submit(i)) for i in intakes]
    return await asyncio.gather(*tasks, return_exceptions=True)


async def behind_a_first_batch(run: Scripted, b: IngestBatcher, intakes: list[Intake]) -> list[Any]:
    """Hold a first batch ("w") at the gate, queue ``intakes`` behind it, then let all run."""
    run.gate.clear()
    first = asyncio.create_task(b.submit(make("w", "w")))
    await asyncio.sleep(0)
    rest = asyncio.create_task(submit_all(b, intakes))
    await asyncio.sleep(0)
    run.gate.set()
    await first
    return await rest


async def test_each_keys_notifications_run_in_arrival_order() -> None:
    run = Scripted()
    run.gate.clear()
    b = IngestBatcher(run)
    first = asyncio.create_task(b.submit(make("x", "a")))
    await asyncio.sleep(0)  # the first batch starts alone and waits at the gate
    rest = asyncio.gather(
        *(b.submit(make(k, f)) for k, f in [("x", "b"), ("y", "c"), ("x", "d"), ("z", "c")])
    )
    await asyncio.sleep(0)
    run.gate.set()
    await first
    got = await rest
    assert [[o.key for o in r] for r in got] == [["x"], ["y"], ["x"], ["z"]]
    # x waits for x; z shares a fingerprint with y, so it waits for y; y goes with the 2nd x.
    assert run.batches == [["x"], ["x", "y"], ["x", "z"]]


async def test_a_failing_notification_fails_alone() -> None:
    run = Scripted()
    run.fail_key = "bad"
    b = IngestBatcher(run)
    intakes = [make("ok1", "a"), make("bad", "b"), make("ok2", "c")]
    ok1, bad, ok2 = await behind_a_first_batch(run, b, intakes)
    assert isinstance(bad, ValueError)
    assert [o.key for o in ok1] == ["ok1"] and [o.key for o in ok2] == ["ok2"]
    assert run.batches[1:] == [["ok1", "bad", "ok2"], ["ok1"], ["bad"], ["ok2"]]


async def test_a_store_failure_fails_the_whole_batch_without_retrying_each() -> None:
    calls: list[int] = []

    async def down(batch: Sequence[Intake]) -> list[list[IngestOutcome] | None]:
        calls.append(len(batch))
        await asyncio.sleep(0)
        raise StoreUnavailable("database is down")

    b = IngestBatcher(down)
    got = await submit_all(b, [make("a", "a"), make("b", "b"), make("c", "c")])
    assert all(isinstance(g, StoreUnavailable) for g in got)
    assert calls == [3]  # once for all three, none retried alone


async def test_a_deferred_notification_runs_first_in_the_next_batch() -> None:
    run = Scripted()
    run.defer_key = "late"
    b = IngestBatcher(run)
    got = await behind_a_first_batch(run, b, [make("a", "a"), make("late", "b")])
    assert [[o.key for o in r] for r in got] == [["a"], ["late"]]
    assert run.batches == [["w"], ["a", "late"], ["late"]]


async def test_a_caller_gone_before_its_batch_started_leaves_nothing() -> None:
    run = Scripted()
    run.gate.clear()
    b = IngestBatcher(run)
    first = asyncio.create_task(b.submit(make("w", "w")))
    await asyncio.sleep(0)
    gone = asyncio.create_task(b.submit(make("gone", "g")))
    kept = asyncio.create_task(b.submit(make("kept", "k")))
    await asyncio.sleep(0)
    gone.cancel()
    run.gate.set()
    await first
    assert [o.key for o in await kept] == ["kept"]
    assert run.batches == [["w"], ["kept"]]
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_batches_are_bounded_by_notifications_and_alerts() -> None:
    run = Scripted()
    b = IngestBatcher(run, max_notifications=2, max_alerts=1000)
    await behind_a_first_batch(run, b, [make(k, k) for k in "abcde"])
    assert run.batches == [["w"], ["a", "b"], ["c", "d"], ["e"]]
