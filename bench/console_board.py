"""The console's board with 10,000 open incidents.

Fills a store with ``--incidents`` open incidents (triggered, acknowledged and mitigated, across
the matrix's levels and three teams), each with four pending escalation steps; starts
``tocsin serve`` on it, signs in with a console token, and times full board renders (the first
page, a later page, a text search, a team filter) as a browser would fetch them.

    python bench/console_board.py [--incidents 10000] [--rounds 20] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import os
import re
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import CONFIG_HEAD, Served, free_port, machine, pct

from config.load import load_config
from escalation.incidents.model import Changes, IncidentRecord, Status, StepRecord
from escalation.incidents.policy import level_snapshot, policy_snapshot
from escalation.store.factory import StoreConfig, make_store

TOKEN = "bench-console-token-0123456789"
CONFIG = (
    CONFIG_HEAD
    + """
store: {store}
people: {{alice: {{channels: [log]}}}}
roles: {{oncall: [alice], lead: [alice], manager: [alice], vp: [alice]}}
teams: {{api: {{members: [alice]}}, db: {{members: [alice]}}, web: {{members: [alice]}}}}
adapters: {{log: {{enabled: true}}}}
"""
)
CONSOLE = f"""
  console:
    users: [{{name: bench, token: {TOKEN}, scope: read}}]
"""
STATUSES = (Status.TRIGGERED, Status.ACKNOWLEDGED, Status.MITIGATED)
TEAMS = ("api", "db", "web")


async def fill(cfg_path: Path, store_cfg: StoreConfig, n: int) -> None:
    loaded = load_config(cfg_path)
    levels = list(loaded.matrix.levels)
    snaps = {
        lv: (policy_snapshot(loaded.matrix, {}, lv, None), level_snapshot(loaded.matrix, lv))
        for lv in levels
    }
    store = make_store(store_cfg)
    await store.open()
    now = datetime.now(UTC)
    try:
        for start in range(0, n, 2000):
            ch = Changes()
            for i in range(start, min(n, start + 2000)):
                lv = levels[i % len(levels)]
                (pname, psnap), level = snaps[lv]
                inc_id = f"board{i:07d}"
                opened = now - timedelta(seconds=n - i)
                ch.new_incidents.append(
                    IncidentRecord(
                        id=inc_id,
                        number=0,
                        key=f"board/{i}",
                        status=STATUSES[i % 3],
                        severity=lv,
                        title=f"Bench{i} on host-{i % 97}",
                        team=TEAMS[i % 3],
                        policy_name=pname,
                        policy=psnap,
                        level=level,
                        opened_at=opened,
                        updated_at=opened,
                        labels={"alertname": f"Bench{i}"},
                    )
                )
                for tier in range(4):
                    ch.new_steps.append(
                        StepRecord(
                            id=f"{inc_id}:0:page:0:{tier}",
                            incident_id=inc_id,
                            kind="page",
                            epoch=0,
                            round=0,
                            tier=tier,
                            due_at=now + timedelta(hours=6, minutes=tier * 15),
                            unless="acknowledged",
                        )
                    )
            async with store.transaction() as tx:
                await tx.apply(ch)
    finally:
        await store.close()


def sign_in(base: str) -> urllib.request.OpenerDirector:
    """A cookie-keeping client, signed in as the bench console user."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    page = opener.open(f"{base}/signin").read().decode()
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m is not None
    form = {"name": "bench", "token": TOKEN, "csrf": m.group(1), "next": "/"}
    opener.open(f"{base}/signin", urllib.parse.urlencode(form).encode()).read()
    return opener


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("tocsin did not become ready in 60 s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--incidents", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()
    queries = {
        "board, first page": "/",
        "board, page 100": "/?page=100",
        "text search (q=host-42)": "/?q=host-42",
        "team filter (team=db)": "/?team=db",
    }
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        if args.backend == "sqlite":
            store_cfg = StoreConfig(backend="sqlite", path=str(Path(tmp) / "board.db"))
            store_yaml = f'{{backend: sqlite, path: "{store_cfg.path}"}}'
        else:
            dsn = os.environ["TOCSIN_BENCH_POSTGRES_DSN"]
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            store_cfg = StoreConfig(backend="postgres", dsn=dsn, schema=schema)
            store_yaml = f'{{backend: postgres, dsn: "{dsn}", schema: {schema}}}'
        cfg = Path(tmp) / "tocsin.yaml"
        text = CONFIG.format(port=port, store=store_yaml)
        text = text.replace(
            "  receiver: {bearer_tokens: [bench]}\n",
            "  receiver: {bearer_tokens: [bench]}\n" + CONSOLE,
        )
        cfg.write_text(text)
        asyncio.run(fill(cfg, store_cfg, args.incidents))
        served = Served(cfg, Path(tmp) / "t.log", every=0.2)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base)
            client = sign_in(base)
            timings: dict[str, list[float]] = {}
            for name, path in queries.items():
                client.open(base + path).read()  # warm
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    body = client.open(base + path).read()
                    timings.setdefault(name, []).append(time.perf_counter() - t0)
                assert b"incidents open" in body or b"incident open" in body, body[:300]
        finally:
            served.stop()
    print(f"machine: {machine()}")
    print(
        f"store: {args.backend}; {args.incidents} open incidents, 4 pending steps each; {args.rounds} renders per row\n"
    )
    print("| render (whole HTML page, signed in) | p50 | p99 | max |")
    print("|---|---:|---:|---:|")
    for name, t in timings.items():
        print(
            f"| {name} | {pct(t, 50) * 1000:.0f} ms | {pct(t, 99) * 1000:.0f} ms | {max(t) * 1000:.0f} ms |"
        )
    print(f"\npeak RSS of tocsin serve: {served.peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
