"""The short code an SMS carries, and reading the reply that acknowledges with it.

The short code is the incident's **number** (``#42`` in the API and CLI): short enough to type
on a phone at 3 a.m., unique per store, and the same number the person sees everywhere else.
Replies understood (case and spacing ignored):

- ``ACK 42``, ``ack #42``, ``ACK42``: acknowledge incident number 42;
- ``1`` or ``ACK`` alone: acknowledge what the latest page to this person (by text, or a call
  they missed) was about: every incident of a bundled one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from escalation.incidents.model import IncidentRecord

__all__ = ["SmsReply", "parse_reply", "short_code"]


def short_code(inc: IncidentRecord) -> str:
    """The code a text about ``inc`` asks to be replied with: its incident number."""
    return str(inc.number)


@dataclass(frozen=True)
class SmsReply:
    """An acknowledgement by text; ``code`` None means "the latest page I got"."""

    code: str | None


_REPLY = re.compile(r"^(?:ack(?:nowledge)?\s*(?:#\s*)?(\d+)?|1)[\s.!]*$", re.IGNORECASE)


def parse_reply(body: str) -> SmsReply | None:
    """What an inbound text asks for, or None when it is not an acknowledgement."""
    m = _REPLY.match(body.strip())
    if m is None:
        return None
    return SmsReply(code=m.group(1))
