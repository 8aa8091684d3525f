"""The demo (``python -m asynchdb demo``) runs and tells the story it promises."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asynchdb.__main__ import main
from asynchdb.demo import MIN_ROWS, QUICK_ROWS, run_demo

ROOT = Path(__file__).resolve().parent.parent

#: Seconds the quick demo may take at most, however slow the machine.
QUICK_LIMIT = 120


def test_quick_demo_in_a_subprocess() -> None:
    # exactly what a new user types, from the repository root
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "asynchdb", "demo", "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=QUICK_LIMIT,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"rc={proc.returncode}\n{out}\n{proc.stderr}"
    assert proc.stderr == ""
    assert "ZombieError" in out or "ended before the cursor" in out
    assert "COMPLETE in" in out
    assert "CANCELED after" in out
    assert "DeadlineExceeded" in out
    assert "sqlite3.OperationalError: interrupted" in out
    assert "the statement is no longer running" in out
    assert "op.abort() -> AbortVetoed" in out
    assert "then on_stop with CANCELED" in out
    assert "Summary" in out
    assert "UNEXPECTED" not in out
    # stdout is a pipe, not a terminal: no carriage returns
    assert "\r" not in out


def test_quick_demo_in_process_leaves_no_thread() -> None:
    # the autouse fixture in conftest.py checks that no asynchdb thread is left
    buf = io.StringIO()
    assert run_demo(QUICK_ROWS, quick=True, out=buf) == 0
    out = buf.getvalue()
    assert "CANCELED" in out
    assert "UNEXPECTED" not in out


def test_too_few_rows() -> None:
    with pytest.raises(ValueError, match="at least"):
        run_demo(MIN_ROWS - 1)


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("rows", ["0", "ten", "-5", "9999"])
def test_bad_rows_is_a_usage_error(rows: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--rows", rows])
    assert info.value.code == 2
    assert "--rows" in capsys.readouterr().err


def test_quick_and_rows_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--quick", "--rows", "1000"])
    assert info.value.code == 2


def test_the_asynchdb_demo_script_implies_the_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # the console script asynchdb-demo calls main() with sys.argv as it is
    monkeypatch.setattr(sys, "argv", ["/venv/bin/asynchdb-demo", "--help"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    assert "--rows" in capsys.readouterr().out
