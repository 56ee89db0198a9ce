"""Which channels a configuration can deliver through, and how a missing one is named.

``check`` (one validation path for ``check``, ``serve`` and reload) and the dispatcher's
``Route`` stage say the same words about a channel without an adapter, so an operator who saw
one finds the other.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.config import AdaptersConfig
from escalation.oncall.targets import CHANNELS

__all__ = ["configured_channels", "no_adapter"]


def configured_channels(cfg: AdaptersConfig) -> list[str]:
    """The channel names ``cfg`` builds notifiers for, in ``CHANNELS`` order.

    Mirrors ``adapters.registry.build_notifiers`` without building anything (no network, no
    secrets read), so an offline ``check`` can use it.
    """
    kinds = {
        "log": cfg.log.enabled,
        "pagerduty": cfg.pagerduty is not None,
        "email": cfg.email is not None,
        # Calls need a provider that rings (an SMS gateway alone only texts).
        "phone": cfg.phone is not None and cfg.phone.places_calls,
        "sms": cfg.phone is not None,  # every phone provider sends texts
        "webhook": cfg.webhook is not None,
        "slack": cfg.slack is not None,
        "teams": cfg.teams is not None,
        "ntfy": cfg.ntfy is not None,
        "pushover": cfg.pushover is not None,
    }
    out = [k for k in CHANNELS if kinds.get(k)]
    if cfg.webhook is not None:
        out += [f"webhook:{name}" for name in cfg.webhook.endpoints]
    if cfg.teams is not None:
        out += [f"teams:{name}" for name in cfg.teams.webhooks]
    return out


def no_adapter(channel: str, configured: Iterable[str]) -> str:
    """``no adapter is configured for channel 'phone' (configured: log, email)``."""
    names = ", ".join(sorted(configured, key=_in_channels_order)) or "none"
    return f"no adapter is configured for channel {channel!r} (configured: {names})"


def _in_channels_order(channel: str) -> tuple[int, str]:
    kind = channel.split(":", 1)[0]
    return (CHANNELS.index(kind) if kind in CHANNELS else len(CHANNELS), channel)
