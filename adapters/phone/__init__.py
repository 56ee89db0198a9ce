"""Phone channels: voice calls (``phone``) and texts (``sms``) through telephony providers.

Modules: ``provider`` (the ``PhoneProvider`` seam), ``notifiers`` (what calls say and texts
read), ``codes`` (the SMS short code), ``twilio`` (Twilio's REST contract), ``twiml`` (the call
documents), ``signature`` (``X-Twilio-Signature``), ``vonage`` (Vonage's Voice and Messages
APIs), ``gateway`` (any HTTP SMS gateway, templated), ``failover`` (several providers in order,
per message). The inbound callbacks live in ``router/inbound_phone.py``,
``router/inbound_vonage.py`` and ``router/inbound_gateway.py``.
"""

from __future__ import annotations

from datetime import timedelta

from adapters.config import DispatchConfig, PhoneConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.phone import gateway
from adapters.phone.failover import FailoverProvider
from adapters.phone.gateway import GatewayProvider
from adapters.phone.notifiers import CallNotifier, SmsNotifier
from adapters.phone.provider import PhoneProvider, VoicePage
from adapters.phone.twilio import TwilioProvider
from adapters.phone.vonage import VonageProvider, private_key_problem

__all__ = [
    "CallNotifier",
    "FailoverProvider",
    "GatewayProvider",
    "PhoneProvider",
    "SmsNotifier",
    "TwilioProvider",
    "VoicePage",
    "VonageProvider",
    "build",
    "check",
]


def _provider(name: str, cfg: PhoneConfig, ctx: AdapterContext) -> PhoneProvider:
    if name == "twilio":
        return TwilioProvider(cfg, ctx)
    if name == "gateway" and cfg.gateway is not None:
        return GatewayProvider(cfg.gateway, ctx)
    if name == "vonage" and cfg.vonage is not None:
        return VonageProvider(cfg, cfg.vonage, ctx)
    # The config's validator admits only the providers above, each with its section.
    raise ValueError(f"phone provider {name!r} is not configured")  # pragma: no cover


def build(
    cfg: PhoneConfig, ctx: AdapterContext, dispatch: DispatchConfig | None = None
) -> dict[str, Notifier]:
    """The ``phone`` and ``sms`` notifiers over the configured provider(s)."""
    named = [(name, _provider(name, cfg, ctx)) for name in cfg.order]
    provider: PhoneProvider
    if len(named) == 1:
        provider = named[0][1]
    else:
        failures = dispatch.breaker_failures if dispatch is not None else 5
        reset = dispatch.breaker_reset if dispatch is not None else timedelta(seconds=60)
        provider = FailoverProvider(named, ctx.clock, failures=failures, reset=reset)
    out: dict[str, Notifier] = {"sms": SmsNotifier(provider)}
    if cfg.places_calls:  # else ``check`` refuses the phone channel, as for any missing adapter
        out["phone"] = CallNotifier(provider)
    return out


def check(cfg: PhoneConfig) -> list[tuple[tuple[str, ...], str]]:
    """What keeps the phone providers from working, as (path under ``phone``, message)."""
    out: list[tuple[tuple[str, ...], str]] = []
    if cfg.gateway is not None:
        out += [(("gateway", *loc), m) for loc, m in gateway.check(cfg.gateway)]
    if cfg.vonage is not None:
        problem = private_key_problem(cfg.vonage.private_key.get_secret_value())
        if problem:
            out.append((("vonage", "private_key"), problem))
    return out
