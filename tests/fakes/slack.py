"""A fake Slack: the Web API methods tocsin calls, and signed requests towards tocsin.

A real aiohttp server on 127.0.0.1 (random port); point slack_sdk at ``api_url`` (``base_url``,
ending in ``/api/``). It follows Slack's documented contract (api.slack.com/web):

- a method is ``/api/<method>``; arguments come from the query string, a form body or a JSON
  body, as slack_sdk sends them; the token is ``Authorization: Bearer xoxb-…`` (or a ``token``
  argument): none → ``not_authed``, a wrong one → ``invalid_auth``;
- errors are HTTP 200 with ``{"ok": false, "error": "<code>"}``; a rate limit is HTTP 429 with
  ``Retry-After`` (seconds) and ``{"ok": false, "error": "ratelimited"}`` (``script``);
- every request is checked against Slack's published OpenAPI document and Block Kit limits
  (``slack_schema``), and every answer the fake builds against the method's response schema;
  what fails is kept in ``violations`` and ``close()`` fails the test unless it said
  ``expect_violations()``.

State: users (``add_user``), channels (``add_channel``; ``conversations.create`` checks Slack's
naming rules: lowercase letters, digits, ``-`` and ``_``, at most 80 characters, unique;
``conversations.invite`` naming anyone in already invites nobody: ``already_in_channel``), the
messages posted and edited (``messages``, with every edit kept), ephemeral messages, members and
archived flags. Each call is kept in ``calls``, stamped with ``clock`` when given one.
``signed`` builds the headers Slack signs its requests with (``v0``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from tests.fakes.serving import LocalFake
from tests.fakes.slack_schema import request_violations, response_violations

__all__ = [
    "BOT_TOKEN",
    "SIGNING_SECRET",
    "Call",
    "FakeSlack",
    "SlackMessage",
    "SlackScripted",
    "block_action",
    "signed",
    "slash_command",
]

BOT_TOKEN = "xoxb-1111111111-2222222222-fakeBotTokenValue00"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # Slack's own documentation example
_NAME_RE = re.compile(r"^[a-z0-9_-]+$")


@dataclass(frozen=True)
class Call:
    """One Web API call as the fake received it: the method and its merged arguments."""

    method: str
    args: Mapping[str, Any]
    headers: Mapping[str, str]
    answer: Mapping[str, Any]
    status: int
    at: datetime | None = None  # the fake's ``clock`` when the call came (if it was given one)


@dataclass(frozen=True)
class SlackScripted:
    """A canned answer for the next call of a method."""

    status: int = 200
    body: Mapping[str, Any] = field(default_factory=lambda: {"ok": True})
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def rate_limited(cls, retry_after: int = 30) -> SlackScripted:
        return cls(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})

    @classmethod
    def error(cls, code: str) -> SlackScripted:
        return cls(200, {"ok": False, "error": code})

    @classmethod
    def server_error(cls, status: int = 503) -> SlackScripted:
        return cls(status, {"ok": False, "error": "service_unavailable"})


@dataclass
class SlackMessage:
    """A message the bot posted; ``edits`` holds each version ``chat.update`` replaced."""

    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Channel:
    id: str
    name: str
    is_im: bool = False
    is_archived: bool = False
    members: list[str] = field(default_factory=list)
    created: int = 0


class FakeSlack(LocalFake[str]):
    """Start with ``await fake.start()``; stop with ``await fake.close()``."""

    def __init__(self, *, bot_token: str = BOT_TOKEN, bot_user: str = "UBOT00001") -> None:
        super().__init__("calls Slack would refuse were made")
        self.bot_token = bot_token
        self.bot_user = bot_user
        self.calls: list[Call] = []
        # Stamps each call (the app's virtual clock, to count calls per second of its time).
        self.clock: Callable[[], datetime] | None = None
        self.messages: list[SlackMessage] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, _Channel] = {}
        self._script: dict[str, deque[SlackScripted]] = {}
        self._ts = 1_700_000_000
        self._ids = 0

    @property
    def api_url(self) -> str:
        """The ``base_url`` slack_sdk takes (with its trailing slash)."""
        return f"{self.url}/api/"

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        base = await self._serve(app)
        self.url = base
        return self

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids:08d}"

    def add_user(self, email: str, name: str = "") -> str:
        """A workspace member; their user id."""
        uid = self._id("U")
        handle = name or email.split("@")[0]
        self.users[uid] = {
            "id": uid,
            "team_id": "T00000001",
            "name": handle,
            "deleted": False,
            "real_name": handle,
            "is_bot": False,
            "profile": {"email": email, "real_name": handle, "display_name": handle},
        }
        return uid

    def add_channel(self, name: str, *, member: bool = True) -> str:
        """A public channel (the bot a member unless ``member`` is False); its id."""
        cid = self._id("C")
        self.channels[cid] = _Channel(cid, name, members=[self.bot_user] if member else [])
        return cid

    def channel_named(self, name: str) -> _Channel | None:
        return next((c for c in self.channels.values() if c.name == name.lstrip("#")), None)

    def script(self, method: str, *answers: SlackScripted) -> None:
        """Answer the next calls of ``method`` with these, in order."""
        self._script.setdefault(method, deque()).extend(answers)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.status == 200]

    def top_messages(self, channel: str) -> list[SlackMessage]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    def thread(self, channel: str, ts: str) -> list[SlackMessage]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts == ts]

    # -- the Web API --------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> tuple[dict[str, Any], bool]:
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        ctype = request.content_type
        if ctype == "application/json" and raw:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("json_not_object")
            args.update(body)
            return args, False
        if raw:
            args.update(parse_qsl(raw.decode(), keep_blank_values=True))
        return args, True

    def _token_error(self, request: web.Request, args: dict[str, Any]) -> str | None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        if not token:
            return "not_authed"
        return None if token == self.bot_token else "invalid_auth"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            args, form = await self._args(request)
        except ValueError:
            return self._reply(method, {}, request, {"ok": False, "error": "invalid_json"})
        scripted = self._script.get(method)
        if scripted:
            s = scripted.popleft()
            self.calls.append(
                Call(method, args, dict(request.headers), s.body, s.status, self._now())
            )
            return web.json_response(dict(s.body), status=s.status, headers=dict(s.headers))
        token_error = self._token_error(request, args)
        args.pop("token", None)
        errors = request_violations(method, args, form=form)
        self.violations += errors
        if token_error is not None:
            return self._reply(method, args, request, {"ok": False, "error": token_error})
        if errors:
            code = "invalid_arg_name" if "unknown argument" in errors[0] else "invalid_arguments"
            return self._reply(method, args, request, {"ok": False, "error": code}, check=False)
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._reply(method, args, request, {"ok": False, "error": "unknown_method"})
        body: dict[str, Any] = handler(args)
        return self._reply(method, args, request, body)

    def _reply(
        self,
        method: str,
        args: dict[str, Any],
        request: web.Request,
        body: dict[str, Any],
        *,
        check: bool = True,
    ) -> web.Response:
        if check:
            self.violations += response_violations(method, body)
        self.calls.append(Call(method, args, dict(request.headers), body, 200, self._now()))
        return web.json_response(body)

    def _now(self) -> datetime | None:
        return self.clock() if self.clock is not None else None

    def _next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts}.000100"

    def _channel(self, ref: str) -> _Channel | None:
        """By id, ``#name``/name, or a user id (the bot's direct message with that user)."""
        if ref in self.channels:
            return self.channels[ref]
        if ref in self.users:
            found = next((c for c in self.channels.values() if c.is_im and ref in c.members), None)
            if found is None:
                found = _Channel(self._id("D"), "", is_im=True, members=[ref, self.bot_user])
                self.channels[found.id] = found
            return found
        return self.channel_named(ref)

    @staticmethod
    def _blocks(args: Mapping[str, Any]) -> list[Any]:
        blocks = args.get("blocks", [])
        return list(json.loads(blocks) if isinstance(blocks, str) else blocks)

    def _postable(self, args: Mapping[str, Any]) -> tuple[_Channel | None, str | None]:
        ch = self._channel(str(args.get("channel", "")))
        if ch is None:
            return None, "channel_not_found"
        if ch.is_archived:
            return None, "is_archived"
        if not ch.is_im and self.bot_user not in ch.members:
            return None, "not_in_channel"
        if not args.get("text") and not args.get("blocks"):
            return None, "no_text"
        if len(str(args.get("text", ""))) > 40_000:
            return None, "msg_too_long"
        return ch, None

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ch, error = self._postable(args)
        if ch is None:
            return {"ok": False, "error": error}
        thread_ts = args.get("thread_ts")
        if thread_ts and not any(m.ts == thread_ts and m.channel == ch.id for m in self.messages):
            return {"ok": False, "error": "thread_not_found"}
        msg = SlackMessage(ch.id, self._next_ts(), str(args.get("text", "")), self._blocks(args))
        msg.thread_ts = thread_ts
        self.messages.append(msg)
        return {"ok": True, "channel": ch.id, "ts": msg.ts, "message": self._message(msg)}

    def _message(self, m: SlackMessage) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "text": m.text, "ts": m.ts}
        out |= {"user": self.bot_user, "blocks": m.blocks} if m.blocks else {}
        return out | ({"thread_ts": m.thread_ts} if m.thread_ts else {})

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        cid = str(args.get("channel", ""))
        if cid not in self.channels:  # chat.update takes the channel's id only
            return {"ok": False, "error": "channel_not_found"}
        msg = next((m for m in self.messages if m.channel == cid and m.ts == args["ts"]), None)
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        msg.edits.append({"text": msg.text, "blocks": msg.blocks})
        msg.text, msg.blocks = str(args.get("text", "")), self._blocks(args)
        # The document types this answer's ``message.blocks`` as an object (its own messages
        # have an array): the message is answered without them, which it allows.
        message = {"type": "message", "text": msg.text, "ts": msg.ts}
        return {"ok": True, "channel": cid, "ts": msg.ts, "text": msg.text, "message": message}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        ch, error = self._postable(args)
        if ch is None:
            return {"ok": False, "error": error}
        if args["user"] not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        self.ephemeral.append(dict(args) | {"channel": ch.id})
        return {"ok": True, "message_ts": self._next_ts()}

    def _user_json(self, uid: str) -> dict[str, Any]:
        return dict(self.users[uid])

    def _m_users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args["email"]).lower()
        for uid, u in self.users.items():
            if u["profile"]["email"].lower() == email and not u["deleted"]:
                return {"ok": True, "user": self._user_json(uid)}
        return {"ok": False, "error": "users_not_found"}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = str(args.get("user", ""))
        if uid not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": self._user_json(uid)}

    def _conversation(self, ch: _Channel) -> dict[str, Any]:
        return {
            "id": ch.id,
            "name": ch.name,
            "is_channel": True,
            "is_archived": ch.is_archived,
            "created": ch.created,
            "creator": self.bot_user,
            "is_general": False,
            "is_member": self.bot_user in ch.members,
            "name_normalized": ch.name,
        }

    def _m_conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name", ""))
        if not name:
            return {"ok": False, "error": "invalid_name_required"}
        if len(name) > 80:
            return {"ok": False, "error": "invalid_name_maxlength"}
        if not _NAME_RE.match(name):
            return {"ok": False, "error": "invalid_name_specials"}
        if self.channel_named(name) is not None:
            return {"ok": False, "error": "name_taken"}
        cid = self.add_channel(name)
        self.channels[cid].created = int(time.time())
        return {"ok": True, "channel": self._conversation(self.channels[cid])}

    def _m_conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channels.get(str(args.get("channel", "")))
        if ch is None:
            return {"ok": False, "error": "channel_not_found"}
        if ch.is_archived:
            return {"ok": False, "error": "is_archived"}
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if not users:
            return {"ok": False, "error": "no_user"}
        if any(u not in self.users for u in users):
            return {"ok": False, "error": "user_not_found"}
        if any(u in ch.members for u in users):
            # Without ``force`` (added to Slack's API after the vendored document, and not
            # sent by tocsin) one ID that cannot be invited stops the call: nobody is invited.
            return {"ok": False, "error": "already_in_channel"}
        ch.members += users
        return {"ok": True, "channel": self._conversation(ch)}

    def _m_conversations_archive(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channels.get(str(args.get("channel", "")))
        if ch is None:
            return {"ok": False, "error": "channel_not_found"}
        if ch.is_archived:
            return {"ok": False, "error": "already_archived"}
        ch.is_archived = True
        return {"ok": True}


# -- requests Slack sends to the app -----------------------------------------------------------


def signed(body: bytes, *, secret: str = SIGNING_SECRET, at: float | None = None) -> dict[str, str]:
    """The headers Slack sends with ``body``: ``X-Slack-Request-Timestamp`` and the ``v0``
    ``X-Slack-Signature`` (HMAC-SHA256 of ``v0:<timestamp>:<body>``)."""
    ts = str(int(at if at is not None else time.time()))
    try:
        sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    except UnicodeDecodeError:  # slack_sdk signs text; the same HMAC over any bytes
        mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256)
        sig = "v0=" + mac.hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sig,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def block_action(
    user_id: str,
    action_id: str,
    value: str,
    *,
    channel: str = "C00000001",
    message_ts: str = "1700000001.000100",
    trigger_id: str = "1111.2222.abcd",
) -> bytes:
    """The body of a ``block_actions`` interaction (a button click), form-encoded as Slack sends
    it: one ``payload`` field holding the JSON document."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T00000001", "domain": "example"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": "T00000001"},
        "api_app_id": "A00000001",
        "token": "verification-token-is-deprecated",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "trigger_id": trigger_id,
        "channel": {"id": channel, "name": "incidents"},
        "message": {"type": "message", "ts": message_ts, "text": ""},
        "response_url": "https://hooks.slack.com/actions/T00000001/1/xyz",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "actions",
                "value": value,
                "action_ts": message_ts,
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def slash_command(user_id: str, text: str, *, channel: str = "C00000001") -> bytes:
    """The form body of a ``/tocsin`` slash command as Slack posts it."""
    return urlencode(
        {
            "token": "verification-token-is-deprecated",
            "team_id": "T00000001",
            "team_domain": "example",
            "channel_id": channel,
            "channel_name": "incidents",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/tocsin",
            "text": text,
            "api_app_id": "A00000001",
            "response_url": "https://hooks.slack.com/commands/T00000001/1/xyz",
            "trigger_id": "1111.2222.abcd",
        }
    ).encode()
