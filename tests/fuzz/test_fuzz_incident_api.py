"""Fuzzing the incident API: list, show and actions, with no, wrong, read and write tokens.

Requests go over a raw socket so incident references can be any percent-encoded bytes.

Properties: never a 5xx or a logged error; without a valid token 401, with a read token on an
action 403, and in both cases nothing changes; list and show never change anything and answer
200 or the exact 4xx; an action changes the store only with the write token and a 200, and its
answer is exactly one of 200 / 400 / 404 / 409 / 413 with a JSON error naming the field.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.receiver import clean_text
from tests.fuzz.conftest import (
    INCIDENTS,
    MAX_BODY,
    READ_TOKEN,
    WRITE_TOKEN,
    FuzzApp,
    RawResponse,
    any_texts,
    arbitrary_bodies,
    build_request,
    deep_nesting,
    dumps,
    fuzz_settings,
    invalid_utf8,
    json_values,
    raw_http,
    sized_payload,
    texts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

VALID_ACTIONS = ["ack", "mitigate", "resolve", "escalate", "notes"]
ACTIONS = [*VALID_ACTIONS, "reopen", "acknowledge", "note", "ACK"]
STATUSES = ["triggered", "acknowledged", "mitigated", "resolved", "open"]
SEVERITIES = ["P0", "P1", "p2", "SEV-1", "critical", "warning", "sev5"]

tokens = st.sampled_from(["none", "read", "write", "wrong", "basic", "empty"])
# Actions: mostly with the write token, where the handler goes furthest.
action_tokens = st.sampled_from(["write", "write", "write", "write", "read", "none", "wrong"])


def auth_header(kind: str) -> list[tuple[bytes, bytes]]:
    return {
        "none": [],
        "read": [(b"Authorization", f"Bearer {READ_TOKEN}".encode())],
        "write": [(b"Authorization", f"Bearer {WRITE_TOKEN}".encode())],
        "wrong": [(b"Authorization", f"Bearer {WRITE_TOKEN}x".encode())],
        "basic": [(b"Authorization", b"Basic YXBpOmFwaS13cml0ZS10b2tlbg==")],
        "empty": [(b"Authorization", b"Bearer ")],
    }[kind]


# An incident reference: a real id, number or key, or any bytes (percent-encoded in the path).
refs = st.one_of(
    st.sampled_from(["$id0", "$id1", "$num0", "#1", "$key0", "$key1", "999", "#0", "#-1"]),
    texts,
    st.binary(min_size=1, max_size=20),
    st.sampled_from(["9" * 30, "#" + "9" * 19, ".", "..", "%", "%%", " ", "{}"]),
)


def _ref_path(app: FuzzApp, ref: str | bytes) -> str:
    s = app.seeded
    if isinstance(ref, bytes):
        return "".join(f"%{b:02X}" for b in ref)
    table = {"$id0": s.incident_ids[0], "$id1": s.incident_ids[1], "$num0": str(s.numbers[0])}
    table |= {"$key0": s.keys[0], "$key1": s.keys[1]}
    return quote(table.get(ref, ref), safe="")


async def _request(
    app: FuzzApp, method: str, target: str, token: str, body: bytes = b"", ctype: bytes = b""
) -> RawResponse:
    headers = auth_header(token)
    if ctype:
        headers.append((b"Content-Type", ctype))
    return await raw_http(app.port, build_request(method, target.encode(), headers, body))


def _json(resp: RawResponse) -> dict[str, Any]:
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    doc = json.loads(resp.body)
    assert isinstance(doc, dict)
    return doc


def _check_denied(resp: RawResponse, token: str, need: str) -> bool:
    """True when ``token`` must be refused for ``need``; then the refusal is exact."""
    if token in ("none", "wrong", "basic", "empty"):
        assert resp.status == 401, resp
        assert resp.headers["www-authenticate"] == 'Bearer realm="tocsin-api"'
        return True
    if need == "write" and token == "read":
        assert resp.status == 403, resp
        assert _json(resp)["error"] == "forbidden"
        return True
    return False


@st.composite
def list_queries(draw: st.DrawFn) -> str:
    parts = []
    if draw(st.booleans()):
        limit = draw(
            st.sampled_from(["1", "1000", "0", "1001", "-1", "", "1e3", " 5", "0x10", "9" * 40])
            | st.integers(-5, 2000).map(str)
            | texts
        )
        parts.append(("limit", limit))
    if draw(st.booleans()):
        parts.append(
            ("status", ",".join(draw(st.lists(st.sampled_from(STATUSES) | texts, max_size=3))))
        )
    if draw(st.booleans()):
        parts.append(
            ("severity", ",".join(draw(st.lists(st.sampled_from(SEVERITIES) | texts, max_size=3))))
        )
    if draw(st.booleans()):
        parts.append(("team", draw(texts)))
    parts += draw(st.lists(st.tuples(texts, texts), max_size=2))
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in parts)


@fuzz_settings(200)
@given(query=list_queries(), token=tokens)
async def test_list_never_changes_anything(batch: FuzzApp, query: str, token: str) -> None:
    before = batch.begin()
    resp = await _request(batch, "GET", f"{INCIDENTS}?{query}", token)
    batch.finish(before, resp.status, may_change=False, what=query)
    if _check_denied(resp, token, "read"):
        return
    doc = _json(resp)
    assert resp.status in (200, 400), resp
    if resp.status == 200:
        assert isinstance(doc["incidents"], list)
    else:
        assert (doc["error"], doc["path"]) in {
            ("bad query", "limit"),
            ("bad query", "status"),
            ("bad query", "severity"),
        }, doc


@fuzz_settings(200)
@given(ref=refs, token=tokens, suffix=st.sampled_from(["", "/", "?x=1", "/timeline"]))
async def test_show_never_changes_anything(
    batch: FuzzApp, ref: str | bytes, token: str, suffix: str
) -> None:
    path = _ref_path(batch, ref)
    target = f"{INCIDENTS}/{path}{suffix}"
    before = batch.begin()
    resp = await _request(batch, "GET", target, token)
    batch.finish(before, resp.status, may_change=False, what=target)
    if not path and suffix.startswith("?"):
        assert resp.status == 404 or _check_denied(resp, token, "read"), resp  # the list route
        return
    if suffix in ("/", "/timeline") or not path:
        assert resp.status in (404, 405), resp  # no such route
        return
    if _check_denied(resp, token, "read"):
        return
    assert resp.status in (200, 404), resp
    doc = _json(resp)
    if resp.status == 200:
        assert doc["id"] in batch.seeded.incident_ids or doc["number"] > 2


@st.composite
def action_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(body, content type): valid notes and actors, every field of the wrong type, garbage."""
    doc = {
        "note": draw(
            st.sampled_from(["", " ", "looked at it", "x" * 4000, "x" * 4001, "a\udc80b"])
            | json_values
        ),
        "actor": draw(st.sampled_from(["ann", "", "x" * 200, "x" * 201, "\ud800"]) | json_values),
    }
    for key in draw(st.lists(st.sampled_from(["note", "actor"]), unique=True)):
        del doc[key]
    kind = draw(st.sampled_from(["doc", "doc", "doc", "empty", "garbage", "deep", "utf8"]))
    body = {
        "doc": st.just(dumps(doc)),
        "empty": st.sampled_from([b"", b"  ", b"\r\n"]),
        "garbage": arbitrary_bodies(st.just(dumps(doc))),
        "deep": deep_nesting(),
        "utf8": invalid_utf8(st.just(dumps(doc))),
    }[kind]
    body = draw(body)
    ctype = draw(
        st.sampled_from(
            [b"application/json", b"", b"text/plain", b"application/x-www-form-urlencoded"]
        )
    )
    return body, ctype


