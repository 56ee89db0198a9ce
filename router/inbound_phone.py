"""Inbound Twilio callbacks: keypresses, call outcomes and SMS replies.

- ``POST /api/v1/phone/twilio/gather?row=<outbox id>``: the page call's ``<Gather>`` action.
  ``Digits=1`` acknowledges (actor: the person called, source ``phone``), ``2`` escalates to
  the next tier now, anything else asks again. Answered with TwiML Twilio plays to the caller.
- ``POST /api/v1/phone/twilio/status?row=<outbox id>``: the call's status callback. A call
  ending ``no-answer``, ``busy``, ``failed`` or ``canceled`` tries the person's next fallback
  channel (a timeline event either way); ``completed`` changes nothing.
- ``POST /api/v1/phone/twilio/sms``: a text to the Twilio number (configure it as the number's
  messaging webhook). ``ACK <incident number>`` from a configured person's phone acknowledges
  that incident; ``1`` (or ``ACK``) the latest page that person got by text or call (see
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
from adapters.phone.provider import normalize_number
from adapters.phone.signature import verify_signature
from adapters.phone.twilio import GATHER_PATH, SMS_PATH, STATUS_PATH, needs_fallback
from adapters.phone.twiml import empty_twiml, gather_twiml, message_twiml, say_twiml
from escalation.engine.service import IncidentNotFound
from escalation.incidents.actions import Action, IllegalTransition
from escalation.incidents.model import OutboxRecord, OutboxState, Status
from escalation.store.base import IncidentFilter, StoreError
from router.errors import ApiError
from router.keys import RUNTIME
from router.receiver import read_form

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["add_phone_routes"]

log = logging.getLogger("tocsin.inbound.phone")

_MENU = "Press 1 to acknowledge. Press 2 to escalate to the next tier now."
_BYE = "Goodbye."


def add_phone_routes(app: web.Application) -> None:
    """Register Twilio's callback routes (each verifies ``X-Twilio-Signature``)."""
    app.router.add_post(GATHER_PATH, gather)
    app.router.add_post(STATUS_PATH, call_status)
    app.router.add_post(SMS_PATH, sms_reply)


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
    if not verify_signature(cfg.auth_token.get_secret_value(), url, pairs, signature):
        log.warning(
            "rejected a phone callback with a missing or wrong signature",
            extra={"path": request.path, "signed": signature is not None},
        )
        raise ApiError(
            403, "forbidden", "X-Twilio-Signature is missing or does not match", request.path
        )
    return rt, form


async def _seen(rt: Runtime, source: str, delivery_id: str) -> bool:
    async with rt.store.transaction() as tx:
        return await tx.seen_delivery(source, delivery_id, rt.clock.now())


async def _rows(rt: Runtime, refs: list[str]) -> list[OutboxRecord]:
    """The outbox rows named by ``row`` query values (ids start with their incident id)."""
    out: list[OutboxRecord] = []
    by_incident: dict[str, dict[str, OutboxRecord]] = {}
    for ref in refs:
        incident_id = ref.split(":", 1)[0]
        if incident_id not in by_incident:
            async with rt.store.transaction() as tx:
                by_incident[incident_id] = {r.id: r for r in await tx.outbox_of(incident_id)}
        row = by_incident[incident_id].get(ref)
        if row is not None:
            out.append(row)
    return out


async def _act(
    rt: Runtime, incident_ref: str, action: Action, actor: str, source: str, note: str
) -> tuple[str, str]:
    """Perform ``action``; (outcome, incident number) with outcome done | illegal | missing."""
    try:
        inc = await rt.service.act(incident_ref, action, actor=actor, source=source, note=note)
    except IncidentNotFound:
        return "missing", incident_ref.lstrip("#")
    except IllegalTransition:
        found = await rt.store.find_incident(incident_ref)
        return "illegal", str(found.number) if found else incident_ref
    return "done", str(inc.number)


async def gather(request: web.Request) -> web.Response:
    """The keypress of a page call: 1 acknowledges, 2 escalates, anything else asks again."""
    rt, form = await _verified(request)
    digits = form.get("Digits", "").strip()
    refs = request.query.getall("row", [])
    try:
        rows = await _rows(rt, refs)
        if not rows:
            return _twiml(say_twiml("This alert is no longer known to tocsin. Goodbye."))
        if digits not in ("1", "2"):
            url = rt.loaded.config.server.public_url.rstrip("/") + request.raw_path
            return _twiml(
                gather_twiml(f"Sorry, {digits or 'nothing'} is not an option. {_MENU}", url, _BYE)
            )
        call_sid = form.get("CallSid", "")
        if call_sid and await _seen(rt, "twilio-gather", f"{call_sid}:{digits}"):
            return _twiml(say_twiml("Your choice was already recorded. Goodbye."))
        action = Action.ACK if digits == "1" else Action.ESCALATE
        said: list[str] = []
        done_incidents: set[str] = set()
        for row in rows:
            if row.incident_id in done_incidents:
                continue
            done_incidents.add(row.incident_id)
            note = f"pressed {digits} on the {row.channel} call"
            outcome, number = await _act(rt, row.incident_id, action, row.person, "phone", note)
            said.append(_spoken(action, outcome, number))
    except StoreError as e:
        log.error("phone keypress could not be recorded", extra={"error": str(e)})
        return _twiml(
            say_twiml("Sorry, tocsin could not record that. Please try the API or the web.")
        )
    log.info("phone keypress", extra={"digits": digits, "rows": refs})
    return _twiml(say_twiml(" ".join(said) + " " + _BYE))


