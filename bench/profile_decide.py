"""line_profiler over the ingest decision: where ``decide_ingest`` spends opening an incident.

    python bench/profile_decide.py [--severity P1] [--alerts 1] [--times 20000]

Decides the same new-incident notification ``--times`` times (bench/sql_params.py's alerts;
default matrix) with line_profiler wrapping the decision's functions, then prints their
line-by-line timings in microseconds. line_profiler comes from the ``bench`` extra.
"""

from __future__ import annotations

import argparse

from line_profiler import LineProfiler
from sql_params import NOW, _classified

from escalation.incidents import ingest, policy
from escalation.incidents.directory import Directory
from rules.matrix import load_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--severity", default="P1")
    ap.add_argument("--alerts", type=int, default=1)
    ap.add_argument("--times", type=int, default=20000)
    args = ap.parse_args()
    directory = Directory(matrix=load_preset("default"))
    items = _classified(args.alerts, args.severity)
    profiler = LineProfiler(
        ingest.decide_ingest,
        ingest._open,
        ingest._schedule,
        ingest._alert_record,
        ingest._alert_event,
        policy.plan_steps,
        policy.policy_snapshot,
        policy.level_snapshot,
    )
    decide = profiler(ingest.decide_ingest)
    for i in range(args.times):
        decide(
            f"bench/{i}",
            items,
            None,
            [],
            [],
            now=NOW,
            directory=directory,
            receiver="bench",
            group_key=str(i),
            common_labels={"alertname": "HighLatency"},
        )
    profiler.print_stats(output_unit=1e-6, stripzeros=True)


if __name__ == "__main__":
    main()
