"""Ctrl-C (docs/interrupts.md): SIGINT cancels the main thread's statement in the database.

Each test runs ``tests/interrupt_child.py`` in a subprocess, waits until its
statement runs (on the server: ``pg_stat_activity`` / ``processlist``; in
process: the child's main thread is inside the call), sends SIGINT, and
checks that the statement is gone from the server, that the child got
``KeyboardInterrupt`` long before the statement would have ended, and that
its connection answers ``SELECT 1`` afterwards.  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from plugin import BOUND, require, wait_until

from benchmarks.backends import Backend, marker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess: POSIX"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interrupt_child.py")
#: The child's long statement runs this long (interrupt_child.LONG).
LONG = 20.0


class Child:
    """The child process, read line by line with a bound."""

    def __init__(self, backend: Backend, mode: str) -> None:
        self.tag = marker()
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, backend.name, self.tag, mode],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=os.environ.copy())

    def expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == word, (line, self.stderr())

    def interrupt(self) -> float:
        started = time.monotonic()
        os.kill(self.proc.pid, signal.SIGINT)
        return started

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=BOUND * 2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"the child hung after SIGINT: {err}")
        assert self.proc.returncode == 0, err
        lines = [ln for ln in out.splitlines() if ln.startswith("OUT ")]
        assert lines, (out, err)
        return dict(json.loads(lines[-1][4:]))

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def _run(backend: Backend, mode: str) -> tuple[dict[str, Any], float, Child]:
    """Start the child, interrupt its running statement; (its report, seconds to gone)."""
    child = Child(backend, mode)
    try:
        with backend.monitor() as running:
            child.expect("READY")
            child.expect("RUNNING")
            if backend.server is not None:
                assert wait_until(lambda: bool(running(child.tag)), BOUND), \
                    "the statement never showed on the server"
            sent = child.interrupt()
            gone_after = float("nan")
            if backend.server is not None:
                assert wait_until(lambda: not running(child.tag), BOUND), \
                    f"{child.tag} still running on the server after SIGINT"
                gone_after = time.monotonic() - sent
            report = child.result()
        return report, gone_after, child
    finally:
        child.kill()


#: The child's statement with a driver that has no cancel (interrupt_child.SHORT).
SHORT = 2.0
#: What a plain call raises on Ctrl-C with a driver that has no cancel: what
#: it raises raw.  ADBC swaps in its own SIGINT handler around a call on the
#: main thread, whose cancel SQLite's driver does not implement: the statement
#: runs to its end and the call raises that cancel's NotSupportedError.
RAW_NO_CANCEL = {"adbc-sqlite": "NotSupportedError('NOT_IMPLEMENTED')"}


#: Pure-Python drivers: a main-thread call runs inline with Ctrl-C held off
#: (Adapter.hold_interrupt), no thread hop.
HELD = {"pymysql", "pg8000", "clickhouse", "mariadb"}


@pytest.mark.parametrize("mode", ["plain", "cancel_after", "listener"])
def test_sigint_cancels_the_statement(backend: Backend, mode: str) -> None:
    report, gone_after, _ = _run(backend, mode)
    if not backend.can_cancel:
        # docs/interrupts.md: a driver with no cancel primitive behaves as it
        # does raw.  A plain call runs to its end; a call with a deadline runs
        # on the worker, and Ctrl-C abandons it (as abort() does) at once.
        if mode == "plain":
            assert report["raised"] == RAW_NO_CANCEL.get(backend.name, "KeyboardInterrupt"), \
                report
        else:
            assert report["raised"] == "KeyboardInterrupt", report
            assert report["elapsed"] < SHORT, report
        if mode == "listener":
            assert report["listener_stops"] == ["CANCELED"], report
        assert report["after"] == 1, report
        return
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["elapsed"] < LONG / 2, report
    assert report["after"] == 1, report
    if mode == "plain" and backend.name in HELD:
        # the call stayed on the main thread, SIGINT's handler held off, and
        # the KeyboardInterrupt came once it ended, the connection repaired
        assert report["hopped"] == 0, report
        assert report["repaired"] is True, report
    # nothing keeps the interrupted call's cursor alive once it is released
    # (the stress benchmark's drop scenario lost aborts when the watcher did)
    assert report["cursor_freed"] is True, report
    if backend.server is not None:
        assert gone_after < LONG / 2
    if mode == "listener":
        # a listener hears the abort Ctrl-C made, once
        assert report["listener_stops"] == ["CANCELED"], report
    if mode != "plain" and backend.name not in ("pyodbc-mariadb", "duckdb",
                                                "adbc-postgresql"):
        # the job path: the driver's own cancel error is the context (MariaDB's
        # KILL QUERY can make SLEEP() return early with no error, and a DuckDB
        # interrupt that lands as execute returns ends the operation CANCELED
        # with no driver error, and so does ADBC's canceled query, whose
        # execute returns normally and whose error waits for the first fetch:
        # no context then)
        assert report["context"] not in ("None", None), report


#: Drivers whose ``executemany`` runs the long statement with one empty
#: parameter set (sqlite3 takes only DML there, MariaDB Connector/Python and
#: clickhouse-driver want parameters, ADBC returns before it runs).
EXECUTEMANY = ("pyodbc-postgresql", "pyodbc-mariadb", "pyodbc-sqlite", "psycopg", "duckdb",
               "pymysql", "mysqlclient", "psycopg2", "pg8000", "apsw")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n))
                                  for n in EXECUTEMANY])
def test_sigint_cancels_a_plain_executemany(name: str) -> None:
    """Ctrl-C during ``executemany``: the call made through Channel.call is cancelled too."""
    backend = require(name)
    report, gone_after, _ = _run(backend, "executemany")
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["elapsed"] < LONG / 2, report
    assert report["after"] == 1, report
    if backend.server is not None:
        assert gone_after < LONG / 2


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.run handles SIGINT from 3.11")
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n))
                                  for n in ("sqlite3", "psycopg", "pyodbc-postgresql", "pymysql")])
def test_the_thread_of_asyncio_run_keeps_its_sigint(name: str) -> None:
    """``asyncio.run`` handles SIGINT itself: a synchronous call there is left alone.

    The statement runs to its end, then the runner's KeyboardInterrupt comes
    (its cancellation as the context), with no repair of asynchdb's.
    """
    report = _report_after_sigint(name, "asyncio-run")
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["context"] == "CancelledError()", report
    assert report["repaired"] is False, report
    assert report["elapsed"] > SHORT / 2, report  # not cancelled: a cancel takes ms
    assert report["after"] == 1, report


#: PostgreSQL drivers: a commit made slow by a deferred constraint trigger.
#: Not pyodbc: its cancel (SQLCancel) is a statement's, and a commit
#: (SQLEndTran) has none: it runs to its end, then KeyboardInterrupt (measured).
COMMIT = ("psycopg2", "psycopg", "pg8000", "adbc-postgresql")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n))
                                  for n in COMMIT])
def test_sigint_cancels_a_slow_commit(name: str) -> None:
    """Ctrl-C during ``commit()``: the trigger's sleep is cancelled, the connection usable."""
    report = _report_after_sigint(name, "commit")
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["elapsed"] < LONG / 2, report
    assert report["after"] == 1, report


