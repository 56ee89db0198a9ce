"""Fakes of four chat platforms' incoming webhooks, each checking the documented request.

``FakeChat(platform)`` is a real aiohttp server on 127.0.0.1 (random port) answering where the
platform does, as the platform does:

- ``google_chat``: ``POST /v1/spaces/{space}/messages?key=..&token=..`` → 200 with the created
  message; 400 ``{"error": {"code": 400, "message", "status": "INVALID_ARGUMENT"}}``; 429
  ``RESOURCE_EXHAUSTED``.
- ``mattermost``: ``POST /hooks/{key}`` → 200 ``ok`` (text/plain); 400 with Mattermost's
  ``AppError`` JSON (``id``, ``message``, ``status_code``).
- ``discord``: ``POST /api/webhooks/{id}/{token}`` → 204; 400 ``{"code": 50035, "message":
  "Invalid Form Body", "errors": ...}``; 429 ``{"message", "retry_after", "global"}`` with
  ``Retry-After`` and ``X-RateLimit-*`` headers.
- ``telegram``: ``POST /bot{token}/sendMessage`` → 200 ``{"ok": true, "result": Message}``;
  errors ``{"ok": false, "error_code", "description"}`` (429 with ``parameters.retry_after``).

Each request is validated against the platform's documented shape and limits (the notes and
their sources are in ``data/SOURCES.md``). A request the platform would refuse is answered with
its error and kept in ``violations``; ``close()`` fails the test on any unless the test said
``expect_violations()``. ``script(...)`` queues the platform's error answers (rate limits,
server errors) for the next requests.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

from tests.fakes.serving import LocalFake

__all__ = ["PLATFORMS", "ChatReceived", "FakeChat", "Scripted", "telegram_visible_text"]

PLATFORMS = ("google_chat", "mattermost", "discord", "telegram")
TELEGRAM_TOKEN = "123456:AAH-fake-telegram-bot-token_0123456789"


@dataclass(frozen=True)
class ChatReceived:
    """One request as the fake received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Scripted:
    """A canned answer: HTTP ``status``, JSON ``body`` (or text), extra ``headers``."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


# -- Discord ------------------------------------------------------------------------------------

_DISCORD_TOP = {
    "content", "username", "avatar_url", "tts", "embeds", "allowed_mentions", "components",
    "files", "payload_json", "attachments", "flags", "thread_name", "applied_tags", "poll",
}  # fmt: skip
_DISCORD_EMBED = {
    "title", "type", "description", "url", "timestamp", "color", "footer", "image",
    "thumbnail", "author", "fields",
}  # fmt: skip


def _discord_embed(i: int, e: Any, errors: list[str]) -> int:
    """Errors of embed ``i``; the characters it counts toward the 6,000 total."""
    if not isinstance(e, dict):
        errors.append(f"embeds.{i}: not an object")
        return 0
    errors += [f"embeds.{i}.{k}: unknown field" for k in e if k not in _DISCORD_EMBED]
    total = 0
    for key, limit in (("title", 256), ("description", 4096)):
        if key in e:
            if not isinstance(e[key], str) or len(e[key]) > limit:
                errors.append(f"embeds.{i}.{key}: BASE_TYPE_MAX_LENGTH {limit}")
            else:
                total += len(e[key])
    if "url" in e and not (
        isinstance(e["url"], str) and e["url"].startswith(("http://", "https://"))
    ):
        errors.append(f"embeds.{i}.url: URL_TYPE_INVALID_URL")
    if "color" in e and not (isinstance(e["color"], int) and 0 <= e["color"] <= 0xFFFFFF):
        errors.append(f"embeds.{i}.color: NUMBER_TYPE_MAX")
    fields = e.get("fields", [])
    if not isinstance(fields, list) or len(fields) > 25:
        errors.append(f"embeds.{i}.fields: at most 25")
        return total
    for j, f in enumerate(fields):
        if not isinstance(f, dict) or set(f) - {"name", "value", "inline"}:
            errors.append(f"embeds.{i}.fields.{j}: not a field object")
            continue
        name, value = f.get("name"), f.get("value")
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            errors.append(f"embeds.{i}.fields.{j}.name: 1 to 256 characters")
        if not isinstance(value, str) or not 1 <= len(value) <= 1024:
            errors.append(f"embeds.{i}.fields.{j}.value: 1 to 1024 characters")
        if "inline" in f and not isinstance(f["inline"], bool):
            errors.append(f"embeds.{i}.fields.{j}.inline: boolean")
        total += len(name or "") + len(value or "")
    footer, author = e.get("footer"), e.get("author")
    if isinstance(footer, dict) and len(str(footer.get("text", ""))) > 2048:
        errors.append(f"embeds.{i}.footer.text: BASE_TYPE_MAX_LENGTH 2048")
    if isinstance(author, dict) and len(str(author.get("name", ""))) > 256:
        errors.append(f"embeds.{i}.author.name: BASE_TYPE_MAX_LENGTH 256")
    return (
        total + len(str((footer or {}).get("text", ""))) + len(str((author or {}).get("name", "")))
    )


def discord_errors(body: Any) -> list[str]:
    """Why Discord's Execute Webhook would answer 400 to ``body`` (empty: it would not)."""
    if not isinstance(body, dict):
        return ["body: not a JSON object"]
    errors = [f"{k}: unknown field" for k in body if k not in _DISCORD_TOP]
    content, embeds = body.get("content"), body.get("embeds")
    if not content and not embeds:
        errors.append("Cannot send an empty message (code 50006)")
    if content is not None and (not isinstance(content, str) or len(content) > 2000):
        errors.append("content: BASE_TYPE_MAX_LENGTH 2000")
    username = body.get("username")
    if username is not None and (
        not isinstance(username, str)
        or not 1 <= len(username) <= 80
        or any(w in username.lower() for w in ("clyde", "discord"))
    ):
        errors.append("username: USERNAME_INVALID")
    if embeds is not None:
        if not isinstance(embeds, list) or len(embeds) > 10:
            errors.append("embeds: at most 10")
        else:
            total = sum(_discord_embed(i, e, errors) for i, e in enumerate(embeds))
            if total > 6000:
                errors.append(f"embeds: {total} characters in all, over 6000")
    mentions = body.get("allowed_mentions")
    if mentions is not None:
        parse = mentions.get("parse") if isinstance(mentions, dict) else None
        if not isinstance(parse, list) or set(parse) - {"roles", "users", "everyone"}:
            errors.append("allowed_mentions.parse: roles, users, everyone")
    return errors


