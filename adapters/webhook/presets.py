"""Built-in webhook presets: each chat platform's documented incoming-webhook request.

``webhook: {endpoints: {ops: {preset: discord, url: ...}}}`` posts what that platform accepts
instead of tocsin's own JSON document, built from the same document (``payload``), so a preset,
a template and the plain body always say the same thing:

- ``google_chat``: a Google Chat incoming webhook message, ``{"text": ...}`` (Chat's own text
  formatting: ``*bold*``, ``<url|label>`` links), at most 4,096 characters (a message is at
  most 32,000 bytes), every message about one incident in one thread (``bodies.url_of``).
- ``mattermost``: a Mattermost incoming webhook, ``text`` (Markdown) with an optional
  ``username`` and one message attachment (colour by severity, fields); ``@channel``-style
  mentions coming from alert text are defused so an alert cannot ping a whole channel.
- ``discord``: Discord's Execute Webhook, ``content`` (<= 2,000 characters) and one embed within
  Discord's embed limits (title 256, description 4,096, 25 fields of 256 / 1,024, 6,000 in
  all), ``allowed_mentions: {"parse": []}`` so alert text cannot ping ``@everyone``.
- ``telegram``: the Bot API's ``sendMessage``: ``chat_id``, ``text`` (HTML ``parse_mode``,
  1-4,096 characters after entity parsing), link previews off.

Every text that came from an alert is cut to fit before it is escaped, so a long annotation
never makes the platform refuse the page; what each platform answers on an error is read by
``retry_after`` (Discord's and Telegram's JSON ``retry_after``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from adapters.config import WebhookEndpoint, WebhookPreset
from adapters.http import absolute_http_url
from rules.grafana import GRAFANA_LINKS

__all__ = ["PRESETS", "Summary", "preset_body", "retry_after_in_body", "summary_of"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")
_URL_OK = re.compile(r"^https?://[^\s<>|]+$", re.IGNORECASE)
_MENTION = re.compile(r"@(channel|all|here|everyone)\b", re.IGNORECASE)
_RUNBOOK_KEYS = ("runbook_url", "runbook")

# Colours by severity (P0 most severe); resolved is green whatever the severity was.
_COLOURS = {"P0": 0xB71C1C, "P1": 0xE53935, "P2": 0xFB8C00, "P3": 0xFDD835}
_OTHER_COLOUR = 0x78909C
_RESOLVED_COLOUR = 0x43A047

# Documented limits (see tests/fakes/data/SOURCES.md for where each comes from).
GOOGLE_CHAT_TEXT = 4096
MATTERMOST_TEXT = 4000  # servers before 5.0 (and any with a small column) refuse over 4,000
DISCORD_CONTENT = 2000
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
DISCORD_FIELD_NAME = 256
DISCORD_FIELD_VALUE = 1024
DISCORD_USERNAME = 80
TELEGRAM_TEXT = 4096


@dataclass(frozen=True)
class Summary:
    """What every preset says about one notification, as plain (unescaped) text."""

    headline: str  # "[SEV-1] #42 DiskFull on db1"
    state: str  # "Paging Ollie Oncall (tier 1)", "Resolved", ...
    facts: tuple[tuple[str, str], ...]  # (label, value)
    links: tuple[tuple[str, str], ...]  # (label, http(s) url)
    severity: str
    resolved: bool

    @property
    def colour(self) -> int:
        return _RESOLVED_COLOUR if self.resolved else _COLOURS.get(self.severity, _OTHER_COLOUR)


def _clean(text: Any, limit: int) -> str:
    """One value as text: no control characters but newlines, cut to ``limit`` with an ellipsis."""
    out = _CONTROL.sub(" ", str(text if text is not None else "")).strip()
    return out if len(out) <= limit else out[: limit - 1].rstrip() + "…"


def _state(incident: Mapping[str, Any], note: Mapping[str, Any]) -> str:
    kind = note.get("kind")
    if kind == "resolve" or incident.get("status") == "resolved":
        return "Resolved"
    if kind == "acknowledge":
        return "Acknowledged"
    who = _clean(note.get("person_name") or note.get("person") or "", 100)
    if kind == "reminder":
        return f"Reminder: still {incident.get('status', 'open')}, for {who}"
    return f"Paging {who} (tier {note.get('tier', 1)})"


def _links(doc: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    incident = doc.get("incident", {})
    alerts: Sequence[Mapping[str, Any]] = doc.get("alerts", [])
    found: list[tuple[str, str]] = []
    # The console's incident page when known (a person reads chat), else the API's URL.
    page = incident.get("page") or incident.get("url")
    if page:
        found.append(("Incident", str(page)))
    sources = [incident.get("labels", {}), *(a.get("annotations", {}) for a in alerts)]
    runbook = next((str(s[k]) for s in sources for k in _RUNBOOK_KEYS if s.get(k)), "")
    if runbook:
        found.append(("Runbook", runbook))
    generator = next((str(a["generator_url"]) for a in alerts if a.get("generator_url")), "")
    if generator:
        found.append(("Source", generator))
    for key, label in GRAFANA_LINKS:  # Grafana's own URLs (rules/grafana.py)
        url = next((str(s[key]) for s in sources[1:] if s.get(key)), "")
        if url:
            found.append((label, url))
    # Only absolute http(s) URLs become links (a javascript: runbook must not be clickable),
    # percent-encoded where RFC 3986 wants it, so every platform takes them as URLs.
    out: list[tuple[str, str]] = []
    for label, raw in found:
        url, why = absolute_http_url(raw)
        if not why and _URL_OK.match(url) and len(url) <= 2048:
            out.append((label, url))
    return tuple(out)


def summary_of(doc: Mapping[str, Any]) -> Summary:
    """The notification ``doc`` (tocsin's JSON document) as a ``Summary``."""
    incident: Mapping[str, Any] = doc.get("incident", {})
    note: Mapping[str, Any] = doc.get("notification", {})
    alerts: Sequence[Mapping[str, Any]] = doc.get("alerts", [])
    title = _clean(incident.get("title", ""), 200)
    severity = _clean(incident.get("severity_name", ""), 40)
    headline = f"[{severity}] #{incident.get('number')} {title}"
    facts: list[tuple[str, str]] = [("Status", _clean(incident.get("status", ""), 40))]
    if incident.get("team"):
        facts.append(("Team", _clean(incident["team"], 100)))
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    if alerts:
        facts.append(("Alerts", f"{firing} firing of {len(alerts)}"))
    summaries = [a.get("annotations", {}).get("summary") for a in alerts]
    first = next((s for s in summaries if s), None)
    if first:
        facts.append(("Summary", _clean(first, 500)))
    others = doc.get("bundle", [])
    if others:
        listed = "; ".join(
            f"#{b['incident']['number']} {_clean(b['incident']['title'], 80)}" for b in others[:10]
        )
        facts.append(("Also", _clean(listed, 900)))
    return Summary(
        headline=headline,
        state=_state(incident, note),
        facts=tuple(facts),
        links=_links(doc),
        severity=str(incident.get("severity", "")),
        resolved=note.get("kind") == "resolve" or incident.get("status") == "resolved",
    )


def _google_chat(s: Summary, ep: WebhookEndpoint) -> dict[str, Any]:
    # Chat reads <...> as a link or a mention (<users/all> pings a whole space): angle brackets
    # from alert text become look-alikes, so they stay text.
    def esc(text: str) -> str:
        return text.replace("<", "\u2039").replace(">", "\u203a")

    lines = [f"*{esc(s.headline)}*", esc(s.state)]
    lines += [f"{esc(k)}: {esc(v)}" for k, v in s.facts]
    if s.links:
        lines.append(" · ".join(f"<{u}|{label}>" for label, u in s.links))
    return {"text": _fit_lines(lines, GOOGLE_CHAT_TEXT)}


def _fit_lines(lines: list[str], limit: int) -> str:
    """Lines joined, dropping whole lines from the end (links last kept) to stay in ``limit``."""
    text = "\n".join(lines)
    while len(text) > limit and len(lines) > 2:
        del lines[-2]  # keep the headline, state and the links line
        text = "\n".join(lines)
    return text[:limit]


def _defuse(text: str) -> str:
    """``@channel`` and friends as plain text (a zero-width space after the @)."""
    return _MENTION.sub(lambda m: "@\u200b" + m.group(1), text)


def _markdown(text: str) -> str:
    # Markdown that could restyle or link the text: escaped, so alert text stays text.
    return re.sub(r"([\\`*_\[\]()#>|~])", r"\\\1", _defuse(text))


def _mattermost(s: Summary, ep: WebhookEndpoint) -> dict[str, Any]:
    links = " · ".join(f"[{label}]({u})" for label, u in s.links)
    text = f"**{_markdown(s.headline)}**\n{_markdown(s.state)}"
    body: dict[str, Any] = {
        "text": (text + (f"\n{links}" if links else ""))[:MATTERMOST_TEXT],
        "attachments": [
            {
                "fallback": _defuse(_clean(s.headline, 200)),
                "color": f"#{s.colour:06X}",
                "fields": [
                    {"short": len(v) < 40, "title": k, "value": _markdown(v)} for k, v in s.facts
                ],
            }
        ],
    }
    if ep.username:
        body["username"] = ep.username
    return body


def _discord(s: Summary, ep: WebhookEndpoint) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "title": _clean(s.headline, DISCORD_TITLE),
        "description": _clean(s.state, DISCORD_DESCRIPTION),
        "color": s.colour,
        "fields": [
            {
                "name": _clean(k, DISCORD_FIELD_NAME),
                "value": _clean(v, DISCORD_FIELD_VALUE) or "-",
                "inline": len(v) < 40,
            }
            for k, v in s.facts[:20]
        ],
    }
    if s.links:
        embed["url"] = s.links[0][1]
        embed["fields"].append(
            {
                "name": "Links",
                "value": _clean(" · ".join(f"[{k}]({u})" for k, u in s.links), DISCORD_FIELD_VALUE),
                "inline": False,
            }
        )
    body: dict[str, Any] = {
        "content": _clean(f"{s.headline}: {s.state}", DISCORD_CONTENT),
        "embeds": [embed],
        # Alert text must never ping @everyone, a role or a user.
        "allowed_mentions": {"parse": []},
    }
    if ep.username:
        body["username"] = _clean(ep.username, DISCORD_USERNAME)
    return body


