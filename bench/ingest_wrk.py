"""Ingest measured with ``wrk``: the ceiling and tocsin side by side, a new incident per request.

wrk (Debian package ``wrk``) is a C load generator, so far less of the two cores goes to the
client than with bench/ingest.py's Python one. Every case gets the same wrk settings; the Lua
script (bench/wrk_new_incident.lua) gives each request a new group, seeded per run so runs
never replay earlier keys (which would measure the dedup path instead).

    python bench/ingest_wrk.py [--threads 1] [--connections 32] [--seconds 10] [--alerts 1,50]
                               [--baseline DIR] [--seed N] [--stages]

Cases: the ceiling (bench/ceiling_server.py, a bare aiohttp handler that only parses the JSON),
tocsin on SQLite, and tocsin on PostgreSQL when TOCSIN_BENCH_POSTGRES_DSN is set. ``--baseline
DIR`` adds each tocsin case served from the checkout in DIR (an earlier commit); ``--stages``
adds the ceiling plus tocsin's decoding, then classification (bench/stages_server.py), which
shows what those stages take of the budget before any store work. Server CPU is
the server process's user+system time during the wrk run over its wall time (100 % = one core).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from common import (
    PY,
    ROOT,
    add_baseline_arg,
    cpu_seconds,
    free_port,
    machine,
    payload,
    serve_tocsin,
    spawn,
    wait_http,
)
from ingest import CONFIG, _wait_port

LUA = ROOT / "bench" / "wrk_new_incident.lua"
STAGES = ("decode", "classify")  # bench/stages_server.py
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def template_body(alerts: int) -> bytes:
    """The body with "@@G@@" for the group; fingerprints follow it, as Alertmanager's would."""
    body = payload(0, alerts, group="@@G@@")
    n = iter(range(alerts))
    return re.sub(
        rb'"fingerprint": "[0-9a-f]+"', lambda _: b'"fingerprint": "@@G@@-%d"' % next(n), body
    )


def run_wrk(url: str, template: Path, seed: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--latency"]
    cmd += ["-s", str(LUA), url, "--", str(template), str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    lat = {}
    for p in ("50", "99"):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        lat[p] = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    return {
        "rps": rps,
        "p50": lat["50"],
        "p99": lat["99"],
        "errors": (int(bad.group(1)) if bad else 0) + (1 if errs else 0),
    }


def targets(tmp: Path, args: argparse.Namespace) -> list[tuple[str, Path | None, Path | None]]:
    """(case, tocsin config or None for the ceiling, checkout or None for this one)."""
    out: list[tuple[str, Path | None, Path | None]] = [("ceiling (parse only)", None, None)]
    if args.stages:
        for stage in STAGES:
            out.append((f"ceiling + tocsin's {stage}", Path(stage), None))
    stores = [("tocsin sqlite", f'{{backend: sqlite, path: "{tmp / "bench.db"}"}}')]
    dsn = os.environ.get("TOCSIN_BENCH_POSTGRES_DSN")
    if dsn:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        stores.append(("tocsin postgres", f'{{backend: postgres, dsn: "{dsn}", schema: {schema}}}'))
    for name, store in stores:
        for tree in [None, args.baseline] if args.baseline else [None]:
            case = f"{name} [baseline]" if tree is not None else name
            # Each checkout gets a store of its own (a PostgreSQL schema or a SQLite file).
            own = store.replace("bench_", "bench_b_").replace(".db", "-b.db") if tree else store
            cfg = tmp / f"{case.replace(' ', '-')}.yaml"
            cfg.write_text(CONFIG.format(port="{port}", store=own, severity="P4"))
            out.append((case, cfg, tree))
    return out


def measure(
    case: tuple[str, Path | None, Path | None],
    alerts: int,
    tmp: Path,
    args: argparse.Namespace,
    seed: int,
) -> dict[str, float | str]:
    name, cfg, tree = case
    port = free_port()
    log = tmp / f"{name}-{alerts}.log"
    staged = cfg is not None and cfg.name in STAGES
    if cfg is None:
        proc = spawn([PY, "bench/ceiling_server.py", str(port)], env=dict(os.environ), log=log)
    elif staged:
        assert cfg is not None
        own = tmp / "stages.yaml"
        own.write_text(CONFIG.format(port=port, store="{backend: sqlite}", severity="P4"))
        cmd = [PY, "bench/stages_server.py", str(port), cfg.name, str(own)]
        proc = spawn(cmd, env=dict(os.environ), log=log)
    else:
        real = tmp / f"{cfg.stem}-{alerts}.yaml"
        real.write_text(cfg.read_text().replace("{port}", str(port)))
        proc = serve_tocsin(real, log, tree)
    try:
        if cfg is None or staged:
            _wait_port(port)
        else:
            wait_http(f"http://127.0.0.1:{port}/healthz")
        template = tmp / f"body-{alerts}.json"
        template.write_bytes(template_body(alerts))
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        row: dict[str, float | str] = dict(
            run_wrk(f"http://127.0.0.1:{port}/api/v1/alertmanager", template, seed, args)
        )
        row["cpu"] = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    row.update(case=name, alerts=alerts)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--alerts", default="1,50", help="alerts per notification, comma-separated")
    ap.add_argument("--seed", type=int, default=None, help="math.random seed (default: per run)")
    ap.add_argument(
        "--stages",
        action="store_true",
        help="also measure the ceiling plus tocsin's decoding, then classification",
    )
    add_baseline_arg(ap)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cases = targets(tmp, args)
        for alerts in (int(a) for a in args.alerts.split(",")):
            for case in cases:
                rows.append(measure(case, alerts, tmp, args, seed))
    ceiling = {r["alerts"]: float(r["rps"]) for r in rows if r["case"] == "ceiling (parse only)"}
    print(f"machine: {machine()}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, seed {seed}, "
        "a new incident per request\n"
    )
    print(
        "| case | alerts/notification | req/s | vs ceiling | p50 ms | p99 ms | server CPU | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = float(r["rps"]) / ceiling[int(r["alerts"])] * 100
        print(
            f"| {r['case']} | {r['alerts']} | {float(r['rps']):.0f} | {ratio:.0f} % | "
            f"{float(r['p50']):.1f} | {float(r['p99']):.1f} | {float(r['cpu']):.0f} % | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
