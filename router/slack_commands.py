"""The ``/tocsin`` slash command: ``ack N``, ``resolve N``, ``oncall [schedule]``, ``incidents``.

Each answer is an ephemeral reply (only the person who typed it sees it). Reading commands
(``oncall``, ``incidents``) answer anyone in the workspace the app is installed in; acting ones
need the Slack user to be a person who may act (``slack_actions.who_acts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from adapters.config import SlackConfig
from adapters.slack import SlackApi, escape
from escalation.incidents.actions import Action
from escalation.incidents.model import Status
from router.slack_actions import act, who_acts

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["HELP", "command_reply"]

HELP = (
    "Usage: `/tocsin ack N` · `/tocsin resolve N` · `/tocsin oncall [schedule]` · "
    "`/tocsin incidents`"
)
_ACTING = {"ack": Action.ACK, "resolve": Action.RESOLVE}
_OPEN = (Status.TRIGGERED.value, Status.ACKNOWLEDGED.value, Status.MITIGATED.value)


async def command_reply(
    rt: Runtime, cfg: SlackConfig, api: SlackApi, form: Mapping[str, str], identity: str
) -> str:
    """The reply to one verified ``/tocsin`` request."""
    words = form.get("text", "").split()
    if not words:
        return HELP
    verb, args = words[0].lower(), words[1:]
    if verb in _ACTING and len(args) == 1:
        person, refusal = await who_acts(rt, cfg, api, form.get("user_id", ""))
        if refusal:
            return f"Nothing was changed: {refusal}."
        ref = args[0].removeprefix("#")
        text, outcome = await act(rt, identity, ref, _ACTING[verb], person)
        if outcome is None:
            return "Already done: this command was received before."
        return escape(text, 500)
    if verb == "oncall" and len(args) <= 1:
        return await _oncall(rt, args[0] if args else None)
    if verb == "incidents" and not args:
        return await _incidents(rt)
    return HELP


async def _oncall(rt: Runtime, schedule: str | None) -> str:
    _, schedules, _ = await rt.schedules.view()
    chosen = [s for s in schedules if schedule is None or s.name == schedule]
    if not chosen:
        known = ", ".join(s.name for s in schedules) or "none are configured"
        return f"No schedule {escape(schedule or '', 100)} (known: {escape(known)})"
    lines = []
    for s in chosen:
        who = ", ".join(sh.person for sh in s.now) or "nobody"
        nxt = f"; next: {s.next.person}" if s.next is not None else ""
        lines.append(f"*{escape(s.name, 100)}*: {escape(who, 300)}{escape(nxt, 300)}")
    return "\n".join(lines)[:3000]


async def _incidents(rt: Runtime) -> str:
    open_ = await rt.service.list_incidents(status=_OPEN, limit=20)
    if not open_:
        return "No open incidents."
    lines = [
        f"#{i.number} [{escape(i.severity_name, 50)}] {i.status.value}: {escape(i.title, 200)}"
        for i in open_
    ]
    return "\n".join(lines)[:3000]
