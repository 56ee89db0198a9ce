"""Opsgenie's account (users, teams, schedules, overrides, escalations) as tocsin config.

Pure: ``translate`` takes the REST API's JSON, as Opsgenie documents it, and returns the config
sections (people, teams, schedules, policies) and a report of everything it could not carry
over, each with its Opsgenie id and why. What carries over means the same thing:

* A rotation is a tocsin layer: its participants take turns from ``startDate``, a ``daily`` or
  ``weekly`` turn handing off at the same wall time in the schedule's zone (across DST too), an
  ``hourly`` one every so many real hours; a time restriction becomes the layer's ``restrict``
  (one layer per distinct window, the turns counting on through restricted-out time, as in
  Opsgenie). Opsgenie notifies everyone on call in every rotation of a schedule; a tocsin
  schedule names one person at a time, so a schedule of several rotations becomes one tocsin
  schedule per rotation, and an escalation naming the schedule notifies all of them.
* An override is a tocsin override on the schedule of each rotation it names (all, if none).
* An escalation is a policy: each rule a step ``after`` its delay (from the alert, as in
  Opsgenie), ``unless`` acknowledged (``if-not-acked``) or resolved (``if-not-closed``); its
  ``repeat`` re-runs the steps ``count`` times, a round being the last rule's delay (of all the
  rules, translated or not) plus ``waitInterval``.

What tocsin has no place for is reported, not dropped: team member roles, notification rules
(how Opsgenie reaches each user), team routing rules, integrations (how alerts reach Opsgenie),
``resetRecipientStates``, ``closeAlertAfterAll``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Export", "Translation", "Untranslated", "translate"]

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNIT_MINUTES = {"minutes": 1, "hours": 60, "days": 1440}
_SHIFT_UNIT = {"hourly": ("h", 1), "daily": ("d", 1), "weekly": ("d", 7)}
Json = dict[str, Any]


@dataclass(frozen=True)
class Export:
    """An Opsgenie account as its REST API answers (each the ``data`` of the responses)."""

    users: list[Json] = field(default_factory=list)
    teams: list[Json] = field(default_factory=list)  # GET /v2/teams/{id}: with members
    schedules: list[Json] = field(default_factory=list)  # GET /v2/schedules?expand=rotation
    overrides: dict[str, list[Json]] = field(default_factory=dict)  # schedule id → overrides
    escalations: list[Json] = field(default_factory=list)
    # Read only to be reported: tocsin's config has no place for them.
    notification_rules: dict[str, list[Json]] = field(default_factory=dict)  # user id → rules
    routing_rules: dict[str, list[Json]] = field(default_factory=dict)  # team id → rules
    integrations: list[Json] = field(default_factory=list)


@dataclass(frozen=True)
class Untranslated:
    """Something of the account that tocsin's config does not carry (or carries changed)."""

    # user, team, schedule, rotation, override, escalation, rule (of an escalation),
    # notification rule, routing rule, integration
    kind: str
    id: str
    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} ({self.id}): {self.why}"


@dataclass
class Translation:
    """The config sections and the report."""

    people: dict[str, Json] = field(default_factory=dict)
    teams: dict[str, Json] = field(default_factory=dict)
    schedules: dict[str, Json] = field(default_factory=dict)
    policies: dict[str, Json] = field(default_factory=dict)
    report: list[Untranslated] = field(default_factory=list)
    # Opsgenie ids → tocsin names, for references between the sections.
    _people: dict[str, str] = field(default_factory=dict)
    _usernames: dict[str, str] = field(default_factory=dict)
    _teams: dict[str, str] = field(default_factory=dict)
    _schedules: dict[str, list[str]] = field(default_factory=dict)
    _rotations: dict[str, str] = field(default_factory=dict)
    _policies: dict[str, str] = field(default_factory=dict)

    def note(self, kind: str, obj: Mapping[str, Any], why: str) -> None:
        name = str(obj.get("name") or obj.get("username") or "")
        ident = str(obj.get("id") or obj.get("alias") or "")
        self.report.append(Untranslated(kind, ident, name, why))

    def sections(self) -> Json:
        return {
            k: v
            for k, v in (
                ("people", self.people),
                ("teams", self.teams),
                ("schedules", self.schedules),
                ("policies", self.policies),
            )
            if v
        }