# -- Telegram -----------------------------------------------------------------------------------

_TG_PARAMS = {
    "business_connection_id", "chat_id", "message_thread_id", "direct_messages_topic_id",
    "text", "parse_mode", "entities", "link_preview_options", "disable_web_page_preview",
    "disable_notification", "protect_content", "allow_paid_broadcast", "message_effect_id",
    "suggested_post_parameters", "reply_parameters", "reply_markup",
}  # fmt: skip
_TG_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote", "tg-time",
}  # fmt: skip


class _TelegramHtml(HTMLParser):
    """Telegram's HTML parse mode: supported tags only, properly nested, text counted."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TG_TAGS:
            self.errors.append(f"Bad Request: can't parse entities: Unsupported start tag {tag!r}")
        if tag == "a" and not any(k == "href" and v for k, v in attrs):
            self.errors.append("Bad Request: can't parse entities: a without href")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"Bad Request: can't parse entities: unmatched end tag {tag!r}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def telegram_visible_text(html: str) -> tuple[str, list[str]]:
    """The text Telegram shows for an HTML-mode message, and its parse errors."""
    p = _TelegramHtml()
    p.feed(html)
    p.close()
    if p.stack:
        p.errors.append(f"Bad Request: can't parse entities: unclosed tags {p.stack}")
    return "".join(p.text), p.errors


def telegram_errors(body: Any) -> list[str]:
    """Why ``sendMessage`` would answer 400 to ``body``."""
    if not isinstance(body, dict):
        return ["Bad Request: body is not a JSON object"]
    errors = [f"Bad Request: unknown parameter {k}" for k in body if k not in _TG_PARAMS]
    chat = body.get("chat_id")
    if not (isinstance(chat, int) or (isinstance(chat, str) and chat)):
        errors.append("Bad Request: chat_id is empty")
    text = body.get("text")
    if not isinstance(text, str):
        return [*errors, "Bad Request: message text is empty"]
    mode = body.get("parse_mode")
    if mode not in (None, "HTML", "MarkdownV2", "Markdown"):
        errors.append(f"Bad Request: unsupported parse_mode {mode!r}")
    visible = text
    if mode == "HTML":
        visible, parse_errors = telegram_visible_text(text)
        errors += parse_errors
    if not visible.strip():
        errors.append("Bad Request: message text is empty")
    if len(visible) > 4096:
        errors.append("Bad Request: message is too long")
    preview = body.get("link_preview_options")
    if preview is not None and not (
        isinstance(preview, dict) and isinstance(preview.get("is_disabled", False), bool)
    ):
        errors.append("Bad Request: link_preview_options must be a LinkPreviewOptions object")
    return errors


# -- Google Chat and Mattermost -----------------------------------------------------------------

_GCHAT_FIELDS = {
    "text", "cardsV2", "cards", "thread", "fallbackText", "accessoryWidgets",
    "privateMessageViewer", "formattedText", "argumentText", "clientAssignedMessageId",
}  # fmt: skip


_REPLY_OPTIONS = (
    "MESSAGE_REPLY_OPTION_UNSPECIFIED",
    "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
    "REPLY_MESSAGE_OR_FAIL",
)


def google_chat_query_errors(query: dict[str, str]) -> list[str]:
    """Why Chat would refuse the webhook URL's query (its key and token are the fake's own)."""
    errors = []
    if query.get("key") != "fake-key" or query.get("token") != "fake-token":
        errors.append("the webhook's key and token must be kept")
    option = query.get("messageReplyOption")
    if option is not None and option not in _REPLY_OPTIONS:
        errors.append(f'Invalid value at "message_reply_option" ({option!r})')
    if option == "REPLY_MESSAGE_OR_FAIL" and not query.get("threadKey"):
        errors.append("REPLY_MESSAGE_OR_FAIL needs a thread")
    return errors


def google_chat_errors(body: Any, size: int) -> list[str]:
    """Why a Chat incoming webhook would answer 400 to ``body`` (``size``: its bytes)."""
    if not isinstance(body, dict):
        return ["Invalid JSON payload received: not an object"]
    errors = [
        f'Invalid JSON payload received. Unknown name "{k}"' for k in body if k not in _GCHAT_FIELDS
    ]
    if not body.get("text") and not body.get("cardsV2") and not body.get("cards"):
        errors.append("Message cannot be empty.")
    if "text" in body and not isinstance(body["text"], str):
        errors.append('Invalid value at "message.text"')
    if size > 32000:
        errors.append(f"Message exceeds the maximum size of 32,000 bytes ({size})")
    return errors


_MM_TOP = {
    "text",
    "channel",
    "username",
    "icon_url",
    "icon_emoji",
    "attachments",
    "props",
    "type",
    "priority",
}
_MM_ATTACHMENT = {
    "fallback", "color", "pretext", "text", "author_name", "author_link", "author_icon",
    "title", "title_link", "fields", "image_url", "thumb_url", "footer", "footer_icon", "id",
    "actions",
}  # fmt: skip


def mattermost_errors(body: Any) -> list[str]:
    """Why Mattermost's incoming webhook would answer 400 to ``body``."""
    if not isinstance(body, dict):
        return ["web.incoming_webhook.parse.app_error"]
    errors = [f"unknown field {k}" for k in body if k not in _MM_TOP]
    text, attachments = body.get("text"), body.get("attachments")
    if not text and not attachments:
        errors.append("web.incoming_webhook.text.app_error: No text specified.")
    if text is not None and (not isinstance(text, str) or len(text) > 16383):
        errors.append("web.incoming_webhook.text.length.app_error")
    if attachments is not None:
        if not isinstance(attachments, list):
            return [*errors, "attachments: not a list"]
        for i, a in enumerate(attachments):
            if not isinstance(a, dict):
                errors.append(f"attachments[{i}]: not an object")
                continue
            errors += [f"attachments[{i}].{k}: unknown field" for k in a if k not in _MM_ATTACHMENT]
            for j, f in enumerate(a.get("fields", [])):
                if not isinstance(f, dict) or set(f) - {"title", "value", "short"}:
                    errors.append(f"attachments[{i}].fields[{j}]: title, value, short")
        size = len(json.dumps(attachments, ensure_ascii=False))
        if size > 7900:
            errors.append(f"Maximum attachments length is 7900 characters, received size is {size}")
    username = body.get("username")
    if username is not None and (not isinstance(username, str) or not 1 <= len(username) <= 64):
        errors.append("username: 1 to 64 characters")
    return errors


