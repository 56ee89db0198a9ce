from __future__ import annotations
from datetime import timedelta
from tests.escalation.data2.driver import *  # noqa

async def test_explore(make_app):
    app = await make_app()
    r = await app.post(notification([alert()]))
    print(r)
    inc_id = r["incidents"][0]["incident"]
    await app.advance(timedelta(minutes=40))
    inc = await app.incident(inc_id)
    import json
    print(json.dumps({k: inc[k] for k in ("pending_steps", "notifications", "policy_snapshot")}, indent=1)[:3000])
    for e in inc["timeline"]:
        print(e["at"], e["kind"], e["actor"], e["source"], e["message"])
