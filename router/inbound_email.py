"""The acknowledge / resolve links in emails, Teams cards and ntfy notifications:
``/api/v1/{email,teams,ntfy}/{ack,resolve}?token=...``.

``GET`` only shows a confirmation page with a form (mail scanners, link previews and Teams'
unfurling fetch links; they must not acknowledge anything). ``POST`` verifies the signed token
(with the channel's own secret) and performs the action as the person the message went to, with
the channel as source. A tampered, mis-directed or expired
token answers 403 and changes nothing; acting on an incident that is already past that point
answers 200 saying so. Every link is single-use: its token is remembered as an inbound delivery
(source: the channel) in the action's own transaction, and a second POST of it changes nothing
(409), even when the incident is back in a state the link could act on: an escalation puts an
acknowledged incident back to triggered in the same run, so the run (epoch) alone does not make
a used link harmless. Pages are HTML (a person reads them), never cached, never framed, and send
no Referer (the token is a credential).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from html import escape
from typing import TYPE_CHECKING

from aiohttp import web

from adapters import email, ntfy, teams
from adapters.email.links import (
    ACTION_LINK_CHANNELS,
    LINK_ACTIONS,
    BadLink,
    LinkClaims,
    LinkSigner,
    link_path,
)
from escalation.engine.service import ActOn, Delivery, Outcome
from escalation.incidents.actions import Action
from escalation.incidents.model import IncidentRecord, Status, status_reached
from router.errors import Outage, on_store_outage
from router.keys import RUNTIME
from router.receiver import clean_text, read_form

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["add_email_routes"]

log = logging.getLogger("tocsin.email")

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}

_VERB = {"ack": "Acknowledge", "resolve": "Resolve"}
_DONE = {"ack": Status.ACKNOWLEDGED, "resolve": Status.RESOLVED}
_ACTION = {"ack": Action.ACK, "resolve": Action.RESOLVE}


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def _page(status: int, heading: str, body: str = "") -> web.Response:
    """A small HTML page; ``heading`` is escaped here, ``body`` must already be safe HTML."""
    html = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>tocsin: {escape(heading)}</title>"
        '<meta name="robots" content="noindex">'
        "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}</style>"
        f"</head><body>\n<h1>{escape(heading)}</h1>\n{body}\n</body></html>\n"
    )
    return web.Response(status=status, text=html, content_type="text/html", headers=_HEADERS)


def _describe(inc: IncidentRecord) -> str:
    sev = inc.severity_name
    return (
        f"<p>Incident <b>#{inc.number}</b> [{escape(str(sev))}]: {escape(inc.title)}</p>"
        f"<p>Status: <b>{escape(inc.status.value)}</b></p>"
    )


def _signer(rt: Runtime, channel: str) -> LinkSigner | None:
    cfg = rt.loaded.config
    public_url = cfg.server.public_url
    try:
        if channel == "teams":
            section = cfg.adapters.teams
            return teams.link_signer(section, public_url) if section is not None else None
        if channel == "ntfy":
            push = cfg.adapters.ntfy
            return ntfy.link_signer(push, public_url) if push is not None else None
        mail = cfg.adapters.email
        return email.link_signer(mail, public_url) if mail is not None else None
    except ValueError:
        return None  # the config loader refuses this; a stale runtime must not sign anything


def _rejected(channel: str, action: str, e: BadLink) -> web.Response:
    log.warning("%s link rejected", channel, extra={"action": action, "reason": e.reason})
    if e.expired:
        return _page(
            403,
            "This link has expired",
            "<p>Nothing was changed. Open the incident in tocsin or PagerDuty instead.</p>",
        )
    return _page(403, "This link is not valid", "<p>Nothing was changed.</p>")


async def _verified(
    request: web.Request, action: str, token: str | None
) -> tuple[LinkClaims, IncidentRecord] | web.Response:
    rt = _runtime(request)
    channel = request.match_info["channel"]
    signer = _signer(rt, channel)
    if signer is None:
        return _page(404, f"{channel.capitalize()} links are not enabled")
    if not token:
        return _page(
            403, "This link is not valid", "<p>It carries no token. Nothing was changed.</p>"
        )
    try:
        claims = signer.verify(token, action, rt.clock.now())
    except BadLink as e:
        return _rejected(channel, action, e)
    except (OverflowError, ValueError, OSError):
        # Correctly signed, but an expiry no datetime holds (only the secret's holder can
        # make one): refused like any malformed link rather than a 500.
        return _rejected(channel, action, BadLink("malformed"))
    # Signed JSON may carry lone surrogates (\udc80 escapes); the store cannot encode them.
    claims = replace(
        claims, incident_id=clean_text(claims.incident_id), person=clean_text(claims.person)
    )
    inc = await rt.service.get_incident(claims.incident_id)
    if inc is None:
        return _page(404, "No such incident", "<p>Nothing was changed.</p>")
    return claims, inc


def _out_of_date(inc: IncidentRecord) -> web.Response:
    return _page(
        403,
        "This link is out of date",
        "<p>The incident changed (it was reopened, escalated or its severity raised) after "
        "this link was sent. Nothing was changed; use the links of the latest page.</p>"
        + _describe(inc),
    )


def _used(inc: IncidentRecord) -> web.Response:
    return _page(409, "This link was already used", "<p>Nothing was changed.</p>" + _describe(inc))


def _already(action: str, inc: IncidentRecord) -> web.Response:
    word = "resolved" if inc.status == Status.RESOLVED else inc.status.value
    return _page(200, f"Incident #{inc.number} is already {word}", _describe(inc))


async def _actionable(
    request: web.Request, action: str, token: str | None
) -> web.Response | tuple[LinkClaims, IncidentRecord]:
    """A verified link whose incident is still in the run it was sent for and not yet past
    ``action``; otherwise the page that says why nothing will happen."""
    checked = await _verified(request, action, token)
    if isinstance(checked, web.Response):
        return checked
    claims, inc = checked
    if claims.epoch != inc.epoch:
        return _out_of_date(inc)
    if status_reached(inc.status, _DONE[action]):
        return _already(action, inc)
    return claims, inc


async def show_link(request: web.Request) -> web.Response:
    """``GET``: a confirmation page with a form that POSTs; nothing changes here."""
    action = request.match_info["action"]
    checked = await _actionable(request, action, request.query.get("token"))
    if isinstance(checked, web.Response):
        return checked
    claims, inc = checked
    used = _single_use(request.match_info["channel"], request.query["token"])
    if await _runtime(request).service.delivery_seen(used):
        return _used(inc)  # its POST would be refused: no button that cannot work
    verb = _VERB[action]
    path = link_path(action, request.match_info["channel"])
    form = (
        f'<form method="post" action="{escape(path, quote=True)}">'
        f'<input type="hidden" name="token" value="{escape(request.query["token"], quote=True)}">'
        f'<button type="submit">{escape(verb)} as {escape(claims.person)}</button></form>'
    )
    return _page(200, f"{verb} incident #{inc.number}?", _describe(inc) + form)


async def perform_link(request: web.Request) -> web.Response:
    """``POST``: verify the token and perform the action as its person, source the channel."""
    action = request.match_info["action"]
    token: str | None = None
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await read_form(request)
        value = form.get("token")
        token = value if isinstance(value, str) else None
    token = token or request.query.get("token")
    checked = await _actionable(request, action, token)
    if isinstance(checked, web.Response):
        return checked
    claims, inc = checked
    assert token is not None  # _verified refuses a link without one
    rt = _runtime(request)
    channel = request.match_info["channel"]
    # The epoch is checked again in the action's own transaction: a reopen committed since our
    # read makes the link out of date rather than acting on the new run.
    outcomes = await rt.service.act_once(
        _single_use(channel, token),
        [ActOn(inc.id, claims.person, "", claims.epoch)],
        _ACTION[action],
        source=channel,
    )
    if outcomes is None:
        log.warning("%s link replayed", channel, extra={"action": action, "incident": inc.id})
        return _used(inc)
    [acted] = outcomes
    if acted.outcome == Outcome.MISSING:
        return _page(404, "No such incident", "<p>Nothing was changed.</p>")
    current = acted.incident or inc
    if acted.outcome == Outcome.ILLEGAL:
        # Someone else got there between our read and our write, or a new run began.
        return _out_of_date(current) if current.epoch != claims.epoch else _already(action, current)
    new = current
    done = "acknowledged" if action == "ack" else "resolved"
    log.info(
        "incident %s via %s link",
        done,
        channel,
        extra={"incident": new.id, "person": claims.person, "action": action},
    )
    return _page(
        200,
        f"Incident #{new.number} {done}",
        _describe(new) + f"<p>By {escape(claims.person)}.</p>",
    )


def _single_use(channel: str, token: str) -> Delivery:
    """The inbound delivery a link's POST is remembered as (its channel, its token's digest).

    Every channel's links are single-use, not only ntfy's (whose app POSTs with no page first):
    a confirmation page stops a link scanner, not a second POST of a link already used.
    """
    return Delivery(channel, hashlib.sha256(token.encode()).hexdigest())


def add_email_routes(app: web.Application) -> None:
    """Register ``GET`` / ``POST`` ``/api/v1/{email,teams,ntfy}/{ack,resolve}``."""
    path = link_path(
        "{action:" + "|".join(LINK_ACTIONS) + "}",
        "{channel:" + "|".join(ACTION_LINK_CHANNELS) + "}",
    )
    app.router.add_get(path, show_link)
    app.router.add_post(path, perform_link)
    on_store_outage(app, Outage(page=_store_unavailable), show_link, perform_link)


def _store_unavailable() -> web.Response:
    # A person reads this page: HTML like every other answer of these links, not JSON.
    return _page(503, "tocsin cannot reach its store", "<p>Nothing was changed; try again.</p>")
