"""Fuzzing the signed links of emails and Teams cards: ``GET`` / ``POST``
``/api/v1/{email,teams}/{ack,resolve}``.

Tokens range from garbage through near misses (one character changed, the other action's token,
another secret, the other channel's genuine token, expired) to tokens signed with the channel's
real secret whose claims are anything at all.

Properties: never a 5xx or a logged error; a GET never changes anything; a POST changes the
store only when its token is genuine, unexpired, for that action and names an existing incident,
and then it answers 200; every answer is an HTML page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.email.links import BadLink, LinkSigner
from router.receiver import clean_text
from tests.fuzz.conftest import (
    LINK_SECRET,
    LINK_TTL,
    MAX_BODY,
    PUBLIC,
    TEAMS_LINK_SECRET,
    FuzzApp,
    content_types,
    fuzz_settings,
    json_values,
    random_headers,
    texts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACTIONS = ["ack", "resolve"]
CHANNELS = ["email", "teams"]
B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SECRETS = {"email": LINK_SECRET, "teams": TEAMS_LINK_SECRET}
SIGNERS = {c: LinkSigner(SECRETS[c], LINK_TTL, PUBLIC, channel=c) for c in CHANNELS}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(payload: bytes, channel: str) -> str:
    domain = f"tocsin-{channel}-link-v1\x00".encode()
    mac = hmac.new(SECRETS[channel].encode(), domain + payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    """A genuine link's claims with 0-3 fields given another type or value, or removed."""
    doc: dict[str, Any] = {"a": "$action", "e": "$future", "i": "$id0", "p": "ollie"}
    weird = {
        "a": st.sampled_from([*ACTIONS, "", "ACK", "reopen"]) | json_values,
        "e": st.sampled_from(
            [2**31, 2**63, 10**20, -(10**20), 0, -1, 253402300800, 1e308, 1.5, True, "1"]
        )
        | st.integers()
        | json_values,
        "i": st.sampled_from(["$id1", "", "#1", "1", "\udc80", "$id0\udc80"]) | json_values,
        "p": st.sampled_from(["", "a\udc80", "<script>", "x" * 300]) | json_values,
    }
    for key in draw(st.lists(st.sampled_from(sorted(doc)), unique=True, max_size=3)):
        if draw(st.integers(0, 4)) == 0:
            del doc[key]
        else:
            doc[key] = draw(weird[key])
    return doc


Token = tuple[str, str]  # (kind, spec): "raw" tokens are sent as they are


@st.composite
def tokens(draw: st.DrawFn) -> Token:
    """Any kind of token, described; ``materialize`` makes it against the app's incidents."""
    kind = draw(
        st.sampled_from(
            [
                *("garbage", "b64", "flip", "other-action", "wrong-secret", "expired", "valid"),
                "other-channel",
                *("claims", "claims", "claims"),  # the widest space: drawn more often
            ]
        )
    )
    if kind == "garbage":
        return ("raw", draw(st.text(max_size=60)))
    if kind == "b64":
        part = st.text(B64_CHARS, max_size=60)
        sep = draw(st.sampled_from([".", "", "..", ". "]))
        return ("raw", draw(part) + sep + draw(part))
    if kind == "claims":
        return (kind, json.dumps(draw(claims()), separators=(",", ":")))
    return (kind, draw(st.sampled_from(["0", "1"])))


def materialize(
    app: FuzzApp, token: Token, position: int, url_action: str, channel: str = "email"
) -> str:
    """The token string ``token`` describes, for a link to ``url_action`` of ``channel``."""
    kind, spec = token
    if kind == "raw":
        return spec
    s = app.seeded
    now = app.clock.now()
    if kind == "claims":
        future = int((now + LINK_TTL).timestamp())
        payload = spec.replace('"$future"', str(future)).replace("$action", url_action)
        for i, inc in enumerate(s.incident_ids):
            payload = payload.replace(f"$id{i}", inc)
        return _signed(payload.encode(), channel)
    inc = s.incident_ids[int(spec)]
    signer = SIGNERS[channel]
    action = url_action
    if kind == "valid":
        return signer.token(inc, action, "ollie", now)
    if kind == "other-action":
        return signer.token(inc, "resolve" if action == "ack" else "ack", "ollie", now)
    if kind == "wrong-secret":
        wrong = LinkSigner(SECRETS[channel] + "x", LINK_TTL, PUBLIC, channel=channel)
        return wrong.token(inc, action, "ollie", now)
    if kind == "other-channel":
        return SIGNERS["teams" if channel == "email" else "email"].token(inc, action, "ollie", now)
    if kind == "expired":
        return signer.token(inc, action, "ollie", now - LINK_TTL - timedelta(seconds=1))
    good = signer.token(inc, action, "ollie", now)  # "flip": one character changed
    i = position % len(good)
    repl = "A" if good[i] != "A" else "B"
    return good[:i] + repl + good[i + 1 :]


