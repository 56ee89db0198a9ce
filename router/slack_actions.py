"""Who acts from Slack, and the action itself: shared by button clicks and the slash command."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from adapters.config import SlackConfig
from adapters.slack import SlackApi, SlackError
from escalation.engine.service import Acted, ActOn, Delivery, Outcome
from escalation.incidents.actions import Action

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["SOURCE", "act", "person_for", "who_acts"]

log = logging.getLogger("tocsin.slack")

SOURCE = "slack"
"""The timeline's source of actions taken from Slack, and their inbound-delivery source."""


def person_for(rt: Runtime, cfg: SlackConfig, email: str) -> tuple[str, str]:
    """(the person with this email, "") or ("", why they may not act)."""
    found = [
        name
        for name, p in rt.loaded.config.people.items()
        if email and p.email and p.email.strip().lower() == email
    ]
    if not found:
        return "", "your Slack account's email is not a person in tocsin's configuration"
    person = found[0]
    if cfg.writers and person not in cfg.writers:
        return "", f"{person} may not act on incidents from Slack (adapters.slack.writers)"
    return person, ""


async def who_acts(rt: Runtime, cfg: SlackConfig, api: SlackApi, user_id: str) -> tuple[str, str]:
    """(person, "") for a Slack user who may act, else ("", why not)."""
    try:
        email = await api.email_of(user_id)
    except SlackError as e:
        log.warning("slack user lookup failed", extra={"error": str(e)})
        return "", "tocsin could not look up your Slack account; try again"
    return person_for(rt, cfg, email)


async def act(
    rt: Runtime, identity: str, ref: str, action: Action, person: str
) -> tuple[str, Acted | None]:
    """Run ``action`` once for this signed request; (what to tell the person, the outcome)."""
    done = await rt.service.act_once(
        Delivery(SOURCE, identity), [ActOn(ref, person)], action, source=SOURCE
    )
    if done is None:
        return "", None  # a replay: it acted the first time
    [one] = done
    if one.outcome == Outcome.MISSING:
        return f"no incident {ref}", one
    if one.outcome == Outcome.ILLEGAL:
        return one.reason, one
    assert one.incident is not None
    return f"#{one.incident.number} {one.incident.status.value} by {person}", one
