"""The driver's fixtures and hooks, registered for every test by ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.driver.app import make_app
from tests.driver.logs import every_log_line, no_errors, strict_logs
from tests.driver.process import procs
from tests.driver.team import make_team_app

__all__ = [
    "every_log_line",
    "make_app",
    "make_team_app",
    "no_errors",
    "procs",
    "strict_logs",
]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item (``rep_call``...), so a fixture's teardown can
    show the output of the processes of a test that failed."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
