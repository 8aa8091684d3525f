"""One run of a driver's own test suite, raw or through asynchdb (a subprocess).

Started by ``peer_harness.py``; never imported by pytest's collection.  It writes
one JSON object a line to ``--out`` and flushes after each, so that the parent
knows how far a run got even when it is killed:

``{"event": "env", ...}``
    the interpreter, the asynchdb it imported, the driver's version;
``{"event": "collected", "ids": [...]}``
    every test the suite has (before ``--skip`` is applied);
``{"event": "start", "id": ...}`` / ``{"event": "end", "id": ..., "outcome": ..., "detail": ...}``
    one pair per test; ``outcome`` is ``pass``, ``fail``, ``skip`` or ``xfail``
    (pytest's expected failure), ``detail`` the traceback or skip reason.

The watchdog: every test arms ``faulthandler.dump_traceback_later(exit=True)``;
a test that outlives ``--per-test-timeout`` dumps every thread's stack into
``--stacks`` and ends the process.  The parent reports it as hung and starts
the run again without it (and without the tests already done).

Wrapping is what a user substituting the wrapper would do: every
``driver.connect(*args, **kwargs)`` of the suite becomes
``asynchdb.connect(driver, *args, **kwargs)``.  The suites call
``sqlite3.connect`` / ``pyodbc.connect`` through the module at call time, so
the module attribute is replaced before the suite is imported; asynchdb is
given a copy of the module whose ``connect`` is still the driver's own (the
real module's would now lead back here).
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import json
import os
import sys
import types
import unittest
from typing import Any, Callable, Optional, TextIO

_out: Optional[TextIO] = None
_stacks: Optional[TextIO] = None
_timeout = 30.0


def emit(**record: Any) -> None:
    assert _out is not None
    _out.write(json.dumps(record) + "\n")
    _out.flush()


def arm() -> None:
    assert _stacks is not None
    faulthandler.dump_traceback_later(_timeout, exit=True, file=_stacks)


def disarm() -> None:
    faulthandler.cancel_dump_traceback_later()


# -- wrapping ----------------------------------------------------------------------
def driver_as_user_sees_it(module: types.ModuleType) -> types.ModuleType:
    """A copy of ``module`` (same objects) whose ``connect`` is the driver's own."""
    copy = types.ModuleType(module.__name__, module.__doc__)
    copy.__dict__.update(module.__dict__)
    return copy


def wrapping_connect(module: types.ModuleType) -> Callable[..., Any]:
    """``module.connect`` as a user substituting asynchdb writes it."""
    import asynchdb

    real = driver_as_user_sees_it(module)

    @functools.wraps(module.connect)
    def connect(*args: Any, **kwargs: Any) -> Any:
        return asynchdb.connect(real, *args, **kwargs)

    return connect


def patch_driver(module: types.ModuleType) -> None:
    module.connect = wrapping_connect(module)  # type: ignore[attr-defined]


def shim_driver(module: types.ModuleType) -> types.ModuleType:
    """A module like ``module`` whose ``connect`` wraps (for dbapi20's ``driver``)."""
    shim = driver_as_user_sees_it(module)
    shim.connect = wrapping_connect(module)  # type: ignore[attr-defined]
    return shim


# -- unittest suites ----------------------------------------------------------------
def flatten(suite: Any) -> list[unittest.TestCase]:
    cases: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            cases.extend(flatten(item))
        else:
            cases.append(item)
    return cases


class JsonResult(unittest.TestResult):
    """Writes a start and an end record per test; arms the watchdog around each."""

    def __init__(self) -> None:
        super().__init__()
        self._current: Optional[str] = None
        self._outcome = "pass"
        self._details: list[str] = []

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._current = test.id()
        self._outcome = "pass"
        self._details = []
        emit(event="start", id=self._current)
        arm()

    def stopTest(self, test: unittest.TestCase) -> None:
        disarm()
        super().stopTest(test)
        emit(event="end", id=test.id(), outcome=self._outcome,
             detail="\n".join(self._details))
        self._current = None

    def _failed(self, test: Any, err: Any) -> None:
        text = self._exc_info_to_string(err, test)
        if self._current is None or not isinstance(test, unittest.TestCase):
            # a class or module fixture failed (setUpClass...): its own record
            emit(event="end", id=str(test), outcome="fail", detail=text)
            return
        self._outcome = "fail"
        self._details.append(text)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._failed(test, err)

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._failed(test, err)

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._outcome = "fail"
            self._details.append(f"{subtest}\n{self._exc_info_to_string(err, test)}")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        if self._current is None:
            return
        if self._outcome == "pass":
            self._outcome = "skip"
        self._details.append(reason)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._outcome = "fail"
        self._details.append("unexpected success")


def run_unittest(cases: list[unittest.TestCase], skip: set[str]) -> None:
    emit(event="collected", ids=[c.id() for c in cases])
    suite = unittest.TestSuite([c for c in cases if c.id() not in skip])
    suite.run(JsonResult())


