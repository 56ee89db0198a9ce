"""One config writer for every whole-app test.

A config is a base (an in-process server with a SQLite store in the test's directory, a receiver
token, a read and a write API token, the default matrix, one rule file) with whole top-level
sections replaced by the test: ``write_config(tmp, {"people": ...}, "policies: ...")``. Each
override is a mapping or YAML text; a section set to ``None`` is left out. Sections replace
rather than merge so that what a test passes is exactly what the app sees.

The ``*_adapter`` helpers wire an adapter to a local fake by its base URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER

__all__ = [
    "LONDON_BUSINESS_HOURS",
    "PUBLIC",
    "READ_TOKEN",
    "RECEIVER_TOKEN",
    "TRUST_SEVERITY",
    "WRITE_TOKEN",
    "base_config",
    "email_adapter",
    "log_people",
    "pagerduty_adapter",
    "phone_adapter",
    "postgres_store",
    "slack_adapter",
    "sqlite_store",
    "write_config",
]

PUBLIC = "https://tocsin.example.com"
"""``server.public_url``: where links in pages and the phone provider's callbacks point."""

RECEIVER_TOKEN = "am-token"
WRITE_TOKEN = "api-write"
READ_TOKEN = "api-read"

TRUST_SEVERITY = """\
rules:
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity]
"""
"""The rule most tests need: an alert's ``severity`` label decides (``critical`` is P0)."""

Section = Mapping[str, Any] | str | None

LONDON_BUSINESS_HOURS: dict[str, Any] = {
    "calendars": {
        "business-hours": {
            "timezone": "Europe/London",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "hours": "09:00-17:30",
        }
    }
}
"""A ``calendars:`` section: business hours Mon-Fri 09:00-17:30 London time."""


def sqlite_store(path: Path) -> dict[str, Any]:
    """The ``store:`` section for a SQLite file."""
    return {"backend": "sqlite", "path": str(path)}


def postgres_store(dsn: str, schema: str, pool_max: int = 10) -> dict[str, Any]:
    """The ``store:`` section for PostgreSQL at ``dsn``, in its own ``schema``."""
    return {
        "backend": "postgres",
        "dsn": dsn,
        "schema": schema,
        "pool_min": 1,
        "pool_max": pool_max,
    }


def base_config(tmp: Path) -> dict[str, Any]:
    """The sections every whole-app test starts from."""
    return {
        "server": {"listen": "127.0.0.1:9095", "public_url": PUBLIC, "log_format": "text"},
        "auth": {
            "receiver": {"bearer_tokens": [RECEIVER_TOKEN]},
            "api_tokens": [
                {"name": "writer", "token": WRITE_TOKEN, "scope": "write"},
                {"name": "reader", "token": READ_TOKEN, "scope": "read"},
            ],
        },
        "store": sqlite_store(tmp / "tocsin.db"),
        "matrix": {"preset": "default"},
        "rules": {"files": ["rules/*.yaml"], "default": {"severity": "P3"}},
    }


def log_people(names: Sequence[str], **fields: Any) -> dict[str, Any]:
    """A ``people:`` section: each name paged through the ``log`` channel."""
    return {n: {"name": n.title(), **fields, "channels": ["log"]} for n in names}


def pagerduty_adapter(
    events_url: str, services: Mapping[str, str], **options: Any
) -> dict[str, Any]:
    """``adapters.pagerduty`` sending Events API v2 to ``events_url`` (a fake PagerDuty; over
    plain http only because it is a local fake, which the config must then say)."""
    insecure = {"allow_insecure_events_url": True} if events_url.startswith("http://") else {}
    return {"events_url": events_url, "services": dict(services), **insecure, **options}


def phone_adapter(
    base_url: str,
    *,
    account_sid: str = ACCOUNT_SID,
    auth_token: str = AUTH_TOKEN,
    from_number: str = TWILIO_NUMBER,
) -> dict[str, Any]:
    """``adapters.phone`` calling the Twilio-compatible API at ``base_url`` (a fake Twilio; its
    account, token and number unless given)."""
    return {
        "base_url": base_url,
        "account_sid": account_sid,
        "auth_token": auth_token,
        "from_number": from_number,
        "ring_timeout": "25s",
        "timeout": "2s",
    }


def slack_adapter(base_url: str | None, **options: Any) -> dict[str, Any]:
    """``adapters.slack`` with the fake Slack's bot token and signing secret, calling the Web
    API at ``base_url`` (a fake Slack; None: Slack's own, for configs that are only checked)."""
    url = {"base_url": base_url} if base_url is not None else {}
    return {"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET, **url, **options}


def email_adapter(host: str, port: int, *, link_secret: str, **options: Any) -> dict[str, Any]:
    """``adapters.email`` sending to the SMTP server at ``host:port`` (no TLS)."""
    return {
        "host": host,
        "port": port,
        "start_tls": False,
        "from_address": "tocsin@example.com",
        "link_secret": link_secret,
        **options,
    }


def _sections(override: Section) -> Mapping[str, Any]:
    if override is None:
        return {}
    if isinstance(override, str):
        doc = yaml.safe_load(override)
        return doc or {}
    return override


def write_config(
    tmp: Path,
    *overrides: Section,
    rules: str | None = TRUST_SEVERITY,
    rule_file: str = "main.yaml",
    base: Mapping[str, Any] | None = None,
    name: str = "tocsin.yaml",
) -> Path:
    """Write the config (``base_config`` with ``overrides`` applied in order) and the rule file.

    ``rules`` is the text of ``rules/<rule_file>`` (``None``: no rule file is written).
    Returns the config's path.
    """
    cfg: dict[str, Any] = dict(base_config(tmp) if base is None else base)
    for override in overrides:
        for key, value in _sections(override).items():
            if value is None:
                cfg.pop(key, None)
            else:
                cfg[key] = value
    if rules is not None:
        (tmp / "rules").mkdir(exist_ok=True)
        (tmp / "rules" / rule_file).write_text(rules, encoding="utf-8")
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
