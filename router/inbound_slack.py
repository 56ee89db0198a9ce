"""What Slack sends back: button clicks (``POST /api/v1/slack/interactivity``) and the ``/tocsin``
slash command (``POST /api/v1/slack/commands``).

Order matters: the raw bytes are read (size-limited) and Slack's ``v0`` signature checked with
slack_sdk's ``SignatureVerifier`` (HMAC-SHA256 of ``v0:<timestamp>:<body>`` under the app's
signing secret, the timestamp within 5 minutes of tocsin's clock) before anything is parsed.
A request that fails answers 401 and changes nothing. A request that acts is remembered by the
hash of its signed timestamp and body (the inbound dedup table, source ``slack``) in the same
transaction as its action, so a replayed request acts once.

The clicking (or typing) Slack user is mapped to a person by email: Slack's ``users.info``
gives the address (scope ``users:read.email``), matched against ``people:``. Someone who is
not a person, or not one of ``adapters.slack.writers`` when that list is set, is told so
privately (``chat.postEphemeral`` for a click, an ephemeral reply for a command) and nothing
changes. An action runs through the same service call as the incident API, recorded with that
person as the actor and ``slack`` as the source; the card is then edited through the outbox
like any other notification.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import Clock as SlackClock
from slack_sdk.signature import SignatureVerifier

from adapters.config import SlackConfig
from adapters.slack import ACTIONS, SlackApi, SlackError
from escalation.engine.clock import Clock
from escalation.engine.service import Outcome
from escalation.incidents.actions import Action
from router.errors import ApiError, Outage, on_store_outage
from router.keys import RUNTIME
from router.receiver import read_body
from router.slack_actions import act, who_acts
from router.slack_commands import command_reply

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["COMMANDS_PATH", "INTERACTIVITY_PATH", "SIGNATURE_WINDOW", "add_slack_routes"]

log = logging.getLogger("tocsin.slack")

INTERACTIVITY_PATH = "/api/v1/slack/interactivity"
COMMANDS_PATH = "/api/v1/slack/commands"
SIGNATURE_WINDOW = 5 * 60  # seconds: slack_sdk's (and Slack's documented) window
_MAX_BYTES = 1024 * 1024  # a block_actions payload carries the whole message it came from
_APIS: web.AppKey[dict[int, SlackApi]] = web.AppKey("slack_apis", dict)


class _TocsinTime(SlackClock):
    """slack_sdk's clock, read from tocsin's (virtual in tests)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock.now().timestamp()


def _config(rt: Runtime) -> SlackConfig:
    cfg = rt.loaded.config.adapters.slack
    if cfg is None:
        raise ApiError(404, "not found", "Slack is not configured (adapters.slack)")
    return cfg


def api_for(app: web.Application, rt: Runtime, cfg: SlackConfig) -> SlackApi:
    """One ``SlackApi`` (and user cache) per loaded Slack config."""
    apis = app[_APIS]
    found = apis.get(id(cfg))
    if found is None or found.cfg is not cfg:
        apis.clear()  # a reload made a new config: the old one's client goes
        found = apis[id(cfg)] = SlackApi(cfg, rt.http, rt.clock)
    return found


async def _verified(request: web.Request, cfg: SlackConfig, rt: Runtime) -> tuple[bytes, str]:
    """The body, if Slack signed it within the window, and its identity (for replays)."""
    body = await read_body(request, _MAX_BYTES)
    try:
        # Slack sends UTF-8 form bodies, and slack_sdk's verifier decodes the body to sign it.
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid body", "the body is not UTF-8") from None
    ts = request.headers.get("X-Slack-Request-Timestamp", "")
    sig = request.headers.get("X-Slack-Signature", "")
    verifier = SignatureVerifier(cfg.signing_secret.get_secret_value(), _TocsinTime(rt.clock))
    # slack_sdk reads the timestamp with int() and compares str signatures: guard both first.
    well_formed = ts.isascii() and ts.isdigit() and len(ts) < 16 and sig.isascii()
    if not (well_formed and verifier.is_valid(body, ts, sig)):
        log.warning("slack request with no valid signature", extra={"path": request.path})
        raise ApiError(401, "signature not verified", "no valid X-Slack-Signature in the window")
    return body, "sha256:" + hashlib.sha256(ts.encode() + b":" + body).hexdigest()


