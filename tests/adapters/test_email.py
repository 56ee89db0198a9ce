"""The email adapter against a real SMTP server (aiosmtpd on 127.0.0.1).

Each test starts its own server, sends through ``adapters.email.build`` with an ``EmailConfig``
pointing at it, and asserts what the server received: envelope, exact headers, both MIME parts,
the signed links, and the DeliveryResult for every failure the server can be told to produce.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import aiosmtplib
import pytest

from adapters.config import AdaptersConfig, EmailConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.email import EmailNotifier, build
from adapters.email.links import LinkClaims, LinkSigner
from adapters.email.sender import classify_error
from adapters.registry import AdapterBuildError, AdapterContext, build_notifiers
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import IncidentRecord, OutboxRecord, Status
from tests.fakes.smtp import SilentServer, SmtpServer, TestTLS, free_port

NOW = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
SECRET = "email-link-secret-for-tests"
PUBLIC = "https://tocsin.example.com"
TTL = timedelta(hours=12)
ALICE = {"name": "Alice Ng", "email": "alice@example.com", "timezone": "Europe/London"}
INC_ID = "9f2c1e"


def _no_http() -> aiohttp.ClientSession:
    raise AssertionError("the email adapter must not use HTTP")


def notifier(
    smtp_host: str, port: int, clock: VirtualClock | None = None, **cfg: Any
) -> EmailNotifier:
    """The adapter as ``build`` makes it, pointed at ``host:port``."""
    section = EmailConfig(
        host=smtp_host,
        port=port,
        from_address="tocsin@example.com",
        link_secret=SECRET,
        link_ttl=TTL,
        timeout=cfg.pop("timeout", "5s"),
        **cfg,
    )
    out = build(section, AdapterContext(PUBLIC, _no_http, clock or VirtualClock(NOW)))
    assert list(out) == ["email"]
    n = out["email"]
    assert isinstance(n, EmailNotifier)
    return n


def incident(
    id: str = INC_ID,
    number: int = 12,
    title: str = "HighErrorRate on api",
    status: Status = Status.TRIGGERED,
    severity: str = "P0",
    **kw: Any,
) -> IncidentRecord:
    return IncidentRecord(
        id=id,
        number=number,
        key=f"key-{id}",
        status=status,
        severity=severity,
        title=title,
        team=kw.pop("team", "payments"),
        policy_name="default",
        policy={},
        level={"name": {"P0": "SEV-1", "P1": "SEV-2"}.get(severity, severity)},
        opened_at=NOW,
        updated_at=NOW,
        labels=kw.pop("labels", {"alertname": "HighErrorRate", "service": "api"}),
        **kw,
    )


def row(
    incident_id: str = INC_ID, kind: str = "page", person: str = "alice", **kw: Any
) -> OutboxRecord:
    return OutboxRecord(
        id=kw.pop("id", f"{incident_id}:0:page:0:0:{person}:email"),
        incident_id=incident_id,
        step_id=f"{incident_id}:0:page:0:0",
        kind=kind,
        tier=0,
        round=0,
        target="role:oncall",
        person=person,
        channel="email",
        created_at=NOW,
        not_before=NOW,
        **kw,
    )


ALERTS = [
    {
        "status": "firing",
        "labels": {"alertname": "HighErrorRate", "service": "api"},
        "annotations": {
            "summary": "5xx rate above 5%",
            "runbook_url": "https://runbooks.example.com/api?x=1&y=2",
        },
        "generator_url": "http://vm:19090/graph?g0.expr=x&g0.tab=1",
    }
]


def page(**kw: Any) -> Delivery:
    return Delivery(
        row(payload={"alerts": ALERTS}),
        incident(**kw),
        ALICE,
        {"incident": f"{PUBLIC}/api/v1/incidents/{INC_ID}"},
    )


def mid(*row_ids: str) -> str:
    return (
        f"<{hashlib.sha256(chr(10).join(sorted(row_ids)).encode()).hexdigest()[:32]}@example.com>"
    )


def parts(msg: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies, asserting the message is exactly multipart/alternative of two."""
    assert msg.get_content_type() == "multipart/alternative"
    kids = list(msg.iter_parts())
    assert [k.get_content_type() for k in kids] == ["text/plain", "text/html"]
    text, html = (k.get_content() for k in kids)
    assert isinstance(text, str) and isinstance(html, str)
    # SMTP carries CRLF line endings; compare with Python's.
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def tokens(text: str, action: str) -> list[str]:
    urls = re.findall(rf"{re.escape(PUBLIC)}/api/v1/email/{action}\?\S+", text)
    return [parse_qs(urlsplit(u).query)["token"][0] for u in urls]


