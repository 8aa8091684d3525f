"""PyMySQL, mysqlclient (``MySQLdb``) and MariaDB Connector/Python (``mariadb``).

None of the three can stop a running statement from another thread: PyMySQL
and mysqlclient have no cancel at all (their ``kill(id)`` ends a whole
connection), and Connector/Python 1.1 neither.  The adapter stops the statement
on the server with ``KILL QUERY <thread id>`` sent on a twin connection opened
with the same connect arguments (:mod:`._killquery`, shared with the pyodbc
adapter's MariaDB path, says why that never reaches the next statement).

Measured on MariaDB 10.11 with PyMySQL 1.2.4, mysqlclient 2.3.2 and
Connector/Python 1.1.14 (docs/drivers.md has the table):

* The executing thread gets the driver's ``OperationalError`` with error 1317
  "Query execution was interrupted" (PyMySQL and mysqlclient: ``args[0]``;
  Connector/Python: ``errno``), 0.3-0.4 ms after the KILL was sent (median).
  ``SELECT SLEEP(n)`` raises it too; ``BENCHMARK()`` and ``DO SLEEP(n)`` just
  return early with no error: the driver confirmed nothing, so such an
  operation ends COMPLETE (docs/abort.md, "Too late is not canceled").
* After a KILL the connection is ready; inside a transaction only the killed
  statement is undone (InnoDB statement rollback): the transaction and its
  earlier work are kept and can be committed.  No repair is needed.
* A KILL that arrives while the connection is idle is forgotten by the
  server; one that arrives before the statement started is lost, so the engine
  re-sends it every :attr:`_MySQLAdapter.reissue_cancel` seconds.
* ``close()`` from another thread while a statement runs: PyMySQL blocks until
  the statement ends (its reader holds the socket's buffer lock) and the
  statement completes; mysqlclient refuses with ``ProgrammingError`` ("already
  in use from another thread") and the statement goes on; Connector/Python
  aborts the process (``free(): invalid pointer``, 3 of 3 runs).  The engine
  never closes a connection while a call runs on it: it aborts, waits
  (bounded) and closes on the owner thread.
* mysqlclient also refuses ``thread_id()`` from another thread while a
  statement runs, so the thread id is read on the owner thread when the
  connection is set up (and, for PyMySQL, read again at each cancel from its
  plain attribute, which follows a ``ping(reconnect=True)``).
* All three release the GIL while waiting for the server (PyMySQL in socket
  reads; mysqlclient and Connector/Python around the C client's calls).
* Connector/Python 1.1.13-1.1.14 frees a connection still in use once the
  garbage collector has freed two of its cursors (a segmentation fault in
  stress runs): :mod:`._mariadb_gc` routes around it (its docstring says what
  is left).

Opening the twin needs the password.  ``asynchdb.connect`` remembers the
connect arguments, so every connection it opens gets a real cancel.  For
``asynchdb.wrap()`` of an open connection only PyMySQL keeps what is needed
(host, port, user, password); mysqlclient and Connector/Python keep no
password, so a wrapped connection of theirs cannot open a twin: an abort then
*abandons* the call, and its status text says to open the connection with
``asynchdb.connect`` instead.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, Callable, Optional

from ..adapters import Adapter, CallView, ConnectionView
from ._killquery import ER_QUERY_INTERRUPTED, KillQuery, error_code
from ._mariadb_gc import mend

#: The C client's "Commands out of sync": ``store_result()`` with no result pending.
CR_COMMANDS_OUT_OF_SYNC = 2014
#: The savepoint a chunked executemany of Connector/Python runs behind.
_SAVEPOINT = "asynchdb_executemany"


class _State:
    """Per-connection adapter state (``ConnectionView.state``)."""

    __slots__ = ("aborted", "killer", "thread_id")

    def __init__(self, thread_id: int, killer: KillQuery) -> None:
        #: The server's id of the connection (``CONNECTION_ID()``).
        self.thread_id = thread_id
        #: The twin that sends ``KILL QUERY`` (opened at the first abort).
        self.killer = killer
        #: The driver cursor of the call last cancelled (Connector/Python's repair).
        self.aborted: Optional[weakref.ref[Any]] = None


class _MySQLAdapter(Adapter):
    """What the three drivers share; subclasses say how to read a connection's id."""

    can_cancel = True
    #: A KILL that reached the server before the statement did is forgotten.
    reissue_cancel = 0.05

    def __init__(self, module: Any | None) -> None:
        super().__init__(module)
        # an adapter serves one connection (asynchdb makes one per connect/wrap)
        self._opener: Optional[Callable[[], Any]] = None
        self._state: Optional[_State] = None

    # -- opening (owner thread) --------------------------------------------
    def connect(self, factory: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        # remembered for the twin; autocommit so that it never holds a transaction
        twin_kwargs = {**kwargs, "autocommit": True}
        self._opener = lambda: factory(*args, **twin_kwargs)
        return factory(*args, **kwargs)

    def prepare(self, conn: ConnectionView) -> Any:
        # owner thread: no statement runs, so the driver answers anything
        opener = self._opener or self._wrapped_opener(conn.raw)
        if opener is None:
            self.can_cancel = False
            self.no_cancel_reason = (
                f"{self.name} keeps no password on a connection, so asynchdb.wrap() cannot "
                f"open the second connection that sends KILL QUERY (open it with "
                f"asynchdb.connect({self.module_label}, ...) for a real cancel)")
            return None
        self._opener = None
        self._state = _State(self._thread_id(conn.raw), KillQuery(opener))
        conn.state = self._state
        return None

    def _wrapped_opener(self, raw: Any) -> Optional[Callable[[], Any]]:
        """How to open a twin of a connection given to ``asynchdb.wrap()``, if possible."""
        return None

    def _thread_id(self, raw: Any) -> int:
        """The server's id of ``raw`` (owner thread)."""
        return int(raw.thread_id())

    def _live_thread_id(self, raw: Any, state: _State) -> int:
        """The id to kill, read on the aborting thread where that is safe."""
        return state.thread_id

    @property
    def module_label(self) -> str:
        return getattr(self.module, "__name__", None) or self.name

    # -- aborting ------------------------------------------------------------
    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread, under the channel's cancel lock, while the call runs
        state = conn.state
        if not isinstance(state, _State) or call.kind == "connect":
            return
        state.killer.send(self._live_thread_id(conn.raw, state))

    def is_cancel_error(self, exc: BaseException) -> bool:
        error = getattr(self.module, "Error", None)
        return (isinstance(error, type) and isinstance(exc, error)
                and error_code(exc) == ER_QUERY_INTERRUPTED)

    # -- closing (owner thread) -------------------------------------------------
    def close_connection(self, raw: Any) -> None:
        # no cancel can be under way (the engine's ordering)
        try:
            raw.close()
        finally:
            state = self._state
            if state is not None:
                state.killer.close()

    def describe(self, raw: Any) -> str:
        return self.name


class PyMySQLAdapter(_MySQLAdapter):
    """PyMySQL (pure Python)."""

    name = "pymysql"
    #: Pure Python: Ctrl-C must not land inside its socket read, so it is
    #: held off while a main-thread call runs (docs/interrupts.md).
    interrupt_on_worker = True
    hold_interrupt = True
    #: ``executemany`` takes parameter sets one at a time from an iterator
    #: (a multi-row INSERT is sent whenever ``max_stmt_length`` fills up).
    counts_executemany = True
    #: ``cursor()`` only builds a Python object (PyMySQL 1.x): it need not wait
    #: for a running statement (an event loop's thread would stall meanwhile).
    cursor_anywhere = True

    def _wrapped_opener(self, raw: Any) -> Optional[Callable[[], Any]]:
        # PyMySQL keeps what a second connection needs on the connection itself
        connect = getattr(self.module, "connect", None)
        if connect is None or getattr(raw, "password", None) is None:
            return None
        kwargs: dict[str, Any] = {
            "host": raw.host, "port": raw.port, "user": raw.user, "password": raw.password,
            "unix_socket": raw.unix_socket, "bind_address": raw.bind_address,
            "connect_timeout": raw.connect_timeout, "autocommit": True,
        }
        ctx = getattr(raw, "ctx", None)
        if getattr(raw, "_secure", False) and ctx is not None:
            # TLS is in use: the twin uses the same context (PyMySQL 1.2 keeps a
            # context for "preferred" TLS also when the server has none)
            kwargs["ssl"] = ctx
        return lambda: connect(**kwargs)

    def _live_thread_id(self, raw: Any, state: _State) -> int:
        # a plain attribute (server_thread_id), safe from any thread, and
        # current after a ping(reconnect=True)
        try:
            return int(raw.thread_id())
        except Exception:  # noqa: BLE001 - closed meanwhile: the id it had
            return state.thread_id


class MySQLdbAdapter(_MySQLAdapter):
    """mysqlclient (``MySQLdb``)."""

    name = "mysqlclient"
    #: ``executemany`` takes parameter sets one at a time from an iterator.
    counts_executemany = True
    #: its connect blocks in C: Ctrl-C abandons a main-thread connect at once
    connect_on_worker = True
    #: ``cursor()`` only builds a Python object (``cursorclass(connection)``,
    #: no call into the C client): it need not wait for a running statement.
    cursor_anywhere = True

    @property
    def module_label(self) -> str:
        return "MySQLdb"

    def after_abort(self, conn: ConnectionView) -> None:
        # owner thread.  A KeyboardInterrupt (Ctrl-C) raised in MySQLdb's own
        # Python code after ``query()`` returned (a killed SLEEP() returns a row,
        # no error) leaves the statement's result unread: every later command
        # then fails with 2014 "Commands out of sync".  Read and drop what is
        # left.  With nothing pending (the usual case: the killed statement's
        # 1317 was already raised by the call) the C client answers
        # ``store_result()`` with that same 2014 at once, no round trip: it
        # means there is nothing to drop.  The killed statement's own error
        # (1317) may be what is left: read, it is dropped too.
        raw = conn.raw
        error = getattr(self.module, "Error", Exception)
        try:
            raw.store_result()
        except error as exc:
            if error_code(exc) == CR_COMMANDS_OUT_OF_SYNC:
                return  # nothing pending
            if error_code(exc) != ER_QUERY_INTERRUPTED:
                raise
        try:
            while raw.next_result() == 0:
                raw.store_result()
        except error as exc:
            if error_code(exc) != ER_QUERY_INTERRUPTED:
                raise


class MariaDBAdapter(_MySQLAdapter):
    """MariaDB Connector/Python (``mariadb``).

    Its ``executemany`` sends every parameter set in one bulk command
    (``COM_STMT_BULK_EXECUTE``), so nothing can be counted inside it: an
    asynchronous ``executemany`` runs in chunks (:meth:`chunked_executemany`)
    and progress counts the parameter sets of the chunks done.
    """

    name = "mariadb"
    chunks_executemany = True
    #: its ``execute`` is Python around two C calls, one that sends the
    #: statement and one that reads its response: a KeyboardInterrupt raised
    #: between them leaves the response unread, the statement running (a KILL
    #: is re-sent only while the call runs) and the next statement waiting
    #: behind it.  Ctrl-C is held off while a main-thread call runs, as for
    #: the pure-Python drivers (docs/interrupts.md).
    interrupt_on_worker = True
    hold_interrupt = True
    #: its connect blocks in C: Ctrl-C abandons a main-thread connect at once
    connect_on_worker = True
    #: 1.1's C code keeps a reference to every exception it raises (its
    #: ``mariadb_throw_exception`` never releases the one it made), and with
    #: it the frames of the failed call and whatever they hold, a released
    #: cursor included (the stress runner's lost aborts): the caller gets
    #: copies (docs/drivers.md)
    keeps_errors = True

    def __init__(self, module: Any | None) -> None:
        super().__init__(module)
        if module is not None:
            # 1.1.13-1.1.14: a cursor the garbage collector frees takes a
            # reference from its connection (_mariadb_gc says why and how)
            mend(module)

    def chunked_executemany(self, conn: ConnectionView, cursor: Any, operation: Any,
                            chunks: Iterable[list[Any]], kwargs: dict[str, Any]) -> bool:
        # owner thread.  The one bulk command is one statement: all of its sets
        # or none (InnoDB statement rollback), in autocommit its own transaction.
        # The chunks keep that: in autocommit they run in one transaction; in a
        # transaction, behind a savepoint rolled back to when one fails or the
        # call is aborted (the earlier work of the transaction is kept, as a
        # failed bulk command keeps it).  rowcount is the sum, as the bulk's.
        # RETURNING gives a result set of every set: not chunked.
        if kwargs or "returning" in str(operation).lower():
            return False
        raw = conn.raw
        autocommit = bool(getattr(raw, "autocommit", False))
        if autocommit:
            raw.begin()
        else:
            cursor.execute(f"SAVEPOINT {_SAVEPOINT}")
        total = 0
        try:
            for chunk in chunks:
                cursor.executemany(operation, chunk)
                if cursor.rowcount > 0:
                    total += cursor.rowcount
        except BaseException:
            # a KILL QUERY re-sent for an aborted call may land on the rollback
            # statement too: in autocommit it is tried once more (a killed
            # ROLLBACK TO SAVEPOINT leaves the chunks in the open transaction)
            try:
                if autocommit:
                    raw.rollback()
                else:
                    cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            except Exception as dropped:  # noqa: BLE001 - the first error is the one to report
                dropped.__traceback__ = None  # Connector/Python keeps it (keeps_errors)
                if autocommit:
                    raw.rollback()
            raise
        if autocommit:
            raw.commit()
        else:
            cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        cursor._rowcount = total  # Connector/Python's own slot behind rowcount
        return True

    def _thread_id(self, raw: Any) -> int:
        return int(raw.thread_id)  # an attribute here, not a method

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread: remember the call's cursor for after_abort
        state = conn.state
        if isinstance(state, _State) and call.cursor is not None:
            try:
                state.aborted = weakref.ref(call.cursor)
            except TypeError:  # a cursor type without weak references
                state.aborted = None
        super().cancel(conn, call)

    def after_abort(self, conn: ConnectionView) -> None:
        # owner thread.  A KeyboardInterrupt (Ctrl-C) raised in the driver's
        # own Python code between reading a result's header and reading its
        # rows (``_readresponse()`` then ``_initresult()`` in its execute; a
        # killed SLEEP() returns a row, no error) leaves the rows unread: every
        # other cursor then fails with "Commands out of sync" (stress: 3 in
        # 300 operations).  That cursor drops them with its own
        # ``_clear_result()``, as its next execute would (measured: closing it
        # works too, but the user's cursor must stay usable).
        state = conn.state
        if not isinstance(state, _State) or state.aborted is None:
            return
        cursor, state.aborted = state.aborted(), None
        if cursor is None or not getattr(cursor, "field_count", 0):
            return
        clear = getattr(cursor, "_clear_result", None)
        if clear is None:
            return
        error = getattr(self.module, "Error", Exception)
        try:
            clear()
        except error as exc:
            if error_code(exc) != ER_QUERY_INTERRUPTED:
                raise
            exc.__traceback__ = None  # dropped; the driver keeps it (keeps_errors)
