"""``POST /api/v1/pagerduty/webhook``: signed PagerDuty v3 webhooks acting on tocsin incidents.

Order matters: the raw bytes are read (size-limited) and the ``X-PagerDuty-Signature`` checked
before anything is parsed or stored. A delivery is remembered by ``X-Webhook-Id`` only after
its action was applied, so a delivery that failed (503) is retried by PagerDuty and acts then.

Status codes (PagerDuty retries 5xx, 429 and timeouts; it drops any other 4xx):

- 401: no ``X-PagerDuty-Signature`` header at all;
- 403: a header with no ``v1=`` signature matching any configured secret (or no secret is
  configured, so nothing can be verified); nothing changes;
- 400: correctly signed but not a JSON webhook body; 413: over 256 KiB (PagerDuty drops such
  payloads itself);
- 503: the store failed: PagerDuty retries;
- 200 for everything else, including events tocsin ignores (``pagey.ping``, other event types,
  incidents tocsin did not create) and actions that no longer apply (already acknowledged).

Incidents are matched by ``data.incident_key``, which is the Events API ``dedup_key`` tocsin
sent (the tocsin incident id). ``incident.annotated`` carries only PagerDuty's own incident id,
so the first event seen with both ids records an alias ``pagerduty-incident:<id>`` for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from escalation.engine.service import IncidentNotFound
from escalation.incidents.actions import Action, IllegalTransition
from escalation.incidents.model import Changes, IncidentRecord
from escalation.store.base import Store, StoreError
from router.errors import ApiError
from router.keys import RUNTIME
from router.receiver import clean_text, read_body

__all__ = [
    "EVENT_ACTIONS",
    "MAX_WEBHOOK_BYTES",
    "WEBHOOK_PATH",
    "add_pagerduty_routes",
    "signature_valid",
]

log = logging.getLogger("tocsin.pagerduty.webhook")

WEBHOOK_PATH = "/api/v1/pagerduty/webhook"
MAX_WEBHOOK_BYTES = 256 * 1024  # PagerDuty drops larger payloads rather than sending them
SOURCE = "pagerduty"
ALIAS_PREFIX = "pagerduty-incident:"
_MAX_NOTE = 4000
_MAX_ACTOR = 200

EVENT_ACTIONS: dict[str, Action] = {
    "incident.acknowledged": Action.ACK,
    "incident.resolved": Action.RESOLVE,
    "incident.reopened": Action.REOPEN,
    "incident.unacknowledged": Action.REOPEN,
    "incident.annotated": Action.NOTE,
}


class _KeyedLocks:
    """One asyncio.Lock per webhook id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        if not key:
            yield
            return
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_LOCKS = web.AppKey("pagerduty_webhook_locks", _KeyedLocks)


def signature_valid(body: bytes, header: str, secrets: Sequence[str]) -> bool:
    """True if any ``v1=`` entry of ``header`` is HMAC-SHA256(secret, body) for any secret.

    Entries of other versions are ignored. Every candidate is compared (constant time each),
    so timing does not tell which secret or entry matched.
    """
    candidates = [
        part.strip()[3:].strip().lower()
        for part in header.split(",")
        if part.strip().startswith("v1=")
    ]
    ok = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        for c in candidates:
            ok |= hmac.compare_digest(expected.encode("ascii"), c.encode("ascii", "replace"))
    return ok


class _Rollback(Exception):
    """Ends a transaction used only to read (the store has no read-only seen check)."""


async def _already_seen(store: Store, webhook_id: str, now: Any) -> bool:
    # seen_delivery() marks as it checks; marking must wait until the action is applied,
    # so this check runs in a transaction that is rolled back.
    seen = False
    try:
        async with store.transaction() as tx:
            seen = await tx.seen_delivery(SOURCE, webhook_id, now)
            raise _Rollback
    except _Rollback:
        pass
    return seen


async def _mark_seen(store: Store, webhook_id: str, now: Any) -> None:
    async with store.transaction() as tx:
        await tx.seen_delivery(SOURCE, webhook_id, now)


@dataclass(frozen=True)
class _Event:
    event_type: str
    resource_type: str
    data: dict[str, Any]
    actor: str
    event_id: str