def signer() -> LinkSigner:
    return LinkSigner(SECRET, TTL, PUBLIC)


@pytest.fixture
def tls(tmp_path: Path) -> TestTLS:
    return TestTLS.make(tmp_path)


# -- what a page looks like --------------------------------------------------------------------


async def test_page_arrives_with_exact_headers_and_both_parts(smtp: SmtpServer) -> None:
    result = await notifier(smtp.host, smtp.port).notify(page())

    row_id = f"{INC_ID}:0:page:0:0:alice:email"
    assert result == DeliveryResult(ok=True, provider_id=mid(row_id))
    assert len(smtp.messages) == 1
    got = smtp.messages[0]
    assert (got.mail_from, got.rcpt_tos, got.tls, got.login) == (
        "tocsin@example.com",
        ("alice@example.com",),
        False,
        None,
    )
    msg = got.message
    ref = f"<incident.{hashlib.sha256(INC_ID.encode()).hexdigest()[:32]}@example.com>"
    assert {k: str(msg[k]) for k in msg.keys() if k not in ("Content-Type",)} == {
        "From": "tocsin@example.com",
        "To": "Alice Ng <alice@example.com>",
        "Subject": "[SEV-1] #12 HighErrorRate on api",
        "Date": "Sun, 22 Nov 2026 13:00:00 +0000",
        "Message-ID": mid(row_id),
        "References": ref,
        "X-Tocsin-Incident": INC_ID,
        "X-Tocsin-Kind": "page",
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "All",
        "MIME-Version": "1.0",
    }
    text, html = parts(msg)
    ack = signer().url(INC_ID, "ack", "alice", NOW)
    resolve = signer().url(INC_ID, "resolve", "alice", NOW)
    assert text == (
        "SEV-1 (P0) incident #12: HighErrorRate on api\n"
        "\n"
        "Status: triggered\n"
        "Opened: 2026-11-22 13:00 GMT\n"
        "Team: payments\n"
        "\n"
        "Alert (firing):\n"
        "  alertname=HighErrorRate\n"
        "  service=api\n"
        "  runbook_url: https://runbooks.example.com/api?x=1&y=2\n"
        "  summary: 5xx rate above 5%\n"
        "  source: http://vm:19090/graph?g0.expr=x&g0.tab=1\n"
        "\n"
        f"Incident: {PUBLIC}/api/v1/incidents/{INC_ID}\n"
        "Runbook: https://runbooks.example.com/api?x=1&y=2\n"
        f"Acknowledge: {ack}\n"
        f"Resolve: {resolve}\n"
        "\n"
        "-- \n"
        "Sent by tocsin. Links act as you (alice) and expire; opening one asks for confirmation.\n"
    )
    assert "<h2>SEV-1 (P0) incident #12: HighErrorRate on api</h2>" in html
    assert '<tr><th align="left">Status</th><td>triggered</td></tr>' in html
    assert f'<a href="{ack}">Acknowledge</a>' in html
    assert f'<a href="{resolve}">Resolve</a>' in html
    assert '<a href="https://runbooks.example.com/api?x=1&amp;y=2">Runbook</a>' in html
    assert f'<a href="{PUBLIC}/api/v1/incidents/{INC_ID}">Incident</a>' in html
    # The links carry exactly the claims the inbound endpoint will check.
    (token,) = tokens(text, "ack")
    assert signer().verify(token, "ack", NOW) == LinkClaims(INC_ID, "ack", "alice", NOW + TTL)


