"""The configured delivery policy on its own: rate windows, breakers, retry spacing, admission.

Pure unit tests with explicit instants (no clock, no store). Jitter is pinned by patching the
``random.uniform`` tenacity draws from, so spacing is asserted exactly, not just "in range".
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tenacity.wait
from pydantic import ValidationError

from adapters.config import AdaptersConfig, DispatchConfig, RateLimit
from adapters.delivery.limits import CircuitBreaker, SlidingWindow
from adapters.delivery.notifier import DeliveryResult, FailureReason
from adapters.delivery.policy import ConfiguredPolicy
from adapters.delivery.retry import RETRY_TABLE, Verdict, verdict
from escalation.incidents.model import OutboxRecord, OutboxState
from escalation.oncall.targets import CHANNELS
from escalation.store.base import RateSlot

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)

RETRY = DeliveryResult(ok=False, reason=FailureReason.RETRYABLE, error="HTTP 503")


def row(
    person: str = "alice",
    channel: str = "sms",
    *,
    kind: str = "page",
    created: datetime = T0,
    rid: str = "inc1:0:page:0:0:alice:sms",
) -> OutboxRecord:
    return OutboxRecord(
        id=rid,
        incident_id="inc1",
        step_id="inc1:0:page:0:0",
        kind=kind,
        tier=0,
        round=0,
        target="role:oncall",
        person=person,
        channel=channel,
        created_at=created,
        not_before=created,
    )


def policy(**kw: Any) -> ConfiguredPolicy:
    return ConfiguredPolicy(DispatchConfig.model_validate(kw))


@pytest.fixture
def jitter_low(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every jitter draw is its lower bound (0)."""
    monkeypatch.setattr(tenacity.wait.random, "uniform", lambda a, b: a)


