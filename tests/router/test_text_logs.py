"""``tocsin serve``'s text log format: what an alert says cannot forge a line or drive a terminal.

A label value reaches the log through the incident's title (the ``log`` channel's line). The text
format writes control characters out visibly, so the line stays one line with no ESC in it; the
JSON format is safe by encoding, which the last test checks on the same record.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from router.logs import JsonFormatter, TextFormatter
from tests.driver.config import sqlite_store
from tests.driver.payloads import alert, notification
from tests.driver.process import ServeProc, post, serve_config, wait_for

_NOTIFY = "tocsin.notify: notification"
HOSTILE = "db-1\x1b[31m\n2026-01-01 00:00:00,000 ERROR tocsin: FORGED \u202eline"


def test_serve_text_log_escapes_what_an_alert_label_carries(tmp_path: Path) -> None:
    config = serve_config(
        tmp_path,
        sqlite_store(tmp_path / "tocsin.db"),
        steps=[{"after": "0s", "notify": ["person:p0"], "via": ["log"]}],
        people=["p0"],
    )
    cfg = yaml.safe_load(config.read_text())
    cfg["server"]["log_format"] = "text"
    config.write_text(yaml.safe_dump(cfg))
    proc = ServeProc("tocsin", config, tmp_path / "tocsin.log").wait_ready()
    try:
        status, _ = post(proc.url, notification([alert("DiskFull", instance=HOSTILE)]))
        assert status == 200
        line = wait_for(
            lambda: next((x for x in proc.output().splitlines() if _NOTIFY in x), None),
            timeout=30,
            what="the log channel's line",
            describe=proc.output,
        )
    finally:
        proc.stop()
    out = proc.output()
    assert "\x1b" not in out and "\u202e" not in out
    assert not any("FORGED" in x and _NOTIFY not in x for x in out.splitlines()), out
    # The title (alertname: summary) with every control character written out, quoted.
    expected = (
        "DiskFull on db-1\\x1b[31m\\x0a2026-01-01 00:00:00,000 ERROR tocsin: FORGED \\u202eline"
    )
    assert f'title="DiskFull: {expected}"' in line
    assert " person=p0 " in line + " "


def test_text_and_json_formats_keep_a_record_on_one_line() -> None:
    record = logging.LogRecord("tocsin.test", logging.INFO, __file__, 1, "got %s", (HOSTILE,), None)
    record.__dict__.update({"title": HOSTILE, "rows": ["a\nb"], "count": 3})
    text = TextFormatter().format(record)
    assert "\n" not in text and "\x1b" not in text and "\u202e" not in text
    assert text.endswith(
        "INFO tocsin.test: got db-1\\x1b[31m\\x0a2026-01-01 00:00:00,000 ERROR tocsin: FORGED "
        '\\u202eline title="db-1\\x1b[31m\\x0a2026-01-01 00:00:00,000 ERROR tocsin: FORGED '
        '\\u202eline" rows="[\\"a\\\\nb\\"]" count=3'
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert json.loads(line)["title"] == HOSTILE