async def genuine(app: FuzzApp, token: str | None, action: str, channel: str = "email") -> bool:
    """Whether the app must act on ``token``: the channel's own verifier accepts it for
    ``action`` and it names an incident that exists."""
    if not token:
        return False
    try:
        claims = SIGNERS[channel].verify(token, action, app.clock.now())
    except BadLink:
        return False
    except (ValueError, OverflowError, OSError):
        return False  # claims no real link can have: refused, never acted on
    if clean_text(claims.incident_id) != claims.incident_id:
        return False
    return await app.rt.store.get_incident(claims.incident_id) is not None


def _html(status: int, ctype: str) -> None:
    assert status in (200, 403, 404), status
    assert ctype == "text/html", ctype


@fuzz_settings(200)
@given(
    channel=st.sampled_from(CHANNELS),
    action=st.sampled_from(ACTIONS),
    token=st.none() | tokens(),
    position=st.integers(0, 200),
    extra=st.dictionaries(texts, texts, max_size=3),
    headers=random_headers(),
)
async def test_get_never_changes_anything(
    batch: FuzzApp,
    channel: str,
    action: str,
    token: Token | None,
    position: int,
    extra: dict[str, str],
    headers: dict[str, str],
) -> None:
    query = {k: v for k, v in extra.items() if k != "token"}
    if token is not None:
        query["token"] = materialize(batch, token, position, action, channel)
    headers = {k: "".join(c for c in v if 0x20 <= ord(c) < 0x7F) for k, v in headers.items()}
    before = batch.begin()
    resp = await batch.client.get(
        f"/api/v1/{channel}/{action}?{urlencode(query, quote_via=quote)}", headers=headers
    )
    text = await resp.text()
    batch.finish(before, resp.status, may_change=False, what=f"GET {action} {query}")
    _html(resp.status, resp.content_type)
    if await genuine(batch, query.get("token"), action, channel):
        assert resp.status == 200, text
        assert "Nothing was changed" not in text


@fuzz_settings(250)
@given(
    channel=st.sampled_from(CHANNELS),
    action=st.sampled_from(ACTIONS),
    token=st.none() | tokens(),
    position=st.integers(0, 200),
    where=st.sampled_from(["form", "query", "both", "multipart", "raw"]),
    raw=st.binary(max_size=300),
    ctype=content_types,
)
async def test_post_acts_only_on_a_genuine_token(
    batch: FuzzApp,
    channel: str,
    action: str,
    token: Token | None,
    position: int,
    where: str,
    raw: bytes,
    ctype: str,
) -> None:
    real = materialize(batch, token, position, action, channel) if token is not None else None
    url = f"/api/v1/{channel}/{action}"
    kwargs: dict[str, Any] = {}
    used = real
    if where in ("query", "both") and real is not None:
        url += "?" + urlencode({"token": real}, quote_via=quote)
    if where in ("form", "both"):
        kwargs["data"] = {"token": real} if real is not None else {}
    elif where == "multipart":
        kwargs["data"] = raw
        kwargs["headers"] = {"Content-Type": "multipart/form-data; boundary=zz"}
        used = real if "?" in url else None
    elif where == "raw":
        kwargs["data"] = raw
        kwargs["headers"] = {"Content-Type": "".join(c for c in ctype if 0x20 <= ord(c) < 0x7F)}
        used = real if "?" in url else None
    elif where == "query":
        kwargs["data"] = b""
    before = batch.begin()
    resp = await batch.client.post(url, **kwargs)
    text = await resp.text()
    must_act = await genuine(batch, used, action, channel)
    changed = batch.finish(
        before, resp.status, may_change=must_act, what=f"POST {action} {where} {real!r}"
    )
    if resp.status == 400:  # a body aiohttp cannot decode as a form: refused, nothing done
        assert where in ("multipart", "raw"), text
        assert resp.content_type == "application/json"
        return
    _html(resp.status, resp.content_type)
    if must_act:
        assert resp.status == 200, text
    if changed:
        assert resp.status == 200, text
        done = "acknowledged" if action == "ack" else "resolved"
        assert f" {done}</title>" in text, text


@fuzz_settings(20)
@given(action=st.sampled_from(ACTIONS), delta=st.sampled_from([0, 1, 100]))
async def test_form_bodies_at_the_size_limit(batch: FuzzApp, action: str, delta: int) -> None:
    token = "x" * (MAX_BODY + delta - len("token="))
    before = batch.begin()
    resp = await batch.client.post(
        f"/api/v1/email/{action}",
        data=f"token={token}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await resp.read()
    batch.finish(before, resp.status, may_change=False, what=str(delta))
    assert resp.status == (413 if delta > 0 else 403)
