"""The composition root: the live configuration and every part built from it.

A reload builds everything fallible from the new file first and swaps only when all of it
succeeded, so a bad config never replaces a good one. Incidents already open keep their policy
snapshot; only new decisions see the new configuration.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from adapters.config import DispatchConfig
from adapters.delivery.dispatcher import OutboxDispatcher
from adapters.delivery.limits import BREAKER_STATES, breaker_state
from adapters.delivery.notifier import Notifier
from adapters.delivery.policy import ConfiguredPolicy, store_policy
from adapters.http import is_loopback
from adapters.pagerduty.alerts import AlertLookupError, IncidentAlerts
from adapters.phone.provider import CALLBACK_ID_RETENTION, CALLBACK_SOURCES
from adapters.registry import AdapterBuildError, AdapterContext, build_notifiers
from config.errors import ConfigError, Problem
from config.load import LoadedConfig, load_config
from config.server import REPLAY_CLOCK_SKEW
from escalation.engine.clock import Clock, RealClock
from escalation.engine.heartbeats import HeartbeatService
from escalation.engine.immediate import PageAtOnce
from escalation.engine.loop import Engine
from escalation.engine.metrics import EscalationMetrics
from escalation.engine.oncall import OncallService, live_directory
from escalation.engine.service import EscalationService, StoreUnavailable
from escalation.incidents.directory import Directory
from escalation.incidents.ingest import Classified
from escalation.store.base import BreakerRecord, Store, StoreError
from escalation.store.factory import make_store
from escalation.store.postgres import PostgresStore
from escalation.store.wakeup import WakeupListener, listener_for
from router.metrics import RouterMetrics
from router.oncall_sync import OncallSync
from router.pipeline import PipelineResult
from rules.alerts import Notification
from rules.classifier import Classification
from rules.templates import notification_budget

__all__ = ["IncidentPipeline", "Runtime", "build_directory"]

log = logging.getLogger("tocsin.runtime")


def build_directory(
    loaded: LoadedConfig,
    pagerduty_oncall: Callable[[tuple[str | None, str | None]], list[str] | None] | None = None,
    *,
    pagerduty_offline: bool = False,
) -> Directory:
    """The escalation view of a loaded config."""
    cfg = loaded.config
    extra = {"pagerduty_oncall": pagerduty_oncall} if pagerduty_oncall is not None else {}
    return Directory(
        **extra,
        pagerduty_offline=pagerduty_offline,
        matrix=loaded.matrix,
        policies=cfg.policies,
        people=cfg.people,
        roles=cfg.roles,
        teams=cfg.teams,
        schedules=cfg.schedules,
        calendars=cfg.calendars,
        maintenance=cfg.maintenance,
        incident_rooms="slack" if cfg.adapters.slack is not None else None,
    )


class Runtime:
    """Holds the current LoadedConfig and the store, engine and service built around it.

    ``offline`` (``tocsin simulate``): no background task touches the network, so PagerDuty-backed
    schedules are never looked up; the directory says so where a step reaches one; and the
    configured channels are not built, only the ``notifiers`` given.
    """

    # The last reload refused (the Status page): when, and where its problems were.
    refused_at: datetime | None = None
    refused_where: tuple[str, ...] = ()
    # PagerDuty incidents' alerts over REST (built on first use), and those a reload replaced.
    _alerts: IncidentAlerts | None = None
    _retired_alerts: tuple[IncidentAlerts, ...] = ()

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        env: Mapping[str, str] | None = None,
        store: Store | None = None,
        notifiers: Mapping[str, Notifier] | None = None,
        offline: bool = False,
    ) -> None:
        self.loaded = loaded
        self.offline = offline
        self.clock: Clock = clock or RealClock()
        self.registry = registry or CollectorRegistry()
        self.metrics = RouterMetrics(self.registry)
        self.esc_metrics = EscalationMetrics(self.registry)
        self.env = env
        self.store: Store = store or make_store(loaded.config.store)
        self.oncall = OncallSync(self.registry, self.clock)
        if not offline:
            self.oncall.configure(loaded)
        self._directory = self._make_directory(loaded)
        self._extra_notifiers = dict(notifiers or {})
        self._http: aiohttp.ClientSession | None = None
        self._notifiers = self._build_notifiers(loaded)
        self._policy = self._make_policy(loaded.config.adapters.dispatch)
        self.dispatcher = OutboxDispatcher(
            self.store,
            self.clock,
            lambda: self._notifiers,
            lambda: self._directory,
            self.esc_metrics,
            lambda: self._policy,
            public_url=lambda: self.loaded.config.server.public_url,
        )
        engine_cfg = loaded.config.engine
        self.engine = Engine(
            self.store,
            self.clock,
            lambda: self._directory,
            self.dispatcher,
            self.esc_metrics,
            lease=engine_cfg.lease,
            poll=engine_cfg.poll,
            batch=engine_cfg.batch,
            replay_windows=self._replay_windows,
        )
        self.service = self._make_service()
        self.pipeline = IncidentPipeline(self)
        self._reload_lock = asyncio.Lock()
        self._engine_task: asyncio.Task[None] | None = None
        # Other replicas' "something earlier is scheduled" (PostgreSQL LISTEN; SQLite: no-op).
        self.wakeup: WakeupListener = listener_for(self.store, self.engine.wake)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(time.time())
        # Where the HTTP server listens, once it does (set by ``router.serve.start_http``).
        self.bound_host: str | None = None

    @functools.cached_property
    def heartbeats(self) -> HeartbeatService:
        """Configured heartbeats: pings, their state, and expiries (the engine fires them)."""
        return HeartbeatService(
            self.store, self.clock, self.service, lambda: self.loaded.config.heartbeats
        )

    @functools.cached_property
    def schedules(self) -> OncallService:
        """Who is on call, overrides made at run time, calendar feeds."""
        return OncallService(self.store, self.clock, lambda: self._directory)

    def _make_service(self) -> EscalationService:
        # A process that delivers pages a new incident's first tier inside the ingest's
        # transaction, leased as the engine would (``tocsin simulate`` leaves it to the engine).
        page_at_once = None
        if not self.offline:
            page_at_once = PageAtOnce(
                self.dispatcher,
                self.esc_metrics,
                lambda tx, now: live_directory(tx, self._directory, now),
                owner=lambda: self.engine.owner,
                lease=lambda: self.engine.lease,
            )
        return EscalationService(
            self.store,
            self.clock,
            lambda: self._directory,
            self.esc_metrics,
            wake=self.engine.wake,
            page_at_once=page_at_once,
        )

    def _replay_windows(self) -> dict[str, timedelta]:
        # A PagerDuty event older than the window (+ skew) is refused by its age, so its id can
        # go ("pagerduty" is the webhook route's delivery source).
        # A Slack request is refused 5 minutes after its signed timestamp ("slack": its routes).
        # A link's token (email, Teams, ntfy: each its channel's source) and a Pushover
        # callback's token expire: a replay after that is refused by its expiry, so the
        # remembered use can go.
        adapters = self.loaded.config.adapters
        windows = {
            "pagerduty": self.loaded.config.server.replay_window + REPLAY_CLOCK_SKEW,
            "slack": timedelta(minutes=5) + REPLAY_CLOCK_SKEW,
        }
        for channel, links in (
            ("email", adapters.email),
            ("teams", adapters.teams),
            ("ntfy", adapters.ntfy),
        ):
            if links is not None:
                windows[channel] = links.link_ttl + REPLAY_CLOCK_SKEW
        if adapters.pushover is not None:
            windows["pushover"] = adapters.pushover.callback_ttl + REPLAY_CLOCK_SKEW
        # Phone providers' callbacks carry no signed time: their ids are kept for a retention
        # past the providers' retry horizons instead (whether or not a provider is configured
        # now, so ids stored before a reload that removed it go too).
        windows.update(dict.fromkeys(CALLBACK_SOURCES, CALLBACK_ID_RETENTION))
        return windows

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, run_engine: bool = True) -> None:
        """Open the store (migrations) and start the engine loop."""
        await self.store.open()
        self.engine.heartbeats = self.heartbeats
        if not self.offline:
            await self.oncall.start()  # who PagerDuty has on call, before the first step fires
            await self.heartbeats.arm_all()  # new ones from now; stored ones keep their time
        if run_engine:
            await self.wakeup.start()
            self._engine_task = asyncio.create_task(self.engine.run(), name="tocsin-engine")

    def incident_alerts(self) -> IncidentAlerts | None:
        """PagerDuty incidents' alerts over REST, to match webhooks (None: no API token).

        Raises ``AlertLookupError`` when the client cannot be built (python-pagerduty missing;
        ``check`` refuses the configs that would fail): the webhook answers 503 and PagerDuty
        retries, where "not ours" would have dropped every ack for good.
        """
        cfg = self.loaded.config.adapters.pagerduty
        if cfg is None or cfg.api_token is None or self.offline:
            return None
        if self._alerts is None or self._alerts.cfg != cfg:
            try:
                fresh = IncidentAlerts(cfg, clock=self.clock)
            except ValueError as e:
                raise AlertLookupError(f"no PagerDuty REST client: {e}") from None
            if self._alerts is not None:
                self._retired_alerts += (self._alerts,)  # closed at stop
            self._alerts = fresh
        return self._alerts

    async def stop(self) -> None:
        for alerts in [*self._retired_alerts, *([self._alerts] if self._alerts else [])]:
            await alerts.close()
        self._retired_alerts, self._alerts = (), None
        await self.oncall.stop()
        await self.wakeup.stop()
        self.engine.stop()
        if self._engine_task is not None:
            await self._engine_task
            self._engine_task = None
        await self.service.settle()  # sends handed over at ingest finish before the store closes
        await self.store.close()
        if self._http is not None:
            await self._http.close()

    async def readiness_problems(self) -> list[str]:
        try:
            await self.store.ping()
        except StoreError as e:
            return [f"store: {e}"]
        if self._engine_task is not None and self._engine_task.done():
            return ["engine: stopped"]
        return []

    async def refresh_gauges(self) -> None:
        """Read open-incident counts and outbox depth for /metrics."""
        try:
            counts = await self.store.counts()
            depth = await self.store.outbox_depth()
            # Where the dispatcher keeps them: the store on PostgreSQL, memory on SQLite.
            breakers = {b.channel: b for b in await self._policy.breakers.records()}
            heartbeats = await self.heartbeats.views()
        except (StoreError, StoreUnavailable):
            return
        m = self.esc_metrics
        m.heartbeat_last_ping.clear()
        m.heartbeat_expired.clear()
        for hb in heartbeats:
            m.heartbeat_last_ping.labels(hb.name).set(
                hb.last_ping.timestamp() if hb.last_ping else 0
            )
            m.heartbeat_expired.labels(hb.name).set(1 if hb.state == "expired" else 0)
        self.esc_metrics.open_incidents.clear()
        for (sev, status), n in counts.items():
            self.esc_metrics.open_incidents.labels(sev, status).set(n)
        self.esc_metrics.outbox_depth.clear()
        # Every configured channel is exported, at 0 once drained: a series that vanishes when
        # the queue empties reads as "no data" on a dashboard, not as "nothing waiting".
        for channel in sorted(set(self._notifiers) | set(depth)):
            self.esc_metrics.outbox_depth.labels(channel).set(depth.get(channel, 0))
        self._breaker_gauges(breakers)

    def _breaker_gauges(self, breakers: Mapping[str, BreakerRecord]) -> None:
        """Every configured channel's breaker, closed when it never failed."""
        m, now = self.esc_metrics, self.clock.now()
        reset = self.loaded.config.adapters.dispatch.breaker_reset
        m.breaker_state.clear()
        m.breaker_failures.clear()
        for channel in sorted(set(self._notifiers) | set(breakers)):
            stored = breakers.get(channel)
            state = breaker_state(stored, now, reset)
            for s in BREAKER_STATES:
                m.breaker_state.labels(channel, s).set(1 if s == state else 0)
            m.breaker_failures.labels(channel).set(stored.failures if stored else 0)

    # -- configuration -----------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.loaded.path

    @property
    def directory(self) -> Directory:
        return self._directory

    def _make_directory(self, loaded: LoadedConfig) -> Directory:
        if self.offline:
            return build_directory(loaded, pagerduty_offline=True)
        return build_directory(loaded, self.oncall.get)

    def _make_policy(self, cfg: DispatchConfig) -> ConfiguredPolicy:
        # Replicas share a PostgreSQL store, so limits, breakers and bundling windows are kept
        # there, or N replicas allow N x. SQLite has one process: memory is exact and costs no
        # store transaction per send (that once made alert-to-page 9 x slower).
        return store_policy(cfg, self.store, shared=isinstance(self.store, PostgresStore))

    def _build_notifiers(self, loaded: LoadedConfig) -> dict[str, Notifier]:
        if self.offline:
            # A simulation sends nothing (its notifiers stand in for every channel), and its
            # config may hold deferred secrets' placeholders no channel could be built from.
            return dict(self._extra_notifiers)
        ctx = AdapterContext(
            loaded.config.server.public_url,
            self.http,
            self.clock,
            # The service is made after the notifiers: looked up when a channel reads.
            incident_detail=lambda ref: self.service.detail(ref),
            people=lambda: self._directory.people,
        )
        try:
            out = build_notifiers(loaded.config.adapters, ctx)
        except AdapterBuildError as e:
            raise ConfigError(
                [Problem(str(loaded.path), None, None, f"adapters.{c}", m) for c, m in e.problems]
            ) from None
        out.update(self._extra_notifiers)
        return out

    def http(self) -> aiohttp.ClientSession:
        """The process-wide HTTP client session (created on first use, inside the loop)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30),
                headers={"User-Agent": "tocsin/0.1"},
            )
        return self._http

    async def reload(self) -> None:
        """Load the config file again; on any problem keep the old one and raise ConfigError."""
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(load_config, self.loaded.path, self.env)
                directory = self._make_directory(new)
                notifiers = self._build_notifiers(new)
            except ConfigError as e:
                self._refused(e)
                raise
            except Exception as e:  # unreadable file etc.: still keep the old config
                problem = Problem(str(self.loaded.path), None, None, "", f"reload failed: {e}")
                self._refused(ConfigError(problem))
                raise ConfigError(problem) from e
            self._check_receiver_exposure(new)
            if new.config.store != self.loaded.config.store:
                log.warning("the store section changed; it takes effect only after a restart")
            if new.config.adapters.dispatch != self.loaded.config.adapters.dispatch:
                self._policy = self._make_policy(new.config.adapters.dispatch)
            engine_cfg = new.config.engine
            self.engine.lease, self.engine.poll = engine_cfg.lease, engine_cfg.poll
            self.engine.batch = engine_cfg.batch
            self.loaded, self._directory, self._notifiers = new, directory, notifiers
            if not self.offline:
                self.oncall.configure(new)
            self.metrics.reload_ok.set(1)
            self.metrics.reload_ts.set(time.time())
            await self._arm_heartbeats()
            self.engine.wake()
            log.info("configuration reloaded", extra={"path": str(new.path)})

    async def _arm_heartbeats(self) -> None:
        """Arm heartbeats a reload added; with the store down they are armed at the next one."""
        if self.offline:
            return
        try:
            await self.heartbeats.arm_all()
        except StoreUnavailable as e:
            log.warning("new heartbeats not armed: store unavailable", extra={"error": str(e)})

    def _check_receiver_exposure(self, new: LoadedConfig) -> None:
        """Refuse a reload into an unauthenticated receiver unless we listen on loopback only.

        ``tocsin serve`` binds an insecure receiver to 127.0.0.1 at start; a reload cannot move
        the socket, so it is refused when the socket is reachable from elsewhere (or unknown).
        """
        if not new.config.auth.receiver.insecure or self.loaded.config.auth.receiver.insecure:
            return
        host = self.bound_host
        if host is None or not is_loopback(host):
            refused = ConfigError(
                Problem(
                    str(new.path),
                    None,
                    None,
                    "auth.receiver.insecure",
                    f"refused: the server listens on {host or 'an unknown address'}, not only "
                    "on loopback; an unauthenticated receiver needs a restart on 127.0.0.1",
                )
            )
            self._refused(refused)
            raise refused
        log.warning(
            "auth.receiver.insecure is now true: the receiver accepts unauthenticated requests"
        )

    def _refused(self, e: ConfigError) -> None:
        # Logged here, not by the caller, so SIGHUP and ``POST /-/reload`` say it the same way.
        self.metrics.reload_ok.set(0)
        self.refused_at = self.clock.now()
        # Where, not what: a problem's message may quote a value, and the Status page shows these.
        self.refused_where = tuple(
            f"{p.file}:{p.line or '?'}:{p.column or '?'}: {p.path}" for p in e.problems
        )
        log.error(
            "reload failed; keeping the running config",
            extra={"path": str(self.loaded.path), "problems": [str(p) for p in e.problems]},
        )

    # -- classification ----------------------------------------------------------------------

    def classify(
        self,
        notification: Notification,
        adjust: Callable[[Classification], Classification] | None = None,
    ) -> list[Classified]:
        """Classify every alert of ``notification`` (amended by ``adjust``) and count it."""
        classifier = self.loaded.classifier
        now = self.clock.now()
        out = []
        # One deadline for all the notification's template renders (rules.templates).
        with notification_budget():
            for alert in notification.alerts:
                self.metrics.received(alert.status)
                c = classifier.classify(alert, notification, now)
                if adjust is not None:
                    c = adjust(c)
                self.metrics.classified(c.severity, c.rule)
                if c.unknown_severity is not None:
                    self.metrics.unknown_severity.inc()
                out.append(Classified(alert, c))
        return out


class IncidentPipeline:
    """Classify, then fold into incidents in one transaction; 2xx only after commit."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def submit(
        self,
        notification: Notification,
        adjust: Callable[[Classification], Classification] | None = None,
    ) -> PipelineResult:
        rt = self.runtime
        classified = rt.classify(notification, adjust)
        # A rule's ``heartbeat:`` makes the alert (the Watchdog) a ping, never an incident; one
        # naming a heartbeat no longer configured stays an alert, so it is not lost silently.
        beats = rt.loaded.config.heartbeats
        pings = [c for c in classified if c.verdict.heartbeat in beats]
        rest = [c for c in classified if c.verdict.heartbeat not in beats]
        pinged = sorted({b for c in pings if c.alert.firing and (b := c.verdict.heartbeat)})
        for name in pinged:
            await rt.heartbeats.ping(name)  # or StoreUnavailable
        outcomes = await rt.service.ingest(notification, rest) if rest or not pings else []
        return PipelineResult(
            classifications=[(c.alert.fingerprint, c.verdict) for c in classified],
            incidents=[o.as_dict() for o in outcomes],
            heartbeats=pinged,
        )