def sqlite3_cases(wrapped: bool) -> list[unittest.TestCase]:
    import sqlite3

    if wrapped:
        patch_driver(sqlite3)
    loader = unittest.TestLoader()
    return flatten(loader.loadTestsFromName("test.test_sqlite3"))


def dbapi20_cases(backend_name: str, wrapped: bool) -> list[unittest.TestCase]:
    import dbapi20

    from benchmarks.backends import BY_NAME

    backend = BY_NAME[backend_name]
    real = backend.module()
    args, kwargs = backend.connect_args()
    # the raw and the wrapped run (and other runs on the same server) must not
    # share tables
    prefix = f"dbapi20_{'w' if wrapped else 'r'}{os.getpid()}_"

    class DBAPI20(dbapi20.DatabaseAPI20Test):  # type: ignore[misc]
        driver = shim_driver(real) if wrapped else real
        connect_args = args
        connect_kw_args = kwargs
        table_prefix = prefix
        ddl1 = f"create table {prefix}booze (name varchar(20))"
        ddl2 = f"create table {prefix}barflys (name varchar(20), drink varchar(30))"
        xddl1 = f"drop table {prefix}booze"
        xddl2 = f"drop table {prefix}barflys"

    DBAPI20.__module__ = "dbapi20"
    DBAPI20.__qualname__ = DBAPI20.__name__ = "DatabaseAPI20Test"
    return flatten(unittest.TestLoader().loadTestsFromTestCase(DBAPI20))


# -- pytest suites (pyodbc's own tests) ------------------------------------------------
class PytestRecorder:
    """A pytest plugin doing for pytest what :class:`JsonResult` does for unittest."""

    def __init__(self, skip: set[str]) -> None:
        self.skip = skip
        self.outcome = "pass"
        self.details: list[str] = []

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        emit(event="collected", ids=[item.nodeid for item in items])
        items[:] = [item for item in items if item.nodeid not in self.skip]

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.outcome = "pass"
        self.details = []
        emit(event="start", id=nodeid)
        arm()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.outcome = "fail"
            self.details.append(f"[{report.when}] {report.longreprtext}")
        elif report.skipped and self.outcome == "pass":
            self.outcome = "xfail" if hasattr(report, "wasxfail") else "skip"
            self.details.append(report.longreprtext)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        disarm()
        emit(event="end", id=nodeid, outcome=self.outcome, detail="\n".join(self.details))

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            emit(event="end", id=f"collect:{report.nodeid}", outcome="fail",
                 detail=report.longreprtext)


def run_pyodbc(test_file: str, wrapped: bool, skip: set[str], tmp: str) -> int:
    import pyodbc
    import pytest

    if wrapped:
        patch_driver(pyodbc)
    ini = os.path.join(tmp, "pytest.ini")
    with open(ini, "w") as f:
        f.write("[pytest]\n")
    args = [test_file, "-c", ini, "--rootdir", os.path.dirname(test_file),
            "--noconftest", "-p", "no:cacheprovider", "-p", "no:faulthandler",
            "--basetemp", os.path.join(tmp, "basetemp"), "-q", "--no-header", "-rN"]
    return int(pytest.main(args, plugins=[PytestRecorder(skip)]))


# -- main ------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    global _out, _stacks, _timeout
    p = argparse.ArgumentParser()
    p.add_argument("--suite", required=True, choices=["test_sqlite3", "pyodbc", "dbapi20"])
    p.add_argument("--backend", required=True)
    p.add_argument("--mode", required=True, choices=["raw", "wrapped"])
    p.add_argument("--out", required=True)
    p.add_argument("--stacks", required=True)
    p.add_argument("--skip", default=None, help="a file with one test id a line")
    p.add_argument("--per-test-timeout", type=float, default=30.0)
    p.add_argument("--test-file", default=None, help="pyodbc: the vendored test file")
    p.add_argument("--tmp", required=True)
    a = p.parse_args(argv)
    _timeout = a.per_test_timeout
    _out = open(a.out, "a", encoding="utf-8")  # kept for the process
    _stacks = open(a.stacks, "a", encoding="utf-8")
    faulthandler.enable(file=_stacks)  # a crash leaves its stack too
    skip: set[str] = set()
    if a.skip:
        with open(a.skip, encoding="utf-8") as f:
            skip = {line.rstrip("\n") for line in f if line.strip()}
    wrapped = a.mode == "wrapped"

    import asynchdb

    emit(event="env", python=sys.version, asynchdb=asynchdb.__file__, mode=a.mode,
         suite=a.suite, backend=a.backend)
    if a.suite == "test_sqlite3":
        run_unittest(sqlite3_cases(wrapped), skip)
    elif a.suite == "dbapi20":
        run_unittest(dbapi20_cases(a.backend, wrapped), skip)
    else:
        assert a.test_file is not None
        run_pyodbc(a.test_file, wrapped, skip, a.tmp)
    emit(event="done")
    _out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
