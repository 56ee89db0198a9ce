"""``adapters.phone.sms_responders``: a role's people may text ``ACK <n>`` for any incident, and
the role resolves as a step's target does — a ``schedule:`` entry is whoever is on call in it
now (overrides made at run time included), a ``team:`` entry the team's members.

The whole app with the fake Twilio (``make_phone_app``): the P0 page goes to ollie only, so
everyone else is allowed by ``sms_responders`` or not at all.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from escalation.incidents.model import Status
from tests.adapters.conftest import LEE_PHONE, MakeAdapterApp
from tests.adapters.test_phone_flow import DECL, events, fire
from tests.driver.app import START, App
from tests.driver.config import PUBLIC

SMS = f"{PUBLIC}/api/v1/phone/twilio/sms"
MAX_PHONE = "+14155550102"
VIC_PHONE = "+14155550103"


@pytest.fixture
async def app(make_phone_app: MakeAdapterApp) -> App:
    """The phone app whose responders are whoever is on call in ``nights`` (max today, lee
    tomorrow: daily shifts from midnight before START) and the ``db`` team (vic)."""
    app = await make_phone_app()
    cfg = yaml.safe_load(app.path.read_text())
    cfg["schedules"] = {
        "nights": {"members": ["max", "lee"], "start": "2026-11-22T00:00:00", "shift": "1d"}
    }
    cfg["teams"] = {"db": {"members": ["vic"]}}
    cfg["roles"]["responders"] = ["schedule:nights", "team:db"]
    cfg["adapters"]["phone"]["sms_responders"] = ["responders"]
    app.path.write_text(yaml.safe_dump(cfg))
    await app.rt.reload()
    return app


async def paged(app: App) -> tuple[str, int]:
    """Fire the P0 sample and page its first tier (ollie); (incident id, its number)."""
    inc = await fire(app)
    await app.tick()
    assert {r.person for r in await app.outbox(inc.id)} == {"ollie"}
    return inc.id, (await app.record(inc.id)).number


def said(text: str) -> str:
    return f"{DECL}<Response><Message>tocsin: {text}</Message></Response>"


@pytest.mark.parametrize(
    ("person", "phone"), [("max", MAX_PHONE), ("vic", VIC_PHONE)], ids=["schedule", "team"]
)
async def test_a_person_reached_through_a_responder_role_may_ack_by_number(
    app: App, person: str, phone: str
) -> None:
    inc_id, number = await paged(app)

    reply = await app.twilio.text_in(SMS, phone, f"ACK {number}")

    assert reply.text == said(f"#{number} acknowledged.")
    assert events(await app.timeline(inc_id), "ack") == [
        ("ack", person, "sms", f"acknowledged by {person}: replied by text")
    ]


async def test_a_schedule_member_off_shift_is_refused_until_on_call(app: App) -> None:
    inc_id, number = await paged(app)

    # lee is in ``nights`` but max has today's shift; lee was not paged for the incident.
    refused = await app.twilio.text_in(SMS, LEE_PHONE, f"ACK {number}")

    assert refused.text == said(f"#{number} was not paged to you.")
    assert (await app.record(inc_id)).status == Status.TRIGGERED

    # An override made at run time puts lee on call now: the engine's directory says so.
    await app.rt.schedules.create_override(
        "nights", "lee", None, START + timedelta(hours=2), replaces="max", actor="test"
    )
    taken = await app.twilio.text_in(SMS, LEE_PHONE, f"ACK {number}")

    assert taken.text == said(f"#{number} acknowledged.")
    assert (await app.record(inc_id)).status == Status.ACKNOWLEDGED


async def test_at_the_handoff_the_next_shift_may_ack_and_the_last_may_not(app: App) -> None:
    inc_id, number = await paged(app)
    # Tomorrow lee has the shift (the clock moves without the engine escalating the incident).
    app.clock.set(START + timedelta(days=1))

    refused = await app.twilio.text_in(SMS, MAX_PHONE, f"ACK {number}")
    taken = await app.twilio.text_in(SMS, LEE_PHONE, f"ACK {number}")

    assert refused.text == said(f"#{number} was not paged to you.")
    assert taken.text == said(f"#{number} acknowledged.")
    assert events(await app.timeline(inc_id), "ack") == [
        ("ack", "lee", "sms", "acknowledged by lee: replied by text")
    ]