# A plain asynchdb.connect to a server that accepts and never answers: the
# child prints RUNNING once the server side accepted (the driver is inside its
# connect), the parent sends SIGINT; the drivers' own timeout is 10 s.
_CONNECT_CHILD = """
import json, socket, sys, threading, time
import asynchdb
name = sys.argv[1]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(5)
port = srv.getsockname()[1]
held = []

def accept():
    conn, _ = srv.accept()
    held.append(conn)
    print("RUNNING", flush=True)

threading.Thread(target=accept, daemon=True).start()
print("READY", flush=True)
started = time.monotonic()
out = {}
try:
    if name == "psycopg2":
        import psycopg2
        asynchdb.connect(psycopg2, f"host=127.0.0.1 port={port} dbname=x user=x "
                                   "connect_timeout=10")
    elif name == "pyodbc-postgresql":
        import pyodbc
        asynchdb.connect(pyodbc, "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;"
                                 f"PORT={port};DATABASE=x;UID=x", timeout=10)
    else:
        module = {"mysqlclient": "MySQLdb", "mariadb": "mariadb"}.get(name, name)
        driver = __import__(module)
        asynchdb.connect(driver, host="127.0.0.1", port=port, user="x",
                         connect_timeout=10)
    out["raised"] = None
except KeyboardInterrupt:
    out["raised"] = "KeyboardInterrupt"
except Exception as exc:
    out["raised"] = repr(exc)
out["elapsed"] = time.monotonic() - started
print("OUT " + json.dumps(out), flush=True)
"""

