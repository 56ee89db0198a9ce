"""The alert-to-page ceiling: parse the webhook, POST a trigger to PagerDuty, then answer."""

from __future__ import annotations

import json
import sys

import aiohttp
from aiohttp import web


def main() -> None:
    port, pd_url, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    session: dict[str, aiohttp.ClientSession] = {}

    async def start(app: web.Application) -> None:
        session["s"] = aiohttp.ClientSession()

    async def stop(app: web.Application) -> None:
        await session["s"].close()

    async def handle(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        event = {
            "routing_key": key,
            "event_action": "trigger",
            "dedup_key": data["groupKey"],
            "payload": {
                "summary": data["alerts"][0]["labels"]["alertname"],
                "source": "forwarder",
                "severity": "critical",
                "custom_details": {"labels": data["commonLabels"]},
            },
        }
        async with session["s"].post(f"{pd_url}/v2/enqueue", json=event) as r:
            await r.read()
        return web.json_response({"status": "accepted"})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/api/v1/alertmanager", handle)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
