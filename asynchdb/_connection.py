"""Connection, ``connect()`` and ``wrap()``.

A :class:`Connection` is a drop-in stand-in for the driver's connection: every
PEP 249 method and every driver extra works as the driver's does.  Behind it is
one logical worker (a queue run by a borrowed pool thread) on which
asynchronous calls run one after another, in the order they were started.
"""

from __future__ import annotations

import sys
import threading
import types
import warnings
from typing import Any, Callable, Literal, Optional, Union, overload

from . import _interrupt
from ._args import check_timeout, parse_asynch
from ._channel import Channel
from ._cursor import Cursor, unwrap_args, unwrap_kwargs
from ._notify import make_sink
from ._operation import Job, Operation
from ._pin import PinThread, bound_to_opener, elsewhere
from .adapters import Adapter, _for_connection, _for_module
from .errors import NotSupportedError
from .status import Asynch

__all__ = ["Connection", "connect", "wrap"]

_METHOD_TYPES = (types.MethodType, types.BuiltinMethodType)
_OWN = frozenset({"_ch"})


class Connection:
    """A DB-API connection wrapper.

    Thread: any thread may use it.  Synchronous calls run on the caller's
    thread when nothing is queued (no hop), otherwise on the connection's
    worker after the queued work.  Asynchronous calls always run on the worker.
    """

    __slots__ = ("_ch", "__weakref__")
    #: What a driver method gets instead of this wrapper as an argument.
    _unwrap_to = "driver_connection"

    @classmethod
    def _make(cls, channel: Channel) -> Connection:
        """The wrapper of ``channel`` (the engine's constructor; ``__init__`` is the driver's)."""
        self = object.__new__(cls)
        object.__setattr__(self, "_ch", channel)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Re-run the driver connection's own ``__init__`` (sqlite3 re-opens), as the driver does.

        Wrappers are built by :func:`connect` and :func:`wrap`, never by this.
        """
        ch = self._ch
        ch.call(_reinit, ch, unwrap_args(args), unwrap_kwargs(kwargs))

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(conn, <the driver's connection class>) is True, as is
        # isinstance(conn, Connection) (checked on the real type first); only
        # type(conn) tells them apart.  Never on the drop-in path.
        raw = self._ch.driver_raw()
        return Connection if raw is None else type(raw)

    # -- PEP 249 -------------------------------------------------------------
    def cursor(self, *args: Any, **kwargs: Any) -> Cursor:
        """The driver's ``cursor()``, wrapped."""
        ch = self._ch
        if ch.cursor_anywhere and ch.raw is not None:
            # no hop: queueing work behind a busy connection must not wait for it
            if ch.home is not None:
                ch.check_home()
            return Cursor._make(self, ch.raw.cursor(*args, **kwargs))
        return Cursor._make(self, ch.call(ch.raw.cursor, *args, **kwargs))

    def commit(self) -> Any:
        ch = self._ch
        return ch.call(ch.raw.commit)

    def rollback(self) -> Any:
        ch = self._ch
        return ch.call(ch.raw.rollback)

    def close(self) -> None:
        """Abort what is pending on this connection, then close the driver connection.

        The driver connection is closed by the thread that owns it, never while
        a driver call runs on another thread.  Blocks for at most the abort plus
        a bounded wait; if a call that cannot be stopped still holds the worker,
        the close happens as soon as it returns.  Closing a closed connection
        does what the driver does (sqlite3 and psycopg ignore it, pyodbc raises).
        """
        ch = self._ch
        if ch.home is not None:
            ch.check_home()
        if ch.raw_closed and ch.raw is not None:
            # the driver's own answer to a second close (its connection is closed
            # already, so nothing else runs)
            ch.adapter.close_connection(ch.raw)
            return
        ch.close()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Driver shortcut (sqlite3, pyodbc, psycopg): a new cursor's ``execute``."""
        self._require("execute")
        return self.cursor().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        """Driver shortcut (sqlite3, pyodbc, psycopg): a new cursor's ``executemany``."""
        self._require("executemany")
        return self.cursor().executemany(*args, **kwargs)

    def _require(self, name: str) -> None:
        raw = self._ch.raw
        if raw is not None and not hasattr(raw, name):
            raise AttributeError(f"'{type(raw).__name__}' object has no attribute '{name}'")

    # -- introspection ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (or the driver connection is gone)."""
        return bool(self._ch.closed)

    @property
    def driver_connection(self) -> Any:
        """The wrapped driver connection.  Use it only when no operation is pending."""
        return self._ch.driver_raw()

    def statistics(self) -> dict[str, Any]:
        """Counters for this connection and the process-wide pool."""
        stats: dict[str, Any] = self._ch.statistics()
        return stats

    def __repr__(self) -> str:
        ch = self._ch
        state = "closed" if ch.closed else ("opening" if ch.raw is None else "open")
        return f"<asynchdb.Connection {ch.adapter.name} {state} at {id(self):#x}>"

    # -- context manager: whatever the driver's does ----------------------------
    def __enter__(self) -> Connection:
        ch = self._ch
        enter = getattr(type(ch.raw), "__enter__", None)
        if enter is None:
            # what ``with`` says of the driver's connection on this Python
            if sys.version_info < (3, 11):
                raise AttributeError("__enter__")
            raise TypeError(f"'{type(ch.raw).__name__}' object does not support the "
                            "context manager protocol")
        ch.call(enter, ch.raw)
        return self

    def __exit__(self, *exc: Any) -> Any:
        ch = self._ch
        result = ch.call(type(ch.raw).__exit__, ch.raw, *exc)
        if getattr(ch.raw, "closed", False) is True:
            # the driver's __exit__ closed the connection (psycopg does)
            ch.close()
        return result

    # -- driver extras ----------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        ch = self._ch
        extra = ch.adapter.extra(ch.view, name)
        if extra is not None:
            return _Extra(self, extra)
        raw = ch.raw
        # pinned: the driver checks the thread in its getters too (sqlite3)
        attr = getattr(raw, name) if ch.pin is None else ch.call(getattr, raw, name)
        if name in ch.adapter.direct_extras:
            return attr  # thread-safe by the driver's design: never queued
        if isinstance(attr, _METHOD_TYPES) and getattr(attr, "__self__", None) is raw:
            return _Extra(self, attr)
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
            return
        ch = self._ch
        ch.call(setattr, ch.raw, name, value)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # pickle and copy as the driver object (which refuses): the default
        # would take this wrapper's __class__ (the driver's) for its own
        return self._ch.driver_raw().__reduce_ex__(protocol)

    def __delattr__(self, name: str) -> None:
        ch = self._ch
        ch.call(delattr, ch.raw, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The driver connection's own ``__call__`` (sqlite3 compiles a statement)."""
        ch = self._ch
        raw = ch.raw
        if not callable(raw):
            raise TypeError(f"'{type(raw).__name__}' object is not callable")
        return ch.call(raw, *unwrap_args(args), **unwrap_kwargs(kwargs))

    def __del__(self) -> None:
        try:
            ch = self._ch
        except AttributeError:  # pragma: no cover - __init__ failed
            return
        try:
            if ch.closed:
                return
            if ch.raw is None:
                ch.release_unopened()
                return
            try:
                warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2,
                              source=self)
            finally:
                # close even when the warning is turned into an error (-W error)
                ch.close(wait=0)
        except Exception:  # noqa: BLE001  # pragma: no cover - never raise from a finalizer
            pass


