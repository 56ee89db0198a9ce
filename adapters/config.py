"""The ``adapters:`` section: how tocsin reaches people (PagerDuty, email, phone, webhooks)
and how the dispatcher protects them (retries, rate limits, bundling, circuit breakers).

Each adapter's section is optional; a channel without a section is simply not available, and
a page to it fails visibly (timeline + metric) and falls back per the person's ``fallback``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.http import private_in_transit
from escalation.oncall.targets import CHANNELS
from rules.durations import Duration

__all__ = [
    "AdaptersConfig",
    "DispatchConfig",
    "EmailConfig",
    "GatewayConfig",
    "GatewayInbound",
    "LogChannelConfig",
    "NtfyConfig",
    "PagerDutyConfig",
    "PhoneConfig",
    "PhoneProviderName",
    "PushoverConfig",
    "RateLimit",
    "SlackConfig",
    "TeamsConfig",
    "VonageConfig",
    "WebhookConfig",
    "WebhookEndpoint",
    "WebhookPreset",
]

# The channels whose one message carries every page of a bundle (``Delivery.bundle``). Slack and
# Teams keep one card per incident, ntfy and Pushover one notification per page.
BUNDLING_CHANNELS: tuple[str, ...] = ("log", "pagerduty", "email", "phone", "sms", "webhook")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogChannelConfig(_Section):
    """The built-in ``log`` channel: a structured log line and a stored record."""

    enabled: bool = True


class PagerDutyConfig(_Section):
    """Events API v2 out, REST on-call lookups, signed v3 webhooks in."""

    events_url: str = (
        "https://events.pagerduty.com"  # base; tocsin posts to {events_url}/v2/enqueue
    )
    # PagerDuty takes events over https only; plain http is for a local fake in tests.
    allow_insecure_events_url: bool = False
    services: dict[str, SecretStr] = Field(default_factory=dict)  # name -> 32-char routing key
    default_service: str | None = None  # used for person targets paged via the pagerduty channel
    api_url: str = "https://api.pagerduty.com"
    api_token: SecretStr | None = None  # REST API key, for on-call lookups
    from_email: str | None = None
    oncall_cache_ttl: Duration = Field(default=timedelta(seconds=60))
    webhook_secrets: list[SecretStr] = Field(default_factory=list)  # v3 subscription secrets
    timeout: Duration = Field(default=timedelta(seconds=10))
    tls_ca_path: str | None = None  # extra CA to trust (tests; private PagerDuty proxies)

    @model_validator(mode="after")
    def _default_known(self) -> PagerDutyConfig:
        if self.default_service is not None and self.default_service not in self.services:
            raise ValueError(f"default_service {self.default_service!r} is not one of services")
        return self


class EmailConfig(_Section):
    """SMTP through aiosmtplib."""

    host: str = "localhost"
    port: int | None = None  # default: 465 with use_tls, 587 with start_tls, else 25
    use_tls: bool = False
    start_tls: bool | None = None  # None: upgrade if the server offers it
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "tocsin@localhost"
    timeout: Duration = Field(default=timedelta(seconds=30))
    tls_ca_path: str | None = None
    link_secret: SecretStr | None = None  # HMAC key for acknowledge/resolve links
    link_ttl: Duration = Field(default=timedelta(hours=24))

    @model_validator(mode="after")
    def _exclusive(self) -> EmailConfig:
        if self.use_tls and self.start_tls:
            raise ValueError("use_tls and start_tls are mutually exclusive")
        if self.username is not None and self.password is None:
            raise ValueError("username needs password (or password_file)")
        return self


PhoneProviderName = Literal["twilio", "vonage", "gateway"]
"""Telephony providers tocsin speaks to; ``gateway`` is any HTTP SMS gateway (texts only)."""


class GatewayInbound(_Section):
    """How the gateway forwards a text to tocsin, and how tocsin knows it is the gateway.

    ``auth: hmac-sha256``: ``header`` carries the hex HMAC-SHA256 of the raw body keyed with
    ``secret`` (a ``sha256=`` prefix is accepted); ``auth: basic``: HTTP basic auth with
    ``username`` and ``secret`` as the password.
    """

    auth: Literal["hmac-sha256", "basic"]
    secret: SecretStr
    header: str = "X-Signature"
    username: str = "tocsin"
    format: Literal["form", "json"] = "form"  # how the gateway posts the text
    from_field: str = "from"  # the sender's number
    text_field: str = "text"  # what they wrote
    id_field: str = "id"  # the gateway's message id (a retried forward acts once)


class GatewayConfig(_Section):
    """A generic HTTP SMS gateway: the request is a set of Jinja2 templates (bounded sandbox)
    over ``to``, ``message``, ``from_number`` and ``token``."""

    method: Literal["GET", "POST", "PUT"] = "POST"
    url: str  # a template: the number or the token may be part of the URL
    headers: dict[str, str] = Field(default_factory=dict)  # name -> template
    form: dict[str, str] | None = None  # field -> template; sent form-encoded
    json_body: str | None = None  # a template whose output must be JSON; sent as JSON
    token: SecretStr | None = None  # the gateway's API key, for templates as {{ token }}
    from_number: str = ""  # sender id, for templates as {{ from_number }}
    success_status: list[int] = Field(default_factory=lambda: [200, 201, 202])
    # Optional: the answer must also be JSON with this dotted path equal to success_value
    # (gateways that answer 200 {"status": "error"}).
    success_path: str | None = None
    success_value: str | None = None
    id_path: str | None = None  # dotted path of the gateway's message id in its answer
    timeout: Duration = Field(default=timedelta(seconds=10))
    inbound: GatewayInbound | None = None  # replies (ACK n) forwarded by the gateway

    @model_validator(mode="after")
    def _one_body(self) -> GatewayConfig:
        if self.form is not None and self.json_body is not None:
            raise ValueError("form and json_body are mutually exclusive")
        if (self.success_path is None) != (self.success_value is None):
            raise ValueError("success_path and success_value go together")
        return self


class VonageConfig(_Section):
    """Vonage Voice API (calls, NCCO) and Messages API (texts), with a Vonage application."""

    application_id: str
    private_key: SecretStr  # the application's PEM private key: signs the RS256 API JWTs
    signature_secret: SecretStr  # verifies the HS256 JWT Vonage signs its webhooks with
    from_number: str
    base_url: str = "https://api.nexmo.com"  # a local fake in tests
    timeout: Duration = Field(default=timedelta(seconds=15))


class PhoneConfig(_Section):
    """Voice calls and SMS through one provider, or several in failover order (``providers``).

    Twilio's settings stay at the top level (the original single-provider shape); the other
    providers have their own sections.
    """

    provider: PhoneProviderName = "twilio"
    # Failover order, tried per message (empty: just ``provider``).
    providers: list[PhoneProviderName] = Field(default_factory=list)
    base_url: str = "https://api.twilio.com"
    account_sid: str = ""
    auth_token: SecretStr | None = None
    from_number: str = ""
    gateway: GatewayConfig | None = None
    vonage: VonageConfig | None = None
    ring_timeout: Duration = Field(default=timedelta(seconds=30))
    timeout: Duration = Field(default=timedelta(seconds=15))
    # Roles whose people (named in ``roles:`` directly) may text ``ACK <number>`` for any
    # incident; everyone else only for incidents they were paged for.
    sms_responders: list[str] = Field(default_factory=list)

    @property
    def order(self) -> list[PhoneProviderName]:
        """The providers to try, in order."""
        return list(dict.fromkeys(self.providers)) if self.providers else [self.provider]

    @property
    def places_calls(self) -> bool:
        """Whether any provider in ``order`` can ring (the SMS gateway only texts)."""
        return any(name != "gateway" for name in self.order)

    @model_validator(mode="after")
    def _configured(self) -> PhoneConfig:
        for name in self.order:
            if name == "twilio":
                # Name what is missing and where it goes: Twilio's keys sit at the top of
                # adapters.phone, not in a section of their own as gateway's and vonage's do.
                have = {
                    "account_sid": bool(self.account_sid),
                    "auth_token": self.auth_token is not None,
                    "from_number": bool(self.from_number),
                }
                missing = [key for key, ok in have.items() if not ok]
                if missing:
                    raise ValueError(
                        "twilio needs account_sid, auth_token and from_number at the top of"
                        f" adapters.phone; missing: {', '.join(missing)}"
                    )
            if name == "gateway" and self.gateway is None:
                raise ValueError("provider gateway needs the gateway section")
            if name == "vonage" and self.vonage is None:
                raise ValueError("provider vonage needs the vonage section")
        return self


WebhookPreset = Literal["google_chat", "mattermost", "discord", "telegram"]
"""Chat platforms whose documented incoming-webhook request tocsin builds itself."""


class WebhookEndpoint(_Section):
    url: str = ""  # required, except for ``preset: telegram`` (built from api_url and bot_token)
    secret: SecretStr | None = None  # HMAC-SHA256 of the body in X-Tocsin-Signature
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = Field(default=timedelta(seconds=10))
    preset: WebhookPreset | None = None  # the platform's own request shape instead of tocsin's
    template: str | None = None  # a Jinja2 body (bounded sandbox) over tocsin's JSON document
    content_type: str = "application/json"  # of a templated body; JSON is checked to parse
    username: str | None = None  # mattermost / discord: the name the post appears under
    bot_token: SecretStr | None = None  # telegram: the token is part of the request's path
    chat_id: str | None = None  # telegram: a numeric id or @channelusername
    api_url: str = "https://api.telegram.org"  # telegram: Bot API base (a local fake in tests)

    @model_validator(mode="after")
    def _coherent(self) -> WebhookEndpoint:
        if self.preset is not None and self.template is not None:
            raise ValueError("preset and template are mutually exclusive")
        if self.preset == "telegram":
            if self.bot_token is None or not self.chat_id:
                raise ValueError("preset telegram needs bot_token (or bot_token_file) and chat_id")
            if self.url:
                raise ValueError("preset telegram takes no url: it is built from api_url")
            if not private_in_transit(self.api_url):
                raise ValueError(
                    "api_url must be https:// (or http:// to localhost): the bot token is in"
                    " every request's path"
                )
        elif not self.url:
            raise ValueError("url is required")
        elif self.bot_token is not None or self.chat_id is not None:
            raise ValueError("bot_token and chat_id belong to preset telegram")
        return self


class WebhookConfig(_Section):
    """Generic JSON webhooks (chat tools and anything else); ``via: [webhook]`` posts to all."""

    endpoints: dict[str, WebhookEndpoint] = Field(default_factory=dict)


class SlackConfig(_Section):
    """A Slack app: its bot token for the Web API, its signing secret for what Slack calls back."""

    bot_token: SecretStr  # xoxb-…: chat:write, users:read.email, users:read (see the README)
    signing_secret: SecretStr  # verifies X-Slack-Signature on interactivity and slash commands
    base_url: str = "https://slack.com/api/"  # a local fake in tests
    # Names a ``slack:<name>`` target may use for a channel (name -> channel id or #name);
    # any other target name is taken as the channel itself (#incidents or an id).
    channels: dict[str, str] = Field(default_factory=dict)
    # People (by name in ``people:``) whose clicks and /tocsin commands may act; empty: every
    # configured person. Anyone else is told so, privately, and nothing changes.
    writers: list[str] = Field(default_factory=list)
    user_cache_ttl: Duration = Field(default=timedelta(hours=1))  # email <-> Slack user id
    # Archive an incident's own channel once its level's monitoring window after the resolve
    # is over (off: the channel stays, e.g. for the post-incident review).
    archive_incident_channels: bool = True
    timeout: Duration = Field(default=timedelta(seconds=10))


class TeamsConfig(_Section):
    """Microsoft Teams: Adaptive Cards posted to Teams Workflows (Power Automate) webhooks."""

    # name -> the workflow's "When a Teams webhook request is received" URL: its sig= is the
    # secret, so the whole URL is one.
    webhooks: dict[str, SecretStr] = Field(default_factory=dict)
    link_secret: SecretStr | None = None  # HMAC key for the cards' acknowledge / resolve links
    link_ttl: Duration = Field(default=timedelta(hours=24))
    timeout: Duration = Field(default=timedelta(seconds=10))


class NtfyConfig(_Section):
    """ntfy (https://ntfy.sh or self-hosted): JSON publishes to each person's ``ntfy_topic``."""

    server_url: str = "https://ntfy.sh"  # tocsin publishes to its root URL
    access_token: SecretStr | None = None  # tk_…: sent as ``Authorization: Bearer``
    # HMAC key for the notifications' Acknowledge / Resolve buttons (ntfy ``http`` actions that
    # POST to tocsin without a confirmation page): single-use, expiring, bound to the run.
    link_secret: SecretStr | None = None
    link_ttl: Duration = Field(default=timedelta(hours=4))
    timeout: Duration = Field(default=timedelta(seconds=10))


class PushoverConfig(_Section):
    """Pushover: normal priority for low levels, emergency (repeats until acknowledged) for top."""

    api_url: str = "https://api.pushover.net"  # tocsin posts to {api_url}/1/messages.json
    token: SecretStr  # the application's API token
    emergency: list[str] = Field(default_factory=lambda: ["P0", "P1"])  # levels sent priority 2
    # Emergency messages repeat every ``retry`` (Pushover: at least 30 s) until acknowledged or
    # ``expire`` (at most 3 hours) has passed.
    retry: Duration = Field(default=timedelta(seconds=60))
    expire: Duration = Field(default=timedelta(hours=1))
    # HMAC key for the signed callback URL Pushover POSTs to when a person acknowledges.
    callback_secret: SecretStr | None = None
    callback_ttl: Duration = Field(default=timedelta(hours=3))  # at least ``expire``
    timeout: Duration = Field(default=timedelta(seconds=10))

    @model_validator(mode="after")
    def _pushover_limits(self) -> PushoverConfig:
        if self.retry < timedelta(seconds=30):
            raise ValueError("retry must be at least 30s (Pushover refuses less)")
        if not timedelta(0) < self.expire <= timedelta(hours=3):
            raise ValueError("expire must be positive and at most 3h (Pushover refuses more)")
        if self.callback_ttl < self.expire:
            raise ValueError("callback_ttl must be at least expire: a late ack must still count")
        return self


class RateLimit(_Section):
    """At most ``count`` messages per ``per``."""

    count: int = Field(ge=1)
    per: Duration


class DispatchConfig(_Section):
    """Delivery guarantees and downstream protection."""

    max_attempts: int = Field(default=6, ge=1)
    backoff_initial: Duration = Field(default=timedelta(seconds=1))
    backoff_max: Duration = Field(default=timedelta(minutes=2))
    # A provider's 429 (PagerDuty sends no Retry-After and asks for minutes): its own, slower
    # backoff, and no attempt budget: the page is retried up to the channel's deadline.
    rate_limit_backoff_initial: Duration = Field(default=timedelta(seconds=30))
    rate_limit_backoff_max: Duration = Field(default=timedelta(minutes=4))
    deadline: dict[str, Duration] = Field(
        default_factory=lambda: {
            "pagerduty": timedelta(minutes=15),
            "email": timedelta(minutes=30),
            "phone": timedelta(minutes=5),
            "sms": timedelta(minutes=10),
            "webhook": timedelta(minutes=10),
            "slack": timedelta(minutes=10),
            "teams": timedelta(minutes=10),
            "ntfy": timedelta(minutes=10),
            "pushover": timedelta(minutes=10),
            "log": timedelta(minutes=1),
        }
    )
    channel_rate: dict[str, RateLimit] = Field(
        default_factory=lambda: {
            "pagerduty": RateLimit(count=100, per=timedelta(minutes=1)),
            # Every Slack delivery together (the app's share of the workspace); each Slack
            # conversation has its own, tighter limit besides: ``slack_conversation_rate``.
            "slack": RateLimit(count=60, per=timedelta(minutes=1)),
        }
    )
    # Slack allows an app about one message a second per channel (chat.postMessage, bursts
    # aside): at most this many deliveries to each conversation (a channel target, an
    # incident's own channel, a person's direct messages). A delivery posts at most one
    # message (the card or one thread reply) and one edit; rows for one incident's card that
    # wait meanwhile go together in the next one.
    slack_conversation_rate: RateLimit = Field(
        default_factory=lambda: RateLimit(count=1, per=timedelta(seconds=1))
    )
    person_rate: RateLimit = Field(
        default_factory=lambda: RateLimit(count=10, per=timedelta(minutes=10))
    )
    bundle_window: Duration = Field(default=timedelta(seconds=30))
    # Channels where several pages to one person become one message. PagerDuty and webhooks
    # are left out: each incident is its own event there (dedup_key = incident).
    bundle_channels: list[str] = Field(default_factory=lambda: ["email", "sms", "phone"])
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset: Duration = Field(default=timedelta(seconds=60))

    @field_validator("deadline", "channel_rate", "bundle_channels")
    @classmethod
    def _known_channels(cls, v: dict[str, object] | list[str]) -> dict[str, object] | list[str]:
        # A misspelt channel would silently get no deadline, no limit or no bundling.
        for name in v:
            if name.split(":", 1)[0] not in CHANNELS:
                raise ValueError(
                    f"unknown channel {name!r} (expected one of {', '.join(CHANNELS)},"
                    " optionally as kind:instance)"
                )
        return v

    @field_validator("bundle_channels")
    @classmethod
    def _bundling_channels(cls, v: list[str]) -> list[str]:
        # A bundle is recorded as delivered for every page in it: a channel whose message shows
        # only one incident would mark the others sent without anyone seeing them.
        for name in v:
            if name.split(":", 1)[0] not in BUNDLING_CHANNELS:
                raise ValueError(
                    f"{name!r} cannot be bundled: its message shows one incident, so the other"
                    " pages of a bundle would be marked sent unseen (bundling works on"
                    f" {', '.join(BUNDLING_CHANNELS)})"
                )
        return v


class AdaptersConfig(_Section):
    """Channels tocsin can notify through."""

    log: LogChannelConfig = Field(default_factory=LogChannelConfig)
    pagerduty: PagerDutyConfig | None = None
    email: EmailConfig | None = None
    phone: PhoneConfig | None = None
    webhook: WebhookConfig | None = None
    slack: SlackConfig | None = None
    teams: TeamsConfig | None = None
    ntfy: NtfyConfig | None = None
    pushover: PushoverConfig | None = None
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
