"""Phone channels: voice calls (``phone``) and texts (``sms``) through a telephony provider.

Modules: ``provider`` (the ``PhoneProvider`` seam), ``notifiers`` (what calls say and texts
read), ``codes`` (the SMS short code), ``twilio`` (Twilio's REST contract), ``twiml`` (the call
documents), ``signature`` (``X-Twilio-Signature``). The inbound callbacks live in
``router/inbound_phone.py``.
"""

from __future__ import annotations

from adapters.config import PhoneConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.phone.notifiers import CallNotifier, SmsNotifier
from adapters.phone.provider import PhoneProvider, VoicePage
from adapters.phone.twilio import TwilioProvider

__all__ = ["CallNotifier", "PhoneProvider", "SmsNotifier", "TwilioProvider", "VoicePage", "build"]


def build(cfg: PhoneConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """The ``phone`` and ``sms`` notifiers over the configured provider."""
    provider: PhoneProvider
    if cfg.provider == "twilio":
        provider = TwilioProvider(cfg, ctx)
    else:  # pragma: no cover - the config's Literal admits only the providers above
        raise ValueError(f"unknown phone provider {cfg.provider!r}")
    return {"phone": CallNotifier(provider), "sms": SmsNotifier(provider)}
