"""Run a driver's own test suite raw and through asynchdb, and compare the verdicts.

Each run is a subprocess (``_child.py``) that writes a verdict per test.  A
test that hangs is caught by the child's watchdog (``faulthandler``, per test):
the child dumps every thread's stack and exits, and this side records the test
as ``hang`` (or ``crash`` for a fatal signal), then starts the run again
without it and without the tests already done.  The whole run is bounded too.

Used by ``test_peer.py`` (one pytest test per suite and backend) and as a
script that prints the table and every difference::

    python tests/peer/peer_harness.py                    # every suite
    python tests/peer/peer_harness.py 'test_sqlite3[sqlite3]' --json /tmp/peer.json

Environment: ``ASYNCHDB_PEER_TEST_TIMEOUT`` multiplies the per-test timeouts
(default 1; raise it on a slow machine), plus the connection strings of
``benchmarks/backends.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
CHILD = os.path.join(HERE, "_child.py")
VENDORED = os.path.join(HERE, "pyodbc_tests")

for _path in (ROOT, TESTS):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from benchmarks.backends import BY_NAME  # noqa: E402

#: Most times a run is restarted after a hung or crashed test.
MAX_ATTEMPTS = 12
#: Lines of the wrapped traceback (or hung stack) a difference shows.
TAIL = 8

PASS = "pass"


@dataclass(frozen=True)
class Suite:
    """One driver suite on one backend."""

    kind: str  # test_sqlite3, pyodbc, dbapi20
    backend: str  # a benchmarks/backends.py name
    #: Seconds one test may take before it counts as hung.
    per_test_timeout: float
    #: Seconds the whole run (all attempts) may take.
    run_timeout: float
    #: pyodbc: the vendored test file.
    test_file: Optional[str] = None

    @property
    def id(self) -> str:
        return f"{self.kind}[{self.backend}]"


SUITES: tuple[Suite, ...] = (
    Suite("test_sqlite3", "sqlite3", per_test_timeout=10, run_timeout=240),
    Suite("pyodbc", "pyodbc-postgresql", 30, 300,
          os.path.join(VENDORED, "postgresql_test.py")),
    Suite("pyodbc", "pyodbc-mariadb", 30, 300, os.path.join(VENDORED, "mysql_test.py")),
    Suite("pyodbc", "pyodbc-sqlite", 30, 300, os.path.join(VENDORED, "sqlite_test.py")),
    *(Suite("dbapi20", name, 30, 240)
      for name in ("sqlite3", "pyodbc-postgresql", "pyodbc-mariadb", "pyodbc-sqlite",
                   "psycopg", "duckdb", "psycopg2", "pg8000", "adbc-postgresql",
                   "adbc-sqlite", "pymysql", "mysqlclient", "mariadb")),
)
BY_ID = {s.id: s for s in SUITES}


@dataclass
class Run:
    """The verdicts of one run (raw or wrapped)."""

    suite: Suite
    mode: str
    collected: list[str] = field(default_factory=list)
    #: test id -> (outcome, detail); outcome: pass, fail, skip, xfail, hang, crash.
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Problems outside any test (the child died while importing the suite...).
    errors: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0

    def outcome(self, test_id: str) -> str:
        if test_id in self.outcomes:
            return self.outcomes[test_id][0]
        return "missing" if test_id in self.collected else "not collected"

    def detail(self, test_id: str) -> str:
        return self.outcomes.get(test_id, ("", ""))[1]

    @property
    def passes(self) -> int:
        return sum(1 for o, _ in self.outcomes.values() if o == PASS)

    def count(self, outcome: str) -> int:
        return sum(1 for o, _ in self.outcomes.values() if o == outcome)


def _scale() -> float:
    try:
        return max(0.1, float(os.environ.get("ASYNCHDB_PEER_TEST_TIMEOUT", "1")))
    except ValueError:
        return 1.0


@contextlib.contextmanager
def scratch_database(suite: Suite, mode: str) -> Iterator[Optional[str]]:
    """A database of its own for a run on a server (None for a local engine).

    pyodbc's tests use fixed table names (t1, t2...): the raw and the wrapped
    run, and anyone else's run on the same server, must not share a database.
    """
    backend = BY_NAME[suite.backend]
    if suite.kind != "pyodbc" or backend.server is None:
        yield None
        return
    name = f"asynchdb_peer_{mode}_{uuid.uuid4().hex[:10]}"
    admin = backend.connect_raw(autocommit=True)
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        yield name
    finally:
        try:
            force = " WITH (FORCE)" if backend.server == "postgresql" else ""
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}{force}")
        finally:
            admin.close()


def _child_env(suite: Suite, tmp: str, database: Optional[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "PYODBC_")) and k != "PYTHONPATH"}
    # the worktree's asynchdb and benchmarks/backends.py (ROOT) and tests/ (TESTS),
    # whatever is installed
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS])
    env["TMPDIR"] = tmp  # tempfile.mkdtemp in the child: removed with tmp
    env["PYTHONFAULTHANDLER"] = ""
    backend = BY_NAME[suite.backend]
    if suite.kind == "pyodbc":
        value = os.environ.get(backend.env_var or "", "") or backend.default or ""
        value = value.replace("{path}", os.path.join(tmp, "pyodbc-sqlite.db"))
        if database is not None:
            value, n = re.subn(r"(?i)(^|;)DATABASE=[^;]*", rf"\1DATABASE={database}", value)
            assert n == 1, f"no DATABASE= in {value!r}"
        var = {"pyodbc-postgresql": "PYODBC_POSTGRESQL", "pyodbc-mariadb": "PYODBC_MYSQL",
               "pyodbc-sqlite": "PYODBC_SQLITE"}[suite.backend]
        env[var] = value
    return env


def _read(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                pass  # a line cut short by the watchdog's exit
    return records


def _tail(text: str, lines: int = TAIL) -> str:
    kept = [line for line in text.rstrip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _hung_stack(text: str) -> str:
    """The test thread's innermost frames from a faulthandler dump, then the others'."""
    blocks = [b for b in text.split("\n\n") if "most recent call first" in b]
    main, others = [], []
    for block in blocks:
        frames = [line.strip() for line in block.splitlines() if line.strip().startswith("File")]
        if any("_child.py" in f for f in frames):
            main = frames[:TAIL]
        elif frames:
            others.append(frames[0])
    if not main and not others:
        return _tail(text)
    lines = [*main, *(f"(another thread) {f}" for f in others)]
    return "\n".join(lines)


def run(suite: Suite, mode: str) -> Run:
    """Run ``suite`` raw or wrapped in subprocesses until every test has a verdict."""
    result = Run(suite, mode)
    tmp = tempfile.mkdtemp(prefix=f"asynchdb-peer-{suite.kind}-{mode}-")
    start = time.monotonic()
    try:
        with scratch_database(suite, mode) as database:
            _attempts(suite, mode, result, tmp, database, start)
    finally:
        result.seconds = time.monotonic() - start
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _attempts(suite: Suite, mode: str, result: Run, tmp: str, database: Optional[str],
              start: float) -> None:
    out = os.path.join(tmp, "results.jsonl")
    done: set[str] = set()
    for attempt in range(MAX_ATTEMPTS):
        result.attempts = attempt + 1
        skip_file = os.path.join(tmp, "skip.txt")
        with open(skip_file, "w", encoding="utf-8") as f:
            f.writelines(f"{tid}\n" for tid in sorted(done))
        stacks = os.path.join(tmp, f"stacks-{attempt}.txt")
        log = os.path.join(tmp, f"output-{attempt}.txt")
        cmd = [sys.executable, CHILD, "--suite", suite.kind, "--backend", suite.backend,
               "--mode", mode, "--out", out, "--stacks", stacks, "--skip", skip_file,
               "--per-test-timeout", str(suite.per_test_timeout * _scale()),
               "--tmp", tmp]
        if suite.test_file:
            cmd += ["--test-file", suite.test_file]
        left = suite.run_timeout * _scale() - (time.monotonic() - start)
        before = len(_read(out))
        timed_out = False
        with open(log, "w", encoding="utf-8") as logf:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(suite, tmp, database),
                                    stdout=logf, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(timeout=max(1.0, left))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
                timed_out = True
        records = _read(out)
        new = records[before:]
        started: Optional[str] = None
        finished = False
        for rec in new:
            event = rec.get("event")
            if event == "env" and not result.env:
                result.env = rec
            elif event == "collected" and not result.collected:
                result.collected = list(rec["ids"])
            elif event == "start":
                started = rec["id"]
            elif event == "end":
                result.outcomes[rec["id"]] = (rec["outcome"], rec.get("detail", ""))
                done.add(rec["id"])
                if rec["id"] == started:
                    started = None
            elif event == "done":
                finished = True
        if finished and rc == 0:
            break
        with open(stacks, encoding="utf-8", errors="replace") if os.path.exists(
                stacks) else open(os.devnull) as f:
            stack_text = f.read()
        if started is not None:
            if timed_out:
                verdict, why = "hang", (f"the run exceeded {suite.run_timeout * _scale():g}"
                                        " s while this test ran")
            elif "Timeout (" in stack_text:
                verdict, why = "hang", (f"no verdict after "
                                        f"{suite.per_test_timeout * _scale():g} s; "
                                        "where the main thread was:")
            else:
                verdict, why = "crash", f"the process died (exit status {rc}):"
            result.outcomes[started] = (verdict, f"{why}\n{_hung_stack(stack_text)}")
            done.add(started)
            if timed_out:
                break
            continue
        with open(log, encoding="utf-8", errors="replace") as f:
            result.errors.append(f"{mode} run ended outside any test (exit status {rc}"
                                 f"{', killed at the run timeout' if timed_out else ''}):\n"
                                 f"{_tail(f.read() + stack_text, 20)}")
        break
    else:
        result.errors.append(f"{mode} run gave up after {MAX_ATTEMPTS} attempts")


@dataclass
class Comparison:
    suite: Suite
    raw: Run
    wrapped: Run

    @property
    def differences(self) -> list[str]:
        """Tests that pass raw and do not pass wrapped, in the suite's order."""
        order = self.raw.collected or list(self.raw.outcomes)
        ids = [t for t in order if self.raw.outcome(t) == PASS]
        ids += [t for t in self.raw.outcomes if t not in order and self.raw.outcome(t) == PASS]
        return [t for t in ids if self.wrapped.outcome(t) != PASS]

    @property
    def improvements(self) -> list[str]:
        """Tests that pass only wrapped (worth a look: the wrapper hides an error?)."""
        return [t for t, (o, _) in self.wrapped.outcomes.items()
                if o == PASS and self.raw.outcome(t) != PASS]

    def describe(self, test_id: str) -> str:
        outcome = self.wrapped.outcome(test_id)
        text = _tail(self.wrapped.detail(test_id)) or "(no detail)"
        body = "\n".join("      " + line for line in text.splitlines())
        return f"  {test_id}: passes raw, {outcome} wrapped\n{body}"


