"""``tocsin simulate``: the real classifier, store and engine on a virtual clock.

A payload is fed at t=0, people act at the given offsets, and time jumps from one due step to
the next, so a four-hour escalation prints in milliseconds, exactly as production would run it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from adapters.delivery.notifier import Delivery, DeliveryResult
from config.load import LoadedConfig
from escalation.engine.clock import VirtualClock
from escalation.incidents.actions import Action, IllegalTransition
from escalation.incidents.model import TimelineEvent
from escalation.oncall.targets import CHANNELS
from escalation.store.factory import StoreConfig, make_store
from router.runtime import Runtime
from rules.alerts import Notification

__all__ = ["SimEvent", "Simulation", "simulate"]

# The timeline kinds `simulate --json` reports (DESIGN.md §10), by timeline kind.
_EVENTS = {
    "open": "open",
    "notify": "notify",
    "ack": "ack",
    "mitigate": "mitigate",
    "resolve": "resolve",
    "reopen": "reopen",
    "severity": "severity",
    "reminder": "reminder",
    "skip": "skip",
    # A step held until its calendar opens: without it a `during:` step looks lost.
    "deferred": "deferred",
}

# Extra keys each event carries in --json, beyond t / event / incident / severity / message.
_EXTRA = {
    "notify": ("tier", "round", "target", "person", "channel"),
    "deferred": ("tier", "until"),
    "pending": ("steps",),
}


@dataclass(frozen=True)
class SimEvent:
    """One line of the simulated timeline."""

    t: float
    event: str
    incident: str
    severity: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": round(self.t, 3),
            "event": self.event,
            "incident": self.incident,
            "severity": self.severity,
        }
        for k in _EXTRA.get(self.event, ()):
            out[k] = self.data.get(k)
        out["message"] = self.message
        return out


@dataclass
class Simulation:
    """Everything a run produced, in time order."""

    start: datetime
    events: list[SimEvent]
    all_events: list[SimEvent]
    # Per incident still open at --until, the steps it still has to run (event "pending").
    pending: list[SimEvent] = field(default_factory=list)
    # What the run could not simulate (PagerDuty-backed schedules), said before the timeline.
    notes: list[str] = field(default_factory=list)


class _NotSent:
    """Every channel of a simulation: the page is recorded as delivered, never sent.

    A simulation runs where secrets may be placeholders (they are deferred), and it must never
    page a real person whatever the config's adapters are.
    """

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(ok=True, provider_id=f"simulate:{delivery.row.id}")


def _offline_channels(loaded: LoadedConfig) -> dict[str, _NotSent]:
    """Every channel name a step may use (``webhook:<name>`` too), each one not sent."""
    webhook, teams = loaded.config.adapters.webhook, loaded.config.adapters.teams
    names = [*CHANNELS, *(f"webhook:{n}" for n in (webhook.endpoints if webhook else {}))]
    names += [f"teams:{n}" for n in (teams.webhooks if teams else {})]
    return {name: _NotSent() for name in names}


def _resolved_copy(n: Notification, at: datetime) -> Notification:
    alerts = [a.model_copy(update={"status": "resolved", "ends_at": at}) for a in n.alerts]
    return n.model_copy(update={"status": "resolved", "alerts": alerts})


async def simulate(
    loaded: LoadedConfig,
    payload: bytes,
    *,
    ack_at: timedelta | None = None,
    mitigate_at: timedelta | None = None,
    resolve_at: timedelta | None = None,
    until: timedelta = timedelta(hours=4),
    start: datetime | None = None,
    store_dir: Path | None = None,
) -> Simulation:
    """Run one payload through a fresh store on a virtual clock."""
    from router.receiver import parse_notification

    notification = parse_notification(payload)
    t0 = start or datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    clock = VirtualClock(t0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(store_dir or tmp) / "simulate.db"
        store = make_store(StoreConfig(backend="sqlite", path=str(db)))
        rt = Runtime(
            loaded,
            clock=clock,
            registry=CollectorRegistry(),
            store=store,
            notifiers=_offline_channels(loaded),
            offline=True,  # never asks PagerDuty who is on call (nor anything else)
        )
        await rt.start(run_engine=False)
        try:
            await rt.pipeline.submit(notification)
            actions = _actions(rt, notification, t0, ack_at, mitigate_at, resolve_at)
            await _run(rt, clock, actions, t0 + until)
            events = await _timeline(rt, t0)
            pending = await _pending(rt, t0, t0 + until)
        finally:
            await rt.stop()
    events.sort(key=lambda e: e.t)
    shown = [e for e in events if e.event in _EVENTS.values()]
    return Simulation(t0, shown, events, pending, _not_simulated(loaded))


def _not_simulated(loaded: LoadedConfig) -> list[str]:
    return [
        f"schedule {name!r} is PagerDuty-backed: who is on call there is not simulated "
        "(a step that reaches it shows a skip)"
        for name, sched in loaded.config.schedules.items()
        if sched.pagerduty is not None
    ]


_Scheduled = list[tuple[datetime, Callable[[], Awaitable[object]]]]


def _actions(
    rt: Runtime,
    notification: Notification,
    t0: datetime,
    ack_at: timedelta | None,
    mitigate_at: timedelta | None,
    resolve_at: timedelta | None,
) -> _Scheduled:
    """What people do, and when: act on every open incident; resolve by a resolved payload."""

    async def act(action: Action) -> None:
        for inc in await rt.service.list_incidents(
            status=["triggered", "acknowledged", "mitigated"]
        ):
            try:
                await rt.service.act(inc.id, action, actor="simulate", source="cli")
            except IllegalTransition:
                pass

    actions: _Scheduled = []
    if ack_at is not None:
        actions.append((t0 + ack_at, lambda: act(Action.ACK)))
    if mitigate_at is not None:
        actions.append((t0 + mitigate_at, lambda: act(Action.MITIGATE)))
    if resolve_at is not None:
        at = t0 + resolve_at
        actions.append((at, lambda: rt.pipeline.submit(_resolved_copy(notification, at))))
    actions.sort(key=lambda a: a[0])
    return actions


async def _run(rt: Runtime, clock: VirtualClock, actions: _Scheduled, end: datetime) -> None:
    """Jump from one due step (or action) to the next until nothing is left or ``end``."""
    await rt.engine.tick()
    while True:
        nxt = await rt.service.next_due()
        pending_action = actions[0][0] if actions else None
        candidates = [t for t in (nxt, pending_action) if t is not None]
        if not candidates:
            break
        when = max(min(candidates), clock.now())
        if when > end:
            break
        clock.set(when)
        while actions and actions[0][0] <= clock.now():
            _, fn = actions.pop(0)
            await fn()
        await rt.engine.tick()
    clock.set(end)


async def _timeline(rt: Runtime, t0: datetime) -> list[SimEvent]:
    """Every incident's timeline, each event with the severity the incident had then."""
    events: list[SimEvent] = []
    for inc in await rt.service.list_incidents(limit=1000):
        current = inc.severity
        for e in await rt.service.timeline(inc.id):
            if e.kind == "open":
                current = str(e.data.get("severity", current))
            elif e.kind == "severity":
                current = str(e.data.get("to", current))
            events.append(_sim_event(e, t0, current))
    return events