# -- the server ---------------------------------------------------------------------------------


def _refusal(platform: str, errors: list[str]) -> Scripted:
    """The platform's own 400 answer for ``errors``."""
    if platform == "discord":
        body: Any = {"code": 50035, "message": "Invalid Form Body", "errors": {"_errors": errors}}
    elif platform == "telegram":
        body = {"ok": False, "error_code": 400, "description": errors[0]}
    elif platform == "google_chat":
        body = {"error": {"code": 400, "message": "; ".join(errors), "status": "INVALID_ARGUMENT"}}
    else:
        body = {
            "id": "web.incoming_webhook.invalid.app_error",
            "message": "; ".join(errors),
            "detailed_error": "",
            "status_code": 400,
        }
    return Scripted(400, body)


def rate_limited(platform: str, retry_after: float) -> Scripted:
    """What ``platform`` answers when the sender goes too fast."""
    if platform == "discord":
        return Scripted(
            429,
            {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
            {
                "Retry-After": str(int(retry_after) + 1),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": str(retry_after),
                "X-RateLimit-Scope": "shared",
            },
        )
    if platform == "telegram":
        return Scripted(
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {int(retry_after)}",
                "parameters": {"retry_after": int(retry_after)},
            },
        )
    if platform == "google_chat":
        message = "Resource has been exhausted (e.g. check quota)."
        return Scripted(
            429, {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}
        )
    return Scripted(
        429, {"id": "api.context.rate_limit", "message": "Too many requests", "status_code": 429}
    )


