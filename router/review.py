"""``tocsin review ID``: a post-incident review draft in markdown, from the incident's timeline.

The sections follow the seeds' post-incident review template (summary, impact, timeline, root
cause, resolution, action items, lessons learned); what tocsin knows is filled in, the rest is
left as prompts for the review meeting.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

__all__ = ["render_review"]


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def _dur(td: timedelta | None) -> str:
    if td is None:
        return "n/a"
    secs = int(td.total_seconds())
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _target(level: dict[str, Any], key: str) -> timedelta | None:
    v = level.get(key)
    return timedelta(seconds=float(v)) if v is not None else None


def _verdict(took: timedelta | None, target: timedelta | None) -> str:
    if took is None or target is None:
        return ""
    return " (within target)" if took <= target else f" (**missed** the {_dur(target)} target)"


def _facts(inc: dict[str, Any]) -> list[str]:
    """The header: who, what, and how long each stage took against the matrix's targets."""
    opened = _dt(inc["opened_at"])
    acked = _dt(inc.get("acknowledged_at"))
    mitigated = _dt(inc.get("mitigated_at"))
    resolved = _dt(inc.get("resolved_at"))
    assert opened is not None
    tta = acked - opened if acked else None
    ttm = mitigated - opened if mitigated else None
    ttr = resolved - opened if resolved else None
    level = inc.get("level", {})
    review_due = _target(level, "review_due")
    lines = [
        f"# Post-Incident Review: #{inc['number']} {inc['title']}",
        "",
        f"- **Incident**: `{inc['id']}` (key `{inc['key']}`)",
        f"- **Severity**: {inc['severity_name']} ({inc['severity']})",
        f"- **Status**: {inc['status']}",
        f"- **Team**: {inc.get('team') or '—'}",
        f"- **Policy**: {inc['policy']}",
        f"- **Detected**: {opened.isoformat()}",
        f"- **Acknowledged**: {acked.isoformat() if acked else '—'}",
        f"- **Mitigated**: {mitigated.isoformat() if mitigated else '—'}",
        f"- **Resolved**: {resolved.isoformat() if resolved else '—'}",
        f"- **Time to acknowledge**: {_dur(tta)}{_verdict(tta, _target(level, 'ack_target'))}",
        f"- **Time to mitigate**: {_dur(ttm)}",
        f"- **Time to resolve**: {_dur(ttr)}{_verdict(ttr, _target(level, 'resolve_target'))}",
    ]
    if review_due is not None and resolved is not None:
        lines.append(f"- **Review due**: {(resolved + review_due).isoformat()}")
    return lines


_IMPACT = [
    "",
    "## Summary",
    "",
    "_What happened, in two or three sentences._",
    "",
    "## Impact",
    "",
    "_Users affected, duration, services and data involved._",
    "",
    "Alerts:",
    "",
]
_TIMELINE = [
    "",
    "## Timeline",
    "",
    "| Time (UTC) | Event | Actor | Source | Details |",
    "|---|---|---|---|---|",
]
_PROMPTS = [
    "",
    "## Root Cause",
    "",
    "_Why did it happen? Five whys._",
    "",
    "## Resolution",
    "",
    "_What restored service; what is still temporary._",
    "",
    "## Action Items",
    "",
    "| Action | Owner | Due | Priority |",
    "|---|---|---|---|",
    "| | | | |",
    "",
    "## Lessons Learned",
    "",
    "- What went well:",
    "- What went wrong:",
    "- Where we got lucky:",
    "",
]


def render_review(inc: dict[str, Any]) -> str:
    """Markdown review draft for one incident as returned by ``GET /api/v1/incidents/{id}``."""
    lines = _facts(inc) + _IMPACT
    for a in inc.get("alerts", []):
        name = a["labels"].get("alertname", a["fingerprint"])
        summary = a["annotations"].get("summary", "")
        lines.append(f"- `{name}` {summary} — {a['status']} (started {a['starts_at']})")
    lines += _TIMELINE
    for e in inc.get("timeline", []):
        msg = str(e["message"]).replace("|", "\\|")
        lines.append(f"| {e['at']} | {e['kind']} | {e['actor']} | {e['source']} | {msg} |")
    lines += _PROMPTS
    return "\n".join(lines)