@pytest.fixture
def jitter_high(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every jitter draw is its upper bound."""
    monkeypatch.setattr(tenacity.wait.random, "uniform", lambda a, b: b)


# -- SlidingWindow ------------------------------------------------------------------------------


def test_sliding_window_admits_count_per_period_then_names_the_next_slot() -> None:
    w = SlidingWindow(RateLimit(count=3, per=10 * M))
    for t in (T0, T0 + M, T0 + 2 * M):
        assert w.next_slot("alice", t) is None
        w.add("alice", t)
    # Full: the next one fits when the oldest (T0) leaves the window.
    assert w.next_slot("alice", T0 + 3 * M) == T0 + 10 * M
    assert w.next_slot("alice", T0 + 10 * M - S) == T0 + 10 * M
    # Asking does not count: still full, still the same answer.
    assert w.next_slot("alice", T0 + 3 * M) == T0 + 10 * M
    # At exactly T0 + per the oldest has expired.
    assert w.next_slot("alice", T0 + 10 * M) is None
    w.add("alice", T0 + 10 * M)
    # Now T0+1m is the oldest still counted.
    assert w.next_slot("alice", T0 + 10 * M) == T0 + 11 * M
    assert w.next_slot("alice", T0 + 11 * M) is None


def test_sliding_window_keys_are_independent() -> None:
    w = SlidingWindow(RateLimit(count=1, per=M))
    w.add("alice", T0)
    assert w.next_slot("alice", T0) == T0 + M
    assert w.next_slot("bob", T0) is None
    w.add("bob", T0 + 30 * S)
    assert w.next_slot("bob", T0 + 31 * S) == T0 + 90 * S
    assert w.next_slot("alice", T0 + 31 * S) == T0 + M


def test_sliding_window_is_exact_at_the_count() -> None:
    w = SlidingWindow(RateLimit(count=2, per=M))
    w.add("k", T0)
    assert w.next_slot("k", T0) is None  # one of two used
    w.add("k", T0)
    assert w.next_slot("k", T0) == T0 + M


# -- CircuitBreaker -----------------------------------------------------------------------------


def test_breaker_opens_after_n_consecutive_failures() -> None:
    b = CircuitBreaker(failures=3, reset=60 * S)
    b.outcome("phone", False, T0)
    b.outcome("phone", False, T0 + S)
    assert b.available("phone", T0 + S) is True
    b.outcome("phone", False, T0 + 2 * S)
    assert b.available("phone", T0 + 2 * S) is False
    assert b.is_open("phone", T0 + 61 * S) is True
    # Other channels are unaffected.
    assert b.available("sms", T0 + 2 * S) is True


def test_breaker_counts_consecutive_failures_only() -> None:
    b = CircuitBreaker(failures=3, reset=60 * S)
    b.outcome("phone", False, T0)
    b.outcome("phone", False, T0)
    b.outcome("phone", True, T0)  # a success resets the run
    b.outcome("phone", False, T0)
    b.outcome("phone", False, T0)
    assert b.available("phone", T0) is True
    b.outcome("phone", False, T0)
    assert b.available("phone", T0) is False


def test_breaker_half_opens_after_reset_for_one_probe_and_closes_on_success() -> None:
    b = CircuitBreaker(failures=2, reset=60 * S)
    b.outcome("phone", False, T0)
    b.outcome("phone", False, T0)
    assert b.available("phone", T0 + 59 * S) is False
    # Half-open: one try goes through; others wait for its outcome.
    assert b.available("phone", T0 + 60 * S) is True
    assert b.available("phone", T0 + 60 * S) is False
    assert b.available("phone", T0 + 61 * S) is False
    b.outcome("phone", True, T0 + 62 * S)
    assert b.available("phone", T0 + 62 * S) is True
    assert b.available("phone", T0 + 62 * S) is True  # closed: everyone goes
    # Closed means the count starts over: one failure does not reopen it.
    b.outcome("phone", False, T0 + 63 * S)
    assert b.available("phone", T0 + 63 * S) is True


def test_breaker_failed_probe_reopens_for_another_reset_period() -> None:
    b = CircuitBreaker(failures=2, reset=60 * S)
    b.outcome("phone", False, T0)
    b.outcome("phone", False, T0)
    assert b.available("phone", T0 + 60 * S) is True  # the probe
    b.outcome("phone", False, T0 + 65 * S)
    assert b.available("phone", T0 + 65 * S) is False
    assert b.available("phone", T0 + 124 * S) is False
    assert b.available("phone", T0 + 125 * S) is True
    assert b.reopens_at("phone", T0 + 126 * S) == T0 + 185 * S


def test_breaker_reopens_at_names_when_the_next_try_may_go() -> None:
    b = CircuitBreaker(failures=1, reset=30 * S)
    assert b.reopens_at("sms", T0) is None
    b.outcome("sms", False, T0)
    assert b.reopens_at("sms", T0 + S) == T0 + 30 * S


# -- retry spacing ------------------------------------------------------------------------------


def test_retry_delay_grows_exponentially_to_the_cap_lower_bound(jitter_low: None) -> None:
    p = policy(backoff_initial="2s", backoff_max="30s", max_attempts=8, deadline={})
    delays = [p.retry_delay(row(), n, RETRY, T0) for n in range(1, 8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_retry_delay_jitter_is_at_most_initial_and_never_exceeds_the_cap(jitter_high: None) -> None:
    p = policy(backoff_initial="2s", backoff_max="30s", max_attempts=8, deadline={})
    delays = [p.retry_delay(row(), n, RETRY, T0) for n in range(1, 8)]
    assert delays == [4.0, 6.0, 10.0, 18.0, 30.0, 30.0, 30.0]


def test_retry_delay_with_real_jitter_stays_in_bounds() -> None:
    random.seed(7)
    p = policy(backoff_initial="1s", backoff_max="20s", max_attempts=10, deadline={})
    seen: set[float] = set()
    for _ in range(200):
        for n in range(1, 9):
            d = p.retry_delay(row(), n, RETRY, T0)
            assert d is not None
            base = 2.0 ** (n - 1)
            assert min(base, 20.0) <= d <= min(base + 1.0, 20.0), (n, d)
            seen.add(d)
    assert len(seen) > 100  # it really is jittered


def test_retry_after_is_a_minimum(jitter_low: None) -> None:
    p = policy(backoff_initial="2s", backoff_max="30s", deadline={})
    later = DeliveryResult(
        ok=False, reason=FailureReason.RATE_LIMITED, error="HTTP 429", retry_after=45.0
    )
    sooner = DeliveryResult(
        ok=False, reason=FailureReason.RATE_LIMITED, error="HTTP 429", retry_after=0.5
    )
    assert p.retry_delay(row(), 1, later, T0) == 45.0
    assert p.retry_delay(row(), 3, sooner, T0) == 8.0  # never sooner than the backoff either
    # Retry-After may exceed backoff_max: the provider's word wins.
    assert p.retry_delay(row(), 5, later, T0) == 45.0


def test_retry_delay_gives_up_after_max_attempts(jitter_low: None) -> None:
    p = policy(backoff_initial="1s", backoff_max="1m", max_attempts=3, deadline={})
    assert p.retry_delay(row(), 1, RETRY, T0) == 1.0
    assert p.retry_delay(row(), 2, RETRY, T0) == 2.0
    assert p.retry_delay(row(), 3, RETRY, T0) is None
    assert p.retry_delay(row(), 4, RETRY, T0) is None


def test_retry_delay_gives_up_past_the_channel_deadline(jitter_low: None) -> None:
    p = policy(backoff_initial="2s", backoff_max="1m", deadline={"phone": "5m"})
    r = row(channel="phone", created=T0)
    # The deadline counts from the row's creation, not from the attempt.
    assert p.retry_delay(r, 1, RETRY, T0 + 4 * M + 58 * S) == 2.0  # lands exactly on 5m
    assert p.retry_delay(r, 1, RETRY, T0 + 4 * M + 59 * S) is None
    # Retry-After that would land past the deadline: give up now.
    wait = DeliveryResult(
        ok=False, reason=FailureReason.RATE_LIMITED, error="HTTP 429", retry_after=120.0
    )
    assert p.retry_delay(r, 1, wait, T0 + 3 * M + S) is None
    assert p.retry_delay(r, 1, wait, T0 + 3 * M) == 120.0  # lands exactly on 5m
    # Channels without a deadline are bounded by max_attempts only.
    assert p.retry_delay(row(channel="email"), 1, RETRY, T0 + 365 * 24 * 60 * M) == 2.0


THROTTLED = DeliveryResult(ok=False, reason=FailureReason.RATE_LIMITED, error="HTTP 429")


def test_a_429_without_retry_after_backs_off_slowly_to_its_own_cap(jitter_low: None) -> None:
    p = policy(deadline={"pagerduty": "1h"})
    r = row("pagerduty:core", "pagerduty")
    delays = [p.retry_delay(r, n, THROTTLED, T0) for n in range(1, 7)]
    assert delays == [30.0, 60.0, 120.0, 240.0, 240.0, 240.0]


def test_a_429_has_no_attempt_budget_only_the_deadline(jitter_low: None) -> None:
    """The page is still owed: max_attempts (6 by default) does not end it; the deadline does,
    and the last try lands on it instead of giving up because the next wait overshoots."""
    p = policy(max_attempts=3, deadline={"pagerduty": "15m"})
    r = row("pagerduty:core", "pagerduty")
    assert p.retry_delay(r, 3, RETRY, T0 + M) is None  # a 503 still has its budget
    assert p.retry_delay(r, 3, THROTTLED, T0 + M) == 120.0
    assert p.retry_delay(r, 40, THROTTLED, T0 + 10 * M) == 240.0
    assert p.retry_delay(r, 41, THROTTLED, T0 + 14 * M) == 60.0  # lands on 15m
    assert p.retry_delay(r, 42, THROTTLED, T0 + 15 * M) is None
    # A Retry-After past the deadline is obeyed: no try before it, so none at all.
    late = replace(THROTTLED, retry_after=61.0)
    assert p.retry_delay(r, 41, late, T0 + 14 * M) is None


def test_default_deadlines_cover_every_channel() -> None:
    cfg = DispatchConfig()
    assert cfg.deadline == {
        "pagerduty": 15 * M,
        "email": 30 * M,
        "phone": 5 * M,
        "sms": 10 * M,
        "webhook": 10 * M,
        "slack": 10 * M,
        "teams": 10 * M,
        "ntfy": 10 * M,
        "pushover": 10 * M,
        "log": M,
    }
    assert set(cfg.deadline) == set(CHANNELS)
    assert (cfg.max_attempts, cfg.backoff_initial, cfg.backoff_max) == (6, S, 2 * M)


def test_building_a_policy_raises_no_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = policy(backoff_initial="3s", backoff_max="1m", deadline={})
    assert p.retry_delay(row(), 1, RETRY, T0) is not None


# -- admission (rate limits) --------------------------------------------------------------------


def test_admit_enforces_the_per_person_limit_across_channels() -> None:
    p = policy(person_rate={"count": 2, "per": "10m"}, channel_rate={})
    a_sms, a_mail = row("alice", "sms"), row("alice", "email")
    assert p.admit(a_sms, T0) is None
    p.sent(a_sms, T0)
    assert p.admit(a_mail, T0 + M) is None
    p.sent(a_mail, T0 + M)
    # The person has had two messages in ten minutes, whatever the channel.
    assert p.admit(a_sms, T0 + 2 * M) == T0 + 10 * M
    assert p.admit(a_mail, T0 + 2 * M) == T0 + 10 * M
    assert p.admit(row("bob", "sms"), T0 + 2 * M) is None
    assert p.admit(a_sms, T0 + 10 * M) is None


def test_admit_enforces_the_per_channel_limit_across_people() -> None:
    p = policy(
        person_rate={"count": 100, "per": "1m"}, channel_rate={"sms": {"count": 2, "per": "1m"}}
    )
    p.sent(row("alice", "sms"), T0)
    p.sent(row("bob", "sms"), T0 + 10 * S)
    assert p.admit(row("carol", "sms"), T0 + 20 * S) == T0 + M
    assert p.admit(row("carol", "email"), T0 + 20 * S) is None  # no limit on email
    assert p.admit(row("carol", "sms"), T0 + M) is None


def test_admit_waits_for_the_later_of_both_limits() -> None:
    p = policy(
        person_rate={"count": 1, "per": "10m"},
        channel_rate={"sms": {"count": 1, "per": "1m"}},
    )
    p.sent(row("alice", "sms"), T0)
    # Channel frees at T0+1m, alice at T0+10m: the later one decides.
    assert p.admit(row("alice", "sms"), T0 + S) == T0 + 10 * M
    # Bob only waits for the channel.
    assert p.admit(row("bob", "sms"), T0 + S) == T0 + M
    p.sent(row("bob", "sms"), T0 + 5 * M)
    # Now the channel is the later constraint for nobody in particular... and for alice at 10m:
    assert p.admit(row("alice", "sms"), T0 + 5 * M + S) == T0 + 10 * M
    assert p.admit(row("carol", "sms"), T0 + 5 * M + S) == T0 + 6 * M


def test_pagerduty_service_targets_are_not_person_limited() -> None:
    p = policy(
        person_rate={"count": 1, "per": "10m"},
        channel_rate={"pagerduty": {"count": 3, "per": "1m"}},
    )
    svc = row("pagerduty:payments", "pagerduty")
    p.sent(svc, T0)
    assert p.admit(svc, T0) is None  # the person limit (1) would have said no
    p.sent(svc, T0)
    p.sent(svc, T0)
    # ... but the channel limit protects PagerDuty.
    assert p.admit(svc, T0 + S) == T0 + M
    # A person paged through PagerDuty is a person: limited.
    ann = row("ann", "pagerduty")
    assert p.admit(ann, T0 + M) is None
    p.sent(ann, T0 + M)
    assert p.admit(ann, T0 + M + S) == T0 + 11 * M


def test_only_pages_and_reminders_count_against_a_person() -> None:
    p = policy(person_rate={"count": 1, "per": "10m"}, channel_rate={})
    p.sent(row(kind="page"), T0)
    resolve = row(kind="resolve", rid="inc1:resolve:0:alice:sms")
    assert p.admit(resolve, T0 + S) is None  # "it's over" is never held back
    p.sent(resolve, T0 + S)
    assert p.admit(row(kind="reminder"), T0 + 2 * S) == T0 + 10 * M
    p2 = policy(person_rate={"count": 1, "per": "10m"}, channel_rate={})
    p2.sent(resolve, T0)
    assert p2.admit(row(kind="page"), T0) is None


# -- bundling and breaker wiring ----------------------------------------------------------------


def test_bundles_only_configured_channels_with_a_window() -> None:
    p = policy(bundle_window="30s", bundle_channels=["sms", "webhook"])
    assert p.bundle_window == 30 * S
    assert [p.bundles(c) for c in ("sms", "webhook", "email", "pagerduty")] == [
        True,
        True,
        False,
        False,
    ]
    off = policy(bundle_window=0, bundle_channels=["sms"])
    assert off.bundles("sms") is False
    assert DispatchConfig().bundle_channels == ["email", "sms", "phone"]


async def test_policy_breaker_follows_outcomes() -> None:
    p = policy(breaker_failures=2, breaker_reset="1m")
    await p.outcomes([("phone", False)], T0)
    assert await p.breaker("phone", T0) is None
    await p.outcomes([("phone", False)], T0)
    assert await p.breaker("phone", T0 + S) == T0 + M
    assert await p.breaker("email", T0) is None
    assert await p.breaker("phone", T0 + M) is None  # the half-open probe
    assert await p.breaker("phone", T0 + M) == T0 + 2 * M  # everyone else waits for it
    await p.outcomes([("phone", True)], T0 + M)
    assert await p.breaker("phone", T0 + M) is None


async def test_policy_bundling_windows_are_taken_and_given_back() -> None:
    p = policy(bundle_window="30s")
    assert await p.take_window("alice", "sms", T0) is None
    assert await p.take_window("alice", "sms", T0 + S) == T0 + 30 * S
    assert await p.take_window("alice", "email", T0 + S) is None
    await p.release_window("alice", "sms", T0)
    assert await p.take_window("alice", "sms", T0 + S) is None
    await p.release_window("alice", "sms", T0)  # not the window taken at T0+1s
    assert await p.take_window("alice", "sms", T0 + 2 * S) == T0 + 31 * S


def test_channel_instances_use_their_kinds_settings(jitter_low: None) -> None:
    """``webhook:ops`` gets the ``webhook`` deadline, limit and bundling unless it has its own."""
    p = policy(
        backoff_initial="2s",
        deadline={"webhook": "10s", "webhook:chat": "1h"},
        channel_rate={"webhook": {"count": 1, "per": "1m"}},
        bundle_channels=["webhook"],
    )
    ops = row(channel="webhook:ops", created=T0)
    assert p.retry_delay(ops, 1, RETRY, T0 + 8 * S) == 2.0
    assert p.retry_delay(ops, 1, RETRY, T0 + 9 * S) is None
    assert p.retry_delay(row(channel="webhook:chat"), 1, RETRY, T0 + 50 * M) == 2.0
    assert p.bundles("webhook:ops") is True
    # Each endpoint has its own budget under the kind's limit.
    p.sent(ops, T0)
    assert p.admit(row("bob", "webhook:ops"), T0 + S) == T0 + M
    assert p.admit(row("bob", "webhook:chat"), T0 + S) is None


def test_dispatch_config_rejects_unknown_channels() -> None:
    for bad in (
        {"bundle_channels": ["emial"]},
        {"deadline": {"pager": "1m"}},
        {"channel_rate": {"slak": {"count": 1, "per": "1m"}}},
    ):
        with pytest.raises(ValidationError, match="unknown channel"):
            DispatchConfig.model_validate(bad)
    ok = DispatchConfig.model_validate(
        {"bundle_channels": ["webhook:ops"], "deadline": {"sms": "1m"}}
    )
    assert ok.bundle_channels == ["webhook:ops"]


def test_dispatch_config_rejects_typos_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="bundle_windw"):
        DispatchConfig.model_validate({"bundle_windw": "30s"})
    with pytest.raises(ValidationError):
        DispatchConfig.model_validate({"max_attempts": 0})
    with pytest.raises(ValidationError):
        DispatchConfig.model_validate({"person_rate": {"count": 0, "per": "1m"}})
    cfg = AdaptersConfig.model_validate(
        {"dispatch": {"person_rate": {"count": 3, "per": "10m"}, "bundle_window": "45s"}}
    )
    assert cfg.dispatch.person_rate == RateLimit(count=3, per=10 * M)
    assert cfg.dispatch.bundle_window == 45 * S


# -- the retry table ----------------------------------------------------------------------------


def test_the_retry_table_has_a_rule_for_every_failure_reason() -> None:
    assert set(RETRY_TABLE) == set(FailureReason)


@pytest.mark.parametrize(
    ("reason", "asks", "expected"),
    [
        (FailureReason.RETRYABLE, True, Verdict(OutboxState.PENDING, "retry", 5.0)),
        (FailureReason.RATE_LIMITED, True, Verdict(OutboxState.PENDING, "retry", 5.0)),
        (FailureReason.PERMANENT, False, Verdict(OutboxState.FAILED, "failed")),
        (FailureReason.UNKNOWN_OUTCOME, False, Verdict(OutboxState.UNKNOWN, "unknown")),
    ],
)
def test_each_failure_reason_is_retried_or_settled_per_the_table(
    reason: FailureReason, asks: bool, expected: Verdict
) -> None:
    asked: list[bool] = []

    def delay() -> float | None:
        asked.append(True)
        return 5.0

    assert verdict(DeliveryResult(ok=False, reason=reason, error="x"), delay) == expected
    # The policy's spacing is consulted only for reasons a later attempt may cure.
    assert bool(asked) is asks


@pytest.mark.parametrize("reason", [FailureReason.RETRYABLE, FailureReason.RATE_LIMITED])
def test_a_spent_retry_budget_fails_the_row(reason: FailureReason) -> None:
    result = DeliveryResult(ok=False, reason=reason, error="x")
    assert verdict(result, lambda: None) == Verdict(OutboxState.FAILED, "failed")


def test_success_is_sent_without_asking_for_a_delay() -> None:
    def delay() -> float | None:
        raise AssertionError("no delay for a success")

    assert verdict(DeliveryResult(ok=True), delay) == Verdict(OutboxState.SENT, "sent")


def test_a_failure_without_a_reason_is_permanent_and_a_success_has_none() -> None:
    failed = DeliveryResult(ok=False, error="x")
    assert (failed.reason, failed.retryable, failed.unknown) == (
        FailureReason.PERMANENT,
        False,
        False,
    )
    limited = DeliveryResult(ok=False, reason=FailureReason.RATE_LIMITED)
    assert (limited.retryable, limited.unknown) == (True, False)
    assert DeliveryResult(ok=False, reason=FailureReason.UNKNOWN_OUTCOME).unknown is True
    with pytest.raises(ValueError, match="no failure reason"):
        DeliveryResult(ok=True, reason=FailureReason.RETRYABLE)


def test_rate_limited_waits_at_least_as_long_as_the_provider_asked(jitter_low: None) -> None:
    p = policy(backoff_initial="1s", backoff_max="2m", max_attempts=5, deadline={})
    limited = DeliveryResult(ok=False, reason=FailureReason.RATE_LIMITED, retry_after=40.0)
    assert verdict(limited, lambda: p.retry_delay(row(), 1, limited, T0)) == Verdict(
        OutboxState.PENDING, "retry", 40.0
    )


# -- Slack conversations ------------------------------------------------------------------------


def test_each_slack_conversation_takes_one_delivery_a_second() -> None:
    p = policy(channel_rate={})
    incidents = row("slack:#incidents", "slack", kind="update")
    p.sent(incidents, T0)
    assert p.admit(incidents, T0 + S / 2) == T0 + S
    assert p.admit(replace(incidents, incident_id="inc2"), T0) == T0 + S  # one channel for all
    assert p.admit(row("slack:#ops", "slack"), T0) is None  # another channel
    assert p.admit(row("alice", "slack"), T0) is None  # alice's direct messages
    assert p.admit(row("slack:#incidents", "webhook"), T0) is None  # not Slack
    room = row("slack:@incident", "slack")
    p.sent(room, T0)
    assert p.admit(room, T0) == T0 + S
    assert p.admit(replace(room, incident_id="inc2"), T0) is None  # each incident's own channel
    assert p.admit(incidents, T0 + S) is None


async def test_with_shared_limits_each_slack_conversation_has_its_own_slot() -> None:
    class Recording:
        def __init__(self) -> None:
            self.sends: list[list[RateSlot]] = []

        async def take(
            self, sends: Sequence[Sequence[RateSlot]], now: datetime
        ) -> list[datetime | None]:
            self.sends += [list(s) for s in sends]
            return [None] * len(sends)

    shared = Recording()
    p = ConfiguredPolicy(DispatchConfig.model_validate({"channel_rate": {}}), shared)
    room = replace(row("slack:@incident", "slack"), incident_id="inc7")
    await p.reserve([row("slack:#incidents", "slack", kind="update"), room], T0)
    assert shared.sends == [
        [RateSlot("conversation:slack:slack:#incidents", 1, S)],
        [RateSlot("conversation:slack:slack:@incident:inc7", 1, S)],
    ]
