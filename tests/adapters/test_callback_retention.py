"""Phone providers' callback ids (Twilio, Vonage, SMS gateways) are kept for
``CALLBACK_ID_RETENTION`` after they were stored, then the engine's housekeeping forgets them:
their callbacks carry no signed time, so the id is what refuses a retry, and it must outlast
the provider's retry horizon without the table growing for ever.

The whole app with the fake Twilio on the virtual clock, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adapters.phone.provider import CALLBACK_ID_RETENTION, CALLBACK_SOURCES
from tests.adapters.conftest import LEE_PHONE, MakeAdapterApp
from tests.adapters.test_phone_callbacks import SMS, post, sms_params
from tests.adapters.test_phone_flow import DECL, events, fire
from tests.driver.app import START, App

EMPTY = f"{DECL}<Response />"


@pytest.fixture
async def app(make_phone_app: MakeAdapterApp, store_section: dict[str, Any] | None) -> App:
    app = await make_phone_app(store=store_section)
    # lee may text ACK <n> for any incident (roles: lead: [lee]).
    app.rt.loaded.config.adapters.phone.sms_responders = ["lead"]  # type: ignore[union-attr]
    return app


async def seen(app: App, source: str, delivery_id: str) -> bool:
    """Whether the store still remembers the id (remembering it again when it did not)."""
    async with app.rt.store.transaction() as tx:
        return await tx.seen_delivery(source, delivery_id, app.now)


def test_the_retention_outlasts_every_providers_retry_horizon() -> None:
    # Vonage retries an inbound message for 24 h, the longest documented horizon.
    assert CALLBACK_ID_RETENTION >= timedelta(hours=24)


async def test_ids_older_than_the_retention_are_pruned_and_younger_kept(app: App) -> None:
    for source in CALLBACK_SOURCES:
        assert await seen(app, source, "old") is False
    app.clock.set(START + timedelta(hours=1))
    for source in CALLBACK_SOURCES:
        assert await seen(app, source, "young") is False

    await app.at(CALLBACK_ID_RETENTION + timedelta(minutes=30))

    assert {s: await seen(app, s, "old") for s in CALLBACK_SOURCES} == dict.fromkeys(
        CALLBACK_SOURCES, False
    )
    assert {s: await seen(app, s, "young") for s in CALLBACK_SOURCES} == dict.fromkeys(
        CALLBACK_SOURCES, True
    )


async def test_a_retried_text_inside_the_retention_is_refused_and_its_id_goes_after(
    app: App,
) -> None:
    inc = await fire(app)
    await app.tick()
    number = (await app.record(inc.id)).number
    text = sms_params(f"ACK {number}", sender=LEE_PHONE, sid="SM" + "7" * 32)
    assert (await post(app, SMS, text))[1].endswith(f"#{number} acknowledged.</Message></Response>")

    # Just inside the retention (the engine's housekeeping ran), Twilio's retry acts not again:
    # no answer at all, where a second acknowledgement would say "not waiting".
    await app.at(CALLBACK_ID_RETENTION - timedelta(minutes=1))
    assert await post(app, SMS, text) == (200, EMPTY)
    assert len(events(await app.timeline(inc.id), "ack")) == 1

    await app.at(CALLBACK_ID_RETENTION + timedelta(minutes=1))
    assert await seen(app, "twilio-sms", "SM" + "7" * 32) is False
