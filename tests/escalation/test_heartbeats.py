"""The pure heartbeat decisions: arming, pings, expiry, and the alert an expiry raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from escalation.incidents.heartbeats import (
    EXPIRED,
    PENDING,
    RETIRED,
    Heartbeat,
    HeartbeatRecord,
    arm,
    decide_expiry,
    decide_ping,
    heartbeat_alert,
    heartbeat_key,
    retire,
    state_of,
)
from rules.matrix import MatrixConfig, build_matrix

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
HB = Heartbeat(expect_every=timedelta(minutes=5), grace=timedelta(minutes=1), severity="P1")
MATRIX = build_matrix(MatrixConfig(preset="default"))


def armed(at: datetime = T0) -> HeartbeatRecord:
    rec = arm("nightly", HB, None, at)
    assert rec is not None
    return rec


def test_arming_a_new_heartbeat_makes_it_due_one_window_later_and_unknown() -> None:
    rec = armed()
    assert (rec.id, rec.state, rec.armed_at, rec.due_at) == (
        "nightly",
        PENDING,
        T0,
        T0 + timedelta(minutes=6),
    )
    assert rec.last_ping is None
    assert state_of(rec) == "unknown"
    assert state_of(None) == "unknown"


def test_a_stored_heartbeat_keeps_its_due_time_when_armed_again_after_a_restart() -> None:
    rec = armed()
    assert arm("nightly", HB, rec, T0 + timedelta(hours=3)) is None
    expired = decide_expiry(HB, rec, rec.due_at)
    assert expired is not None
    assert arm("nightly", HB, expired, T0 + timedelta(hours=3)) is None


def test_a_retired_heartbeat_configured_again_is_armed_afresh() -> None:
    retired = decide_expiry(None, armed(), T0 + timedelta(minutes=6))
    assert retired is not None and retired.state == RETIRED
    again = arm("nightly", HB, retired, T0 + timedelta(hours=1))
    assert again is not None
    assert (again.state, again.armed_at) == (PENDING, T0 + timedelta(hours=1))


def test_a_never_pinged_heartbeat_is_not_expired_before_one_window_after_arming() -> None:
    rec = armed()
    assert decide_expiry(HB, rec, T0 + timedelta(minutes=5, seconds=59)) is None
    expired = decide_expiry(HB, rec, T0 + timedelta(minutes=6))
    assert expired is not None
    assert (expired.state, expired.expired_at) == (EXPIRED, T0 + timedelta(minutes=6))
    assert state_of(expired) == "expired"


def test_a_ping_re_arms_it_from_the_ping_and_makes_it_ok() -> None:
    at = T0 + timedelta(minutes=4)
    after, resolve = decide_ping("nightly", HB, armed(), at)
    assert resolve is None
    assert (after.state, after.last_ping, after.due_at, after.armed_at) == (
        PENDING,
        at,
        at + timedelta(minutes=6),
        T0,
    )
    assert state_of(after) == "ok"
    assert decide_expiry(HB, after, T0 + timedelta(minutes=6)) is None  # the old due time


def test_a_ping_after_expiry_names_the_expiry_to_resolve() -> None:
    expired = decide_expiry(HB, armed(), T0 + timedelta(minutes=7))
    assert expired is not None
    at = T0 + timedelta(minutes=30)
    after, resolve = decide_ping("nightly", HB, expired, at)
    assert resolve == T0 + timedelta(minutes=7)
    assert (after.state, state_of(after), after.due_at) == (
        PENDING,
        "ok",
        at + timedelta(minutes=6),
    )


def test_an_expired_heartbeat_does_not_fire_twice() -> None:
    expired = decide_expiry(HB, armed(), T0 + timedelta(minutes=7))
    assert expired is not None
    assert decide_expiry(HB, expired, T0 + timedelta(hours=1)) is None


def test_a_ping_of_a_heartbeat_never_stored_arms_it_from_the_ping() -> None:
    after, resolve = decide_ping("nightly", HB, None, T0)
    assert (after.id, after.armed_at, after.last_ping, resolve) == ("nightly", T0, T0, None)


def test_the_expiry_alert_is_one_firing_alert_keyed_to_the_heartbeat() -> None:
    expired = decide_expiry(HB, armed(), T0 + timedelta(minutes=6))
    assert expired is not None
    n, [c] = heartbeat_alert("nightly", HB, expired, MATRIX, resolved_at=None)
    assert (n.status, c.alert.status, c.alert.starts_at) == ("firing", "firing", expired.expired_at)
    assert c.alert.labels == {"alertname": "TocsinHeartbeat", "heartbeat": "nightly"}
    assert (c.verdict.incident_key, c.verdict.severity) == (heartbeat_key("nightly"), "P1")
    assert c.verdict.title == "Heartbeat nightly stopped"
    assert "since it was armed" in c.alert.annotations["description"]

    n, [r] = heartbeat_alert("nightly", HB, expired, MATRIX, resolved_at=T0 + timedelta(minutes=9))
    # The same occurrence (fingerprint, startsAt): it resolves the incident the expiry opened.
    assert (r.alert.status, r.occurrence) == ("resolved", c.occurrence)


def test_a_severity_given_by_name_or_alias_is_the_level_key() -> None:
    hb = HB.model_copy(update={"severity": "critical", "title": "Backups stopped"})
    expired = decide_expiry(hb, armed(), T0 + timedelta(minutes=6))
    assert expired is not None
    _, [c] = heartbeat_alert("nightly", hb, expired, MATRIX, resolved_at=None)
    assert (c.verdict.severity, c.verdict.title) == (MATRIX.resolve("critical"), "Backups stopped")


@pytest.mark.parametrize(
    "bad",
    [
        {"expect_every": "0s", "severity": "P1"},
        {"expect_every": "5m", "grace": "-1m", "severity": "P1"},
        {"expect_every": "5m"},
        {"expect_every": "5m", "severity": "P1", "every": "5m"},
    ],
)
def test_a_malformed_heartbeat_is_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Heartbeat.model_validate(bad)


def test_an_unconfigured_pending_heartbeat_is_retired_and_an_expired_one_kept() -> None:
    retired = retire(armed())
    assert retired is not None and retired.state == RETIRED
    assert decide_expiry(HB, retired, T0 + timedelta(hours=1)) is None  # never fires
    expired = decide_expiry(HB, armed(), T0 + timedelta(minutes=6))
    assert expired is not None
    assert retire(expired) is None  # its incident stays open until someone resolves it
