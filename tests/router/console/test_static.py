"""The vendored scripts are the pinned release files, served with a long cache; pages are locked
down by a Content-Security-Policy without inline script or style."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

from tests.driver.app import App
from tests.driver.payloads import alert, notification
from tests.router.console.conftest import ALICE_TOKEN, sign_in

STATIC = resources.files("router.console") / "static"


def test_every_vendored_file_matches_its_recorded_checksum_and_version() -> None:
    manifest = json.loads((STATIC / "VENDORED.json").read_text())
    assert {"htmx.org", "htmx-ext-sse"} <= {v["package"] for v in manifest.values()}
    for name, entry in manifest.items():
        data = (STATIC / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert entry["version"] in name  # the URL changes with the version: cache forever


def test_templates_and_static_files_ship_as_package_data() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["router"]
    assert "console/templates/*.html" in data and "console/static/*" in data


async def test_static_files_are_served_with_a_long_cache(console: App) -> None:
    r = await console.client.get("/static/htmx-2.0.11.min.js")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in r.headers["Cache-Control"]
    assert (await r.read()) == (STATIC / "htmx-2.0.11.min.js").read_bytes()
    assert (await console.client.get("/static/VENDORED.json")).status == 404
    assert (await console.client.get("/static/..%2Fweb.py")).status == 404


async def test_pages_forbid_inline_script_and_style(console: App) -> None:
    await console.post(notification([alert("DiskFull")]))
    await console.tick()
    inc = await console.incident("1")
    await sign_in(console.client, "alice", ALICE_TOKEN)
    pages = ("/", "/board/rows", f"/incidents/{inc['id']}", "/oncall", "/status")
    for path in ("/signin", *pages, "/rules?labels=alertname%3DDiskFull", "/incidents/nope"):
        r = await console.client.get(path, allow_redirects=False)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        html = await r.text()
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, "an inline script"
        assert "<style" not in html and " style=" not in html
