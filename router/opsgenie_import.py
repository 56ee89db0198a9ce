"""``tocsin import opsgenie``: an Opsgenie account's people, teams, schedules and escalations
as a tocsin config, with a report of what could not be carried over.

The account is read from exported files (``--from DIR``) or fetched live from Opsgenie's REST
API (``--api-url``, the key from an environment variable, never an argument: it would show in
``ps`` and shell history). ``DIR`` holds the API's answers:

* ``users.json``: ``GET /v2/users`` (every page's ``data`` under one ``data``),
* ``teams.json``: ``{"data": [GET /v2/teams/{id} data, ...]}`` (teams with their members),
* ``schedules.json``: ``GET /v2/schedules?expand=rotation``,
* ``overrides/<schedule id>.json``: ``GET /v2/schedules/{id}/overrides``,
* ``escalations.json``: ``GET /v2/escalations``;
* ``notification-rules/<user id>.json``: ``GET /v2/users/{id}/notification-rules``,
  ``routing-rules/<team id>.json``: ``GET /v2/teams/{id}/routing-rules``, ``integrations.json``:
  ``GET /v2/integrations`` (each optional; read only to be listed in the report, since tocsin's
  config has no place for them).

Live, the same requests are made; ``paging.next`` is followed, and a 429 (Opsgenie's rate
limit) is waited out (``X-RateLimit-Period-In-Sec``, at most a minute) and retried.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from router.opsgenie_translate import Export, Translation, translate

__all__ = ["ImportFailed", "add_import_parser", "fetch", "read_dir", "run_import"]

_RETRIES = 5
_MAX_WAIT = 60.0
Json = dict[str, Any]


class ImportFailed(Exception):
    """The account could not be read (a file, a request); the message says which and why."""


def add_import_parser(sub: Any, instant: Callable[[str], object]) -> None:
    """``tocsin import opsgenie`` under ``sub``; ``instant`` parses ``--at`` as the CLI's other
    instants are parsed (an offset is required)."""
    imp = sub.add_parser("import", help="bring schedules and escalations from another tool")
    isub = imp.add_subparsers(dest="import_source", required=True, parser_class=type(imp))
    og = isub.add_parser("opsgenie", help="people, teams, schedules, escalations from Opsgenie")
    src = og.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="from_dir", help="a directory of exported REST API answers")
    src.add_argument("--api-url", help="fetch live from this base URL (https://api.opsgenie.com)")
    og.add_argument(
        "--api-key-env",
        default="OPSGENIE_API_KEY",
        help="the environment variable holding the API key (default OPSGENIE_API_KEY)",
    )
    og.add_argument("--out", help="write the config here (default: standard output)")
    og.add_argument("--report", help="also write the report as JSON here")
    og.add_argument(
        "--at",
        type=instant,
        help="translate as of this ISO 8601 instant (default now): what ended is left out",
    )


def _data(doc: Any, where: str) -> Any:
    if not isinstance(doc, dict) or "data" not in doc:
        raise ImportFailed(f"{where}: expected an Opsgenie answer with `data`")
    return doc["data"]


def _read(path: Path) -> Any:
    try:
        return _data(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError) as e:
        raise ImportFailed(f"{path}: {e}") from None


def _optional(path: Path) -> list[Json]:
    return list(_read(path)) if path.exists() else []


def _by_id(folder: Path) -> dict[str, list[Json]]:
    """``<id>.json`` files of a folder (none if it is absent), by id."""
    if not folder.is_dir():
        return {}
    return {f.stem: list(_read(f)) for f in sorted(folder.glob("*.json"))}


def read_dir(root: Path) -> Export:
    """The account from exported files (the layout in this module's docstring)."""
    return Export(
        users=list(_read(root / "users.json")),
        teams=_optional(root / "teams.json"),
        schedules=list(_read(root / "schedules.json")),
        overrides=_by_id(root / "overrides"),
        escalations=_optional(root / "escalations.json"),
        notification_rules=_by_id(root / "notification-rules"),
        routing_rules=_by_id(root / "routing-rules"),
        integrations=_optional(root / "integrations.json"),
    )


class _Client:
    """GETs with the GenieKey, 429 waited out, pages followed."""

    def __init__(self, base: str, key: str, sleep: Callable[[float], None]) -> None:
        self.base = base.rstrip("/")
        self.key = key
        self.sleep = sleep

    def get(self, url: str) -> Json:
        if url.startswith("/"):
            url = self.base + url
        req = urllib.request.Request(
            url, headers={"Authorization": f"GenieKey {self.key}", "Accept": "application/json"}
        )
        for _ in range(_RETRIES):
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    body = json.loads(r.read())
                    if not isinstance(body, dict):
                        raise ImportFailed(f"GET {_path(url)}: not a JSON object")
                    return body
            except urllib.error.HTTPError as e:
                if e.code != 429:
                    raise ImportFailed(f"GET {_path(url)}: {e.code} {_message(e)}") from None
                self.sleep(_wait(e.headers.get("X-RateLimit-Period-In-Sec")))
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise ImportFailed(f"GET {_path(url)}: {e}") from None
        raise ImportFailed(f"GET {_path(url)}: still rate limited after {_RETRIES} tries")

    def pages(self, path: str) -> list[Json]:
        out: list[Json] = []
        url: str | None = path
        while url:
            body = self.get(url)
            out += list(_data(body, f"GET {_path(url)}"))
            nxt = (body.get("paging") or {}).get("next")
            url = str(nxt) if nxt else None
        return out


def _path(url: str) -> str:
    # Only the path in messages: a base URL could carry credentials of a proxy.
    return urllib.parse.urlsplit(url).path or url


def _message(e: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(e.read()).get("message", e.reason))
    except (ValueError, AttributeError, OSError):
        return str(e.reason)


def _wait(header: str | None) -> float:
    try:
        return min(max(float(header or 1), 0.0), _MAX_WAIT)
    except ValueError:
        return 1.0


def fetch(
    base: str, key: str, sleep: Callable[[float], None] = time.sleep, page_size: int = 100
) -> Export:
    """The account fetched live from Opsgenie's REST API at ``base``."""
    c = _Client(base, key, sleep)
    users = c.pages(f"/v2/users?limit={page_size}&offset=0")
    teams = [
        _data(c.get(f"/v2/teams/{_q(t['id'])}?identifierType=id"), "team")
        for t in c.pages("/v2/teams")
    ]
    schedules = c.pages("/v2/schedules?expand=rotation")
    overrides = {
        str(s["id"]): c.pages(f"/v2/schedules/{_q(s['id'])}/overrides?scheduleIdentifierType=id")
        for s in schedules
    }
    return Export(
        users,
        teams,
        schedules,
        overrides,
        c.pages("/v2/escalations"),
        notification_rules={
            str(u["id"]): c.pages(f"/v2/users/{_q(u['id'])}/notification-rules") for u in users
        },
        routing_rules={
            str(t["id"]): c.pages(f"/v2/teams/{_q(t['id'])}/routing-rules?teamIdentifierType=id")
            for t in teams
        },
        integrations=c.pages("/v2/integrations"),
    )


def _q(ident: Any) -> str:
    return urllib.parse.quote(str(ident), safe="")


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people to read and edit: no ``&id001`` anchors for shared lists."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(t: Translation, source: str, now: datetime) -> str:
    """The config file: a header naming what was not carried over, then the sections."""
    head = [
        f"# Imported from Opsgenie ({source}) by `tocsin import opsgenie`, {now:%Y-%m-%dT%H:%MZ}.",
        "# People are paged through `log` until their channels are set (Opsgenie's notification",
        "# rules are not imported); route alerts to a policy with a rule (`policy: <name>`).",
    ]
    if t.report:
        head.append(f"# Not translated ({len(t.report)}):")
        head += [f"#   {item}" for item in t.report]
    doc = {"auth": {"receiver": {"bearer_tokens": ["${TOCSIN_RECEIVER_TOKEN}"]}}} | t.sections()
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(head) + "\n" + body


def run_import(args: argparse.Namespace) -> int:
    now = args.at or datetime.now(UTC)
    try:
        if args.from_dir:
            export, source = read_dir(Path(args.from_dir)), args.from_dir
        else:
            key = os.environ.get(args.api_key_env, "")
            if not key:
                print(f"tocsin: set the API key in ${args.api_key_env}", file=sys.stderr)
                return 2
            export, source = fetch(args.api_url, key), args.api_url
    except ImportFailed as e:
        print(f"tocsin: {e}", file=sys.stderr)
        return 1
    t = translate(export, now)
    text = render(t, source, now)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.report:
        items = [vars(item) for item in t.report]
        Path(args.report).write_text(json.dumps(items, indent=2) + "\n", encoding="utf-8")
    for item in t.report:
        print(f"not translated: {item}", file=sys.stderr)
    counts = ", ".join(f"{len(v)} {k}" for k, v in t.sections().items())
    print(f"imported {counts}; {len(t.report)} item(s) not translated", file=sys.stderr)
    return 0
