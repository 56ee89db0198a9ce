"""The console's whole-app tests: a config with console users, and signing in over HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.driver.app import App, Client, MakeApp
from tests.driver.config import base_config, log_people, write_config

__all__ = ["console_config", "csrf_of", "sign_in"]

# Trust the alert's severity label; its team label names the team for api and db.
RULES = """\
rules:
  - name: team-api
    match: '{team="api"}'
    severity_from: [severity]
    team: api
  - name: team-db
    match: '{team="db"}'
    severity_from: [severity]
    team: db
  - name: trust-severity-label
    match: '{severity=~".+"}'
    severity_from: [severity]
"""

ALICE_TOKEN = "alice-console-token-0123456789"
VIEWER_TOKEN = "viewer-console-token-0123456789"


def console_config(
    tmp: Path,
    console: dict[str, Any] | None = None,
    *,
    public_url: str = "http://tocsin.test",
    **sections: Any,
) -> Path:
    """The base config with two console users (alice may act, vic only looks).

    The public URL is plain http by default: the test client (like a browser) keeps a Secure
    cookie to itself over http.
    """
    server = base_config(tmp)["server"] | {"public_url": public_url}
    auth = base_config(tmp)["auth"] | {
        "console": console
        or {
            "users": [
                {"name": "alice", "token": ALICE_TOKEN, "scope": "write"},
                {"name": "vic", "token": VIEWER_TOKEN, "scope": "read"},
            ]
        }
    }
    people = log_people(["alice", "bob"])
    people["alice"]["email"] = "alice@example.com"
    return write_config(
        tmp,
        {
            "server": server,
            "auth": auth,
            "people": people,
            "roles": {"oncall": ["alice"], "lead": ["bob"]},
            "teams": {"api": {"members": ["alice"]}, "db": {"members": ["bob"]}},
        },
        sections,
        rules=RULES,
    )


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m is not None, "the page has no form token"
    return m.group(1)


async def sign_in(client: Client, name: str, token: str, *, prefix: str = "") -> None:
    """Sign in as a browser would: read the form (and its cookie), post it, follow the 303."""
    page = await client.get(f"{prefix}/signin")
    r = await client.post(
        f"{prefix}/signin",
        data={
            "name": name,
            "token": token,
            "next": f"{prefix}/",
            "csrf": csrf_of(await page.text()),
        },
        allow_redirects=False,
    )
    assert r.status == 303, await r.text()


@pytest.fixture
async def console(tmp_path: Path, make_app: MakeApp) -> App:
    return await make_app(console_config(tmp_path))