class _Extra:
    """A driver-specific connection method, run under the ownership rule."""

    __slots__ = ("_conn", "_fn")

    def __init__(self, conn: Connection, fn: Callable[..., Any]) -> None:
        self._conn = conn
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        ch = conn._ch
        # a wrapped connection or cursor argument (sqlite3's backup target)
        # reaches the driver as the driver's own object
        result = ch.call(self._fn, *unwrap_args(args), **unwrap_kwargs(kwargs))
        if result is not None and result is not ch.raw and _looks_like_cursor(result):
            return Cursor._make(conn, result)
        return result

    def __repr__(self) -> str:
        return f"<asynchdb wrapper of {self._fn!r}>"


def _looks_like_cursor(obj: Any) -> bool:
    return (hasattr(obj, "fetchone") and hasattr(obj, "execute")
            and hasattr(obj, "description") and not isinstance(obj, type))


def _factory_of(driver: Any) -> Callable[..., Any]:
    connect = getattr(driver, "connect", None)
    if callable(connect) and not isinstance(driver, type):
        return connect  # type: ignore[no-any-return]
    if callable(driver):
        return driver  # type: ignore[no-any-return]
    raise TypeError(
        f"driver must be a DB-API 2.0 module (with a connect callable) or a callable "
        f"returning a DB-API connection, not {type(driver).__name__}")


