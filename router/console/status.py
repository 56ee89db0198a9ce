"""The Status page: the configuration in force (its checksum taken when it was loaded), channels
(outbox, breakers), engine — read from the same Prometheus registry ``/metrics`` exports, so the
two never disagree."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from escalation.engine.heartbeats import HeartbeatView
from escalation.engine.service import StoreUnavailable
from router.console.pages import Visit, page
from router.console.view import ago, render
from router.keys import RUNTIME

__all__ = ["Channel", "Sample", "samples", "status_page"]


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def samples(registry: CollectorRegistry, name: str) -> list[Sample]:
    """Every sample named ``name`` (a histogram's ``_count``/``_sum`` by their full names)."""
    return [
        Sample(dict(s.labels), s.value)
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    ]


def _one(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for s in samples(registry, name))


def _on_disk(path: Path) -> str:
    """The SHA-256 of the config file as it is now (an edit not yet reloaded shows here)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        return f"unreadable ({e.strerror})"


@dataclass(frozen=True)
class Channel:
    """One channel's row: outbox depth, breaker state and failures in a row, from /metrics."""

    name: str
    waiting: int
    breaker: str
    failures: int


def _channels(registry: CollectorRegistry) -> list[Channel]:
    depth = {s.labels["channel"]: int(s.value) for s in samples(registry, "tocsin_outbox_depth")}
    state = {
        s.labels["channel"]: s.labels["state"]
        for s in samples(registry, "tocsin_breaker_state")
        if s.value == 1
    }
    failures = {
        s.labels["channel"]: int(s.value) for s in samples(registry, "tocsin_breaker_failures")
    }
    return [
        Channel(c, depth.get(c, 0), state.get(c, "closed"), failures.get(c, 0))
        for c in sorted(set(depth) | set(state) | set(failures))
    ]


@page("read")
async def status_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    await rt.refresh_gauges()
    reg = rt.registry
    reloaded = _one(reg, "tocsin_config_last_reload_success_timestamp_seconds")
    try:
        heartbeats: list[HeartbeatView] | None = await rt.heartbeats.views()
    except StoreUnavailable:
        heartbeats = None  # the rest of the page is what one reads during an outage
    fired = _one(reg, "tocsin_escalation_lateness_seconds_count")
    late = _one(reg, "tocsin_escalation_lateness_seconds_sum")
    return render(
        request,
        "status.html",
        config_path=str(rt.config_path),
        checksum=rt.loaded.sha256,
        on_disk=await asyncio.to_thread(_on_disk, rt.config_path),
        reload_ok=_one(reg, "tocsin_config_last_reload_successful") == 1,
        reloaded_at=datetime.fromtimestamp(reloaded, UTC) if reloaded else None,
        refused_at=rt.refused_at,
        refused_where=rt.refused_where,
        channels=_channels(reg),
        sent=sorted(
            samples(reg, "tocsin_notifications_total"),
            key=lambda s: (s.labels["channel"], s.labels["outcome"]),
        ),
        open_incidents=sorted(
            (s for s in samples(reg, "tocsin_open_incidents") if s.value),
            key=lambda s: (s.labels["severity"], s.labels["status"]),
        ),
        steps_fired=fired,
        mean_lateness_ms=late / fired * 1000 if fired else None,
        engine_errors=_one(reg, "tocsin_engine_errors_total"),
        heartbeats=heartbeats,
        span=ago,
    )
