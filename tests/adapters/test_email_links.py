"""Signed email links: exact token format, round trip, and every way a link must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from adapters.email.links import LINK_ACTIONS, BadLink, LinkClaims, LinkSigner, link_path

SECRET = "0123456789abcdef-link-secret"
NOW = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
TTL = timedelta(hours=24)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner(SECRET, TTL, "https://tocsin.example.com/")


def test_token_is_payload_dot_hmac_exactly(signer: LinkSigner) -> None:
    token = signer.token("inc-1", "ack", "alice", NOW, epoch=3)
    payload_b64, mac_b64 = token.split(".")
    expires = int((NOW + TTL).timestamp())
    payload = f'{{"a":"ack","e":{expires},"i":"inc-1","p":"alice","v":3}}'.encode()
    assert unb64(payload_b64) == payload
    want = hmac.new(SECRET.encode(), b"tocsin-email-link-v1\x00" + payload, hashlib.sha256)
    assert unb64(mac_b64) == want.digest()
    assert "=" not in token


def test_url_points_at_the_action_endpoint_under_public_url(signer: LinkSigner) -> None:
    url = signer.url("inc-1", "resolve", "alice", NOW)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "tocsin.example.com",
        "/api/v1/email/resolve",
    )
    assert parse_qs(parts.query) == {"token": [signer.token("inc-1", "resolve", "alice", NOW)]}
    assert link_path("ack") == "/api/v1/email/ack"
    assert LINK_ACTIONS == ("ack", "resolve")


def test_round_trip_gives_the_signed_claims(signer: LinkSigner) -> None:
    token = signer.token("inc-1", "ack", "alice", NOW)
    claims = signer.verify(token, "ack", NOW + timedelta(hours=23, minutes=59, seconds=59))
    assert claims == LinkClaims("inc-1", "ack", "alice", NOW + TTL)


def test_person_and_incident_with_awkward_characters_round_trip(signer: LinkSigner) -> None:
    token = signer.token('x:"y">z', "resolve", "ann é <&>", NOW)
    claims = signer.verify(token, "resolve", NOW)
    assert (claims.incident_id, claims.person) == ('x:"y">z', "ann é <&>")


def test_every_single_character_flip_is_refused(signer: LinkSigner) -> None:
    token = signer.token("inc-1", "ack", "alice", NOW)
    for i, ch in enumerate(token):
        for repl in {"A", "B", "-", "_", "."} - {ch}:
            tampered = token[:i] + repl + token[i + 1 :]
            with pytest.raises(BadLink) as e:
                signer.verify(tampered, "ack", NOW)
            assert e.value.reason in ("malformed", "bad signature"), (i, repl)


def test_wrong_action_is_refused(signer: LinkSigner) -> None:
    token = signer.token("inc-1", "ack", "alice", NOW)
    with pytest.raises(BadLink) as e:
        signer.verify(token, "resolve", NOW)
    assert e.value.reason == "wrong action"


@pytest.mark.parametrize(
    ("field", "value"),
    [("i", "inc-2"), ("p", "mallory"), ("e", 4102444800), ("a", "resolve"), ("v", 1)],
)
def test_a_payload_edited_under_the_old_mac_is_refused(
    signer: LinkSigner, field: str, value: object
) -> None:
    payload_b64, mac_b64 = signer.token("inc-1", "ack", "alice", NOW).split(".")
    data = json.loads(unb64(payload_b64))
    data[field] = value
    forged = b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode()) + "." + mac_b64
    with pytest.raises(BadLink) as e:
        signer.verify(forged, str(data["a"]), NOW)
    assert e.value.reason == "bad signature"


def test_expiry_is_exclusive_at_now_plus_ttl(signer: LinkSigner) -> None:
    token = signer.token("inc-1", "ack", "alice", NOW)
    assert signer.verify(token, "ack", NOW + TTL - timedelta(seconds=1)).person == "alice"
    for later in (NOW + TTL, NOW + TTL + timedelta(days=3)):
        with pytest.raises(BadLink) as e:
            signer.verify(token, "ack", later)
        assert e.value.reason == "expired"
        assert e.value.expired is True


def test_another_secret_does_not_verify(signer: LinkSigner) -> None:
    other = LinkSigner("another-secret-of-16+", TTL, "https://tocsin.example.com")
    with pytest.raises(BadLink) as e:
        other.verify(signer.token("inc-1", "ack", "alice", NOW), "ack", NOW)
    assert e.value.reason == "bad signature"


def test_non_canonical_base64_is_refused(signer: LinkSigner) -> None:
    payload_b64, mac_b64 = signer.token("inc-1", "ack", "alice", NOW).split(".")
    # 32 bytes → 43 characters: the last one carries 2 unused bits. Setting one keeps the
    # decoded bytes identical, so only the canonical-spelling check catches it.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(mac_b64[-1])
    twin = mac_b64[:-1] + alphabet[last ^ 1]
    assert unb64(twin) == unb64(mac_b64)
    with pytest.raises(BadLink) as e:
        signer.verify(f"{payload_b64}.{twin}", "ack", NOW)
    assert e.value.reason == "malformed"


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b.c", "!!!.###", "abc.", ".abc", "x" * 5000 + ".y", "YQ.YQ"]
)
def test_garbage_is_malformed_or_unsigned(signer: LinkSigner, token: str) -> None:
    with pytest.raises(BadLink) as e:
        signer.verify(token, "ack", NOW)
    assert e.value.reason in ("malformed", "bad signature")
    assert e.value.reason == ("bad signature" if token == "YQ.YQ" else "malformed")


def test_a_genuine_mac_over_a_non_object_payload_is_malformed(signer: LinkSigner) -> None:
    # Only reachable with the key; still never an exception other than BadLink.
    for payload in (b"[1,2]", b'"x"', b'{"i":1,"a":"ack","e":1,"p":"x"}', b"not json"):
        mac = hmac.new(SECRET.encode(), b"tocsin-email-link-v1\x00" + payload, hashlib.sha256)
        with pytest.raises(BadLink) as e:
            signer.verify(f"{b64(payload)}.{b64(mac.digest())}", "ack", NOW)
        assert e.value.reason == "malformed"


def test_weak_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        LinkSigner("short", TTL, "https://x")
    with pytest.raises(ValueError, match="link_ttl must be positive"):
        LinkSigner(SECRET, timedelta(0), "https://x")
    with pytest.raises(ValueError, match="unknown link action 'mitigate'"):
        LinkSigner(SECRET, TTL, "https://x").token("i", "mitigate", "p", NOW)


def test_the_signed_epoch_comes_back_in_the_claims(signer: LinkSigner) -> None:
    assert signer.verify(signer.token("inc-1", "ack", "alice", NOW, epoch=2), "ack", NOW).epoch == 2
    assert signer.verify(signer.token("inc-1", "ack", "alice", NOW), "ack", NOW).epoch == 0