@overload
def connect(driver: Any, /, *args: Any, asynch: Literal[False] = ...,
            cancel_after: Optional[float] = ..., listener: Any = ...,
            **kwargs: Any) -> Connection: ...
@overload
def connect(driver: Any, /, *args: Any, asynch: Union[Literal[True], int],
            cancel_after: Optional[float] = ..., listener: Any = ...,
            **kwargs: Any) -> Operation[Connection]: ...


def connect(driver: Any, /, *args: Any, asynch: Union[bool, int] = False,
            cancel_after: Optional[float] = None, listener: Any = None,
            **kwargs: Any) -> Any:
    """Open a connection through ``driver`` and wrap it.

    Args:
        driver: a DB-API 2.0 module (``sqlite3``, ``pyodbc``, ``psycopg``...) or
            a callable returning a DB-API connection.  ``*args`` and
            ``**kwargs`` go to its ``connect``.
        asynch: ``True`` (or ``Asynch.INITIALIZE``) to open on the worker and
            return an :class:`Operation` at once.
        cancel_after: a deadline in seconds; when it passes the connect is
            abandoned (no driver can cancel a connect) and ends with
            ``DeadlineExceeded``.  ``0`` is already past: nothing runs.  Every
            other keyword, ``timeout=`` and ``driver=`` included, is the driver's.
        listener: advised before the work starts.

    Returns:
        The ``Connection``; with ``asynch``, an ``Operation`` whose result is
        the Connection.
    """
    flags = parse_asynch(asynch)
    if flags & ~(Asynch.INITIALIZE | Asynch.POPULATE_ON_DEMAND):
        raise NotSupportedError(
            f"{flags!r}: population flags apply to row-returning calls, not to connect")
    seconds = check_timeout(cancel_after, "cancel_after")
    sink = make_sink(listener) if listener is not None else None
    factory = _factory_of(driver)
    adapter = _for_module(driver)
    # A connect callable's connection may be bound to its opening thread
    # (sqlite3, check_same_thread=True): open it on a thread of our own (_pin.py).
    pinnable = factory is driver
    resolve = (pinnable and type(adapter) is Adapter
               and not hasattr(driver, "__asynchdb_adapter__"))
    if not flags and seconds is None and sink is None and not (
            adapter.connect_on_worker and _interrupt.could_interrupt()):
        if pinnable:
            return _open_pinnable(adapter, factory, args, dict(kwargs), resolve)
        raw = adapter.connect(factory, args, dict(kwargs))
        return _wrap(adapter, raw)
    caller = threading.get_ident()  # the driver's "opening thread"

    ch = Channel(adapter)
    conn = Connection._make(ch)
    kw = dict(kwargs)
    if pinnable:
        ch.set_pin(PinThread())

    def open_() -> Connection:
        # worker thread (the pin thread for a connect callable)
        try:
            raw = adapter.connect(factory, args, kw)
        except BaseException:
            ch.release_unopened()
            raise
        ch.raw = raw
        if pinnable:
            _settle_pin(ch, raw, resolve)
        ad = ch.adapter  # the connection's own, once a callable's is known
        try:
            stand_in = ad.prepare(ch.view)
        except BaseException:
            ch.close(wait=0)
            raise
        if stand_in is not None:
            ch.set_stand_in(stand_in)
        if ch.pin is None and ad.same_thread(ch.view):
            ch.bind_home(caller, ad.wrong_thread_error)
        return conn

    job = Job(ch, "connect", open_, cancellable=False)
    job.on_late_value = _close_late
    job.on_dropped = ch.release_unopened
    if sink is not None:
        job.advise(sink)
    if seconds is not None:
        job.set_deadline(seconds)
    if not job.done():
        ch.submit(job)
    # else cancel_after=0: aborted before it started; the driver never ran
    if flags:
        return Operation(job)
    # synchronous with a deadline or a listener, or a connect that blocks in C
    # on the main thread (Adapter.connect_on_worker): wait here; the deadline
    # or Ctrl-C can release this thread even though the connect cannot be stopped
    _interrupt.wait_job(job)  # Ctrl-C: abandons the connect, then KeyboardInterrupt
    return job.value()