def _parse(body: bytes) -> _Event:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ApiError(400, "invalid JSON", "the webhook body is not JSON") from None
    event = doc.get("event") if isinstance(doc, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise ApiError(400, "invalid payload", 'expected {"event": {"event_type": ...}}')
    data = event.get("data")
    agent = event.get("agent")
    summary = _str(agent.get("summary")) if isinstance(agent, dict) else ""
    actor = summary.strip()[:_MAX_ACTOR] or SOURCE
    resource_type = event.get("resource_type")
    return _Event(
        event_type=clean_text(event["event_type"]),
        resource_type=_str(resource_type) if resource_type else "",
        data=data if isinstance(data, dict) else {},
        actor=actor,
        event_id=_str(event.get("id")),
    )


def _str(v: Any) -> str:
    # JSON strings may hold lone surrogates (\udc80 escapes): unstorable, so replaced.
    return clean_text(v) if isinstance(v, str) else ""


async def _find_incident(store: Store, ev: _Event) -> tuple[IncidentRecord | None, str]:
    """The tocsin incident the event is about, and PagerDuty's own id for that incident."""
    data = ev.data
    if data.get("type") == "incident":
        pd_id = _str(data.get("id"))
        key = _str(data.get("incident_key"))
        # By id only: an arbitrary incident_key must never match an incident number or key.
        inc = await store.get_incident(key) if key else None
        return inc, pd_id
    ref = data.get("incident")
    pd_id = _str(ref.get("id")) if isinstance(ref, dict) else ""
    key = _str(ref.get("incident_key")) if isinstance(ref, dict) else ""
    if key:
        return await store.get_incident(key), pd_id
    if pd_id:
        alias = await store.find_incident(ALIAS_PREFIX + pd_id)
        return alias, pd_id
    return None, pd_id


async def _remember_alias(store: Store, pd_id: str, inc: IncidentRecord) -> None:
    alias = ALIAS_PREFIX + pd_id
    known = await store.find_incident(alias)
    if known is not None and known.id == inc.id:
        return
    async with store.transaction() as tx:
        await tx.apply(Changes(key_aliases=[(alias, inc.id)]))


def _reply(outcome: str, ev: _Event | None = None, incident: str | None = None) -> web.Response:
    body: dict[str, Any] = {"status": outcome}
    if ev is not None:
        body["event_type"] = ev.event_type
    if incident is not None:
        body["incident"] = incident
    return web.json_response(body, status=200)


async def receive_pagerduty_webhook(request: web.Request) -> web.Response:
    """Verify, deduplicate and apply one PagerDuty v3 webhook delivery."""

    rt = request.app[RUNTIME]
    cfg = rt.loaded.config.adapters.pagerduty
    secrets = [s.get_secret_value() for s in cfg.webhook_secrets] if cfg is not None else []
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    header = request.headers.get("X-PagerDuty-Signature", "").strip()
    if not header:
        raise ApiError(401, "signature required", "the X-PagerDuty-Signature header is missing")
    if not secrets:
        raise ApiError(
            403,
            "signature not verified",
            "no PagerDuty webhook secret is configured (adapters.pagerduty.webhook_secrets)",
        )
    if not signature_valid(body, header, secrets):
        log.warning("pagerduty webhook with no valid signature", extra={"path": request.path})
        raise ApiError(403, "signature not verified", "no v1 signature matches a configured secret")
    ev = _parse(body)
    header_id = clean_text(request.headers.get("X-Webhook-Id", "").strip())
    webhook_id = header_id[:200] or ev.event_id[:200]
    if ev.resource_type != "incident" or not ev.event_type.startswith("incident."):
        log.info("pagerduty webhook ignored", extra={"event_type": ev.event_type})
        return _reply("ignored", ev)
    action = EVENT_ACTIONS.get(ev.event_type)
    if action is None:
        # Nothing to do, but incident.triggered (PagerDuty's first word on the incident tocsin
        # just created) tells which PagerDuty id is ours, for later notes.
        return await _observe(rt, ev)
    async with request.app[_LOCKS].hold(webhook_id):
        # The same delivery twice at once: the second waits, then finds it already seen.
        return await _apply(rt, ev, action, webhook_id)


async def _observe(rt: Any, ev: _Event) -> web.Response:
    try:
        inc, pd_id = await _find_incident(rt.store, ev)
        if inc is not None and pd_id and ev.data.get("type") == "incident":
            await _remember_alias(rt.store, pd_id, inc)
    except StoreError as e:
        log.error("store unavailable; PagerDuty will retry the webhook", extra={"error": str(e)})
        raise ApiError(503, "store unavailable", "the webhook was not applied; retry") from None
    log.info("pagerduty webhook ignored", extra={"event_type": ev.event_type})
    return _reply("ignored", ev, inc.id if inc is not None else None)


async def _apply(rt: Any, ev: _Event, action: Action, webhook_id: str) -> web.Response:
    store: Store = rt.store
    now = rt.clock.now()
    try:
        if webhook_id and await _already_seen(store, webhook_id, now):
            return _reply("duplicate", ev)
        inc, pd_id = await _find_incident(store, ev)
        if inc is None:
            log.info(
                "pagerduty webhook for an incident tocsin does not know",
                extra={"event_type": ev.event_type, "pagerduty_incident": pd_id},
            )
            outcome, inc_id = "ignored", None
        else:
            if pd_id and ev.data.get("type") == "incident":
                await _remember_alias(store, pd_id, inc)
            note = ""
            if action == Action.NOTE:
                note = _str(ev.data.get("content")).strip()[:_MAX_NOTE] or "(empty note)"
            try:
                await rt.service.act(inc.id, action, actor=ev.actor, source=SOURCE, note=note)
                outcome = "applied"
            except IllegalTransition:
                outcome = "no change"  # e.g. acknowledged in tocsin before PagerDuty told us
            except IncidentNotFound:
                outcome = "ignored"
            inc_id = inc.id
            log.info(
                "pagerduty webhook",
                extra={
                    "event_type": ev.event_type,
                    "incident": inc.id,
                    "outcome": outcome,
                    "actor": ev.actor,
                },
            )
    except StoreError as e:
        log.error("store unavailable; PagerDuty will retry the webhook", extra={"error": str(e)})
        raise ApiError(503, "store unavailable", "the webhook was not applied; retry") from None
    if webhook_id:
        try:
            await _mark_seen(store, webhook_id, now)
        except StoreError as e:
            # Applied but not remembered: a retry acts again, which an ack/resolve shrugs off.
            log.warning("could not remember the webhook id", extra={"error": str(e)})
    return _reply(outcome, ev, inc_id)


def add_pagerduty_routes(app: web.Application) -> None:
    """Register ``POST /api/v1/pagerduty/webhook``."""
    app[_LOCKS] = _KeyedLocks()
    app.router.add_post(WEBHOOK_PATH, receive_pagerduty_webhook)
