"""A deterministic fake DB-API driver for state-machine tests.

Statements are tiny commands, so a test decides exactly when each one starts,
blocks and ends, with Events instead of sleeps::

    from asynchdb import testing as fake

    raw = fake.connect()
    conn = asynchdb.wrap(raw)
    op = conn.cursor().execute("block g1", asynch=True)
    raw.started("g1").wait(5)       # the worker is inside the driver call
    raw.release("g1")               # let it finish

Commands (one per ``execute``):

* ``block NAME``: signal ``started(NAME)``, then wait until ``release(NAME)``
  or a cancel; a cancel raises ``OperationalError("canceled")``.
* ``hang NAME``: like ``block`` but deaf to cancels (only ``release`` ends it).
* ``fail``: raise ``ProgrammingError``.
* ``rows N``: a result set of N rows ``(i,)``.
* ``udf NAME``: call the function ``create_function(NAME, fn)`` registered,
  inside the statement and on the calling thread (as sqlite3 runs a user
  function); one row, its return value.
* several commands separated by ``;`` form a batch: ``nextset()`` runs the next.
* ``callproc("double", params)`` returns the parameters doubled (output parameters);
  ``callproc("block NAME")`` blocks like the statement.
* anything else: runs at once, no rows.

Like real drivers, a cancel sent while no statement runs is lost (counted in
``lost_cancels``).  ``connect(can_cancel=False)`` models a driver with no
cancel primitive.  Every executed statement and its outcome is appended to
``log``.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from .adapters import Adapter, CallView, ConnectionView

__all__ = [
    "MAX_BLOCK", "DatabaseError", "Error", "FakeAdapter", "FakeConnection", "FakeCursor",
    "InterfaceError", "OperationalError", "ProgrammingError", "Warning", "apilevel",
    "connect", "paramstyle", "threadsafety",
]

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

#: Seconds a blocked statement waits at most, so a broken test cannot hang CI.
MAX_BLOCK = 30.0


class Error(Exception):
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class Warning(Exception):
    pass


class FakeAdapter(Adapter):
    """How asynchdb drives the fake: cancel() is the driver's cancel primitive."""

    name = "fake"
    #: The fake loses a cancel sent before the statement runs, like pyodbc and
    #: psycopg: re-issue it, as their adapters do, so such an abort is not lost.
    reissue_cancel = 0.05

    def prepare(self, conn: ConnectionView) -> None:
        self.can_cancel = bool(conn.raw.can_cancel)

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        conn.raw.cancel()

    def is_cancel_error(self, exc: BaseException) -> bool:
        return isinstance(exc, OperationalError) and exc.args == ("canceled",)


__asynchdb_adapter__ = FakeAdapter


