"""Alert-to-page latency: from Alertmanager's POST to the PagerDuty trigger arriving.

A steady open-loop stream (default 200 notifications/s), each a new incident whose first tier
pages a PagerDuty service at once. The receiver standing in for PagerDuty runs in this process,
so send and arrival times come from one clock. Side by side: a bare forwarder that relays the
webhook to PagerDuty before answering, with no store and no engine (the ceiling).

    python bench/alert_to_page.py [--rate 200] [--seconds 20] [--baseline DIR] [--py-spy DIR]

"server CPU ms/alert" is the server process's user+system CPU time (/proc/PID/stat) from the
first notification until the last page arrived, divided by the notifications sent: unlike the
latencies, it hardly moves with other load on the machine. ``--py-spy DIR`` records each tocsin
case with py-spy (raw collapsed stacks, idle samples left out) into DIR while it is measured.

``--baseline DIR`` also measures the tocsin checkout in DIR (e.g. a git worktree of an earlier
commit) in the same run, so a change is compared with what it replaced on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from common import (
    CONFIG_HEAD,
    PY,
    add_baseline_arg,
    cpu_seconds,
    free_port,
    machine,
    payload,
    pct,
    serve_tocsin,
    spawn,
    wait_http,
)

ROUTING_KEY = "benchroutingkey00000000000000001"

CONFIG = (
    CONFIG_HEAD
    + """
store: {{backend: sqlite, path: "{db}"}}
rules: {{default: {{severity: P0}}}}
people: {{alice: {{channels: [log]}}}}
roles: {{oncall: ["pagerduty:svc"], lead: [alice], manager: [alice], vp: [alice]}}
adapters:
  log: {{enabled: true}}  # the later tiers page alice here (never reached in the run)
  pagerduty:
    events_url: "http://127.0.0.1:{pd_port}"
    allow_insecure_events_url: true  # the bench's local receiver speaks plain http
    services: {{svc: "{key}"}}
  dispatch:
    channel_rate: {{pagerduty: {{count: 1000000, per: 1m}}}}
