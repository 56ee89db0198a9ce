"""A generic HTTP SMS gateway: the request is configuration, not code.

``adapters.phone.gateway`` describes one HTTP request per text as Jinja2 templates rendered in
the rule templates' bounded sandbox (``rules.templates``: step budget, time limit, output cap):
``url``, each of ``headers``, each ``form`` field or a ``json_body`` document, over

    to           the recipient, E.164 (+447700900123)
    message      the text
    from_number  the configured sender id
    token        the configured API key (a secret: never logged, never in an error)

Success is a status in ``success_status`` and, when ``success_path`` is set, a JSON answer whose
dotted path equals ``success_value`` (gateways that answer ``200 {"status": "error"}``). A gateway
sends texts only: ``place_call`` fails permanently, so a page on the ``phone`` channel goes to the
next provider (failover) or the person's fallback. Failure mapping, as for Twilio's texts:

    429 ................................. rate limited (Retry-After honoured)
    5xx, connection errors, timeouts .... retryable (a duplicate text is harmless)
    other statuses, a refused answer .... permanent
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from adapters.config import GatewayConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.http import parse_retry_after, status_failure
from adapters.phone.provider import VoicePage
from rules.templates import Template, TemplateLimitExceeded, TemplateSyntaxProblem

__all__ = ["GatewayProvider", "GatewayRequest", "check", "json_path", "render_request"]

log = logging.getLogger("tocsin.adapters.phone")

_MAX_ERROR = 200
SAMPLE = {
    "to": "+447700900123",
    "message": "[SEV-1 P0] #42 SampleAlert on api - reply ACK 42 (or 1) to acknowledge",
    "from_number": "TOCSIN",
    "token": "sample-token",
}
"""What ``check`` renders every template against."""


@lru_cache(maxsize=64)
def _compiled(source: str) -> Template:
    return Template(source)


def _render(source: str, context: Mapping[str, Any]) -> str:
    return _compiled(source).render_document(context)


class GatewayRequest:
    """One rendered request: method, URL, headers and the body (form pairs or JSON text)."""

    def __init__(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        form: list[tuple[str, str]] | None,
        json_text: str | None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.form = form
        self.json_text = json_text


def render_request(cfg: GatewayConfig, to: str, message: str) -> GatewayRequest:
    """The request texting ``message`` to ``to``; ValueError when a template fails or the URL
    or JSON body it renders is not one."""
    ctx = {
        "to": to,
        "message": message,
        "from_number": cfg.from_number,
        "token": cfg.token.get_secret_value() if cfg.token is not None else "",
    }
    url = _render(cfg.url, ctx).strip()
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ValueError("url template does not render an http(s) URL")
    headers = {k: _render(v, ctx).strip() for k, v in cfg.headers.items()}
    form = [(k, _render(v, ctx)) for k, v in cfg.form.items()] if cfg.form is not None else None
    json_text = None
    if cfg.json_body is not None:
        json_text = _render(cfg.json_body, ctx)
        try:
            json.loads(json_text)
        except json.JSONDecodeError as e:
            raise ValueError(f"json_body does not render JSON ({e.msg} at {e.pos})") from None
    return GatewayRequest(cfg.method, url, headers, form, json_text)


def json_path(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` (``messages.0.status``) in ``doc``, or None."""
    for part in path.split("."):
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def check(cfg: GatewayConfig) -> list[tuple[tuple[str, ...], str]]:
    """What keeps the gateway's templates from working, as (path under ``gateway``, message):
    a template that does not compile, or fails (or goes past a cap) on a sample text."""
    sources: list[tuple[tuple[str, ...], str]] = [(("url",), cfg.url)]
    sources += [(("headers", k), v) for k, v in cfg.headers.items()]
    sources += [(("form", k), v) for k, v in (cfg.form or {}).items()]
    if cfg.json_body is not None:
        sources.append((("json_body",), cfg.json_body))
    out: list[tuple[tuple[str, ...], str]] = []
    for loc, source in sources:
        try:
            _compiled(source).check_limits(SAMPLE)
        except (TemplateSyntaxProblem, TemplateLimitExceeded) as e:
            out.append((loc, str(e)))
    if out:
        return out
    try:
        render_request(cfg, SAMPLE["to"], SAMPLE["message"])
    except ValueError as e:
        out.append(((), f"on a sample text: {e}"))
    return out


class GatewayProvider:
    """A ``PhoneProvider`` for texts through a templated HTTP request."""

    voice = False

    def __init__(self, cfg: GatewayConfig, ctx: AdapterContext) -> None:
        self.cfg = cfg
        self._http = ctx.http
        self._clock = ctx.clock
        seconds = cfg.timeout.total_seconds()
        self._timeout = aiohttp.ClientTimeout(total=seconds, connect=min(5.0, seconds / 2))

    async def place_call(self, to: str, page: VoicePage) -> DeliveryResult:
        """A gateway carries texts only."""
        return DeliveryResult(ok=False, error="gateway call: the SMS gateway cannot place calls")

    async def send_sms(self, to: str, body: str) -> DeliveryResult:
        """Send the rendered request; one attempt."""
        try:
            req = render_request(self.cfg, to, body)
        except ValueError as e:
            return DeliveryResult(ok=False, error=f"gateway sms not sent: {e}")
        kwargs: dict[str, Any] = {"headers": req.headers, "timeout": self._timeout}
        if req.form is not None:
            kwargs["data"] = req.form
        elif req.json_text is not None:
            kwargs["data"] = req.json_text.encode()
            kwargs["headers"] = {"Content-Type": "application/json", **req.headers}
        try:
            async with self._http().request(req.method, req.url, **kwargs) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                text = await resp.text()
        except aiohttp.InvalidURL:
            return DeliveryResult(ok=False, error="gateway sms: invalid url")
        except (TimeoutError, aiohttp.ClientError) as e:
            # The URL may hold the token: only the kind of failure is said.
            reason = "timed out" if isinstance(e, TimeoutError) else type(e).__name__
            error = f"gateway sms: {reason}"
            return DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error=error)
        return self._result(status, text, retry_after)

    def _result(self, status: int, text: str, retry_after: str | None) -> DeliveryResult:
        try:
            doc: Any = json.loads(text)
        except ValueError:
            doc = None
        if status in self.cfg.success_status:
            if self.cfg.success_path is not None:
                got = json_path(doc, self.cfg.success_path)
                if got is None or str(got) != self.cfg.success_value:
                    error = f"gateway sms {status}: {self.cfg.success_path} is {got!r}"
                    return DeliveryResult(ok=False, error=error[:_MAX_ERROR])
            msg_id = json_path(doc, self.cfg.id_path) if self.cfg.id_path else None
            return DeliveryResult(ok=True, provider_id=str(msg_id or ""))
        # A gateway's error body is its own text; a token echoed back must not be recorded.
        token = self.cfg.token.get_secret_value() if self.cfg.token is not None else ""
        detail = (text.replace(token, "***") if token else text).strip()[:_MAX_ERROR]
        error = f"gateway sms {status}" + (f": {detail}" if detail else "")
        return status_failure(status, error, parse_retry_after(retry_after, self._clock.now()))