async def test_everything_from_alerts_is_escaped_in_html(smtp: SmtpServer) -> None:
    hostile = [
        {
            "status": "firing",
            "labels": {"alertname": "X", "job": '"><img src=x onerror=alert(1)>'},
            "annotations": {"runbook_url": "javascript:alert(1)", "summary": "a & b < c"},
            "generator_url": "javascript:alert(2)",
        }
    ]
    d = Delivery(
        row(payload={"alerts": hostile}),
        incident(title="<script>alert(1)</script> & co\r\nBcc: evil@example.com"),
        ALICE,
        {"incident": f"{PUBLIC}/api/v1/incidents/{INC_ID}"},
    )
    assert (await notifier(smtp.host, smtp.port).notify(d)).ok
    msg = smtp.messages[0].message
    # CR/LF in a title can never add a header.
    assert str(msg["Subject"]) == "[SEV-1] #12 <script>alert(1)</script> & co Bcc: evil@example.com"
    assert msg["Bcc"] is None
    assert smtp.messages[0].rcpt_tos == ("alice@example.com",)
    _, html = parts(msg)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co Bcc: evil@example.com" in html
    assert "<code>job=&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</code>" in html
    assert "<b>summary</b>: a &amp; b &lt; c" in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(h.startswith(("https://", "http://")) for h in hrefs)
    assert "Runbook: javascript:alert(1)" in html  # shown, never a link


async def test_resolve_row_is_a_resolved_message_without_action_links(smtp: SmtpServer) -> None:
    inc = incident(status=Status.RESOLVED, resolved_at=NOW + timedelta(minutes=30))
    r = row(kind="resolve", id=f"{INC_ID}:resolve:0:alice:email")
    d = Delivery(r, inc, ALICE, {"incident": f"{PUBLIC}/api/v1/incidents/{INC_ID}"})
    clock = VirtualClock(NOW + timedelta(minutes=30))
    result = await notifier(smtp.host, smtp.port, clock).notify(d)
    assert result == DeliveryResult(ok=True, provider_id=mid(r.id))
    msg = smtp.messages[0].message
    assert str(msg["Subject"]) == "[SEV-1] #12 Resolved: HighErrorRate on api"
    assert str(msg["X-Tocsin-Kind"]) == "resolve"
    text, html = parts(msg)
    assert text.startswith(
        "Resolved: SEV-1 (P0) incident #12: HighErrorRate on api\n\n"
        "Status: resolved\n"
        "Opened: 2026-11-22 13:00 GMT\n"
        "Resolved: 2026-11-22 13:30 GMT\n"
    )
    assert "/api/v1/email/" not in text and "/api/v1/email/" not in html
    assert "Labels:\n  alertname=HighErrorRate\n  service=api\n" in text  # no alerts on the row


async def test_reminder_after_ack_offers_resolve_but_not_ack(smtp: SmtpServer) -> None:
    inc = incident(status=Status.ACKNOWLEDGED, acknowledged_at=NOW + timedelta(minutes=2))
    d = Delivery(row(kind="reminder", id="r1"), inc, ALICE, {})
    assert (await notifier(smtp.host, smtp.port).notify(d)).ok
    msg = smtp.messages[0].message
    assert str(msg["Subject"]) == "[SEV-1] #12 Reminder: HighErrorRate on api"
    text, _ = parts(msg)
    assert tokens(text, "ack") == []
    assert len(tokens(text, "resolve")) == 1
    # Without a link from the runtime the incident page is still linked.
    assert f"Incident: {PUBLIC}/api/v1/incidents/{INC_ID}\n" in text


