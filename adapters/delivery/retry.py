"""The one retry table: what happens after an attempt, keyed by why it failed.

Channels never decide retries; they map their errors into a ``FailureReason`` and this table
says whether a later attempt may go (its spacing is the policy's: backoff, Retry-After, the
channel's deadline and attempt budget) and in which state the row ends when none will.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from adapters.delivery.notifier import DeliveryResult, FailureReason
from escalation.incidents.model import OutboxState

__all__ = ["RETRY_TABLE", "RetryRule", "Verdict", "verdict"]


@dataclass(frozen=True)
class RetryRule:
    """What one failure reason allows."""

    retry: bool  # ask the policy for a next attempt (it may still say the budget is spent)
    gives_up_as: OutboxState  # the row's state when no further attempt is made


RETRY_TABLE: Mapping[FailureReason, RetryRule] = MappingProxyType(
    {
        FailureReason.RETRYABLE: RetryRule(retry=True, gives_up_as=OutboxState.FAILED),
        # The provider said when; the policy never retries sooner than its Retry-After.
        FailureReason.RATE_LIMITED: RetryRule(retry=True, gives_up_as=OutboxState.FAILED),
        FailureReason.PERMANENT: RetryRule(retry=False, gives_up_as=OutboxState.FAILED),
        # It may have gone out (a call may be ringing): not repeated, and no fallback either;
        # the next tier of the policy is the redundancy.
        FailureReason.UNKNOWN_OUTCOME: RetryRule(retry=False, gives_up_as=OutboxState.UNKNOWN),
        # Retrying cannot create the missing adapter; delivery falls back instead.
        FailureReason.NO_ADAPTER: RetryRule(retry=False, gives_up_as=OutboxState.FAILED),
        # Nor can it create the person's address.
        FailureReason.NO_ADDRESS: RetryRule(retry=False, gives_up_as=OutboxState.FAILED),
    }
)

_OUTCOME = {OutboxState.FAILED: "failed", OutboxState.UNKNOWN: "unknown"}


@dataclass(frozen=True)
class Verdict:
    """The row's next state after one attempt, its metric outcome and when to try again."""

    state: OutboxState
    outcome: str  # sent, retry, failed, unknown
    delay: float | None = None  # seconds until the next attempt (state PENDING only)


def verdict(result: DeliveryResult, delay: Callable[[], float | None]) -> Verdict:
    """Look ``result`` up in the table; ``delay`` asks the policy for the next attempt's spacing."""
    if result.ok:
        return Verdict(OutboxState.SENT, "sent")
    rule = RETRY_TABLE[result.reason or FailureReason.PERMANENT]
    wait = delay() if rule.retry else None
    if wait is not None:
        return Verdict(OutboxState.PENDING, "retry", wait)
    return Verdict(rule.gives_up_as, _OUTCOME[rule.gives_up_as])
