"""The seam between the phone/SMS notifiers and a telephony provider.

A provider places one call or sends one text and reports the outcome as a ``DeliveryResult``;
what the call says and which outbox rows it answers for are decided by the notifiers
(``adapters.phone.notifiers``). A second provider (Vonage, an SMS gateway, ...) implements
this Protocol plus its own inbound routes; the dispatcher and notifiers stay as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from adapters.delivery.notifier import DeliveryResult

__all__ = [
    "CALLBACK_ID_RETENTION",
    "CALLBACK_SOURCES",
    "GATEWAY_SMS",
    "TWILIO_GATHER",
    "TWILIO_SMS",
    "TWILIO_STATUS",
    "VONAGE_EVENT",
    "VONAGE_INPUT",
    "VONAGE_SMS",
    "PhoneProvider",
    "VoicePage",
    "normalize_number",
]

# The providers' callbacks as delivery sources (``inbound_deliveries.source``): the inbound
# routes remember each callback's id under one of these so a retried callback acts once.
TWILIO_GATHER, TWILIO_STATUS, TWILIO_SMS = "twilio-gather", "twilio-status", "twilio-sms"
VONAGE_INPUT, VONAGE_EVENT, VONAGE_SMS = "vonage-input", "vonage-event", "vonage-sms"
GATEWAY_SMS = "gateway-sms"
CALLBACK_SOURCES = (
    TWILIO_GATHER,
    TWILIO_STATUS,
    TWILIO_SMS,
    VONAGE_INPUT,
    VONAGE_EVENT,
    VONAGE_SMS,
    GATEWAY_SMS,
)

# How long those ids are kept after they were stored. Their callbacks carry no signed time a
# late retry could be refused by, so the id must outlast the provider's retry horizon: Twilio
# retries a webhook only within one request's total time (at most 15 s, up to 5 retries);
# Vonage retries an inbound message answered 429/5xx, backing off to every 15 minutes, for
# 24 hours (its voice webhooks twice, within seconds); an SMS gateway's horizon is its own
# (Sinch's last retry comes ~23 h after the first failure). A week outlasts all of them
# several times over, and the rows are one per text or keypress, so the table stays small.
# A captured request replayed after that acts again (Twilio's signature has no time), on a
# page a week old.
CALLBACK_ID_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class VoicePage:
    """One page call: what to read out, what to ask, and the outbox rows a keypress answers.

    ``refs`` are outbox row ids; the provider carries them in its callback URLs so a keypress
    or a call status lands on the right rows (several when pages were bundled into one call).
    """

    refs: tuple[str, ...]
    speech: str  # severity, title, ...
    prompt: str  # "Press 1 to acknowledge, 2 to escalate ..."
    goodbye: str  # said when no key was pressed


class PhoneProvider(Protocol):
    """Places calls and sends texts; one attempt each, never raising."""

    async def place_call(self, to: str, page: VoicePage) -> DeliveryResult:
        """Ring ``to`` and play ``page``; ``unknown`` when the provider may have dialled."""
        ...

    async def send_sms(self, to: str, body: str) -> DeliveryResult:
        """Text ``body`` to ``to``."""
        ...


_FORMATTING = re.compile(r"[\s\-().]")


def normalize_number(number: str) -> str:
    """A phone number as written in config (``+44 7700 900-123``) in E.164 form (``+447700900123``).

    Only formatting is removed; a number that is still not E.164 is left for the provider to
    reject (a permanent error that shows up on the timeline).
    """
    return _FORMATTING.sub("", number)
