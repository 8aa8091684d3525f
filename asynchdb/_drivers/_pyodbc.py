"""pyodbc: abort with ``SQLCancel`` on the statement handle that runs the call.

``Cursor.cancel()`` is pyodbc's thread-safe cancel primitive: it calls
``SQLCancel`` on the cursor's statement handle with the GIL released, from the
aborting thread, while the worker is inside ``SQLExecDirect`` (or
``SQLFetch``, ``SQLMoreResults``).  What the executing thread gets depends on
the ODBC driver (measured, docs/drivers.md), all ``pyodbc.Error`` with a
SQLSTATE:

=====================  ================================================
driver                 executing thread gets
=====================  ================================================
psqlODBC (PostgreSQL)  57014 ``canceling statement due to user request``
MariaDB Connector      HY018 ``Query execution was interrupted (1317)``;
                       ``BENCHMARK()`` just returns early, no error
                       (then the operation ends COMPLETE)
SQLite ODBC            HY000 ``interrupted (9)``
others (standard)      HY008 ``Operation canceled``, 70100
=====================  ================================================

Hazards handled here and in the engine:

* A cancel that lands before the statement reached the driver does nothing:
  the engine re-issues it every :attr:`PyodbcAdapter.reissue_cancel` seconds
  while the call still runs.
* unixODBC's ``SQLCancel`` on a statement that is *not* executing acts as
  ``SQLFreeStmt(SQL_CLOSE)``: a cancel that lands as the statement finishes
  closes its result set.  If that happens inside pyodbc's ``execute`` (while it
  describes the columns) the call fails with HY010 "Function sequence error":
  with an abort requested that is the cancel's doing, so the operation ends
  CANCELED (:meth:`PyodbcAdapter.is_cancel_error`).  If it happens after the
  last ODBC call of ``execute``, the call returns normally but every fetch would
  fail with HY010; whether that happened cannot be observed, so a call that
  returned a result set although its cancel was sent ends CANCELED too
  (:meth:`PyodbcAdapter.result_lost`).  A call without a result set (DML, DDL)
  ends COMPLETE: pyodbc read its row count before returning.  An HY010 with no
  abort requested stays the driver's error.
* psqlODBC in manual-commit mode (pyodbc's default) wraps every statement in
  a savepoint and undoes a canceled one with ``ROLLBACK TO`` it, inside the
  same call; a re-issued cancel that lands on that rollback cancels it too and
  leaves the transaction failed (25P02 on every later statement; 1 in about
  20,000 stress operations).  :meth:`PyodbcAdapter.after_abort` probes after
  every abort and repairs it (the savepoint, else the whole transaction).
* psqlODBC's ``SQLCancel`` from the aborting thread crashed the process once
  (``double free or corruption``, inside ``SQLCancel``, in about 400,000
  stress operations over four runs).  For a PostgreSQL connection opened by
  ``asynchdb.connect`` the adapter asks the server instead:
  ``pg_cancel_backend(<pid>)`` on a twin connection, as MariaDB's ``KILL
  QUERY`` below (``_killquery.py``).  The statement fails with the same 57014
  and psqlODBC's savepoint handling is unchanged; the driver's objects are
  never touched from a second thread.  A wrapped connection falls back to
  ``SQLCancel``.  The pid is asked once, at connect: behind a
  transaction-pooling proxy (PgBouncer's transaction mode) it would name
  another client's backend later, so such connections must be wrapped
  (docs/drivers.md).
* MariaDB Connector/ODBC crashes the process when ``SQLCancel`` races
  ``SQLFreeHandle`` (double free): the engine sends the cancel only under the
  channel's cancel lock while the aborted job is the one running, so it never
  overlaps a cursor close, a connection close or the next statement.  Its
  ``SQLCancel`` is unsafe even then: when the statement does not hold the
  connection's lock at that instant (between the prepare and the execute of
  one ``SQLExecDirect``, or while pyodbc describes the result) it frees the
  statement's result from the aborting thread while the worker uses it.  So
  for a MariaDB connection opened by ``asynchdb.connect`` the adapter sends
  ``KILL QUERY <CONNECTION_ID()>`` on a twin connection instead (what the
  driver's own ``SQLCancel`` does when the statement is busy), opened at the
  first abort and closed with the connection.  KILL leaves the driver's objects
  (and the result set) alone, and one that arrives after the statement ended
  is ignored by the server.  A connection given to ``asynchdb.wrap`` (whose
  credentials the adapter does not know) falls back to ``SQLCancel``.
* MariaDB Connector/ODBC (3.1.15) leaves its connection mutex locked by the
  thread that executed a multi-statement batch (``SELECT 1; SELECT 2`` with
  ``OPTION=67108864``): the mutex is recursive, so that thread goes on working,
  but any other thread's next call on the connection blocks forever.  asynchdb
  calls a connection from several threads (the caller's for synchronous calls,
  pool threads for asynchronous ones), so a MariaDB connection is *pinned*
  from its first batch on: that batch and every later driver call on the
  connection and its cursors run on one dedicated thread
  (``asynchdb-mariadb-pin-N``), which lives until the connection is closed.
  ``cancel()`` is still called from the aborting thread (the driver then
  sends ``KILL QUERY`` on a separate connection).  Connections that never run
  a batch are not pinned and pay nothing.
"""