class FakeChat(LocalFake[list[str]]):
    """One platform's incoming webhook. ``url`` is the webhook URL to configure (for Telegram,
    ``api_url`` with ``TELEGRAM_TOKEN`` as the bot token)."""

    def __init__(self, platform: str) -> None:
        super().__init__(f"requests {platform} would refuse were sent")
        assert platform in PLATFORMS, platform
        self.platform = platform
        self.received: list[ChatReceived] = []
        self.accepted: list[Any] = []  # the bodies the platform would have posted
        self.threads: list[str | None] = []  # google_chat: each accepted message's threadKey
        self._script: deque[Scripted] = deque()
        self.api_url = ""

    async def start(self) -> FakeChat:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        base = await self._serve(app)
        self.api_url = base
        self.url = (
            self.api_url
            + {
                "google_chat": "/v1/spaces/AAAA1234/messages?key=fake-key&token=fake-token",
                "mattermost": "/hooks/xxx-generatedkey-xxx",
                "discord": "/api/webhooks/1234567890/fake-webhook-token",
                "telegram": f"/bot{TELEGRAM_TOKEN}/sendMessage",
            }[self.platform]
        )
        return self

    def script(self, *answers: Scripted) -> None:
        """Answer the next valid requests with these, in order."""
        self._script.extend(answers)

    def _route_ok(self, request: web.Request) -> bool:
        expected = self.url.removeprefix(self.api_url).split("?", 1)[0]
        return request.method == "POST" and request.path == expected

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(
            ChatReceived(request.path, dict(request.query), dict(request.headers), body)
        )
        if not self._route_ok(request):
            if self.platform == "telegram" and request.path.startswith("/bot"):
                # A wrong bot token: what the Bot API answers for one.
                return self._answer(
                    Scripted(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                )
            return self._answer(_not_found(self.platform))
        ctype = request.headers.get("Content-Type", "")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        errors = [] if ctype.startswith("application/json") else [f"Content-Type {ctype!r}"]
        errors += (
            _CHECKS[self.platform](doc, len(body)) if doc is not None else ["body is not JSON"]
        )
        if self.platform == "google_chat":
            errors += google_chat_query_errors(dict(request.query))
        if errors:
            self.violations.append(errors)
            return self._answer(_refusal(self.platform, errors))
        if self._script:
            return self._answer(self._script.popleft())
        self.accepted.append(doc)
        return self._answer(self._success(doc))

    def _success(self, doc: Any) -> Scripted:
        n = len(self.accepted)
        if self.platform == "discord":
            return Scripted(204)
        if self.platform == "mattermost":
            return Scripted(200, "ok")
        if self.platform == "google_chat":
            thread = self.received[-1].query.get("threadKey")
            self.threads.append(thread)
            message = {"name": f"spaces/AAAA1234/messages/m{n}", "text": doc.get("text", "")}
            if thread:
                message["thread"] = {"name": f"spaces/AAAA1234/threads/{thread}"}
            return Scripted(200, message)
        chat = {"id": -1001234567890, "type": "supergroup", "title": "ops"}
        visible = (
            telegram_visible_text(doc["text"])[0]
            if doc.get("parse_mode") == "HTML"
            else doc["text"]
        )
        return Scripted(
            200, {"ok": True, "result": {"message_id": n, "date": 0, "chat": chat, "text": visible}}
        )

    @staticmethod
    def _answer(s: Scripted) -> web.Response:
        if s.body is None:
            return web.Response(status=s.status, headers=s.headers)
        if isinstance(s.body, str):
            return web.Response(status=s.status, text=s.body, headers=s.headers)
        return web.json_response(s.body, status=s.status, headers=s.headers)


def _not_found(platform: str) -> Scripted:
    if platform == "telegram":
        return Scripted(404, {"ok": False, "error_code": 404, "description": "Not Found"})
    if platform == "discord":
        return Scripted(404, {"message": "Unknown Webhook", "code": 10015})
    return Scripted(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})


_CHECKS: dict[str, Callable[[Any, int], list[str]]] = {
    "google_chat": google_chat_errors,
    "mattermost": lambda body, _size: mattermost_errors(body),
    "discord": lambda body, _size: discord_errors(body),
    "telegram": lambda body, _size: telegram_errors(body),
}
