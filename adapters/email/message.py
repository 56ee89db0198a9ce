"""Renders one delivery (or a bundle of them) as a multipart text + HTML email.

Everything that came from alerts (titles, labels, annotations, URLs) is HTML-escaped in the HTML
part, stripped of control characters in headers, and only ``http(s)`` URLs become links. Page and
reminder rows carry signed acknowledge / resolve links; ``resolve`` rows say the incident is
resolved. ``Message-ID`` is derived from the outbox row id(s), so a retried row is recognisably
the same message to mail systems.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.delivery.notifier import Delivery
from adapters.email.links import LinkSigner
from escalation.incidents.model import IncidentRecord, OutboxRecord, Status
from rules.grafana import GRAFANA_LINKS

__all__ = [
    "InvalidRecipient",
    "Section",
    "incident_reference",
    "message_id",
    "render_message",
    "sections_of",
    "subject_for",
]

_SUBJECT_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+$")
_URL_OK = re.compile(r"^https?://", re.IGNORECASE)
# Annotations Prometheus rules conventionally use for a runbook.
_RUNBOOK_KEYS = ("runbook_url", "runbook")


class InvalidRecipient(ValueError):
    """The person has no usable email address (a permanent failure)."""


@dataclass(frozen=True)
class Section:
    """One incident's part of a message, with the links signed for its recipient."""

    row: OutboxRecord
    incident: IncidentRecord
    links: tuple[tuple[str, str], ...]  # (label, url): incident page, runbook, ...
    ack_url: str | None
    resolve_url: str | None
    alerts: tuple[Mapping[str, Any], ...]


def _domain(from_address: str) -> str:
    _, _, domain = from_address.rpartition("@")
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain)
    return domain or "tocsin.invalid"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def message_id(row_ids: Sequence[str], from_address: str) -> str:
    """``<hash@domain>`` from the row id(s): stable across retries of the same row(s).

    Row ids hold ``:`` and ``>``, which a msg-id may not, hence the hash.
    """
    return f"<{_digest(chr(10).join(sorted(row_ids)))}@{_domain(from_address)}>"


def incident_reference(incident_id: str, from_address: str) -> str:
    """A per-incident msg-id every message about the incident references (mail threading)."""
    return f"<incident.{_digest(incident_id)}@{_domain(from_address)}>"


def _clean(text: str, limit: int | None = None) -> str:
    """One line, no control characters (header-safe), optionally cut with an ellipsis."""
    out = " ".join(_CONTROL.sub(" ", text).split())
    if limit is not None and len(out) > limit:
        out = out[: limit - 1].rstrip() + "…"
    return out


def _severity(inc: IncidentRecord) -> str:
    return inc.severity_name


def _kind_word(kind: str) -> str:
    return {"resolve": "Resolved", "reminder": "Reminder", "acknowledge": "Acknowledged"}.get(
        kind, ""
    )


def subject_for(sections: Sequence[Section]) -> str:
    """``[SEV-1] #12 HighErrorRate on api`` for one incident; a count and list for a bundle."""
    first = sections[0]
    if len(sections) == 1:
        word = _kind_word(first.row.kind)
        prefix = f"{word}: " if word else ""
        text = (
            f"[{_severity(first.incident)}] #{first.incident.number} {prefix}{first.incident.title}"
        )
        return _clean(text, _SUBJECT_MAX)
    worst = min(sections, key=lambda s: s.incident.severity).incident
    listed = "; ".join(f"#{s.incident.number} {_clean(s.incident.title)}" for s in sections)
    return _clean(f"[{_severity(worst)}] {len(sections)} incidents: {listed}", _SUBJECT_MAX)


def _alerts_of(row: OutboxRecord) -> tuple[Mapping[str, Any], ...]:
    # The dispatcher may put the incident's alerts on the row (labels, annotations, status,
    # generator_url); without them the incident's common labels stand for the alerts.
    raw = row.payload.get("alerts") if isinstance(row.payload, Mapping) else None
    if not isinstance(raw, list):
        return ()
    return tuple(a for a in raw if isinstance(a, Mapping))


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _runbook(alerts: Sequence[Mapping[str, Any]]) -> str | None:
    for a in alerts:
        notes = _str_map(a.get("annotations"))
        for key in _RUNBOOK_KEYS:
            if notes.get(key):
                return notes[key]
    return None


