"""``tocsin serve`` freezes what start-up made before it listens.

The modules, the config, the compiled rules and templates live as long as the process; frozen
(``gc.freeze``), they are out of the collector's sight, so a full collection walks only what
requests made since. Under wrk a full collection used to pause the event loop for up to 80 ms,
about 12 ms with the freeze (README, "Ingest under wrk"). The listening log line says how many
objects start-up left frozen.
"""

from __future__ import annotations

from pathlib import Path

from tests.driver.config import sqlite_store
from tests.driver.process import ServeProc, serve_config, start_serve


def test_serve_freezes_what_start_up_made_before_listening(
    tmp_path: Path, procs: list[ServeProc]
) -> None:
    config = serve_config(
        tmp_path,
        sqlite_store(tmp_path / "tocsin.db"),
        steps=[{"after": "0s", "notify": ["person:alice"], "via": ["log"]}],
        people=["alice"],
    )
    served = start_serve(procs, "serve", config, tmp_path)
    [listening] = [r for r in served.json_lines() if r.get("msg") == "tocsin listening"]
    # A whole application's modules and config: far more than a few stray objects.
    assert listening["startup_objects"] > 10_000