async def test_bundle_is_one_message_with_one_ack_link_per_incident(smtp: SmtpServer) -> None:
    incs = [
        incident("a1", 12, "HighErrorRate on api", severity="P1"),
        incident("b2", 13, "DiskFull on db", severity="P0"),
        incident("c3", 14, "Latency on web", severity="P1"),
    ]
    rows = [row(i.id) for i in incs]
    d = Delivery(
        rows[0],
        incs[0],
        ALICE,
        {"incident": f"{PUBLIC}/api/v1/incidents/a1"},
        bundle=tuple(rows[1:]),
        bundle_incidents={i.id: i for i in incs[1:]},
    )
    result = await notifier(smtp.host, smtp.port).notify(d)
    assert result == DeliveryResult(ok=True, provider_id=mid(*(r.id for r in rows)))
    assert len(smtp.messages) == 1
    msg = smtp.messages[0].message
    assert str(msg["Subject"]) == (
        "[SEV-1] 3 incidents: #12 HighErrorRate on api; #13 DiskFull on db; #14 Latency on web"
    )
    assert str(msg["X-Tocsin-Incident"]) == "a1, b2, c3"
    text, html = parts(msg)
    acks = [signer().verify(t, "ack", NOW) for t in tokens(text, "ack")]
    assert [(c.incident_id, c.person) for c in acks] == [
        ("a1", "alice"),
        ("b2", "alice"),
        ("c3", "alice"),
    ]
    assert html.count(">Acknowledge</a>") == 3
    assert [h for h in re.findall(r"<h2>(.*?)</h2>", html)] == [
        "SEV-2 (P1) incident #12: HighErrorRate on api",
        "SEV-1 (P0) incident #13: DiskFull on db",
        "SEV-2 (P1) incident #14: Latency on web",
    ]


async def test_message_id_is_the_same_for_a_retried_row(smtp: SmtpServer) -> None:
    n = notifier(smtp.host, smtp.port)
    first = await n.notify(page())
    again = await n.notify(page())
    other = await n.notify(Delivery(row(id="another-row"), incident(), ALICE, {}))
    ids = [str(m.message["Message-ID"]) for m in smtp.messages]
    assert ids == [mid(f"{INC_ID}:0:page:0:0:alice:email")] * 2 + [mid("another-row")]
    assert first.provider_id == again.provider_id != other.provider_id


async def test_links_expire_by_the_runtime_clock(smtp: SmtpServer) -> None:
    clock = VirtualClock(NOW)
    clock.set(NOW + timedelta(days=3))
    assert (await notifier(smtp.host, smtp.port, clock).notify(page())).ok
    text, _ = parts(smtp.messages[0].message)
    (token,) = tokens(text, "ack")
    later = NOW + timedelta(days=3)
    assert signer().verify(token, "ack", later).expires == later + TTL


async def test_person_without_a_usable_email_cannot_be_attempted(smtp: SmtpServer) -> None:
    d = Delivery(row(person="bob"), incident(), {"name": "Bob"}, {})
    result = await notifier(smtp.host, smtp.port).notify(d)
    assert result == DeliveryResult(
        ok=False, reason=FailureReason.NO_ADDRESS, error="no email address for bob"
    )
    bad = Delivery(row(person="eve"), incident(), {"email": "eve@x\r\nBcc: y@z"}, {})
    result = await notifier(smtp.host, smtp.port).notify(bad)
    assert result == DeliveryResult(
        ok=False, reason=FailureReason.NO_ADDRESS, error="invalid email address for eve"
    )
    assert smtp.messages == []


# -- transport security and authentication ------------------------------------------------------


async def test_auth_over_plain_tcp() -> None:
    with SmtpServer(users={"tocsin": "s3cret-pw"}, auth_require_tls=False) as server:
        n = notifier(server.host, server.port, username="tocsin", password="s3cret-pw")
        assert (await n.notify(page())).ok
        assert server.auth_attempts == [("tocsin", True)]
        assert [(m.login, m.tls) for m in server.messages] == [("tocsin", False)]


async def test_bad_password_is_permanent_and_names_no_secret() -> None:
    with SmtpServer(users={"tocsin": "s3cret-pw"}, auth_require_tls=False) as server:
        n = notifier(server.host, server.port, username="tocsin", password="wrong-password")
        result = await n.notify(page())
        assert result == DeliveryResult(
            ok=False,
            reason=FailureReason.PERMANENT,
            error="authentication failed: SMTP 535 5.7.8 Authentication credentials invalid",
        )
        # aiosmtplib may try each advertised mechanism (PLAIN, then LOGIN): all refused.
        assert set(server.auth_attempts) == {("tocsin", False)}
        assert server.messages == []


