"""The public surface: exports, the error tree, OLE DB values, optional drivers.

docs/errors.md (the error tree), docs/oledb.md (the OLE DB constants, with the
values of the Windows SDK headers) and the packaging promise that
``import asynchdb`` needs none of the optional drivers.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import asynchdb
from asynchdb import errors, oledb

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_ALL = {
    "AbortVetoed", "Asynch", "AsynchError", "Connection", "Cursor", "DeadlineExceeded",
    "Listener", "NotSupportedError", "Operation", "OperationCanceled", "Phase", "Status",
    "ZombieError", "__version__", "connect", "oledb", "wrap",
}


# ---------------------------------------------------------------------------
# exports
# ---------------------------------------------------------------------------
def test_all_is_sorted_and_without_duplicates() -> None:
    names = asynchdb.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_all_holds_the_documented_names() -> None:
    assert EXPECTED_ALL <= set(asynchdb.__all__)
    for name in asynchdb.__all__:
        assert hasattr(asynchdb, name), name


def test_every_public_name_is_exported_exactly_once() -> None:
    exported = [getattr(asynchdb, n) for n in asynchdb.__all__]
    # no object exported under two names
    assert len({id(o) for o in exported}) == len(exported)
    # nothing public escapes __all__ (submodules aside)
    public = {n for n, v in vars(asynchdb).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public <= set(asynchdb.__all__), public - set(asynchdb.__all__)


@pytest.mark.parametrize("name", sorted(
    n for n in asynchdb.__all__
    if isinstance(getattr(asynchdb, n), type) or inspect.isfunction(getattr(asynchdb, n))))
def test_public_classes_and_functions_live_in_asynchdb(name: str) -> None:
    obj = getattr(asynchdb, name)
    assert obj.__module__ == "asynchdb"
    assert obj.__name__ == name


def test_version_is_a_string() -> None:
    from asynchdb._version import __version__

    assert isinstance(asynchdb.__version__, str)
    assert asynchdb.__version__ == __version__
    assert asynchdb.__version__


def test_errors_module_exports_the_same_classes() -> None:
    for name in errors.__all__:
        assert getattr(asynchdb, name) is getattr(errors, name)


# ---------------------------------------------------------------------------
# the error tree (docs/errors.md)
# ---------------------------------------------------------------------------
def test_error_tree() -> None:
    a = asynchdb
    assert issubclass(a.AsynchError, Exception)
    for cls in (a.ZombieError, a.OperationCanceled, a.AbortVetoed, a.NotSupportedError,
                a.DeadlineExceeded):
        assert issubclass(cls, a.AsynchError), cls
    assert issubclass(a.OperationCanceled, concurrent.futures.CancelledError)
    assert issubclass(a.DeadlineExceeded, a.OperationCanceled)
    assert issubclass(a.DeadlineExceeded, TimeoutError)
    assert issubclass(a.DeadlineExceeded, concurrent.futures.CancelledError)
    assert issubclass(a.NotSupportedError, ValueError)
    # and nothing more than that
    assert not issubclass(a.OperationCanceled, TimeoutError)
    assert not issubclass(a.ZombieError, (ValueError, TimeoutError,
                                          concurrent.futures.CancelledError))
    assert not issubclass(a.AbortVetoed, (ValueError, TimeoutError,
                                          concurrent.futures.CancelledError))
    assert not issubclass(a.NotSupportedError, (TimeoutError, concurrent.futures.CancelledError))
    assert not issubclass(a.AsynchError, (ValueError, TimeoutError,
                                          concurrent.futures.CancelledError))
    for cls in (a.ZombieError, a.AbortVetoed, a.NotSupportedError, a.OperationCanceled):
        assert not issubclass(cls, a.DeadlineExceeded)


def test_errors_are_caught_by_the_standard_handlers() -> None:
    with pytest.raises(concurrent.futures.CancelledError):
        raise asynchdb.OperationCanceled("aborted")
    with pytest.raises(TimeoutError):
        raise asynchdb.DeadlineExceeded("deadline")
    with pytest.raises(concurrent.futures.CancelledError):
        raise asynchdb.DeadlineExceeded("deadline")
    with pytest.raises(ValueError):
        raise asynchdb.NotSupportedError("random population")
    exc = asynchdb.DeadlineExceeded("deadline")
    assert isinstance(exc, (asynchdb.OperationCanceled, asynchdb.AsynchError, TimeoutError,
                            concurrent.futures.CancelledError))
    # a future's consumer sees an abort as a cancellation
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    fut.set_running_or_notify_cancel()
    fut.set_exception(asynchdb.OperationCanceled("aborted"))
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(0)


def test_zombie_error_names_its_operation() -> None:
    marker = object()
    exc = asynchdb.ZombieError(marker)
    assert exc.operation is marker
    assert repr(marker) in str(exc)


# ---------------------------------------------------------------------------
# public types
# ---------------------------------------------------------------------------
def test_phase_has_ole_db_values() -> None:
    assert issubclass(asynchdb.Phase, enum.IntEnum)
    assert {p.name: int(p) for p in asynchdb.Phase} == {
        "INITIALIZATION": oledb.DBASYNCHPHASE_INITIALIZATION,
        "POPULATION": oledb.DBASYNCHPHASE_POPULATION,
        "COMPLETE": oledb.DBASYNCHPHASE_COMPLETE,
        "CANCELED": oledb.DBASYNCHPHASE_CANCELED,
    }


def test_asynch_flags_have_ole_db_values() -> None:
    A = asynchdb.Asynch
    assert issubclass(A, enum.IntFlag)
    assert {f.name: int(f) for f in A} == {
        "INITIALIZE": oledb.DBPROPVAL_ASYNCH_INITIALIZE,
        "SEQUENTIAL_POPULATION": oledb.DBPROPVAL_ASYNCH_SEQUENTIALPOPULATION,
        "RANDOM_POPULATION": oledb.DBPROPVAL_ASYNCH_RANDOMPOPULATION,
        "BACKGROUND_POPULATION": oledb.DBPROPVAL_ASYNCH_BACKGROUNDPOPULATION,
        "PREPOPULATE": oledb.DBPROPVAL_ASYNCH_PREPOPULATE,
        "POPULATE_ON_DEMAND": oledb.DBPROPVAL_ASYNCH_POPULATEONDEMAND,
    }


def test_status_is_a_frozen_dataclass() -> None:
    S = asynchdb.Status
    assert dataclasses.is_dataclass(S)
    assert [f.name for f in dataclasses.fields(S)] == [
        "phase", "progress", "progress_max", "status_text", "error"]
    st = S(asynchdb.Phase.COMPLETE, 1, 1, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.progress = 2  # type: ignore[misc]
    assert st.done is True
    assert S(asynchdb.Phase.CANCELED, 0, 1, None, None).done is True
    assert S(asynchdb.Phase.INITIALIZATION, 0, 1, None, None).done is False
    assert S(asynchdb.Phase.POPULATION, 0, 1, None, None).done is False


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


P = inspect.Parameter


def test_signatures_of_the_contract() -> None:
    assert _params(asynchdb.connect) == [
        ("driver", P.POSITIONAL_ONLY, P.empty),
        ("args", P.VAR_POSITIONAL, P.empty),
        ("asynch", P.KEYWORD_ONLY, False),
        ("cancel_after", P.KEYWORD_ONLY, None),
        ("listener", P.KEYWORD_ONLY, None),
        ("kwargs", P.VAR_KEYWORD, P.empty),
    ]
    assert [n for n, _, _ in _params(asynchdb.wrap)] == ["dbapi_connection"]
    op = asynchdb.Operation
    for name in ("wait_for_completion", "result", "exception"):
        assert _params(getattr(op, name))[1:] == [("timeout", P.POSITIONAL_OR_KEYWORD, None)]
    for name in ("get_status", "abort", "done"):
        assert _params(getattr(op, name))[1:] == []
    assert isinstance(inspect.getattr_static(op, "future"), property)
    assert [n for n, _, _ in _params(op.advise)][1:] == ["listener"]
    assert [n for n, _, _ in _params(op.unadvise)][1:] == ["cookie"]
    assert _params(op.GetStatus)[1:] == [("hChapter", P.POSITIONAL_OR_KEYWORD, 0),
                                         ("eOperation", P.POSITIONAL_OR_KEYWORD, 0)]
    assert _params(op.Abort)[1:] == [("hChapter", P.POSITIONAL_OR_KEYWORD, 0),
                                     ("eOperation", P.POSITIONAL_OR_KEYWORD, 0)]
    assert [n for n, _, _ in _params(op.WaitForAsynchCompletion)][1:] == ["dwMillisecTimeOut"]
    for name in ("Advise", "Unadvise"):
        assert callable(getattr(op, name))
    cur = asynchdb.Cursor
    for name in ("execute", "executemany", "callproc", "nextset"):
        params = {n: (k, d) for n, k, d in _params(getattr(cur, name))}
        for kw, default in (("asynch", False), ("cancel_after", None), ("listener", None)):
            assert params[kw] == (P.KEYWORD_ONLY, default), (name, kw)


def test_listener_protocol_names_the_three_methods() -> None:
    for name in ("on_progress", "on_stop", "on_low_resource"):
        assert callable(getattr(asynchdb.Listener, name))


# ---------------------------------------------------------------------------
# OLE DB constants, with the values of the Windows SDK headers (docs/oledb.md)
# ---------------------------------------------------------------------------
OLE_DB_VALUES = {
    "S_OK": 0x00000000,
    "S_FALSE": 0x00000001,
    "DB_S_ASYNCHRONOUS": 0x00040ED0,
    "DB_S_UNWANTEDOPERATION": 0x00040ECC,
    "DB_S_UNWANTEDPHASE": 0x00040ECE,
    "DB_E_CANCELED": 0x80040E4E,
    "DB_E_CANTCANCEL": 0x80040E15,
    "DB_E_BADCHAPTER": 0x80040E06,
    "E_UNEXPECTED": 0x8000FFFF,
    "E_NOTIMPL": 0x80004001,
    "E_FAIL": 0x80004005,
    "E_INVALIDARG": 0x80070057,
    "CONNECT_E_NOCONNECTION": 0x80040200,
    "DBASYNCHOP_OPEN": 0,
    "DBASYNCHPHASE_INITIALIZATION": 0,
    "DBASYNCHPHASE_POPULATION": 1,
    "DBASYNCHPHASE_COMPLETE": 2,
    "DBASYNCHPHASE_CANCELED": 3,
    "DBPROPVAL_ASYNCH_INITIALIZE": 0x01,
    "DBPROPVAL_ASYNCH_SEQUENTIALPOPULATION": 0x02,
    "DBPROPVAL_ASYNCH_RANDOMPOPULATION": 0x04,
    "DBPROPVAL_ASYNCH_BACKGROUNDPOPULATION": 0x08,
    "DBPROPVAL_ASYNCH_PREPOPULATE": 0x10,
    "DBPROPVAL_ASYNCH_POPULATEONDEMAND": 0x20,
    "DB_NULL_HCHAPTER": 0,
    "INFINITE": 0xFFFFFFFF,
}

#: Further OLE DB names, from the same headers: checked when asynchdb.oledb has them.
OPTIONAL_OLE_DB_VALUES = {
    "DB_S_UNWANTEDREASON": 0x00040ECF,
    "DB_S_ENDOFROWSET": 0x00040EC6,
    "DB_S_NORESULT": 0x00040EC9,
    "DB_S_STOPLIMITREACHED": 0x00040ED6,
    "DB_S_ERRORSOCCURRED": 0x00040EDA,
    "DB_E_NOTSUPPORTED": 0x80040E53,
    "DB_E_NOTREENTRANT": 0x80040E20,
    "DB_E_ERRORSOCCURRED": 0x80040E21,
    "DB_E_OBJECTOPEN": 0x80040E05,
    "DB_E_ALREADYINITIALIZED": 0x80040E52,
    "DB_E_ABORTLIMITREACHED": 0x80040E31,
    "DB_E_ASYNCNOTSUPPORTED": 0x80040E95,
    "DB_E_TIMEOUT": 0x80040E97,
    "DB_SEC_E_AUTH_FAILED": 0x80040E4D,
    "E_NOINTERFACE": 0x80004002,
    "E_POINTER": 0x80004003,
    "E_OUTOFMEMORY": 0x8007000E,
    "CONNECT_E_ADVISELIMIT": 0x80040201,
    "CONNECT_E_CANNOTCONNECT": 0x80040202,
    "DBPROP_INIT_ASYNCH": 0xC8,
    "DBPROP_ROWSET_ASYNCH": 0xC9,
    "DBPROP_IDBAsynchStatus": 0xCB,
    "DBPROP_ASYNCTXNCOMMIT": 0x04,
    "DBPROP_ASYNCTXNABORT": 0xA8,
    "DBREASON_ROW_ASYNCHINSERT": 18,
    "DB_COUNTUNAVAILABLE": -1,
}


@pytest.mark.parametrize(("name", "value"), sorted(OLE_DB_VALUES.items()))
def test_oledb_constant_has_ole_db_value(name: str, value: int) -> None:
    assert getattr(oledb, name) == value


def test_further_oledb_constants_have_ole_db_values() -> None:
    present = {n: v for n, v in OPTIONAL_OLE_DB_VALUES.items() if hasattr(oledb, n)}
    assert {n: getattr(oledb, n) for n in present} == present


def test_oledb_succeeded_and_failed() -> None:
    successes = [n for n in OLE_DB_VALUES if n.startswith(("S_", "DB_S_"))]
    failures = [n for n in OLE_DB_VALUES if n.startswith(("E_", "DB_E_", "CONNECT_E_"))]
    assert successes
    assert failures
    for n in successes:
        assert oledb.SUCCEEDED(getattr(oledb, n)), n
        assert not oledb.FAILED(getattr(oledb, n)), n
    for n in failures:
        assert oledb.FAILED(getattr(oledb, n)), n
        assert not oledb.SUCCEEDED(getattr(oledb, n)), n


def test_oledb_is_reachable_from_the_package() -> None:
    assert asynchdb.oledb is oledb


# ---------------------------------------------------------------------------
# no optional driver needed
# ---------------------------------------------------------------------------
BLOCKED_IMPORT = r"""
import sys

