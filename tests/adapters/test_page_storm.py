"""A page storm to one person, through the whole app, is bundled and rate limited as configured.

Thirty distinct alerts (thirty incidents) page Alice by email. The app runs in-process on a
virtual clock (``tests/driver``) and sends through the real email adapter
to a real SMTP server (aiosmtpd), so what is asserted is what arrived in Alice's mailbox: how
many messages, when (their ``Date``), and which incidents each one names
(``X-Tocsin-Incident``). Behind each message the outbox rows end ``sent`` and share the
message's id, and each incident's timeline says its page went out ``(bundle of N)``.
"""

from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest
import yaml

from escalation.incidents.model import OutboxRecord, OutboxState
from escalation.store.base import IncidentFilter
from tests.driver.app import App
from tests.driver.config import email_adapter
from tests.driver.payloads import alert, notification
from tests.driver.team import T0, MakeTeamApp
from tests.fakes.smtp import SmtpServer

pytestmark = pytest.mark.usefixtures("strict_logs")

S = timedelta(seconds=1)
M = timedelta(minutes=1)

RULES = """\
  - name: storm
    match: '{alertname=~"Storm.+"}'
    severity: P2
    policy: mail-alice
"""

POLICIES = """\
  mail-alice:
    reminders: false
    steps:
      - {name: on-call, after: 0, notify: ["person:alice"], via: [email]}
"""

PEOPLE = """\
  alice: {name: Alice, email: alice@example.com, channels: [email]}
  bob: {name: Bob, channels: [log]}
  carol: {name: Carol, channels: [log]}
  dave: {name: Dave, channels: [log]}
  erin: {name: Erin, channels: [log]}
"""


def adapters(smtp: SmtpServer, *, bundle_window: str, person_rate: str) -> str:
    email = email_adapter(
        smtp.host, smtp.port, link_secret="storm-test-link-secret-0123456789", timeout="5s"
    )
    dispatch = {"bundle_window": bundle_window, "person_rate": yaml.safe_load(person_rate)}
    return yaml.safe_dump({"adapters": {"email": email, "dispatch": dispatch}})


async def storm(app: App, offsets: list[timedelta]) -> None:
    """Alert ``Storm01``... at T0 + each offset, each its own Alertmanager group (incident)."""
    for i, at in enumerate(offsets, start=1):
        await app.run_until(T0 + at)
        name = f"Storm{i:02d}"
        body = notification(
            [alert(name, severity="warning", instance=f"node-{i}", starts=T0 + at)],
            group_key=f'{{}}:{{alertname="{name}"}}',
        )
        await app.post(body)
        await app.run_until(T0 + at)  # the engine fires the page step as it would at once


async def inbox(app: App, smtp: SmtpServer) -> list[tuple[float, list[int], str]]:
    """Alice's mail: (seconds after T0 per its Date, incident numbers it names, Message-ID)."""
    numbers = {i.id: i.number for i in await app.rt.store.list_incidents(IncidentFilter(limit=100))}
    out = []
    for m in smtp.messages:
        assert m.rcpt_tos == ("alice@example.com",)
        sent = parsedate_to_datetime(str(m.message["Date"]))
        ids = [x.strip() for x in str(m.message["X-Tocsin-Incident"]).split(",")]
        out.append(
            ((sent - T0).total_seconds(), [numbers[x] for x in ids], str(m.message["Message-ID"]))
        )
    return out


async def pages(app: App) -> dict[int, OutboxRecord]:
    """Incident number → its one outbox row (every incident pages Alice once, by email)."""
    out = {}
    for inc in await app.rt.store.list_incidents(IncidentFilter(limit=100)):
        async with app.rt.store.transaction() as tx:
            [row] = await tx.outbox_of(inc.id)
        assert (row.person, row.channel, row.kind) == ("alice", "email", "page")
        out[inc.number] = row
    return out


async def delivered(app: App) -> dict[int, list[tuple[float, str]]]:
    """Incident number → its delivery timeline events (seconds after T0, message)."""
    out = {}
    for inc in await app.rt.store.list_incidents(IncidentFilter(limit=100)):
        out[inc.number] = [
            ((e.at - T0).total_seconds(), e.message)
            for e in await app.rt.store.timeline(inc.id)
            if e.kind == "delivery"
        ]
    return out


