"""Fuzzing ``POST /api/v1/alertmanager``: bad credentials, bodies and headers; valid payloads.

Properties: never a 5xx or a logged error; without valid credentials always 401 and nothing
stored; with them, the exact status the contract gives (415 for a non-JSON content type, 413 over
``server.max_body_bytes``, 400 for anything the Notification model refuses, else 200) and nothing
stored unless 200; every valid payload of any Alertmanager version is stored.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from rules.alerts import Notification, fingerprint
from tests.fuzz.conftest import (
    AM_PASSWORD,
    AM_TOKEN,
    AM_USER,
    FIXED_TIMESTAMPS,
    MAX_BODY,
    RECEIVER,
    FuzzApp,
    arbitrary_bodies,
    boundary_timestamps,
    build_request,
    content_types,
    dumps,
    fuzz_settings,
    raw_header_bytes,
    raw_http,
    sample,
    sized_payload,
    valid_notifications,
    wrong_typed,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/vnd.am+json"]
VALID_AUTH = [
    f"Bearer {AM_TOKEN}",
    f"bearer   {AM_TOKEN}  ",
    "Basic " + base64.b64encode(f"{AM_USER}:{AM_PASSWORD}".encode()).decode(),
]

valid_bodies = valid_notifications(max_alerts=3).map(dumps)
# Valid shapes with one to three fields of the wrong type, removed, or holding odd timestamps.
mutated_bodies = wrong_typed(valid_notifications(max_alerts=3)).map(dumps)


@st.composite
def timestamp_bodies(draw: st.DrawFn) -> bytes:
    """A valid payload whose startsAt / endsAt are boundary timestamps."""
    doc = draw(valid_notifications(max_alerts=3))
    for alert in doc["alerts"]:
        for name in ("startsAt", "endsAt"):
            if draw(st.booleans()):
                alert[name] = draw(boundary_timestamps)
    return dumps(doc)


bad_bodies = st.one_of(arbitrary_bodies(valid_bodies), mutated_bodies, timestamp_bodies())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


invalid_auth = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=40).map(lambda t: "Bearer " + t),
    st.sampled_from(
        [
            f"Bearer {AM_TOKEN}x",
            f"Bearer {AM_TOKEN[:-1]}",
            f"Bearer {AM_TOKEN.upper()}",
            f"Token {AM_TOKEN}",
            f"{AM_TOKEN}",
            "Bearer",
            "Basic",
            "Basic ====",
            "Basic " + _b64(f"{AM_USER}:{AM_PASSWORD}x"),
            "Basic " + _b64(f"{AM_USER}{AM_PASSWORD}"),
            "Basic " + _b64(f"{AM_USER.upper()}:{AM_PASSWORD}"),
            "Basic " + _b64("\u00e9:\u00e9"),
            "Basic " + base64.b64encode(b"\xff\xfe:\x80").decode(),
            f"Basic {AM_USER}:{AM_PASSWORD}",
            "Basic " + _b64(f"{AM_USER}:{AM_PASSWORD}") + "é",
        ]
    ),
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map(
        lambda up: "Basic " + _b64(f"{up[0]}:{up[1]}")
    ),
    st.tuples(st.sampled_from(["Digest", "Negotiate", "AWS4", "x"]), st.text(max_size=30)).map(
        " ".join
    ),
).filter(lambda h: h is None or h.strip() not in {v.strip() for v in VALID_AUTH})


HOP_BY_HOP = {
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"expect",
    b"connection",
    b"upgrade",
}


def _header_safe(value: str) -> str:
    # The client refuses control characters in header values; the raw-socket test sends them.
    return "".join(ch for ch in value if ch == "\t" or (ord(ch) >= 0x20 and ch != "\x7f")).strip()


def expected_status(body: bytes) -> int:
    """What the receiver must answer an authenticated JSON POST of ``body``."""
    if len(body) > MAX_BODY:
        return 413
    try:
        Notification.model_validate_json(body)
    except ValidationError:
        return 400
    return 200


@fuzz_settings(250)
@given(auth=invalid_auth, body=bad_bodies | valid_bodies, ctype=content_types)
async def test_without_valid_credentials_always_401_and_nothing_stored(
    batch: FuzzApp, auth: str | None, body: bytes, ctype: str
) -> None:
    headers = {"Content-Type": _header_safe(ctype)}
    if auth is not None:
        headers["Authorization"] = _header_safe(auth)
        if headers["Authorization"].strip() in {v.strip() for v in VALID_AUTH}:
            return  # stripping made it valid after all; the filter could not see that
    before = batch.begin()
    resp = await batch.client.post(RECEIVER, data=body, headers=headers)
    text = await resp.text()
    batch.finish(before, resp.status, may_change=False, what=f"auth={auth!r}")
    assert resp.status == 401, text
    assert json.loads(text)["error"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="tocsin"')


@fuzz_settings(300)
@given(auth=st.sampled_from(VALID_AUTH), body=bad_bodies, ctype=st.sampled_from(JSON_TYPES))
async def test_authenticated_bad_bodies_get_the_exact_4xx_and_store_nothing(
    batch: FuzzApp, auth: str, body: bytes, ctype: str
) -> None:
    want = expected_status(body)
    before = batch.begin()
    resp = await batch.client.post(
        RECEIVER, data=body, headers={"Authorization": auth, "Content-Type": ctype}
    )
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=want == 200, what=f"body={body[:200]!r}")
    assert resp.status == want, (body[:300], answer)
    if want == 200:
        assert answer["status"] == "accepted"
    else:
        assert set(answer) == {"error", "detail", "path"}
        assert answer["error"] in (
            {"invalid JSON", "invalid payload", "unsupported version"}
            if want == 400
            else {"body too large"}
        )


@fuzz_settings(150)
@given(body=bad_bodies | valid_bodies, ctype=content_types)
async def test_any_content_type(batch: FuzzApp, body: bytes, ctype: str) -> None:
    ctype = _header_safe(ctype)
    before = batch.begin()
    resp = await batch.client.post(
        RECEIVER, data=body, headers={"Authorization": VALID_AUTH[0], "Content-Type": ctype}
    )
    answer = await resp.json()
    changed = batch.finish(before, resp.status, may_change=resp.status == 200, what=repr(ctype))
    assert resp.status in (200, 400, 413, 415), answer
    if resp.status == 415:
        assert answer["error"] == "unsupported media type"
        assert not changed
    else:
        # Past the content-type check the answer depends on the body alone.
        assert resp.status == expected_status(body), (ctype, answer)


async def _post_timestamps(
    batch: FuzzApp, starts: str | None, ends: str | None, status: str
) -> None:
    doc = sample()
    alert = doc["alerts"][0]
    alert["status"] = doc["status"] = status
    alert["labels"]["instance"] = f"{starts}/{ends}"  # its own alert, not the sample's
    del alert["fingerprint"]
    for name, value in (("startsAt", starts), ("endsAt", ends)):
        if value is not None:
            alert[name] = value
    body = dumps(doc)
    want = expected_status(body)
    before = batch.begin()
    resp = await batch.client.post(
        RECEIVER,
        data=body,
        headers={"Authorization": VALID_AUTH[0], "Content-Type": "application/json"},
    )
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=want == 200, what=f"{starts!r} {ends!r}")
    assert resp.status == want, (starts, ends, answer)
    if want == 400:
        assert answer["path"] in ("alerts[0].startsAt", "alerts[0].endsAt"), answer


async def test_every_listed_boundary_timestamp_in_both_fields(batch: FuzzApp) -> None:
    for ts in FIXED_TIMESTAMPS:
        await _post_timestamps(batch, ts, None, "firing")
        await _post_timestamps(batch, None, ts, "resolved")


@fuzz_settings(200)
@given(
    starts=st.none() | boundary_timestamps,
    ends=st.none() | boundary_timestamps,
    status=st.sampled_from(["firing", "resolved"]),
)
async def test_boundary_timestamps(
    batch: FuzzApp, starts: str | None, ends: str | None, status: str
) -> None:
    await _post_timestamps(batch, starts, ends, status)


@fuzz_settings(40)
@given(
    delta=st.sampled_from([-1000, -2, -1, 0, 1, 2, 1000, MAX_BODY]),
    chunked=st.booleans(),
    where=st.sampled_from(["annotation", "label", "groupKey", "receiver"]),
)
async def test_bodies_just_under_and_over_the_limit(
    batch: FuzzApp, delta: int, chunked: bool, where: str
) -> None:
    doc = sample()
    path: tuple[Any, ...] = {
        "annotation": ("alerts", 0, "annotations", "pad"),
        "label": ("alerts", 0, "labels", "pad"),
        "groupKey": ("groupKey",),
        "receiver": ("receiver",),
    }[where]
    body = sized_payload(MAX_BODY + delta, doc, path)
    data: Any = body
    if chunked:
        # No Content-Length: the limit must hold while the body streams in.
        async def stream() -> Any:
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        data = stream()
    before = batch.begin()
    resp = await batch.client.post(
        RECEIVER,
        data=data,
        headers={"Authorization": VALID_AUTH[0], "Content-Type": "application/json"},
    )
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=delta <= 0, what=f"{delta} {chunked} {where}")
    if delta <= 0:
        assert (resp.status, answer["status"]) == (200, "accepted"), answer
    else:
        assert (resp.status, answer["error"]) == (413, "body too large"), answer


@fuzz_settings(150)
@given(
    headers=raw_header_bytes(),
    auth=st.sampled_from(
        [b"Bearer " + AM_TOKEN.encode(), b"Bearer \xff\xfe", b"Basic \xc3\x28", None]
    ),
    ctype=st.sampled_from([b"application/json", b"application/json; charset=\xff", b"\xe2\x82"]),
    body=valid_bodies | bad_bodies,
)
async def test_raw_header_bytes_including_invalid_utf8(
    batch: FuzzApp,
    headers: list[tuple[bytes, bytes]],
    auth: bytes | None,
    ctype: bytes,
    body: bytes,
) -> None:
    lines = [h for h in headers if h[0].strip().lower() not in HOP_BY_HOP]
    if auth is not None:
        lines.append((b"Authorization", auth))
    lines.append((b"Content-Type", ctype))
    request = build_request("POST", RECEIVER.encode(), lines, body)
    before = batch.begin()
    resp = await raw_http(batch.port, request)
    batch.finish(before, resp.status, may_change=resp.status == 200, what=repr(lines))
    if resp.status == 200:
        assert auth == b"Bearer " + AM_TOKEN.encode()
        assert expected_status(body) == 200
    if auth is None or auth != b"Bearer " + AM_TOKEN.encode():
        assert resp.status in (400, 401), resp


@fuzz_settings(150)
@given(doc=valid_notifications())
async def test_every_valid_notification_is_accepted_and_stored(
    batch: FuzzApp, doc: dict[str, Any]
) -> None:
    body = dumps(doc)
    resp = await batch.client.post(
        RECEIVER,
        data=body,
        headers={"Authorization": VALID_AUTH[0], "Content-Type": "application/json"},
    )
    answer = await resp.json()
    batch.assert_quiet()
    assert (resp.status, answer["status"]) == (200, "accepted"), (body[:500], answer)
    want_fps = [a.get("fingerprint") or fingerprint(a["labels"]) for a in doc["alerts"]]
    assert [a["fingerprint"] for a in answer["alerts"]] == want_fps
    named = {o["incident"] for o in answer["incidents"] if o["incident"] is not None}
    stored: set[str] = set()
    for inc_id in named:
        inc = await batch.rt.store.get_incident(inc_id)
        assert inc is not None, inc_id
        async with batch.rt.store.transaction() as tx:
            stored |= {a.fingerprint for a in await tx.alerts_of(inc_id)}
    firing = {fp for fp, a in zip(want_fps, doc["alerts"], strict=True) if a["status"] == "firing"}
    assert firing <= stored, (firing - stored, answer["incidents"])
    if firing:
        assert named
