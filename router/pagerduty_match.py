"""Which tocsin incidents a PagerDuty v3 webhook is about, and the aliases that remember it.

The Events API ``dedup_key`` tocsin sends is its incident id, but PagerDuty's incidents for
Events API alerts carry ``"incident_key": null`` in webhooks. So, in order: (a) ``incident_key``,
when present, naming a tocsin incident (free; by id only, never a number or a key); (b) the
aliases recorded earlier for PagerDuty's incident id; (c) the incident's alerts over PagerDuty's
REST API (``adapters.pagerduty.alerts``, cached, one request shared by concurrent deliveries):
an alert's ``alert_key`` is the dedup key. What (a) or (c) finds is returned with the aliases to
record in the transaction that applies the event, so later events match with no lookup.

One PagerDuty incident may hold the alerts of several tocsin incidents: alert grouping adds a
new alert to an open incident, a merge moves an incident's alerts into another. Every tocsin
incident among its alerts is matched. The key table maps a key to one incident, so a PagerDuty
incident's aliases are numbered: ``pagerduty-incident:<id>`` for the first (as it always was),
``pagerduty-incident:<id>#2``, ``#3``… for the others, read back in order up to the first gap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.pagerduty.alerts import AlertLookupError
from escalation.incidents.model import IncidentRecord, KeyAlias
from router.errors import ApiError

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["ALIAS_PREFIX", "Match", "alias_key", "match"]

log = logging.getLogger("tocsin.pagerduty.webhook")

ALIAS_PREFIX = "pagerduty-incident:"
_READ_AT_ONCE = 8  # alias slots read per query: most PagerDuty incidents hold one alert
# PagerDuty's object ids are letters and digits: a "#" in one could name another's alias slot.
_PD_ID = re.compile(r"[A-Za-z0-9]{1,64}")


@dataclass(frozen=True)
class Match:
    """The tocsin incidents an event is about, and the aliases to record for them."""

    incidents: tuple[IncidentRecord, ...] = ()
    aliases: tuple[KeyAlias, ...] = ()

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.incidents]


def alias_key(pd_incident_id: str, slot: int = 1) -> str:
    """The ``slot``-th alias of PagerDuty's incident (1: the first tocsin incident it holds)."""
    base = ALIAS_PREFIX + pd_incident_id
    return base if slot == 1 else f"{base}#{slot}"


async def match(
    rt: Runtime,
    pd_id: str,
    incident_key: str,
    *,
    lookup: bool,
    refresh: bool = False,
    also: Sequence[IncidentRecord] = (),
    event_type: str = "",
) -> Match:
    """The tocsin incidents PagerDuty's incident ``pd_id`` holds (see the module's docstring).

    ``lookup`` allows asking the REST API when nothing else matches; ``refresh`` asks it even
    then, past its cache (its alerts changed: a merge). ``also``: incidents known to be in it
    besides. A failed lookup raises ApiError 503, so PagerDuty retries the delivery.
    """
    found = list(also)
    by_key = await rt.service.get_incident(incident_key) if incident_key else None
    found += [by_key] if by_key is not None else []
    if not _PD_ID.fullmatch(pd_id):
        return Match(tuple(_unique(found)))
    known = await _known(rt, pd_id)
    if lookup and (refresh or not (known or found)):
        found += await _looked_up(rt, pd_id, event_type, fresh=refresh)
    ids = {i.id for i in known}
    new = [i for i in _unique(found) if i.id not in ids]
    aliases = (KeyAlias(alias_key(pd_id, len(known) + n), i.id) for n, i in enumerate(new, 1))
    return Match(tuple(known + new), tuple(aliases))


def _unique(incidents: Sequence[IncidentRecord]) -> list[IncidentRecord]:
    return list({i.id: i for i in incidents}.values())


async def _known(rt: Runtime, pd_id: str) -> list[IncidentRecord]:
    """The incidents recorded for PagerDuty's incident, in slot order, up to the first gap."""
    out: list[IncidentRecord] = []
    first = 1
    while True:
        keys = [alias_key(pd_id, slot) for slot in range(first, first + _READ_AT_ONCE)]
        found = await rt.service.incidents_by_keys(keys)
        for key in keys:
            if key not in found:
                return _unique(out)
            out.append(found[key])
        first += _READ_AT_ONCE


async def _looked_up(
    rt: Runtime, pd_id: str, event_type: str, *, fresh: bool
) -> list[IncidentRecord]:
    """Tocsin's incidents among the alerts of PagerDuty's incident, asked over REST."""
    try:
        alerts = rt.incident_alerts()
        keys = await alerts.alert_keys(pd_id, fresh=fresh) if alerts is not None else ()
    except AlertLookupError as e:
        log.warning(
            "pagerduty webhook not matched: PagerDuty's REST API did not answer",
            extra={"event_type": event_type, "pagerduty_incident": pd_id, "error": str(e)},
        )
        raise ApiError(
            503,
            "pagerduty unavailable",
            "the incident could not be matched through PagerDuty's REST API; retry",
        ) from None
    found = [await rt.service.get_incident(k) for k in keys]
    return [i for i in found if i is not None]