async def test_a_burst_of_thirty_pages_is_one_message_then_one_bundle(
    make_team_app: MakeTeamApp, smtp: SmtpServer
) -> None:
    """30 alerts within 2.9 s; bundle_window 30s: the first at once, the other 29 at T0+30s."""
    app = await make_team_app(
        rules=RULES,
        policies=POLICIES,
        people=PEOPLE,
        extra=adapters(smtp, bundle_window="30s", person_rate="{count: 3, per: 10m}"),
    )
    await storm(app, [i * 100 * timedelta(milliseconds=1) for i in range(30)])
    assert len(await app.incidents("limit=100")) == 30
    # Only the first has gone out during the burst.
    assert [(t, n) for t, n, _ in await inbox(app, smtp)] == [(0.0, [1])]
    await app.run_until(T0 + 30 * S - timedelta(milliseconds=1))
    assert len(smtp.messages) == 1
    await app.run_until(T0 + 30 * S)
    await app.advance(timedelta(hours=2))  # nothing else is owed to anyone
    mail = await inbox(app, smtp)
    assert [(t, n) for t, n, _ in mail] == [(0.0, [1]), (30.0, list(range(2, 31)))]
    assert str(smtp.messages[0].message["Subject"]) == "[SEV-3] #1 Storm01: Storm01 on node-1"
    assert str(smtp.messages[1].message["Subject"]).startswith(
        "[SEV-3] 29 incidents: #2 Storm02: Storm02 on node-2; #3 Storm03: Storm03 on node-3; "
    )

    rows = await pages(app)
    assert {n: r.state for n, r in rows.items()} == {n: OutboxState.SENT for n in range(1, 31)}
    assert (rows[1].provider_id, rows[1].sent_at, rows[1].attempts) == (mail[0][2], T0, 1)
    for n in range(2, 31):
        assert (rows[n].provider_id, rows[n].sent_at, rows[n].attempts) == (
            mail[1][2],
            T0 + 30 * S,
            1,
        )
    events = await delivered(app)
    assert events[1] == [(0.0, "page delivered to alice via email")]
    for n in range(2, 31):
        assert events[n] == [(30.0, "page delivered to alice via email (bundle of 29)")], n


async def test_a_longer_storm_is_capped_by_the_per_person_rate(
    make_team_app: MakeTeamApp, smtp: SmtpServer
) -> None:
    """30 alerts, one every 2 s; bundle_window 10s, person_rate 3 per 10m.

    0s: #1 alone. 10s: #2-#5, held since they came (2s..8s) to the end of the window (#6
    arrives just after, at 10s, and waits for the next). 20s: #6-#10. That is three messages:
    from 30s on the rate limit holds everything (#11-#30) until the first message leaves the
    ten-minute window at 10m, when one bundle of 20 goes.
    """
    app = await make_team_app(
        rules=RULES,
        policies=POLICIES,
        people=PEOPLE,
        extra=adapters(smtp, bundle_window="10s", person_rate="{count: 3, per: 10m}"),
    )
    await storm(app, [i * 2 * S for i in range(30)])
    assert [(t, n) for t, n, _ in await inbox(app, smtp)] == [
        (0.0, [1]),
        (10.0, [2, 3, 4, 5]),
        (20.0, [6, 7, 8, 9, 10]),
    ]
    rows = await pages(app)
    # Held by the limit, not failed, and no attempt spent on them.
    for n in range(11, 31):
        assert (rows[n].state, rows[n].attempts, rows[n].not_before) == (
            OutboxState.PENDING,
            0,
            T0 + 10 * M,
        ), n
    await app.run_until(T0 + 10 * M - S)
    assert len(smtp.messages) == 3
    await app.run_until(T0 + 10 * M)
    await app.advance(timedelta(hours=2))
    mail = await inbox(app, smtp)
    assert [(t, n) for t, n, _ in mail] == [
        (0.0, [1]),
        (10.0, [2, 3, 4, 5]),
        (20.0, [6, 7, 8, 9, 10]),
        (600.0, list(range(11, 31))),
    ]
    rows = await pages(app)
    groups = {1: [1], 2: list(range(2, 6)), 3: list(range(6, 11)), 4: list(range(11, 31))}
    events = await delivered(app)
    for k, members in groups.items():
        at, _, message_id = mail[k - 1]
        suffix = f" (bundle of {len(members)})" if len(members) > 1 else ""
        for n in members:
            assert (rows[n].state, rows[n].provider_id, rows[n].attempts) == (
                OutboxState.SENT,
                message_id,
                1,
            ), n
            assert rows[n].sent_at == T0 + timedelta(seconds=at)
            assert events[n] == [(at, f"page delivered to alice via email{suffix}")], n
    assert len({m for _, _, m in mail}) == 4
