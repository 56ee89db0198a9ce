"""Webhook presets and templates against fakes of each platform's documented incoming webhook.

Every body a preset builds must be one the platform accepts (the fakes check the documented
shape and limits and fail the test otherwise), also for alerts far past every limit; what each
platform answers on an error maps into a ``FailureReason``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from adapters.config import WebhookConfig, WebhookEndpoint
from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.webhook import WebhookNotifier, check
from escalation.engine.clock import VirtualClock
from escalation.incidents.model import AlertRecord
from tests.adapters.test_webhook import INC_ID, T0, delivery, incident, row
from tests.fakes.chat_webhooks import (
    PLATFORMS,
    TELEGRAM_TOKEN,
    FakeChat,
    Scripted,
    rate_limited,
    telegram_visible_text,
)
from tests.fakes.webhook_sink import WebhookSink


@pytest.fixture(params=PLATFORMS)
async def chat(request: pytest.FixtureRequest) -> AsyncIterator[FakeChat]:
    fake = await FakeChat(request.param).start()
    yield fake
    await fake.close()


def endpoint_for(fake: FakeChat, **kw: Any) -> WebhookEndpoint:
    if fake.platform == "telegram":
        return WebhookEndpoint(
            preset="telegram",
            bot_token=SecretStr(TELEGRAM_TOKEN),
            chat_id="-1001234567890",
            api_url=fake.api_url,
            **kw,
        )
    return WebhookEndpoint(preset=fake.platform, url=fake.url, **kw)  # type: ignore[arg-type]


def notifier(session: aiohttp.ClientSession, **endpoints: WebhookEndpoint) -> WebhookNotifier:
    return WebhookNotifier(endpoints, lambda: session, VirtualClock(T0))


def alert(**kw: Any) -> AlertRecord:
    base: dict[str, Any] = dict(
        incident_id=INC_ID,
        fingerprint="f00d",
        status="firing",
        labels={"alertname": "DiskFull", "instance": "db1"},
        annotations={
            "summary": "Disk 97% full on db1",
            "runbook_url": "https://runbooks.example/disk-full",
        },
        starts_at=T0,
        generator_url="http://prometheus.example/graph?g0.expr=disk",
        ends_at=None,
        severity="P0",
        rule="disk",
        first_seen=T0,
        last_seen=T0,
    )
    base.update(kw)
    return AlertRecord(**base)


def text_of(fake: FakeChat, body: dict[str, Any]) -> str:
    """What a person reads of ``body`` on ``fake``'s platform, as one string."""
    if fake.platform == "telegram":
        return telegram_visible_text(body["text"])[0] + body["text"]
    if fake.platform == "discord":
        return json.dumps(body["embeds"], ensure_ascii=False) + body["content"]
    return json.dumps(body, ensure_ascii=False)


async def test_each_preset_posts_a_body_its_platform_accepts(
    chat: FakeChat, session: aiohttp.ClientSession
) -> None:
    n = notifier(session, ops=endpoint_for(chat, username="tocsin"))
    result = await n.notify(delivery(alerts=(alert(),)))
    assert result == DeliveryResult(ok=True, provider_id="ops")
    [body] = chat.accepted
    shown = text_of(chat, body)
    assert "[SEV-1] #42 DiskFull on db1" in shown
    assert "Ollie Oncall" in shown
    assert "https://runbooks.example/disk-full" in shown
    assert f"https://tocsin.example.com/api/v1/incidents/{INC_ID}" in shown
    if chat.platform == "telegram":
        assert body["chat_id"] == "-1001234567890"
        assert chat.received[0].path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
    if chat.platform == "discord":
        assert body["allowed_mentions"] == {"parse": []}
        assert body["username"] == "tocsin"


async def test_with_the_public_url_presets_and_templates_link_the_console_page(
    chat: FakeChat, session: aiohttp.ClientSession
) -> None:
    n = WebhookNotifier(
        {"ops": endpoint_for(chat)},
        lambda: session,
        VirtualClock(T0),
        "https://tocsin.example.com/",
    )
    assert (await n.notify(delivery())).ok
    page = f"https://tocsin.example.com/incidents/{INC_ID}"
    assert page in text_of(chat, chat.accepted[0])
    assert "/api/v1/incidents/" not in json.dumps(chat.accepted[0])