from __future__ import annotations

import itertools
import logging
import queue
import re
import threading
import weakref
from typing import Any, Callable, Optional

from ..adapters import Adapter, CallView, ConnectionView
from ._killquery import KILL_QUERY, PG_CANCEL, KillQuery

log = logging.getLogger("asynchdb")

#: SQLSTATEs that mean "your cancel stopped the statement".
CANCEL_STATES = frozenset({
    "HY008",  # ODBC: operation canceled
    "57014",  # PostgreSQL: query_canceled
    "HY018",  # MariaDB Connector/ODBC: server declined cancel / interrupted (1317)
    "70100",  # MySQL/MariaDB: query execution was interrupted (1317)
})
#: Function sequence error: a cancel that closed the statement as it finished.
SEQUENCE_ERROR = "HY010"
#: Calls whose result set a late cancel can close.
_RESULT_CALLS = frozenset({"execute", "executemany", "nextset", "callproc"})


class _State:
    """Per-connection adapter state (``ConnectionView.state``)."""

    __slots__ = ("canceller", "killer", "postgres", "savepoint", "sent", "thread_id")

    def __init__(self) -> None:
        #: SQLite ODBC: an idle cursor of the connection whose ``cancel()`` interrupts it.
        self.canceller: Any = None
        #: psqlODBC: repair the transaction after an abort (:meth:`PyodbcAdapter.after_abort`).
        self.postgres = False
        #: psqlODBC: the name of its per-statement savepoint, once seen.
        self.savepoint: Optional[str] = None
        #: The call the last cancel was sent for.
        self.sent: Optional[weakref.ref[CallView]] = None
        #: MariaDB: the server's id of this connection (``CONNECTION_ID()``);
        #: psqlODBC: its backend's process id (``pg_backend_pid()``).
        self.thread_id: Optional[int] = None
        #: The twin connection that sends ``KILL QUERY`` (MariaDB) or
        #: ``pg_cancel_backend`` (psqlODBC), opened at the first abort.
        self.killer: Optional[KillQuery] = None


