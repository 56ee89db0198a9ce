"""The whole app with the email channel pointed at a real SMTP server (aiosmtpd), virtual clock.

An alert pages Alice by email at once and Carol five minutes later. The acknowledge / resolve
links in the messages that arrive are followed the way a mail client and a browser would: GET
shows a confirmation page and changes nothing (mail scanners prefetch links); POST acts as the
person the email went to, recorded with source ``email``; tampered and expired links get 403.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse

from escalation.incidents.actions import Action
from escalation.incidents.model import IncidentRecord, Status
from tests.driver.app import START, App, MakeApp
from tests.driver.config import PUBLIC, email_adapter, write_config
from tests.driver.payloads import sample_bytes
from tests.fakes.smtp import SmtpServer

LINK_SECRET = "flow-test-link-secret-0123456789"
SUBJECT = "[SEV-1] #1 HighErrorRate on api"

RULES_YAML = """\
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    severity: P0
    policy: mail
    title: "{{ labels.alertname }} on {{ labels.service }}"
"""

MAIL_POLICY = """\
people:
  alice: {name: Alice Ng, email: alice@example.com, channels: [email]}
  carol: {name: Carol Sato, email: carol@example.com, channels: [email]}
policies:
  mail:
    steps:
      - {name: on-call, after: 0, notify: ["person:alice"], via: [email]}
      - {name: lead, after: 5m, notify: ["person:carol"], via: [email]}
"""


@pytest.fixture
async def app(tmp_path: Path, smtp: SmtpServer, make_app: MakeApp) -> App:
    """Alice by email at once, Carol by email after 5 minutes; links live for one hour."""
    email = email_adapter(
        smtp.host, smtp.port, link_secret=LINK_SECRET, link_ttl="1h", timeout="5s"
    )
    rules = {"rules": {"files": ["rules/*.yaml"]}}
    path = write_config(
        tmp_path, rules, MAIL_POLICY, {"adapters": {"email": email}}, rules=RULES_YAML
    )
    return await make_app(path, fakes=(smtp,))


async def alert(app: App) -> IncidentRecord:
    """Alertmanager's captured firing sample; the incident it opened."""
    return await app.fire(sample_bytes("alertmanager-0.25-firing.json"))


def mail(app: App) -> list[tuple[str, str]]:
    """Every message received so far as (recipient, subject)."""
    return [(m.rcpt_tos[0], str(m.message["Subject"])) for m in app.smtp.messages]


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def link(msg: EmailMessage, action: str) -> tuple[str, str]:
    """(path, token) of the message's one ``action`` link, checked to live under public_url."""
    urls = re.findall(rf"{re.escape(PUBLIC)}/api/v1/email/{action}\?\S+", text_of(msg))
    assert len(urls) == 1, urls
    parts = urlsplit(urls[0])
    return parts.path, parse_qs(parts.query)["token"][0]


async def first_links(app: App) -> tuple[IncidentRecord, tuple[str, str], tuple[str, str]]:
    """The incident the firing sample opened, and its first email's ack and resolve links."""
    inc = await alert(app)
    await app.at(timedelta(0))
    msg = app.smtp.messages[0].message
    return inc, link(msg, "ack"), link(msg, "resolve")


def flip(token: str, at: int) -> str:
    """``token`` with one base64url character changed."""
    ch = token[at]
    return token[:at] + ("B" if ch == "A" else "A") + token[at + 1 :]


def mid(row_id: str) -> str:
    return f"<{hashlib.sha256(row_id.encode()).hexdigest()[:32]}@example.com>"


async def get(app: App, path: str, token: str) -> tuple[int, str]:
    resp = await app.client.get(path, params={"token": token})
    return resp.status, await resp.text()


async def post(app: App, path: str, token: str) -> tuple[int, str]:
    # What a browser submits from the confirmation page's form.
    resp = await app.client.post(path, data={"token": token})
    return resp.status, await resp.text()