#: Drivers whose connect blocks in C (Adapter.connect_on_worker), and two whose
#: connect waits in Python (inline: Python's own handler reaches it).
CONNECT = ("psycopg2", "mysqlclient", "mariadb", "pyodbc-postgresql", "pymysql", "psycopg")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n))
                                  for n in CONNECT])
def test_sigint_during_a_plain_connect_abandons_it(name: str) -> None:
    """Ctrl-C reaches a plain asynchdb.connect long before the driver's connect timeout."""
    require(name)
    proc = subprocess.Popen([sys.executable, "-c", _CONNECT_CHILD, name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        assert proc.stdout.readline().strip() == "RUNNING"
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=BOUND * 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("OUT ")]
    assert lines, (out, err)
    report = json.loads(lines[-1][4:])
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["elapsed"] < 5, report  # the driver's own timeout is 10 s


def _report_after_sigint(name: str, mode: str) -> dict[str, Any]:
    """The child's report after one SIGINT (no look at the server: ``_run`` does that)."""
    child = Child(require(name), mode)
    try:
        child.expect("READY")
        child.expect("RUNNING")
        child.interrupt()
        return child.result()
    finally:
        child.kill()


#: Drivers with ``callproc`` (psycopg2 calls a function by SELECT; the MySQL
#: family a procedure by CALL).
CALLPROC = ("psycopg2", "pymysql", "mysqlclient", "mariadb")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n))
                                  for n in CALLPROC])
def test_sigint_cancels_a_plain_callproc(name: str) -> None:
    """Ctrl-C during ``callproc`` of something that sleeps: cancelled, usable after.

    The procedure's text carries no tag to find on the server: the call's
    early end (well before its 20 s) is what shows the cancel.
    """
    report = _report_after_sigint(name, "callproc")
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["elapsed"] < LONG / 2, report
    assert report["after"] == 1, report


#: Drivers that take SIGINT over during their own calls, whatever handler the
#: program installed: ADBC swaps in its handler, which sends ADBC's cancel;
#: the program's handler never runs.  Raw, measured with the program's own
#: handler installed (2026-12-07): what the call raises, and what the next
#: ``SELECT 1`` gives (PostgreSQL's transaction is left failed, as raw).
TAKEN_OVER = {
    "adbc-postgresql": ("OperationalError('CANCELLED", "ProgrammingError('INVALID_STATE"),
    "adbc-sqlite": ("NotSupportedError('NOT_IMPLEMENTED')", 1),
}


def test_own_sigint_handler_is_left_alone(backend: Backend) -> None:
    report = _report_after_sigint(backend.name, "own-handler")
    if backend.name in TAKEN_OVER:
        # asynchdb leaves the call to the driver, as raw
        raised, after = TAKEN_OVER[backend.name]
        assert str(report["raised"]).startswith(raised), report
        assert report["handled"] == 0, report
        assert str(report["after"]).startswith(str(after)), report
        assert report["hopped"] == 0, report
        return
    # the statement ran to its end; the program's handler ran; no KeyboardInterrupt
    assert report["raised"] is None, report
    assert report["handled"] == 1, report
    assert report["after"] == 1, report
    # and it ran inline, as without Ctrl-C support (no hop to the worker)
    assert report["hopped"] == 0, report


