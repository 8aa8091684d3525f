"""Adapters: the whole contract between asynchdb and one DB-API driver.

An adapter tells the engine what it cannot know about a driver: how to stop a
running statement and from which thread that is safe, how the driver reports a
statement stopped that way, how to repair the connection afterwards, and where
live progress comes from.  Everything else (queueing, phases, listeners,
deadlines, the zombie guard) is the engine's and the same for every driver.

A subclass that overrides only :attr:`Adapter.can_cancel`,
:meth:`Adapter.cancel` and :meth:`Adapter.is_cancel_error` is a complete
adapter; ``docs/adapters.md`` walks through one.  The base class is the honest
fallback for any driver: it has no cancel, so an abort *abandons* the call.

The hooks never see the engine's objects.  Those that need its state get one of
two small views, documented below: a :class:`ConnectionView` (the driver
connection, a slot for the adapter's own per-connection state, the call running
now) and a :class:`CallView` (one call: its kind, its driver cursor, whether an
abort was requested).

Threads, for every hook:

* ``connect``, ``prepare``, ``after_abort``, ``result_lost``, ``close_cursor``
  and ``close_connection`` run on the thread that owns the connection at that
  moment (a worker, or the caller of a synchronous call).  No other driver call
  on that connection runs at the same time.
* ``cancel`` runs on the aborting thread (the caller of ``abort()``, or the
  timer thread for deadlines and re-sent cancels) *while* the owner is inside
  the driver call.  The engine serialises cancels and calls ``cancel`` only
  while the call it targets is the one running, so a cancel never overlaps the
  start of the next statement, a cursor close or the connection's close.
* The callables returned by ``progress_source`` and ``text_source`` are built
  on the owner thread just before the driver call and then called from any
  thread while the call runs (``Operation.get_status``): they must be quick.
* ``execute_steps`` runs on the owner, an event loop's thread; the steps of
  its generator run owning the connection, on that thread or, after a
  hand-over, on a worker.

Adding a driver: subclass :class:`Adapter`, then :func:`register` it under the
driver's top-level module name, or ship it from the driver's own package
through the entry-point group ``asynchdb.adapters`` (name: the driver's
top-level module; value: ``"package.module:AdapterClass"``).  Entry points are
read the first time an unregistered driver is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Generator, Iterable
from typing import Any, Callable, Optional, Protocol, Union

__all__ = ["Adapter", "CallView", "ConnectionView", "Steps", "register"]

#: A statement as non-blocking steps (:meth:`Adapter.execute_steps`): yields
#: what it waits for (1 readable, 2 writable, 3 either), is sent what is ready.
Steps = Generator[int, int, Any]


class CallView(Protocol):
    """One call of the engine, as an adapter sees it (read-only).

    Attributes:
        kind: ``"connect"``, ``"execute"``, ``"executemany"``, ``"callproc"``,
            ``"nextset"`` or ``"populate"`` (fetching rows for background
            population).
        cursor: the driver cursor the call runs on, or None (connect).
        abort_requested: an abort of this call was accepted (it may not have
            taken effect yet).  A progress handler checks it (sqlite3).
    """

    @property
    def kind(self) -> str: ...
    @property
    def cursor(self) -> Any: ...
    @property
    def abort_requested(self) -> bool: ...


class ConnectionView(Protocol):
    """One wrapped connection, as an adapter sees it.

    Attributes:
        raw: the driver connection the engine calls (what ``prepare`` returned,
            if it returned a stand-in).
        state: the adapter's own per-connection state; None until the adapter
            sets it (usually in ``prepare``).  The engine never reads it.
        running: the call inside the driver right now, or None.
        closing: the connection is being closed: a progress handler should stop
            whatever statement runs.
    """

    state: Any

    @property
    def raw(self) -> Any: ...
    @property
    def running(self) -> Optional[CallView]: ...
    @property
    def closing(self) -> bool: ...


class Adapter:
    """Base adapter: the honest fallback for any DB-API driver (no cancel).

    Constructed with the driver module (``None`` when it is not known).
    """

    #: Short name used in ``repr``, status text and docs.
    name = "generic"
    #: True when :meth:`cancel` really stops a running statement.  False: an
    #: abort abandons the call (CANCELED at once, the late result discarded).
    can_cancel = False
    #: Why an abort abandons the call when :attr:`can_cancel` is False, for its
    #: status text ("abandoned: <reason>; the statement may still be running").
    #: An adapter that can cancel only some connections (those it opened itself)
    #: says here what to do instead.
    no_cancel_reason = "the driver has no cancel"
    #: Seconds between re-sent cancels while an aborted call still runs, or
    #: None when one is enough.  Needed where a cancel that lands before the
    #: statement reached the server is lost.
    reissue_cancel: Optional[float] = None
    #: ``executemany`` takes its parameter sets one by one from an iterator,
    #: so counting them as they are taken is honest progress.
    counts_executemany = False
    #: ``executemany`` sends its parameter sets as one batch or pipeline
    #: (psycopg), so nothing can be counted inside it: an asynchronous
    #: ``executemany`` is run in chunks through :meth:`chunked_executemany`,
    #: and progress counts the parameter sets of the chunks done.
    chunks_executemany = False
    #: ``connection.cursor()`` makes no call that could overlap a running
    #: statement, so it need not wait for the connection to be free (sqlite3).
    cursor_anywhere = False
    #: :meth:`cancel` may be sent while the worker fetches rows for background
    #: population.  Off by default: SQLite ODBC answers an interrupted fetch
    #: with a row of NULLs.  The population loop checks for an abort between
    #: batches either way.
    cancel_while_fetching = False
    #: Driver connection methods meant to be called from any thread while a
    #: statement runs (sqlite3's ``interrupt``): passed through, never queued.
    direct_extras: frozenset[str] = frozenset()
    #: The ``KeyboardInterrupt`` of Ctrl-C must not be raised inside this
    #: driver's calls (docs/interrupts.md): a synchronous call made on the
    #: main thread while Ctrl-C could reach it runs on the worker instead, so
    #: that the interrupt lands in the caller's wait and the call ends with
    #: the cancel's error.  For drivers that take SIGINT over around their
    #: calls on the main thread (ADBC, where the call would end with the
    #: driver's own cancel error and no ``KeyboardInterrupt``).  Costs a
    #: thread hop per such call; only meaningful with a real cancel
    #: (:attr:`can_cancel`).
    interrupt_on_worker = False
    #: With :attr:`interrupt_on_worker`: keep the call on the main thread
    #: and hold Python's SIGINT handler off while it runs (two ``signal``
    #: swaps, about 1 us, instead of a hop); ``KeyboardInterrupt`` is raised
    #: once the cancelled call returned.  For drivers that run Python code
    #: while they talk to the server (PyMySQL, pg8000, clickhouse-driver:
    #: the interrupt raised inside their socket read breaks their protocol
    #: state; MariaDB Connector/Python: raised between the C call that sends
    #: a statement and the one that reads its response, it leaves the
    #: response unread) and leave SIGINT's handler alone.
    hold_interrupt = False
    #: The driver's connect blocks in C, where Python's signal handling cannot
    #: reach until the driver's own timeout (psycopg2 and mysqlclient against a
    #: server that never answers: 10 s, their ``connect_timeout``).  A plain
    #: ``asynchdb.connect`` on the main thread, while Ctrl-C could reach it,
    #: then opens on a worker as ``cancel_after=`` does, so that Ctrl-C
    #: abandons it at once (the connection is closed when the driver's
    #: connect returns).  Costs a thread hop per such connect.
    connect_on_worker = False
    #: The driver keeps a reference to every exception it raises, forever
    #: (MariaDB Connector/Python 1.1).  The caller then gets a copy of each
    #: driver error (same class, arguments, attributes and traceback), and the
    #: original keeps no traceback: the frames it passed through, and the
    #: cursors they refer to, can be freed.
    keeps_errors = False

    def __init__(self, module: Any) -> None:
        self.module = module

    # -- opening (owner thread) --------------------------------------------
    def connect(self, factory: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        """Open the driver connection: ``factory(*args, **kwargs)`` by default."""
        return factory(*args, **kwargs)

    def prepare(self, conn: ConnectionView) -> Any:
        """Set up a freshly opened or wrapped connection (install hooks, set ``conn.state``).

        Returns None, or a stand-in the engine should call instead of the
        driver connection (it must behave like it; ``driver_connection`` is
        then read from the stand-in's own ``driver_connection`` attribute).
        """
        return None

    # -- executemany in chunks (owner thread) ---------------------------------
    def chunked_executemany(self, conn: ConnectionView, cursor: Any, operation: Any,
                            chunks: Iterable[list[Any]], kwargs: dict[str, Any]) -> bool:
        """Run one ``executemany`` as a ``cursor.executemany`` per chunk of parameter sets.

        Only asked when :attr:`chunks_executemany` is set.  The result must be
        the driver's for the whole sequence (its rowcount, its transaction
        semantics); return False, before taking any chunk, where chunking
        cannot keep them (the engine then makes the one call).  ``chunks``
        counts a chunk done when the next one is taken, and raises when an
        abort was requested in between.
        """
        return False

    # -- threads ---------------------------------------------------------------
    def same_thread(self, conn: ConnectionView) -> bool:
        """Whether the driver allows synchronous calls only from the opening thread.

        Asked once, after :meth:`prepare`.  True: a synchronous call from any
        other thread raises :meth:`wrong_thread_error` (asynchdb's workers are
        exempt), as the driver itself would (sqlite3's ``check_same_thread``,
        which the adapter's ``connect`` then turns off in the driver).
        """
        return False

    def bound_to_opener(self, raw: Any) -> bool:
        """Whether ``raw`` refuses every call from a thread other than its opener's.

        Asked on such another thread, for a connection a connect *callable*
        returned (the adapter did not open it, so it cannot know how): True
        pins the connection to the thread of asynchdb's own that opened it.
        Must not change the connection.
        """
        return False

    def wrong_thread_error(self, home: int, here: int) -> BaseException:
        """The driver's own error for a synchronous call from thread ``here``."""
        mod = self.module
        cls = getattr(mod, "ProgrammingError", None)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            cls = RuntimeError
        return cls(f"objects created in thread id {home} can only be used in that "
                   f"thread; this is thread id {here}")

    # -- aborting ------------------------------------------------------------
    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        """Ask the driver to stop ``call``, which is running now (aborting thread).

        Return once the request is sent; the owner thread sees the driver call
        end.  Raising logs a warning and counts as not sent.
        """
        raise NotImplementedError

    def is_cancel_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is how the driver reports a statement stopped by :meth:`cancel`."""
        return False

    def after_abort(self, conn: ConnectionView) -> None:
        """Repair the connection after a statement was stopped (owner thread)."""

    def result_lost(self, conn: ConnectionView, call: CallView) -> bool:
        """Whether a cancel destroyed the result of a call that returned normally.

        Called on the owner thread after a call that returned without an
        error while an abort of it was requested (only then can a cancel have
        reached it), once no further cancel can reach it.  True ends the
        operation CANCELED instead of COMPLETE (ODBC: a cancel that lands as
        the statement finishes closes its result set).
        """
        return False

    # -- live status ---------------------------------------------------------
    def progress_source(self, conn: ConnectionView,
                        call: CallView) -> Optional[Callable[[], Optional[tuple[int, int]]]]:
        """A callable giving the driver's own ``(progress, progress_max)`` for ``call``.

        It returns None while nothing is known.  None: no such source.
        """
        return None

    def text_source(self, conn: ConnectionView,
                    call: CallView) -> Optional[Callable[[], Optional[str]]]:
        """A callable giving live status text for ``call`` (None: no such source)."""
        return None

    # -- statements an event loop drives (optional) -----------------------------
    def execute_steps(self, conn: ConnectionView, cursor: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Optional[tuple[int, Steps]]:
        """``cursor.execute(*args, **kwargs)`` as non-blocking steps, or None (the default).

        For ``cursor.execute(..., asynch=True)`` made on a thread that runs an
        asyncio event loop: instead of a worker thread blocked in the driver,
        the loop's own thread drives the statement, one step each time the
        driver's socket is ready (many statements awaited at once then cost
        no thread each: benchmarks P9).

        Return ``(fileno, steps)``: the socket to wait on and a generator
        that does the work.  Each value it yields says what it waits for
        (1: the socket readable, 2: writable, 3: either); the engine sends
        back what is ready (1, 2 or 3) once it is, or 0 to ask again what
        it waits for (it then yields its wait again, as psycopg's do).  It returns what
        ``cursor.execute`` would, or raises the driver's error.  Nothing may
        run before the first step: the engine may close the generator
        unstarted (an abort while it was queued).  It may be resumed on
        another thread (a worker, waiting with ``poll``), for instance when
        the loop's thread blocks in a synchronous call.  Called on the owner
        thread, which owns the connection during every step; ``cancel``
        works as for a blocking call.  None: this call runs on a worker as
        usual (a cursor type or a mode the generator does not cover).
        """
        return None

    # -- closing (owner thread) -----------------------------------------------
    def close_cursor(self, raw_cursor: Any) -> None:
        """Close a driver cursor."""
        raw_cursor.close()

    def close_connection(self, raw: Any) -> None:
        """Close a driver connection."""
        raw.close()

    # -- the rest ----------------------------------------------------------------
    def extra(self, conn: ConnectionView, name: str) -> Any:
        """A replacement for the driver connection's method ``name``, or None to pass it through."""
        return None

    def describe(self, raw: Any) -> str:
        """A short description for ``repr``; never includes credentials."""
        return type(raw).__module__.split(".")[0]


AdapterSpec = Union[type[Adapter], str]

# driver package name -> adapter class, or "module:Class" imported when first used
_KNOWN: dict[str, AdapterSpec] = {
    "sqlite3": "asynchdb._drivers._sqlite3:Sqlite3Adapter",
    "_sqlite3": "asynchdb._drivers._sqlite3:Sqlite3Adapter",
    "pyodbc": "asynchdb._drivers._pyodbc:PyodbcAdapter",
    "psycopg": "asynchdb._drivers._psycopg:PsycopgAdapter",
    "duckdb": "asynchdb._drivers._duckdb:DuckDBAdapter",
    "_duckdb": "asynchdb._drivers._duckdb:DuckDBAdapter",
    # duckdb_engine (SQLAlchemy's DuckDB dialect) wraps a duckdb connection
    "duckdb_engine": "asynchdb._drivers._duckdb:DuckDBAdapter",
    "psycopg2": "asynchdb._drivers._psycopg2:Psycopg2Adapter",
    "pg8000": "asynchdb._drivers._pg8000:Pg8000Adapter",
    "adbc_driver_postgresql": "asynchdb._drivers._adbc:AdbcAdapter",
    "adbc_driver_sqlite": "asynchdb._drivers._adbc:AdbcAdapter",
    "adbc_driver_manager": "asynchdb._drivers._adbc:AdbcAdapter",
    "apsw": "asynchdb._drivers._apsw:ApswAdapter",
    "pymysql": "asynchdb._drivers._mysql:PyMySQLAdapter",
    "MySQLdb": "asynchdb._drivers._mysql:MySQLdbAdapter",
    "mariadb": "asynchdb._drivers._mysql:MariaDBAdapter",
    "clickhouse_driver": "asynchdb._drivers._clickhouse:ClickHouseAdapter",
}
#: Entry points already looked up (each driver name once).
_LOOKED_UP: set[str] = set()
#: The module whose exceptions a wrapped connection's class belongs to.
_MODULE_OF = {"_sqlite3": "sqlite3", "_duckdb": "duckdb",
              "adbc_driver_manager": "adbc_driver_manager.dbapi",
              "adbc_driver_sqlite": "adbc_driver_sqlite.dbapi"}


def register(module_name: str, adapter: AdapterSpec) -> None:
    """Make the driver whose top-level module is ``module_name`` use ``adapter``.

    ``adapter`` is an :class:`Adapter` subclass or a ``"module:Class"`` string,
    imported the first time that driver is used.
    """
    if not isinstance(module_name, str) or not module_name:
        raise TypeError(f"module_name must be a driver's module name, not {module_name!r}")
    if not isinstance(adapter, str) and not (isinstance(adapter, type)
                                             and issubclass(adapter, Adapter)):
        raise TypeError(f"adapter must be an Adapter subclass or a 'module:Class' string, "
                        f"not {adapter!r}")
    _KNOWN[module_name] = adapter


def _load(spec: AdapterSpec) -> type[Adapter]:
    if not isinstance(spec, str):
        return spec
    mod_name, _, cls_name = spec.partition(":")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{spec!r} is not an asynchdb.adapters.Adapter subclass")
    return cls


def _entry_point(root: str) -> Optional[AdapterSpec]:
    if root in _LOOKED_UP:
        return None
    _LOOKED_UP.add(root)
    from importlib.metadata import entry_points

    found = entry_points()
    group = (found.select(group="asynchdb.adapters") if hasattr(found, "select")
             else found.get("asynchdb.adapters", ()))  # Python 3.9
    for ep in group:
        if ep.name == root:
            spec: AdapterSpec = ep.value
            _KNOWN[root] = spec
            return spec
    return None


def _spec_for(root: str) -> Optional[AdapterSpec]:
    spec = _KNOWN.get(root)
    return spec if spec is not None else _entry_point(root)


def _for_module(driver: Any) -> Adapter:
    """The adapter for a DB-API module or a connect callable (internal)."""
    custom = getattr(driver, "__asynchdb_adapter__", None)
    if custom is not None:
        return custom(driver)  # type: ignore[no-any-return]
    root = (getattr(driver, "__name__", None) or "").split(".")[0]
    module = driver
    if not hasattr(driver, "connect") and not isinstance(driver, type(sys)):
        # a connect callable: the module it was defined in is the driver
        root = (getattr(driver, "__module__", None) or "").split(".")[0]
        module = sys.modules.get(root)
    spec = _spec_for(root)
    return Adapter(module) if spec is None else _load(spec)(module)


def _for_connection(raw: Any) -> Adapter:
    """The adapter for an already open DB-API connection (internal)."""
    cls = type(raw)
    custom = getattr(cls, "__asynchdb_adapter__", None)
    if custom is not None:
        # the module defining the class holds its exceptions (asynchdb.testing)
        return custom(sys.modules.get(cls.__module__))  # type: ignore[no-any-return]
    root = cls.__module__.split(".")[0]
    module = sys.modules.get(_MODULE_OF.get(root, root))
    spec = _spec_for(root)
    return Adapter(module) if spec is None else _load(spec)(module)