def assert_page_headers(resp: ClientResponse) -> None:
    assert resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_ack_link_acknowledges_on_post_not_on_get(app: App) -> None:
    inc = await alert(app)
    await app.at(timedelta(0))
    assert mail(app) == [("alice@example.com", SUBJECT)]
    msg = app.smtp.messages[0].message
    assert str(msg["X-Tocsin-Incident"]) == inc.id
    assert str(msg["To"]) == "Alice Ng <alice@example.com>"
    path, token = link(msg, "ack")
    assert path == "/api/v1/email/ack"
    before = await app.timeline(inc.id)

    # A mail scanner (or a person) opening the link: a confirmation page, nothing changes.
    resp = await app.client.get(path, params={"token": token})
    html = await resp.text()
    assert resp.status == 200
    assert_page_headers(resp)
    assert "<h1>Acknowledge incident #1?</h1>" in html
    assert '<form method="post" action="/api/v1/email/ack">' in html
    assert f'<input type="hidden" name="token" value="{token}">' in html
    assert '<button type="submit">Acknowledge as alice</button>' in html
    head = await app.client.head(path, params={"token": token})
    assert head.status == 200
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before

    # Tampered (one character anywhere), or used for the other action: 403, nothing changes.
    for at in (0, len(token) // 2, token.index(".") + 1, len(token) - 1):
        assert (await post(app, path, flip(token, at)))[0] == 403
        status, html = await get(app, path, flip(token, at))
        assert (status, "<h1>This link is not valid</h1>" in html) == (403, True)
    assert (await post(app, "/api/v1/email/resolve", token))[0] == 403
    assert (await post(app, path, ""))[0] == 403
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before

    # The form's POST acts as Alice, through email.
    status, html = await post(app, path, token)
    assert status == 200
    assert "<h1>Incident #1 acknowledged</h1>" in html
    acked = await app.record(inc.id)
    assert (acked.status, acked.acknowledged_at) == (Status.ACKNOWLEDGED, START)
    events = await app.timeline(inc.id)
    assert [(e.kind, e.actor, e.source, e.message) for e in events[len(before) :]] == [
        ("ack", "alice", "email", "acknowledged by alice")
    ]

    # The same link again (a double click): 200 saying so, and no second event.
    status, html = await post(app, path, token)
    assert (status, "<h1>Incident #1 is already acknowledged</h1>" in html) == (200, True)
    status, html = await get(app, path, token)
    assert (status, "<h1>Incident #1 is already acknowledged</h1>" in html) == (200, True)
    assert await app.timeline(inc.id) == events

    # The ack stopped the escalation: Carol's tier never mails.
    await app.at(timedelta(minutes=10))
    assert mail(app) == [("alice@example.com", SUBJECT)]


async def test_expired_link_is_refused_and_changes_nothing(app: App) -> None:
    inc, (ack_path, ack), (resolve_path, resolve) = await first_links(app)
    before = await app.timeline(inc.id)

    app.clock.set(START + timedelta(minutes=59, seconds=59))  # still valid (ttl 1h)
    assert (await get(app, ack_path, ack))[0] == 200

    app.clock.set(START + timedelta(hours=1))  # expired: links live exactly link_ttl
    for path, token in ((ack_path, ack), (resolve_path, resolve)):
        status, html = await post(app, path, token)
        assert (status, "<h1>This link has expired</h1>" in html) == (403, True)
        assert (await get(app, path, token))[0] == 403
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before


async def test_resolve_link_sends_a_resolved_email_to_everyone_paged(app: App) -> None:
    inc = await alert(app)
    await app.at(timedelta(0))
    await app.at(timedelta(minutes=5))
    assert mail(app) == [("alice@example.com", SUBJECT), ("carol@example.com", SUBJECT)]
    alice_ack = link(app.smtp.messages[0].message, "ack")
    carol_resolve = link(app.smtp.messages[1].message, "resolve")

    status, html = await get(app, *carol_resolve)
    assert (status, "<h1>Resolve incident #1?</h1>" in html) == (200, True)
    assert (await app.record(inc.id)).status == Status.TRIGGERED

    app.clock.set(START + timedelta(minutes=7))
    status, html = await post(app, *carol_resolve)
    assert (status, "<h1>Incident #1 resolved</h1>" in html) == (200, True)
    resolved = await app.record(inc.id)
    assert (resolved.status, resolved.resolved_at) == (
        Status.RESOLVED,
        START + timedelta(minutes=7),
    )
    [event] = [e for e in await app.timeline(inc.id) if e.kind == "resolve"]
    assert (event.actor, event.source, event.message) == ("carol", "email", "resolved by carol")

    await app.at(timedelta(minutes=7))
    resolved_subject = "[SEV-1] #1 Resolved: HighErrorRate on api"
    # Delivered concurrently: order between the two is not defined.
    assert sorted(mail(app)[2:]) == [
        ("alice@example.com", resolved_subject),
        ("carol@example.com", resolved_subject),
    ]
    async with app.rt.store.transaction() as tx:
        rows = [r for r in await tx.outbox_of(inc.id) if r.kind == "resolve"]
    assert sorted(r.person for r in rows) == ["alice", "carol"]
    by_person = {m.rcpt_tos[0]: m.message for m in app.smtp.messages[2:]}
    for r in rows:
        notice = by_person[f"{r.person}@example.com"]
        assert str(notice["Message-ID"]) == mid(r.id)
        assert str(notice["X-Tocsin-Kind"]) == "resolve"
        assert "/api/v1/email/" not in text_of(notice)
        assert text_of(notice).startswith(
            "Resolved: SEV-1 (P0) incident #1: HighErrorRate on api\n\nStatus: resolved\n"
        )

    # Alice's ack link, used after the resolve: 200, already resolved, nothing changes.
    events = await app.timeline(inc.id)
    status, html = await post(app, *alice_ack)
    assert (status, "<h1>Incident #1 is already resolved</h1>" in html) == (200, True)
    assert await app.timeline(inc.id) == events


async def test_while_the_store_is_down_the_link_says_so_and_works_later(app: App) -> None:
    inc = await alert(app)
    await app.at(timedelta(0))
    path, token = link(app.smtp.messages[0].message, "ack")
    await app.rt.store.close()
    shown = await app.client.get(path, params={"token": token})
    shown_html = await shown.text()
    acted = await post(app, path, token)
    await app.rt.store.open()

    # A person reads these: an HTML page like every other answer of the links, not JSON.
    assert shown.status == 503
    assert_page_headers(shown)
    assert "<h1>tocsin cannot reach its store</h1>" in shown_html
    assert acted[0] == 503 and "<p>Nothing was changed; try again.</p>" in acted[1]
    status, html = await post(app, path, token)
    assert (status, "<h1>Incident #1 acknowledged</h1>" in html) == (200, True)
    assert (await app.record(inc.id)).status == Status.ACKNOWLEDGED


async def test_links_do_not_act_on_a_reopened_incident(app: App) -> None:
    inc, (ack_path, ack), (resolve_path, resolve) = await first_links(app)
    # Resolved, then reopened: a new escalation run the old email knows nothing about.
    await app.rt.service.act(inc.id, Action.RESOLVE, actor="ops", source="api")
    await app.rt.service.act(inc.id, Action.REOPEN, actor="ops", source="api")
    reopened = await app.record(inc.id)
    assert (reopened.status, reopened.epoch) == (Status.TRIGGERED, inc.epoch + 1)
    before = await app.timeline(inc.id)

    for path, token in ((ack_path, ack), (resolve_path, resolve)):
        status, html = await get(app, path, token)
        assert (status, "<h1>This link is out of date</h1>" in html) == (403, True)
        status, html = await post(app, path, token)
        assert (status, "<h1>This link is out of date</h1>" in html) == (403, True)

    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before


async def test_a_used_link_never_acts_again_even_after_an_escalation(app: App) -> None:
    """An escalation puts the acknowledged incident back to triggered in the same run (the
    link's epoch still matches): the ack link already used must not acknowledge it again."""
    inc, ack, _ = await first_links(app)
    assert (await post(app, *ack))[0] == 200
    await app.act(str(inc.number), "escalate")
    escalated = await app.record(inc.id)
    assert (escalated.status, escalated.epoch) == (Status.TRIGGERED, inc.epoch)
    events = await app.timeline(inc.id)

    status, html = await post(app, *ack)
    assert (status, "<h1>This link was already used</h1>" in html) == (409, True)
    # Opening it again shows the same, not a confirmation button whose POST would be refused.
    status, html = await get(app, *ack)
    assert (status, "<h1>This link was already used</h1>" in html, "<form" in html) == (
        409,
        True,
        False,
    )
    assert (await app.record(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == events
    assert [(e.actor, e.source) for e in events if e.kind == "ack"] == [("alice", "email")]