def _resolved(adapter: Adapter, raw: Any, resolve: bool) -> Adapter:
    # a connect callable from a module with no adapter (a lambda, a
    # functools.partial) and none of its own (__asynchdb_adapter__): the
    # connection's class tells the driver
    return _for_connection(raw) if resolve else adapter


def _settle_pin(ch: Channel, raw: Any, resolve: bool) -> None:
    # pin thread, just after a connect callable returned ``raw``
    adapter = _resolved(ch.adapter, raw, resolve)
    ch.set_adapter(adapter)
    if not elsewhere(bound_to_opener, adapter, raw):
        ch.unpin()


def _open_pinnable(adapter: Adapter, factory: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any], resolve: bool) -> Connection:
    """Synchronous connect through a callable: open it on a pin thread, keep it if bound."""
    pin = PinThread()
    try:
        raw = pin.call(adapter.connect, factory, args, kwargs)
    except BaseException:
        pin.stop()
        raise
    adapter = _resolved(adapter, raw, resolve)
    if not bound_to_opener(adapter, raw):  # asked here: not the opener's thread
        pin.stop(join=1.0)
        return _wrap(adapter, raw)
    ch = Channel(adapter, raw)
    ch.set_pin(pin)
    try:
        stand_in = pin.call(adapter.prepare, ch.view)
    except BaseException:
        ch.close(wait=None)
        raise
    if stand_in is not None:
        ch.set_stand_in(stand_in)
    return Connection._make(ch)


def _reinit(ch: Channel, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # owner thread: the driver's own __init__ on its connection, then the
    # adapter's set-up again (sqlite3 re-opens, which drops its hooks)
    raw = ch.driver_raw()
    type(raw).__init__(raw, *args, **kwargs)
    if ch.raw is raw:
        stand_in = ch.adapter.prepare(ch.view)
        if stand_in is not None:
            ch.set_stand_in(stand_in)


def _close_late(conn: Connection) -> None:
    # worker thread: a connect that was abandoned came back; close what it opened
    conn._ch.close(wait=0)


def wrap(dbapi_connection: Any) -> Connection:
    """Wrap an already open DB-API connection.

    Use the driver connection only through the wrapper afterwards.  A sqlite3
    connection must have been opened with ``check_same_thread=False`` for
    asynchronous calls (they run on worker threads); synchronous calls work
    either way from the thread that opened it.
    """
    if isinstance(dbapi_connection, Connection):
        return dbapi_connection
    adapter = _for_connection(dbapi_connection)
    # a driver with an adapter of its own may lack commit() (apsw: SQL transactions)
    needed = ("cursor", "close") if type(adapter) is not Adapter else ("cursor", "commit",
                                                                        "close")
    for name in needed:
        if not callable(getattr(dbapi_connection, name, None)):
            raise TypeError(
                f"wrap() needs an open DB-API connection (with cursor, commit and close); "
                f"{type(dbapi_connection).__name__} has no {name}()")
    return _wrap(adapter, dbapi_connection)


def _wrap(adapter: Adapter, raw: Any) -> Connection:
    ch = Channel(adapter, raw)
    try:
        stand_in = adapter.prepare(ch.view)
    except BaseException:
        ch.release_unopened()
        raise
    if stand_in is not None:
        ch.set_stand_in(stand_in)
    if adapter.same_thread(ch.view):
        ch.bind_home(threading.get_ident(), adapter.wrong_thread_error)
    return Connection._make(ch)
