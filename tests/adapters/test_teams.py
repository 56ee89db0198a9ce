"""The ``teams`` channel against a fake Teams Workflows webhook that validates every card
against the Adaptive Card schema of the version it declares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.config import TeamsConfig
from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.email.links import BadLink, LinkSigner
from adapters.teams import TeamsNotifier, check, link_signer
from adapters.teams.card import card
from escalation.engine.clock import VirtualClock
from tests.adapters.test_webhook import INC_ID, PUBLIC, T0, delivery, incident, row
from tests.adapters.test_webhook_presets import alert
from tests.fakes.chat_webhooks import Scripted
from tests.fakes.teams_workflows import SIG, FakeTeamsWorkflows, card_errors

LINK_SECRET = "teams-link-secret-0123456789"


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeamsWorkflows]:
    fake = await FakeTeamsWorkflows().start()
    yield fake
    await fake.close()


def config(*urls: str) -> TeamsConfig:
    return TeamsConfig(
        webhooks={f"ops{i}": SecretStr(u) for i, u in enumerate(urls)},
        link_secret=SecretStr(LINK_SECRET),
        link_ttl=timedelta(hours=1),
    )


def notifier(session: aiohttp.ClientSession, cfg: TeamsConfig) -> TeamsNotifier:
    signer = link_signer(cfg, PUBLIC)
    return TeamsNotifier(cfg.webhooks, signer, lambda: session, VirtualClock(T0), 5.0)


def actions(c: dict[str, object]) -> dict[str, str]:
    acts = c["actions"]
    assert isinstance(acts, list)
    return {a["title"]: a["url"] for a in acts}


async def test_a_page_posts_a_schema_valid_card_with_signed_links(
    teams: FakeTeamsWorkflows, session: aiohttp.ClientSession
) -> None:
    result = await notifier(session, config(teams.url)).notify(delivery(alerts=(alert(),)))
    assert result == DeliveryResult(ok=True, provider_id="ops0")
    [c] = teams.cards
    assert c["version"] == "1.4" and card_errors(c) == []
    assert c["body"][0]["text"] == "[SEV-1] #42 DiskFull on db1"
    links = actions(c)
    assert list(links) == ["Acknowledge", "Resolve", "Incident", "Runbook", "Source"]
    assert links["Incident"] == f"{PUBLIC}/incidents/{INC_ID}"  # the console's page
    signer = LinkSigner(LINK_SECRET, timedelta(hours=1), PUBLIC, channel="teams")
    for title, action in (("Acknowledge", "ack"), ("Resolve", "resolve")):
        parts = urlsplit(links[title])
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
        assert parts.path == f"/api/v1/teams/{action}"
        claims = signer.verify(parse_qs(parts.query)["token"][0], action, T0)
        assert (claims.incident_id, claims.person) == (INC_ID, "ollie")
        assert claims.expires == T0 + timedelta(hours=1)


def test_a_teams_link_is_no_email_link_even_with_the_same_secret() -> None:
    teams_signer = LinkSigner(LINK_SECRET, timedelta(hours=1), PUBLIC, channel="teams")
    email_signer = LinkSigner(LINK_SECRET, timedelta(hours=1), PUBLIC)
    token = teams_signer.token(INC_ID, "ack", "ollie", T0)
    with pytest.raises(BadLink, match="bad signature"):
        email_signer.verify(token, "ack", T0)
    with pytest.raises(BadLink, match="bad signature"):
        teams_signer.verify(email_signer.token(INC_ID, "ack", "ollie", T0), "ack", T0)


def test_a_resolved_notice_has_no_action_buttons() -> None:
    signer = LinkSigner(LINK_SECRET, timedelta(hours=1), PUBLIC, channel="teams")
    c = card(delivery(row=row(kind="resolve")), signer, T0)
    assert card_errors(c) == []
    assert list(actions(c)) == ["Incident"]
    assert c["body"][1]["text"] == "Resolved"


async def test_alerts_far_past_every_limit_still_make_a_valid_small_card(
    teams: FakeTeamsWorkflows, session: aiohttp.ClientSession
) -> None:
    huge = "y" * 100_000
    big = delivery(
        incident=incident(title=huge, team=huge),
        alerts=tuple(alert(fingerprint=f"f{i}", annotations={"summary": huge}) for i in range(40)),
    )
    assert (await notifier(session, config(teams.url)).notify(big)).ok
    assert len(teams.cards) == 1  # the fake refuses anything over 28 KB or off-schema


@pytest.mark.parametrize(
    ("answer", "reason", "wait"),
    [
        (
            Scripted(429, {"error": {"code": "WorkflowTriggeredTooFast"}}, {"Retry-After": "12"}),
            "rate limited",
            12.0,
        ),
        (Scripted(502, {"error": {"code": "BadGateway"}}), "retryable", None),
        (Scripted(404, {"error": {"code": "WorkflowNotFound"}}), "permanent", None),
    ],
)
async def test_workflows_errors_map_into_a_failure_reason(
    answer: Scripted,
    reason: str,
    wait: float | None,
    teams: FakeTeamsWorkflows,
    session: aiohttp.ClientSession,
) -> None:
    teams.script(answer)
    result = await notifier(session, config(teams.url)).notify(delivery())
    assert (result.reason, result.retry_after) == (FailureReason(reason), wait)
    assert result.error == f"teams ops0: HTTP {answer.status}"


async def test_a_revoked_sig_is_permanent_and_the_url_is_never_named(
    teams: FakeTeamsWorkflows, session: aiohttp.ClientSession
) -> None:
    url = teams.url.replace(SIG, "revoked-sig-value")
    result = await notifier(session, config(url)).notify(delivery())
    assert (result.reason, result.error) == (FailureReason.PERMANENT, "teams ops0: HTTP 401")
    assert "revoked-sig-value" not in repr(config(url))


async def test_a_retry_goes_only_to_the_webhook_that_failed(
    teams: FakeTeamsWorkflows, session: aiohttp.ClientSession
) -> None:
    other = await FakeTeamsWorkflows().start()
    try:
        n = notifier(session, config(teams.url, other.url))
        other.script(Scripted(503, {"error": {"code": "ServiceUnavailable"}}))
        first = await n.notify(delivery())
        assert first.reason == FailureReason.RETRYABLE
        assert (len(teams.cards), len(other.cards)) == (1, 0)
        assert (await n.notify(delivery())).ok
        assert (len(teams.cards), len(other.cards)) == (1, 1)
    finally:
        await other.close()


def test_check_wants_a_link_secret_and_http_webhooks() -> None:
    cfg = TeamsConfig(webhooks={"ops": SecretStr("not-a-url")})
    assert check(cfg, PUBLIC) == [
        ((), "link_secret is required: the Teams cards' acknowledge links are signed"),
        (
            ("webhooks", "ops"),
            "must be the workflow's https:// webhook URL (http:// only to localhost)",
        ),
    ]
    for url in ("http://prod-1.westus.logic.azure.com/workflows/1?sig=x", "ftp://x"):
        plain = TeamsConfig(webhooks={"ops": SecretStr(url)}, link_secret=SecretStr(LINK_SECRET))
        [(path, message)] = check(plain, PUBLIC)
        assert path == ("webhooks", "ops") and "sig=x" not in message
    local = TeamsConfig(
        webhooks={
            "a": SecretStr("https://x.logic.azure.com/w"),
            "b": SecretStr("http://127.0.0.1:1/w"),
        },
        link_secret=SecretStr(LINK_SECRET),
    )
    assert check(local, PUBLIC) == []
    short = TeamsConfig(link_secret=SecretStr("short"))
    assert [p for p, _ in check(short, PUBLIC)] == [("link_secret",)]
    with pytest.raises(ValueError, match="link_secret is required"):
        link_signer(cfg, PUBLIC)


def test_the_fakes_schema_check_refuses_an_off_schema_card() -> None:
    signer = LinkSigner(LINK_SECRET, timedelta(hours=1), PUBLIC, channel="teams")
    good = card(delivery(), signer, T0)
    assert card_errors(good) == []
    assert card_errors({**good, "msteams": {"width": "Full"}}) != []  # not in 1.4's schema
    assert card_errors({**good, "body": [{"type": "TextBlock", "text": "x", "color": "Red"}]})
    bad_url = {"type": "Action.OpenUrl", "title": "x", "url": "https://exa mple.com/<>"}
    assert card_errors({**good, "actions": [bad_url]}) != []
    assert card_errors({**good, "version": "1.6"}) == [
        "no schema vendored for declared version '1.6'"
    ]


async def test_alert_urls_become_valid_card_urls_or_are_left_out(
    teams: FakeTeamsWorkflows, session: aiohttp.ClientSession
) -> None:
    odd = alert(
        annotations={"runbook_url": 'https://runbooks.example/a/{x}"^`'},
        generator_url="javascript:alert(1)",
    )
    assert (await notifier(session, config(teams.url)).notify(delivery(alerts=(odd,)))).ok
    [c] = teams.cards
    links = actions(c)
    assert "Source" not in links  # not an http(s) URL: never a button
    assert links["Runbook"] == "https://runbooks.example/a/%7Bx%7D%22%5E%60"