class PyodbcAdapter(Adapter):
    name = "pyodbc"
    can_cancel = True
    #: SQLCancel before SQLExecDirect started is lost: repeat it while the call runs.
    reissue_cancel = 0.05
    #: pyodbc (without fast_executemany) executes one parameter set at a time.
    counts_executemany = True
    #: its connect blocks in C: Ctrl-C abandons a main-thread connect at once
    connect_on_worker = True

    def __init__(self, module: Any | None) -> None:
        super().__init__(module)
        # an adapter serves one connection (asynchdb makes one per connect/wrap)
        #: How the connection was opened (None for a wrapped connection).
        self._opened_with: Optional[tuple[Callable[..., Any], tuple[Any, ...],
                                          dict[str, Any]]] = None
        #: The connection's state, for close_connection.
        self._state: Optional[_State] = None

    def connect(self, factory: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        # owner thread; remembered for the twin that cancels through the server
        self._opened_with = (factory, args, dict(kwargs))
        return factory(*args, **kwargs)

    def prepare(self, conn: ConnectionView) -> Any:
        # owner thread
        state = _State()
        conn.state = self._state = state
        raw = conn.raw
        driver = _driver_name(raw)
        state.postgres = "psqlodbc" in driver
        if state.postgres and self._opened_with is not None:
            # psqlODBC's SQLCancel from the aborting thread is not memory-safe
            # (module docstring): cancel through the server, from a twin
            self._cancel_by_twin(state, raw, "SELECT pg_backend_pid()", PG_CANCEL)
            if not raw.autocommit:
                # psqlODBC began a transaction for the probe; a fresh
                # connection has nothing else to lose
                raw.rollback()
        if "sqlite3odbc" in driver or "sqliteodbc" in driver:
            state.canceller = raw.cursor()
        if not isinstance(raw, PinnableConnection) and _is_mariadb(raw):
            if self._opened_with is not None:
                self._cancel_by_twin(state, raw, "SELECT CONNECTION_ID()", KILL_QUERY)
            return PinnableConnection(raw)
        return None

    def _cancel_by_twin(self, state: _State, raw: Any, id_sql: str, kill_sql: str) -> None:
        """Cancel through the server: learn the connection's id, arm a twin (owner thread).

        ``id_sql`` asks the server for this connection's id; the twin, opened
        at the first abort with this connection's arguments, sends
        ``kill_sql`` with it (_killquery.py).
        """
        assert self._opened_with is not None
        cur = raw.cursor()
        try:
            cur.execute(id_sql)
            state.thread_id = int(cur.fetchone()[0])
        finally:
            cur.close()
        factory, args, kwargs = self._opened_with
        state.killer = KillQuery(lambda: factory(*args, **{**kwargs, "autocommit": True}),
                                 kill_sql)

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread, under the channel's cancel lock, while the call runs
        raw_cursor = call.cursor
        if raw_cursor is None:
            return  # a call with no statement handle of its own (connect)
        state = conn.state
        if isinstance(state, _State):
            state.sent = weakref.ref(call)
            if state.thread_id is not None and state.killer is not None:
                # MariaDB, psqlODBC: SQLCancel is not memory-safe here (module
                # docstring); the server's cancel, from a twin (_killquery.py)
                state.killer.send(state.thread_id)
                return
            if state.canceller is not None:
                # SQLite ODBC: SQLCancel interrupts the connection (sqlite3_interrupt)
                # and then closes the statement it was given, from this thread; on
                # the running statement that close races the worker (a double
                # free).  An idle sibling gets the same interrupt and loses nothing.
                state.canceller.cancel()
                return
        if isinstance(raw_cursor, PinnableCursor):
            raw_cursor = raw_cursor.driver_cursor  # never queued behind the pinned thread
        raw_cursor.cancel()

    def close_connection(self, raw: Any) -> None:
        # owner thread; no cancel can be under way (the engine's ordering)
        state = self._state
        if state is not None and state.canceller is not None:
            canceller, state.canceller = state.canceller, None
            try:
                canceller.close()
            except Exception:
                log.debug("asynchdb: closing the cancel cursor failed", exc_info=True)
        try:
            raw.close()
        finally:
            if state is not None and state.killer is not None:
                state.killer.close()

    def after_abort(self, conn: ConnectionView) -> None:
        """psqlODBC: leave the transaction usable, as its statement savepoint intends.

        In manual-commit mode psqlODBC wraps each statement in a savepoint
        (``SAVEPOINT _EXEC_SVP_...;<statement>``) and, when the statement fails,
        sends ``ROLLBACK TO`` it inside the same ``SQLExecDirect``: a canceled
        statement is undone and the transaction goes on.  But a second cancel
        (a re-issued one) can land on that ``ROLLBACK TO`` and cancel it too;
        then the transaction stays failed and every later statement raises
        25P02 until a rollback.  So after an abort: probe; if the transaction
        failed, roll back to psqlODBC's savepoint (its name was seen by an
        earlier probe), and only if that is not possible roll back the whole
        transaction, with a warning (the earlier work is lost either way: a
        failed transaction cannot commit).
        """
        # owner thread, after the aborted call returned: no cancel can reach these
        state = conn.state
        raw = conn.raw
        if not isinstance(state, _State) or not state.postgres or raw.autocommit:
            return
        cur = raw.cursor()
        try:
            if self._transaction_ok(cur, raw, state):
                return
            if state.savepoint is not None:
                try:
                    cur.execute(f"ROLLBACK TO SAVEPOINT {state.savepoint}")
                except self._error():
                    pass
                else:
                    if self._transaction_ok(cur, raw, state):
                        log.info("asynchdb: an abort left the transaction failed; rolled "
                                 "back to psqlODBC's statement savepoint")
                        return
            raw.rollback()
            log.warning("asynchdb: an abort left the transaction failed (psqlODBC's "
                        "ROLLBACK TO its statement savepoint was canceled too); the whole "
                        "transaction was rolled back")
        finally:
            cur.close()

    def _error(self) -> type[BaseException]:
        error = getattr(self.module, "Error", None)
        return error if isinstance(error, type) and issubclass(error, BaseException) \
            else Exception

    def _transaction_ok(self, cur: Any, raw: Any, state: _State) -> bool:
        """psqlODBC: whether the transaction accepts statements (learning the savepoint name)."""
        try:
            cur.execute("SELECT current_query()")
            sent = str(cur.fetchone()[0])
        except self._error() as exc:
            if exc.args and str(exc.args[0]) == "25P02":
                return False
            raise
        if sent.lstrip().upper().startswith("BEGIN"):
            raw.rollback()  # no transaction was open: end the one the probe began
        found = _SAVEPOINT.search(sent)
        if found is not None:
            state.savepoint = found.group(1)
        return True

    def is_cancel_error(self, exc: BaseException) -> bool:
        mod = self.module
        error = getattr(mod, "Error", None)
        if not (isinstance(error, type) and isinstance(exc, error)) or not exc.args:
            return False
        sqlstate = str(exc.args[0])
        if sqlstate in CANCEL_STATES:
            return True
        message = str(exc.args[1]) if len(exc.args) > 1 else ""
        if sqlstate == "HY000":
            # SQLite ODBC: "interrupted (9)"; MariaDB may report 1317 as HY000
            # (and, interrupted at the wrong moment, no message at all: "The
            # driver did not supply an error!"; asked only while an abort is
            # requested, so that is the interrupt too)
            low = message.lower()
            return ("interrupted" in low or "(1317)" in message
                    or "did not supply an error" in low)
        # the engine asks only while an abort is requested: a sequence error
        # then means the cancel closed the statement as it finished
        return sqlstate == SEQUENCE_ERROR

    def result_lost(self, conn: ConnectionView, call: CallView) -> bool:
        state = conn.state
        if not isinstance(state, _State) or state.sent is None or state.sent() is not call:
            return False
        state.sent = None
        if state.thread_id is not None:
            return False  # a twin's cancel never touches the driver's result set
        cursor = call.cursor
        if call.kind not in _RESULT_CALLS or cursor is None:
            return False
        try:
            lost = cursor.description is not None
        except Exception:  # noqa: BLE001 - a cursor that cannot say has lost it
            lost = True
        if lost and state.canceller is not None:
            # SQLite ODBC: the interrupt stays armed while this statement is open
            # and would stop the next one; close it here (owner thread, so the
            # driver's close races nothing)
            try:
                cursor.cancel()
            except Exception:
                log.debug("asynchdb: closing an interrupted result failed", exc_info=True)
        return lost

    def describe(self, raw: Any) -> str:
        return "pyodbc"


# ---------------------------------------------------------------------------
# MariaDB Connector/ODBC: pin a connection to one thread once it ran a batch
# ---------------------------------------------------------------------------
_SQL_DRIVER_NAME = 6  # ODBC SQLGetInfo: SQL_DRIVER_NAME
_QUOTED_OR_COMMENT = re.compile(
    r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|--[^\n]*|#[^\n]*|/\*.*?\*/",
    re.DOTALL)
_names = itertools.count(1)
#: psqlODBC's per-statement savepoint in the text it sends.
_SAVEPOINT = re.compile(r"\bSAVEPOINT\s+(_EXEC_SVP_\w+)", re.IGNORECASE)


def _driver_name(raw: Any) -> str:
    """The ODBC driver's file name, lower case ("" when it cannot say)."""
    getinfo = getattr(raw, "getinfo", None)
    if getinfo is None:
        return ""
    try:
        return str(getinfo(_SQL_DRIVER_NAME)).lower()
    except Exception:  # noqa: BLE001 - a driver that cannot say is none of the known ones
        return ""


def _is_mariadb(raw: Any) -> bool:
    return "maodbc" in _driver_name(raw)


def is_batch(sql: Any) -> bool:
    """Whether ``sql`` holds more than one statement (MariaDB splits it at ``;``)."""
    if not isinstance(sql, str) or ";" not in sql:
        return False
    parts = _QUOTED_OR_COMMENT.sub(" ", sql).split(";")
    return sum(1 for part in parts if part.strip()) > 1


class _Pin:
    """One dedicated thread that makes every driver call of a pinned connection."""

    __slots__ = ("__weakref__", "_queue", "thread")

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._main, args=(self._queue,), daemon=True,
                                       name=f"asynchdb-mariadb-pin-{next(_names)}")
        self.thread.start()

    @staticmethod
    def _main(q: queue.SimpleQueue[Any]) -> None:
        # pinned thread
        while True:
            item = q.get()
            if item is None:
                return
            fn, args, kwargs, box, done = item
            try:
                box[0] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box[1] = exc
            done.set()
            item = fn = args = kwargs = box = done = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == self.thread.ident:
            return fn(*args, **kwargs)
        box: list[Any] = [None, None]
        done = threading.Event()
        self._queue.put((fn, args, kwargs, box, done))
        done.wait()
        if box[1] is not None:
            error = box[1]
            box[1] = None
            try:
                raise error
            finally:
                error = None
        return box[0]

    def stop(self, wait: float = 5.0) -> None:
        self._queue.put(None)
        if self.thread is not threading.current_thread():
            self.thread.join(wait)


