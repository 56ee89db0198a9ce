"""The Rules page: the loaded rule files, an Explain form, and a simulated escalation drawn as
an SVG chart (one bar per tier from its first page, minutes across, ack/mitigate markers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from router.console.pages import Visit, page
from router.console.view import render
from router.keys import RUNTIME
from router.simulate import Simulation, simulate
from rules.alerts import Alert, Notification

__all__ = ["Bar", "Chart", "chart_of", "parse_labels", "rules_page"]

_UNTIL = timedelta(hours=1)
_MAX_LABELS = 50


def parse_labels(text: str) -> dict[str, str]:
    """``key=value`` pairs, one per line or comma-separated; the rest is ignored."""
    out: dict[str, str] = {}
    for part in text.replace(",", "\n").splitlines():
        key, sep, value = part.partition("=")
        if sep and key.strip() and len(out) < _MAX_LABELS:
            out[key.strip()[:200]] = value.strip().strip("\"'")[:200]
    return out


@dataclass(frozen=True)
class Bar:
    tier: int
    start: float  # minutes after the alert
    end: float
    who: str


@dataclass(frozen=True)
class Chart:
    minutes: float
    bars: list[Bar]
    markers: list[tuple[str, float]]  # (ack | mitigate, minute)

    def x(self, minute: float) -> float:
        """Position on a 600-wide plot that starts at x=60."""
        return 60 + 520 * min(minute, self.minutes) / self.minutes


def chart_of(sim: Simulation, minutes: float) -> Chart:
    first: dict[int, tuple[float, str]] = {}
    markers: list[tuple[str, float]] = []
    for e in sim.all_events:
        tier = e.data.get("tier")
        if e.event == "notify" and isinstance(tier, int):
            first.setdefault(tier, (e.t / 60, f"{e.data.get('person', '')} paged"))
        elif e.event == "skip" and isinstance(tier, int):
            # The tier came due but paged nobody new (already paged, nobody on call, ...).
            first.setdefault(tier, (e.t / 60, e.message))
        elif e.event in ("ack", "mitigate"):
            markers.append((e.event, e.t / 60))
    stop = min([m for _, m in markers] + [minutes])
    bars = [Bar(tier, start, max(start, stop), who) for tier, (start, who) in sorted(first.items())]
    return Chart(minutes, bars, markers)


def _minutes(raw: str) -> float | None:
    """A form's "after N minutes" value: within the simulated hour, else None (not asked)."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 <= value <= _UNTIL.total_seconds() / 60 else None


def _after(minutes: float | None) -> timedelta | None:
    return timedelta(minutes=minutes) if minutes is not None else None


@page("read")
async def rules_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    loaded = rt.loaded
    text = request.query.get("labels", "")[:4000]
    # When someone acknowledges and when someone marks it mitigated: each a marker on the chart.
    ack = _minutes(request.query.get("ack", ""))
    mitigate = _minutes(request.query.get("mitigate", ""))
    labels = parse_labels(text)
    context: dict[str, Any] = {
        "labels_text": text,
        "ack": request.query.get("ack", "")[:10],
        "mitigate": request.query.get("mitigate", "")[:10],
        "result": None,
    }
    if labels:
        now = rt.clock.now()
        alert = Alert(status="firing", labels=labels, annotations={}, startsAt=now)
        group = Notification(
            version="4", receiver="console", status="firing", alerts=[alert], groupKey="{}:{}"
        )
        result, traces = loaded.classifier.explain(alert, group, now)
        body = json.dumps(group.model_dump(mode="json", by_alias=True)).encode()
        sim = await simulate(
            loaded,
            body,
            ack_at=_after(ack),
            mitigate_at=_after(mitigate),
            until=_UNTIL,
            start=now,
        )
        context |= {
            "result": result,
            "traces": traces,
            "chart": chart_of(sim, _UNTIL.total_seconds() / 60),
        }
    return render(request, "rules.html", files=loaded.rule_files, **context)
