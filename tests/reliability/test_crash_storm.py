"""A storm of escalating incidents while ``tocsin serve`` is SIGKILLed at random moments.

A real ``tocsin serve`` (SQLite, then PostgreSQL) pages the fake PagerDuty and people on the
``log`` channel through a four-tier policy whose tiers are two seconds apart:

    tier 0 at 0s   pagerduty:core
    tier 1 at 2s   p1
    tier 2 at 4s   pagerduty:db and p2
    tier 3 at 6s   p3

An "Alertmanager" thread posts 40 alerts (one incident each) over four seconds, retrying every
one until it is answered 200. Meanwhile the process is killed with SIGKILL at three seeded
random moments (``TOCSIN_FAULT_SEED`` overrides the seed) and restarted on the same store each
time. When everything due has fired, half the alerts are resolved, and the process is killed
once more while the resolutions go out.

Afterwards, read from the store itself and from the fake PagerDuty:
- one incident per alert; every step fired exactly once; one outbox row per (incident, tier,
  person, channel), delivered; one ``notify`` timeline event per page; one resolve per
  resolved incident and one "resolved" notice per paged (person, channel), delivered;
- PagerDuty holds exactly one alert per (service, incident) — triggered, or resolved for the
  resolved incidents — and received at least one trigger for each. A trigger can legitimately
  arrive twice (tocsin was killed after sending and before recording it: at-least-once, made
  harmless by the dedup_key); those duplicates are counted and reported, not failed.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.driver.config import postgres_store, sqlite_store
from tests.driver.payloads import am_body
from tests.driver.process import ServeProc, serve_config, wait_for
from tests.driver.threaded import ThreadedPagerDuty
from tests.reliability.conftest import Db
from tests.reliability.faultkit import Poster

INCIDENTS = 40
KILLS = 3
SEED = int(os.environ.get("TOCSIN_FAULT_SEED", "20260705"))
KEYS = {"core": "c0re0000000000000000000000000001", "db": "db000000000000000000000000000002"}
STEPS = [
    {"after": "0s", "notify": ["pagerduty:core"]},
    {"after": "2s", "notify": ["person:p1"], "via": ["log"]},
    {"after": "4s", "notify": ["pagerduty:db", "person:p2"]},
    {"after": "6s", "notify": ["person:p3"], "via": ["log"]},
]
# (tier, person, channel) every incident pages, in order.
PAGES = [
    (0, "pagerduty:core", "pagerduty"),
    (1, "p1", "log"),
    (2, "pagerduty:db", "pagerduty"),
    (2, "p2", "log"),
    (3, "p3", "log"),
]
STORM_SECONDS = 4.0
LAST_TIER = 6.0


@pytest.fixture
def pagerduty(tmp_path: Path) -> Iterator[ThreadedPagerDuty]:
    pd = ThreadedPagerDuty(tmp_path)
    yield pd
    pd.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, Any], Db]:
    """(the ``store:`` section, a reader of that store) for each backend."""
    if request.param == "sqlite":
        path = tmp_path / "tocsin.db"
        return sqlite_store(path), Db(sqlite_path=path)
    dsn, schema = request.getfixturevalue("pg_schema")
    return postgres_store(dsn, schema), Db(dsn=dsn, schema=schema)


class Service:
    """``tocsin serve``: the one process of the moment, restarted after every kill."""

    def __init__(self, config: Path, tmp: Path) -> None:
        self.config = config
        self.tmp = tmp
        self.all: list[ServeProc] = []
        self.current: ServeProc | None = None

    def start(self) -> None:
        self.current = self._start()

    def _start(self) -> ServeProc:
        p = ServeProc(f"tocsin-{len(self.all)}", self.config, self.tmp / "tocsin.log")
        self.all.append(p)
        return p.wait_ready()

    def url(self) -> str:
        assert self.current is not None
        return self.current.url

    def kill_and_restart(self) -> None:
        assert self.current is not None
        self.current.kill()
        self.current = self._start()

    def stop(self) -> None:
        for p in self.all:
            p.stop()


def _kill_at(service: Service, moments: list[float], t0: float) -> None:
    for at in moments:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        service.kill_and_restart()


@dataclass
class Storm:
    """What the storm did: the incidents, the ones resolved, when the kills landed."""

    ids: list[str]
    resolved: set[str]
    kills: list[float]  # seconds into the storm
    last_kill: float  # seconds into the resolutions
    retried_posts: int  # POSTs not answered 200 (and retried, as Alertmanager does)


def test_sigkill_storm_every_due_step_fires_exactly_once(
    tmp_path: Path,
    store: tuple[dict[str, Any], Db],
    pagerduty: ThreadedPagerDuty,
    record_property: Callable[[str, object], None],
) -> None:
    section, db = store
    pd_cfg = {
        "events_url": pagerduty.http_url,
        "allow_insecure_events_url": True,  # a local fake over plain http
        "services": KEYS,
        "timeout": "5s",
    }
    config = serve_config(
        tmp_path, section, steps=STEPS, people=["p1", "p2", "p3"], pagerduty=pd_cfg
    )
    service = Service(config, tmp_path)
    try:
        try:
            service.start()
            storm = _storm(service, db, random.Random(SEED))
        finally:
            service.stop()
        dup_triggers, dup_resolves, requests = _check(service, db, pagerduty, storm)
    except BaseException:
        for p in service.all:
            print(f"----- {p.name} -----\n{p.output()[-4000:]}")
        raise
    record_property("duplicate_triggers", dup_triggers)
    record_property("duplicate_resolves", dup_resolves)
    print(
        f"crash storm (seed {SEED}): killed {[round(k, 2) for k in storm.kills]}s into the storm"
        f" and {storm.last_kill:.2f}s into the resolutions; {storm.retried_posts} POSTs retried;"
        f" {requests} PagerDuty requests, duplicate triggers {dup_triggers},"
        f" duplicate resolves {dup_resolves}"
    )


def _storm(service: Service, db: Db, rng: random.Random) -> Storm:
    names = [f"Storm{i:02d}" for i in range(INCIDENTS)]
    started = datetime.now(UTC)
    poster = Poster(
        [am_body(n, started) for n in names], service.url, interval=STORM_SECONDS / INCIDENTS
    )
    # Kills anywhere from the first alerts to the last tier's due time.
    kills = sorted(rng.uniform(0.3, STORM_SECONDS + LAST_TIER) for _ in range(KILLS))
    t0 = time.monotonic()
    poster.start()
    try:
        _kill_at(service, kills, t0)
        poster.join(60)
    finally:
        poster.halt()  # a failed test leaves no thread retrying in the background
    assert poster.accepted == INCIDENTS, poster.statuses
    assert set(poster.statuses) <= {0, 200, 503}, Counter(poster.statuses)
    retried = poster.retried

    incidents = {r["key"]: r["id"] for r in db.incidents()}
    assert len(incidents) == INCIDENTS
    ids = sorted(incidents.values())

    def escalated() -> bool:
        rows = [r for r in db.outbox() if r["kind"] == "page"]
        return len(rows) == INCIDENTS * len(PAGES) and all(r["state"] == "sent" for r in rows)

    wait_for(escalated, timeout=30, what="every tier paged and delivered")

    # Resolve every other incident; kill once more while the resolutions go out.
    resolving = names[::2]
    poster = Poster(
        [am_body(n, started, status="resolved") for n in resolving], service.url, interval=0.02
    )
    last_kill = rng.uniform(0.05, 0.6)
    t0 = time.monotonic()
    poster.start()
    try:
        _kill_at(service, [last_kill], t0)
        poster.join(60)
    finally:
        poster.halt()
    assert poster.accepted == len(resolving), poster.statuses
    assert set(poster.statuses) <= {0, 200, 503}, Counter(poster.statuses)
    retried += poster.retried
    resolved = {incidents[k] for n in resolving for k in incidents if f'alertname="{n}"' in k}
    assert len(resolved) == len(resolving)

    def notified() -> bool:
        rows = [r for r in db.outbox() if r["kind"] == "resolve"]
        return len(rows) == len(resolved) * len(PAGES) and all(r["state"] == "sent" for r in rows)

    wait_for(notified, timeout=30, what="every resolved notice delivered")
    time.sleep(1.5)  # anything still to come (a duplicate) would arrive now
    return Storm(ids, resolved, kills, last_kill, retried)


def _check(
    service: Service, db: Db, pagerduty: ThreadedPagerDuty, storm: Storm
) -> tuple[int, int, int]:
    """Assert everything; (duplicate triggers, duplicate resolves, PagerDuty requests)."""
    ids, resolved = storm.ids, storm.resolved
    expected_pages = Counter((i, *p) for i in ids for p in PAGES)
    expected_notices = Counter(
        (i, person, channel) for i in resolved for _, person, channel in PAGES
    )

    # -- the store: every step exactly once, every page exactly once ------------------------------
    steps = db.steps()
    assert Counter((s["incident_id"], s["tier"], s["round"], s["kind"]) for s in steps) == Counter(
        (i, t, 0, "page") for i in ids for t in range(len(STEPS))
    )
    assert {s["state"] for s in steps} == {"fired"}

    outbox = db.outbox()
    pages = [r for r in outbox if r["kind"] == "page"]
    assert Counter((r["incident_id"], r["tier"], r["person"], r["channel"]) for r in pages) == (
        expected_pages
    )
    assert {r["state"] for r in outbox} == {"sent"}
    notices = [r for r in outbox if r["kind"] == "resolve"]
    assert Counter((r["incident_id"], r["person"], r["channel"]) for r in notices) == (
        expected_notices
    )
    assert {r["kind"] for r in outbox} == {"page", "resolve"}

    timeline = db.timeline()
    notify = Counter(
        (e["incident_id"], e["data"]["tier"], e["data"]["person"], e["data"]["channel"])
        for e in timeline
        if e["kind"] == "notify"
    )
    assert notify == expected_pages
    assert Counter(e["incident_id"] for e in timeline if e["kind"] == "resolve") == Counter(
        resolved
    )
    assert Counter(e["incident_id"] for e in timeline if e["kind"] == "open") == Counter(ids)

    # -- PagerDuty: one alert per (service, incident), in the right state -------------------------
    snap = pagerduty.snapshot()
    assert {r.status for r in snap.events} == {202}, [
        (r.status, r.body[:200]) for r in snap.events if r.status != 202
    ]
    alerts = Counter((a.routing_key, a.dedup_key) for a in snap.alerts)
    assert alerts == Counter((key, i) for key in KEYS.values() for i in ids)
    for a in snap.alerts:
        want = "resolved" if a.dedup_key in resolved else "triggered"
        assert a.status == want, (a.dedup_key, a.actions)
        triggers = [x for x in a.actions if x == "trigger"]
        assert triggers and a.actions[: len(triggers)] == triggers, a.actions
        assert a.actions[len(triggers) :] == (["resolve"] if want == "resolved" else []), a.actions

    trigger_requests = Counter(snap.actions("trigger"))
    assert set(trigger_requests) == set(alerts)
    duplicate_triggers = sum(n - 1 for n in trigger_requests.values())
    resolve_requests = Counter(snap.actions("resolve"))
    assert set(resolve_requests) == {(k, i) for k in KEYS.values() for i in resolved}
    duplicate_resolves = sum(n - 1 for n in resolve_requests.values())
    assert len(snap.dropped) == duplicate_resolves  # a repeated resolve finds no open alert
    assert len(snap.events) == (
        len(ids) * len(KEYS) + duplicate_triggers + len(resolved) * len(KEYS) + duplicate_resolves
    )

    # -- the processes ----------------------------------------------------------------------------
    assert len(service.all) == KILLS + 2
    errors = [e for p in service.all for e in p.errors()]
    assert errors == [], errors
    return duplicate_triggers, duplicate_resolves, len(snap.events)