def sections_of(delivery: Delivery, signer: LinkSigner, now: datetime) -> list[Section]:
    """The delivery's incident(s) in message order, each with its signed links."""
    pairs: list[tuple[OutboxRecord, IncidentRecord, Mapping[str, str]]] = [
        (delivery.row, delivery.incident, delivery.links)
    ]
    for row in delivery.bundle:
        inc = delivery.bundle_incidents.get(row.incident_id)
        if inc is not None and all(p[1].id != inc.id for p in pairs):
            pairs.append((row, inc, {}))
    out: list[Section] = []
    for row, inc, given in pairs:
        alerts = _alerts_of(row)
        links: list[tuple[str, str]] = [
            (
                "Incident",
                given.get("incident") or f"{signer.public_url}/api/v1/incidents/{quote(inc.id)}",
            )
        ]
        runbook = given.get("runbook") or _runbook(alerts)
        if runbook:
            links.append(("Runbook", runbook))
        notes = [_str_map(a.get("annotations")) for a in alerts]
        for key, label in GRAFANA_LINKS:  # Grafana's dashboard, panel, ... (rules/grafana.py)
            if url := next((n[key] for n in notes if n.get(key)), ""):
                links.append((label, url))
        links.extend(
            (name.replace("_", " ").capitalize(), url)
            for name, url in given.items()
            if name not in ("incident", "runbook")
        )
        actionable = row.kind in ("page", "reminder")
        ack = (
            signer.url(inc.id, "ack", row.person, now, epoch=inc.epoch)
            if actionable and inc.status == Status.TRIGGERED
            else None
        )
        resolve = (
            signer.url(inc.id, "resolve", row.person, now, epoch=inc.epoch)
            if actionable and inc.status != Status.RESOLVED
            else None
        )
        out.append(Section(row, inc, tuple(links), ack, resolve, alerts))
    return out


