"""The driver's fixtures, registered for every test by ``tests/conftest.py``."""

from __future__ import annotations

from tests.driver.app import make_app
from tests.driver.logs import no_errors, strict_logs
from tests.driver.team import make_team_app

__all__ = ["make_app", "make_team_app", "no_errors", "strict_logs"]