def _stop_pin(pin: _Pin) -> None:
    pin.stop(0)


class _Pinnable:
    """Shared routing: direct until pinned, then on the pinned thread."""

    __slots__ = ()

    def _route(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        pin = self._owner()._pin
        if pin is None:
            return fn(*args, **kwargs)
        return pin.call(fn, *args, **kwargs)

    def _owner(self) -> PinnableConnection:  # pragma: no cover - overridden
        raise NotImplementedError

    # The driver object's whole surface, routed; subclasses define _raw.
    _raw: Any

    def __enter__(self) -> Any:
        self._route(self._raw.__enter__)
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._route(self._raw.__exit__, *exc)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._raw, name)
        if callable(attr):
            return _Routed(self, attr)
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        self._route(setattr, self._raw, name, value)


class PinnableConnection(_Pinnable):
    """A pyodbc connection to MariaDB whose calls move to one thread after a batch.

    Everything pyodbc's connection offers passes through; cursors are
    :class:`PinnableCursor`.  Thread: any (calls are routed).
    """

    __slots__ = ("__weakref__", "_finalizer", "_pin", "_raw")
    _raw: Any
    _pin: Optional[_Pin]
    _finalizer: Optional[weakref.finalize[Any, Any]]

    def __init__(self, raw: Any) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_pin", None)
        object.__setattr__(self, "_finalizer", None)

    def _owner(self) -> PinnableConnection:
        return self

    @property
    def driver_connection(self) -> Any:
        """The pyodbc connection itself."""
        return self._raw

    @property
    def pinned(self) -> bool:
        return self._pin is not None

    def pin(self) -> None:
        """Move every later driver call to a dedicated thread (idempotent)."""
        if self._pin is None:
            pin = _Pin()
            object.__setattr__(self, "_pin", pin)
            object.__setattr__(self, "_finalizer", weakref.finalize(self, _stop_pin, pin))

    def cursor(self, *args: Any, **kwargs: Any) -> PinnableCursor:
        return PinnableCursor(self, self._route(self._raw.cursor, *args, **kwargs))

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        return self.cursor().execute(sql, *args, **kwargs)

    def close(self) -> None:
        try:
            self._route(self._raw.close)
        finally:
            pin = self._pin
            if pin is not None:
                object.__setattr__(self, "_pin", None)  # a second close goes to pyodbc directly
                if self._finalizer is not None:
                    self._finalizer.detach()
                pin.stop()

    def __repr__(self) -> str:
        return f"<asynchdb pinnable {self._raw!r}{' (pinned)' if self._pin else ''}>"


