"""PyMySQL, mysqlclient and MariaDB Connector/Python: what the shared suites do not cover.

The backend suites (test_backends.py and the others parametrized with the
``backend`` fixture) run on all three.  Here: ``asynchdb.wrap()`` of an open
connection (PyMySQL keeps its password, so it gets the real cancel;
mysqlclient and Connector/Python keep none, so an abort abandons the call and
says to use ``asynchdb.connect``), and the connection's own id being killed,
never another connection's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plugin import BOUND, require, wait_until

import asynchdb
from asynchdb import Phase
from benchmarks.backends import Backend, marker

NAMES = ("pymysql", "mysqlclient", "mariadb")


def _family(name: str) -> Backend:
    return require(name)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n)) for n in NAMES])
def test_wrap_gets_a_real_cancel_or_says_why_not(name: str) -> None:
    backend = _family(name)
    raw = backend.connect_raw()
    conn = asynchdb.wrap(raw)
    try:
        with backend.monitor() as running:
            tag = marker()
            cur = conn.cursor()
            seconds = 3.0 if name != "pymysql" else 60.0
            op = cur.execute(backend.long_sql(seconds, tag), asynch=True)
            assert wait_until(lambda: bool(running(tag)) or op.done())
            op.abort()
            assert op.wait_for_completion(BOUND)
            st = op.get_status()
            assert st.phase is Phase.CANCELED
            if name == "pymysql":
                # PyMySQL keeps host, user and password: the twin sends KILL QUERY
                assert conn.statistics()["can_cancel"] is True
                assert st.status_text is None
                assert wait_until(lambda: running(tag) == [])
            else:
                assert conn.statistics()["can_cancel"] is False
                assert st.status_text is not None
                assert st.status_text.startswith("abandoned")
                assert "asynchdb.connect" in st.status_text
                # honest: the statement really is still running on the server
                assert running(tag)
                assert wait_until(lambda: running(tag) == [], BOUND)
        # the connection goes on either way (after the abandoned call came back)
        cur.execute("SELECT 1")
        assert [tuple(r) for r in cur.fetchall()] == [(1,)]
    finally:
        conn.close()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n)) for n in NAMES])
def test_an_abort_kills_only_its_own_connections_statement(name: str) -> None:
    """Two connections run the long statement; aborting one leaves the other running."""
    backend = _family(name)
    with backend.wrapped() as one, backend.wrapped() as two, backend.monitor() as running:
        tag1, tag2 = marker(), marker()
        op1 = one.cursor().execute(backend.long_sql(60, tag1), asynch=True)
        op2 = two.cursor().execute(backend.long_sql(60, tag2), asynch=True)
        assert wait_until(lambda: bool(running(tag1)) and bool(running(tag2)))
        op1.abort()
        assert op1.wait_for_completion(BOUND)
        assert op1.get_status().phase is Phase.CANCELED
        assert wait_until(lambda: running(tag1) == [])
        time.sleep(0.2)  # give a stray KILL time to land (it must not)
        assert running(tag2) and not op2.done()
        op2.abort()
        assert op2.wait_for_completion(BOUND)
        assert op2.get_status().phase is Phase.CANCELED


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n)) for n in NAMES])
def test_a_transaction_survives_an_abort(name: str) -> None:
    """InnoDB undoes only the killed statement: earlier work stays and commits."""
    backend = _family(name)
    table = f"asy_mytx_{marker()[-8:]}"
    with backend.wrapped() as conn, backend.monitor() as running:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE {table} (x INTEGER) ENGINE=InnoDB")
        try:
            p = backend.param
            cur.execute(f"INSERT INTO {table} VALUES ({p})", (1,))
            tag = marker()
            op = cur.execute(f"UPDATE {table} SET x = x + SLEEP(60) WHERE '{tag}' <> ''",
                             asynch=True)
            assert wait_until(lambda: bool(running(tag)) or op.done())
            op.abort()
            assert op.wait_for_completion(BOUND)
            assert op.get_status().phase is Phase.CANCELED
            cur.execute(f"SELECT count(*), sum(x) FROM {table}")
            assert [tuple(int(v) for v in r) for r in cur.fetchall()] == [(1, 1)]
            conn.commit()
        finally:
            cur.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n)) for n in NAMES])
def test_a_broken_twin_connection_is_replaced(name: str) -> None:
    """The KILL QUERY twin dies (server restart, wait_timeout): the next abort opens another."""
    backend = _family(name)
    with backend.wrapped() as conn, backend.monitor() as running:
        for round_ in range(2):
            tag = marker()
            cur = conn.cursor()
            op = cur.execute(backend.long_sql(60, tag), asynch=True)
            assert wait_until(lambda tag=tag, op=op: bool(running(tag)) or op.done())
            op.abort()
            assert op.wait_for_completion(BOUND)
            assert op.get_status().phase is Phase.CANCELED, round_
            assert wait_until(lambda tag=tag: running(tag) == [])
            if round_ == 0:
                # white box: the adapter's twin, killed from outside
                twin = conn._ch.view.state.killer._twin
                assert twin is not None
                twin_id = twin.thread_id if name == "mariadb" else twin.thread_id()
                raw = backend.connect_raw(autocommit=True)
                try:
                    raw.cursor().execute(f"KILL CONNECTION {int(twin_id)}")
                finally:
                    raw.close()
        cur.execute("SELECT 1")
        assert [tuple(r) for r in cur.fetchall()] == [(1,)]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n)) for n in NAMES])
def test_an_abort_needs_no_repair_and_logs_nothing(name: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """After a killed statement the adapter's repair finds nothing to drop.

    mysqlclient's repair reads a result a Ctrl-C left unread; with none pending
    the C client answers "Commands out of sync" (2014), which means "nothing
    here", not a failed repair.
    """
    backend = _family(name)
    with backend.wrapped() as conn, backend.monitor() as running:
        cur = conn.cursor()
        tag = marker()
        with caplog.at_level("WARNING", logger="asynchdb"):
            op = cur.execute(backend.long_sql(60, tag), asynch=True)
            assert wait_until(lambda: bool(running(tag)) or op.done())
            op.abort()
            assert op.wait_for_completion(BOUND)
            assert op.get_status().phase is Phase.CANCELED
            cur.execute("SELECT 1")
            assert [tuple(r) for r in cur.fetchall()] == [(1,)]
        assert [r.getMessage() for r in caplog.records] == []


_COLLECTED = """
import gc, json, sys, weakref
import mariadb
import asynchdb
spec = json.loads(sys.argv[1])
conn = asynchdb.connect(mariadb, *spec["args"], **spec["kwargs"])
raw = conn.driver_connection
before = sys.getrefcount(raw)
freed = 0
for _ in range(5):
    cur = raw.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    cur.me = cur  # a reference cycle: only the collector frees this cursor
    ref = weakref.ref(cur)
    del cur
    gc.collect()
    freed += ref() is None
