"""``tocsin`` on the command line, for the CLI tests.

``run`` calls the entry point in-process and reads what it printed (capsys); ``cli_process``
runs ``python -m router.cli`` as a real child process from the repository root, for what only
a process shows (exit codes through the interpreter, a closed pipe, the environment it gets).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from router.cli import main
from tests.driver.process import REPO

__all__ = ["cli_process", "run"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``tocsin argv...`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse and usage errors exit through SystemExit
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def cli_process(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = 120, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """``tocsin argv...`` as a real process from the repository root, as text.

    ``env`` is its whole environment (None: this process's). Output is captured unless
    ``popen`` says where it goes (``stdout=...``, ``stderr=...``).
    """
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *argv],
        cwd=REPO,
        env=None if env is None else dict(env),
        text=True,
        timeout=timeout,
        **popen,
    )