def slug(text: str, taken: Iterable[str] = ()) -> str:
    """A tocsin name for ``text``: lower case, ``[a-z0-9_.-]``, unique among ``taken``."""
    base = re.sub(r"[^a-z0-9_.-]+", "-", text.strip().lower()).strip("-.") or "x"
    used, name, n = set(taken), base, 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    return name


def translate(export: Export, now: datetime) -> Translation:
    """The account as tocsin config sections, and what could not be carried over."""
    out = Translation()
    for user in export.users:
        _user(out, user)
    for schedule in export.schedules:
        _schedule(out, schedule, export.overrides.get(str(schedule.get("id")), []), now)
    for team in export.teams:
        _team(out, team, export.schedules)
    for escalation in export.escalations:
        _escalation(out, escalation)
    _not_imported(out, export)
    return out


def _zone(name: Any) -> str | None:
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return str(name)


def _user(out: Translation, user: Json) -> None:
    username = str(user.get("username", ""))
    name = slug(username.split("@")[0], out.people)
    zone = _zone(user.get("timeZone", "UTC"))
    if zone is None:
        out.note("user", user, f"time zone {user.get('timeZone')!r} is unknown; UTC is used")
    if user.get("blocked"):
        out.note("user", user, "blocked in Opsgenie (notified of nothing); imported all the same")
    role = str((user.get("role") or {}).get("name") or "User")
    if role != "User":
        out.note(
            "user",
            user,
            f"account role {role!r}: tocsin has no roles per person (API tokens and console "
            "users carry read or write scope); left out",
        )
    person: Json = {"name": user.get("fullName") or username, "timezone": zone or "UTC"}
    if "@" in username:
        person["email"] = username
    # Notification rules (how Opsgenie reaches each user) are not carried over: every person
    # is paged through the log channel until their channels are set.
    out.people[name] = person | {"channels": ["log"]}
    out._people[str(user.get("id"))] = name
    out._usernames[username] = name


def _person(out: Translation, ref: Mapping[str, Any]) -> str | None:
    return out._people.get(str(ref.get("id"))) or out._usernames.get(str(ref.get("username")))


def _team(out: Translation, team: Json, schedules: Sequence[Json]) -> None:
    name = slug(str(team.get("name", "")), out.teams)
    members = []
    for m in team.get("members") or []:
        person = _person(out, m.get("user") or {})
        if person is None:
            out.note("team", team, f"member {m.get('user')!r} is not an imported user; left out")
            continue
        if person not in members:
            members.append(person)
        # A plain ``user`` is what membership already says; any other role (``admin``, a
        # custom one) grants something in Opsgenie that a tocsin team cannot hold.
        role = m.get("role")
        if role and role != "user":
            out.note(
                "team",
                team,
                f"member {person} has the team role {role!r}: a tocsin team has members only "
                "(who may act is set under auth and the adapters' writers); left out",
            )
    entry: Json = {"members": members}
    owned = [
        n
        for s in schedules
        if (s.get("ownerTeam") or {}).get("id") == team.get("id")
        for n in out._schedules.get(str(s.get("id")), [])
    ]
    if len(owned) == 1:
        entry["schedule"] = owned[0]
    elif owned:
        out.note("team", team, f"owns {len(owned)} schedules; tocsin's team has one: none set")
    out.teams[name] = entry
    out._teams[str(team.get("id"))] = name


def _schedule(out: Translation, sched: Json, overrides: list[Json], now: datetime) -> None:
    zone = _zone(sched.get("timezone", "UTC"))
    if zone is None:
        out.note("schedule", sched, f"time zone {sched.get('timezone')!r} is unknown; skipped")
        return
    if sched.get("enabled") is False:
        out.note("schedule", sched, "disabled in Opsgenie; imported all the same")
    base = slug(str(sched.get("name", "")), out.schedules)
    rotations = [
        (rot, layers)
        for rot in sched.get("rotations") or []
        if (layers := _layers(out, rot, now)) is not None
    ]
    names: list[str] = []
    for rot, layers in rotations:
        name = base if len(rotations) == 1 else slug(f"{base}-{rot.get('name', '')}", out.schedules)
        out.schedules[name] = {"timezone": zone, "layers": layers, "overrides": []}
        out._rotations[str(rot.get("id"))] = name
        names.append(name)
    if not names:
        out.note("schedule", sched, "no rotation could be translated; skipped")
        return
    out._schedules[str(sched.get("id"))] = names
    for o in overrides:
        _override(out, o, names, now)
    for name in names:
        if not out.schedules[name]["overrides"]:
            del out.schedules[name]["overrides"]


