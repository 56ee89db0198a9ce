"""Fuzzing ``POST /api/v1/pagerduty/webhook``: unsigned, wrongly signed and correctly signed input.

Properties: never a 5xx or a logged error; no signature → 401, a signature that matches no
secret → 403, and in both cases nothing changes; a correctly signed body gets exactly 413 (over
256 KiB), 400 (not JSON, or not ``{"event": {"event_type": <string>}}``) or 200, and only a 200
may change anything; any signed event of any shape, aimed at real incidents or not, is a 200.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.inbound_pagerduty import EVENT_ACTIONS, MAX_WEBHOOK_BYTES
from router.receiver import clean_text
from tests.fakes.pagerduty import incident_webhook, sign
from tests.fuzz.conftest import (
    PD_SECRETS,
    PD_WEBHOOK,
    FuzzApp,
    any_texts,
    arbitrary_bodies,
    build_request,
    deep_nesting,
    dumps,
    fuzz_settings,
    json_values,
    random_headers,
    raw_http,
    set_path,
    sized_payload,
    texts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

EVENT_TYPES = [*EVENT_ACTIONS, "incident.triggered", "incident.priority_updated", "pagey.ping"]
OUTCOMES = {"applied", "no change", "ignored", "duplicate", "stale"}


@st.composite
def incident_refs(draw: st.DrawFn) -> Any:
    """What an event may name as the incident: a real id, number or key, or anything else."""
    return draw(
        st.sampled_from(
            ["$id0", "$id1", "$num0", "$key0", None, "", "#1", "1", "PGR0VU2", "$id0\udc80"]
        )
        | json_values
    )


def _resolve_ref(app: FuzzApp, ref: Any) -> Any:
    s = app.seeded
    table = {"$id0": s.incident_ids[0], "$id1": s.incident_ids[1], "$num0": str(s.numbers[0])}
    table["$key0"] = s.keys[0]
    return table.get(ref, ref) if isinstance(ref, str) else ref


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """v3 webhook bodies: PagerDuty's own shapes, then any field replaced by anything."""
    event_type = draw(st.sampled_from(EVENT_TYPES) | any_texts)
    doc = incident_webhook(
        event_type,
        draw(st.sampled_from(["PGR0VU2", "Q1", ""]) | any_texts),
        # Lone surrogates (\udc80 escapes in the JSON) in every string tocsin stores.
        agent=draw(st.none() | st.sampled_from(["Tenex Engineer", " ", "", "A\udc80"]) | any_texts),
        event_id=draw(st.sampled_from(["E1", "E2", "E\ud800"]) | st.just(uuid.uuid4().hex)),
    )
    doc["event"]["data"]["incident_key"] = draw(incident_refs())
    if event_type == "incident.annotated" or draw(st.booleans()):
        # An annotation's data is a note that refers to its incident.
        doc["event"]["data"] = {
            "type": "incident_note",
            "content": draw(st.sampled_from(["", "  ", "looking", "x\udfff"]) | json_values),
            "incident": draw(
                st.fixed_dictionaries(
                    {"id": st.sampled_from(["PGR0VU2", "Q1"]) | json_values},
                    optional={"incident_key": incident_refs()},
                )
                | json_values
            ),
        }
    for _ in range(draw(st.integers(0, 3))):
        path = draw(
            st.sampled_from(
                [
                    ("event", "resource_type"),
                    ("event", "agent"),
                    ("event", "id"),
                    ("event", "data"),
                    ("event", "data", "type"),
                    ("event", "data", "id"),
                    ("event", "occurred_at"),
                ]
            )
        )
        try:
            set_path(doc, path, draw(json_values))
        except (KeyError, TypeError, IndexError):
            pass  # an earlier replacement removed the parent
    return doc


def _materialize(app: FuzzApp, doc: Any) -> Any:
    """Replace the ``$id0``-style placeholders by the app's real ids."""
    if isinstance(doc, dict):
        return {k: _materialize(app, v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_materialize(app, v) for v in doc]
    return _resolve_ref(app, doc)


valid_event_bodies = st.builds(lambda t: dumps(incident_webhook(t)), st.sampled_from(EVENT_TYPES))

wrong_signatures = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["v1=", "v1", "v0=", ",", "v1=,v1=", "sha256=abc"]),
    st.binary(min_size=32, max_size=32).map(lambda b: "v1=" + b.hex()),
    st.sampled_from(["wrong-secret", "pd-secret-on", "PD-SECRET-ONE", ""]).map(
        lambda s: "@wrong:" + s
    ),
    st.just("@other-body"),
    st.just("@v0-of-right"),
)


def _wrong_signature(spec: str, body: bytes) -> str:
    if spec.startswith("@wrong:"):
        key = spec.removeprefix("@wrong:").encode()
        return "v1=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    if spec == "@other-body":
        return sign(body + b" ", *PD_SECRETS)
    if spec == "@v0-of-right":
        return sign(body, PD_SECRETS[0]).replace("v1=", "v0=")
    return spec


def _printable(value: str) -> str:
    return "".join(ch for ch in value if 0x20 <= ord(ch) < 0x7F or ch == "\t").strip()


