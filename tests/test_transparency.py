"""Drop-in fidelity (issue 10, docs/usage.md): types, dunders, threads, double close.

The peer suites (tests/peer) run the drivers' own tests through the wrapper;
these tests pin down each rule on its own, so a regression names its cause.
"""

from __future__ import annotations

import functools
import math
import pickle
import sqlite3
import threading
from typing import Any, Callable

import pytest
from plugin import BOUND, wait_until

import asynchdb
from asynchdb import Asynch
from asynchdb import testing as fake
from benchmarks.backends import Backend

POPULATE = Asynch.INITIALIZE | Asynch.SEQUENTIAL_POPULATION


def in_thread(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run ``fn`` on a thread of its own (joined within BOUND): (value, error)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["exc"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(BOUND)
    assert not t.is_alive(), "the call hung"
    return box.get("value"), box.get("exc")


# ---------------------------------------------------------------------------
# types
# ---------------------------------------------------------------------------
def test_isinstance_is_both_asynchdbs_and_the_drivers() -> None:
    class Mine(sqlite3.Connection):
        pass

    with asynchdb.connect(sqlite3, ":memory:", factory=Mine) as conn:
        cur = conn.cursor()
        for obj, ours, drivers in ((conn, asynchdb.Connection, Mine),
                                   (conn, asynchdb.Connection, sqlite3.Connection),
                                   (cur, asynchdb.Cursor, sqlite3.Cursor)):
            assert isinstance(obj, ours)
            assert isinstance(obj, drivers)
        assert type(conn) is asynchdb.Connection  # only type() tells them apart
        assert type(conn.driver_connection) is Mine
        assert type(cur.driver_cursor) is sqlite3.Cursor
        assert not isinstance(conn, sqlite3.Cursor)
        cur.close()
    conn.close()


def test_wrapped_arguments_reach_the_driver_as_its_own_objects() -> None:
    source = asynchdb.connect(sqlite3, ":memory:")
    target = asynchdb.connect(sqlite3, ":memory:")
    try:
        source.execute("CREATE TABLE t(x)")
        source.execute("INSERT INTO t VALUES (42)")
        source.commit()
        source.backup(target)  # sqlite3's C backup() demands a sqlite3.Connection
        assert target.execute("SELECT x FROM t").fetchall() == [(42,)]
    finally:
        source.close()
        target.close()


def test_call_delattr_pickle_and_reinit_are_the_drivers() -> None:
    raw = sqlite3.connect(":memory:")
    conn = asynchdb.connect(sqlite3, ":memory:")
    try:
        assert type(conn("SELECT 1")) is type(raw("SELECT 1"))  # sqlite3.Statement
        for obj in (raw, conn):
            with pytest.raises(TypeError, match=r"cannot pickle 'sqlite3\.Connection'"):
                pickle.dumps(obj)
        with pytest.raises(AttributeError):
            del raw.total_changes
        with pytest.raises(AttributeError):
            del conn.total_changes
        conn.execute("CREATE TABLE t(x)")
        conn.__init__(":memory:")  # sqlite3 re-opens: a fresh database
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
        # and asynchdb's hook came back with it: an abort still works
        op = conn.cursor().execute("SELECT 1", asynch=True)
        assert op.wait_for_completion(BOUND)
    finally:
        raw.close()
        conn.close()
    raw.close()
    conn.close()  # sqlite3 ignores a second close, and so does the wrapper


# ---------------------------------------------------------------------------
# sqlite3's thread rules (docs/usage.md, "Types and threads")
# ---------------------------------------------------------------------------
def test_sqlite3_same_thread_rule_holds_for_synchronous_calls() -> None:
    conn = asynchdb.connect(sqlite3, ":memory:")
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE t(x)")
        for call in (lambda: conn.cursor(), lambda: conn.commit(),
                     lambda: cur.execute("SELECT 1"), lambda: cur.fetchone(),
                     lambda: conn.create_function("f", 0, int), lambda: cur.close(),
                     lambda: conn.close()):
            _, exc = in_thread(call)
            assert isinstance(exc, sqlite3.ProgrammingError), exc
            assert "created in a thread can only be used in that same thread" in str(exc)
        # asynchdb's workers are exempt: asynchronous calls work, from any thread
        op, exc = in_thread(lambda: cur.execute("SELECT 7", asynch=True))
        assert exc is None
        assert op.result(BOUND) is cur
        assert cur.fetchall() == [(7,)]  # the opening thread reads as usual
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["keyword", "positional"])
def test_sqlite3_check_same_thread_false_allows_any_thread(how: str) -> None:
    if how == "keyword":
        conn = asynchdb.connect(sqlite3, ":memory:", check_same_thread=False)
    else:  # sqlite3.connect(database, timeout, detect_types, isolation_level, check_same_thread)
        conn = asynchdb.connect(sqlite3, ":memory:", 5.0, 0, "", False)
    try:
        rows, exc = in_thread(lambda: conn.execute("SELECT 1").fetchall())
        assert exc is None and rows == [(1,)]
    finally:
        conn.close()


def test_sqlite3_connection_opened_asynchronously_belongs_to_the_caller() -> None:
    op = asynchdb.connect(sqlite3, ":memory:", asynch=True)
    conn = op.result(BOUND)  # opened on a worker, but the caller's, as sqlite3.connect's
    try:
        assert conn.execute("SELECT 1").fetchall() == [(1,)]
        _, exc = in_thread(lambda: conn.execute("SELECT 1"))
        assert isinstance(exc, sqlite3.ProgrammingError)
    finally:
        conn.close()


def test_a_finalizer_on_another_thread_still_closes() -> None:
    conn = asynchdb.connect(sqlite3, ":memory:")
    raw = conn.driver_connection
    conn.cursor()
    # the wrapper is released on another thread: the close must happen anyway
    box = [conn]
    del conn
    _, exc = in_thread(lambda: box.clear())
    assert exc is None
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        raw.execute("SELECT 1")


# ---------------------------------------------------------------------------
# closing twice: as the driver does (pyodbc raises, sqlite3/psycopg/duckdb don't)
# ---------------------------------------------------------------------------
def test_closing_twice_does_what_the_driver_does(backend: Backend) -> None:
    raw = backend.connect_raw()
    raw.close()
    try:
        raw.close()
        expected: type[BaseException] | None = None
    except Exception as exc:
        expected = type(exc)
    conn = backend.connect()
    conn.close()
    if expected is None:
        conn.close()
    else:
        with pytest.raises(expected):
            conn.close()


# ---------------------------------------------------------------------------
# Operation.wait_for_population (docs/usage.md, "Waiting and results")
# ---------------------------------------------------------------------------
def test_wait_for_population_fake_driver() -> None:
    raw = fake.connect()
    conn = asynchdb.wrap(raw)
    try:
        op = conn.cursor().execute("block g1", asynch=POPULATE)
        assert raw.started("g1").wait(BOUND)
        assert op.wait_for_population(0.05) is False  # still in INITIALIZATION
        assert op.wait_for_population(0) is False
        raw.release("g1")
        assert op.wait_for_population(BOUND) is True
        assert op.wait_for_population() is True
        for bad in (-1, math.nan):
            with pytest.raises(ValueError):
                op.wait_for_population(bad)
        cur = conn.cursor()
        op2 = cur.execute("rows 5", asynch=POPULATE)
        assert op2.wait_for_population(BOUND)
        assert cur.fetchall() == [(i,) for i in range(5)]
        op2.wait_for_completion(BOUND)
    finally:
        conn.close()


def test_wait_for_population_sqlite3_first_rows_before_the_end() -> None:
    conn = asynchdb.connect(sqlite3, ":memory:")
    gate = threading.Event()
    reached = threading.Event()

    def hold(x: int) -> int:
        # worker thread: the 3rd row waits until the test has read the first ones
        if x == 3:
            reached.set()
            gate.wait(BOUND)
        return x

    try:
        conn.create_function("hold", 1, hold)
        cur = conn.cursor()
        op = cur.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                         "WHERE x < 5) SELECT hold(x) FROM n", asynch=POPULATE)
        op.wait_for_completion(0)
        # the first batch may stop at row 3: readable once the driver call returned
        assert op.wait_for_population(BOUND)
        assert op.get_status().phase in (asynchdb.Phase.POPULATION, asynchdb.Phase.COMPLETE)
        gate.set()
        assert cur.fetchall() == [(i,) for i in range(1, 6)]
        assert op.wait_for_completion(BOUND)
    finally:
        gate.set()
        conn.close()