def _spoken(action: Action, outcome: str, number: str) -> str:
    if outcome == "missing":
        return f"Incident {number} no longer exists."
    if action == Action.ACK:
        return (
            f"Incident {number} acknowledged. Thank you."
            if outcome == "done"
            else f"Incident {number} is no longer waiting for an acknowledgement."
        )
    return (
        f"Incident {number} escalated to the next tier."
        if outcome == "done"
        else f"Incident {number} has no further tier to escalate to."
    )


async def call_status(request: web.Request) -> web.Response:
    """A call's final status: no-answer / busy / failed / canceled → the person's next channel."""
    rt, form = await _verified(request)
    status = form.get("CallStatus", "")
    refs = request.query.getall("row", [])
    if not needs_fallback(status):
        return _twiml(empty_twiml())  # completed (or progress events): the call did its job
    call_sid = form.get("CallSid", "")
    try:
        if call_sid and await _seen(rt, "twilio-status", f"{call_sid}:{status}"):
            return _twiml(empty_twiml())
        for ref in refs:
            nxt = await rt.service.fallback(ref, f"call ended {status}", source="phone")
            log.info(
                "phone call not answered",
                extra={"status": status, "outbox": ref, "next": nxt.id if nxt else None},
            )
    except StoreError as e:
        log.error("phone callback could not be recorded", extra={"error": str(e)})
        raise ApiError(503, "store unavailable", "retry later", request.path) from None
    return _twiml(empty_twiml())


def _person_by_phone(rt: Runtime, number: str) -> str | None:
    wanted = normalize_number(number)
    if not wanted:
        return None
    for name, person in rt.loaded.config.people.items():
        if person.phone and normalize_number(person.phone) == wanted:
            return name
    return None


async def _latest_paged(rt: Runtime, person: str) -> list[str]:
    """Triggered incidents of the latest page that reached ``person`` by text or call.

    Several when that page was a bundle (its rows share the send time).
    """
    latest = None
    chosen: list[str] = []
    incidents = await rt.store.list_incidents(
        IncidentFilter(status=(Status.TRIGGERED.value,), limit=500)
    )
    for inc in incidents:
        async with rt.store.transaction() as tx:
            rows = await tx.outbox_of(inc.id)
        for r in rows:
            if (
                r.person != person
                or r.channel not in ("sms", "phone")
                or r.kind != "page"
                or r.sent_at is None
                or r.state not in (OutboxState.SENT, OutboxState.UNKNOWN)
            ):
                continue
            if latest is None or r.sent_at > latest:
                latest, chosen = r.sent_at, [inc.id]
            elif r.sent_at == latest and inc.id not in chosen:
                chosen.append(inc.id)
    return chosen


async def sms_reply(request: web.Request) -> web.Response:
    """A text to the Twilio number: ``ACK <code>`` or ``1`` from a known person acknowledges."""
    rt, form = await _verified(request)
    person = _person_by_phone(rt, form.get("From", ""))
    if person is None:
        log.info("ignored a text from a number no person has")
        return _twiml(message_twiml(None))
    reply: SmsReply | None = parse_reply(form.get("Body", ""))
    if reply is None:
        return _twiml(message_twiml("tocsin: reply ACK <incident number>, or 1, to acknowledge."))
    message_sid = form.get("MessageSid", "") or form.get("SmsSid", "")
    try:
        if message_sid and await _seen(rt, "twilio-sms", message_sid):
            return _twiml(message_twiml(None))
        refs = [f"#{reply.code}"] if reply.code else await _latest_paged(rt, person)
        if not refs:
            return _twiml(message_twiml("tocsin: no open incident was paged to you."))
        answers = []
        for ref in refs:
            outcome, number = await _act(rt, ref, Action.ACK, person, "sms", "replied by text")
            answers.append(
                {
                    "done": f"#{number} acknowledged.",
                    "illegal": f"#{number} is not waiting for an acknowledgement.",
                    "missing": f"no incident #{number}.",
                }[outcome]
            )
    except StoreError as e:
        log.error("phone callback could not be recorded", extra={"error": str(e)})
        raise ApiError(503, "store unavailable", "retry later", request.path) from None
    log.info("sms reply", extra={"person": person, "incidents": refs})
    return _twiml(message_twiml("tocsin: " + " ".join(answers)))