def expected_signed_status(body: bytes) -> int:
    """What a correctly signed POST of ``body`` must get."""
    if len(body) > MAX_WEBHOOK_BYTES:
        return 413
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return 400
    event = doc.get("event") if isinstance(doc, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        return 400
    return 200


bodies = st.one_of(arbitrary_bodies(valid_event_bodies), events().map(dumps), deep_nesting())


@fuzz_settings(150)
@given(body=bodies, headers=random_headers())
async def test_unsigned_is_401_and_changes_nothing(
    batch: FuzzApp, body: bytes, headers: dict[str, str]
) -> None:
    headers = {k: v for k, v in headers.items() if k.lower() != "x-pagerduty-signature"}
    before = batch.begin()
    resp = await batch.client.post(PD_WEBHOOK, data=body, headers=headers)
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=False, what=repr(body[:200]))
    want = 413 if len(body) > MAX_WEBHOOK_BYTES else 401
    assert resp.status == want, answer


@fuzz_settings(200)
@given(body=bodies, spec=wrong_signatures, webhook_id=st.none() | texts)
async def test_wrongly_signed_is_403_and_changes_nothing(
    batch: FuzzApp, body: bytes, spec: str, webhook_id: str | None
) -> None:
    signature = _printable(_wrong_signature(spec, body))
    if not signature:
        return  # an empty header is "unsigned", the property above
    headers = {"X-PagerDuty-Signature": signature, "Content-Type": "application/json"}
    if webhook_id is not None:
        headers["X-Webhook-Id"] = _printable(webhook_id)
    before = batch.begin()
    resp = await batch.client.post(PD_WEBHOOK, data=body, headers=headers)
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=False, what=f"{signature!r} {body[:200]!r}")
    assert (resp.status, answer["error"]) == (403, "signature not verified"), answer


@fuzz_settings(250)
@given(
    body=st.one_of(arbitrary_bodies(valid_event_bodies), deep_nesting()), which=st.integers(0, 2)
)
async def test_signed_bad_bodies_get_the_exact_4xx(batch: FuzzApp, body: bytes, which: int) -> None:
    # Either secret, or both entries as PagerDuty sends them while a secret is being rotated.
    secrets = [PD_SECRETS[:1], PD_SECRETS[1:], PD_SECRETS][which]
    want = expected_signed_status(body)
    before = batch.begin()
    resp = await batch.client.post(
        PD_WEBHOOK, data=body, headers={"X-PagerDuty-Signature": sign(body, *secrets)}
    )
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=want == 200, what=repr(body[:300]))
    assert resp.status == want, (body[:300], answer)
    if want == 200:
        assert answer["status"] in OUTCOMES


@fuzz_settings(250)
@given(
    doc=events(),
    webhook_id=st.none() | st.sampled_from(["W1", "W2", ""]) | texts,
    extra=random_headers(),
)
async def test_any_signed_event_is_200(
    batch: FuzzApp, doc: dict[str, Any], webhook_id: str | None, extra: dict[str, str]
) -> None:
    body = dumps(_materialize(batch, doc))
    headers = {k: _printable(v) for k, v in extra.items()}
    headers["X-PagerDuty-Signature"] = sign(body, PD_SECRETS[0])
    if webhook_id is not None:
        headers["X-Webhook-Id"] = _printable(webhook_id)
    before = batch.begin()
    resp = await batch.client.post(PD_WEBHOOK, data=body, headers=headers)
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=True, what=repr(body[:300]))
    assert resp.status == 200, (body[:300], answer)
    assert answer["status"] in OUTCOMES, answer
    assert answer["event_type"] == clean_text(doc["event"]["event_type"])


@fuzz_settings(100)
@given(
    doc=events(),
    webhook_id=st.binary(min_size=1, max_size=40).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
    ),
    signed=st.booleans(),
)
async def test_webhook_id_bytes_including_invalid_utf8(
    batch: FuzzApp, doc: dict[str, Any], webhook_id: bytes, signed: bool
) -> None:
    body = dumps(_materialize(batch, doc))
    signature = sign(body, *PD_SECRETS) if signed else "v1=" + "0" * 64
    request = build_request(
        "POST",
        PD_WEBHOOK.encode(),
        [(b"X-PagerDuty-Signature", signature.encode()), (b"X-Webhook-Id", webhook_id)],
        body,
    )
    before = batch.begin()
    resp = await raw_http(batch.port, request)
    batch.finish(before, resp.status, may_change=signed, what=repr(webhook_id))
    if not signed:
        assert resp.status in (400, 403), resp
    elif resp.status != 400:  # 400: the HTTP parser refused the header bytes themselves
        assert resp.status == 200, resp
        assert json.loads(resp.body)["status"] in OUTCOMES


@fuzz_settings(30)
@given(delta=st.sampled_from([-2, -1, 0, 1, 2, 4096]), signed=st.booleans())
async def test_bodies_just_under_and_over_256_kib(batch: FuzzApp, delta: int, signed: bool) -> None:
    doc = incident_webhook("pagey.ping")
    body = sized_payload(MAX_WEBHOOK_BYTES + delta, doc, ("event", "data", "title"))
    headers = {"X-PagerDuty-Signature": sign(body, PD_SECRETS[1]) if signed else "v1=00"}
    before = batch.begin()
    resp = await batch.client.post(PD_WEBHOOK, data=body, headers=headers)
    answer = await resp.json()
    batch.finish(before, resp.status, may_change=False, what=str(delta))
    if delta > 0:
        assert (resp.status, answer["error"]) == (413, "body too large")
    elif signed:
        assert (resp.status, answer) == (200, {"status": "ignored", "event_type": "pagey.ping"})
    else:
        assert resp.status == 403