def test_wait_for_population_is_true_for_a_canceled_operation() -> None:
    raw = fake.connect()
    conn = asynchdb.wrap(raw)
    try:
        op = conn.cursor().execute("block g2", asynch=POPULATE)
        assert raw.started("g2").wait(BOUND)
        op.abort()
        assert op.wait_for_population(BOUND) is True
        assert op.get_status().phase is asynchdb.Phase.CANCELED
    finally:
        conn.close()




# ---------------------------------------------------------------------------
# pinning: a callable's connection bound to its opening thread
# ---------------------------------------------------------------------------
def _pin_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("asynchdb-pin")]


@pytest.mark.parametrize("asynch", [False, True])
def test_a_callables_same_thread_connection_is_pinned(asynch: bool) -> None:
    opener = functools.partial(sqlite3.connect, ":memory:")  # check_same_thread=True
    if asynch:
        conn = asynchdb.connect(opener, asynch=True).result(BOUND)
    else:
        conn = asynchdb.connect(opener)
    try:
        assert isinstance(conn, sqlite3.Connection)
        assert len(_pin_threads()) == 1
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.in_transaction  # a getter that checks the thread
        cur = conn.cursor()
        # asynchronous calls work (they fail on the raw driver's rules otherwise)
        assert cur.execute("SELECT x FROM t", asynch=True).result(BOUND) is cur
        assert cur.fetchall() == [(1,)]
        # and synchronous ones from any thread (each hops to the pin thread)
        got, exc = in_thread(lambda: conn.execute("SELECT x + 1 FROM t").fetchall())
        assert exc is None and got == [(2,)]
        # abort still reaches the statement (asynchdb's sqlite3 adapter is in use)
        op = conn.cursor().execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL "
                                   "SELECT x + 1 FROM n) SELECT count(*) FROM n", asynch=True)
        op.abort()
        assert op.wait_for_completion(BOUND)
        assert op.get_status().phase is asynchdb.Phase.CANCELED
        cur.close()
    finally:
        conn.close()
    # the pin thread ends with the connection (the plugin's leak check polls for it)


def test_a_callables_free_threaded_connection_is_not_pinned() -> None:
    conn = asynchdb.connect(functools.partial(sqlite3.connect, ":memory:",
                                              check_same_thread=False))
    try:
        assert conn._ch.pin is None
        assert wait_until(lambda: not _pin_threads())  # the opener thread ends
        assert conn._ch.adapter.name == "sqlite3"  # known from the connection's class
        got, exc = in_thread(lambda: conn.execute("SELECT 1").fetchall())
        assert exc is None and got == [(1,)]
    finally:
        conn.close()