"""
)


class Receiver:
    """Records when each group's trigger arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.port = free_port()

    async def enqueue(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.perf_counter()
        labels = body.get("payload", {}).get("custom_details", {}).get("labels", {})
        group = labels.get("group")
        if body.get("event_action") == "trigger" and group and group not in self.arrived:
            self.arrived[group] = now
        return web.json_response(
            {
                "status": "success",
                "message": "Event processed",
                "dedup_key": body.get("dedup_key", ""),
            },
            status=202,
        )

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


async def drive(
    url: str, rate: float, seconds: float, prefix: str, answered: list[float]
) -> dict[str, float]:
    sent: dict[str, float] = {}
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    interval = 1.0 / rate
    tasks = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:

        async def one(group: str, body: bytes) -> None:
            sent[group] = time.perf_counter()
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
            answered.append(time.perf_counter() - sent[group])

        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            target = start + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group = f"{prefix}-{i}"
            tasks.append(asyncio.create_task(one(group, payload(i, 1, group=group))))
        await asyncio.gather(*tasks)
    return sent


async def measure(
    name: str, url: str, receiver: Receiver, rate: float, seconds: float
) -> dict[str, object]:
    prefix = uuid.uuid4().hex[:6]
    answered: list[float] = []
    sent = await drive(url, rate, seconds, prefix, answered)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and sum(1 for g in sent if g in receiver.arrived) < len(
        sent
    ):
        await asyncio.sleep(0.05)
    lat = [receiver.arrived[g] - t for g, t in sent.items() if g in receiver.arrived]
    return {
        "case": name,
        "sent": len(sent),
        "paged": len(lat),
        "p50": pct(lat, 50) * 1000,
        "p99": pct(lat, 99) * 1000,
        "max": max(lat) * 1000 if lat else float("nan"),
        "answer_p99": pct(answered, 99) * 1000,
    }


async def measure_served(
    name: str,
    proc: subprocess.Popen[bytes],
    url: str,
    ready: str,
    receiver: Receiver,
    rate: float,
    seconds: float,
    profile: Path | None = None,
) -> dict[str, object]:
    """Wait for ``proc`` to answer ``ready``, measure it (and its CPU time), stop it."""
    spy: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(wait_http, ready)
        if profile is not None:
            out = profile / f"{_slug(name)}.txt"
            rec = ["py-spy", "record", "--format", "raw", "--rate", "250"]
            spy = spawn([*rec, "-o", str(out), "-p", str(proc.pid)], log=out.with_suffix(".log"))
            await asyncio.sleep(1.0)  # py-spy attaches
        c0 = cpu_seconds(proc.pid)
        row = await measure(name, url, receiver, rate, seconds)
        sent = row["sent"]
        assert isinstance(sent, int)
        row["cpu_ms"] = (cpu_seconds(proc.pid) - c0) * 1000 / max(sent, 1)
        return row
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        proc.terminate()
        proc.wait(20)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _for_tree(config: str, tree: Path | None) -> str:
    """``config`` as an earlier checkout reads it: trees from before the https-only rule for
    ``events_url`` know no ``allow_insecure_events_url`` (and refuse unknown keys)."""
    if tree is None or any(
        "allow_insecure_events_url" in p.read_text(encoding="utf-8")
        for p in (tree / "adapters").rglob("*.py")
    ):
        return config
    return "\n".join(
        line for line in config.splitlines() if "allow_insecure_events_url" not in line
    )


async def main_async(
    rate: float, seconds: float, baseline: Path | None, profile: Path | None
) -> None:
    receiver = Receiver()
    runner = await receiver.start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fport = free_port()
        fwd = spawn(
            [
                PY,
                "bench/forwarder.py",
                str(fport),
                f"http://127.0.0.1:{receiver.port}",
                ROUTING_KEY,
            ],
            log=Path(tmp) / "fwd.log",
        )
        base = f"http://127.0.0.1:{fport}"
        rows.append(
            await measure_served(
                "ceiling (bare forwarder, no store)",
                fwd,
                f"{base}/api/v1/alertmanager",
                f"{base}/healthz",
                receiver,
                rate,
                seconds,
            )
        )
        trees: list[tuple[str, Path | None]] = [("", None)]
        if baseline is not None:
            trees.append((f" [baseline {baseline.name}]", baseline))
        for label, tree in trees:
            tport = free_port()
            cfg = Path(tmp) / f"tocsin{len(rows)}.yaml"
            db = Path(tmp) / f"b{len(rows)}.db"
            text = CONFIG.format(port=tport, db=db, pd_port=receiver.port, key=ROUTING_KEY)
            cfg.write_text(_for_tree(text, tree))
            proc = serve_tocsin(cfg, Path(tmp) / f"t{len(rows)}.log", tree)
            base = f"http://127.0.0.1:{tport}"
            rows.append(
                await measure_served(
                    f"tocsin sqlite (durable, engine, outbox){label}",
                    proc,
                    f"{base}/api/v1/alertmanager",
                    f"{base}/readyz",
                    receiver,
                    rate,
                    seconds,
                    profile,
                )
            )
    await runner.cleanup()
    print(f"machine: {machine()}")
    print(
        f"load: {rate:g} notifications/s for {seconds:g}s, each a new incident paging PagerDuty at once\n"
    )
    print(
        "| case | sent | paged | p50 ms | p99 ms | max ms | answered p99 ms | server CPU ms/alert |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['sent']} | {r['paged']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['answer_p99']:.1f} | {r['cpu_ms']:.2f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    add_baseline_arg(ap)
    ap.add_argument("--py-spy", type=Path, default=None, metavar="DIR", dest="py_spy")
    args = ap.parse_args()
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    asyncio.run(main_async(args.rate, args.seconds, args.baseline, args.py_spy))


if __name__ == "__main__":
    main()
