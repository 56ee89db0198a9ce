"""The ingest's SQL parameters: from a decided change set to every statement's parameter rows.

    python bench/sql_params.py [--alerts 1,50] [--severity P4] [--baseline DIR]

One notification opening a new incident (the most expensive path) is decided once with
``decide_ingest`` (default matrix; P4, as bench/ingest_wrk.py's tocsin cases classify, records
the incident and pages nobody; P1 adds a policy with timed tiers and reminders); the bench then
times both halves of what the store does with a decision before SQLite or PostgreSQL see it:
``decide`` (the decision itself, which builds the records) and ``params`` (``apply_changes``
turning those records into statements and parameter rows, driven without a database).
``write sqlite`` then writes 1,600 such decisions for real, into a fresh SQLite file set up as
the store sets up its own (WAL, ``synchronous = FULL``, the migrations), 16 to a transaction as
the ingest batches them under load: what SQLite itself costs per notification, parameters
included. Microseconds per notification, best of 7 (the write: the mean of one pass).
``--baseline DIR`` runs the same in the checkout in DIR (an earlier commit), so both trees are
measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def _classified(alerts: int, severity: str = "P1") -> list[Any]:
    from escalation.incidents.ingest import Classified
    from rules.alerts import Alert
    from rules.classifier import Classification

    items = []
    for i in range(alerts):
        alert = Alert.model_validate(
            {
                "status": "firing",
                "labels": {"alertname": "HighLatency", "service": "api", "instance": f"i-{i}"},
                "annotations": {"summary": "p99 latency over 2 s", "runbook_url": "https://x/rb"},
                "startsAt": "2026-12-06T02:59:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": f"{i:016x}",
            }
        )
        verdict = Classification(
            severity=severity,
            severity_name=severity,
            policy=None,
            team="payments",
            incident_key=None,
            title="HighLatency",
            rule="latency",
            matched=("latency",),
            reasons=(),
        )
        items.append(Classified(alert, verdict))
    return items


def _drive(query: Any) -> int:
    """Run a query's statements against nothing: every write 'changes' one row."""
    n, result = 0, None
    try:
        while True:
            statement = query.send(result)
            n += 1
            result = None if statement.mode.value == "many" else 1
    except StopIteration:
        return n


def measure(alerts: int, severity: str = "P4") -> dict[str, float]:
    """This checkout's figures (run in a child process per tree)."""
    from escalation.incidents.directory import Directory
    from escalation.incidents.ingest import decide_ingest
    from escalation.store.sql.changes import apply_changes
    from escalation.store.sql.postgres import POSTGRES
    from escalation.store.sql.rows import tables
    from escalation.store.sql.sqlite import SQLITE
    from rules.matrix import load_preset

    directory = Directory(matrix=load_preset("default"))
    items = _classified(alerts, severity)

    def decide() -> Any:
        ch, _ = decide_ingest(
            "bench/{}:{}",
            items,
            None,
            [],
            [],
            now=NOW,
            directory=directory,
            receiver="bench",
            group_key="{}:{}",
            common_labels={"alertname": "HighLatency"},
        )
        return ch

    ch = decide()
    out = {"decide": _best(decide)}
    for name, dialect in (("sqlite", SQLITE), ("postgres", POSTGRES)):
        t = tables(dialect)
        out[f"params {name}"] = _best(lambda t=t, d=dialect: _drive(apply_changes(d, t, ch)))
    out["write sqlite"] = _write_sqlite(decide, alerts)
    return out


def _write_sqlite(decide: Any, alerts: int, notifications: int = 1600, batch: int = 16) -> float:
    """Mean µs per notification to write and commit ``notifications`` new incidents."""
    from dataclasses import replace

    from escalation.store.migrations import migrate_sqlite
    from escalation.store.sql.sqlite import QUERIES
    from escalation.store.sqlite import _drive

    decisions = []
    for n in range(notifications):  # each its own incident, alerts and keys
        ch = decide()
        ch.new_incidents[:] = [replace(i, key=f"{n}/{i.key}") for i in ch.new_incidents]
        ch.upsert_alerts[:] = [
            replace(a, fingerprint=f"{n}-{a.fingerprint}") for a in ch.upsert_alerts
        ]
        decisions.append(ch)
    with tempfile.TemporaryDirectory() as d:
        conn = sqlite3.connect(Path(d) / "bench.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        migrate_sqlite(conn)
        start = time.perf_counter()
        for i in range(0, notifications, batch):
            conn.execute("BEGIN IMMEDIATE")
            for ch in decisions[i : i + batch]:
                _drive(conn, QUERIES.apply(ch))
            conn.execute("COMMIT")
        took = time.perf_counter() - start
        conn.close()
    return took / notifications * 1e6


def _best(fn: Any) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(7, number)) / number * 1e6


def _in_tree(tree: Path, alerts: int, severity: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import sql_params, json; "
    code += f"print(json.dumps(sql_params.measure({alerts}, {severity!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tree, check=False, capture_output=True
    )
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr.decode()}")
    return dict(json.loads(out.stdout))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", default="1,50", help="alerts per notification, comma-separated")
    ap.add_argument("--severity", default="P4", help="what the notification classifies to")
    ap.add_argument("--baseline", type=Path, help="an earlier checkout, measured in the same run")
    args = ap.parse_args()
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    print(f"severity {args.severity}\n")
    print("| alerts | stage | " + " | ".join(f"{name} µs" for name, _ in trees) + " |")
    print("|---:|---|" + "---:|" * len(trees))
    for alerts in (int(a) for a in args.alerts.split(",")):
        figures = [_in_tree(tree, alerts, args.severity) for _, tree in trees]
        for stage in figures[0]:
            cells = " | ".join(f"{f[stage]:.1f}" for f in figures)
            print(f"| {alerts} | {stage} | {cells} |")


if __name__ == "__main__":
    main()
