"""The whole app with the email channel pointed at a real SMTP server (aiosmtpd), virtual clock.

An alert pages Alice by email at once and Carol five minutes later. The acknowledge / resolve
links in the messages that arrive are followed the way a mail client and a browser would: GET
shows a confirmation page and changes nothing (mail scanners prefetch links); POST acts as the
person the email went to, recorded with source ``email``; tampered and expired links get 403.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from config.load import load_config
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import IncidentRecord, Status, TimelineEvent
from escalation.store.base import IncidentFilter
from router.app import create_app
from router.runtime import Runtime
from tests.fakes.smtp import SmtpServer

START = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
PUBLIC = "https://tocsin.example.com"
LINK_SECRET = "flow-test-link-secret-0123456789"
RECEIVER_TOKEN = "am-bearer-token-1"
AM = {"Authorization": f"Bearer {RECEIVER_TOKEN}", "Content-Type": "application/json"}
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "alertmanager-0.25-firing.json"
SUBJECT = "[SEV-1] #1 HighErrorRate on api"

RULES_YAML = """\
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    severity: P0
    policy: mail
    title: "{{ labels.alertname }} on {{ labels.service }}"
"""


def config_yaml(tmp_path: Path, smtp: SmtpServer) -> str:
    """Alice by email at once, Carol by email after 5 minutes; links live for one hour."""
    return f"""\
server:
  listen: "127.0.0.1:9095"
  public_url: "{PUBLIC}"
  log_format: text
auth:
  receiver:
    bearer_tokens: ["{RECEIVER_TOKEN}"]
store:
  backend: sqlite
  path: {json.dumps(str(tmp_path / "t.db"))}
matrix:
  preset: default
rules:
  files: ["rules/*.yaml"]
people:
  alice: {{name: Alice Ng, email: alice@example.com, channels: [email]}}
  carol: {{name: Carol Sato, email: carol@example.com, channels: [email]}}
policies:
  mail:
    steps:
      - {{name: on-call, after: 0, notify: ["person:alice"], via: [email]}}
      - {{name: lead, after: 5m, notify: ["person:carol"], via: [email]}}
adapters:
  email:
    host: "{smtp.host}"
    port: {smtp.port}
    start_tls: false
    from_address: tocsin@example.com
    link_secret: "{LINK_SECRET}"
    link_ttl: 1h
    timeout: 5s
"""


@dataclass
class App:
    """A started Runtime serving its app, the SMTP server it sends to, and the virtual clock."""

    rt: Runtime
    client: TestClient
    smtp: SmtpServer
    clock: VirtualClock

    async def alert(self) -> IncidentRecord:
        resp = await self.client.post("/api/v1/alertmanager", data=FIXTURE.read_bytes(), headers=AM)
        assert resp.status == 200, await resp.text()
        [inc] = await self.rt.store.list_incidents(IncidentFilter())
        return inc

    async def at(self, delta: timedelta) -> None:
        """Move the clock to START + delta and let the engine fire and deliver what is due."""
        self.clock.set(START + delta)
        await self.rt.engine.tick()

    async def incident(self, inc_id: str) -> IncidentRecord:
        inc = await self.rt.store.get_incident(inc_id)
        assert inc is not None
        return inc

    async def timeline(self, inc_id: str) -> list[TimelineEvent]:
        return await self.rt.store.timeline(inc_id)

    def mail(self) -> list[tuple[str, str]]:
        """Every message received so far as (recipient, subject)."""
        return [(m.rcpt_tos[0], str(m.message["Subject"])) for m in self.smtp.messages]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def app(tmp_path: Path, smtp: SmtpServer, aiohttp_client: Any) -> AsyncIterator[App]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "main.yaml").write_text(RULES_YAML)
    path = tmp_path / "tocsin.yaml"
    path.write_text(config_yaml(tmp_path, smtp))
    clock = VirtualClock(START)
    rt = Runtime(load_config(path, env={}), clock=clock)
    await rt.start(run_engine=False)
    try:
        client = await aiohttp_client(create_app(rt))
        yield App(rt, client, smtp, clock)
    finally:
        await rt.stop()


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
    inc = await app.alert()
    await app.at(timedelta(0))
    assert app.mail() == [("alice@example.com", SUBJECT)]
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
    assert (await app.incident(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before

    # Tampered (one character anywhere), or used for the other action: 403, nothing changes.
    for at in (0, len(token) // 2, token.index(".") + 1, len(token) - 1):
        assert (await post(app, path, flip(token, at)))[0] == 403
        status, html = await get(app, path, flip(token, at))
        assert (status, "<h1>This link is not valid</h1>" in html) == (403, True)
    assert (await post(app, "/api/v1/email/resolve", token))[0] == 403
    assert (await post(app, path, ""))[0] == 403
    assert (await app.incident(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before

    # The form's POST acts as Alice, through email.
    status, html = await post(app, path, token)
    assert status == 200
    assert "<h1>Incident #1 acknowledged</h1>" in html
    acked = await app.incident(inc.id)
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
    assert app.mail() == [("alice@example.com", SUBJECT)]


async def test_expired_link_is_refused_and_changes_nothing(app: App) -> None:
    inc = await app.alert()
    await app.at(timedelta(0))
    msg = app.smtp.messages[0].message
    ack_path, ack = link(msg, "ack")
    resolve_path, resolve = link(msg, "resolve")
    before = await app.timeline(inc.id)

    app.clock.set(START + timedelta(minutes=59, seconds=59))  # still valid (ttl 1h)
    assert (await get(app, ack_path, ack))[0] == 200

    app.clock.set(START + timedelta(hours=1))  # expired: links live exactly link_ttl
    for path, token in ((ack_path, ack), (resolve_path, resolve)):
        status, html = await post(app, path, token)
        assert (status, "<h1>This link has expired</h1>" in html) == (403, True)
        assert (await get(app, path, token))[0] == 403
    assert (await app.incident(inc.id)).status == Status.TRIGGERED
    assert await app.timeline(inc.id) == before


async def test_resolve_link_sends_a_resolved_email_to_everyone_paged(app: App) -> None:
    inc = await app.alert()
    await app.at(timedelta(0))
    await app.at(timedelta(minutes=5))
    assert app.mail() == [("alice@example.com", SUBJECT), ("carol@example.com", SUBJECT)]
    alice_ack = link(app.smtp.messages[0].message, "ack")
    carol_resolve = link(app.smtp.messages[1].message, "resolve")

    status, html = await get(app, *carol_resolve)
    assert (status, "<h1>Resolve incident #1?</h1>" in html) == (200, True)
    assert (await app.incident(inc.id)).status == Status.TRIGGERED

    app.clock.set(START + timedelta(minutes=7))
    status, html = await post(app, *carol_resolve)
    assert (status, "<h1>Incident #1 resolved</h1>" in html) == (200, True)
    resolved = await app.incident(inc.id)
    assert (resolved.status, resolved.resolved_at) == (
        Status.RESOLVED,
        START + timedelta(minutes=7),
    )
    [event] = [e for e in await app.timeline(inc.id) if e.kind == "resolve"]
    assert (event.actor, event.source, event.message) == ("carol", "email", "resolved by carol")

    await app.at(timedelta(minutes=7))
    resolved_subject = "[SEV-1] #1 Resolved: HighErrorRate on api"
    # Delivered concurrently: order between the two is not defined.
    assert sorted(app.mail()[2:]) == [
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
    inc = await app.alert()
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
    assert (await app.incident(inc.id)).status == Status.ACKNOWLEDGED
