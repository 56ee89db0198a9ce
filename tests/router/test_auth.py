"""Who may call: Alertmanager's bearer / basic credentials on the receiver, scoped API tokens.

Credentials are those the conftest config declares: bearer tokens ``tok-a`` and ``tok-b`` (two at
once, for rotation), basic ``am:pw``, API tokens ``api-write`` (write) and ``api-read`` (read).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError
from config.load import load_config
from router.serve import bind_address
from tests.driver.app import Client
from tests.router.conftest import (
    BEARER_A,
    BEARER_B,
    JSON,
    MAX_BODY,
    READ_TOKEN,
    RECEIVER,
    WRITE_TOKEN,
    App,
    MakeApp,
    basic,
    incident_count,
    router_config,
    sample_bytes,
)

FIRING = sample_bytes("alertmanager-0.25-firing.json")
RECEIVER_CHALLENGE = 'Bearer realm="tocsin", Basic realm="tocsin"'
API_CHALLENGE = 'Bearer realm="tocsin-api"'


async def post_receiver(client: Client, headers: dict[str, str]) -> tuple[int, Any, Any]:
    resp = await client.post(RECEIVER, data=FIRING, headers={**JSON, **headers})
    return resp.status, resp.headers.get("WWW-Authenticate"), await resp.json()


# -- the receiver: bearer ---------------------------------------------------------------------


@pytest.mark.parametrize("headers", [BEARER_A, BEARER_B], ids=["tok-a", "tok-b"])
async def test_each_rotated_bearer_token_is_accepted(app: App, headers: dict[str, str]) -> None:
    status, challenge, body = await post_receiver(app.client, headers)
    assert status == 200
    assert challenge is None
    assert body["status"] == "accepted"
    assert await incident_count(app.rt) == 1


async def test_bearer_scheme_name_is_case_insensitive(app: App) -> None:
    status, _, _ = await post_receiver(app.client, {"Authorization": "bearer tok-a"})
    assert status == 200


UNAUTHORIZED: list[tuple[str, dict[str, str], str]] = [
    ("missing-header", {}, "missing Authorization header"),
    ("wrong-token", {"Authorization": "Bearer tok-c"}, "invalid credentials"),
    ("token-prefix", {"Authorization": "Bearer tok-"}, "invalid credentials"),
    ("token-with-suffix", {"Authorization": "Bearer tok-aa"}, "invalid credentials"),
    ("empty-bearer", {"Authorization": "Bearer"}, "invalid credentials"),
    ("bare-token-no-scheme", {"Authorization": "tok-a"}, "unsupported authorization scheme"),
    ("basic-wrong-password", basic("am", "px"), "invalid credentials"),
    ("basic-wrong-user", basic("ax", "pw"), "invalid credentials"),
    ("basic-empty-password", basic("am", ""), "invalid credentials"),
    (
        "basic-no-colon",
        {"Authorization": "Basic " + base64.b64encode(b"ampw").decode()},
        "invalid credentials",
    ),
    (
        "basic-malformed-base64",
        {"Authorization": "Basic !!!notbase64"},
        "malformed basic credentials",
    ),
    (
        "basic-non-utf8",
        {"Authorization": "Basic " + base64.b64encode(b"am:\xff").decode()},
        "malformed basic credentials",
    ),
    ("basic-non-ascii", {"Authorization": "Basic tök"}, "malformed basic credentials"),
    (
        "digest-scheme",
        {"Authorization": 'Digest username="am"'},
        "unsupported authorization scheme 'Digest'",
    ),
    ("api-token-on-receiver", WRITE_TOKEN, "invalid credentials"),
    (
        "basic-token-as-bearer",
        {"Authorization": "Bearer " + base64.b64encode(b"am:pw").decode()},
        "invalid credentials",
    ),
]


@pytest.mark.parametrize(
    ("headers", "detail"), [u[1:] for u in UNAUTHORIZED], ids=[u[0] for u in UNAUTHORIZED]
)
async def test_bad_credentials_get_401_with_challenge(
    app: App, headers: dict[str, str], detail: str
) -> None:
    status, challenge, body = await post_receiver(app.client, headers)
    assert status == 401
    assert challenge == RECEIVER_CHALLENGE
    assert body["error"] == "unauthorized"
    assert detail in body["detail"]
    assert body["path"] == ""
    assert await incident_count(app.rt) == 0


async def test_basic_auth_right_credentials(app: App) -> None:
    status, challenge, body = await post_receiver(app.client, basic("am", "pw"))
    assert status == 200
    assert challenge is None
    assert body["alerts"][0]["severity"] == "P0"


async def _raw_post(client: Client, authorization: bytes) -> bytes:
    """Send header bytes aiohttp's client would refuse to encode; return the status line."""
    assert client.server.host is not None and client.server.port is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            b"POST " + RECEIVER.encode() + b" HTTP/1.1\r\nHost: tocsin\r\n"
            b"Content-Type: application/json\r\nAuthorization: " + authorization + b"\r\n"
            b"Content-Length: "
            + str(len(FIRING)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + FIRING
        )
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    return response


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer t\xffk", b"Bearer t\xc3\xb6k", b"Basic t\xffk", b"Basic \xc3\xa9"],
    ids=["bearer-invalid-utf8", "bearer-utf8", "basic-invalid-utf8", "basic-utf8"],
)
async def test_non_ascii_credentials_are_401_not_500(app: App, authorization: bytes) -> None:
    response = await _raw_post(app.client, authorization)
    assert response.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"\r\nWWW-Authenticate: " + RECEIVER_CHALLENGE.encode() + b"\r\n" in response
    assert b'"error": "unauthorized"' in response


