"""Re-entrant use: driver callbacks that use the connection while a call runs.

A callback that the driver runs on the calling thread in the middle of a call
(a sqlite3 user function, a generator feeding ``executemany``, the listener of
a synchronous call) may use the same connection exactly as far as the raw
driver allows: it runs, or it gets the driver's own error.  It never
deadlocks.  Each case is checked against the raw driver doing the same thing,
and runs under a watchdog: a regression fails in seconds instead of hanging.
"""

from __future__ import annotations

import functools
import gc
import sqlite3
from typing import Any, Callable

import pytest
from plugin import WATCHDOG, bounded

import asynchdb
from asynchdb import Phase
from asynchdb import testing as fake


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """What a call did: ("ok", value) or ("error", (class, message))."""
    try:
        return "ok", fn()
    except Exception as exc:  # compared between raw and wrapped
        return "error", (type(exc), str(exc))


def raw_then_wrapped(run: Callable[[Any], Any], **kwargs: Any) -> tuple[Any, Any]:
    """``run(conn)`` on a raw sqlite3 connection, then on a wrapped one under the watchdog.

    Both in memory, opened with ``kwargs``; returns both results, raw first.
    """
    raw = sqlite3.connect(":memory:", **kwargs)
    try:
        expected = run(raw)
    finally:
        raw.close()

    def scenario() -> Any:
        conn = asynchdb.connect(sqlite3, ":memory:", **kwargs)
        try:
            return run(conn)
        finally:
            conn.close()

    return expected, bounded(scenario)


# ---------------------------------------------------------------------------
# sqlite3 user functions
# ---------------------------------------------------------------------------
def _function_queries_connection(conn: Any, *, same_cursor: bool, asynch: bool) -> Any:
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    cur = conn.cursor()

    def f(x: Any) -> Any:
        c = cur if same_cursor else conn.cursor()
        return c.execute("SELECT sum(x) FROM t").fetchone()[0] + x

    conn.create_function("f", 1, f)

    def run() -> Any:
        if asynch:
            op = cur.execute("SELECT f(x) FROM t ORDER BY x", asynch=True)
            return op.result(WATCHDOG).fetchall()
        return cur.execute("SELECT f(x) FROM t ORDER BY x").fetchall()

    return outcome(run)


@pytest.mark.parametrize("same_cursor", [False, True], ids=["other-cursor", "same-cursor"])
def test_user_function_that_queries_the_connection(same_cursor: bool) -> None:
    expected, got = raw_then_wrapped(functools.partial(
        _function_queries_connection, same_cursor=same_cursor, asynch=False))
    if same_cursor:
        # sqlite3's own refusal ("Recursive use of cursors not allowed"),
        # surfacing as the failed user function
        assert expected[0] == "error"
    else:
        assert expected == ("ok", [(7,), (8,), (9,)])
    assert got == expected


def test_user_function_that_queries_the_connection_asynchronously() -> None:
    """On the worker the callback runs nested too (the worker owns the connection)."""
    def scenario() -> Any:
        conn = asynchdb.connect(sqlite3, ":memory:", check_same_thread=False)
        try:
            return _function_queries_connection(conn, same_cursor=False, asynch=True)
        finally:
            conn.close()

    assert bounded(scenario) == ("ok", [(7,), (8,), (9,)])


@pytest.mark.parametrize("asynch", [False, True], ids=["sync", "asynch"])
def test_user_function_that_queries_the_connection_on_the_fake_driver(asynch: bool) -> None:
    """The fake's ``udf`` runs a function inside the statement, as sqlite3 does."""
    def scenario() -> Any:
        conn = asynchdb.wrap(fake.connect())
        raw = conn.driver_connection
        try:
            def f() -> Any:
                # another cursor of the same connection, nested in the call
                return conn.cursor().execute("rows 3").fetchall()

            raw.create_function("f", f)
            cur = conn.cursor()
            if asynch:
                cur.execute("udf f", asynch=True).result(WATCHDOG)
            else:
                cur.execute("udf f")
            return cur.fetchall(), [sql for sql, _ in raw.log]
        finally:
            conn.close()

    rows, log = bounded(scenario)
    assert rows == [([(0,), (1,), (2,)],)]
    assert log == ["rows 3", "udf f"]  # the nested statement ran inside the outer one


