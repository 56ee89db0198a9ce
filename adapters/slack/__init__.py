"""The ``slack`` channel: Block Kit incident cards through slack_sdk, and what Slack calls back
with (the router's interactivity and slash-command routes use ``SlackApi`` and ``ACTIONS``).

``notify: [slack:#incidents]`` (or ``slack:<name>`` from ``adapters.slack.channels``) posts to a
channel; ``via: [slack]`` on a person sends them a direct message.
"""

from __future__ import annotations

from adapters.config import SlackConfig
from adapters.context import AdapterContext
from adapters.delivery.notifier import Notifier
from adapters.http import absolute_http_url
from adapters.slack.api import SlackApi, SlackError, failure
from adapters.slack.blocks import ACTIONS, card, escape, thread_text
from adapters.slack.notifier import SlackNotifier

__all__ = [
    "ACTIONS",
    "SlackApi",
    "SlackError",
    "SlackNotifier",
    "build",
    "card",
    "check",
    "escape",
    "failure",
    "thread_text",
]


def check(cfg: SlackConfig) -> list[tuple[tuple[str, ...], str]]:
    """What keeps this section from working, as (path, message)."""
    out: list[tuple[tuple[str, ...], str]] = []
    _, why = absolute_http_url(cfg.base_url)
    if why:
        out.append((("base_url",), f"base_url is {why}"))
    for name, channel in cfg.channels.items():
        if not channel.strip():
            out.append((("channels", name), "names no Slack channel"))
    return out


def build(cfg: SlackConfig, ctx: AdapterContext) -> dict[str, Notifier]:
    """``slack``: channel cards and direct messages."""
    api = SlackApi(cfg, ctx.http, ctx.clock)
    notifier = SlackNotifier(
        cfg, api, ctx.clock, ctx.public_url, ctx.incident_detail, people=ctx.people
    )
    return {"slack": notifier}
