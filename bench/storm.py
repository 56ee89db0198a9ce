"""Storm: 10,000 distinct alerts arriving within 10 s.

``--notifications`` webhooks of ``--alerts`` alerts each (defaults 1000 x 10), sent open-loop over
``--seconds``; every notification is a new Alertmanager group, so a new incident, and every
incident pages the same on-call person through the webhook channel. Reports whether every alert
and incident was stored (none lost), the process's peak RSS, and how the pages to that one person
were bundled and rate-limited by the dispatcher.

    python bench/storm.py [--notifications 1000] [--alerts 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from common import CONFIG_HEAD, Served, free_port, machine, payload, pct, wait_http

CONFIG = (
    CONFIG_HEAD
    + """
store: {{backend: sqlite, path: "{db}"}}
rules: {{default: {{severity: P1}}}}
people: {{oncall: {{channels: [webhook]}}}}
roles: {{oncall: [oncall], lead: [oncall], manager: [oncall], vp: [oncall]}}
adapters:
  log: {{enabled: false}}
  webhook:
    endpoints: {{chat: {{url: "http://127.0.0.1:{sink}/hook"}}}}
  dispatch:
    bundle_window: 10s
    bundle_channels: [webhook]
    person_rate: {{count: 6, per: 1m}}
"""
)


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[float, int]] = []  # (arrival, incidents in the message)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.messages.append((time.perf_counter(), 1 + len(body.get("bundle", []))))
        return web.json_response({"ok": True})

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


async def storm(
    url: str, n: int, alerts: int, seconds: float
) -> tuple[float, list[float], dict[int, int]]:
    prefix = uuid.uuid4().hex[:6]
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    lat: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:

        async def one(i: int) -> None:
            body = payload(i, alerts, group=f"{prefix}-{i}")
            for _ in range(20):  # like Alertmanager: retry 5xx and network errors
                t = time.perf_counter()
                try:
                    async with s.post(url, data=body, headers=headers) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        if r.status < 500:
                            lat.append(time.perf_counter() - t)
                            return
                except aiohttp.ClientError:
                    statuses[0] = statuses.get(0, 0) + 1
                await asyncio.sleep(0.5)

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i * seconds / n - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - start
    return took, lat, statuses


async def main_async(n: int, alerts: int, seconds: float) -> None:
    sink = Sink()
    runner = await sink.start()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        db = Path(tmp) / "storm.db"
        cfg = Path(tmp) / "tocsin.yaml"
        cfg.write_text(CONFIG.format(port=port, db=db, sink=sink.port))
        served = Served(cfg, Path(tmp) / "t.log", every=0.1)
        try:
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz")
            t0 = time.perf_counter()
            took, lat, statuses = await storm(
                f"http://127.0.0.1:{port}/api/v1/alertmanager", n, alerts, seconds
            )
            await asyncio.sleep(12)  # one bundle window for the held pages to go out
        finally:
            served.stop()
        con = sqlite3.connect(db)
        incidents = con.execute("SELECT count(*) FROM incidents").fetchone()[0]
        stored_alerts = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
        pages = dict(
            con.execute(
                "SELECT state, count(*) FROM outbox WHERE kind = 'page' GROUP BY state"
            ).fetchall()
        )
        con.close()
    await runner.cleanup()
    in_window = [m for m in sink.messages if m[0] - t0 <= 60]
    sizes = [m[1] for m in sink.messages]
    print(f"machine: {machine()}")
    print(
        f"storm: {n} notifications x {alerts} alerts = {n * alerts} distinct alerts, sent over {seconds:g}s target\n"
    )
    print("| measure | value |")
    print("|---|---:|")
    print(f"| time to accept all notifications | {took:.1f} s |")
    answered = ", ".join(f"{k or 'network error'}: {v}" for k, v in sorted(statuses.items()))
    print(f"| responses | {answered} |")
    print(
        f"| accept latency p50 / p99 | {pct(lat, 50) * 1000:.0f} / {pct(lat, 99) * 1000:.0f} ms |"
    )
    print(f"| incidents stored | {incidents} / {n} |")
    print(f"| alerts stored | {stored_alerts} / {n * alerts} |")
    print(f"| peak RSS | {served.peak_mb:.0f} MB |")
    states = ", ".join(f"{k}: {v}" for k, v in sorted(pages.items()))
    print(f"| page rows (one per incident) | {sum(pages.values())} ({states}) |")
    print(
        f"| messages the on-call received in the first minute | {len(in_window)} (person_rate 6/min) |"
    )
    print(
        f"| incidents per message | {', '.join(str(s) for s in sizes[:8])}{' …' if len(sizes) > 8 else ''} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--notifications", type=int, default=1000)
    ap.add_argument("--alerts", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    asyncio.run(main_async(args.notifications, args.alerts, args.seconds))


if __name__ == "__main__":
    main()
