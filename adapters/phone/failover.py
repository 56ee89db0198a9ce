"""Failover across telephony providers, per message: ``adapters.phone.providers: [twilio, vonage]``.

Each call or text goes to the first provider whose circuit breaker is closed; when it fails
(retryable, rate limited or permanent) the next one is tried at once, within the same delivery
attempt, and every provider's part is recorded with the attempt (``DeliveryResult.attempts``:
the timeline shows "twilio retryable (twilio call 500), vonage delivered").

The unknown-outcome rule holds across providers: a call whose request went out and whose answer
was lost may be ringing, so it is NOT placed again on the next provider; the attempt ends
``unknown outcome`` like a single provider's would. (Texts never end unknown: a duplicate text
is harmless, so a lost answer is retryable and the next provider sends it.)

Each provider has its own breaker (in this process, like the channel breakers' in-memory form):
``breaker_failures`` failures in a row skip it for ``breaker_reset``, then one message probes it.
Only failures that say the provider is unwell (retryable, rate limited) count; a permanent error
is usually about the message (a bad number). Providers that cannot place calls (the SMS
gateway) are left out of calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from adapters.delivery.limits import CircuitBreaker
from adapters.delivery.notifier import DeliveryResult, FailureReason, ProviderAttempt
from adapters.phone.provider import PhoneProvider, VoicePage
from escalation.engine.clock import Clock

__all__ = ["FailoverProvider"]

Send = Callable[[PhoneProvider], Awaitable[DeliveryResult]]


def _outcome(r: DeliveryResult) -> str:
    return "delivered" if r.ok else str(r.reason)


class FailoverProvider:
    """A ``PhoneProvider`` over several, tried in order per message."""

    voice = True

    def __init__(
        self,
        providers: Sequence[tuple[str, PhoneProvider]],
        clock: Clock,
        *,
        failures: int = 5,
        reset: timedelta = timedelta(seconds=60),
    ) -> None:
        self.providers = list(providers)
        self._clock = clock
        self.breaker = CircuitBreaker(failures, reset)

    async def place_call(self, to: str, page: VoicePage) -> DeliveryResult:
        """Ring ``to`` through the first voice provider that takes the call."""
        voice = [(n, p) for n, p in self.providers if getattr(p, "voice", True)]
        if not voice:
            return DeliveryResult(ok=False, error="no configured phone provider places calls")
        return await self._each(voice, lambda p: p.place_call(to, page), "call")

    async def send_sms(self, to: str, body: str) -> DeliveryResult:
        """Text ``to`` through the first provider that takes the text."""
        return await self._each(self.providers, lambda p: p.send_sms(to, body), "sms")

    async def _each(
        self, providers: Sequence[tuple[str, PhoneProvider]], send: Send, what: str
    ) -> DeliveryResult:
        tries: list[ProviderAttempt] = []
        last: DeliveryResult | None = None
        retry = False
        for name, provider in providers:
            if not self.breaker.available(name, self._clock.now()):
                tries.append(ProviderAttempt(name, "breaker open"))
                continue
            result = await send(provider)
            unwell = result.retryable or result.unknown
            self.breaker.outcome(name, not unwell, self._clock.now())
            tries.append(ProviderAttempt(name, _outcome(result), result.error, result.provider_id))
            last = result
            retry |= result.retryable
            if result.ok or result.unknown:
                break  # delivered, or it may be ringing: never dialled again elsewhere
        if last is None:
            return DeliveryResult(
                ok=False,
                reason=FailureReason.RETRYABLE,
                error=f"no {what} provider available (circuit breakers open)",
                attempts=tuple(tries),
            )
        reason = last.reason
        if retry and not last.ok and not last.unknown and not last.retryable:
            # One provider was only unwell: a later attempt may get through it.
            reason = FailureReason.RETRYABLE
        return DeliveryResult(
            ok=last.ok,
            reason=reason,
            error=last.error,
            provider_id=last.provider_id,
            retry_after=last.retry_after,
            notes=last.notes,
            attempts=tuple(tries),
        )