def _layers(out: Translation, rot: Json, now: datetime) -> list[Json] | None:
    """The rotation as layers (one per restriction window), or None (reported)."""
    end = rot.get("endDate")
    if end and datetime.fromisoformat(str(end)) <= now:
        out.note("rotation", rot, f"ended {end}; skipped")
        return None
    unit = _SHIFT_UNIT.get(str(rot.get("type")))
    length = rot.get("length", 1)
    if unit is None or not isinstance(length, int) or length < 1:
        out.note("rotation", rot, f"type {rot.get('type')!r} length {length!r} is not known")
        return None
    members = []
    for p in rot.get("participants") or []:
        person = _person(out, p) if p.get("type") == "user" else None
        if person is None:
            out.note(
                "rotation",
                rot,
                f"participant of type {p.get('type')!r} ({p.get('name') or p.get('id') or '-'})"
                " cannot take a turn in tocsin (people only); left out, so the others' turns "
                "come round sooner",
            )
        else:
            members.append(person)
    if not members:
        out.note("rotation", rot, "no participant is an imported user; skipped")
        return None
    if end:
        out.note("rotation", rot, f"ends {end} in Opsgenie; tocsin's rotation does not end")
    if unit[0] == "h" and length % 24 == 0:
        out.note("rotation", rot, "hourly by whole days: hands off at wall time across DST")
    layer: Json = {
        "members": members,
        "start": str(rot.get("startDate")),
        "shift": f"{length * unit[1]}{unit[0]}",
    }
    windows = _windows(out, rot, rot.get("timeRestriction"))
    if windows is None:
        return [layer]
    return [layer | {"restrict": {"days": days, "hours": hours}} for hours, days in windows]


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _windows(
    out: Translation, rot: Json, restriction: Json | None
) -> list[tuple[str, list[str]]] | None:
    """Distinct ``(hours, days)`` windows of a time restriction; None: unrestricted."""
    if not restriction:
        return None
    kind = restriction.get("type")
    spans: list[tuple[int, int, int]] = []  # (weekday, start minute, end minute ≤ 1440)
    if kind == "time-of-day":
        r = restriction.get("restriction") or {}
        start = int(r.get("startHour", 0)) * 60 + int(r.get("startMin", 0))
        end = int(r.get("endHour", 0)) * 60 + int(r.get("endMin", 0))
        if start == end:
            return None
        for day in range(7):
            spans += [(day, start, end)] if start < end else [(day, start, 1440), (day, 0, end)]
    elif kind == "weekday-and-time-of-day":
        for r in restriction.get("restrictions") or []:
            spans += _weekday_spans(r)
    else:
        out.note("rotation", rot, f"time restriction {kind!r} is not known; ignored")
        return None
    by_hours: dict[str, list[str]] = {}
    for day, start, end in sorted(set(spans)):
        if end > start:
            by_hours.setdefault(f"{_hhmm(start)}-{_hhmm(end)}", []).append(_DAYS[day][:3])
    return list(by_hours.items())


def _weekday_spans(r: Json) -> list[tuple[int, int, int]]:
    """One weekday restriction (``startDay`` HH:MM to ``endDay`` HH:MM) cut at midnights."""
    first, last = _DAYS.index(str(r["startDay"])), _DAYS.index(str(r["endDay"]))
    start = int(r.get("startHour", 0)) * 60 + int(r.get("startMin", 0))
    end = int(r.get("endHour", 0)) * 60 + int(r.get("endMin", 0))
    span = (last - first) % 7
    if span == 0 and end > start:
        return [(first, start, end)]
    span = span or 7  # the same day, ending before it starts: round the whole week
    out = [(first, start, 1440)]
    out += [((first + d) % 7, 0, 1440) for d in range(1, span)]
    return out + ([((first + span) % 7, 0, end)] if end else [])


