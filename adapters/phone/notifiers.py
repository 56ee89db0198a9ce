"""The ``phone`` and ``sms`` channels: what a call says and a text reads, through any provider.

- ``phone``: a page rings the person and reads severity and title; 1 acknowledges, 2 escalates.
  Anything else on the phone channel (resolved notice, status-update reminder) is texted to
  the same number instead: waking someone to say "it's over" helps nobody.
- ``sms``: a text with severity, title and the short code to reply with (``ACK 42``, or ``1``).

Rows bundled by the dispatcher travel in one call / one text that names every incident.
"""

from __future__ import annotations

from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.phone.codes import short_code
from adapters.phone.provider import PhoneProvider, VoicePage, normalize_number
from adapters.phone.twiml import clean_text
from escalation.incidents.model import IncidentRecord, OutboxRecord

__all__ = ["CallNotifier", "SmsNotifier", "sms_body", "voice_page"]

SMS_LIMIT = 160  # one GSM-7 segment; a bundle may take up to three
_BUNDLE_SMS_LIMIT = 3 * 153  # 153 characters per segment once a text is split
_TITLE_SPEECH = 300  # characters of a title read out before it is cut


def _severity(inc: IncidentRecord) -> str:
    name = inc.severity_name
    return name if name == inc.severity else f"{name} {inc.severity}"


def _items(d: Delivery) -> list[tuple[OutboxRecord, IncidentRecord]]:
    incidents = {d.incident.id: d.incident, **d.bundle_incidents}
    out = [(d.row, d.incident)]
    seen = {d.incident.id}
    for r in d.bundle:
        inc = incidents.get(r.incident_id)
        if inc is not None and inc.id not in seen:
            seen.add(inc.id)
            out.append((r, inc))
    return out


def _phone_of(d: Delivery) -> str | None:
    phone = d.person.get("phone")
    return normalize_number(str(phone)) if phone else None


def _no_phone(d: Delivery) -> DeliveryResult:
    return DeliveryResult(
        ok=False,
        reason=FailureReason.NO_ADDRESS,
        error=f"person {d.row.person!r} has no phone number",
    )


def voice_page(d: Delivery) -> VoicePage:
    """What the page call to ``d``'s person says, and the rows a keypress answers for."""
    items = _items(d)
    first = items[0][1]
    speech = (
        f"Tocsin alert. Severity {_severity(first)}. Incident {first.number}: "
        f"{clean_text(first.title, _TITLE_SPEECH)}."
    )
    if len(items) > 1:
        others = "; ".join(
            f"incident {inc.number}, severity {_severity(inc)}: {clean_text(inc.title, 120)}"
            for _, inc in items[1:]
        )
        speech += f" And {len(items) - 1} more: {others}."
        prompt = "Press 1 to acknowledge all of them. Press 2 to escalate to the next tier now."
    else:
        prompt = "Press 1 to acknowledge. Press 2 to escalate to the next tier now."
    refs = (d.row.id, *(r.id for r in d.bundle))
    goodbye = "No key pressed. The alert stays open and will escalate. Goodbye."
    return VoicePage(refs=refs, speech=speech, prompt=prompt, goodbye=goodbye)


def _fit(prefix: str, title: str, suffix: str, limit: int) -> str:
    room = limit - len(prefix) - len(suffix)
    return prefix + clean_text(title, max(room, 20)) + suffix


def sms_body(d: Delivery) -> str:
    """The text for ``d``: severity, title and how to acknowledge (or that it is over)."""
    row, inc = d.row, d.incident
    code = short_code(inc)
    if row.kind == "resolve":
        return _fit(f"[RESOLVED] #{code} ", inc.title, "", SMS_LIMIT)
    if row.kind == "acknowledge":
        return _fit(f"[ACKED] #{code} ", inc.title, "", SMS_LIMIT)
    items = _items(d)
    if row.kind == "reminder":
        return _fit(
            f"[{_severity(inc)}] #{code} still open, status update due: ", inc.title, "", SMS_LIMIT
        )
    if len(items) == 1:
        return _fit(
            f"[{_severity(inc)}] #{code} ",
            inc.title,
            f" - reply ACK {code} (or 1) to acknowledge",
            SMS_LIMIT,
        )
    suffix = " - reply ACK <number> for one, or 1 for all"
    each = max(20, (_BUNDLE_SMS_LIMIT - len(suffix)) // len(items) - 16)
    parts = [f"[{_severity(i)}] #{short_code(i)} {clean_text(i.title, each)}" for _, i in items]
    return clean_text(" | ".join(parts), _BUNDLE_SMS_LIMIT - len(suffix)) + suffix


class SmsNotifier:
    """The ``sms`` channel: one text per delivery (a bundle names every incident)."""

    def __init__(self, provider: PhoneProvider) -> None:
        self.provider = provider

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """Text the person; one attempt."""
        to = _phone_of(delivery)
        if to is None:
            return _no_phone(delivery)
        return await self.reach(to, delivery)

    async def reach(self, to: str, delivery: Delivery) -> DeliveryResult:
        return await self.provider.send_sms(to, sms_body(delivery))


class CallNotifier(SmsNotifier):
    """The ``phone`` channel: a page is a call with a keypress menu; other kinds are texted."""

    async def reach(self, to: str, delivery: Delivery) -> DeliveryResult:
        """Ring the person (page) or text them (resolved, reminder); one attempt."""
        if delivery.row.kind != "page":
            return await super().reach(to, delivery)
        return await self.provider.place_call(to, voice_page(delivery))
