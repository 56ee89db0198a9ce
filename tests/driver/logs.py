"""Strictness: a test that logs at ERROR or above fails, unless it expects to; and every log
line at every level, for the tests that search them for secrets."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator

import pytest

from router.logs import JsonFormatter

__all__ = ["EveryLine", "error_lines", "every_log_line", "no_errors", "strict_logs"]


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


class EveryLine(logging.Handler):
    """Every record, at every level, as the JSON line tocsin writes, with its traceback: a
    secret must not show in any of them (``caplog`` keeps records, not what is written)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.json.format(record))
        if record.exc_info:
            self.lines.append("".join(traceback.format_exception(*record.exc_info)))


@pytest.fixture
def every_log_line() -> Iterator[EveryLine]:
    """Every log line the test causes (``.lines``), the root logger opened to DEBUG meanwhile."""
    handler = EveryLine()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
