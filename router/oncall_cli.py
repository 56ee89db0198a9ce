"""``tocsin oncall``: who is on call now and next, overrides, calendar feeds (against the API).

The parser and the command live here; ``router.cli`` hands in how to reach the server (its
``--url``/``--token`` arguments and its ``call``), so this module needs nothing from it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

__all__ = ["add_oncall_parser", "run_oncall"]

Call = Callable[[argparse.Namespace, str, str, "dict[str, Any] | None"], "dict[str, Any] | None"]


def add_oncall_parser(
    sub: Any,
    client_args: Callable[[argparse.ArgumentParser], None],
    instant: Callable[[str], object],
) -> None:
    """``tocsin oncall [now|overrides|override|remove|calendar]`` under ``sub``."""
    p = sub.add_parser("oncall", help="who is on call; overrides and calendar feeds")
    osub = p.add_subparsers(dest="oncall_command", parser_class=type(p))
    client_args(p)
    p.add_argument("--json", action="store_true")

    now = osub.add_parser("now", help="who is on call now and next (the default)")
    client_args(now)
    now.add_argument("--json", action="store_true")

    ls = osub.add_parser("overrides", help="a schedule's overrides not yet ended")
    ls.add_argument("schedule")
    ls.add_argument("--all", action="store_true", help="ended ones too")
    client_args(ls)
    ls.add_argument("--json", action="store_true")

    mk = osub.add_parser("override", help="put PERSON on call in SCHEDULE until --until")
    mk.add_argument("schedule")
    mk.add_argument("person")
    mk.add_argument("--until", required=True, type=instant, help="ISO 8601 end, with offset")
    mk.add_argument("--from", dest="start", type=instant, help="ISO 8601 start (default now)")
    mk.add_argument("--replaces", help="cover only where this person would be on call")
    mk.add_argument("--actor", help="on whose behalf (the token's name is who acts)")
    client_args(mk)

    rm = osub.add_parser("remove", help="remove an override by id")
    rm.add_argument("schedule")
    rm.add_argument("id")
    rm.add_argument("--actor", help="on whose behalf (the token's name is who acts)")
    client_args(rm)

    cal = osub.add_parser("calendar", help="a new ICS feed URL for a schedule or a person")
    which = cal.add_mutually_exclusive_group(required=True)
    which.add_argument("--schedule")
    which.add_argument("--person")
    client_args(cal)


def _when(shift: dict[str, Any] | None, key: str) -> str:
    if shift is None or shift.get(key) is None:
        return "?"
    return f"{shift[key]} ({shift[key + '_local']} local)"


def _print_view(data: dict[str, Any]) -> None:
    for s in data["schedules"]:
        now = ", ".join(x["person"] for x in s["now"]) or "nobody"
        print(f"schedule {s['schedule']} ({s['timezone']}): {now}")
        for x in s["now"]:
            print(f"  {x['person']} until {_when(x, 'end')}")
        nxt = s["next"]
        if nxt is not None:
            print(f"  next {nxt['person']} from {_when(nxt, 'start')}")
    for r in data["roles"]:
        line = f"role {r['role']}: {', '.join(r['now']) or 'nobody'}"
        if r["next_at"] is not None:
            line += f"; from {r['next_at']}: {', '.join(r['next']) or 'nobody'}"
        print(line)


def _print_overrides(rows: list[dict[str, Any]]) -> None:
    for o in rows:
        cover = f" (covering {o['replaces']})" if o["replaces"] else ""
        who = o["created_by"] + (f" for {o['on_behalf_of']}" if o["on_behalf_of"] else "")
        removed = f", removed by {o['removed_by']}" if o["removed_at"] else ""
        print(f"{o['id']}  {o['person']}{cover}  {o['start']} → {o['end']}  by {who}{removed}")


def run_oncall(args: argparse.Namespace, call: Call) -> int:
    cmd = args.oncall_command or "now"
    if cmd == "now":
        data = call(args, "GET", "/api/v1/oncall", None)
        if data is None:
            return 1
        print(json.dumps(data, indent=2)) if args.json else _print_view(data)
        return 0
    path = f"/api/v1/schedules/{quote(args.schedule, safe='')}/overrides"
    if cmd == "overrides":
        data = call(args, "GET", path + ("?ended=1" if args.all else ""), None)
        if data is None:
            return 1
        print(json.dumps(data["overrides"], indent=2)) if args.json else _print_overrides(
            data["overrides"]
        )
        return 0
    if cmd == "override":
        body: dict[str, Any] = {"person": args.person, "end": args.until.isoformat()}
        for key, value in (("start", args.start), ("replaces", args.replaces)):
            if value is not None:
                body[key] = value if isinstance(value, str) else value.isoformat()
        if args.actor:
            body["actor"] = args.actor
        data = call(args, "POST", path, body)
        if data is None:
            return 1
        _print_overrides([data])
        return 0
    if cmd == "remove":
        data = call(
            args,
            "DELETE",
            f"{path}/{quote(args.id, safe='')}",
            {"actor": args.actor} if args.actor else None,
        )
        if data is None:
            return 1
        print(f"override {data['id']} removed")
        return 0
    data = call(
        args,
        "POST",
        "/api/v1/calendars",
        {"schedule": args.schedule} if args.schedule else {"person": args.person},
    )
    if data is None:
        return 1
    # The URL holds the feed's secret: printed once, for the person who asked for it.
    print(f"calendar feed {data['id']} ({data['kind']} {data['name']}): {data['url']}")
    return 0
