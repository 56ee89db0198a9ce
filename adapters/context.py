"""What adapters get from the process (never globals): the public URL, the HTTP session, the clock.

Its own module so channel packages depend on it without importing the registry that builds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp

from escalation.engine.clock import Clock
from escalation.engine.service import IncidentDetail
from escalation.oncall.people import Person

__all__ = ["AdapterContext"]


@dataclass(frozen=True)
class AdapterContext:
    """What adapters get from the process: never globals."""

    public_url: str
    http: Callable[[], aiohttp.ClientSession]  # the shared client session (created in the loop)
    clock: Clock
    # Reads an incident with its outbox and timeline (the service façade): channels that edit
    # one message per incident (Slack) find the message they posted before through it.
    incident_detail: Callable[[str], Awaitable[IncidentDetail | None]] | None = None
    # The configured people as the directory has them now (who to invite to an incident's own
    # chat channel, found by email).
    people: Callable[[], Mapping[str, Person]] | None = None