_cache: dict[str, Comparison] = {}
_cache_lock = threading.Lock()
_suite_locks: dict[str, threading.Lock] = {s.id: threading.Lock() for s in SUITES}


def compare(suite: Suite) -> Comparison:
    """Both runs of ``suite`` (raw and wrapped side by side), once per process."""
    with _suite_locks[suite.id]:
        with _cache_lock:
            if suite.id in _cache:
                return _cache[suite.id]
        runs: dict[str, Run] = {}

        def go(mode: str) -> None:
            runs[mode] = run(suite, mode)

        wrapped = threading.Thread(target=go, args=("wrapped",), name="peer-wrapped")
        wrapped.start()
        go("raw")
        wrapped.join()
        cmp = Comparison(suite, runs["raw"], runs["wrapped"])
        with _cache_lock:
            _cache[suite.id] = cmp
        return cmp


def completed() -> list[Comparison]:
    with _cache_lock:
        return [_cache[s.id] for s in SUITES if s.id in _cache]


def table(comparisons: list[Comparison]) -> str:
    rows = ["| suite | tests | passes raw | passes wrapped | differ | hang/crash wrapped "
            "| seconds raw/wrapped |",
            "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        hung = c.wrapped.count("hang") + c.wrapped.count("crash")
        rows.append(f"| {c.suite.id} | {len(c.raw.collected)} | {c.raw.passes} "
                    f"| {c.wrapped.passes} | {len(c.differences)} | {hung} "
                    f"| {c.raw.seconds:.0f}/{c.wrapped.seconds:.0f} |")
    return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    from peer_known import ALLOWED, CAUSES, EXPECTED

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suites", nargs="*", help=f"suite ids (default all): {', '.join(BY_ID)}")
    p.add_argument("--json", help="write every verdict here")
    a = p.parse_args(argv)
    chosen = [BY_ID[s] for s in a.suites] if a.suites else list(SUITES)
    comparisons = []
    for suite in chosen:
        reason = BY_NAME[suite.backend].unavailable()
        if reason is not None:
            print(f"{suite.id}: skipped, {reason}")
            continue
        cmp = compare(suite)
        comparisons.append(cmp)
        print(f"\n== {suite.id}: raw {cmp.raw.passes}/{len(cmp.raw.collected)}, wrapped "
              f"{cmp.wrapped.passes} ({cmp.raw.seconds:.0f}s/{cmp.wrapped.seconds:.0f}s)")
        for err in cmp.raw.errors + cmp.wrapped.errors:
            print("  RUN ERROR: " + err)
        for tid in cmp.differences:
            known = EXPECTED.get(suite.id, {}).get(tid)
            allowed = ALLOWED.get(suite.id, {}).get(tid)
            tag = f"[expected: {known}]" if known else ("[allowed]" if allowed else "[NEW]")
            print(tag + cmp.describe(tid))
        for tid in cmp.improvements:
            print(f"  {tid}: passes wrapped only (raw: {cmp.raw.outcome(tid)})")
    print()
    print(table(comparisons))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({c.suite.id: {"raw": c.raw.outcomes, "wrapped": c.wrapped.outcomes,
                                    "collected": c.raw.collected,
                                    "errors": c.raw.errors + c.wrapped.errors}
                       for c in comparisons}, f, indent=1)
    _ = CAUSES
    return 0


if __name__ == "__main__":
    sys.exit(main())