@pytest.mark.parametrize("name", ["sqlite3", "psycopg"])
def test_waiting_on_an_operation_never_cancels_it(name: str) -> None:
    report = _report_after_sigint(name, "wait")
    assert report["raised"] == "KeyboardInterrupt", report
    # the wait was interrupted; the operation went on until the child aborted it
    assert report["op_phase_after_interrupt"] == "INITIALIZATION", report
    assert report["op_phase"] == "CANCELED", report
    assert report["after"] == 1, report


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend(n))
                                  for n in ("sqlite3", "apsw")])
def test_sigint_during_a_fetch_waiting_on_population_aborts_it(name: str) -> None:
    """The engines whose fetch does the query's work, so that rows can come slowly.

    SQLite ODBC and DuckDB run this query whole inside ``execute`` (measured:
    the operation stays in INITIALIZATION to its end), and the server drivers'
    default cursors read the whole result there too: no fetch waits on them.
    """
    report = _report_after_sigint(name, "population")
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["elapsed"] < LONG / 2, report
    assert report["op_phase"] == "CANCELED", report
    assert report["after"] == 1, report


# A driver call that fails in C with SIGINT pending: Python's own handler
# raises KeyboardInterrupt as soon as Python code runs again, which is on
# entering asynchdb's after_error (sqlite3 waiting on a locked database: the
# busy wait is in C and ends with "database is locked").  The call must still
# be claimed and repaired, and the KeyboardInterrupt say so (repaired(), what
# asynchdb.sqlalchemy reads to keep the connection in its pool).
_KI_ON_ENTRY = """
import json, os, signal, sqlite3, sys, tempfile, threading, time
import asynchdb
from asynchdb import _interrupt
path = os.path.join(tempfile.mkdtemp(), "locked.db")
holder = sqlite3.connect(path, isolation_level=None)
holder.execute("CREATE TABLE t (x)")
holder.execute("BEGIN EXCLUSIVE")  # every other connection now waits, in C
conn = asynchdb.wrap(sqlite3.connect(path, timeout=2.0))
cur = conn.cursor()
ch = conn._ch
main = threading.main_thread().ident

def send():
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (
            ch.inline_kind == "execute" and ch.owned_by(main)):
        time.sleep(0.001)
    time.sleep(0.2)  # well inside sqlite3's 2 s busy wait, in C
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=send, daemon=True).start()
out = {}
try:
    cur.execute("SELECT * FROM t")
    out["raised"] = None
except KeyboardInterrupt as ki:
    out["raised"] = "KeyboardInterrupt"
    out["context"] = repr(ki.__context__)
    out["repaired"] = _interrupt.repaired(ki)
holder.execute("COMMIT")
cur.execute("SELECT count(*) FROM t")
out["after"] = cur.fetchall()[0][0]
conn.close()
print(json.dumps(out))
"""


