"""``decide_ingest`` and ``decide_action`` as pure decisions: records in, a change set out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from escalation.incidents.actions import Action, IllegalTransition, decide_action
from escalation.incidents.directory import Directory
from escalation.incidents.ingest import Classified, IngestAction, decide_ingest, new_incident_id
from escalation.incidents.model import (
    AlertRecord,
    AlertStatus,
    CancelOutbox,
    CancelSteps,
    Changes,
    IncidentRecord,
    OutboxKind,
    OutboxRecord,
    OutboxState,
    Status,
    StepKind,
    StepRecord,
    StepReschedule,
    StepState,
)
from escalation.incidents.policy import (
    PAGERDUTY_REOPENED,
    level_snapshot,
    policy_snapshot,
    step_id,
)
from rules.alerts import Alert
from rules.classifier import Classification
from rules.matrix import load_preset

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
MATRIX = load_preset("default")
DIRECTORY = Directory(matrix=MATRIX)
KEY = 'web.hook/{}:{alertname="DiskFull"}'


def classified(
    severity: str = "P2", *, status: str = "firing", fp: str = "fp1", starts: datetime = T0
) -> Classified:
    alert = Alert(
        status=status,  # type: ignore[arg-type]
        labels={"alertname": "DiskFull", "fp": fp},
        starts_at=starts,
        ends_at=None if status == "firing" else starts + 5 * M,
        fingerprint=fp,
    )
    verdict = Classification(
        severity=severity,
        severity_name=MATRIX.levels[severity].name,
        policy=None,
        team=None,
        incident_key=None,
        title="DiskFull",
        rule="disk",
        matched=("disk",),
        reasons=(),
    )
    return Classified(alert, verdict)


def incident(
    *, severity: str = "P2", status: Status = Status.TRIGGERED, **kw: Any
) -> IncidentRecord:
    name, snap = policy_snapshot(MATRIX, {}, severity, None)
    return IncidentRecord(
        id="inc1",
        number=1,
        key=KEY,
        status=status,
        severity=severity,
        title="DiskFull",
        team=None,
        policy_name=name,
        policy=kw.pop("policy", snap),
        level=level_snapshot(MATRIX, severity),
        opened_at=T0,
        updated_at=T0,
        **kw,
    )


def stored(c: Classified, *, status: AlertStatus = AlertStatus.FIRING) -> AlertRecord:
    assert c.alert.starts_at is not None
    return AlertRecord(
        incident_id="inc1",
        fingerprint=c.alert.fingerprint,
        starts_at=c.alert.starts_at,
        status=status,
        ends_at=None,
        labels=dict(c.alert.labels),
        annotations={},
        generator_url="",
        severity=c.verdict.severity,
        rule=c.verdict.rule,
        first_seen=T0,
        last_seen=T0,
    )


def page_row(
    person: str, channel: str = "log", *, state: OutboxState = OutboxState.SENT
) -> OutboxRecord:
    return OutboxRecord(
        id=f"inc1:0:page:0:0:{person}:{channel}",
        incident_id="inc1",
        step_id="inc1:0:page:0:0",
        kind=OutboxKind.PAGE,
        tier=0,
        round=0,
        target="role:oncall",
        person=person,
        channel=channel,
        created_at=T0,
        not_before=T0,
        state=state,
    )


def ingest(
    items: list[Classified],
    inc: IncidentRecord | None = None,
    alerts: list[AlertRecord] | None = None,
    paged: list[OutboxRecord] | None = None,
    now: datetime = T0,
) -> tuple[Changes, Any]:
    return decide_ingest(
        KEY,
        items,
        inc,
        alerts or [],
        paged or [],
        now=now,
        directory=DIRECTORY,
        receiver="web.hook",
        group_key="{}:{}",
        common_labels={"alertname": "DiskFull"},
        new_id=lambda: "new1",
    )


# --- decide_ingest ----------------------------------------------------------------------------


def test_a_firing_alert_opens_an_incident_with_its_steps() -> None:
    ch, out = ingest([classified("P1")])
    assert (out.action, out.incident_id, out.severity, out.status) == (
        IngestAction.OPENED,
        "new1",
        "P1",
        "triggered",
    )
    [inc] = ch.new_incidents
    assert (inc.key, inc.severity, inc.receiver, inc.labels) == (
        KEY,
        "P1",
        "web.hook",
        {"alertname": "DiskFull"},
    )
    assert inc.level["name"] == MATRIX.levels["P1"].name
    assert [a.fingerprint for a in ch.upsert_alerts] == ["fp1"]
    assert [e.kind for e in ch.timeline] == ["open", "alert"]
    kinds = [s.kind for s in ch.new_steps]
    assert kinds.count(StepKind.PAGE) == len(inc.policy["steps"]) and StepKind.REMINDER in kinds
    assert not ch.updated_incidents


def test_only_resolved_alerts_open_nothing() -> None:
    ch, out = ingest([classified(status="resolved")])
    assert out.action == IngestAction.IGNORED
    assert not ch


def test_a_repeat_of_a_recorded_occurrence_changes_nothing() -> None:
    c = classified()
    ch, out = ingest([c], incident(), [stored(c)])
    assert out.action == IngestAction.UNCHANGED
    assert not ch


def test_a_new_alert_joins_the_open_incident() -> None:
    first, second = classified(), classified(fp="fp2")
    ch, out = ingest([first, second], incident(), [stored(first)], now=T0 + M)
    assert out.action == IngestAction.JOINED
    assert [a.fingerprint for a in ch.upsert_alerts] == ["fp2"]
    assert [e.kind for e in ch.timeline] == ["alert"]
    assert [i.updated_at for i in ch.updated_incidents] == [T0 + M]


def test_a_worse_alert_raises_the_severity_and_restarts_an_acknowledged_run() -> None:
    first = classified("P2")
    inc = incident(status=Status.ACKNOWLEDGED, acknowledged_at=T0)
    ch, out = ingest([first, classified("P0", fp="fp2")], inc, [stored(first)], now=T0 + M)
    assert (out.action, out.severity, out.status) == (IngestAction.RAISED, "P0", "triggered")
    [new] = ch.updated_incidents
    assert (new.severity, new.epoch, new.status) == ("P0", 1, Status.TRIGGERED)
    assert ch.cancel_steps_of == [CancelSteps("inc1", None, "superseded: severity raised to P0")]
    # Tiers already past are due now, relative to the incident's start.
    assert all(s.due_at >= T0 + M and s.epoch == 1 for s in ch.new_steps)


def test_a_better_alert_never_lowers_the_severity() -> None:
    first = classified("P1")
    ch, out = ingest([first, classified("P3", fp="fp2")], incident(severity="P1"), [stored(first)])
    assert (out.action, out.severity) == (IngestAction.JOINED, "P1")
    assert not ch.cancel_steps_of


def test_the_last_alert_resolving_resolves_the_incident_and_tells_who_was_paged() -> None:
    c = classified()
    ch, out = ingest(
        [classified(status="resolved")], incident(), [stored(c)], [page_row("alice")], T0 + 9 * M
    )
    assert out.action == IngestAction.RESOLVED
    assert ch.upsert_alerts[0].status == AlertStatus.RESOLVED
    [new] = ch.updated_incidents
    assert (new.status, new.resolved_at) == (Status.RESOLVED, T0 + 9 * M)
    assert ch.cancel_steps_of == [CancelSteps("inc1", None, "incident resolved")]
    assert ch.cancel_outbox_of == [CancelOutbox("inc1", (OutboxKind.PAGE, OutboxKind.REMINDER))]
    assert [(o.kind, o.person, o.id) for o in ch.new_outbox] == [
        (OutboxKind.RESOLVE, "alice", "inc1:resolve:0:alice:log")
    ]


def test_firing_again_within_the_monitoring_window_reopens() -> None:
    c = classified()
    inc = incident(status=Status.RESOLVED, resolved_at=T0 + 5 * M, acknowledged_at=T0)
    later = classified(starts=T0 + 6 * M)
    ch, out = ingest([later], inc, [stored(c, status=AlertStatus.RESOLVED)], now=T0 + 6 * M)
    assert out.action == IngestAction.REOPENED
    [new] = ch.updated_incidents
    assert (new.status, new.epoch, new.resolved_at, new.acknowledged_at) == (
        Status.TRIGGERED,
        1,
        None,
        None,
    )
    assert [e.kind for e in ch.timeline] == ["reopen", "alert"]


def test_firing_again_after_the_window_opens_a_new_incident() -> None:
    window = timedelta(seconds=incident().level["monitoring_window"])
    inc = incident(status=Status.RESOLVED, resolved_at=T0)
    ch, out = ingest([classified(starts=T0 + window + M)], inc, now=T0 + window + M)
    assert (out.action, out.incident_id) == (IngestAction.OPENED, "new1")
    assert [i.id for i in ch.new_incidents] == ["new1"]


# --- decide_action ----------------------------------------------------------------------------


def act(inc: IncidentRecord, action: Action, **kw: Any) -> tuple[Changes, IncidentRecord]:
    return decide_action(inc, action, now=T0 + 5 * M, actor="alice", source="api", **kw)


def pending_page(tier: int, due: datetime) -> StepRecord:
    return StepRecord(
        id=step_id("inc1", 0, StepKind.PAGE, 0, tier),
        incident_id="inc1",
        kind=StepKind.PAGE,
        epoch=0,
        round=0,
        tier=tier,
        due_at=due,
    )


def test_ack_cancels_what_it_makes_moot_and_tells_pagerduty() -> None:
    ch, new = act(incident(), Action.ACK, note="on it", paged=[page_row("svc", "pagerduty")])
    assert (new.status, new.acknowledged_at, new.updated_at) == (
        Status.ACKNOWLEDGED,
        T0 + 5 * M,
        T0 + 5 * M,
    )
    assert ch.updated_incidents == [new]
    assert ch.cancel_steps_of == [CancelSteps("inc1", ("acknowledged",), "acknowledged")]
    assert ch.cancel_outbox_of == [CancelOutbox("inc1", (OutboxKind.PAGE,))]
    assert [(e.kind, e.actor, e.message) for e in ch.timeline] == [
        ("ack", "alice", "acknowledged by alice: on it")
    ]
    assert [(o.kind, o.channel, o.id) for o in ch.new_outbox] == [
        (OutboxKind.ACKNOWLEDGE, "pagerduty", "inc1:acknowledge:0:svc:pagerduty")
    ]


def test_an_ack_from_pagerduty_is_not_echoed_back_to_it() -> None:
    ch, _ = decide_action(
        incident(),
        Action.ACK,
        now=T0,
        actor="bob",
        source="pagerduty",
        paged=[page_row("svc", "pagerduty")],
    )
    assert not ch.new_outbox


def test_ack_with_an_ack_timeout_schedules_it() -> None:
    policy = {**incident().policy, "ack_timeout": 600.0}
    ch, _ = act(incident(policy=policy), Action.ACK)
    [timeout] = ch.new_steps
    assert (timeout.kind, timeout.due_at, timeout.unless) == (
        StepKind.ACK_TIMEOUT,
        T0 + 15 * M,
        "mitigated",
    )


def test_mitigate_implies_an_ack() -> None:
    ch, new = act(incident(), Action.MITIGATE)
    assert (new.status, new.mitigated_at, new.acknowledged_at) == (
        Status.MITIGATED,
        T0 + 5 * M,
        T0 + 5 * M,
    )
    assert ch.cancel_steps_of == [CancelSteps("inc1", ("acknowledged", "mitigated"), "mitigated")]


def test_resolve_keeps_an_earlier_ack_and_tells_who_was_paged() -> None:
    inc = incident(status=Status.ACKNOWLEDGED, acknowledged_at=T0)
    ch, new = act(inc, Action.RESOLVE, paged=[page_row("alice")])
    assert (new.status, new.resolved_at, new.acknowledged_at) == (
        Status.RESOLVED,
        T0 + 5 * M,
        T0,
    )
    assert ch.cancel_steps_of == [CancelSteps("inc1", None, "resolved")]
    assert ch.cancel_outbox_of == [CancelOutbox("inc1", (OutboxKind.PAGE, OutboxKind.REMINDER))]
    assert [o.kind for o in ch.new_outbox] == [OutboxKind.RESOLVE]


def test_escalate_brings_the_next_tier_not_yet_due_forward() -> None:
    pending = [pending_page(0, T0), pending_page(1, T0 + 10 * M), pending_page(2, T0 + 30 * M)]
    inc = incident(status=Status.ACKNOWLEDGED, acknowledged_at=T0)
    ch, new = act(inc, Action.ESCALATE, steps=pending)
    assert new.status == Status.TRIGGERED
    assert ch.step_reschedules == [
        StepReschedule(pending[1].id, T0 + 5 * M, "escalated now by alice")
    ]
    assert ch.timeline[0].data == {"tier": 1}


def test_escalate_without_a_further_tier_is_illegal() -> None:
    # P2 of the default preset has two tiers; both have fired.
    fired = [replace(pending_page(t, T0), state=StepState.FIRED) for t in (0, 1)]
    with pytest.raises(IllegalTransition, match="no further tier"):
        act(incident(), Action.ESCALATE, steps=fired)


@pytest.mark.parametrize("status", [Status.ACKNOWLEDGED, Status.MITIGATED])
def test_escalate_after_an_ack_pages_the_tier_the_ack_cancelled(status: Status) -> None:
    # Tier 0 paged; the ack (or mitigation) cancelled tier 1, so nothing is pending.
    steps = [
        replace(pending_page(0, T0), state=StepState.FIRED),
        replace(pending_page(1, T0 + 60 * M), state=StepState.CANCELLED),
    ]
    inc = incident(status=status, acknowledged_at=T0 + M)
    ch, new = act(inc, Action.ESCALATE, steps=steps)
    assert new.status == Status.TRIGGERED
    [step] = ch.new_steps
    assert (step.kind, step.epoch, step.round, step.tier, step.due_at, step.state) == (
        StepKind.PAGE,
        0,
        0,
        1,
        T0 + 5 * M,
        StepState.PENDING,
    )
    assert step.id != steps[1].id  # ids are unique: the cancelled step keeps its own
    assert step.unless == "acknowledged"
    assert ch.step_reschedules == []
    assert [(e.message, e.data) for e in ch.timeline] == [
        ("escalated to tier 1 now by alice", {"tier": 1})
    ]
    # Escalating again, once that tier has fired, finds no further tier.
    fired = [*steps, replace(step, state=StepState.FIRED)]
    with pytest.raises(IllegalTransition, match="no further tier"):
        act(new, Action.ESCALATE, steps=fired)


def test_escalate_pages_the_next_tier_not_a_later_one_the_ack_left_pending() -> None:
    # A P0 tier that only mitigation cancels stays pending after the ack; the tier before it,
    # cancelled by the ack, is the next one.
    snap = incident(severity="P0").policy
    assert len(snap["steps"]) >= 3
    steps = [
        replace(pending_page(0, T0), state=StepState.FIRED),
        replace(pending_page(1, T0 + 5 * M), state=StepState.CANCELLED),
        pending_page(2, T0 + 60 * M),
    ]
    inc = incident(severity="P0", status=Status.ACKNOWLEDGED, acknowledged_at=T0 + M)
    ch, _ = act(inc, Action.ESCALATE, steps=steps)
    assert [(s.tier, s.due_at) for s in ch.new_steps] == [(1, T0 + 5 * M)]
    assert ch.step_reschedules == []


def test_a_note_only_grows_the_timeline() -> None:
    inc = incident()
    ch, same = act(inc, Action.NOTE, note="disk cleanup started")
    assert same is inc
    assert [(e.kind, e.message) for e in ch.timeline] == [("note", "disk cleanup started")]
    assert not ch.updated_incidents and not ch.cancel_steps_of


def test_reopen_starts_a_new_run_with_fresh_steps() -> None:
    inc = incident(status=Status.RESOLVED, resolved_at=T0, acknowledged_at=T0)
    ch, new = act(inc, Action.REOPEN, directory=DIRECTORY)
    assert (new.status, new.epoch, new.acknowledged_at, new.resolved_at) == (
        Status.TRIGGERED,
        1,
        None,
        None,
    )
    assert ch.cancel_steps_of == [CancelSteps("inc1", None, "superseded: reopened")]
    assert ch.new_steps and all(s.epoch == 1 and s.due_at >= T0 + 5 * M for s in ch.new_steps)


def test_a_reopen_from_pagerduty_marks_the_new_run_so_pagerduty_is_not_triggered_again() -> None:
    inc = incident(status=Status.RESOLVED, resolved_at=T0, acknowledged_at=T0)
    here, _ = act(inc, Action.REOPEN, directory=DIRECTORY)
    there, _ = decide_action(
        inc, Action.REOPEN, now=T0 + 5 * M, actor="pd", source="pagerduty", directory=DIRECTORY
    )
    assert not any(s.id.endswith(PAGERDUTY_REOPENED) for s in here.new_steps)
    assert [s.id for s in there.new_steps] == [s.id + PAGERDUTY_REOPENED for s in here.new_steps]


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (Status.ACKNOWLEDGED, Action.ACK),
        (Status.RESOLVED, Action.MITIGATE),
        (Status.RESOLVED, Action.RESOLVE),
        (Status.TRIGGERED, Action.REOPEN),
    ],
)
def test_an_action_that_does_not_apply_is_illegal(status: Status, action: Action) -> None:
    with pytest.raises(IllegalTransition, match=f"it is {status.value}"):
        act(replace(incident(), status=status), action)


def test_new_incident_ids_are_20_random_lowercase_hex_characters() -> None:
    # The shape uuid4().hex[:20] had: URLs, dedup keys and stored ids keep it.
    ids = {new_incident_id() for _ in range(1000)}
    assert len(ids) == 1000
    for iid in ids:
        assert len(iid) == 20 and set(iid) <= set("0123456789abcdef")