def expected_body_problem(body: bytes) -> tuple[int, str] | None:
    """The 400/413 (status, field) a write-token action must get for ``body``, if any."""
    if len(body) > MAX_BODY:
        return (413, "")
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return (400, "")
    if not isinstance(doc, dict):
        return (400, "")
    note, actor = doc.get("note", ""), doc.get("actor", "writer")
    if not isinstance(note, str) or len(note) > 4000:
        return (400, "note")
    if not isinstance(actor, str) or not actor or len(actor) > 200:
        return (400, "actor")
    return None


@fuzz_settings(300)
@given(
    ref=st.sampled_from(["$id0", "$id1", "$num0", "$key0", "$key1"]) | refs,
    action=st.one_of(
        st.sampled_from(VALID_ACTIONS),
        st.sampled_from(VALID_ACTIONS),
        st.sampled_from(ACTIONS),
        texts.filter(lambda t: "/" not in t),
    ),
    token=action_tokens,
    body_ctype=action_bodies(),
)
async def test_actions_change_only_with_the_write_token_and_a_200(
    batch: FuzzApp, ref: str | bytes, action: str, token: str, body_ctype: tuple[bytes, bytes]
) -> None:
    body, ctype = body_ctype
    path = _ref_path(batch, ref)
    target = f"{INCIDENTS}/{path}/{quote(action, safe='')}"
    before = batch.begin()
    resp = await _request(batch, "POST", target, token, body, ctype)
    changed = batch.finish(
        before, resp.status, may_change=token == "write", what=f"{target} {body[:200]!r}"
    )
    if not action or not path or {"{", "}"} & set(action):
        # No such route: an empty segment, or braces (aiohttp's default {action} pattern).
        assert resp.status in (404, 405), resp
        return
    if _check_denied(resp, token, "write"):
        return
    doc = _json(resp)
    if action not in VALID_ACTIONS and action != "reopen":
        assert (resp.status, doc["error"], doc["path"]) == (404, "not found", "action"), doc
        return
    problem = expected_body_problem(body)
    if problem is not None:
        status, field = problem
        assert resp.status == status, (doc, body[:200])
        if field:
            assert doc["path"] == field, doc
        return
    if action == "notes":
        note = json.loads(body).get("note", "") if body.strip() else ""
        if not note.strip():
            assert (resp.status, doc["path"]) == (400, "note"), doc
            return
    if action == "reopen":
        assert (resp.status, doc["path"]) == (404, "action"), doc
        return
    assert resp.status in (200, 404, 409), doc
    if resp.status == 200:
        assert doc["id"] and doc["timeline"], doc
    else:
        assert doc["path"] == ("id" if resp.status == 404 else "status"), doc
        assert not changed


