"""Decoding an Alertmanager body: pydantic's ``model_validate_json`` vs a msgspec Struct.

    python bench/decode.py [--samples DIR]

DIR holds captured Alertmanager bodies (*.json; default: ../shared/samples next to the
checkout); the bench's own 1- and 50-alert bodies are added. Columns are microseconds per body
(best of 7): tocsin's model (typed timestamps, validators, fingerprints), a msgspec Struct of
the same fields as plain strings (no validation beyond types), ``json.loads`` (what the ceiling
does) and the receiver's whole ``parse_notification``. msgspec comes from the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from pathlib import Path

import msgspec
from common import ROOT, payload

from router.receiver import parse_notification
from rules.alerts import Notification


class MAlert(msgspec.Struct):
    labels: dict[str, str]
    status: str = "firing"
    annotations: dict[str, str] = {}
    startsAt: str = ""
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class MNotification(msgspec.Struct):
    version: str
    alerts: list[MAlert]
    receiver: str = ""
    status: str = ""
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0


def best_us(fn: Callable[[], object], n: int = 300) -> float:
    return min(timeit.repeat(fn, number=n, repeat=7)) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=Path, default=ROOT.parent / "shared" / "samples")
    args = ap.parse_args()
    bodies = {p.name: p.read_bytes() for p in sorted(args.samples.glob("*.json"))}
    bodies["bench, 1 alert"] = payload(1, 1)
    bodies["bench, 50 alerts"] = payload(1, 50)
    decoder = msgspec.json.Decoder(MNotification)
    print("| body | bytes | pydantic µs | msgspec µs | json.loads µs | parse_notification µs |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, b in bodies.items():
        decoders = [Notification.model_validate_json, decoder.decode, json.loads]
        row = [best_us(lambda f=f, b=b: f(b)) for f in [*decoders, parse_notification]]
        print(f"| {name} | {len(b)} | " + " | ".join(f"{v:.1f}" for v in row) + " |")


if __name__ == "__main__":
    main()
