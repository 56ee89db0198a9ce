"""Fuzzing the Slack routes (``/api/v1/slack/interactivity`` and ``/commands``).

Properties: never a 5xx or a logged error; a request without a valid ``v0`` signature inside
the 5-minute window (none, a random one, another secret's, another body's, a stale or future
timestamp, a malformed one) is a 401 and changes nothing; a correctly signed body of any shape
is a 200 or a 400 (413 over 1 MiB), and changes nothing here (the Slack user behind a click or
command can never be looked up in the fuzz app, so nobody may act).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.slack import block_action, signed, slash_command
from tests.fuzz.conftest import (
    SLACK_SIGNING_SECRET,
    FuzzApp,
    any_texts,
    arbitrary_bodies,
    dumps,
    fuzz_settings,
    json_values,
    random_headers,
    texts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROUTES = ["/api/v1/slack/interactivity", "/api/v1/slack/commands"]
_MAX = 1024 * 1024


@st.composite
def clicks(draw: st.DrawFn) -> bytes:
    """block_actions bodies: Slack's shape with any field replaced, or any JSON as payload."""
    body = block_action(
        draw(st.sampled_from(["U00000001", "", "UBOT00001"]) | texts),
        draw(st.sampled_from(["tocsin_ack", "tocsin_resolve", "tocsin_escalate"]) | texts),
        draw(st.sampled_from(["$id0", "1", "#1", ""]) | texts),
    )
    if draw(st.booleans()):
        doc: Any = json.loads(dict(_form(body))["payload"])
        key = draw(st.sampled_from(["type", "user", "actions", "channel", "container"]))
        doc[key] = draw(json_values)
        return urlencode({"payload": dumps(doc).decode("utf-8", "surrogatepass")}).encode(
            "utf-8", "surrogatepass"
        )
    return body


def _form(body: bytes) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body.decode())


commands = st.builds(
    lambda user, text: slash_command(user, text),
    st.sampled_from(["U00000001", ""]) | texts,
    st.sampled_from(["ack 1", "resolve #1", "oncall", "oncall primary", "incidents", ""])
    | any_texts.map(lambda t: t.encode("utf-8", "replace").decode()),
)
payload_forms = json_values.map(
    lambda v: urlencode({"payload": dumps(v).decode("utf-8", "surrogatepass")}).encode(
        "utf-8", "surrogatepass"
    )
)
bodies = st.one_of(arbitrary_bodies(clicks()), clicks(), commands, payload_forms)


@fuzz_settings(150)
@given(route=st.sampled_from(ROUTES), body=bodies, headers=random_headers())
async def test_unsigned_is_401_and_changes_nothing(
    batch: FuzzApp, route: str, body: bytes, headers: dict[str, str]
) -> None:
    headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-slack-")}
    before = batch.begin()
    resp = await batch.client.post(route, data=body, headers=headers)
    await resp.read()
    batch.finish(before, resp.status, may_change=False, what=repr(body[:200]))
    assert resp.status == _refused(body)


def _refused(body: bytes) -> int:
    """What a request that may not act gets: 413 too big, 400 not UTF-8 (never Slack's), 401."""
    if len(body) > _MAX:
        return 413
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return 400
    return 401


wrong = st.sampled_from(
    ["other-secret", "other-body", "stale", "future", "random", "malformed-ts", "v1"]
)


@fuzz_settings(150)
@given(route=st.sampled_from(ROUTES), body=bodies, how=wrong, junk=texts)
async def test_wrongly_signed_is_401_and_changes_nothing(
    batch: FuzzApp, route: str, body: bytes, how: str, junk: str
) -> None:
    now = batch.clock.now().timestamp()
    headers = signed(body, secret=SLACK_SIGNING_SECRET, at=now)
    if how == "other-secret":
        headers = signed(body, secret=SLACK_SIGNING_SECRET + "x", at=now)
    elif how == "other-body":
        headers = signed(body + b"&x=1", secret=SLACK_SIGNING_SECRET, at=now)
    elif how in ("stale", "future"):
        headers = signed(
            body, secret=SLACK_SIGNING_SECRET, at=now + (-301 if how == "stale" else 301)
        )
    elif how == "random":
        headers["X-Slack-Signature"] = "v0=" + junk.encode().hex()
    elif how == "malformed-ts":
        printable = "".join(c for c in junk if c.isascii() and c.isprintable())
        headers["X-Slack-Request-Timestamp"] = printable + "x"
    else:
        headers["X-Slack-Signature"] = headers["X-Slack-Signature"].replace("v0=", "v1=")
    before = batch.begin()
    resp = await batch.client.post(route, data=body, headers=headers)
    await resp.read()
    batch.finish(before, resp.status, may_change=False, what=f"{how} {body[:200]!r}")
    assert resp.status == _refused(body)


@fuzz_settings(200)
@given(route=st.sampled_from(ROUTES), body=bodies)
async def test_signed_bodies_of_any_shape_are_answered_and_change_nothing(
    batch: FuzzApp, route: str, body: bytes
) -> None:
    body = body.replace(b"%24id0", batch.seeded.incident_ids[0].encode())
    headers = signed(body, secret=SLACK_SIGNING_SECRET, at=batch.clock.now().timestamp())
    before = batch.begin()
    resp = await batch.client.post(route, data=body, headers=headers)
    text = await resp.text()
    batch.finish(before, resp.status, may_change=False, what=repr(body[:200]))
    if _refused(body) != 401:
        assert resp.status == _refused(body)
    elif route.endswith("commands"):
        assert resp.status == 200 and json.loads(text)["response_type"] == "ephemeral"
    else:
        assert resp.status in (200, 400), text