async def test_required_starttls_with_a_test_ca_and_auth(tls: TestTLS) -> None:
    with SmtpServer(
        users={"tocsin": "s3cret-pw"}, starttls=tls.server_context, require_starttls=True
    ) as server:
        n = notifier(
            server.host,
            server.port,
            start_tls=True,
            tls_ca_path=str(tls.ca_file),
            username="tocsin",
            password="s3cret-pw",
        )
        assert (await n.notify(page())).ok
        # AUTH was only offered after the upgrade (aiosmtpd's auth_require_tls default).
        assert [(m.login, m.tls) for m in server.messages] == [("tocsin", True)]


async def test_starttls_is_used_when_offered(tls: TestTLS) -> None:
    with SmtpServer(starttls=tls.server_context) as server:
        n = notifier(server.host, server.port, tls_ca_path=str(tls.ca_file))  # start_tls: None
        assert (await n.notify(page())).ok
        assert [m.tls for m in server.messages] == [True]


async def test_untrusted_starttls_certificate_is_permanent(tls: TestTLS) -> None:
    with SmtpServer(starttls=tls.server_context, require_starttls=True) as server:
        result = await notifier(server.host, server.port, start_tls=True).notify(page())
        assert (result.ok, result.retryable) == (False, False)
        assert result.error == "TLS certificate rejected: unable to get local issuer certificate"
        assert server.messages == []


async def test_refusing_required_starttls_is_permanent(tls: TestTLS) -> None:
    with SmtpServer(starttls=tls.server_context, require_starttls=True) as server:
        result = await notifier(server.host, server.port, start_tls=False).notify(page())
        assert result == DeliveryResult(
            ok=False,
            reason=FailureReason.PERMANENT,
            error="sender refused: SMTP 530 Must issue a STARTTLS command first",
        )


async def test_implicit_tls(tls: TestTLS) -> None:
    with SmtpServer(implicit_tls=tls.server_context) as server:
        n = notifier(server.host, server.port, use_tls=True, tls_ca_path=str(tls.ca_file))
        assert (await n.notify(page())).ok
        assert [(m.tls, m.rcpt_tos) for m in server.messages] == [(True, ("alice@example.com",))]


async def test_implicit_tls_with_an_untrusted_certificate_is_permanent(tls: TestTLS) -> None:
    with SmtpServer(implicit_tls=tls.server_context) as server:
        result = await notifier(server.host, server.port, use_tls=True).notify(page())
        assert result == DeliveryResult(
            ok=False, error="TLS certificate rejected: unable to get local issuer certificate"
        )


# -- failure mapping -----------------------------------------------------------------------------


async def test_server_down_is_retryable() -> None:
    port = free_port()
    result = await notifier("127.0.0.1", port).notify(page())
    assert (result.ok, result.retryable, result.unknown) == (False, True, False)
    assert result.error.startswith(
        f"connection failed: Error connecting to 127.0.0.1 on port {port}"
    )


async def test_a_server_that_never_answers_times_out_retryable() -> None:
    async with SilentServer() as silent:
        result = await notifier(silent.host, silent.port, timeout="1s").notify(page())
    assert result == DeliveryResult(
        ok=False,
        reason=FailureReason.RETRYABLE,
        error="timeout: Timed out waiting for server ready message",
    )


