"""``tocsin oncall``: who is on call, overrides and calendar feeds, against a real ``tocsin serve``.

The server runs as a subprocess (real clock, real engine loop) with the team's config; the CLI
runs as a subprocess with ``TOCSIN_URL`` and ``TOCSIN_API_TOKEN``, as an SRE would. Its whole
log is read afterwards: the calendar feed's secret must not be in it.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar

from tests.driver.process import ServeProc
from tests.driver.team import team_config
from tests.router.test_incident_cli import Server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, ServeProc]]:
    path = team_config(tmp_path)
    path.write_text(path.read_text().replace("log_format: text", "log_format: json"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    proc = ServeProc("tocsin", path, tmp_path / "serve.log")
    try:
        proc.wait_ready()
        env |= {"TOCSIN_URL": proc.url, "TOCSIN_API_TOKEN": "api-write"}
        yield Server(proc.url, tmp_path / "serve.log", env), proc
    finally:
        rc = proc.stop()
    assert not proc.errors(), proc.errors()
    assert rc == 0, proc.output()


def oncall_now(server: Server) -> list[str]:
    r = server.cli("oncall")
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_override_shows_in_oncall_and_the_calendar_feed_never_reaches_the_log(
    served: tuple[Server, ServeProc],
) -> None:
    server, proc = served
    before = oncall_now(server)
    primary = next(x for x in before if x.startswith("schedule primary (Europe/London): "))
    regular = primary.rsplit(": ", 1)[1]
    assert regular in ("alice", "bob")
    assert "role lead: carol" in before

    until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    r = server.cli(
        "oncall", "override", "primary", "carol", "--until", until.isoformat(), "--actor", "dave"
    )
    assert r.returncode == 0, r.stderr
    override_id = r.stdout.split()[0]
    assert override_id.startswith("ovr-") and "by writer for dave" in r.stdout
    assert "schedule primary (Europe/London): carol" in oncall_now(server)
    r = server.cli("oncall", "overrides", "primary")
    assert (r.returncode, r.stdout.split()[:2]) == (0, [override_id, "carol"])

    r = server.cli("oncall", "calendar", "--schedule", "primary")
    assert r.returncode == 0, r.stderr
    url = r.stdout.rsplit(" ", 1)[1].strip()
    secret = url.rsplit("/", 1)[1].removesuffix(".ics")
    local = url.replace("http://tocsin.test", server.url)
    with urllib.request.urlopen(local, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/calendar")
        cal = Calendar.from_ical(resp.read())
    assert "carol on call" in [str(ev["SUMMARY"]) for ev in cal.walk("VEVENT")]
    # A wrong method on the feed is refused without echoing the path that holds the secret.
    req = urllib.request.Request(local, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 405
    assert secret not in refused.value.read().decode()

    r = server.cli("oncall", "remove", "primary", override_id)
    assert (r.returncode, r.stdout) == (0, f"override {override_id} removed\n")
    assert f"schedule primary (Europe/London): {regular}" in oncall_now(server)
    r = server.cli("oncall", "remove", "primary", override_id)
    assert r.returncode == 1 and "404" in r.stderr

    proc.stop()
    assert secret not in proc.output()
    assert "schedule override created" in proc.output()
