"""SQLAlchemy (and pandas on top of it): a per-statement deadline that really cancels.

``instrument(engine)`` makes every statement the engine runs go through
asynchdb, while the engine's pooled connections stay the driver's own objects
(dialects check their types and call driver-specific attributes, so nothing
SQLAlchemy or a dialect sees is replaced).  asynchdb works beside them:

* **Opening** (dialect event ``do_connect``): the pool's connections are opened
  by the adapter of the dialect's driver (so an adapter that needs the connect
  arguments, such as MariaDB's ``KILL QUERY`` twin, has them), through the
  dialect's own ``connect``; the driver connection goes back to SQLAlchemy and
  an asynchdb wrapper (its *side*) is kept beside it (found again by the
  driver connection's identity, while the pool holds it).  Connections opened
  some other way (a ``creator=``, or pooled before ``instrument``) get their
  side at their first statement.
* **Executing** (the dialect's ``do_execute``, ``do_executemany`` and
  ``do_execute_no_params``, replaced on this engine's dialect instance; a
  ``do_execute`` event listener of the application still runs first and may
  take a statement over): the dialect's own ``do_execute*`` method runs, on
  the driver cursor SQLAlchemy made, under the side's ownership rule.  Without
  asynchdb's execution options that is the drop-in path: the caller's thread,
  no hop, no Operation.  With ``asynchdb_cancel_after`` or
  ``asynchdb_listener`` the dialect's call runs as an asynchdb operation on
  the side (synchronously, like ``Cursor.execute(cancel_after=...)``): the
  deadline cancels the statement with the driver's cancel primitive and raises
  :class:`asynchdb.DeadlineExceeded`; the listener hears the operation.
  A row-returning statement (not ``stream_results``/``yield_per``, not
  ``insertmanyvalues``) is also *fetched* inside that operation and handed to
  SQLAlchemy through its own ``FullyBufferedCursorFetchStrategy``, so the
  deadline covers the rows too: sqlite3 and DuckDB do most of a query's work
  while fetching.  One statement that SQLAlchemy splits into several driver
  calls has one deadline: the batches of ``insertmanyvalues`` and the
  fetches from a server-side cursor (``_Streamed``) each get what the calls
  before them left (``_LEFT`` on the execution context).
* **Failing** (dialect event ``handle_error``): SQLAlchemy 2.x treats a
  ``TimeoutError`` (``DeadlineExceeded`` is one) as an exit exception and
  would invalidate the connection even after a confirmed cancel.  The handler
  decides instead: a statement the driver really cancelled leaves the
  connection in the pool (usable after the rollback SQLAlchemy does for any
  failed statement); a statement that was *abandoned* (a driver with no
  cancel primitive: it may still be running) invalidates that one connection
  (not the pool), so it is never handed out again.  A ``KeyboardInterrupt``
  (Ctrl-C) is judged the same way: asynchdb raises it once the cancelled call
  returned and the adapter's repair ran (``_interrupt.repaired``), and then
  the connection stays; any other ``KeyboardInterrupt`` is SQLAlchemy's to
  judge (it invalidates).
* **Closing** (the dialect's ``do_close`` and ``do_terminate``, replaced
  like the execution methods; SQLAlchemy has no event that can take a close
  over): a connection with a side is closed through asynchdb, on the
  thread that owns it.  An abandoned statement still holds it: the close is
  queued behind it and the pool does not wait (closing a driver connection
  under a running call can crash C drivers).  A pool dropped without closing
  its connections (``dispose(close=False)``) has them closed when its entries
  are collected, as the driver connections' own finalizers would have.

Invariant: a pooled driver connection is called by one thread at a time
(SQLAlchemy's checkout, plus asynchdb's ownership rule for its worker and its
cancel), and a connection whose statement may still be running is never
handed out again.

Threads: everything runs on the thread that runs the statement, as without
asynchdb, except a statement with a deadline on a driver that cannot cancel:
it runs on an asynchdb worker so that the deadline can release the caller.
Ctrl-C (docs/interrupts.md) takes asynchdb's ordinary synchronous call paths:
``Channel.call`` for a plain statement (the call bound to the driver cursor
and named for its kind, as ``Cursor.execute``'s would be) and
``Channel.run_sync`` for one with an option.

Measured hazards: MariaDB's ``SLEEP()`` cut short by ``KILL QUERY`` may return
1 with no error, so such a statement ends normally, stopped but without
``DeadlineExceeded`` (a scan fails with 1317); SQLAlchemy treats
``TimeoutError`` and ``KeyboardInterrupt`` as exit exceptions and invalidates
the connection unless ``handle_error`` says otherwise; duckdb_engine's
cursors all run on one DuckDB connection and each is new, so the DuckDB
adapter turns progress reporting on (two ``SET`` statements) for every
statement run with an option.

SQLAlchemy is imported when :func:`instrument` is first called, never by
``import asynchdb`` or ``import asynchdb.sqlalchemy``.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, Optional

from . import _interrupt
from ._args import check_timeout as _check_timeout
from ._channel import Channel as _Channel
from ._connection import Connection, _wrap
from ._notify import make_sink as _make_sink
from ._operation import Job as _Job
from .adapters import Adapter, _for_connection, _for_module
from .errors import DeadlineExceeded, OperationCanceled

__all__ = ["CANCEL_AFTER", "LISTENER", "instrument"]

#: The execution option holding the deadline in seconds.
CANCEL_AFTER = "asynchdb_cancel_after"
#: The execution option holding a listener (docs/usage.md, "Listeners").
LISTENER = "asynchdb_listener"
#: Marks the execution context of a statement that asynchdb aborted: True when
#: it was abandoned (invalidate the connection), False when it was cancelled.
_ABANDONED = "_asynchdb_abandoned"

_lock = threading.Lock()
#: Dialect instances already instrumented -> their state.
_STATES: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()


class _Side:
    """The asynchdb wrapper kept beside one pooled driver connection."""

    __slots__ = ("__weakref__", "ch", "conn", "raw")

    def __init__(self, conn: Connection, raw: Any) -> None:
        self.conn = conn
        self.ch: _Channel = conn._ch
        #: The driver connection SQLAlchemy holds (the channel may call a stand-in).
        self.raw = raw

    def close(self) -> None:
        """Close through asynchdb, on the owner; never waits for an abandoned call."""
        self.ch.close(wait=0)


class _State:
    """What ``instrument`` installed on one dialect instance."""

    def __init__(self, buffered: Any, default_fetch: Any, execute_style: Any) -> None:
        #: id(driver connection) -> its side, while the pool holds the connection.
        self.sides: dict[int, _Side] = {}
        self.sides_lock = threading.Lock()
        self.buffered = buffered            # FullyBufferedCursorFetchStrategy
        self.default_fetch = default_fetch  # SQLAlchemy's _DEFAULT_FETCH
        self.execute_style = execute_style  # ExecuteStyle.EXECUTE

    # -- sides --------------------------------------------------------------
    def remember(self, side: _Side) -> None:
        with self.sides_lock:
            self.sides[id(side.raw)] = side

    def forget(self, raw: Any) -> Optional[_Side]:
        with self.sides_lock:
            side = self.sides.get(id(raw))
            if side is None or side.raw is not raw:
                return None
            del self.sides[id(raw)]
            return side

    def drop(self, raw_id: int, ref: weakref.ref[_Side]) -> None:
        """The pool entry of a side was collected (any thread): close it if still open."""
        side = ref()
        with self.sides_lock:
            if side is None or self.sides.get(raw_id) is not side:
                return  # closed already (and maybe the id reused since)
            del self.sides[raw_id]
        try:
            side.close()
        except Exception:  # noqa: BLE001 - a finalizer never raises
            pass

    def side_of(self, context: Any) -> Optional[_Side]:
        """The side of the connection ``context`` runs on (made at first use)."""
        try:
            fairy = context._dbapi_connection  # SQLAlchemy 2.x; 0.3 us less than:
        except AttributeError:  # pragma: no cover - a layout we do not know
            fairy = context.root_connection.connection
        raw = fairy.dbapi_connection
        side = self.sides.get(id(raw))  # a dict read needs no lock
        if side is not None and side.raw is raw:
            return side
        if raw is None:
            return None
        # opened before instrument() or by a creator=: wrap it now
        side = _Side(_wrap(_for_connection(raw), raw), raw)
        self.remember(side)
        return side


def instrument(engine: Any) -> Any:
    """Make every statement ``engine`` runs go through asynchdb; returns ``engine``.

    From then on the execution option ``asynchdb_cancel_after`` (seconds) is a
    deadline that cancels the statement in the database and raises
    :class:`asynchdb.DeadlineExceeded`, and ``asynchdb_listener`` advises a
    listener on each statement, wherever SQLAlchemy takes execution options
    (``Connection.execution_options``, ``Engine.execution_options``, a
    statement's ``execution_options``, ``Session.execute(...,
    execution_options=...)``).  Idempotent; an engine made by
    ``engine.execution_options(...)`` shares its parent's dialect and pool and
    is instrumented with it.
    """
    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.engine import cursor as sa_cursor
    from sqlalchemy.engine.interfaces import ExecuteStyle

    if not isinstance(engine, sqlalchemy.engine.Engine):
        raise TypeError(
            f"instrument() takes a synchronous sqlalchemy Engine, not {type(engine).__name__} "
            "(an asyncio engine's statements are cancelled by cancelling their task)")
    dialect: Any = engine.dialect  # Any: its close methods are replaced below
    with _lock:
        if dialect in _STATES:
            return engine
        state = _State(sa_cursor.FullyBufferedCursorFetchStrategy,
                       sa_cursor._DEFAULT_FETCH, ExecuteStyle.EXECUTE)
        _STATES[dialect] = state

    def on_connect(dialect_: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        # the pool's thread that opens a connection
        adapter = _adapter_for(dialect_)
        raw = adapter.connect(dialect_.connect, tuple(cargs), dict(cparams))
        try:
            side = _Side(_wrap(adapter, raw), raw)
        except BaseException:
            try:
                raw.close()
            except Exception:  # noqa: BLE001 - the wrap's error is the one to raise
                pass
            raise
        state.remember(side)
        if record is not None:
            # a pool dropped without closing its connections (dispose(close=False))
            # lets its records go: close the side then, as the driver
            # connection's own finalizer would have closed it.  Weakly: a side
            # closed meanwhile (the record reconnects after a recycle) goes.
            weakref.finalize(record, state.drop, id(raw), weakref.ref(side))
        return raw

    sides = state.sides

    # The dialect's three statement methods are replaced on this engine's
    # dialect instance (not hooked through its do_execute events: SQLAlchemy's
    # listener call cost more than the rest of the drop-in path, benchmarks/
    # sqla.py).  They run on the thread that runs the statement.  The common
    # case (a known connection, no asynchdb option) is spelled out in each: it
    # is all an instrumented engine costs per statement.
    execute_ = dialect.do_execute
    executemany_ = dialect.do_executemany
    execute_no_params_ = dialect.do_execute_no_params

    def do_execute(cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        try:
            side = sides[id(context._dbapi_connection.dbapi_connection)]
        except (KeyError, AttributeError):
            side = None
        if side is not None:
            opts = context.execution_options
            if CANCEL_AFTER not in opts and LISTENER not in opts:
                try:
                    side.ch.call_as(cursor, "execute", execute_,
                                    cursor, statement, parameters, context)
                except KeyboardInterrupt as ki:
                    _interrupted(context, ki)
                    raise
                return
        args = (cursor, statement, parameters, context)
        if not _run(state, "execute", execute_, cursor, args, context):
            execute_(*args)

    def do_executemany(cursor: Any, statement: Any, parameters: Any,
                       context: Any = None) -> None:
        args = (cursor, statement, parameters, context)
        if not _run(state, "executemany", executemany_, cursor, args, context):
            executemany_(*args)

    def do_execute_no_params(cursor: Any, statement: Any, context: Any = None) -> None:
        try:
            side = sides[id(context._dbapi_connection.dbapi_connection)]
        except (KeyError, AttributeError):
            side = None
        if side is not None:
            opts = context.execution_options
            if CANCEL_AFTER not in opts and LISTENER not in opts:
                try:
                    side.ch.call_as(cursor, "execute", execute_no_params_,
                                    cursor, statement, context)
                except KeyboardInterrupt as ki:
                    _interrupted(context, ki)
                    raise
                return
        args = (cursor, statement, context)
        if not _run(state, "execute", execute_no_params_, cursor, args, context):
            execute_no_params_(*args)

    def on_error(ctx: Any) -> None:
        abandoned = getattr(ctx.execution_context, _ABANDONED, None)
        if abandoned is None:
            return  # not an abort of ours: SQLAlchemy decides as usual
        # cancelled: the connection is fine (SQLAlchemy rolls back); abandoned:
        # the statement may still run, so this connection (only) goes
        ctx.is_disconnect = bool(abandoned)
        ctx.invalidate_pool_on_disconnect = False

    close_, terminate_ = dialect.do_close, dialect.do_terminate

    def do_close(dbapi_connection: Any) -> None:
        side = state.forget(dbapi_connection)
        if side is None:
            close_(dbapi_connection)
        else:
            side.close()

    def do_terminate(dbapi_connection: Any) -> None:
        side = state.forget(dbapi_connection)
        if side is None:
            terminate_(dbapi_connection)
        else:
            side.close()

    dialect.do_close = do_close
    dialect.do_terminate = do_terminate
    dialect.do_execute = do_execute
    dialect.do_executemany = do_executemany
    dialect.do_execute_no_params = do_execute_no_params
    event.listen(engine, "do_connect", on_connect)
    event.listen(engine, "handle_error", on_error)
    return engine


def _adapter_for(dialect: Any) -> Adapter:
    """The adapter of the dialect's DB-API module (or class: duckdb_engine's DBAPI)."""
    return _for_module(dialect.loaded_dbapi)


class _NoRows:
    """The value of a statement whose rows were not fetched inside its operation."""


_NO_ROWS = _NoRows()


def _run(state: _State, kind: str, method: Callable[..., Any], cursor: Any,
         args: tuple[Any, ...], context: Any) -> bool:
    """Run the dialect's ``do_execute*`` on ``cursor`` through the side (caller thread).

    Returns True (SQLAlchemy's "handled"), or False when there is no
    connection to go through (SQLAlchemy then runs the statement itself).
    """
    if context is None:
        return False
    side = state.side_of(context)
    if side is None:
        return False
    opts = context.execution_options
    seconds = opts.get(CANCEL_AFTER)
    listener = opts.get(LISTENER)
    ch = side.ch
    if seconds is None and listener is None:
        # the drop-in path, Channel.call_as: inline when the connection is free
        # (no Operation, no hop), in turn otherwise.  The call registers the
        # driver cursor and its kind, as Cursor.execute's would,
        # so what looks at the running call (Ctrl-C, docs/interrupts.md) finds both.
        try:
            ch.call_as(cursor, kind, method, *args)
        except KeyboardInterrupt as ki:
            _interrupted(context, ki)
            raise
        return True
    # validate before anything runs (a bad option is the caller's error)
    secs = _check_timeout(seconds, CANCEL_AFTER)
    sink = _make_sink(listener) if listener is not None else None
    if secs is not None:
        # the batches of an insertmanyvalues statement share its deadline
        secs = getattr(context, _LEFT, secs)
    streamed = getattr(context, "_is_server_side", False)
    prefetch = (kind == "execute"
                and context.execute_style is state.execute_style
                and context.cursor_fetch_strategy is state.default_fetch
                and not streamed
                and not opts.get("stream_results", False)
                and not opts.get("yield_per"))
    started: list[bool] = []

    def work() -> Any:
        # the thread that owns the connection (the caller's, or a worker when
        # the driver cannot cancel)
        started.append(True)
        method(*args)
        if prefetch and cursor.description is not None:
            return cursor.fetchall()
        return _NO_ROWS

    value = _run_job(ch, kind, work, cursor, secs, sink, context, started)
    if value is not _NO_ROWS:
        context.cursor_fetch_strategy = state.buffered(cursor, None, value)
    elif secs is not None and streamed:
        # a server-side cursor: SQLAlchemy fetches from it later, and each
        # fetch is a round trip the deadline covers too (psycopg2's named
        # cursors have no description before their first fetch)
        context.cursor = _Streamed(cursor, ch, context)
    return True


#: On an execution context: the seconds left of its statement's deadline.
#: The batches of an insertmanyvalues statement and the fetches of a streamed
#: result share one deadline: it bounds the time the statement spends in the
#: database, not the time the application takes between two fetches.
_LEFT = "_asynchdb_left"


def _run_job(ch: _Channel, kind: str, work: Callable[[], Any], cursor: Any,
             secs: Optional[float], sink: Any, context: Any, started: list[bool]) -> Any:
    """Run ``work`` as a synchronous operation on ``ch``; its value, or its error raised.

    Caller thread.  With ``secs``, the deadline is what is left of the
    statement's, and what this call used is taken off (``_LEFT``).
    """
    job = _Job(ch, kind, work, raw_cursor=cursor)
    if sink is not None:
        job.advise(sink)
    began = time.monotonic()
    if secs is not None:
        job.set_deadline(max(secs, 0.0))
    try:
        try:
            ch.run_sync(job)
        finally:
            if secs is not None:
                setattr(context, _LEFT, secs - (time.monotonic() - began))
    except BaseException:
        # the wait itself was interrupted (Ctrl-C, docs/interrupts.md, aborts
        # the job before raising): say what became of the statement
        _mark(context, job, bool(started), ch.adapter.can_cancel)
        del job
        raise
    _, value, error = job.outcome()
    if error is None:
        del job
        return value
    _mark(context, job, bool(started), ch.adapter.can_cancel)
    del job
    try:
        raise error
    finally:
        error = None  # no reference cycle through the traceback


#: Seconds the close of a streamed result's cursor may take once its
#: statement's deadline passed, before it is cancelled in its turn.
_LAST_CLOSE = 0.001


class _Streamed:
    """A server-side driver cursor whose fetches run under what is left of the deadline.

    SQLAlchemy reads a streamed result (``stream_results``, ``yield_per`` on
    a dialect with server-side cursors) from ``context.cursor`` after the
    statement; this stands in for the driver cursor there.  Everything but
    the fetches goes straight to the driver cursor.  It refers to the
    execution context weakly (the context refers to it).
    """

    __slots__ = ("_asynchdb_aborted", "_asynchdb_ch", "_asynchdb_context", "_asynchdb_cursor")

    def __init__(self, cursor: Any, ch: _Channel, context: Any) -> None:
        object.__setattr__(self, "_asynchdb_cursor", cursor)
        object.__setattr__(self, "_asynchdb_ch", ch)
        object.__setattr__(self, "_asynchdb_context", weakref.ref(context))
        object.__setattr__(self, "_asynchdb_aborted", False)

    def close(self) -> None:
        """Close the driver cursor; after an aborted fetch its error is the abort's echo.

        A server-side cursor whose fetch was cancelled reports that again on
        close (psycopg2: "named cursor isn't valid anymore"; PyMySQL and
        mysqlclient: 1317 while they drain the unbuffered result), which
        SQLAlchemy would log as an error: the abort was already raised.
        """
        try:
            self._asynchdb_cursor.close()
        except Exception:
            if not self._asynchdb_aborted:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._asynchdb_cursor, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._asynchdb_cursor, name, value)

    def fetchone(self) -> Any:
        return self._fetch("fetchone", ())

    def fetchmany(self, *args: Any) -> Any:
        return self._fetch("fetchmany", args)

    def fetchall(self) -> Any:
        return self._fetch("fetchall", ())

    def __iter__(self) -> Any:
        return iter(self.fetchone, None)

    def _fetch(self, kind: str, args: tuple[Any, ...]) -> Any:
        cursor = self._asynchdb_cursor
        context = self._asynchdb_context()
        if context is None:  # pragma: no cover - the result outlived its context
            return getattr(cursor, kind)(*args)
        left = getattr(context, _LEFT, 0.0)
        if left <= 0:
            # The deadline passed (during the statement, or an earlier fetch
            # that still returned rows): the statement is over, whatever the
            # driver reported (Connector/Python ends an unbuffered result that
            # KILL QUERY stopped as if it were complete).
            self._end(cursor)
            setattr(context, _ABANDONED, False)
            raise DeadlineExceeded(f"{kind} was aborted: the statement's deadline passed")
        method = getattr(cursor, kind)
        started: list[bool] = []

        def work() -> Any:
            started.append(True)
            return method(*args)

        try:
            return _run_job(self._asynchdb_ch, kind, work, cursor, left, None, context, started)
        except OperationCanceled:
            self._end(cursor)
            raise

    def _end(self, cursor: Any) -> None:
        """The statement was stopped: close its cursor now, quietly (caller thread).

        The close runs under a deadline of its own (:data:`_LAST_CLOSE`): a
        MySQL unbuffered result still running on the server would otherwise
        be read to its end; cancelled, the close ends at once.  SQLAlchemy
        closes the driver cursor too, and would log the abort's echo as an
        error.
        """
        object.__setattr__(self, "_asynchdb_aborted", True)
        job = _Job(self._asynchdb_ch, "close", cursor.close, raw_cursor=cursor)
        job.set_deadline(_LAST_CLOSE)
        try:
            self._asynchdb_ch.run_sync(job)
        except Exception:  # noqa: BLE001 - the abort is the error to raise
            pass
        del job


def _interrupted(context: Any, ki: KeyboardInterrupt) -> None:
    """Ctrl-C ended a plain statement: keep its connection if asynchdb repaired it.

    SQLAlchemy invalidates a connection whose statement raised an exit
    exception (``KeyboardInterrupt``), since the driver may be mid-protocol.
    When asynchdb cancelled the call and ran the adapter's repair before the
    ``KeyboardInterrupt`` left it (:func:`asynchdb._interrupt.repaired`), the
    connection is in a known state, as after a deadline's cancel: it stays.
    Any other ``KeyboardInterrupt`` is SQLAlchemy's to judge.
    """
    if _interrupt.repaired(ki):
        setattr(context, _ABANDONED, False)


def _mark(context: Any, job: _Job, started: bool, can_cancel: bool) -> None:
    """Tell ``handle_error`` whether the failed statement's connection can stay.

    Only for a statement asynchdb aborted: abandoned (the driver has no
    cancel and the call had started, or the call is still running) means the
    connection goes; confirmed by the driver, or stopped before it started,
    means it stays.  A statement that ended with the driver's own error is
    SQLAlchemy's to judge.
    """
    if not job.done():
        abandoned = True
    elif job.canceled():
        abandoned = started and not can_cancel
    else:
        return
    setattr(context, _ABANDONED, abandoned)
