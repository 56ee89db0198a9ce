"""Inbound Twilio callbacks: keypresses, call outcomes and SMS replies.

- ``POST /api/v1/phone/twilio/gather?row=<outbox id>``: the page call's ``<Gather>`` action.
  ``Digits=1`` acknowledges (actor: the person called, source ``phone``), ``2`` escalates to
  the next tier now, anything else asks again. Answered with TwiML Twilio plays to the caller.
- ``POST /api/v1/phone/twilio/status?row=<outbox id>``: the call's status callback. A call
  ending ``no-answer``, ``busy``, ``failed`` or ``canceled`` tries the person's next fallback
  channel (a timeline event either way); ``completed`` changes nothing.
- ``POST /api/v1/phone/twilio/sms``: a text to the Twilio number (configure it as the number's
  messaging webhook). ``ACK <incident number>`` from a configured person's phone acknowledges
  that incident if that person was paged for it (by any channel; others are refused);
  ``1`` (or ``ACK``) the latest page that person got by text or call (see
  ``adapters.phone.codes``). Texts from unknown numbers are ignored.

Every request must carry a valid ``X-Twilio-Signature`` computed over the PUBLIC URL Twilio
requested (``server.public_url`` + path + query as received) and the POST parameters;
otherwise → 403 and nothing changes. Several rows in ``row`` mean a bundled call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.config import PhoneConfig
from adapters.phone.codes import SmsReply, parse_reply
from adapters.phone.provider import TWILIO_GATHER, TWILIO_SMS, TWILIO_STATUS, normalize_number
from adapters.phone.signature import verify_signature
from adapters.phone.twilio import GATHER_PATH, SMS_PATH, STATUS_PATH, needs_fallback
from adapters.phone.twiml import empty_twiml, gather_twiml, message_twiml, say_twiml
from escalation.engine.service import Acted, ActOn, Delivery, Outcome
from escalation.incidents.actions import Action
from router.errors import ApiError, Outage, on_store_outage
from router.keys import RUNTIME
from router.receiver import read_form

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["add_phone_routes", "keypress", "text_ack", "unanswered"]

log = logging.getLogger("tocsin.inbound.phone")

_TEXTED = ("sms", "phone")  # a reply of 1 acknowledges the latest page sent by text or call
_ANSWERS = {
    Outcome.DONE: "#{} acknowledged.",
    Outcome.ILLEGAL: "#{} is not waiting for an acknowledgement.",
    Outcome.MISSING: "no incident #{}.",
}
_MENU = "Press 1 to acknowledge. Press 2 to escalate to the next tier now."
_BYE = "Goodbye."


def add_phone_routes(app: web.Application) -> None:
    """Register Twilio's callback routes (each verifies ``X-Twilio-Signature``)."""
    app.router.add_post(GATHER_PATH, gather)
    app.router.add_post(STATUS_PATH, call_status)
    app.router.add_post(SMS_PATH, sms_reply)
    lost = Outage(page=_keypress_lost, log="phone keypress could not be recorded", logger=log.name)
    on_store_outage(app, lost, gather)
    # Twilio retries a failed callback: nothing is lost.
    retry = Outage(
        detail="retry later",
        log="phone callback could not be recorded",
        logger=log.name,
        with_path=True,
    )
    on_store_outage(app, retry, call_status, sms_reply)


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def _twiml(doc: str) -> web.Response:
    return web.Response(text=doc, content_type="text/xml")