BLOCKED = {"pyodbc", "psycopg", "psycopg_binary", "psycopg_c", "psycopg_pool", "duckdb",
           "pymysql", "MySQLdb", "mariadb"}


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked for this test")
        return None


sys.meta_path.insert(0, Block())
for name in list(sys.modules):
    if name.partition(".")[0] in BLOCKED:
        del sys.modules[name]

for name in sorted(BLOCKED):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"the blocker let {name} through")

import asynchdb
import asynchdb.oledb
import asynchdb.testing
import asynchdb._drivers._mysql
import asynchdb._targets

# the command line's URL parsing and the check command import no driver either
import asynchdb._check
assert asynchdb._targets.parse_target("sqlite://").module == "sqlite3"

for name in asynchdb.__all__:
    getattr(asynchdb, name)

# the standard library driver works with the others absent
import sqlite3

conn = asynchdb.connect(sqlite3, ":memory:", check_same_thread=False)
op = conn.cursor().execute("select 1", asynch=True)
assert op.result(5).fetchall() == [(1,)]
conn.close()

leaked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not leaked, leaked
print("imported fine")
"""

ALL_SUBMODULES = r"""
import pkgutil
import asynchdb

for info in pkgutil.walk_packages(asynchdb.__path__, "asynchdb."):
    if info.name.startswith("asynchdb.__main__"):
        continue
    __import__(info.name)
    print(info.name)
"""


def _run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_import_works_with_the_optional_drivers_blocked() -> None:
    proc = _run_blocked(BLOCKED_IMPORT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "imported fine" in proc.stdout


def test_every_submodule_imports_with_the_optional_drivers_blocked() -> None:
    # adapters import their driver lazily, never at module level
    head = BLOCKED_IMPORT.split("import asynchdb\n", 1)[0]
    proc = _run_blocked(head + ALL_SUBMODULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pkg = ROOT / "asynchdb"
    expected = {".".join(("asynchdb", *f.relative_to(pkg).with_suffix("").parts))
                for f in pkg.rglob("*.py") if f.stem not in ("__init__", "__main__")}
    assert "asynchdb._drivers._sqlite3" in expected
    assert expected <= set(proc.stdout.split())
