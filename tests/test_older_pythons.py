"""The oldest Pythons ``requires-python`` admits (3.9, 3.10), where this machine has them.

CI runs the suite on 3.11.  These run a small program on each older
interpreter found (pyenv's, or on ``PATH``), with the repository on its path
and no driver but sqlite3: asynchdb imports, a round trip and an abort work,
a deadline's ``DeadlineExceeded`` is caught as ``concurrent.futures.TimeoutError``
(a class of its own before 3.11) and as ``TimeoutError``, and the two things
measured to differ before 3.11 behave: a SIGINT pending
when a driver call fails is claimed and repaired (the handler runs on
entering the ``except`` clause there), and ``with`` on a cursor without a
context manager raises what the driver's cursor raises on that Python.
Skipped where the interpreter is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest
from plugin import BOUND
from test_interrupt import _KI_ON_ENTRY

ROOT = Path(__file__).resolve().parent.parent

_SMOKE = """
import json, sqlite3, sys
import asynchdb
from asynchdb import Phase
out = {"version": list(sys.version_info[:2])}
conn = asynchdb.connect(sqlite3, ":memory:", check_same_thread=False)
cur = conn.cursor()
out["sync"] = cur.execute("SELECT 1").fetchall()
out["asynch"] = cur.execute("SELECT 2", asynch=True).result(10).fetchall()
slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT count(*) FROM n")
op = conn.cursor().execute(slow, asynch=True)
op.abort()
out["aborted"] = op.wait_for_completion(10) and op.get_status().phase == Phase.CANCELED
import concurrent.futures
deadline = conn.cursor().execute(slow, asynch=True, cancel_after=0.05)
try:
    deadline.result(10)
except concurrent.futures.TimeoutError as exc:  # distinct from TimeoutError before 3.11
    out["deadline"] = [type(exc).__name__, isinstance(exc, TimeoutError)]
raw = sqlite3.connect(":memory:")
try:
    with raw.cursor():
        pass
except Exception as exc:
    raw_error = type(exc).__name__
try:
    with conn.cursor():
        pass
except Exception as exc:
    out["with"] = [raw_error, type(exc).__name__]
conn.close()
from asynchdb import testing as fake
raw_fake = fake.connect()  # a driver connection with no context manager
try:
    with raw_fake:
        pass
except Exception as exc:
    raw_error = type(exc).__name__
wrapped = asynchdb.wrap(fake.connect())
try:
    with wrapped:
        pass
except Exception as exc:
    out["with_connection"] = [raw_error, type(exc).__name__]
wrapped.close()
print(json.dumps(out))
"""


def _python(version: str) -> Optional[str]:
    found = shutil.which(f"python{version}")
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        for d in sorted(pyenv.glob(f"{version}.*"), reverse=True):
            if (d / "bin" / "python").exists():
                return str(d / "bin" / "python")
    return found


def _run(python: str, code: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYENV_VERSION")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env,
                          timeout=BOUND * 2, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("version", ["3.9", "3.10"])
def test_asynchdb_runs_on_an_older_python(version: str) -> None:
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version} here")
    out = _run(python, _SMOKE)
    assert out["version"] == [int(p) for p in version.split(".")], out
    assert out["sync"] == [[1]] and out["asynch"] == [[2]], out
    assert out["aborted"] is True, out
    # DeadlineExceeded is both TimeoutErrors, also where they are two classes
    assert out["deadline"] == ["DeadlineExceeded", True], out
    raw_error, wrapped_error = out["with"]
    assert raw_error == wrapped_error == "AttributeError", out
    assert out["with_connection"] == ["AttributeError", "AttributeError"], out
    ki = _run(python, _KI_ON_ENTRY)
    assert ki["raised"] == "KeyboardInterrupt", ki
    assert ki["repaired"] is True, ki
    assert ki["after"] == 0, ki