def test_a_keyboard_interrupt_on_entering_after_error_still_repairs() -> None:
    proc = subprocess.run([sys.executable, "-c", _KI_ON_ENTRY], capture_output=True,
                          text=True, timeout=BOUND * 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["raised"] == "KeyboardInterrupt", report
    assert "database is locked" in report["context"], report
    assert report["repaired"] is True, report
    assert report["after"] == 0, report


#: A pure-Python driver held off from Ctrl-C (Adapter.hold_interrupt): its
#: execute busy-waits in Python code and is "broken" (as PyMySQL's protocol
#: is) if a KeyboardInterrupt is raised inside it.  ``argv[1]`` says whether
#: the adapter's cancel stops it ("cancel") or the call runs to its end
#: ("finish", a cancel that reached the server too late).
_HELD = """
import json, os, signal, sys, threading, time, types
import asynchdb
from asynchdb import _interrupt
from asynchdb.adapters import Adapter

holddb = types.ModuleType("holddb")
sys.modules["holddb"] = holddb


class Canceled(Exception):
    pass


class Cursor:
    description = None
    rowcount = -1

    def __init__(self, conn):
        self.conn = conn

    def execute(self, seconds):
        self.conn.inside = True
        self.conn.broken = True  # until the call ends as a driver's call should
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.conn.cancelled:
                self.conn.cancelled = self.conn.broken = False
                raise Canceled("canceled")
        self.conn.broken = False

    def fetchall(self):
        if self.conn.broken:
            raise Canceled("protocol broken")
        return [(1,)]

    def close(self):
        pass


class Conn:
    cancelled = broken = inside = False
    repairs = 0

    def cursor(self):
        return Cursor(self)

    def commit(self):
        pass

    def rollback(self):
        pass

    def close(self):
        pass


for cls in (Cursor, Conn, Canceled):
    cls.__module__ = "holddb"
    setattr(holddb, cls.__name__, cls)
holddb.connect = Conn
honour = sys.argv[1] == "cancel"


class HoldAdapter(Adapter):
    name = "holddb"
    can_cancel = True
    interrupt_on_worker = True
    hold_interrupt = True

    def cancel(self, conn, call):
        if honour:
            conn.raw.cancelled = True

    def is_cancel_error(self, exc):
        return isinstance(exc, Canceled)

    def after_abort(self, conn):
        conn.raw.repairs += 1


asynchdb.adapters.register("holddb", HoldAdapter)
conn = asynchdb.connect(holddb)
raw = conn.driver_connection
cur = conn.cursor()


def send():
    deadline = time.monotonic() + 10
    while not raw.inside and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=send, daemon=True).start()
out = {}
started = time.monotonic()
try:
    cur.execute(1.0)
    out["raised"] = None
except KeyboardInterrupt as ki:
    out["raised"] = "KeyboardInterrupt"
    out["context"] = repr(ki.__context__)
    out["repaired"] = _interrupt.repaired(ki)
out["elapsed"] = time.monotonic() - started
out["handler_back"] = signal.getsignal(signal.SIGINT) is signal.default_int_handler
out["hopped"] = cur._ch.counters["hopped"]
out["repairs"] = raw.repairs
out["after"] = cur.execute(0.0).fetchall()[0][0]
conn.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("cancel", ["cancel", "finish"])
def test_a_held_call_gets_ctrl_c_only_once_it_ended(cancel: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _HELD, cancel], capture_output=True,
                          text=True, timeout=BOUND * 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # never raised inside the driver (it would stay broken: "after" fails)
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["after"] == 1, report
    assert report["hopped"] == 0, report
    assert report["handler_back"] is True, report
    assert report["repaired"] is True and report["repairs"] == 1, report
    if cancel == "cancel":
        assert report["context"] == "Canceled('canceled')", report
        assert report["elapsed"] < 0.9, report
    else:  # the call ran to its end, and only then came the interrupt
        assert report["context"] == "None", report
        assert report["elapsed"] >= 1.0, report


#: The start of a child script whose watcher thread reads the socket only once
#: ``late`` is set (as when it waits for the GIL under load).
_HOLD_THE_WATCHER = """
import json, os, signal, sys, threading, time
sys.path.insert(0, os.getcwd())
from asynchdb import _interrupt
from benchmarks.backends import BY_NAME
late = threading.Event()
wake = _interrupt._wake

def late_wake(sock):
    late.wait(10)  # the watcher thread, held back
    return wake(sock)

_interrupt._wake = late_wake
"""


#: A Ctrl-C taken in a wait, read late by the watcher (as under load, when the
#: watcher thread waits for the GIL): the main thread's next statement must
#: not be cancelled as if it were the interrupted call.  The watcher reads the
#: socket only once the main thread is inside its next statement (or a bound
#: passed).  ``argv[2]``: ``deadline`` (a synchronous call with
#: ``cancel_after=``: the wait is the job's, on the main thread) or ``result``
#: (``op.result()``: waiting never cancels; the next statement runs on a
#: second connection).
_LATE_WATCHER = _HOLD_THE_WATCHER + """
b, mode = BY_NAME[sys.argv[1]], sys.argv[2]
conn = b.connect()
other = b.connect() if mode == "result" else conn
main = threading.main_thread().ident
out = {"next_seen_inline": False}

def send():
    deadline = time.monotonic() + 10
    while conn._ch.running is None and time.monotonic() < deadline:
        time.sleep(0.001)  # until the statement runs on the worker
    os.kill(os.getpid(), signal.SIGINT)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if other._ch.inline_kind == "execute" and other._ch.owned_by(main):
            out["next_seen_inline"] = True
            break
        time.sleep(0.001)
    late.set()

helper = threading.Thread(target=send, daemon=True)
helper.start()
cur = conn.cursor()
try:
    if mode == "deadline":
        cur.execute(b.long_sql(20), cancel_after=60)
    else:
        op = cur.execute(b.long_sql(20), asynch=True)
        op.result()
    out["first"] = None
except KeyboardInterrupt:
    out["first"] = "KeyboardInterrupt"
try:
    ncur = other.cursor()
    ncur.execute(b.long_sql(0.5))
    ncur.fetchall()
    out["next"] = "ended"
except KeyboardInterrupt:
    out["next"] = "KeyboardInterrupt"
except Exception as exc:
    out["next"] = repr(exc)
helper.join(10)
if mode == "result":
    op.abort()
    op.wait_for_completion(10)
    other.close()
conn.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("mode", ["deadline", "result"])
@pytest.mark.parametrize("name", ["pyodbc-sqlite", "psycopg"])
def test_a_ctrl_c_taken_in_a_wait_never_cancels_the_next_statement(name: str, mode: str) -> None:
    require(name)
    proc = subprocess.run([sys.executable, "-c", _LATE_WATCHER, name, mode],
                          capture_output=True, text=True, timeout=BOUND * 2, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["first"] == "KeyboardInterrupt", report
    assert report["next_seen_inline"] is True, report
    assert report["next"] == "ended", report


#: A Ctrl-C whose ``KeyboardInterrupt`` Python raised in the program's own code,
#: between two statements, read late by the watcher: the program caught it and
#: started its next statement, which must run to its end.  The watcher is held
#: back until the main thread is inside that statement (or a bound passed), as
#: when it waits for the GIL under load.  Nothing of asynchdb runs when the
#: ``KeyboardInterrupt`` is raised, so only the signal's time, against the
#: call's, can tell the watcher it is old news (docs/interrupts.md).
_BETWEEN = _HOLD_THE_WATCHER + """
b, mode = BY_NAME[sys.argv[1]], sys.argv[2]
conn = b.connect()
cur = conn.cursor()
cur.execute(b.long_sql(0.0))  # the connection works; the watcher is armed
cur.fetchall()
main = threading.main_thread().ident
out = {"inline_at_wake": None}

def inside():
    return conn._ch.inline is not None and conn._ch.owned_by(main)

def let_the_watcher_go():
    # until the main thread is inside its statement: "during" sends SIGINT then
    deadline = time.monotonic() + 2.0
    while not inside() and time.monotonic() < deadline:
        time.sleep(0.001)
    if mode == "during":
        os.kill(os.getpid(), signal.SIGINT)
    out["inline_at_wake"] = inside()  # what the late watcher will find
    late.set()

if mode == "between":
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000_000):  # the program's own code: Python's handler raises here
            pass
        out["first"] = None
    except KeyboardInterrupt:
        out["first"] = "KeyboardInterrupt"
helper = threading.Thread(target=let_the_watcher_go, daemon=True)
helper.start()
started = time.monotonic()
try:
    cur.execute(b.long_sql(0.5 if mode == "between" else 20))
    cur.fetchall()
    out["next"] = "ended"
except KeyboardInterrupt:
    out["next"] = "KeyboardInterrupt"
except Exception as exc:
    out["next"] = repr(exc)
out["elapsed"] = time.monotonic() - started
helper.join(10)
cur.execute(b.long_sql(0.0))
out["after"] = len(cur.fetchall())
conn.close()
print(json.dumps(out))
"""


def _between(backend: Backend, mode: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _BETWEEN, backend.name, mode],
                          capture_output=True, text=True, timeout=BOUND * 3, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _inline_on_the_main_thread(backend: Backend) -> bool:
    """Whether a plain main-thread call registers inline (ADBC's hop to the worker)."""
    return backend.can_cancel and not backend.name.startswith("adbc")


def test_a_ctrl_c_caught_between_statements_never_cancels_the_next(backend: Backend) -> None:
    report = _between(backend, "between")
    assert report["first"] == "KeyboardInterrupt", report
    assert report["next"] == "ended", report
    if backend.server is not None:
        # ran whole: MariaDB's KILL QUERY makes SLEEP() return early with no error
        assert report["elapsed"] >= 0.45, report
    assert report["after"] == 1, report
    if _inline_on_the_main_thread(backend):
        # the late watcher found the next statement registered (the race is real)
        assert report["inline_at_wake"] is True, report


def test_a_late_watcher_still_cancels_the_call_the_signal_came_in(backend: Backend) -> None:
    """The control: with the watcher held back the same way, a SIGINT sent while the
    statement runs still cancels it (a filter that dropped every late signal passes the
    test above)."""
    if not backend.can_cancel:
        pytest.skip("no cancel: Ctrl-C behaves as raw (test_sigint_cancels_the_statement)")
    report = _between(backend, "during")
    assert report["next"] == "KeyboardInterrupt", report
    assert report["elapsed"] < LONG / 4, report
    assert report["after"] == 1, report
    if _inline_on_the_main_thread(backend):
        assert report["inline_at_wake"] is True, report


#: MariaDB Connector/Python's ``execute`` is Python around two C calls: one
#: sends the statement (``_execute_text``), the next reads its response
#: (``_readresponse``).  A ``KeyboardInterrupt`` raised between them leaves
#: the response unread: a KILL re-sent only while the call runs is no longer
#: sent, the statement runs on, and the connection's next statement waits
#: behind it (the stress runner's one deadlock in 100,000 operations,
#: 2026-12-07).  The child puts the SIGINT exactly there, by sending it from
#: a wrapper around ``_readresponse`` (the real driver runs; only the moment
#: is chosen).  Held off while the call runs (Adapter.hold_interrupt), it
#: lands once ``execute`` returned.
_BETWEEN_SEND_AND_READ = """
import json, os, signal, sys, threading, time
sys.path.insert(0, os.getcwd())
import mariadb.cursors
from benchmarks.backends import BY_NAME, marker
b = BY_NAME["mariadb"]
tag = marker()
read = mariadb.cursors.Cursor._readresponse
def _readresponse(self):
    if tag in (self.statement or ""):
        os.kill(os.getpid(), signal.SIGINT)  # Python's handler runs right here
        sum(range(1000))
    return read(self)
mariadb.cursors.Cursor._readresponse = _readresponse
conn = b.connect()
cur = conn.cursor()
out = {}
started = time.monotonic()
try:
    cur.execute(b.long_sql(30, tag))
    out["raised"] = None
except KeyboardInterrupt:
    out["raised"] = "KeyboardInterrupt"
except Exception as exc:
    out["raised"] = repr(exc)
out["elapsed"] = time.monotonic() - started
with b.monitor() as running:
    deadline = time.monotonic() + 10
    while running(tag) and time.monotonic() < deadline:
        time.sleep(0.01)
    out["still_running"] = bool(running(tag))
started = time.monotonic()
other = conn.cursor()
try:
    other.execute("SELECT 42", cancel_after=10)
    out["next"] = [tuple(r) for r in other.fetchall()]
except BaseException as exc:
    out["next"] = repr(exc)
out["next_elapsed"] = time.monotonic() - started
conn.close()
print(json.dumps(out))
"""


def test_ctrl_c_between_sending_and_reading_leaves_mariadb_in_step() -> None:
    require("mariadb")
    proc = subprocess.run([sys.executable, "-c", _BETWEEN_SEND_AND_READ],
                          capture_output=True, text=True, timeout=BOUND * 4, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["raised"] == "KeyboardInterrupt", report
    assert report["elapsed"] < LONG / 2, report
    assert report["still_running"] is False, report  # gone from the server
    assert report["next"] == [[42]], report
    assert report["next_elapsed"] < 5, report