async def test_alerts_far_past_every_limit_still_fit(
    chat: FakeChat, session: aiohttp.ClientSession
) -> None:
    huge = "x" * 50_000
    many = tuple(
        alert(fingerprint=f"f{i}", annotations={"summary": huge + "<b>&", "runbook": huge})
        for i in range(50)
    )
    big = delivery(
        incident=incident(title="<i>Title</i> & " + huge, team=huge),
        alerts=many,
    )
    result = await notifier(session, ops=endpoint_for(chat)).notify(big)
    assert result.ok, result
    assert len(chat.accepted) == 1


async def test_markup_and_mentions_in_alert_text_stay_text(
    chat: FakeChat, session: aiohttp.ClientSession
) -> None:
    title = "@everyone @channel <users/all> </b><a href='x'>"
    await notifier(session, ops=endpoint_for(chat)).notify(delivery(incident=incident(title=title)))
    [body] = chat.accepted
    raw = json.dumps(body, ensure_ascii=False)
    if chat.platform == "telegram":
        assert "@everyone @channel <users/all> </b><a href='x'>" in text_of(chat, body)
    if chat.platform == "mattermost":
        assert "@channel" not in raw and "@\u200bchannel" in raw
    if chat.platform == "google_chat":
        assert "<users/all>" not in raw
    if chat.platform == "discord":
        assert body["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize("platform", ["discord", "telegram", "google_chat", "mattermost"])
async def test_a_rate_limit_answer_is_rate_limited_with_the_platforms_wait(
    platform: str, session: aiohttp.ClientSession
) -> None:
    fake = await FakeChat(platform).start()
    try:
        fake.script(rate_limited(platform, 7.25))
        result = await notifier(session, ops=endpoint_for(fake)).notify(delivery())
    finally:
        await fake.close()
    assert result.reason == FailureReason.RATE_LIMITED
    expected = {"discord": 8.0, "telegram": 7.0}.get(platform)  # header, else body
    assert result.retry_after == expected


async def test_discords_wait_is_read_from_its_body_without_the_header(
    session: aiohttp.ClientSession,
) -> None:
    fake = await FakeChat("discord").start()
    try:
        answer = {"message": "You are being rate limited.", "retry_after": 2.5, "global": False}
        fake.script(Scripted(429, answer))
        result = await notifier(session, ops=endpoint_for(fake)).notify(delivery())
    finally:
        await fake.close()
    assert (result.reason, result.retry_after) == (FailureReason.RATE_LIMITED, 2.5)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Scripted(500, {"ok": False, "error_code": 500, "description": "Internal"}), "retryable"),
        (
            Scripted(
                403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"}
            ),
            "permanent",
        ),
        (
            Scripted(
                400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            ),
            "permanent",
        ),
    ],
)
async def test_telegram_errors_map_into_a_failure_reason(
    answer: Scripted, reason: str, session: aiohttp.ClientSession
) -> None:
    fake = await FakeChat("telegram").start()
    try:
        fake.script(answer)
        result = await notifier(session, tg=endpoint_for(fake)).notify(delivery())
    finally:
        await fake.close()
    assert result.reason == FailureReason(reason)
    assert TELEGRAM_TOKEN not in result.error and "bot" not in result.error.lower().split(":")[0]
    assert result.error == f"webhook tg: HTTP {answer.status}"


async def test_a_wrong_telegram_token_is_permanent_and_never_named(
    session: aiohttp.ClientSession,
) -> None:
    fake = await FakeChat("telegram").start()
    try:
        ep = endpoint_for(fake).model_copy(update={"bot_token": SecretStr("999:wrong-token")})
        result = await notifier(session, tg=ep).notify(delivery())
    finally:
        await fake.close()
    assert (result.reason, result.error) == (FailureReason.PERMANENT, "webhook tg: HTTP 401")
    assert "wrong-token" not in repr(ep) and "wrong-token" not in str(ep.model_dump())


def test_telegram_needs_its_token_and_chat_and_no_url() -> None:
    with pytest.raises(ValidationError, match="bot_token"):
        WebhookEndpoint(preset="telegram", chat_id="1")
    with pytest.raises(ValidationError, match="takes no url"):
        WebhookEndpoint(preset="telegram", chat_id="1", bot_token=SecretStr("t"), url="https://x")
    with pytest.raises(ValidationError, match="bot token is in every request's path"):
        WebhookEndpoint(
            preset="telegram", chat_id="1", bot_token=SecretStr("t"), api_url="http://tg.example"
        )
    local = WebhookEndpoint(
        preset="telegram", chat_id="1", bot_token=SecretStr("t"), api_url="http://localhost:8081"
    )
    assert local.api_url == "http://localhost:8081"  # a self-hosted Bot API server
    with pytest.raises(ValidationError, match="url is required"):
        WebhookEndpoint(preset="discord")
    with pytest.raises(ValidationError, match="mutually exclusive"):
        WebhookEndpoint(preset="discord", url="https://x", template="{}")