def _override(out: Translation, o: Json, names: list[str], now: datetime) -> None:
    end = datetime.fromisoformat(str(o.get("endDate")))
    if end <= now:
        return  # over: nothing to carry
    user = o.get("user") or {}
    person = _person(out, user) if user.get("type", "user") == "user" else None
    if person is None:
        out.note("override", o, f"its user {user!r} is not an imported user; skipped")
        return
    wanted = [str(r.get("id")) for r in o.get("rotations") or []]
    targets = [out._rotations[r] for r in wanted if r in out._rotations] if wanted else names
    if wanted and len(targets) < len(wanted):
        out.note("override", o, "names a rotation that was not translated; left off it")
    for name in targets:
        restricted = any("restrict" in layer for layer in out.schedules[name]["layers"])
        if restricted:
            out.note("override", o, f"on {name}: covers its whole window, restricted hours too")
        entry = {"person": person, "start": str(o.get("startDate")), "end": str(o.get("endDate"))}
        out.schedules[name]["overrides"].append(entry)


def _minutes(rule: Json) -> int:
    delay = rule.get("delay") or {}
    unit = _UNIT_MINUTES.get(str(delay.get("timeUnit", "minutes")), 1)
    return int(delay.get("timeAmount", 0)) * unit


def _escalation(out: Translation, esc: Json) -> None:
    name = slug(str(esc.get("name", "")), out.policies)
    rules: list[Json] = list(esc.get("rules") or [])
    steps: list[Json] = []
    dropped: list[str] = []
    for i, rule in enumerate(rules):
        targets = _recipient(out, esc, rule)
        if targets is None:
            dropped.append(f"rule {i + 1} (at {_minutes(rule)}m)")
            continue
        unless = "resolved" if rule.get("condition") == "if-not-closed" else "acknowledged"
        steps.append(
            {"name": f"rule {i + 1}", "after": f"{_minutes(rule)}m", "notify": targets}
            | {"unless": unless}
        )
    if not steps:
        out.note("escalation", esc, "no rule could be translated; skipped")
        return
    policy: Json = {
        "description": str(esc.get("description") or esc.get("name", "")),
        "steps": steps,
    }
    repeat = _repeat(out, esc, [_minutes(r) for r in rules], dropped)
    if repeat is not None:
        policy["repeat"] = repeat
    if (esc.get("repeat") or {}).get("closeAlertAfterAll"):
        out.note("escalation", esc, "closeAlertAfterAll: tocsin never closes an incident itself")
    out.policies[name] = policy
    out._policies[str(esc.get("id"))] = out._policies[f"name:{esc.get('name')}"] = name


def _repeat(out: Translation, esc: Json, delays: list[int], dropped: list[str]) -> Json | None:
    """The escalation's ``repeat`` as tocsin's ``{times, every}``, or None (no repeat).

    Opsgenie's Escalation API reference (docs.opsgenie.com/docs/escalation-api, "Escalation
    Repeat"; the same words in Atlassian's terraform-provider-atlassian-operations,
    internal/provider/schemaAttributes/escalation_resource_attributes.go) defines
    ``waitInterval`` as "the duration in minutes to repeat the escalation rules after processing
    the last escalation rule" ("0 should be given as a value to disable repeat option") and
    ``count`` (default 1) as "how many times the repeat action will be performed". So a round
    lasts the last rule's delay plus ``waitInterval``, and the last rule is the last of ALL the
    rules: Opsgenie still waits for one tocsin left out before it starts the next round.
    """
    repeat = esc.get("repeat") or {}
    wait = int(repeat.get("waitInterval") or 0)
    count = 1 if repeat.get("count") is None else int(repeat["count"])
    if repeat.get("resetRecipientStates"):
        out.note(
            "escalation",
            esc,
            "resetRecipientStates: Opsgenie reverts acknowledgements on each repeat, so an "
            "acknowledged alert is paged again; in tocsin an acknowledgement cancels the "
            "`unless: acknowledged` steps of every round (set the policy's `ack_timeout` to "
            "re-escalate an acknowledged incident)",
        )
    if wait <= 0 or count <= 0:
        return None
    last = max(delays, default=0)
    every = last + wait
    if dropped:
        was, it = ("was", "it pages") if len(dropped) == 1 else ("were", "they page")
        out.note(
            "escalation",
            esc,
            f"repeats every {every}m as in Opsgenie (last rule at {last}m + waitInterval "
            f"{wait}m), but {', '.join(dropped)} {was} left out: in tocsin {it} no one, in "
            "the first round or any repeat",
        )
    return {"times": count, "every": f"{every}m"}


