"""A real browser for the console's tests: Debian's chromium driven by Playwright.

No browser is ever downloaded: Playwright launches the chromium at ``TOCSIN_CHROMIUM`` (default
``/usr/bin/chromium``, Debian's package). axe-core comes from the npm registry
(``npm install --prefix .ci/node axe-core@4``, or ``TOCSIN_AXE``). Outside CI a test whose
need is missing is skipped, naming it; in CI (``CI=true``) a missing need is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("TOCSIN_CHROMIUM", "/usr/bin/chromium")
AXE = Path(os.environ.get("TOCSIN_AXE", ROOT / ".ci/node/node_modules/axe-core/axe.min.js"))
SCREENSHOTS = os.environ.get("TOCSIN_SCREENSHOTS", "")
IN_CI = os.environ.get("CI", "").lower() == "true"

__all__ = ["AXE", "CHROMIUM", "ROOT", "SCREENSHOTS", "axe_violations", "need", "screenshot"]


def need(ok: bool, what: str) -> None:
    """Skip (outside CI) or fail (in CI) when ``what`` is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI must provide {what}")
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


async def screenshot(page: Any, name: str) -> None:
    """Save the page as ``$TOCSIN_SCREENSHOTS/<name>.png`` when that directory is set."""
    if SCREENSHOTS:
        # Playwright creates the directory.
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


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