async def _pending(rt: Runtime, t0: datetime, end: datetime) -> list[SimEvent]:
    """What each incident still has scheduled past ``end``: the run stopped, the escalation not."""
    out: list[SimEvent] = []
    for inc in await rt.service.list_incidents(
        status=["triggered", "acknowledged", "mitigated"], limit=1000
    ):
        detail = await rt.service.detail(inc.id)
        steps = [s for s in (detail.steps if detail else []) if s.state.value == "pending"]
        if not steps:
            continue
        steps.sort(key=lambda s: s.due_at)
        listed = [
            {
                "kind": s.kind.value,
                "tier": s.tier,
                "round": s.round,
                "t": round((s.due_at - t0).total_seconds(), 3),
            }
            for s in steps
        ]
        first = _stamp((steps[0].due_at - t0).total_seconds())
        message = (
            f"{len(steps)} step(s) still pending at the end of the run "
            f"({inc.status.value}); the next at {first}"
        )
        t = (end - t0).total_seconds()
        out.append(SimEvent(t, "pending", inc.id, inc.severity, message, {"steps": listed}))
    return out


def _stamp(seconds: float) -> str:
    mins, secs = divmod(int(seconds), 60)
    hours, mins = divmod(mins, 60)
    return f"+{hours:d}:{mins:02d}:{secs:02d}"


def _sim_event(e: TimelineEvent, t0: datetime, severity: str) -> SimEvent:
    return SimEvent(
        t=(e.at - t0).total_seconds(),
        event=_EVENTS.get(e.kind, e.kind),
        incident=e.incident_id,
        severity=severity,
        message=e.message,
        data=dict(e.data),
    )


def render_text(sim: Simulation) -> str:
    """A human timeline: ``+MM:SS  event  message``."""
    lines = [f"Simulation from {sim.start.isoformat()}"]
    lines += [f"note: {n}" for n in sim.notes]
    for e in [*sim.all_events, *sim.pending]:
        lines.append(f"{_stamp(e.t):>10}  {e.event:<10} {e.message}")
    return "\n".join(lines)


def render_json(sim: Simulation) -> str:
    """One JSON object per line (DESIGN.md §10), then one ``pending`` line per open incident."""
    return "\n".join(json.dumps(e.as_json()) for e in [*sim.events, *sim.pending])