async def test_authentication_comes_before_reading_the_body(app: App) -> None:
    """An unauthenticated caller learns nothing about size limits or payload validation."""
    resp = await app.client.post(
        RECEIVER, data=b"x" * (MAX_BODY + 1), headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 401
    assert (await resp.json())["detail"] == "missing Authorization header"


# -- the receiver: configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    "receiver_auth",
    [
        "    bearer_tokens: []",
        "    insecure: false",
        '    bearer_tokens: ["${TOCSIN_TEST_UNSET_TOKEN:-}"]',
        "    bearer_tokens: ['  ']\n    basic_auth: []",
    ],
    ids=["empty-list", "insecure-false", "unset-env-token", "blank-token"],
)
def test_config_without_receiver_credentials_is_refused(tmp_path: Path, receiver_auth: str) -> None:
    path = router_config(tmp_path, receiver_auth=receiver_auth)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert (problem.line, problem.column) == (6, 3)  # the `receiver:` key
    assert problem.path == "auth.receiver"
    assert "the receiver has no credentials" in problem.message
    assert "insecure: true" in problem.message
    assert f"{path}:6:3: auth.receiver: the receiver has no credentials" in str(info.value)


def test_receiver_token_from_environment(tmp_path: Path) -> None:
    path = router_config(tmp_path, receiver_auth='    bearer_tokens: ["${TOCSIN_TEST_TOKEN}"]')
    loaded = load_config(path, env={"TOCSIN_TEST_TOKEN": "from-env"})
    tokens = [t.get_secret_value() for t in loaded.config.auth.receiver.bearer_tokens]
    assert tokens == ["from-env"]


async def test_insecure_receiver_accepts_unauthenticated_requests(
    make_app: MakeApp, tmp_path: Path
) -> None:
    h = await make_app(router_config(tmp_path, receiver_auth="    insecure: true"))
    status, challenge, body = await post_receiver(h.client, {})
    assert status == 200
    assert challenge is None
    assert body["alerts"][0]["fingerprint"] == "7db01aa399468675"
    status, _, _ = await post_receiver(h.client, {"Authorization": "Bearer anything"})
    assert status == 200


async def test_insecure_with_credentials_still_requires_them(
    make_app: MakeApp, tmp_path: Path
) -> None:
    path = router_config(tmp_path, receiver_auth='    insecure: true\n    bearer_tokens: ["tok-a"]')
    h = await make_app(path)
    status, challenge, _ = await post_receiver(h.client, {})
    assert (status, challenge) == (401, RECEIVER_CHALLENGE)
    status, _, _ = await post_receiver(h.client, BEARER_A)
    assert status == 200


