"""The ceiling: a bare aiohttp handler that only reads and parses the same JSON body."""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    body = await request.read()
    data = json.loads(body)
    return web.json_response({"status": "accepted", "alerts": len(data["alerts"])})


def main() -> None:
    app = web.Application()
    app.router.add_post("/api/v1/alertmanager", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
