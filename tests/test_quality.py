"""Lint (ruff) and strict typing (mypy) run as part of the suite, so CI runs them.

They are skipped only when the tool is not installed and CI does not require
it (ASYNCHDB_REQUIRE_BACKENDS set means a CI-like run: then they must run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from plugin import require_tool as _tool

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    _tool("ruff")
    cmd = [sys.executable, "-m", "ruff", "check", "asynchdb", "tests", "benchmarks"]
    proc = subprocess.run(cmd,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_mypy_strict_clean() -> None:
    _tool("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