# -- templates --------------------------------------------------------------------------------

TEMPLATE = (
    '{"text": {{ ("#" ~ incident.number ~ " " ~ incident.title ~ " for " '
    "~ notification.person_name) | tojson }}, "
    '"alerts": [{% for a in alerts %}{{ a.labels.instance | tojson }}'
    "{% if not loop.last %},{% endif %}{% endfor %}]}"
)


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    s = await WebhookSink().start()
    yield s
    await s.close()


async def test_a_template_renders_the_body_over_tocsins_document(
    sink: WebhookSink, session: aiohttp.ClientSession
) -> None:
    ep = WebhookEndpoint(url=sink.url, template=TEMPLATE, secret=SecretStr("s" * 16))
    result = await notifier(session, ops=ep).notify(delivery(alerts=(alert(),)))
    assert result.ok
    [got] = sink.received
    assert got.json == {"text": "#42 DiskFull on db1 for Ollie Oncall", "alerts": ["db1"]}
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Tocsin-Signature"].startswith("sha256=")


async def test_a_template_sees_the_console_page_and_the_plain_body_keeps_its_shape(
    sink: WebhookSink, session: aiohttp.ClientSession
) -> None:
    plain = WebhookEndpoint(url=sink.url)
    templated = WebhookEndpoint(url=sink.url, template='{"page": {{ incident.page | tojson }}}')
    clock = VirtualClock(T0)
    for ep in (plain, templated):
        n = WebhookNotifier({"ops": ep}, lambda: session, clock, "https://tocsin.example.com")
        assert (await n.notify(delivery())).ok
    first, second = (r.json for r in sink.received)
    assert "page" not in first["incident"]
    assert second == {"page": f"https://tocsin.example.com/incidents/{INC_ID}"}


async def test_a_plain_text_template_keeps_its_content_type(
    sink: WebhookSink, session: aiohttp.ClientSession
) -> None:
    ep = WebhookEndpoint(
        url=sink.url,
        template="{{ incident.title }} ({{ notification.kind }})",
        content_type="text/plain",
    )
    await notifier(session, ops=ep).notify(delivery())
    [got] = sink.received
    assert (got.body, got.headers["Content-Type"]) == (b"DiskFull on db1 (page)", "text/plain")


async def test_a_template_that_fails_on_a_notification_is_a_permanent_failure(
    sink: WebhookSink, session: aiohttp.ClientSession
) -> None:
    ep = WebhookEndpoint(url=sink.url, template='{"n": {{ incident.labels.instance }}}')
    result = await notifier(session, ops=ep).notify(delivery())
    assert result.reason == FailureReason.PERMANENT
    assert result.error.startswith("webhook ops: template output is not JSON")
    assert sink.received == []


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ incident.title ", "bad template"),
        ('{"text": {{ incident.title }}}', "template output is not JSON"),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
            "limit",
        ),
    ],
)
def test_check_refuses_a_template_that_fails_on_a_sample(template: str, message: str) -> None:
    cfg = WebhookConfig(endpoints={"ops": WebhookEndpoint(url="https://x", template=template)})
    [(path, problem)] = check(cfg)
    assert path == ("endpoints", "ops", "template")
    assert message in problem


def test_check_accepts_a_template_that_renders_json_on_the_sample() -> None:
    cfg = WebhookConfig(endpoints={"ops": WebhookEndpoint(url="https://x", template=TEMPLATE)})
    assert check(cfg) == []


async def test_google_chat_keeps_one_thread_per_incident(session: aiohttp.ClientSession) -> None:
    fake = await FakeChat("google_chat").start()
    try:
        n = notifier(session, ops=endpoint_for(fake))
        other = incident(id="another-incident-0001", number=43)
        for d in (delivery(), delivery(row=row(kind="resolve")), delivery(incident=other)):
            assert (await n.notify(d)).ok
    finally:
        await fake.close()
    assert fake.threads == [f"tocsin-{INC_ID}", f"tocsin-{INC_ID}", "tocsin-another-incident-0001"]
    query = fake.received[0].query
    assert (query["key"], query["token"]) == ("fake-key", "fake-token")
    assert query["messageReplyOption"] == "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
