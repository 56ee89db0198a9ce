"""Pushover's acknowledgement callback: ``POST /api/v1/pushover/callback?token=...``.

When someone acknowledges an emergency message in the Pushover app, Pushover POSTs a form
(``receipt``, ``acknowledged=1``, ``acknowledged_at``, ``acknowledged_by``,
``acknowledged_by_device``) to the message's ``callback`` URL. Pushover does not sign it, so the
URL carries tocsin's own signed token (channel ``pushover``: the incident, the person paged, the
escalation run, an expiry), and the receipt must be one Pushover gave tocsin for that person's
page of that incident. Then the incident is acknowledged as that person with source
``pushover``, once per receipt (a repeated callback is a replay and changes nothing); a missing,
forged or expired token, or a receipt that is not the page's, answers 403, and a token for an
earlier run changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from adapters import pushover
from adapters.email.links import BadLink
from adapters.pushover.notifier import CALLBACK_PATH, RECEIPT, receipt_of
from escalation.engine.service import ActOn, Delivery, Outcome
from escalation.incidents.actions import Action
from router.errors import ApiError, Outage, on_store_outage
from router.keys import RUNTIME
from router.receiver import clean_text, read_form

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["add_pushover_routes"]

log = logging.getLogger("tocsin.pushover")


def _done(status: str, detail: str = "") -> web.Response:
    return web.json_response({"status": status, "detail": detail})


async def pushover_callback(request: web.Request) -> web.Response:
    """Acknowledge the incident the signed token names, as its person."""
    rt: Runtime = request.app[RUNTIME]
    section = rt.loaded.config.adapters.pushover
    if section is None:
        raise ApiError(404, "pushover is not configured", "adapters.pushover is not set")
    try:
        signer = pushover.callback_signer(section, rt.loaded.config.server.public_url)
    except ValueError:
        raise ApiError(404, "pushover is not configured", "see tocsin check") from None
    try:
        claims = signer.verify(request.query.get("token", ""), "ack", rt.clock.now())
    except (BadLink, OverflowError, ValueError, OSError) as e:
        reason = e.reason if isinstance(e, BadLink) else "malformed"
        log.warning("pushover callback rejected", extra={"reason": reason})
        raise ApiError(403, "forbidden", "the callback token is not valid") from None
    form = await read_form(request)
    receipt, acked = form.get("receipt"), form.get("acknowledged")
    if not isinstance(receipt, str) or not RECEIPT.match(receipt) or acked != "1":
        raise ApiError(400, "bad request", "expected Pushover's receipt and acknowledged=1")
    person, incident = clean_text(claims.person), clean_text(claims.incident_id)
    # The token is the credential; the receipt must still be one of this page's, so a leaked
    # callback URL cannot be replayed with receipts of its own making.
    detail = await rt.service.detail(incident)
    receipts = {
        receipt_of(o.provider_id)
        for o in (detail.outbox if detail is not None else [])
        if o.channel == "pushover" and o.person == person
    }
    if receipt not in receipts:
        log.warning("pushover callback rejected", extra={"reason": "not this page's receipt"})
        raise ApiError(403, "forbidden", "the receipt is not one of this page's")
    outcomes = await rt.service.act_once(
        Delivery("pushover", receipt),
        [ActOn(incident, person, "acknowledged in the Pushover app", claims.epoch)],
        Action.ACK,
        source="pushover",
    )
    if outcomes is None:
        return _done("replay", "this receipt's acknowledgement was already taken")
    [acted] = outcomes
    if acted.outcome != Outcome.DONE:
        # Already acknowledged, resolved, or a new run began: nothing for this receipt to do.
        return _done("unchanged", acted.outcome.value)
    log.info("incident acknowledged in Pushover", extra={"incident": incident, "person": person})
    return _done("acknowledged")


def add_pushover_routes(app: web.Application) -> None:
    """Register ``POST /api/v1/pushover/callback``."""
    app.router.add_post(CALLBACK_PATH, pushover_callback)
    # Pushover may not call again: an outage answers 503 (nothing changed) all the same.
    on_store_outage(app, Outage(), pushover_callback)
