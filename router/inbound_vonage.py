"""Inbound Vonage webhooks: keypresses, call events and texts.

- ``POST /api/v1/phone/vonage/input?row=<outbox id>``: the page call's NCCO ``input`` result
  (JSON: ``dtmf.digits``, ``uuid``). 1 acknowledges, 2 escalates to the next tier, anything
  else asks again, nothing (``dtmf.timed_out``) says goodbye; answered with an NCCO Vonage
  plays to the caller.
- ``POST /api/v1/phone/vonage/event?row=<outbox id>``: the call's event webhook. A call ending
  ``busy``, ``timeout``, ``failed``, ``rejected``, ``unanswered`` or ``cancelled`` tries the
  person's next fallback channel; other events change nothing.
- ``POST /api/v1/phone/vonage/inbound``: the Messages API inbound webhook (set it as the Vonage
  application's Messages inbound URL): a text ``ACK <n>`` or ``1`` acts as a Twilio text does.

Every request must carry Vonage's signed-webhook JWT (``Authorization: Bearer``, HS256 with the
signature secret, ``payload_hash`` = SHA-256 of the body, ``iat`` within the last 5 minutes:
``adapters.phone.vonage.verify_webhook``); otherwise → 401 and nothing changes.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.phone.provider import VONAGE_EVENT, VONAGE_INPUT, VONAGE_SMS
from adapters.phone.vonage import (
    EVENT_PATH,
    FALLBACK_STATUSES,
    INBOUND_PATH,
    INPUT_PATH,
    input_ncco,
    say_ncco,
    verify_webhook,
)
from escalation.engine.service import Delivery
from router.errors import ApiError, Outage, on_store_outage
from router.inbound_phone import keypress, text_ack, unanswered
from router.keys import RUNTIME
from router.receiver import read_body

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["add_vonage_routes"]

log = logging.getLogger("tocsin.inbound.vonage")

_MAX_BODY = 64 * 1024
_NO_KEY = "No key pressed. The alert stays open and will escalate. Goodbye."


def add_vonage_routes(app: web.Application) -> None:
    """Register Vonage's webhook routes (each verifies the signed-webhook JWT)."""
    app.router.add_post(INPUT_PATH, vonage_input)
    app.router.add_post(EVENT_PATH, vonage_event)
    app.router.add_post(INBOUND_PATH, vonage_inbound)
    lost = Outage(page=_keypress_lost, log="vonage keypress could not be recorded", logger=log.name)
    on_store_outage(app, lost, vonage_input)
    # Vonage retries a webhook answered 5xx: nothing is lost.
    retry = Outage(
        detail="retry later", log="vonage webhook could not be recorded", logger=log.name
    )
    on_store_outage(app, retry, vonage_event, vonage_inbound)


def _ncco(actions: list[dict[str, Any]]) -> web.Response:
    return web.json_response(actions)


def _keypress_lost() -> web.Response:
    # The caller is on the line: say so, rather than end the call on a 503.
    return _ncco(say_ncco("Sorry, tocsin could not record that. Please try the API or the web."))


async def _verified(request: web.Request) -> tuple[Runtime, dict[str, Any]]:
    """The runtime and the JSON body, once Vonage's signature over it is proven."""
    rt: Runtime = request.app[RUNTIME]
    phone = rt.loaded.config.adapters.phone
    cfg = phone.vonage if phone is not None else None
    if cfg is None:
        raise ApiError(404, "vonage is not configured", "adapters.phone.vonage is not set")
    raw = await read_body(request, _MAX_BODY)
    secret = cfg.signature_secret.get_secret_value()
    now = rt.clock.now().timestamp()
    if not verify_webhook(secret, request.headers.get("Authorization"), raw, now):
        log.warning("rejected a vonage webhook with a missing, wrong or stale signature")
        raise ApiError(
            401,
            "unauthorized",
            "the signed-webhook JWT is missing, does not match, or is too old",
            request.path,
        )
    try:
        body: Any = json.loads(raw) if raw else {}
    except ValueError:
        raise ApiError(400, "bad request", "the body is not JSON", request.path) from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad request", "the body is not a JSON object", request.path)
    return rt, body


async def vonage_input(request: web.Request) -> web.Response:
    """The digit pressed on a page call: 1 acknowledges, 2 escalates, anything else asks again."""
    rt, body = await _verified(request)
    dtmf = body.get("dtmf") if isinstance(body.get("dtmf"), dict) else {}
    digits = str((dtmf or {}).get("digits") or "").strip()
    if not digits:
        # The input timed out (Twilio's <Gather> falls through to the same words).
        return _ncco(say_ncco(_NO_KEY))
    call = str(body.get("uuid") or "")
    delivery = Delivery(VONAGE_INPUT, f"{call}:{digits}") if call else None
    said, again = await keypress(rt, request.query.getall("row", []), digits, delivery)
    if again:
        url = rt.loaded.config.server.public_url.rstrip("/") + request.raw_path
        return _ncco(input_ncco(said, url, loop=1))
    return _ncco(say_ncco(said))


async def vonage_event(request: web.Request) -> web.Response:
    """A call event: a final status nobody heard → the person's next channel."""
    rt, body = await _verified(request)
    status = str(body.get("status") or "")
    if status in FALLBACK_STATUSES:
        call = str(body.get("uuid") or "")
        delivery = Delivery(VONAGE_EVENT, f"{call}:{status}") if call else None
        await unanswered(rt, request.query.getall("row", []), status, delivery)
    return web.Response(status=204)


async def vonage_inbound(request: web.Request) -> web.Response:
    """A text to the Vonage number (Messages API inbound): ``ACK <n>`` or ``1`` acknowledges."""
    rt, body = await _verified(request)
    if body.get("channel", "sms") != "sms":
        return web.Response(status=204)
    sender = str(body.get("from") or "")
    sender = sender if sender.startswith("+") else "+" + sender  # Vonage drops the "+"
    message = str(body.get("message_uuid") or "")
    delivery = Delivery(VONAGE_SMS, message) if message else None
    answer = await text_ack(rt, sender, str(body.get("text") or ""), delivery)
    return web.json_response({"reply": answer})
