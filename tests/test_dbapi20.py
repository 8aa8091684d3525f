"""Drop-in proof: the DB-API 2.0 compliance suite (``dbapi20``) through the wrapper.

For sqlite3, pyodbc + PostgreSQL, psycopg, PyMySQL, mysqlclient and MariaDB
Connector/Python, every test of Stuart Bishop's
``dbapi20.DatabaseAPI20Test`` (a test dependency, not copied here) runs twice,
on the raw driver and on a module-like shim whose ``connect`` returns
``asynchdb.connect(real_driver, ...)``.  Whatever passes on the raw driver must
pass through the wrapper; a test that fails on the raw driver (the driver's own
deviation from PEP 249) may fail through the wrapper too, and is reported.
"""

from __future__ import annotations

import gc
import types
import unittest
import warnings
from typing import Any

import pytest
from plugin import require_module

import asynchdb
from benchmarks.backends import Backend

#: the compliance suite is a test dependency: without it the module is skipped (failed in CI)
dbapi20 = require_module("dbapi20")

#: Backends the compliance suite runs on.
SUITE_BACKENDS = ("sqlite3", "pyodbc-postgresql", "psycopg", "psycopg2", "pg8000",
                  "adbc-postgresql", "pymysql", "mysqlclient", "mariadb")
TESTS = sorted(name for name in dir(dbapi20.DatabaseAPI20Test) if name.startswith("test_"))
#: Where the wrapper differs from the raw driver on purpose: (backend, test) -> why.
DIVERGENCES: dict[tuple[str, str], str] = {}
# (empty: a second close now reaches the driver, so test_non_idempotent_close
# gives the raw driver's verdict on every backend)


def wrapped_driver(real: types.ModuleType) -> types.ModuleType:
    """A module exposing ``real``'s DB-API names, whose connect wraps with asynchdb."""
    shim = types.ModuleType(f"asynchdb_over_{real.__name__}")
    for name in dir(real):
        if not name.startswith("__"):
            setattr(shim, name, getattr(real, name))

    def connect(*args: Any, **kwargs: Any) -> asynchdb.Connection:
        conn: asynchdb.Connection = asynchdb.connect(real, *args, **kwargs)
        return conn

    shim.connect = connect  # type: ignore[attr-defined]
    return shim


def suite_class(backend: Backend, wrapped: bool) -> type[unittest.TestCase]:
    """A ``DatabaseAPI20Test`` subclass for one backend, raw or wrapped."""
    real = backend.module()
    args, kwargs = backend.connect_args()
    prefix = f"dbapi20_{backend.name.replace('-', '_')}_{'w' if wrapped else 'r'}_"

    class Case(dbapi20.DatabaseAPI20Test):  # type: ignore[misc]
        driver = wrapped_driver(real) if wrapped else real
        connect_args = args
        connect_kw_args = kwargs
        table_prefix = prefix
        ddl1 = f"create table {prefix}booze (name varchar(20))"
        ddl2 = f"create table {prefix}barflys (name varchar(20), drink varchar(30))"
        xddl1 = f"drop table {prefix}booze"
        xddl2 = f"drop table {prefix}barflys"

    Case.__name__ = Case.__qualname__ = f"DBAPI20_{prefix}"
    return Case


def run(cls: type[unittest.TestCase], name: str) -> tuple[str, str]:
    """Run one compliance test: ("pass" | "skip" | "fail", details).

    Some dbapi20 tests leave their connection open; the driver (psycopg) then
    warns when it is collected.  That is the suite's leak, not asynchdb's, so
    ResourceWarning is ignored while a case runs and while it is collected.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        result = unittest.TestResult()
        case = cls(name)
        case.run(result)
        problems = result.errors + result.failures
        if problems:
            outcome = "fail", "\n".join(trace for _case, trace in problems)
        elif result.skipped:
            outcome = "skip", result.skipped[0][1]
        else:
            outcome = "pass", ""
        del case, result, problems
        gc.collect()
    return outcome


@pytest.mark.parametrize("name", TESTS)
@pytest.mark.parametrize("backend", SUITE_BACKENDS, indirect=True)
def test_dbapi20_passes_through_the_wrapper(backend: Backend, name: str) -> None:
    backend_name = backend.name
    raw_outcome, raw_detail = run(suite_class(backend, wrapped=False), name)
    outcome, detail = run(suite_class(backend, wrapped=True), name)
    why = DIVERGENCES.get((backend_name, name))
    if why is not None and raw_outcome == "pass" and outcome == "fail":
        pytest.xfail(f"known divergence: {why}")
    if raw_outcome == "pass":
        assert outcome == "pass", f"passes on raw {backend_name}, not through asynchdb:\n{detail}"
    elif raw_outcome == "fail":
        # the driver's own deviation: reported, allowed through the wrapper too
        pytest.xfail(f"fails on raw {backend_name} as well: {raw_detail.strip().splitlines()[-1]}")
    else:
        pytest.skip(raw_detail)