@pytest.mark.parametrize(
    ("setting", "reply", "expected"),
    [
        (
            "rcpt_reply",
            "550 5.1.1 no such user",
            DeliveryResult(
                ok=False,
                reason=FailureReason.PERMANENT,
                error="recipient refused: SMTP 550 5.1.1 no such user",
            ),
        ),
        (
            "rcpt_reply",
            "450 4.2.0 greylisted, try later",
            DeliveryResult(
                ok=False,
                reason=FailureReason.RETRYABLE,
                error="recipient refused: SMTP 450 4.2.0 greylisted, try later",
            ),
        ),
        (
            "data_reply",
            "451 4.3.0 try again later",
            DeliveryResult(
                ok=False,
                reason=FailureReason.RETRYABLE,
                error="SMTPDataError: SMTP 451 4.3.0 try again later",
            ),
        ),
        (
            "data_reply",
            "554 5.7.1 rejected as spam",
            DeliveryResult(
                ok=False,
                reason=FailureReason.PERMANENT,
                error="SMTPDataError: SMTP 554 5.7.1 rejected as spam",
            ),
        ),
        (
            "hang_up_on_data",
            True,
            DeliveryResult(
                ok=False,
                reason=FailureReason.RETRYABLE,
                error="connection failed: Unexpected EOF received",
            ),
        ),
    ],
)
async def test_server_replies_map_to_retryable_or_permanent(
    smtp: SmtpServer, setting: str, reply: object, expected: DeliveryResult
) -> None:
    setattr(smtp, setting, reply)
    assert await notifier(smtp.host, smtp.port).notify(page()) == expected
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("exc", "reason", "error"),
    [
        (
            aiosmtplib.SMTPAuthenticationError(454, "4.7.0 Temporary authentication failure"),
            FailureReason.RETRYABLE,
            "authentication failed: SMTP 454 4.7.0 Temporary authentication failure",
        ),
        (
            aiosmtplib.SMTPConnectResponseError(421, "4.3.2 shutting down"),
            FailureReason.RETRYABLE,
            "SMTPConnectResponseError: SMTP 421 4.3.2 shutting down",
        ),
        (
            aiosmtplib.SMTPConnectResponseError(554, "5.7.1 go away"),
            FailureReason.PERMANENT,
            "SMTPConnectResponseError: SMTP 554 5.7.1 go away",
        ),
        (
            aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
            FailureReason.PERMANENT,
            "SMTPException: SMTP STARTTLS extension not supported by server.",
        ),
        (
            aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"),
            FailureReason.RETRYABLE,
            "timeout: Timed out waiting for server response",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            FailureReason.RETRYABLE,
            "ConnectionResetError: [Errno 104] Connection reset by peer",
        ),
    ],
)
def test_classify_error(exc: BaseException, reason: FailureReason, error: str) -> None:
    assert classify_error(exc) == DeliveryResult(ok=False, reason=reason, error=error)


# -- building -----------------------------------------------------------------------------------


def _ctx() -> AdapterContext:
    return AdapterContext(PUBLIC, _no_http, VirtualClock(NOW))


def test_build_refuses_a_config_without_link_secret() -> None:
    with pytest.raises(ValueError) as e:
        build(EmailConfig(host="127.0.0.1"), _ctx())
    assert str(e.value) == (
        "link_secret is required: the acknowledge / resolve links in emails are signed with it"
    )
    with pytest.raises(AdapterBuildError) as err:
        build_notifiers(AdaptersConfig(email=EmailConfig(host="127.0.0.1")), _ctx())
    assert [c for c, _ in err.value.problems] == ["email"]


def test_build_refuses_a_short_secret_and_a_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="link_secret must be at least 16 characters"):
        build(EmailConfig(link_secret="short"), _ctx())
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(AdapterBuildError) as err:
        build_notifiers(
            AdaptersConfig(email=EmailConfig(link_secret=SECRET, tls_ca_path=missing)), _ctx()
        )
    assert err.value.problems[0][0] == "email"
    assert "No such file or directory" in err.value.problems[0][1]


async def test_grafanas_dashboard_and_panel_are_links_and_a_script_url_stays_text(
    smtp: SmtpServer,
) -> None:
    grafana = {
        "grafana_dashboard_url": "https://grafana.example.com/d/api",
        "grafana_panel_url": "javascript:alert(1)",
    }
    alerts = [ALERTS[0] | {"annotations": ALERTS[0]["annotations"] | grafana}]
    delivery = Delivery(
        row(payload={"alerts": alerts}), incident(), ALICE, {"incident": f"{PUBLIC}/x"}
    )
    await notifier(smtp.host, smtp.port).notify(delivery)
    text, html = parts(smtp.messages[0].message)
    assert "Dashboard: https://grafana.example.com/d/api\n" in text
    assert '<a href="https://grafana.example.com/d/api">Dashboard</a>' in html
    assert "Panel: javascript:alert(1)" in html  # inert text, never a link
    assert 'href="javascript:' not in html
