"""Fuzzing Twilio's callbacks: ``/api/v1/phone/twilio/{gather,status,sms}``, signed and not.

Requests go over a raw socket so the request target is byte for byte what was signed (Twilio
signs the public URL with the query exactly as it requested it).

Properties: never a 5xx or a logged error; a missing or wrong ``X-Twilio-Signature`` (wrong
token, another URL, other parameters, garbage) is a 403 whatever the body, and nothing changes;
a correctly signed callback with any parameters, aimed at real outbox rows and incidents or not,
is answered 200 with well-formed TwiML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.twilio import AUTH_TOKEN, twilio_signature
from tests.fuzz.conftest import (
    GATHER,
    LEE_PHONE,
    MAX_BODY,
    OLLIE_PHONE,
    PUBLIC,
    SMS,
    STATUS,
    FuzzApp,
    RawResponse,
    build_request,
    content_types,
    fuzz_settings,
    raw_http,
    texts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROUTES = [GATHER, STATUS, SMS]
FORM = "application/x-www-form-urlencoded"
CALL_STATUSES = ["completed", "no-answer", "busy", "failed", "canceled", "ringing", "in-progress"]

# bytes: sent percent-encoded byte by byte, so any octet (invalid UTF-8 too) reaches the app.
row_refs = st.one_of(
    st.sampled_from(["$row0", "$row1", "$inc0", "$inc0:", ":", "", "$row0x"]),
    texts,
    st.binary(max_size=12),
)

Query = list[tuple[str, str | bytes]]


@st.composite
def queries(draw: st.DrawFn) -> Query:
    """Query pairs: 0-4 ``row`` values (a bundle), maybe other names."""
    pairs = [("row", r) for r in draw(st.lists(row_refs, max_size=4))]
    pairs += draw(
        st.lists(st.tuples(st.sampled_from(["x", "Row", "row[]"]) | texts, texts), max_size=2)
    )
    return draw(st.permutations(pairs))


@st.composite
def params(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Callback form parameters: Twilio's names with likely and arbitrary values, plus junk."""
    fields = {
        "Digits": st.sampled_from(["1", "2", "3", "", " 1 ", "12", "*", "#"]) | texts,
        "CallSid": st.sampled_from(["CA" + "1" * 32, "CA" + "2" * 32, ""]) | texts,
        "CallStatus": st.sampled_from(CALL_STATUSES) | texts,
        "From": st.sampled_from([OLLIE_PHONE, LEE_PHONE, "+1 415 555 0100", "", "+"]) | texts,
        "Body": st.sampled_from(
            ["ACK", "ack 1", "ACK 2", "1", "ACK #1", "ACK 99999999999999999999"]
        )
        | texts,
        "MessageSid": st.sampled_from(["SM" + "3" * 32, ""]) | texts,
        "SmsSid": texts,
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    out = [(name, draw(fields[name])) for name in chosen]
    out += draw(st.lists(st.tuples(texts, texts), max_size=3))
    return draw(st.permutations(out))


def _materialize(app: FuzzApp, text: str) -> str:
    s = app.seeded
    return (
        text.replace("$row0", s.row_ids[0])
        .replace("$row1", s.row_ids[1])
        .replace("$inc0", s.incident_ids[0])
    )


def _target(path: str, query: Query, app: FuzzApp) -> str:
    if not query:
        return path
    parts = []
    for k, v in query:
        if isinstance(v, bytes):
            value = "".join(f"%{x:02X}" for x in v)
        else:
            value = quote(_materialize(app, v), safe=":")
        parts.append(f"{quote(k, safe='')}={value}")
    return path + "?" + "&".join(parts)


async def _send(
    app: FuzzApp,
    target: str,
    body: bytes,
    *,
    signature: str | None,
    ctype: str = FORM,
) -> RawResponse:
    headers = [(b"Content-Type", ctype.encode("utf-8"))]
    if signature is not None:
        headers.append((b"X-Twilio-Signature", signature.encode("utf-8")))
    return await raw_http(app.port, build_request("POST", target.encode("ascii"), headers, body))


def _twiml(resp: RawResponse) -> ET.Element:
    assert resp.status == 200, resp
    assert resp.headers["content-type"].startswith("text/xml"), resp.headers
    root = ET.fromstring(resp.body)
    assert root.tag == "Response", resp.body
    return root


forgeries = st.sampled_from(
    ["none", "empty", "wrong-token", "garbage", "internal-url", "other-params", "other-query"]
)


def _forged(kind: str, app: FuzzApp, target: str, form: list[tuple[str, str]]) -> str | None:
    if kind == "none":
        return None
    if kind == "empty":
        return ""
    if kind == "wrong-token":
        return twilio_signature(AUTH_TOKEN + "x", PUBLIC + target, form)
    if kind == "garbage":
        return "bm90IGEgc2lnbmF0dXJl"
    if kind == "internal-url":
        return twilio_signature(AUTH_TOKEN, f"http://127.0.0.1:{app.port}{target}", form)
    if kind == "other-params":
        # A pair the form does not have: Twilio signs each distinct pair once, so adding one
        # already there would sign the very same parameters.
        extra = next(("Digits", d) for d in ("1", "2", "3") if ("Digits", d) not in form)
        return twilio_signature(AUTH_TOKEN, PUBLIC + target, [*form, extra])
    sep = "&" if "?" in target else "?"
    return twilio_signature(AUTH_TOKEN, PUBLIC + target + sep + "row=x", form)


@fuzz_settings(200)
@given(
    route=st.sampled_from(ROUTES),
    query=queries(),
    form=params(),
    kind=forgeries,
    garbage=st.none() | st.binary(max_size=300),
    ctype=st.just(FORM) | content_types,
)
async def test_unsigned_or_wrongly_signed_is_403_and_changes_nothing(
    batch: FuzzApp,
    route: str,
    query: Query,
    form: list[tuple[str, str]],
    kind: str,
    garbage: bytes | None,
    ctype: str,
) -> None:
    ctype = "".join(ch for ch in ctype if 0x20 <= ord(ch) < 0x7F)
    target = _target(route, query, batch)
    form = [(k, _materialize(batch, v)) for k, v in form]
    body = garbage if garbage is not None else urlencode(form).encode()
    signature = _forged(kind, batch, target, form)
    before = batch.begin()
    resp = await _send(batch, target, body, signature=signature, ctype=ctype)
    batch.finish(before, resp.status, may_change=False, what=f"{kind} {target} {body[:200]!r}")
    # 400: a body that is no readable form (undecodable, or a multipart with a file part),
    # refused before the signature is looked at: the signature covers the decoded parameters.
    assert resp.status in (400, 403), resp
    if ctype == FORM and garbage is None:
        assert resp.status == 403, resp


@fuzz_settings(250)
@given(route=st.sampled_from(ROUTES), query=queries(), form=params())
async def test_signed_callbacks_always_get_twiml(
    batch: FuzzApp, route: str, query: Query, form: list[tuple[str, str]]
) -> None:
    target = _target(route, query, batch)
    form = [(k, _materialize(batch, v)) for k, v in form]
    body = urlencode(form).encode()
    signature = twilio_signature(AUTH_TOKEN, PUBLIC + target, form)
    before = batch.begin()
    resp = await _send(batch, target, body, signature=signature)
    batch.finish(before, resp.status, may_change=True, what=f"{target} {form!r}")
    root = _twiml(resp)
    if route == STATUS:
        assert list(root) == [], resp.body  # a status callback is only ever acknowledged


@fuzz_settings(40)
@given(route=st.sampled_from(ROUTES), delta=st.sampled_from([-10, 0, 1, 10, MAX_BODY]))
async def test_form_bodies_around_the_size_limit(batch: FuzzApp, route: str, delta: int) -> None:
    pad = "x" * (MAX_BODY + delta - len("Pad=&CallStatus=completed"))
    form = [("Pad", pad), ("CallStatus", "completed")]
    body = urlencode(form).encode()
    assert len(body) == MAX_BODY + delta
    signature = twilio_signature(AUTH_TOKEN, PUBLIC + route, form)
    before = batch.begin()
    resp = await _send(batch, route, body, signature=signature)
    batch.finish(before, resp.status, may_change=False, what=f"{route} {delta}")
    if delta > 0:
        assert resp.status == 413, resp
    else:
        _twiml(resp)