def _telegram(s: Summary, ep: WebhookEndpoint) -> dict[str, Any]:
    # Cut each piece of plain text before escaping: the 4,096 limit counts the text Telegram
    # shows (after entity parsing), so the visible length is what is bounded here.
    parts = [(f"<b>{escape(s.headline)}</b>", len(s.headline)), (escape(s.state), len(s.state))]
    parts += [(f"{escape(k)}: {escape(v)}", len(k) + 2 + len(v)) for k, v in s.facts]
    if s.links:
        anchors = [f'<a href="{escape(u, quote=True)}">{escape(k)}</a>' for k, u in s.links]
        parts.append((" · ".join(anchors), sum(len(k) for k, _ in s.links) + 3 * len(s.links)))
    kept: list[str] = []
    used = 0
    for html, visible in parts:
        if used + visible + 1 > TELEGRAM_TEXT:
            continue
        kept.append(html)
        used += visible + 1
    return {
        "chat_id": ep.chat_id,
        "text": "\n".join(kept),
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }


PRESETS: dict[str, Callable[[Summary, WebhookEndpoint], dict[str, Any]]] = {
    "google_chat": _google_chat,
    "mattermost": _mattermost,
    "discord": _discord,
    "telegram": _telegram,
}


def preset_body(preset: WebhookPreset, doc: Mapping[str, Any], ep: WebhookEndpoint) -> bytes:
    """The request body ``preset`` posts for the notification ``doc``."""
    body = PRESETS[preset](summary_of(doc), ep)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_in_body(preset: WebhookPreset | None, body: bytes) -> float | None:
    """Seconds a platform's error body asks us to wait: Discord's ``retry_after`` (seconds,
    a float) and Telegram's ``parameters.retry_after``; None when there is none."""
    if preset not in ("discord", "telegram") or not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    holder = data.get("parameters") if preset == "telegram" else data
    value = holder.get("retry_after") if isinstance(holder, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 86400:
        return float(value)
    return None
