"""``python -m asynchdb check`` (docs/adapters.md); TARGET as for ``query`` (docs/cli.md).

The command runs in a subprocess against the real backends: every check must
pass on every backend with a real cancel, Ctrl-C included.
A driver asynchdb has no adapter for is reported honestly: its aborts abandon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from plugin import closed_port

from benchmarks.backends import BACKENDS, Backend
from benchmarks.check_matrix import target_of

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 400


def run_check(*args: str, env: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asynchdb", "check", *args],
                          capture_output=True, text=True, timeout=LIMIT, cwd=ROOT,
                          env=env, check=False)


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------
def test_help_lists_check() -> None:
    proc = subprocess.run([sys.executable, "-m", "asynchdb", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=False)
    assert proc.returncode == 0 and "check" in proc.stdout


def test_bad_usage_exits_2_and_names_the_package() -> None:
    proc = run_check("oracle://scott@nowhere/x")
    assert proc.returncode == 2 and "unknown scheme" in proc.stderr
    proc = run_check("--driver", "asynchdb_no_such_driver", "x")
    assert proc.returncode == 2 and "install" in proc.stderr
    proc = run_check("sqlite:///x.db", "--only", "no-such-check")
    assert proc.returncode == 2 and "unknown check" in proc.stderr
    proc = run_check("--driver", "json", "x")  # importable, unknown family: needs --slow-sql
    assert proc.returncode == 2 and "--slow-sql" in proc.stderr


@pytest.mark.backend("pymysql", connect=False)
def test_an_unreachable_server_fails_without_showing_the_password() -> None:
    proc = run_check(f"mysql+pymysql://root:hunter2secret@127.0.0.1:{closed_port()}/test")
    assert proc.returncode == 1
    assert "hunter2secret" not in proc.stdout + proc.stderr
    assert "***" in proc.stderr


@pytest.mark.slow
def test_check_passes_on_every_backend(backend: Backend) -> None:
    """One run a backend, JSON out: all pass (a driver with no cancel: honest fails)."""
    proc = run_check(*target_of(backend), "--format", "json", "--tries", "15")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, (proc.returncode, proc.stdout, proc.stderr)
    report = json.loads(lines[-1])
    assert report["can_cancel"] is backend.can_cancel
    verdicts = {c["check"]: (c["verdict"], c["detail"]) for c in report["checks"]}
    assert len(verdicts) == 8
    if not backend.can_cancel:
        # A driver with no cancel (adbc-sqlite) gets the honest abandon verdicts, not
        # passes: every abort and close abandons the running call (docs/abort.md).
        assert verdicts["abort-stops"][0] == "fail"
        assert "abandoned" in verdicts["abort-stops"][1]
        assert verdicts["close-during-call"][0] == "fail"
        assert "abandoned" in verdicts["close-during-call"][1]
        assert verdicts["cancel-after"][0] == "fail"      # fires, the call still runs
        for check in ("abort-before-start", "next-statement", "usable-after-abort"):
            assert verdicts[check][0] == "n/a", verdicts[check]
        assert verdicts["exit-pending"][0] == "pass", verdicts["exit-pending"]
        assert proc.returncode == 1
        return
    # every check passes, Ctrl-C included: the check's child restores Python's
    # default SIGINT handler, so the verdict is the driver's even when this
    # run inherited SIGINT ignored
    assert all(v[0] == "pass" for v in verdicts.values()), verdicts
    assert proc.returncode == 0
    if backend.server is not None:
        assert "gone from the server" in verdicts["abort-stops"][1]


_NO_CANCEL = """
'''A DB-API driver asynchdb has no adapter for: sqlite3 under another name.'''
import sqlite3
from sqlite3 import *  # noqa: F403

def connect(path):
    return sqlite3.connect(path, check_same_thread=False)
"""


def test_a_driver_without_cancel_is_reported_as_abandoned(tmp_path: Path) -> None:
    (tmp_path / "nocancel_driver.py").write_text(textwrap.dedent(_NO_CANCEL))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT),
                                         *filter(None, [env.get("PYTHONPATH")])])
    # about 1-2 s of counting: the abandoned statements end by themselves
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 3000000) SELECT count(*) FROM c")
    proc = run_check("--driver", "nocancel_driver", str(tmp_path / "db.sqlite"),
                     "--only", "abort-stops,usable-after-abort", "--slow-sql", slow,
                     "--format", "json", env=env)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["adapter"] == "generic" and report["can_cancel"] is False
    rows = {c["check"]: c for c in report["checks"]}
    assert rows["abort-stops"]["verdict"] == "fail"
    assert "abandoned" in rows["abort-stops"]["detail"]
    assert rows["usable-after-abort"]["verdict"] == "n/a"
    # the table says the same
    proc = run_check("--driver", "nocancel_driver", str(tmp_path / "db.sqlite"),
                     "--only", "abort-stops", "--slow-sql", slow, env=env)
    assert proc.returncode == 1
    assert "no cancel: aborts abandon" in proc.stdout
    assert "| abort stops the statement on the server | fail | abandoned" in proc.stdout


def test_target_of_covers_every_backend() -> None:
    for b in BACKENDS:
        args = target_of(b)
        assert args and all(isinstance(a, str) for a in args)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_check_gives_the_drivers_verdict_when_sigint_is_ignored(tmp_path: Any) -> None:
    """Started where SIGINT is ignored (a background job of a script), as CI may start it.

    The Ctrl-C check's child would inherit the ignore and never get its
    KeyboardInterrupt; it restores Python's default handler, so the verdict is
    still the driver's.
    """
    cmd = (f"trap '' INT; exec {sys.executable} -m asynchdb check "
           f"sqlite:///{tmp_path / 'ignored.db'} --only ctrl-c --format json")
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True,
                          timeout=LIMIT, cwd=ROOT, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, (proc.returncode, proc.stdout, proc.stderr)
    (check,) = json.loads(lines[-1])["checks"]
    assert check["verdict"] == "pass", check
