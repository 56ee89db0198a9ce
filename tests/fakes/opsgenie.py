"""A local fake of Opsgenie's REST API (the configuration reads ``tocsin import opsgenie`` makes).

It serves an account kept as the API's own answers (tests/fakes/data/opsgenie_account, shaped
as Opsgenie's documentation shows them; sources in tests/fakes/data/SOURCES.md) the way Opsgenie
does:

* ``Authorization: GenieKey <key>`` or 401 ``{"message": "Could not authenticate", ...}``;
* ``GET /v2/users`` pages by ``limit`` (default 20, at most 500) and ``offset``, with
  ``totalCount`` and ``paging`` links (``next`` only while there is more);
* ``GET /v2/teams`` lists teams without members, ``GET /v2/teams/{id}`` has them;
* ``GET /v2/schedules`` has rotations only with ``expand=rotation``;
* ``GET /v2/schedules/{id}/overrides``, ``GET /v2/escalations``;
* ``GET /v2/users/{id}/notification-rules`` (each rule's ``id``, ``name``, ``actionType``,
  ``order``, ``enabled``), ``GET /v2/teams/{id}/routing-rules`` (``id``, ``name``,
  ``isDefault``, ``order``, ``criteria``, ``timezone``, ``notify``), ``GET /v2/integrations``
  (``id``, ``name``, ``enabled``, ``type``); a user or team that is not there is a 404;
* rate limiting: the requests numbered in ``throttle`` (1 = the first) are answered 429 with
  ``X-RateLimit-State: THROTTLED``, ``X-RateLimit-Reason`` and ``X-RateLimit-Period-In-Sec``.

It runs in a thread (the importer is synchronous) on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = ["ACCOUNT", "FakeOpsgenie"]

ACCOUNT = Path(__file__).parent / "data" / "opsgenie_account"
_THROTTLED = "You are making too many requests! To avoid errors, we recommend you limit requests."


class FakeOpsgenie:
    """Opsgenie's REST API over the account in ``root``, for the API key ``key``."""

    def __init__(self, key: str, root: Path = ACCOUNT, throttle: Collection[int] = ()) -> None:
        self.key = key
        self.throttle = set(throttle)
        self.requests: list[tuple[int, str]] = []  # (status, path with query)
        self._lock = threading.Lock()
        self._load(root)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _load(self, root: Path) -> None:
        def data(name: str) -> Any:
            return json.loads((root / name).read_text(encoding="utf-8"))["data"]

        self.users: list[dict[str, Any]] = data("users.json")
        self.teams: list[dict[str, Any]] = data("teams.json")
        self.schedules: list[dict[str, Any]] = data("schedules.json")
        self.escalations: list[dict[str, Any]] = data("escalations.json")
        self.overrides = _by_id(root / "overrides")
        self.notification_rules = _by_id(root / "notification-rules")
        self.routing_rules = _by_id(root / "routing-rules")
        self.integrations: list[dict[str, Any]] = data("integrations.json")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- answers ---------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str], auth: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            number = len(self.requests) + 1
            status, body = self._answer(number, path, query, auth)
            self.requests.append((status, path + ("?" + urlencode(query) if query else "")))
        return status, body | {"took": 0.004, "requestId": str(uuid.uuid4())}

    def _answer(
        self, number: int, path: str, query: dict[str, str], auth: str
    ) -> tuple[int, dict[str, Any]]:
        scheme, _, cred = auth.partition(" ")
        if scheme != "GenieKey" or cred != self.key:
            return 401, {"message": "Could not authenticate"}
        if number in self.throttle:
            return 429, {"message": _THROTTLED}
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["v2", "users"]:
            return 200, self._users(query)
        if parts[:2] == ["v2", "users"] and parts[3:] == ["notification-rules"]:
            found = [u for u in self.users if parts[2] in (u["id"], u["username"])]
            if not found:
                return _missing("User")
            return 200, {"data": self.notification_rules.get(found[0]["id"], [])}
        if parts == ["v2", "teams"]:
            return 200, {"data": [_without(t, "members") for t in self.teams]}
        if parts[:2] == ["v2", "teams"] and len(parts) in (3, 4):
            found = [t for t in self.teams if parts[2] in (t["id"], t["name"])]
            if not found:
                return _missing("Team")
            if parts[3:] == ["routing-rules"]:
                return 200, {"data": self.routing_rules.get(found[0]["id"], [])}
            return (200, {"data": found[0]}) if len(parts) == 3 else _nowhere()
        if parts == ["v2", "integrations"]:
            return 200, {"data": self.integrations}
        if parts == ["v2", "schedules"]:
            expand = "rotation" in query.get("expand", "").split(",")
            shown = [s if expand else _without(s, "rotations") for s in self.schedules]
            return 200, {"data": shown, "expandable": ["rotation"]}
        if parts[:2] == ["v2", "schedules"] and len(parts) == 4 and parts[3] == "overrides":
            found = [s for s in self.schedules if parts[2] in (s["id"], s["name"])]
            if not found:
                return _missing("Schedule")
            return 200, {"data": self.overrides.get(found[0]["id"], [])}
        if parts == ["v2", "escalations"]:
            return 200, {"data": self.escalations}
        return _nowhere()

    def _users(self, query: dict[str, str]) -> dict[str, Any]:
        limit = min(max(int(query.get("limit", "20")), 1), 500)
        offset = max(int(query.get("offset", "0")), 0)
        total = len(self.users)

        def link(at: int) -> str:
            return f"{self.url}/v2/users?" + urlencode({"limit": limit, "offset": at})

        paging = {"first": link(0), "last": link(max(total - 1, 0) // limit * limit)}
        if offset + limit < total:
            paging["next"] = link(offset + limit)
        if offset > 0:
            paging["prev"] = link(max(offset - limit, 0))
        page = self.users[offset : offset + limit]
        return {"totalCount": total, "data": page, "paging": paging}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                status, body = fake.answer(url.path, query, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Request-ID", str(body["requestId"]))
                if status == 429:
                    self.send_header("X-RateLimit-State", "THROTTLED")
                    self.send_header("X-RateLimit-Reason", "INTEGRATION")
                    self.send_header("X-RateLimit-Period-In-Sec", "1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


def _missing(what: str) -> tuple[int, dict[str, Any]]:
    return 404, {"message": f"{what} not found"}


def _nowhere() -> tuple[int, dict[str, Any]]:
    return 404, {"message": "Could not find the requested resource"}


def _by_id(folder: Path) -> dict[str, Any]:
    """``<id>.json`` answers of a folder (none if absent), by id."""
    if not folder.is_dir():
        return {}
    return {
        f.stem: json.loads(f.read_text(encoding="utf-8"))["data"] for f in folder.glob("*.json")
    }