note_texts = st.one_of(
    st.sampled_from(["", " ", "looked at it", "x" * 4000, "x" * 4001, "\u2028", "<b>&amp;"]),
    any_texts,
    any_texts.map(lambda t: t + "\udc80"),
)


@fuzz_settings(150)
@given(
    ref=st.sampled_from(["$id0", "$id1", "$num0", "$key0", "$key1"]),
    action=st.sampled_from(VALID_ACTIONS),
    note=st.none() | note_texts | json_values,
    actor=st.none() | note_texts | json_values,
)
async def test_actions_on_real_incidents_with_any_note_and_actor(
    batch: FuzzApp, ref: str, action: str, note: Any, actor: Any
) -> None:
    doc = {k: v for k, v in (("note", note), ("actor", actor)) if v is not None}
    body = dumps(doc)
    target = f"{INCIDENTS}/{_ref_path(batch, ref)}/{action}"
    before = batch.begin()
    resp = await _request(batch, "POST", target, "write", body, b"application/json")
    changed = batch.finish(before, resp.status, may_change=True, what=f"{target} {body[:200]!r}")
    answer = _json(resp)
    problem = expected_body_problem(body)
    if problem is None and action == "notes" and not doc.get("note", "").strip():
        problem = (400, "note")
    if problem is not None:
        assert (resp.status, answer["path"]) == problem, answer
        assert not changed
        return
    assert resp.status in (200, 409), answer  # 409: not legal in the incident's status
    assert changed == (resp.status == 200), answer
    if resp.status == 200 and action == "notes":
        last = [e for e in answer["timeline"] if e["kind"] == "note"][-1]
        sent = json.loads(body)  # a surrogate pair in `doc` arrives as one character
        # The token acts; the body's actor is only "on behalf of".
        assert (last["message"], last["actor"], last["source"]) == (
            clean_text(sent["note"]),
            "writer",
            "api",
        ), last
        claimed = clean_text(sent.get("actor", "writer"))
        assert last["data"].get("on_behalf_of") == (None if claimed == "writer" else claimed)


@fuzz_settings(20)
@given(delta=st.sampled_from([-1, 0, 1, 1000]))
async def test_action_bodies_at_the_size_limit(batch: FuzzApp, delta: int) -> None:
    body = sized_payload(MAX_BODY + delta, {"note": "", "actor": "ann"}, ("note",))
    target = f"{INCIDENTS}/{batch.seeded.incident_ids[1]}/notes"
    before = batch.begin()
    resp = await _request(batch, "POST", target, "write", body, b"application/json")
    batch.finish(before, resp.status, may_change=True, what=str(delta))
    doc = _json(resp)
    if delta > 0:
        assert (resp.status, doc["error"]) == (413, "Request Entity Too Large"), doc
    else:
        assert (resp.status, doc["path"]) == (400, "note"), doc  # over 4000 characters