def _recipient(out: Translation, esc: Json, rule: Json) -> list[str] | None:
    r = rule.get("recipient") or {}
    kind, notify = r.get("type"), rule.get("notifyType", "default")
    what = f"rule notifying {kind} {r.get('name') or r.get('username') or r.get('id')!r}"
    if kind == "user":
        person = _person(out, r)
        if person is not None:
            return [f"person:{person}"]
    elif kind == "schedule" and notify == "default":
        names = out._schedules.get(str(r.get("id")))
        if names:
            return [f"schedule:{n}" for n in names]
    elif kind == "schedule":
        out.note("rule", esc, f"{what} ({notify}): tocsin pages who is on call now only; left out")
        return None
    elif kind == "team":
        team = out._teams.get(str(r.get("id")))
        if team is not None:
            if notify != "default":
                out.note("rule", esc, f"{what} ({notify}): pages the team as tocsin's team target")
            return [f"team:{team}"]
    out.note("rule", esc, f"{what}: not an imported {kind or 'recipient'}; left out")
    return None


def _not_imported(out: Translation, export: Export) -> None:
    """Report what tocsin has no config for, each item with its Opsgenie id: how Opsgenie
    reaches people, how it routes a team's alerts, and where alerts come from."""
    for user_id, rules in _in_order(export.notification_rules, export.users):
        who = out._people.get(user_id, user_id)
        for r in rules:
            off = "" if r.get("enabled", True) else " (disabled)"
            out.note(
                "notification rule",
                r,
                f"{who}'s {r.get('actionType') or 'unknown'} rule{off}: how Opsgenie reaches a "
                "user is not imported; the person is paged through `log` until their "
                "`channels` are set",
            )
    for team_id, rules in _in_order(export.routing_rules, export.teams):
        team = out._teams.get(team_id, team_id)
        for r in rules:
            out.note("routing rule", r, f"team {team}: {_route(out, r)}")
    for i in export.integrations:
        off = "" if i.get("enabled", True) else " (disabled)"
        out.note(
            "integration",
            i,
            f"{i.get('type') or 'unknown'} integration{off}: how alerts reach Opsgenie is not "
            "imported; point its sender at tocsin (see Migrating from Opsgenie)",
        )


def _in_order(by_id: dict[str, list[Json]], owners: list[Json]) -> list[tuple[str, list[Json]]]:
    """``by_id``'s entries in the account's order of their owners (users, teams), then the rest:
    the report reads the same whether the account was exported or fetched."""
    ids = [str(o.get("id")) for o in owners]
    return [(i, by_id[i]) for i in ids if i in by_id] + sorted(
        (i, rules) for i, rules in by_id.items() if i not in ids
    )


_CRITERIA = {
    "match-all": "every alert",
    "match-any-condition": "alerts matching any of its conditions",
    "match-all-conditions": "alerts matching all its conditions",
}


def _route(out: Translation, rule: Json) -> str:
    """What a team routing rule does, and what to write in tocsin instead."""
    criteria = str((rule.get("criteria") or {}).get("type") or "match-all")
    which = _CRITERIA.get(criteria, f"alerts by {criteria!r}")
    if rule.get("isDefault"):
        which += " (its default rule)"
    notify = rule.get("notify") or {}
    kind, target = notify.get("type"), notify.get("name") or notify.get("id")
    policy = out._policies.get(str(notify.get("id"))) or out._policies.get(
        f"name:{notify.get('name')}"
    )
    if kind == "escalation" and policy is not None:
        instead = f"route them with a rule `policy: {policy}`"
    else:
        instead = "route them with a rule (`policy:`, `team:`)"
    to = "no one" if kind == "none" else f"{kind} {target!r}"
    return f"sends {which} to {to}; routing rules are not imported: {instead}"
