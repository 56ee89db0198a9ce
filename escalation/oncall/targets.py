"""Whom a step may notify and through what: target refs (``role:lead``) and channel kinds."""

from __future__ import annotations

import re

__all__ = [
    "CHANNELS",
    "EDITED_CHANNELS",
    "INCIDENT_ROOM",
    "RINGING_CHANNELS",
    "SERVICE_TARGETS",
    "TARGET_KINDS",
    "UPDATED_CHANNELS",
    "parse_target",
]

TARGET_KINDS: tuple[str, ...] = ("role", "person", "schedule", "team", "pagerduty", "slack")
"""Prefixes a notify target may carry; a bare name is a role. ``pagerduty:`` names a service and
``slack:`` a chat channel: targets that are places, not people (``SERVICE_TARGETS``)."""

SERVICE_TARGETS: dict[str, str] = {"pagerduty": "pagerduty", "slack": "slack"}
"""Target kinds that name a place rather than people → the one channel that reaches it."""

INCIDENT_ROOM = "@incident"
"""The place name of an incident's own chat channel (``slack:@incident`` as a row's person),
opened for matrix levels with ``incident_channel``: the channel names it per incident."""

UPDATED_CHANNELS: tuple[str, ...] = ("slack", "teams", "pushover")
"""Channels that keep one message per incident and edit it when the incident changes (Slack),
post the new state where the platform cannot edit (a Teams Workflows webhook), or stop what is
still ringing (Pushover's emergency receipts), so an acknowledgement made anywhere is told to
them too."""

RINGING_CHANNELS: tuple[str, ...] = ("pushover",)
"""Channels whose page keeps alerting until it is stopped (Pushover's emergency priority): a
mitigation made before any acknowledgement stops it too, as an acknowledgement would."""

EDITED_CHANNELS: tuple[str, ...] = ("slack",)
"""Channels that edit their one message per incident in place, so every change to the incident
(mitigated, escalated, reopened, a note) is told to them, not only acks and resolves."""

CHANNELS: tuple[str, ...] = (
    "log",
    "pagerduty",
    "email",
    "phone",
    "sms",
    "webhook",
    "slack",
    "teams",
    "ntfy",
    "pushover",
)
"""Channel kinds a step may name in ``via`` (optionally ``kind:instance``, e.g. ``webhook:ops``)."""

_NAME_RE = re.compile(r"^[^\s:]+$")


def parse_target(ref: str) -> tuple[str, str]:
    """Split a notify target ref into ``(kind, name)``; a bare name is a role.

    ``"role:lead"`` → ``("role", "lead")``, ``"lead"`` → ``("role", "lead")``,
    ``"pagerduty:PABC123"`` → ``("pagerduty", "PABC123")``. ValueError on a bad ref.
    """
    text = ref.strip() if isinstance(ref, str) else ""
    if not text:
        raise ValueError("empty notify target")
    if ":" not in text:
        if not _NAME_RE.match(text):
            raise ValueError(f"bad notify target {ref!r}: names contain no spaces")
        return "role", text
    kind, _, name = text.partition(":")
    if kind not in TARGET_KINDS:
        raise ValueError(
            f"notify target {ref!r} has unknown kind {kind!r}; "
            f"expected one of {', '.join(TARGET_KINDS)} (or a bare role name)"
        )
    if not name.strip():
        raise ValueError(f"notify target {ref!r} names no {kind}")
    if any(c.isspace() for c in name):
        raise ValueError(f"bad notify target {ref!r}: names contain no spaces")
    return kind, name