after = sys.getrefcount(raw)
rows = conn.cursor().execute("SELECT 2").fetchall()
conn.close()
print(json.dumps({"before": before, "after": after, "freed": freed,
                  "rows": [list(r) for r in rows]}))
"""


@pytest.mark.backend("mariadb")
def test_a_collected_cursor_keeps_its_connection() -> None:
    """Connector/Python 1.1.13-1.1.14: the collector freeing a cursor frees the connection.

    Its cursor's ``tp_clear`` releases a reference to the connection that
    the cursor never took: two collected cursors and the open connection is
    freed, and the next use crashes (asynchdb/_drivers/_mariadb_gc.py).  In a
    child process, so that the crash fails this test instead of ending the
    run.  Without the fix: exit -11.
    """
    backend = require("mariadb")
    args, kwargs = backend.connect_args()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _COLLECTED,
                           json.dumps({"args": list(args), "kwargs": kwargs})],
                          capture_output=True, text=True, timeout=60, check=False,
                          cwd=root)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["freed"] == 5  # the cursors are freed, not kept alive
    assert out["after"] == out["before"]  # and the connection lost no reference
    assert out["rows"] == [[2]]


def _fail(cur: asynchdb.Cursor, how: str) -> None:
    """Make ``cur`` run a statement that fails, ``how``: drop-in, deadline or asynchronous."""
    try:
        if how == "drop-in":
            cur.execute("SELEC 1")
        elif how == "deadline":
            cur.execute("SELEC 1", cancel_after=30)
        else:
            cur.execute("SELEC 1", asynch=True).result(BOUND)
    except Exception as exc:  # any driver error will do
        assert type(exc).__module__.startswith("mariadb")
        assert exc.__traceback__ is not None  # the caller still sees where it failed
    else:
        raise AssertionError("the statement did not fail")


@pytest.mark.backend("mariadb")
@pytest.mark.parametrize("how", ["drop-in", "deadline", "asynchronous"])
@pytest.mark.parametrize("where", ["caller", "thread"])
def test_a_failed_statement_leaves_its_cursor_collectable(how: str, where: str) -> None:
    """Connector/Python 1.1 keeps every exception it raises (a leak in its C code).

    Before asynchdb handed out copies (``Adapter.keeps_errors``), the kept
    exception's traceback held the frames of the failed call and, through
    them, the wrapper cursor: a released cursor was never freed, and could
    not abort its statement (the stress runner's lost aborts).
    """
    import gc
    import threading
    import weakref

    backend = require("mariadb")
    with backend.wrapped() as conn:
        cur = conn.cursor()
        if where == "caller":
            _fail(cur, how)
        else:
            failures: list[BaseException] = []

            def run(c: asynchdb.Cursor) -> None:
                try:
                    _fail(c, how)
                except BaseException as exc:  # reported on the test's thread
                    failures.append(exc)

            t = threading.Thread(target=run, args=(cur,))
            t.start()
            t.join(BOUND)
            assert not t.is_alive()
            assert not failures, failures
            del failures
        ref = weakref.ref(cur)
        del cur
        gc.collect()
        assert ref() is None, gc.get_referrers(ref())
        # the connection goes on
        assert conn.cursor().execute("SELECT 3").fetchall() == [(3,)]
