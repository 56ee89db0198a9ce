"""Strictness: a test that logs at ERROR or above fails, unless it expects to."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

__all__ = ["error_lines", "no_errors", "strict_logs"]


def error_lines(caplog: pytest.LogCaptureFixture, *whens: str) -> list[str]:
    """``LEVEL logger: message`` of every record at ERROR or above in the phases ``whens``."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for when in whens
        for r in caplog.get_records(when)  # type: ignore[arg-type]
        if r.levelno >= logging.ERROR
    ]


@pytest.fixture
def strict_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if anything was logged at ERROR or above while it was set up, ran or
    was torn down. Use ``pytestmark = pytest.mark.usefixtures("strict_logs")``."""
    caplog.set_level(logging.INFO)
    yield
    bad = error_lines(caplog, "setup", "call", "teardown")
    if bad:
        lines = "\n".join(f"  {line}" for line in bad)
        pytest.fail(
            f"{len(bad)} error-level log record(s) during the test:\n{lines}", pytrace=False
        )


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Callable[[], None]:
    """Strictness at a point the test chooses: call it to fail if anything logged at ERROR."""
    caplog.set_level(logging.INFO)

    def check() -> None:
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]

    return check