def test_insecure_binds_loopback_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tocsin.serve"):
        assert bind_address("0.0.0.0:9095", insecure=True) == ("127.0.0.1", 9095)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.name == "tocsin.serve"
    assert "binding to 127.0.0.1 instead of 0.0.0.0" in record.getMessage()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("10.1.2.3:8080", ("127.0.0.1", 8080)),
        (":9095", ("127.0.0.1", 9095)),
        ("[::]:9095", ("127.0.0.1", 9095)),
    ],
)
def test_insecure_never_binds_a_public_address(
    caplog: pytest.LogCaptureFixture, listen: str, expected: tuple[str, int]
) -> None:
    with caplog.at_level(logging.WARNING, logger="tocsin.serve"):
        assert bind_address(listen, insecure=True) == expected
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9095", ("127.0.0.1", 9095)),
        ("[::1]:9095", ("::1", 9095)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_insecure_on_loopback_keeps_address_and_warns(
    caplog: pytest.LogCaptureFixture, listen: str, expected: tuple[str, int]
) -> None:
    with caplog.at_level(logging.WARNING, logger="tocsin.serve"):
        assert bind_address(listen, insecure=True) == expected
    (record,) = caplog.records
    assert "accepts unauthenticated requests" in record.getMessage()


def test_authenticated_receiver_binds_where_told_silently(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tocsin.serve"):
        assert bind_address("0.0.0.0:9095", insecure=False) == ("0.0.0.0", 9095)
    assert caplog.records == []


# -- API tokens and scopes --------------------------------------------------------------------

WRITE_ENDPOINTS = [("POST", "/-/reload"), ("POST", "/api/v1/incidents/1/ack")]
READ_ENDPOINTS = [("GET", "/api/v1/incidents"), ("GET", "/api/v1/incidents/1")]
ALL_ENDPOINTS = WRITE_ENDPOINTS + READ_ENDPOINTS


def _ids(endpoints: list[tuple[str, str]]) -> list[str]:
    return [f"{m} {p}" for m, p in endpoints]


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS, ids=_ids(WRITE_ENDPOINTS))
async def test_read_token_on_write_endpoint_is_403(app: App, method: str, path: str) -> None:
    resp = await app.client.request(method, path, headers=READ_TOKEN)
    assert resp.status == 403
    assert "WWW-Authenticate" not in resp.headers
    assert await resp.json() == {
        "error": "forbidden",
        "detail": "token 'reader' has scope read; write is needed",
        "path": "",
    }


API_UNAUTHORIZED = [
    ("no-token", {}, "an API bearer token is required"),
    ("receiver-token", BEARER_A, "invalid API token"),
    ("unknown-token", {"Authorization": "Bearer nope"}, "invalid API token"),
    ("basic-auth", basic("am", "pw"), "an API bearer token is required"),
    ("empty-bearer", {"Authorization": "Bearer "}, "an API bearer token is required"),
]


@pytest.mark.parametrize(("method", "path"), ALL_ENDPOINTS, ids=_ids(ALL_ENDPOINTS))
@pytest.mark.parametrize(
    ("headers", "detail"), [a[1:] for a in API_UNAUTHORIZED], ids=[a[0] for a in API_UNAUTHORIZED]
)
async def test_api_without_valid_token_is_401(
    app: App, method: str, path: str, headers: dict[str, str], detail: str
) -> None:
    resp = await app.client.request(method, path, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == API_CHALLENGE
    assert await resp.json() == {"error": "unauthorized", "detail": detail, "path": ""}


async def test_write_token_may_reload(app: App) -> None:
    resp = await app.client.post("/-/reload", headers=WRITE_TOKEN)
    assert resp.status == 200
    assert await resp.json() == {"status": "reloaded"}


@pytest.mark.parametrize("token", [READ_TOKEN, WRITE_TOKEN], ids=["read", "write"])
async def test_read_and_write_tokens_may_list_incidents(app: App, token: dict[str, str]) -> None:
    await post_receiver(app.client, BEARER_A)
    resp = await app.client.get("/api/v1/incidents", headers=token)
    assert resp.status == 200
    incidents = (await resp.json())["incidents"]
    assert [(i["key"], i["severity"], i["status"]) for i in incidents] == [
        ("HighErrorRate/api", "P0", "triggered")
    ]


async def test_write_token_reaches_the_write_handler(app: App) -> None:
    """Past auth, acking a missing incident is the handler's own 404."""
    resp = await app.client.post("/api/v1/incidents/1/ack", headers=WRITE_TOKEN)
    assert resp.status == 404
    assert await resp.json() == {"error": "not found", "detail": "no incident '1'", "path": "id"}
