"""Fixtures shared by the adapter tests: a client session, and the whole app wired to each fake.

``make_pd_app`` serves the app paging the fake PagerDuty (``pagerduty:core`` at once, Carol by
``log`` five minutes later); ``make_phone_app`` serves it calling the fake Twilio (the default
preset's P0 ladder, everyone by ``phone`` with ``fallback: [phone, sms, log]``);
``make_slack_app`` serves it posting to the fake Slack under the policy a test gives. All run on
the driver's virtual clock with no engine loop (``tests/driver``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from pydantic import SecretStr

from adapters.config import SlackConfig
from escalation.incidents.model import IncidentRecord, TimelineEvent
from tests.driver.app import App, MakeApp
from tests.driver.config import (
    LONDON_BUSINESS_HOURS,
    PUBLIC,
    base_config,
    pagerduty_adapter,
    phone_adapter,
    postgres_store,
    slack_adapter,
    write_config,
)
from tests.driver.payloads import alert, notification
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackMessage
from tests.fakes.smtp import SmtpServer
from tests.fakes.twilio import FakeTwilio

MakeAdapterApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for an adapter under test, closed afterwards."""
    s = aiohttp.ClientSession()
    yield s
    await s.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_section(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any] | None]:
    """The ``store:`` section a whole-app test runs on, once per backend: None (the base
    config's SQLite file), then PostgreSQL in a schema of its own, dropped afterwards (skipped
    when ``TOCSIN_TEST_POSTGRES_DSN`` is not set)."""
    if request.param == "sqlite":
        yield None
        return
    dsn = os.environ.get("TOCSIN_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("TOCSIN_TEST_POSTGRES_DSN is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield postgres_store(dsn, schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free local port, keeping what it receives."""
    with SmtpServer() as server:
        yield server


# -- PagerDuty ----------------------------------------------------------------------------------

PD_CORE_KEY = "R0UT1NGk3yC0R3s3rv1c3xxxxxxxxx01"
PD_SECRET_A = "whsec-current-0b4e6f1d"
PD_SECRET_B = "whsec-previous-77c2a9e0"
PD_API_TOKEN = "u+PdRestApiT0kenSecret"
PD_RECEIVER_TOKEN = "am-bearer-token-1"
PD_TOCSIN_API_TOKEN = "tocsin-api-write-token"
PD_AM = {"Authorization": f"Bearer {PD_RECEIVER_TOKEN}", "Content-Type": "application/json"}

_PD_POLICY = """\
auth:
  receiver:
    bearer_tokens: ["am-bearer-token-1"]
  api_tokens:
    - {name: ops, token: "tocsin-api-write-token", scope: write}
rules:
  files: []
  default:
    severity: P0
    policy: pd-first
people:
  carol: {name: Carol Sato, email: carol@example.com, channels: [log]}
policies:
  pd-first:
    steps:
      - {name: pagerduty, after: 0, notify: ["pagerduty:core"]}
      - {name: lead, after: 5m, notify: ["person:carol"], via: [log]}
"""


def pd_config(
    tmp_path: Path, fake: FakePagerDuty, secrets: Sequence[str], replay_window: str | None = None
) -> Path:
    """A config paging ``pagerduty:core`` at once and Carol (log channel) after 5 minutes
    (``replay_window``: ``server.replay_window``, unset for the default)."""
    pagerduty = pagerduty_adapter(
        fake.http_url,
        {"core": PD_CORE_KEY},
        api_url=fake.https_url,
        api_token=PD_API_TOKEN,
        webhook_secrets=list(secrets),
        timeout="2s",
        tls_ca_path=fake.ca_file,  # REST over https to the fake, trusting its test CA
    )
    adapters = {"pagerduty": pagerduty, "dispatch": {"backoff_initial": "1s", "backoff_max": "2s"}}
    server = base_config(tmp_path)["server"]
    if replay_window is not None:
        server = {**server, "replay_window": replay_window}
    return write_config(tmp_path, _PD_POLICY, {"adapters": adapters, "server": server}, rules=None)


@pytest.fixture
async def make_pd_app(tmp_path: Path, make_app: MakeApp) -> AsyncIterator[MakeAdapterApp]:
    """Factory: ``await make_pd_app(secrets=...)`` → the app and its fake PagerDuty."""
    fakes: list[FakePagerDuty] = []

    async def make(
        secrets: Sequence[str] = (PD_SECRET_A, PD_SECRET_B), *, replay_window: str | None = None
    ) -> App:
        fake = await FakePagerDuty(tmp_path, api_token=PD_API_TOKEN).start()
        fakes.append(fake)
        return await make_app(pd_config(tmp_path, fake, secrets, replay_window), fakes=(fake,))

    yield make
    for fake in fakes:
        await fake.close()


# -- phone --------------------------------------------------------------------------------------

OLLIE_PHONE = "+14155550100"
LEE_PHONE = "+14155550101"

# Without the phone adapter everyone is on ``log``: check refuses channels that have no adapter.
_PHONE_PEOPLE = """\
people:
  ollie:
    name: Ollie Oncall
    phone: "+1 415 555 0100"
    email: ollie@example.com
    channels: [{voice}]
    fallback: [{fallback}]
  lee:
    name: Lee Lead
    phone: "{lee_phone}"
    channels: [{voice}]
    fallback: [{fallback}]
  max:
    phone: "+14155550102"
    channels: [{voice}]
  vic:
    phone: "+14155550103"
    channels: [{voice}]
roles:
  oncall: [ollie]
  lead: [lee]
  manager: [max]
  vp: [vic]
"""


def phone_config(
    tmp_path: Path, twilio_url: str | None, store: dict[str, Any] | None = None
) -> Path:
    """The phone tests' config; ``twilio_url`` None leaves the phone adapter unconfigured,
    ``store`` is its ``store:`` section (None: the base config's SQLite file)."""
    adapters = None
    voice, fallback = ("phone", "phone, sms, log") if twilio_url is not None else ("log", "log")
    people = _PHONE_PEOPLE.format(lee_phone=LEE_PHONE, voice=voice, fallback=fallback)
    if twilio_url is not None:
        phone = phone_adapter(twilio_url)
        adapters = {"phone": phone}
    stored = {"store": store} if store is not None else {}
    return write_config(tmp_path, LONDON_BUSINESS_HOURS, people, {"adapters": adapters}, stored)


# -- push (ntfy, Pushover) ----------------------------------------------------------------------

_PUSH_RULES = """\
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    severity: %s
    policy: push
    title: "{{ labels.alertname }} on {{ labels.service }}"
"""


def push_config(
    tmp_path: Path,
    people_and_policy: str,
    adapters: Mapping[str, Any],
    *,
    severity: str = "P0",
    store: dict[str, Any] | None = None,
) -> Path:
    """The push tests' config: their people and ``push`` policy, ``adapters``, and a rule file
    making HighErrorRate a ``severity`` incident on ``push`` (``store`` as in ``phone_config``)."""
    rules = {"rules": {"files": ["rules/*.yaml"]}}
    stored = {"store": store} if store is not None else {}
    sections = (rules, people_and_policy, {"adapters": dict(adapters)}, stored)
    return write_config(tmp_path, *sections, rules=_PUSH_RULES % severity)


# -- phone (continued) --------------------------------------------------------------------------


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    """The fake Twilio; ollie's number has opted out of texts (STOP) unless a test clears it."""
    fake = await FakeTwilio(unsubscribed={OLLIE_PHONE}).start()
    yield fake
    await fake.close()


@pytest.fixture
def make_phone_app(make_app: MakeApp, tmp_path: Path, twilio: FakeTwilio) -> MakeAdapterApp:
    """Factory: the app with (or, ``phone=False``, without) the phone adapter, on the base
    config's SQLite file or the ``store:`` section given.

    The fake Twilio delivers callbacks for ``PUBLIC`` to the test server, as a reverse proxy
    would, signed over the public URL.
    """

    async def make(*, phone: bool = True, store: dict[str, Any] | None = None) -> App:
        path = phone_config(tmp_path, twilio.url if phone else None, store)
        app = await make_app(path, fakes=(twilio,))
        twilio.route(PUBLIC, str(app.client.make_url("/")).rstrip("/"))
        return app

    return make


def provider_outcomes(events: Sequence[TimelineEvent]) -> list[list[tuple[str, str]]]:
    """(provider, outcome) of each provider tried, per delivery attempt on the timeline."""
    return [
        [(p["provider"], p["outcome"]) for p in e.data["providers"]]
        for e in events
        if e.data and "providers" in e.data
    ]


def only_call(app: App) -> str:
    """The sid of the one call the fake Twilio received."""
    [sid] = app.twilio.calls
    return sid


# -- Slack --------------------------------------------------------------------------------------


def slack_config(fake: FakeSlack, **options: Any) -> SlackConfig:
    """``adapters.slack`` as the app reads it, on the fake Slack (for one component alone)."""
    return SlackConfig(
        bot_token=SecretStr(BOT_TOKEN),
        signing_secret=SecretStr(SIGNING_SECRET),
        base_url=fake.api_url,
        **options,
    )


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """The fake Slack Web API, closed (and its contract checked) afterwards."""
    fake = await FakeSlack().start()
    yield fake
    await fake.close()


@pytest.fixture
def make_slack_app(make_app: MakeApp, tmp_path: Path, slack: FakeSlack) -> MakeAdapterApp:
    """Factory: ``await make_slack_app(policy, adapters={...}, fakes=(...), **slack_options)``
    → the app under ``policy`` (YAML, no rule file) with ``adapters.slack`` on the fake Slack
    (plus ``slack_options``) and any other ``adapters`` served by the other ``fakes``.

    The fake stamps each call with the app's virtual clock, so that tests can count Slack's
    calls per second of the app's time.
    """

    async def make(
        policy: str,
        *,
        adapters: Mapping[str, Any] | None = None,
        fakes: Sequence[object] = (),
        **options: Any,
    ) -> App:
        section = {"slack": slack_adapter(slack.api_url, **options), **(adapters or {})}
        path = write_config(tmp_path, policy, {"adapters": section}, rules=None)
        app = await make_app(path, fakes=(slack, *fakes))
        slack.clock = app.clock.now
        return app

    return make


async def first_card(
    app: App, after: timedelta | None = None, channel: str = "incidents", **alert_kw: Any
) -> tuple[IncidentRecord, str, SlackMessage]:
    """Fire a P0 (``alert(**alert_kw)``) and deliver its first tier ``after`` later: (the
    incident, ``channel``'s id, the one card posted there)."""
    inc = await app.fire(notification([alert(**alert_kw)]))
    await app.tick(after)
    slack = app.fake(FakeSlack)
    found = slack.channel_named(channel)
    assert found is not None
    [card] = slack.top_messages(found.id)
    return inc, found.id, card
