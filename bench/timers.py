"""Timers at scale: 100,000 open incidents with pending steps.

Fills a store with ``--incidents`` open incidents, each with a pending escalation step; most are
due hours from now, ``--probes`` of them come due one by one over the measured minute. Then
starts ``tocsin serve`` on that store and reports: time from process start to /readyz, firing
lateness (fired_at - due_at) of the probe steps, and the process's peak RSS.

    python bench/timers.py [--incidents 100000] [--probes 1200] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import CONFIG_HEAD, Served, free_port, machine, pct

from config.load import load_config
from escalation.incidents.model import Changes, IncidentRecord, Status, StepRecord
from escalation.incidents.policy import level_snapshot, policy_snapshot
from escalation.store.factory import StoreConfig, make_store

CONFIG = (
    CONFIG_HEAD
    + """
store: {store}
people: {{alice: {{channels: [log]}}}}
roles: {{oncall: [alice], lead: [alice], manager: [alice], vp: [alice]}}
adapters: {{log: {{enabled: true}}}}
"""
)


async def fill(
    cfg_path: Path, store_cfg: StoreConfig, n: int, probes: int, first_due: datetime, window: float
) -> None:
    loaded = load_config(cfg_path)
    pname, psnap = policy_snapshot(loaded.matrix, {}, "P1", None)
    level = level_snapshot(loaded.matrix, "P1")
    store = make_store(store_cfg)
    await store.open()
    now = datetime.now(UTC)
    far = now + timedelta(hours=6)
    batch = 2000
    try:
        for start in range(0, n, batch):
            ch = Changes()
            for i in range(start, min(n, start + batch)):
                inc_id = f"bench{i:07d}"
                ch.new_incidents.append(
                    IncidentRecord(
                        id=inc_id,
                        number=0,
                        key=f"bench/{i}",
                        status=Status.TRIGGERED,
                        severity="P1",
                        title=f"bench incident {i}",
                        team=None,
                        policy_name=pname,
                        policy=psnap,
                        level=level,
                        opened_at=now,
                        updated_at=now,
                        labels={"alertname": "Bench"},
                    )
                )
                if i < probes:
                    due = first_due + timedelta(seconds=window * i / probes)
                else:
                    due = far + timedelta(seconds=i)
                ch.new_steps.append(
                    StepRecord(
                        id=f"{inc_id}:0:page:0:0",
                        incident_id=inc_id,
                        kind="page",
                        epoch=0,
                        round=0,
                        tier=0,
                        due_at=due,
                        unless="acknowledged",
                    )
                )
            async with store.transaction() as tx:
                await tx.apply(ch)
    finally:
        await store.close()


async def lateness(store_cfg: StoreConfig, probes: int) -> list[float]:
    store = make_store(store_cfg)
    await store.open()
    out = []
    try:
        async with store.transaction() as tx:
            for i in range(probes):
                for s in await tx.steps_of(f"bench{i:07d}"):
                    if s.tier == 0 and s.kind == "page" and s.fired_at is not None:
                        out.append((s.fired_at - s.due_at).total_seconds())
    finally:
        await store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--probes", type=int, default=1200)
    ap.add_argument("--window", type=float, default=60.0, help="seconds over which probes come due")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        if args.backend == "sqlite":
            store_cfg = StoreConfig(backend="sqlite", path=str(Path(tmp) / "timers.db"))
            store_yaml = f'{{backend: sqlite, path: "{store_cfg.path}"}}'
        else:
            dsn = os.environ["TOCSIN_BENCH_POSTGRES_DSN"]
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            store_cfg = StoreConfig(backend="postgres", dsn=dsn, schema=schema)
            store_yaml = f'{{backend: postgres, dsn: "{dsn}", schema: {schema}}}'
        cfg = Path(tmp) / "tocsin.yaml"
        cfg.write_text(CONFIG.format(port=port, store=store_yaml))
        t_fill = time.perf_counter()
        first_due = datetime.now(UTC) + timedelta(seconds=15)
        asyncio.run(fill(cfg, store_cfg, args.incidents, args.probes, first_due, args.window))
        fill_s = time.perf_counter() - t_fill
        first_due = datetime.now(UTC) + timedelta(seconds=5)  # restart the schedule after filling
        asyncio.run(_shift(store_cfg, args.probes, first_due, args.window))
        t0 = time.perf_counter()
        served = Served(cfg, Path(tmp) / "t.log", every=0.2)
        ready = None
        while time.perf_counter() - t0 < 60:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        ready = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.05)
        end = first_due + timedelta(seconds=args.window + 5)
        time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()))
        served.stop()
        lat = asyncio.run(lateness(store_cfg, args.probes))
    print(f"machine: {machine()}")
    print(
        f"store: {args.backend}; {args.incidents} open incidents with pending steps (filled in {fill_s:.0f}s); "
        f"{args.probes} of them due over {args.window:g}s\n"
    )
    print("| measure | value | target |")
    print("|---|---:|---:|")
    print(
        f"| restart to ready | {ready:.2f} s | < 10 s |"
        if ready is not None
        else "| restart to ready | not ready in 60 s | < 10 s |"
    )
    print(f"| steps fired | {len(lat)} / {args.probes} | all |")
    print(f"| lateness p50 | {pct(lat, 50) * 1000:.1f} ms | |")
    print(f"| lateness p99 | {pct(lat, 99) * 1000:.1f} ms | < 50 ms |")
    print(f"| lateness max | {max(lat) * 1000 if lat else float('nan'):.1f} ms | |")
    print(f"| peak RSS | {served.peak_mb:.0f} MB | < 1024 MB |")


async def _shift(store_cfg: StoreConfig, probes: int, first_due: datetime, window: float) -> None:
    """Re-time the probe steps relative to now (filling 100k rows takes a while)."""
    store = make_store(store_cfg)
    await store.open()
    try:
        ch = Changes()
        for i in range(probes):
            due = first_due + timedelta(seconds=window * i / probes)
            ch.step_reschedules.append((f"bench{i:07d}:0:page:0:0", due, "bench"))
        async with store.transaction() as tx:
            await tx.apply(ch)
    finally:
        await store.close()


if __name__ == "__main__":
    main()
