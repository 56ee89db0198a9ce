"""Ingest throughput and latency of ``POST /api/v1/alertmanager`` with durable commit.

Side by side in one run: the ceiling (a bare aiohttp handler that only parses the same JSON) and
tocsin on SQLite and on PostgreSQL (when TOCSIN_BENCH_POSTGRES_DSN is set), for 1-alert and
50-alert notifications; every request opens a new incident, the most expensive path.

    python bench/ingest.py [--seconds 10] [--concurrency 32] [--baseline DIR]

``--baseline DIR`` adds the same tocsin cases served from the checkout in DIR (an earlier commit),
interleaved with this checkout's, so before and after are measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from pathlib import Path

from common import (
    CONFIG_HEAD,
    PY,
    add_baseline_arg,
    free_port,
    load,
    machine,
    payload,
    pct,
    serve_tocsin,
    spawn,
    wait_http,
)

CONFIG = (
    CONFIG_HEAD
    + """
store: {store}
rules: {{default: {{severity: {severity}}}}}
people: {{alice: {{channels: [log]}}}}
roles: {{oncall: [alice], lead: [alice], manager: [alice], vp: [alice]}}
adapters: {{log: {{enabled: true}}}}
"""
)


def run_case(
    name: str, port: int, alerts: int, seconds: float, concurrency: int
) -> dict[str, float | str]:
    url = f"http://127.0.0.1:{port}/api/v1/alertmanager"
    prefix = uuid.uuid4().hex[:6]
    rps, lat, errors = asyncio.run(
        load(
            url,
            lambda i: payload(i, alerts, group=f"{prefix}-{i}"),
            seconds=seconds,
            concurrency=concurrency,
            headers={"Authorization": "Bearer bench", "Content-Type": "application/json"},
        )
    )
    return {
        "case": name,
        "alerts": alerts,
        "rps": rps,
        "p50": pct(lat, 50) * 1000,
        "p99": pct(lat, 99) * 1000,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--no-page", dest="page", action="store_false", help="skip the + page case")
    add_baseline_arg(ap)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        targets: list[tuple[str, list[str]]] = []
        cport = free_port()
        targets.append(("ceiling (parse only)", [PY, "bench/ceiling_server.py", str(cport)]))
        stores = [("tocsin sqlite", f'{{backend: sqlite, path: "{Path(tmp) / "bench.db"}"}}')]
        if args.page:
            stores.append(
                ("tocsin sqlite + page", f'{{backend: sqlite, path: "{Path(tmp) / "page.db"}"}}')
            )
        dsn = os.environ.get("TOCSIN_BENCH_POSTGRES_DSN")
        if dsn:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            stores.append(
                ("tocsin postgres", f'{{backend: postgres, dsn: "{dsn}", schema: {schema}}}')
            )
        ports = {targets[0][0]: cport}
        trees: dict[str, Path | None] = {targets[0][0]: None}
        for name, store in stores:
            for tree in [None, args.baseline] if args.baseline else [None]:
                case = f"{name} [baseline]" if tree is not None else name
                port = free_port()
                cfg = Path(tmp) / f"{case.replace(' ', '-')}.yaml"
                # P4 records the incident and pages nobody (ingest alone); "+ page" uses P1,
                # whose first tier pages at once through the log channel in the same process.
                severity = "P1" if name.endswith("+ page") else "P4"
                # Each checkout gets a store of its own (a PostgreSQL schema or a SQLite file).
                own = store.replace("bench_", "bench_b_").replace(".db", "-b.db") if tree else store
                cfg.write_text(CONFIG.format(port=port, store=own, severity=severity))
                targets.append((case, [str(cfg)]))
                ports[case] = port
                trees[case] = tree
        for alerts in (1, 50):
            for name, cmd in targets:
                log = Path(tmp) / f"{name}.log"
                if "tocsin" in name:
                    proc = serve_tocsin(Path(cmd[0]), log, trees[name])
                else:
                    proc = spawn(cmd, env=dict(os.environ), log=log)
                try:
                    wait_http(
                        f"http://127.0.0.1:{ports[name]}/healthz"
                    ) if "tocsin" in name else _wait_port(ports[name])
                    rows.append(run_case(name, ports[name], alerts, args.seconds, args.concurrency))
                finally:
                    proc.terminate()
                    proc.wait(timeout=20)
    ceiling = {r["alerts"]: r["rps"] for r in rows if str(r["case"]).startswith("ceiling")}
    print(f"machine: {machine()}")
    print(
        f"load: {args.concurrency} concurrent clients, {args.seconds:g}s per case, a new incident per request\n"
    )
    print("| case | alerts/notification | req/s | p50 ms | p99 ms | errors | vs ceiling |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = float(r["rps"]) / ceiling[r["alerts"]] * 100
        print(
            f"| {r['case']} | {r['alerts']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | {ratio:.0f} % |"
        )


def _wait_port(port: int) -> None:
    import socket
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


if __name__ == "__main__":
    main()
