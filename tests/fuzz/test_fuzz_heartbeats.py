"""Fuzzing the heartbeat routes: the ping (receiver credentials) and the list (API read token).

Names are any bytes, percent-encoded in the path. Properties: never a 5xx or a logged error;
without the receiver's credentials a ping is 401 and nothing changes; a name not configured is
404 and nothing changes; only the configured name with valid credentials is 200, re-arming it.
The list never changes anything and answers 200 (read or write token) or 401.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import (
    AM_PASSWORD,
    AM_TOKEN,
    AM_USER,
    READ_TOKEN,
    WRITE_TOKEN,
    FuzzApp,
    build_request,
    fuzz_settings,
    raw_http,
    texts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAME = "nightly"  # the fuzz app's one heartbeat
_BASIC = base64.b64encode(f"{AM_USER}:{AM_PASSWORD}".encode())
AUTH: dict[str, list[tuple[bytes, bytes]]] = {
    "none": [],
    "bearer": [(b"Authorization", f"Bearer {AM_TOKEN}".encode())],
    "basic": [(b"Authorization", b"Basic " + _BASIC)],
    "wrong": [(b"Authorization", f"Bearer {AM_TOKEN}x".encode())],
    "api-write": [(b"Authorization", f"Bearer {WRITE_TOKEN}".encode())],
    "empty": [(b"Authorization", b"Bearer ")],
}
VALID = ("bearer", "basic")

names = st.one_of(
    st.just(NAME),
    st.sampled_from(["Nightly", "nightly ", " nightly", "nightly.", "..", ".", "%", "{}"]),
    texts.filter(bool),
    st.binary(min_size=1, max_size=24),
)


def _path(name: str | bytes) -> str:
    if isinstance(name, bytes):
        return "".join(f"%{b:02X}" for b in name)
    return quote(name, safe="")


@fuzz_settings(150)
@given(name=names, auth=st.sampled_from(sorted(AUTH)), method=st.sampled_from(["GET", "POST"]))
async def test_a_ping_is_200_only_for_the_configured_name_with_the_receivers_credentials(
    batch: FuzzApp, name: str | bytes, auth: str, method: str
) -> None:
    before = batch.begin()
    target = f"/api/v1/heartbeats/{_path(name)}/ping".encode()
    resp = await raw_http(batch.port, build_request(method, target, AUTH[auth]))
    ok = auth in VALID and name == NAME
    # Every name reaches the route: it is percent-encoded, so even a slash stays one segment.
    if auth not in VALID:
        assert resp.status == 401, resp
    elif name != NAME:
        assert resp.status == 404, resp
    else:
        assert resp.status == 200, resp
        assert json.loads(resp.body)["name"] == NAME
    batch.finish(before, resp.status, may_change=ok, what=f"{method} {target!r} {auth}")


@fuzz_settings(60)
@given(auth=st.sampled_from([*AUTH, "read"]))
async def test_the_list_needs_an_api_token_and_changes_nothing(batch: FuzzApp, auth: str) -> None:
    before = batch.begin()
    headers = (
        [(b"Authorization", f"Bearer {READ_TOKEN}".encode())] if auth == "read" else AUTH[auth]
    )
    resp = await raw_http(batch.port, build_request("GET", b"/api/v1/heartbeats", headers))
    if auth in ("read", "api-write"):
        assert resp.status == 200, resp
        assert [h["name"] for h in json.loads(resp.body)["heartbeats"]] == [NAME]
    else:
        assert resp.status == 401, resp
    batch.finish(before, resp.status, may_change=False, what=f"list {auth}")
