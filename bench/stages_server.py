"""The ceiling plus tocsin's first stages: what the receiver costs before any store work.

    python bench/stages_server.py PORT STAGE CONFIG

A bare aiohttp handler, like bench/ceiling_server.py, that runs tocsin's own code up to STAGE
and answers what tocsin answers (the classification per alert), without the app's middlewares:

- ``decode``: the receiver's ``parse_notification`` (pydantic, typed timestamps, fingerprints)
  instead of ``json.loads``;
- ``classify``: that, then every alert classified through CONFIG's rule files and matrix.

Between the ceiling and tocsin's full ingest, these rows show how much of the budget the
stages before the incident decision and the durable write already take.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from aiohttp import web

from config.load import load_config
from router.receiver import parse_notification
from rules.templates import notification_budget


def main() -> None:
    port, stage, config = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    classifier = load_config(config, secrets="deferred").classifier

    async def handle(request: web.Request) -> web.Response:
        n = parse_notification(await request.read())
        if stage == "decode":
            return web.json_response({"status": "accepted", "alerts": len(n.alerts)})
        now = datetime.now(UTC)
        out = []
        with notification_budget():
            for a in n.alerts:
                c = classifier.classify(a, n, now)
                out.append({"fingerprint": a.fingerprint, "severity": c.severity, "rule": c.rule})
        return web.json_response({"status": "accepted", "alerts": out})

    app = web.Application()
    app.router.add_post("/api/v1/alertmanager", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
