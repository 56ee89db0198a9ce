"""Posts each notification's card to the configured Teams Workflows webhooks.

Workflows answers 202 Accepted once the flow has the request (2xx → ok); 429 (Power Automate's
throttling, with ``Retry-After``) → rate limited; 5xx, network errors and timeouts → retryable;
other 4xx (a deleted flow, a revoked ``sig``) → permanent. Errors name the webhook, never its URL
(its ``sig`` query parameter is the credential).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping

import aiohttp
from pydantic import SecretStr

from adapters.delivery.notifier import Delivery, DeliveryResult
from adapters.email.links import LinkSigner
from adapters.teams.card import card, message
from adapters.webhook.notifier import Accepted, post_body
from escalation.engine.clock import Clock

__all__ = ["TeamsNotifier"]


class TeamsNotifier:
    """One card per notification to every webhook that has not yet accepted it."""

    def __init__(
        self,
        webhooks: Mapping[str, SecretStr],
        signer: LinkSigner,
        http: Callable[[], aiohttp.ClientSession],
        clock: Clock,
        timeout: float,
    ) -> None:
        self.webhooks = dict(webhooks)
        self._signer = signer
        self._http = http
        self._clock = clock
        self._timeout = timeout
        self._accepted = Accepted()

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """One attempt to each webhook that has not yet accepted this row."""
        if not self.webhooks:
            return DeliveryResult(ok=False, error="no Teams webhooks are configured")
        now = self._clock.now()
        body = json.dumps(message(card(delivery, self._signer, now)), separators=(",", ":"))
        row_id = delivery.row.id
        done = self._accepted.of(row_id)
        todo = [n for n in self.webhooks if n not in done]
        sent = await asyncio.gather(
            *(
                post_body(
                    self._http(),
                    f"teams {n}",
                    self.webhooks[n].get_secret_value(),
                    body.encode(),
                    headers={"Content-Type": "application/json"},
                    limit=self._timeout,
                    now=now,
                    provider_id=n,
                )
                for n in todo
            )
        )
        return self._accepted.outcome(row_id, done, todo, sent)