class PinnableCursor(_Pinnable):
    """A pyodbc cursor of a :class:`PinnableConnection` (see there)."""

    __slots__ = ("__weakref__", "_conn", "_raw")
    _conn: PinnableConnection
    _raw: Any

    def __init__(self, conn: PinnableConnection, raw: Any) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_raw", raw)

    def _owner(self) -> PinnableConnection:
        return self._conn

    @property
    def driver_cursor(self) -> Any:
        """The pyodbc cursor itself (its ``cancel()`` may be called from any thread)."""
        return self._raw

    @property
    def connection(self) -> PinnableConnection:
        return self._conn

    def _result(self, value: Any) -> Any:
        return self if value is self._raw else value

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        if is_batch(sql):
            self._conn.pin()  # the driver keeps its lock on the thread that runs a batch
        return self._result(self._route(self._raw.execute, sql, *args, **kwargs))

    def executemany(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        if is_batch(sql):
            self._conn.pin()
        return self._result(self._route(self._raw.executemany, sql, *args, **kwargs))

    def fetchone(self) -> Any:
        return self._route(self._raw.fetchone)

    def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        return self._route(self._raw.fetchmany, *args, **kwargs)

    def fetchall(self) -> Any:
        return self._route(self._raw.fetchall)

    def nextset(self) -> Any:
        return self._route(self._raw.nextset)

    def close(self) -> None:
        self._route(self._raw.close)

    def cancel(self) -> None:
        self._raw.cancel()  # thread-safe by design: never routed

    def __iter__(self) -> PinnableCursor:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def __repr__(self) -> str:
        return f"<asynchdb pinnable {self._raw!r}>"


class _Routed:
    """A driver method of a pinnable object, called on the pinned thread if any."""

    __slots__ = ("_fn", "_obj")

    def __init__(self, obj: _Pinnable, fn: Callable[..., Any]) -> None:
        self._obj = obj
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        obj = self._obj
        value = obj._route(self._fn, *args, **kwargs)
        if isinstance(obj, PinnableCursor):
            return obj._result(value)
        return value

    def __repr__(self) -> str:
        return f"<asynchdb routed {self._fn!r}>"