def test_user_function_that_closes_its_own_cursor_gets_sqlite3s_error() -> None:
    """Closing the running cursor from inside it is refused by sqlite3, not swallowed."""
    def run(conn: Any) -> Any:
        cur = conn.cursor()
        seen: list[Any] = []

        def f(x: Any) -> Any:
            seen.append(outcome(cur.close))
            return x

        conn.create_function("f", 1, f)
        cur.execute("SELECT f(1)").fetchall()
        return seen

    expected, got = raw_then_wrapped(run)
    assert expected and expected[0][0] == "error"
    assert got == expected


def _function_writes_then_cursor_dropped(conn: Any) -> Any:
    """A user function writes to the table its SELECT reads; the cursor is dropped
    after the first row; then the table is dropped (no lock may be left).

    The shape of CPython's ``test_table_lock_cursor_non_readonly_select``.
    Only the first row is stepped: reading on would feed the SELECT its own
    inserts without end.
    """
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5)])
    conn.commit()
    calls: list[Any] = []

    def dup(x: Any) -> Any:
        calls.append(x)
        conn.execute("INSERT INTO t VALUES (?)", (x,))
        return x

    conn.create_function("dup", 1, dup)
    cur = conn.execute("SELECT dup(x) FROM t")
    del cur
    gc.collect()
    dropped = outcome(lambda: conn.execute("DROP TABLE t"))
    conn.commit()
    return calls, dropped[0]


def test_user_function_that_writes_to_the_table_it_reads() -> None:
    expected, got = raw_then_wrapped(_function_writes_then_cursor_dropped)
    assert expected == ([0], "ok")
    assert got == expected


def _converter_reads_the_running_cursor(conn: Any) -> Any:
    """A column converter reads on the cursor that is converting the row.

    The shape of CPython's ``test_recursive_cursor_iter``: sqlite3 refuses
    the recursive use of the cursor with its own ProgrammingError.
    """
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (x PEEK)")
    cur.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    sqlite3.register_converter("PEEK", lambda b: next(cur))
    try:
        return outcome(lambda: cur.execute("SELECT x FROM t").fetchall())
    finally:
        del sqlite3.converters["PEEK"]


def test_converter_that_reads_the_running_cursor() -> None:
    expected, got = raw_then_wrapped(_converter_reads_the_running_cursor,
                                     detect_types=sqlite3.PARSE_DECLTYPES)
    assert expected[0] == "error" and expected[1][0] is sqlite3.ProgrammingError
    assert got == expected


# ---------------------------------------------------------------------------
# a generator feeding executemany
# ---------------------------------------------------------------------------
def _generator_uses_connection(conn: Any, asynch: bool) -> Any:
    conn.execute("CREATE TABLE src (x)")
    conn.execute("CREATE TABLE dst (x)")
    conn.executemany("INSERT INTO src VALUES (?)", [(i,) for i in range(5)])

    def rows() -> Any:
        look = conn.cursor()
        for i in range(5):
            (x,) = look.execute("SELECT x FROM src WHERE x = ?", (i,)).fetchone()
            yield (x * 10,)

    cur = conn.cursor()
    if asynch:
        op = cur.executemany("INSERT INTO dst VALUES (?)", rows(), asynch=True)
        op.result(WATCHDOG)
        assert op.get_status().phase == Phase.COMPLETE
    else:
        cur.executemany("INSERT INTO dst VALUES (?)", rows())
    return conn.execute("SELECT x FROM dst ORDER BY x").fetchall()


@pytest.mark.parametrize("asynch", [False, True], ids=["sync", "asynch"])
def test_generator_feeding_executemany_uses_the_connection(asynch: bool) -> None:
    raw = sqlite3.connect(":memory:")
    expected = _generator_uses_connection(raw, asynch=False)
    raw.close()
    assert expected == [(0,), (10,), (20,), (30,), (40,)]

    def scenario() -> Any:
        conn = asynchdb.connect(sqlite3, ":memory:", check_same_thread=False)
        try:
            return _generator_uses_connection(conn, asynch)
        finally:
            conn.close()

    assert bounded(scenario) == expected