async def _verified(request: web.Request) -> tuple[Runtime, dict[str, str]]:
    """The runtime and the POST parameters (first value of each), once the signature is proven."""
    rt = _runtime(request)
    cfg: PhoneConfig | None = rt.loaded.config.adapters.phone
    if cfg is None:
        raise ApiError(404, "phone is not configured", "adapters.phone is not set", request.path)
    raw = await read_form(request)
    form: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for k, v in raw.items():
        if not isinstance(v, str):
            raise ApiError(400, "bad request", "file uploads are not accepted", request.path)
        pairs.append((k, v))
        form.setdefault(k, v)
    # Twilio signs the URL it requested: the public URL, with the query exactly as sent.
    url = rt.loaded.config.server.public_url.rstrip("/") + request.raw_path
    signature = request.headers.get("X-Twilio-Signature")
    token = cfg.auth_token.get_secret_value() if cfg.auth_token is not None else ""
    if not verify_signature(token, url, pairs, signature):  # no token: nothing verifies
        log.warning(
            "rejected a phone callback with a missing or wrong signature",
            extra={"path": request.path, "signed": signature is not None},
        )
        raise ApiError(
            403, "forbidden", "X-Twilio-Signature is missing or does not match", request.path
        )
    return rt, form


def _number(acted: Acted) -> str:
    """The incident number to speak: the incident's, or what the caller named."""
    if acted.incident is not None:
        return str(acted.incident.number)
    return acted.ref.lstrip("#")


async def gather(request: web.Request) -> web.Response:
    """The keypress of a page call: 1 acknowledges, 2 escalates, anything else asks again."""
    rt, form = await _verified(request)
    digits = form.get("Digits", "").strip()
    call_sid = form.get("CallSid", "")
    delivery = Delivery(TWILIO_GATHER, f"{call_sid}:{digits}") if call_sid else None
    said, again = await keypress(rt, request.query.getall("row", []), digits, delivery)
    if again:
        url = rt.loaded.config.server.public_url.rstrip("/") + request.raw_path
        return _twiml(gather_twiml(said, url, _BYE))
    return _twiml(say_twiml(said))


async def keypress(
    rt: Runtime, refs: list[str], digits: str, delivery: Delivery | None
) -> tuple[str, bool]:
    """Act on a key pressed on the page call about outbox rows ``refs`` (any provider's):
    what to say, and whether to ask again (an unknown key)."""
    rows = await rt.service.outbox_rows(refs)
    if not rows:
        return "This alert is no longer known to tocsin. Goodbye.", False
    if digits not in ("1", "2"):
        return f"Sorry, {digits or 'nothing'} is not an option. {_MENU}", True
    action = Action.ACK if digits == "1" else Action.ESCALATE
    targets = {
        r.incident_id: ActOn(r.incident_id, r.person, f"pressed {digits} on the {r.channel} call")
        for r in reversed(rows)  # the first row of an incident names who pressed
    }
    acted = await rt.service.act_once(
        delivery,
        [targets[i] for i in dict.fromkeys(r.incident_id for r in rows)],
        action,
        source="phone",
    )
    if acted is None:
        return "Your choice was already recorded. Goodbye.", False
    said = [_spoken(action, a.outcome, _number(a)) for a in acted]
    log.info("phone keypress", extra={"digits": digits, "rows": refs})
    return " ".join(said) + " " + _BYE, False


def _keypress_lost() -> web.Response:
    # The caller is on the line: say so, rather than end the call on a 503.
    return _twiml(say_twiml("Sorry, tocsin could not record that. Please try the API or the web."))


def _spoken(action: Action, outcome: Outcome, number: str) -> str:
    if outcome == Outcome.MISSING:
        return f"Incident {number} no longer exists."
    if action == Action.ACK:
        return (
            f"Incident {number} acknowledged. Thank you."
            if outcome == Outcome.DONE
            else f"Incident {number} is no longer waiting for an acknowledgement."
        )
    return (
        f"Incident {number} escalated to the next tier."
        if outcome == Outcome.DONE
        else f"Incident {number} has no further tier to escalate to."
    )


async def call_status(request: web.Request) -> web.Response:
    """A call's final status: no-answer / busy / failed / canceled → the person's next channel."""
    rt, form = await _verified(request)
    status = form.get("CallStatus", "")
    if needs_fallback(status):
        call_sid = form.get("CallSid", "")
        delivery = Delivery(TWILIO_STATUS, f"{call_sid}:{status}") if call_sid else None
        await unanswered(rt, request.query.getall("row", []), status, delivery)
    return _twiml(empty_twiml())  # completed (or progress events): the call did its job


