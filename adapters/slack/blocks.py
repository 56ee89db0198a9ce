"""The incident card in Block Kit, and the thread lines that follow it.

One card per incident (per channel or person): a header with the severity in the matrix's own
name and the title, the status, an alerts summary, links (the console's incident page, the
runbook, each alert's generatorURL) and the buttons Acknowledge / Escalate / Resolve while they
apply. Everything taken from alerts is escaped for Slack's mrkdwn (``&``, ``<``, ``>``), so a
label cannot mention ``@channel`` or forge a link, and cut to Block Kit's limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from adapters.http import absolute_http_url
from escalation.incidents.model import AlertRecord, IncidentRecord, Status, TimelineEvent
from rules.grafana import GRAFANA_LINKS

__all__ = ["ACTIONS", "card", "escape", "thread_text"]

ACTIONS: dict[str, str] = {
    "tocsin_ack": "ack",
    "tocsin_escalate": "escalate",
    "tocsin_resolve": "resolve",
}
"""Button ``action_id`` → the incident action it runs (the button's value is the incident id)."""

_RUNBOOK_KEYS = ("runbook_url", "runbook")
_MAX_ALERTS = 5  # alerts listed on the card; the rest are counted
_STATUS_ICON = {
    Status.TRIGGERED: ":rotating_light:",
    Status.ACKNOWLEDGED: ":eyes:",
    Status.MITIGATED: ":adhesive_bandage:",
    Status.RESOLVED: ":white_check_mark:",
}


def escape(text: str, limit: int = 2000) -> str:
    """``text`` safe inside mrkdwn: Slack's three control characters escaped, cut to ``limit``."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return cut.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str | None:
    sent, why = absolute_http_url(url)
    if why or len(sent) > 1000:
        return None
    return f"<{sent}|{escape(label, 100)}>"


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else ""


def _status_line(inc: IncidentRecord) -> str:
    line = f"{_STATUS_ICON[inc.status]} *{inc.status.value}*"
    stamps = (
        ("opened", inc.opened_at),
        ("acknowledged", inc.acknowledged_at),
        ("mitigated", inc.mitigated_at),
        ("resolved", inc.resolved_at),
    )
    return line + "".join(f" · {name} {_when(t)}" for name, t in stamps if t is not None)


def _alerts(alerts: Sequence[AlertRecord]) -> str:
    firing = sum(1 for a in alerts if a.status == "firing")
    lines = [f"*Alerts:* {firing} firing, {len(alerts) - firing} resolved"]
    for a in alerts[:_MAX_ALERTS]:
        name = a.labels.get("alertname", a.fingerprint)
        summary = a.annotations.get("summary") or a.annotations.get("description") or ""
        text = f"• `{escape(name, 200)}` ({a.status})"
        text += f" {escape(summary, 300)}" if summary else ""
        source = _link(a.generator_url, "source") if a.generator_url else None
        lines.append(text + (f" {source}" if source else ""))
    if len(alerts) > _MAX_ALERTS:
        lines.append(f"… and {len(alerts) - _MAX_ALERTS} more")
    return "\n".join(lines)[:3000]


def _links(inc: IncidentRecord, alerts: Sequence[AlertRecord], public_url: str) -> str:
    page = f"{public_url.rstrip('/')}/incidents/{quote(inc.id, safe='')}"
    out = [_link(page, f"Incident #{inc.number}")]
    runbook = next(
        (a.annotations[k] for a in alerts for k in _RUNBOOK_KEYS if a.annotations.get(k)), None
    )
    if runbook:
        out.append(_link(runbook, "Runbook"))
    for key, label in GRAFANA_LINKS:  # Grafana's dashboard, panel, ... (rules/grafana.py)
        if url := next((a.annotations[key] for a in alerts if a.annotations.get(key)), ""):
            out.append(_link(url, label))
    return " · ".join(x for x in out if x)


def _buttons(inc: IncidentRecord) -> list[dict[str, Any]]:
    shown = {
        "tocsin_ack": ("Acknowledge", inc.status == Status.TRIGGERED, "primary"),
        "tocsin_escalate": ("Escalate", inc.status != Status.RESOLVED, None),
        "tocsin_resolve": ("Resolve", inc.status != Status.RESOLVED, "danger"),
    }
    out: list[dict[str, Any]] = []
    for action_id, (label, on, style) in shown.items():
        if on:
            b: dict[str, Any] = {
                "type": "button",
                "action_id": action_id,
                "text": {"type": "plain_text", "text": label},
                "value": inc.id,
            }
            out.append(b | ({"style": style} if style else {}))
    return out


def card(
    inc: IncidentRecord, alerts: Sequence[AlertRecord], public_url: str
) -> tuple[str, list[dict[str, Any]]]:
    """The card's fallback text (notifications, screen readers) and its blocks."""
    title = f"[{inc.severity_name}] #{inc.number} {inc.title}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _status_line(inc)}},
    ]
    who = f"*Team:* {escape(inc.team, 100)} · " if inc.team else ""
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"{who}*Policy:* {escape(inc.policy_name, 100)}"}
            ],
        }
    )
    if alerts:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _alerts(alerts)}})
    links = _links(inc, alerts, public_url)
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": links}})
    buttons = _buttons(inc)
    if buttons:
        blocks.append({"type": "actions", "block_id": "tocsin_actions", "elements": buttons})
    # The fallback text is mrkdwn (notifications show it): escaped, unlike the plain_text header.
    return escape(f"{title} ({inc.status.value})", 3000), blocks


def thread_text(events: Sequence[TimelineEvent], extra: str = "") -> str:
    """Timeline events as one thread reply (several changes coalesced into one post)."""
    lines = [f"`{e.at.strftime('%H:%M:%S')}` {escape(e.message, 500)}" for e in events[-20:]]
    if len(events) > 20:
        lines.insert(0, f"… {len(events) - 20} earlier events on the incident page")
    if extra:
        lines.append(extra)
    return "\n".join(lines)[:3900]
