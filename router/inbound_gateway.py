"""Inbound texts forwarded by a generic HTTP SMS gateway: ``POST /api/v1/phone/gateway/sms``.

Configure it as the gateway's inbound (MO) webhook. Its authentication is
``adapters.phone.gateway.inbound``: either an HMAC-SHA256 of the raw body keyed with ``secret``
in ``header`` (hex, ``sha256=`` prefix accepted), or HTTP basic auth with ``username`` and
``secret``; anything else is 403 and nothing changes. The body is a form or a JSON object whose
``from_field`` / ``text_field`` / ``id_field`` hold the sender, the text and the gateway's
message id. What it may do is what a Twilio text may (``router.inbound_phone.text_ack``):
``ACK <n>`` from a person paged for #n (or in ``sms_responders``), ``1`` for the latest page.
The answer is JSON ``{"reply": text-or-null}`` (for gateways that can send it back).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from adapters.config import GatewayInbound
from adapters.phone.provider import GATEWAY_SMS
from escalation.engine.service import Delivery
from router.errors import ApiError, Outage, on_store_outage
from router.inbound_phone import text_ack
from router.keys import RUNTIME
from router.receiver import read_body

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["GATEWAY_SMS_PATH", "add_gateway_routes", "authentic"]

log = logging.getLogger("tocsin.inbound.gateway")

GATEWAY_SMS_PATH = "/api/v1/phone/gateway/sms"
_MAX_BODY = 64 * 1024


def add_gateway_routes(app: web.Application) -> None:
    """Register the gateway's inbound route (its configured authentication is checked)."""
    app.router.add_post(GATEWAY_SMS_PATH, gateway_sms)
    # Gateways retry a failed forward: nothing is lost.
    retry = Outage(detail="retry later", log="gateway text could not be recorded", logger=log.name)
    on_store_outage(app, retry, gateway_sms)


def authentic(cfg: GatewayInbound, raw: bytes, headers: dict[str, str]) -> bool:
    """Whether the request proves it comes from the gateway; compared in constant time."""
    secret = cfg.secret.get_secret_value().encode()
    if cfg.auth == "hmac-sha256":
        given = headers.get(cfg.header.lower(), "").strip().removeprefix("sha256=").lower()
        want = hmac.new(secret, raw, hashlib.sha256).hexdigest()
        return bool(given) and hmac.compare_digest(want.encode(), given.encode("utf-8", "replace"))
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    ok_user = hmac.compare_digest(user, cfg.username.encode())
    ok_password = hmac.compare_digest(password, secret)
    return ok_user and ok_password


def _fields(cfg: GatewayInbound, raw: bytes) -> dict[str, str]:
    if cfg.format == "json":
        try:
            doc: Any = json.loads(raw)
        except ValueError:
            raise ApiError(400, "bad request", "the body is not JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "bad request", "the body is not a JSON object")
        return {str(k): str(v) for k, v in doc.items() if v is not None}
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise ApiError(400, "bad request", "the form body is not UTF-8") from None
    return dict(reversed(pairs))  # the first value of a repeated field


async def gateway_sms(request: web.Request) -> web.Response:
    """A text forwarded by the gateway: authenticated, then acted on like a Twilio text."""
    rt: Runtime = request.app[RUNTIME]
    phone = rt.loaded.config.adapters.phone
    cfg = phone.gateway.inbound if phone is not None and phone.gateway is not None else None
    if cfg is None:
        detail = "adapters.phone.gateway.inbound is not set"
        raise ApiError(404, "gateway replies are not configured", detail, request.path)
    raw = await read_body(request, _MAX_BODY)
    if not authentic(cfg, raw, {k.lower(): v for k, v in request.headers.items()}):
        log.warning("rejected a gateway text that failed authentication", extra={"auth": cfg.auth})
        detail = "the gateway's authentication does not match"
        raise ApiError(403, "forbidden", detail, request.path)
    fields = _fields(cfg, raw)
    message_id = fields.get(cfg.id_field, "")
    delivery = Delivery(GATEWAY_SMS, message_id) if message_id else None
    sender, text = fields.get(cfg.from_field, ""), fields.get(cfg.text_field, "")
    answer = await text_ack(rt, sender, text, delivery)
    return web.json_response({"reply": answer})