def _payload(body: bytes) -> dict[str, Any]:
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        doc = json.loads(form.get("payload", ""))
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid payload", "expected a form field payload=<JSON>") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid payload", "the payload is not a JSON object")
    return doc


def _click(doc: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """(user id, channel id, action id, incident id) of a block_actions click on our buttons."""
    actions = doc.get("actions")
    user, channel = doc.get("user"), doc.get("channel") or doc.get("container")
    if doc.get("type") != "block_actions" or not isinstance(actions, list) or not actions:
        return None
    first = actions[0]
    if not (isinstance(first, dict) and isinstance(user, dict) and isinstance(channel, dict)):
        return None
    fields = (
        user.get("id"),
        channel.get("id") or channel.get("channel_id"),
        first.get("action_id"),
        first.get("value"),
    )
    if not all(isinstance(f, str) and f for f in fields) or fields[2] not in ACTIONS:
        return None
    return fields  # type: ignore[return-value]


async def _tell(api: SlackApi, channel: str, user: str, text: str) -> None:
    """A message only ``user`` sees; a failure is logged, never the answer to Slack."""
    try:
        await api.call("chat.postEphemeral", channel=channel, user=user, text=text)
    except SlackError as e:
        log.warning("slack ephemeral reply failed", extra={"error": str(e)})


async def interactivity(request: web.Request) -> web.Response:
    """A click on a card's button: verify, map the user to a person, act once."""
    rt = request.app[RUNTIME]
    cfg = _config(rt)
    body, identity = await _verified(request, cfg, rt)
    click = _click(_payload(body))
    if click is None:
        return web.Response(status=200)  # another kind of interaction: nothing to do
    user, channel, action_id, ref = click
    api = api_for(request.app, rt, cfg)
    person, refusal = await who_acts(rt, cfg, api, user)
    if refusal:
        log.info("slack click refused", extra={"slack_user": user, "reason": refusal})
        await _tell(api, channel, user, f"Nothing was changed: {refusal}.")
        return web.Response(status=200)
    text, outcome = await act(rt, identity, ref, Action(ACTIONS[action_id]), person)
    if outcome is not None and outcome.outcome != Outcome.DONE:
        await _tell(api, channel, user, f"Nothing was changed: {text}.")
    log.info(
        "slack click",
        extra={"slack_user": user, "person": person, "action": ACTIONS[action_id], "ref": ref},
    )
    return web.Response(status=200)


async def commands(request: web.Request) -> web.Response:
    """``/tocsin ack N``, ``resolve N``, ``oncall [schedule]``, ``incidents``: ephemeral replies."""
    rt = request.app[RUNTIME]
    cfg = _config(rt)
    body, identity = await _verified(request, cfg, rt)
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    api = api_for(request.app, rt, cfg)
    text = await command_reply(rt, cfg, api, form, identity)
    return web.json_response({"response_type": "ephemeral", "text": text})


def add_slack_routes(app: web.Application) -> None:
    """Register the interactivity and slash-command routes."""
    app[_APIS] = {}
    app.router.add_post(INTERACTIVITY_PATH, interactivity)
    app.router.add_post(COMMANDS_PATH, commands)
    # Slack does not retry these: a 503 shows the person an error, and they click again.
    outage = Outage(
        detail="nothing was changed; try again",
        log="store unavailable; a Slack action was not applied",
        logger=log.name,
    )
    on_store_outage(app, outage, interactivity, commands)
