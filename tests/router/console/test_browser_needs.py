"""The browser tests cannot be skipped quietly where they must run: with
``TOCSIN_REQUIRE_BROWSER=1`` (which ``.ci/run`` exports) or ``CI=true``, a missing chromium or
axe-core fails them; elsewhere they are skipped, naming what is missing."""

from __future__ import annotations

import pytest

from tests.router.console import browser
from tests.router.console.browser import ROOT, launch, need

README_TEST_COMMAND = "python -m pip install -q -e '.[test]' && python -m pytest -q -n auto"


def _no_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TOCSIN_REQUIRE_BROWSER", raising=False)


def test_a_missing_need_is_skipped_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_requirement(monkeypatch)
    with pytest.raises(pytest.skip.Exception, match="chromium at /nowhere is missing"):
        need(False, "chromium at /nowhere")
    need(True, "chromium at /usr/bin/chromium")  # present: nothing happens


@pytest.mark.parametrize(("name", "value"), [("TOCSIN_REQUIRE_BROWSER", "1"), ("CI", "true")])
async def test_a_missing_chromium_fails_where_the_browser_tests_are_required(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _no_requirement(monkeypatch)
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(browser, "CHROMIUM", "/nowhere/chromium")
    # Caught whatever it is: a skip here would otherwise pass for a skipped test, not a failure.
    with pytest.raises(BaseException) as stopped:
        async for _ in launch():
            pass
    assert stopped.type is pytest.fail.Exception, f"not a failure: {stopped.value!r}"
    assert "must provide chromium at /nowhere/chromium" in str(stopped.value)


def test_ci_requires_the_browser_tests_before_running_the_readme_command() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[-1] == README_TEST_COMMAND
    assert "export TOCSIN_REQUIRE_BROWSER=1" in lines[:-1]
    assert README_TEST_COMMAND in (ROOT / "README.md").read_text()
