"""A real browser for the console's tests: Debian's chromium driven by Playwright.

No browser is ever downloaded: Playwright launches the chromium at ``TOCSIN_CHROMIUM`` (default
``/usr/bin/chromium``, Debian's package). axe-core comes from the npm registry
(``npm install --prefix .ci/node axe-core@4``, or ``TOCSIN_AXE``). A test whose need is
missing is skipped, naming it, except where the browser tests are required: with
``TOCSIN_REQUIRE_BROWSER=1`` (``.ci/run`` exports it) or ``CI=true`` it fails instead, so CI
cannot pass by skipping them.

The README's screenshots (``docs/<name>.png``) carry the text of the page they show, in a PNG
``iTXt`` chunk; the test that takes one asserts that text is still the page's, so a console
change that the screenshots no longer show fails until they are re-taken
(``TOCSIN_SCREENSHOTS=docs``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("TOCSIN_CHROMIUM", "/usr/bin/chromium")
AXE = Path(os.environ.get("TOCSIN_AXE", ROOT / ".ci/node/node_modules/axe-core/axe.min.js"))
SCREENSHOTS = os.environ.get("TOCSIN_SCREENSHOTS", "")

__all__ = [
    "AXE",
    "CHROMIUM",
    "ROOT",
    "SCREENSHOTS",
    "axe_violations",
    "need",
    "png_text",
    "required",
    "screenshot",
    "with_png_text",
]

# The iTXt keyword under which a screenshot keeps the text of the page it shows.
PAGE_TEXT = b"tocsin-page-text"


def required() -> bool:
    """Whether a missing need fails the browser tests (read when asked, not at import)."""
    env = os.environ
    return env.get("CI", "").lower() == "true" or env.get("TOCSIN_REQUIRE_BROWSER", "0") != "0"


def need(ok: bool, what: str) -> None:
    """Skip, or fail where the browser tests are required, when ``what`` is missing."""
    if ok:
        return
    if required():
        pytest.fail(f"browser tests required (TOCSIN_REQUIRE_BROWSER, CI): must provide {what}")
    pytest.skip(f"{what} is missing")


def chromium_present() -> bool:
    return Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None


def _axe_source() -> str:
    need(AXE.is_file(), f"axe-core at {AXE} (npm install --prefix .ci/node axe-core@4)")
    return AXE.read_text(encoding="utf-8")


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now.

    The script is evaluated through the browser's debugging protocol, which the page's
    Content-Security-Policy (rightly) would refuse as an inline script.
    """
    source = _axe_source()
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(source)
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    serious = [v for v in result if v.get("impact") in ("serious", "critical")]
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in serious
    ]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_png_text(png: bytes, text: str) -> bytes:
    """``png`` with ``text`` (UTF-8, uncompressed iTXt under ``PAGE_TEXT``) before its IEND."""
    assert png.endswith(_chunk(b"IEND", b"")), "not a whole PNG"
    itxt = _chunk(b"iTXt", PAGE_TEXT + b"\0\0\0\0\0" + text.encode("utf-8"))
    return png[:-12] + itxt + png[-12:]


def png_text(png: bytes) -> str | None:
    """The page text ``with_png_text`` stored in ``png``, or None if it has none."""
    at = 8  # after the signature
    while at + 8 <= len(png):
        (size,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + size]
        if kind == b"iTXt" and data.startswith(PAGE_TEXT + b"\0"):
            # keyword, NUL, compression flag and method, language tag NUL, translated NUL
            return data[len(PAGE_TEXT) + 5 :].decode("utf-8")
        at += 12 + size
    return None


async def screenshot(page: Any, name: str) -> None:
    """Save the page as ``$TOCSIN_SCREENSHOTS/<name>.png`` when that directory is set, then
    check that the README's ``docs/<name>.png`` still shows this page (by its text)."""
    text = await page.inner_text("body")
    if SCREENSHOTS:
        png = await page.screenshot(full_page=True)
        out = Path(SCREENSHOTS) / f"{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(with_png_text(png, text))
    committed = ROOT / "docs" / f"{name}.png"
    assert png_text(committed.read_bytes()) == text, (
        f"{committed.relative_to(ROOT)} no longer shows the console as it is: re-take it with "
        f"TOCSIN_SCREENSHOTS=docs python -m pytest tests/router/console/test_browser.py"
    )


async def launch() -> AsyncIterator[Any]:
    """A headless chromium (Debian's), closed afterwards."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need(False, "the playwright Python package (pip install -e '.[test]')")
        raise
    need(chromium_present(), f"chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def describe(violations: list[dict[str, Any]]) -> str:
    return json.dumps(violations, indent=1)