async def unanswered(rt: Runtime, refs: list[str], status: str, delivery: Delivery | None) -> None:
    """A page call about ``refs`` ended ``status`` unheard: the person's next channel."""
    reason = f"call ended {status}"
    nxt = await rt.service.fallback_once(delivery, refs, reason, source="phone")
    for ref, row in zip(refs, nxt or [], strict=False):
        log.info(
            "phone call not answered",
            extra={"status": status, "outbox": ref, "next": row.id if row else None},
        )


def _person_by_phone(rt: Runtime, number: str) -> str | None:
    wanted = normalize_number(number)
    if not wanted:
        return None
    for name, person in rt.loaded.config.people.items():
        if person.phone and normalize_number(person.phone) == wanted:
            return name
    return None


async def _responder(rt: Runtime, person: str) -> bool:
    """True when ``person`` is behind a role of ``adapters.phone.sms_responders`` now.

    The role resolves as a step's target does (the engine's directory, with the overrides
    made at run time): a ``schedule:`` entry is whoever is on call in it now, a ``team:``
    entry its on-call schedule or its members.
    """
    phone = rt.loaded.config.adapters.phone
    roles = phone.sms_responders if phone is not None else []
    if not roles:
        return False
    now = rt.clock.now()
    directory = await rt.schedules.live(now)
    for role in roles:
        people, _ = directory.resolve(f"role:{role}", now)
        if any(r.person == person and not r.service for r in people):
            return True
    return False


async def _paged_for(rt: Runtime, person: str, code: str) -> bool:
    """True when ``person`` was a target of any notification of incident ``#code``, or is
    behind a role of ``adapters.phone.sms_responders`` now.

    (Outbox rows are never removed, so nothing committed later can make this answer wrong.)
    """
    if await _responder(rt, person):
        return True
    detail = await rt.service.detail(f"#{code}")
    return detail is None or any(r.person == person for r in detail.outbox)


async def sms_reply(request: web.Request) -> web.Response:
    """A text to the Twilio number: ``ACK <code>`` or ``1`` from a known person acknowledges."""
    rt, form = await _verified(request)
    message_sid = form.get("MessageSid", "") or form.get("SmsSid", "")
    delivery = Delivery(TWILIO_SMS, message_sid) if message_sid else None
    answer = await text_ack(rt, form.get("From", ""), form.get("Body", ""), delivery)
    return _twiml(message_twiml(answer))


async def text_ack(rt: Runtime, sender: str, body: str, delivery: Delivery | None) -> str | None:
    """Act on a text from ``sender`` (any provider's): the reply to send back, or None.

    ``ACK <code>`` or ``1`` from a configured person's number acknowledges; ``delivery`` makes
    a provider's retried forward act once.
    """
    person = _person_by_phone(rt, sender)
    if person is None:
        log.info("ignored a text from a number no person has")
        return None
    reply: SmsReply | None = parse_reply(body)
    if reply is None:
        return "tocsin: reply ACK <incident number>, or 1, to acknowledge."
    if reply.code and not await _paged_for(rt, person, reply.code):
        # Incident numbers are sequential: a known number must not acknowledge any of them.
        log.warning(
            "refused a text acknowledging an incident not paged to its sender",
            extra={"person": person, "incident_number": reply.code},
        )
        return f"tocsin: #{reply.code} was not paged to you."
    refs = [f"#{reply.code}"] if reply.code else await rt.service.latest_page(person, _TEXTED)
    acted = await rt.service.act_once(
        delivery,
        [ActOn(ref, person, "replied by text") for ref in refs],
        Action.ACK,
        source="sms",
    )
    if acted is None:
        return None
    if not refs:
        return "tocsin: no open incident was paged to you."
    answers = [_ANSWERS[a.outcome].format(_number(a)) for a in acted]
    log.info("sms reply", extra={"person": person, "incidents": refs})
    return "tocsin: " + " ".join(answers)