def _generator_uses_the_same_cursor(conn: Any) -> Any:
    """The generator feeding ``executemany`` executes on the very cursor it feeds.

    The shape of CPython's ``test_recursive_cursor_use``: sqlite3 refuses it
    with its own ProgrammingError.
    """
    cur = conn.cursor()
    cur.execute("CREATE TABLE a (x)")
    cur.execute("CREATE TABLE b (y)")

    def rows() -> Any:
        cur.execute("INSERT INTO a VALUES (?)", (1,))
        yield (1,)

    return outcome(lambda: cur.executemany("INSERT INTO b VALUES (?)", rows()))


def test_generator_feeding_executemany_uses_the_same_cursor() -> None:
    expected, got = raw_then_wrapped(_generator_uses_the_same_cursor)
    assert expected[0] == "error" and expected[1][0] is sqlite3.ProgrammingError
    assert got == expected


@pytest.mark.parametrize("asynch", [False, True], ids=["sync", "asynch"])
def test_generator_feeding_executemany_on_the_fake_driver(asynch: bool) -> None:
    def scenario() -> Any:
        conn = asynchdb.wrap(fake.connect())
        raw = conn.driver_connection
        try:
            def params() -> Any:
                for i in range(3):
                    conn.cursor().execute(f"noop inner{i}")
                    yield (i,)

            cur = conn.cursor()
            if asynch:
                cur.executemany("noop outer", params(), asynch=True).result(WATCHDOG)
            else:
                cur.executemany("noop outer", params())
            return [sql for sql, _ in raw.log]
        finally:
            conn.close()

    log = bounded(scenario)
    assert log.count("noop outer") == 3
    assert [s for s in log if s.startswith("noop inner")] == [f"noop inner{i}" for i in range(3)]


# ---------------------------------------------------------------------------
# the listener of a synchronous call
# ---------------------------------------------------------------------------
class _UsesConnection:
    """A listener whose on_progress makes a synchronous call on the same connection."""

    def __init__(self, conn: Any, sql: str) -> None:
        self.conn = conn
        self.sql = sql
        self.results: list[Any] = []

    def on_progress(self, op: Any, status: Any) -> None:
        if status.phase == Phase.INITIALIZATION and not self.results:
            self.results.append(self.conn.cursor().execute(self.sql).fetchall())


def test_listener_of_a_synchronous_call_uses_the_connection_sqlite3() -> None:
    def scenario() -> Any:
        conn = asynchdb.connect(sqlite3, ":memory:")
        try:
            listener = _UsesConnection(conn, "SELECT 41 + 1")
            rows = conn.cursor().execute("SELECT 1", listener=listener).fetchall()
            return rows, listener.results
        finally:
            conn.close()

    assert bounded(scenario) == ([(1,)], [[(42,)]])


def test_listener_of_a_synchronous_call_uses_the_connection_fake() -> None:
    def scenario() -> Any:
        conn = asynchdb.wrap(fake.connect())
        try:
            listener = _UsesConnection(conn, "rows 2 inner")
            cur = conn.cursor()
            cur.execute("rows 1 outer", listener=listener, cancel_after=WATCHDOG)
            return cur.fetchall(), listener.results
        finally:
            conn.close()

    assert bounded(scenario) == ([(0,)], [[(0,), (1,)]])


def test_listener_of_a_synchronous_connect_uses_the_new_connection() -> None:
    """A sync connect with a listener runs on the worker; on_stop may use the connection."""
    seen: list[Any] = []

    class OnStop:
        def on_stop(self, op: Any, status: Any) -> None:
            conn = op.result(0)
            seen.append(conn.cursor().execute("SELECT 5").fetchall())

    def scenario() -> Any:
        conn = asynchdb.connect(sqlite3, ":memory:", check_same_thread=False, listener=OnStop())
        conn.close()
        return seen

    assert bounded(scenario) == [[(5,)]]