class FakeConnection:
    """A connection whose statements block on gates the test controls."""

    __asynchdb_adapter__ = FakeAdapter

    def __init__(self, can_cancel: bool = True) -> None:
        self.can_cancel = can_cancel
        self._cond = threading.Condition()
        self._started: dict[str, threading.Event] = {}
        self._open: set[str] = set()
        self._cancel_flag = False
        self._running: Optional[str] = None
        self.log: list[tuple[str, str]] = []
        self.lost_cancels = 0
        self.closed = False
        self.closed_by: Optional[int] = None
        self.threads: set[int] = set()
        self.commits = 0
        self.functions: dict[str, Any] = {}

    # -- test controls ---------------------------------------------------------
    def started(self, name: str) -> threading.Event:
        """Set when a ``block NAME`` / ``hang NAME`` statement starts."""
        with self._cond:
            return self._started.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        """Let ``block NAME`` / ``hang NAME`` finish (now or when it starts)."""
        with self._cond:
            self._open.add(name)
            self._cond.notify_all()

    def cancel(self) -> None:
        """The driver's cancel primitive; lost when nothing is running."""
        with self._cond:
            if self._running is None:
                self.lost_cancels += 1
                return
            self._cancel_flag = True
            self._cond.notify_all()

    def create_function(self, name: str, fn: Any) -> None:
        """Register ``fn()`` for ``udf NAME`` statements (sqlite3's user functions)."""
        self.functions[name] = fn

    # -- DB-API ----------------------------------------------------------------
    def cursor(self) -> FakeCursor:
        self._check()
        return FakeCursor(self)

    def commit(self) -> None:
        self._check()
        self.commits += 1

    def rollback(self) -> None:
        self._check()

    def close(self) -> None:
        self.closed = True
        self.closed_by = threading.get_ident()

    def _check(self) -> None:
        if self.closed:
            raise ProgrammingError("Cannot operate on a closed connection.")

    def _run(self, sql: str) -> list[tuple[Any, ...]]:
        self._check()
        self.threads.add(threading.get_ident())
        words = sql.split()
        cmd = words[0] if words else ""
        arg = words[1] if len(words) > 1 else ""
        if cmd in ("block", "hang"):
            started = self.started(arg)
            with self._cond:
                self._running = sql
                self._cancel_flag = False
                started.set()
                try:
                    ended = self._cond.wait_for(
                        lambda: arg in self._open or (cmd == "block" and self._cancel_flag),
                        timeout=MAX_BLOCK)
                    if not ended:
                        raise OperationalError("fake statement blocked for too long")
                    if arg not in self._open:
                        self.log.append((sql, "canceled"))
                        raise OperationalError("canceled")
                finally:
                    self._running = None
                    self._cancel_flag = False
            self.log.append((sql, "ok"))
            return []
        if cmd == "fail":
            self.log.append((sql, "failed"))
            raise ProgrammingError("fail")
        if cmd == "udf":
            value = self.functions[arg]()  # inside the statement, on this thread
            self.log.append((sql, "ok"))
            return [(value,)]
        self.log.append((sql, "ok"))
        if cmd == "rows":
            return [(i,) for i in range(int(arg))]
        return []


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.connection = conn
        self.arraysize = 1
        self.description: Optional[tuple[Any, ...]] = None
        self.rowcount = -1
        self.lastrowid: Optional[int] = None
        self._rows: list[tuple[Any, ...]] = []
        self._sets: list[list[tuple[Any, ...]]] = []
        self._pending: list[str] = []
        self.closed = False

    def _check(self) -> None:
        if self.closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")
        self.connection._check()

    def execute(self, sql: str, params: Any = None) -> FakeCursor:
        """Run one command, or several separated by ';' (a batch: see nextset)."""
        self._check()
        parts = [p.strip() for p in sql.split(";") if p.strip()] or [""]
        self._sets = [self.connection._run(parts[0])]
        self._pending = parts[1:]
        self._show(self._sets[0])
        return self

    def _show(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows
        self.description = (("x", None, None, None, None, None, None),) if rows else None
        self.rowcount = len(rows)

    def nextset(self) -> Optional[bool]:
        """Move to the next statement of a batch; None at the end (PEP 249)."""
        self._check()
        if not self._pending:
            self._show([])
            return None
        sql, self._pending = self._pending[0], self._pending[1:]
        self._show(self.connection._run(sql))
        return True

    def callproc(self, procname: str, parameters: Any = ()) -> list[Any]:
        """``double``: output parameters are the inputs doubled; ``block NAME`` blocks."""
        self._check()
        params = list(parameters)
        if procname == "double":
            self.connection._run("call double")
            return [p * 2 for p in params]
        self._show(self.connection._run(procname))
        return params

    def executemany(self, sql: str, seq: Any) -> FakeCursor:
        self._check()
        n = 0
        for _ in seq:
            self.connection._run(sql)
            n += 1
        self.rowcount = n
        return self

    def fetchone(self) -> Optional[tuple[Any, ...]]:
        self._check()
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: Optional[int] = None) -> list[tuple[Any, ...]]:
        self._check()
        n = self.arraysize if size is None else size
        out, self._rows = self._rows[:n], self._rows[n:]
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._check()
        out, self._rows = self._rows, []
        return out

    def setinputsizes(self, sizes: Any) -> None:
        self._check()

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        self._check()

    def close(self) -> None:
        self.closed = True


def connect(can_cancel: bool = True) -> FakeConnection:
    """Open a fake connection."""
    return FakeConnection(can_cancel=can_cancel)