def _tz(person: Mapping[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(str(person.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _when(t: datetime | None, tz: ZoneInfo) -> str:
    if t is None:
        return ""
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _headline(s: Section) -> str:
    inc = s.incident
    sev = f"{_severity(inc)} ({inc.severity})" if _severity(inc) != inc.severity else inc.severity
    word = _kind_word(s.row.kind)
    prefix = f"{word}: " if word else ""
    return f"{prefix}{sev} incident #{inc.number}: {_clean(inc.title)}"


def _facts(s: Section, tz: ZoneInfo) -> list[tuple[str, str]]:
    inc = s.incident
    facts = [("Status", inc.status.value), ("Opened", _when(inc.opened_at, tz))]
    if inc.acknowledged_at is not None:
        facts.append(("Acknowledged", _when(inc.acknowledged_at, tz)))
    if inc.resolved_at is not None:
        facts.append(("Resolved", _when(inc.resolved_at, tz)))
    if inc.team:
        facts.append(("Team", inc.team))
    return facts


def _alert_rows(s: Section) -> list[tuple[str, dict[str, str], dict[str, str], str]]:
    """(status, labels, annotations, generator url) per alert; the common labels if none."""
    if not s.alerts:
        return [("", dict(s.incident.labels), {}, "")]
    return [
        (
            str(a.get("status") or ""),
            _str_map(a.get("labels")),
            _str_map(a.get("annotations")),
            str(a.get("generator_url") or a.get("generatorURL") or ""),
        )
        for a in s.alerts
    ]


def _text_section(s: Section, tz: ZoneInfo) -> str:
    lines = [_headline(s), ""]
    lines += [f"{k}: {v}" for k, v in _facts(s, tz)]
    for status, labels, notes, source in _alert_rows(s):
        lines.append("")
        lines.append(f"Alert ({status}):" if status else "Labels:")
        lines += [f"  {k}={_clean(v)}" for k, v in sorted(labels.items())]
        lines += [f"  {k}: {_clean(v)}" for k, v in sorted(notes.items())]
        if source:
            lines.append(f"  source: {source}")
    lines.append("")
    lines += [f"{label}: {url}" for label, url in s.links]
    if s.ack_url:
        lines.append(f"Acknowledge: {s.ack_url}")
    if s.resolve_url:
        lines.append(f"Resolve: {s.resolve_url}")
    return "\n".join(lines)


def _a(url: str, label: str) -> str:
    if _URL_OK.match(url):
        return f'<a href="{escape(url, quote=True)}">{escape(label)}</a>'
    return f"{escape(label)}: {escape(url)}"  # javascript: and the like stay inert text


def _html_section(s: Section, tz: ZoneInfo) -> str:
    parts = [f"<h2>{escape(_headline(s))}</h2>", "<table>"]
    parts += [
        f'<tr><th align="left">{escape(k)}</th><td>{escape(v)}</td></tr>' for k, v in _facts(s, tz)
    ]
    parts.append("</table>")
    for status, labels, notes, source in _alert_rows(s):
        parts.append(f"<h3>{escape(f'Alert ({status})' if status else 'Labels')}</h3><ul>")
        parts += [
            f"<li><code>{escape(k)}={escape(v)}</code></li>" for k, v in sorted(labels.items())
        ]
        parts += [f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in sorted(notes.items())]
        if source:
            parts.append(f"<li>{_a(source, 'source')}</li>")
        parts.append("</ul>")
    parts.append("<p>" + " | ".join(_a(url, label) for label, url in s.links) + "</p>")
    buttons = []
    if s.ack_url:
        buttons.append(_a(s.ack_url, "Acknowledge"))
    if s.resolve_url:
        buttons.append(_a(s.resolve_url, "Resolve"))
    if buttons:
        parts.append("<p><b>" + " &nbsp; ".join(buttons) + "</b></p>")
    return "\n".join(parts)


def _recipient(delivery: Delivery) -> Address:
    person = delivery.person
    email = person.get("email")
    if not email:
        raise InvalidRecipient(f"no email address for {delivery.row.person}")
    email = str(email)
    if not _ADDR.match(email):
        raise InvalidRecipient(f"invalid email address for {delivery.row.person}")
    name = _clean(str(person.get("name") or ""), 100)
    user, _, domain = email.rpartition("@")
    return Address(display_name=name, username=user, domain=domain)


def render_message(
    delivery: Delivery,
    *,
    signer: LinkSigner,
    now: datetime,
    from_address: str,
) -> EmailMessage:
    """The complete message for ``delivery``; InvalidRecipient when the person has no address."""
    to = _recipient(delivery)
    sections = sections_of(delivery, signer, now)
    tz = _tz(delivery.person)
    ids = [delivery.row.id, *(r.id for r in delivery.bundle)]
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to
    msg["Subject"] = subject_for(sections)
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = message_id(ids, from_address)
    msg["References"] = " ".join(incident_reference(s.incident.id, from_address) for s in sections)
    msg["X-Tocsin-Incident"] = ", ".join(_clean(s.incident.id) for s in sections)
    msg["X-Tocsin-Kind"] = delivery.row.kind
    # RFC 3834: out-of-office robots must not answer pages.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    footer = (
        "Sent by tocsin. Links act as you "
        f"({delivery.row.person}) and expire; opening one asks for confirmation."
    )
    text = "\n\n----\n\n".join(_text_section(s, tz) for s in sections)
    msg.set_content(f"{text}\n\n-- \n{footer}\n")
    html = "\n<hr>\n".join(_html_section(s, tz) for s in sections)
    msg.add_alternative(
        "<!DOCTYPE html>\n<html><body>\n"
        f"{html}\n<hr>\n<p><small>{escape(footer)}</small></p>\n</body></html>\n",
        subtype="html",
    )
    return msg
