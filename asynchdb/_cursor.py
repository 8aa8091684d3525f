"""Cursor: the drop-in DB-API cursor whose blocking calls can return an Operation.

Without ``asynch=``, ``cancel_after=`` or ``listener=`` every method is the
driver's: same arguments, same return values (the wrapper stands in for the
driver cursor), same exceptions.  Such a call runs on the caller's thread when
the connection is free, with no thread hop.

While the cursor's operation is in INITIALIZATION the cursor is a *zombie*:
reading results or starting another call raises :class:`ZombieError`.
``close()`` is always allowed; it aborts the operation first.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Iterable, Iterator
from time import perf_counter_ns as _clock
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Union, overload

from . import _interrupt, _stepper
from ._args import check_timeout, parse_asynch
from ._notify import make_sink
from ._operation import OWNER, Job, Operation, StoppedByAbort, fresh_error
from ._population import DEFAULT_LIMIT, RowBuffer
from .errors import ZombieError, _detached
from .status import Asynch

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Cursor"]

_POPULATION = Asynch.SEQUENTIAL_POPULATION | Asynch.BACKGROUND_POPULATION | Asynch.PREPOPULATE
_POPULATION_BITS = int(_POPULATION)
_METHOD_TYPES = (types.MethodType, types.BuiltinMethodType)
_OWN = frozenset({"_conn", "_ch", "_raw", "_guard", "_closed", "_limit"})


class _ClosedCursor:
    """Stands in for a driver cursor whose close is still queued behind work."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        cls = getattr(self._module, "ProgrammingError", None)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            cls = ValueError
        raise cls("Cannot operate on a closed cursor.")


class _IfDriverHas:
    """A method offered only when the driver cursor has it: ``hasattr`` mirrors the driver.

    DB-API code probes optional methods (``callproc``, ``nextset``) with
    ``hasattr``; the wrapper must not claim what the driver lacks.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self.fn
        raw = obj._raw
        if not isinstance(raw, _ClosedCursor):
            getattr(raw, self.name)  # the driver's own AttributeError
        return types.MethodType(self.fn, obj)


class Cursor:
    """A DB-API cursor wrapper (see the module docstring)."""

    __slots__ = ("_conn", "_ch", "_raw", "_guard", "_closed", "_limit", "__weakref__")
    #: What a driver method gets instead of this wrapper as an argument.
    _unwrap_to = "driver_cursor"

    @classmethod
    def _make(cls, connection: Connection, raw: Any) -> Cursor:
        """The wrapper of ``raw`` (the engine's constructor; ``__init__`` is the driver's)."""
        self = object.__new__(cls)
        osa = object.__setattr__
        osa(self, "_conn", connection)
        osa(self, "_ch", connection._ch)
        osa(self, "_raw", raw)
        #: The operation whose outcome still matters to reads (pending or canceled).
        osa(self, "_guard", None)
        osa(self, "_closed", False)
        osa(self, "_limit", DEFAULT_LIMIT)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Re-run the driver cursor's own ``__init__``, under the ownership rule.

        Wrappers are built by :meth:`Connection.cursor`, never by this.
        """
        raw = self._raw
        self._ch.call(type(raw).__init__, raw, *unwrap_args(args), **unwrap_kwargs(kwargs))

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(cur, <the driver's cursor class>) is True, as is
        # isinstance(cur, Cursor); only type(cur) tells them apart
        raw = self.driver_cursor
        return Cursor if isinstance(raw, _ClosedCursor) else type(raw)

    @property
    def driver_cursor(self) -> Any:
        """The wrapped driver cursor.  Use it only when no operation is pending."""
        raw = self._raw
        if self._ch.stand_in and not isinstance(raw, _ClosedCursor):
            return getattr(raw, "driver_cursor", raw)
        return raw

    # ------------------------------------------------------------------
    # the zombie guard
    # ------------------------------------------------------------------
    def _settle(self, starting: bool) -> RowBuffer | None:
        """Apply the guard; return the row buffer reads must come from, if any."""
        job: Job = self._guard
        if job.initializing():
            raise ZombieError(job.handle())
        buf = job.populate
        if buf is not None and buf.started:
            if not starting:
                return buf
            if job.populating():
                # new work on this cursor ends the population first (no veto)
                job.abort(force=True)
                job.wait(None)
        elif job.canceled() and not starting:
            # a fresh copy each time, which nothing keeps: the guard's error must
            # not collect the frames of every read it is raised to (see _start)
            raise fresh_error(job.outcome()[2], cause=True)
        object.__setattr__(self, "_guard", None)
        return None

    @property
    def buffer_rows(self) -> int:
        """Rows background population buffers before the worker holds back."""
        return self._limit  # type: ignore[no-any-return]

    @buffer_rows.setter
    def buffer_rows(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"buffer_rows must be a positive int, not {value!r}")
        object.__setattr__(self, "_limit", value)

    # ------------------------------------------------------------------
    # starting work
    # ------------------------------------------------------------------
    @overload
    def execute(self, operation: Any, *args: Any, asynch: Literal[False] = ...,
                cancel_after: Optional[float] = ..., listener: Any = ...,
                **kwargs: Any) -> Cursor: ...
    @overload
    def execute(self, operation: Any, *args: Any, asynch: Union[Literal[True], int],
                cancel_after: Optional[float] = ..., listener: Any = ...,
                **kwargs: Any) -> Operation[Cursor]: ...

    def execute(self, operation: Any, *args: Any, asynch: Union[bool, int] = False,
                cancel_after: Optional[float] = None, listener: Any = None,
                **kwargs: Any) -> Any:
        """Execute a statement: the driver's ``execute``, optionally asynchronous.

        Returns the cursor, or with ``asynch`` an Operation whose result is the cursor.
        """
        if asynch is False and cancel_after is None and listener is None:
            # the drop-in path: no Operation, no thread hop when the connection is free
            if self._guard is not None:
                self._settle(True)
            ch = self._ch
            since = _clock()  # a Ctrl-C before this is not this call's (_interrupt)
            # some drivers' main-thread calls hop, so that Ctrl-C lands in
            # the wait, not inside the driver (Adapter.interrupt_on_worker)
            if (not ch.adapter.interrupt_on_worker
                    or not _interrupt.interruptible_here()) and ch.take():
                # what Ctrl-C would cancel (three stores, restored for nested calls)
                raw = self._raw
                outer, outer_kind, outer_since = ch.inline, ch.inline_kind, ch.inline_since
                ch.inline_since, ch.inline, ch.inline_kind = since, raw, "execute"
                try:
                    try:
                        # spelled out: a plain call skips building the argument tuple
                        # and dict again (about 10% of a SELECT 1, benchmarks P1)
                        if kwargs:
                            raw.execute(operation, *args, **kwargs)
                        elif len(args) == 1:
                            raw.execute(operation, args[0])
                        elif args:
                            raw.execute(operation, *args)
                        else:
                            raw.execute(operation)
                    except BaseException as exc:
                        # a copy, before anything chains to it (Adapter.keeps_errors)
                        copy = _detached(exc) if ch.adapter.keeps_errors else exc
                        if _interrupt.ARMED:  # the error path only: Ctrl-C? (docs/interrupts.md)
                            try:
                                _interrupt.after_error(ch, copy)
                            except KeyboardInterrupt as ki:
                                # Python's own handler raised it on entering after_error
                                _interrupt.after_error(ch, ki)
                                raise
                        if copy is not exc:
                            raise copy from copy.__cause__
                        raise
                except KeyboardInterrupt as ki:
                    if _interrupt.EARLY_SIGNALS:  # Python 3.9/3.10 (interrupt.py)
                        _interrupt.taken_on_entry(ch, ki)
                    raise
                finally:
                    ch.inline, ch.inline_kind, ch.inline_since = outer, outer_kind, outer_since
                    ch.release()
            elif ch.adapter.hold_interrupt and _interrupt.interruptible_here() and ch.take():
                # a pure-Python driver on the main thread: inline, Ctrl-C held off
                try:
                    raw = self._raw
                    _interrupt.held_call(ch, raw, "execute", since, raw.execute,
                                         (operation, *args), kwargs)
                finally:
                    ch.release()
            else:
                ch.call(self._raw.execute, operation, *args, **kwargs)
            return self
        return self._start("execute", self._raw.execute, (operation, *args), kwargs,
                           asynch, cancel_after, listener, True)

    @overload
    def executemany(self, operation: Any, seq_of_parameters: Iterable[Any], *args: Any,
                    asynch: Literal[False] = ..., cancel_after: Optional[float] = ...,
                    listener: Any = ..., **kwargs: Any) -> Cursor: ...
    @overload
    def executemany(self, operation: Any, seq_of_parameters: Iterable[Any], *args: Any,
                    asynch: Union[Literal[True], int], cancel_after: Optional[float] = ...,
                    listener: Any = ..., **kwargs: Any) -> Operation[Cursor]: ...

    def executemany(self, operation: Any, seq_of_parameters: Iterable[Any], *args: Any,
                    asynch: Union[bool, int] = False, cancel_after: Optional[float] = None,
                    listener: Any = None, **kwargs: Any) -> Any:
        """The driver's ``executemany``; progress counts parameter sets done."""
        if asynch is False and cancel_after is None and listener is None:
            if self._guard is not None:
                self._settle(True)
            self._ch.call(self._raw.executemany, operation, seq_of_parameters, *args, **kwargs)
            return self
        return self._start("executemany", self._raw.executemany,
                           (operation, seq_of_parameters, *args), kwargs,
                           asynch, cancel_after, listener, True)

    @_IfDriverHas
    def callproc(self, procname: str, *args: Any, asynch: Union[bool, int] = False,
                 cancel_after: Optional[float] = None, listener: Any = None,
                 **kwargs: Any) -> Any:
        """The driver's ``callproc``; its return value unchanged."""
        fn = self._raw.callproc
        if asynch is False and cancel_after is None and listener is None:
            if self._guard is not None:
                self._settle(True)
            return self._ch.call(fn, procname, *args, **kwargs)
        return self._start("callproc", fn, (procname, *args), kwargs,
                           asynch, cancel_after, listener, False)

    @_IfDriverHas
    def nextset(self, *, asynch: Union[bool, int] = False, cancel_after: Optional[float] = None,
                listener: Any = None) -> Any:
        """The driver's ``nextset`` (``True``; ``None`` or ``False`` at the end)."""
        fn = self._raw.nextset
        if asynch is False and cancel_after is None and listener is None:
            if self._guard is not None:
                self._settle(True)
            return self._ch.call(fn)
        return self._start("nextset", fn, (), {}, asynch, cancel_after, listener, False)

    def _start(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any], asynch: Union[bool, int], cancel_after: Optional[float],
               listener: Any, returns_cursor: bool) -> Any:
        # caller thread: validate everything before anything runs
        if asynch is True and cancel_after is None and listener is None:
            flags, seconds, sink = Asynch.INITIALIZE, None, None  # the plain call
        else:
            flags = parse_asynch(asynch)
            seconds = check_timeout(cancel_after, "cancel_after")
            sink = make_sink(listener) if listener is not None else None
        if self._guard is not None:
            self._settle(True)
        ch = self._ch
        if ch.closed:
            raise ch.closed_error()
        if self._closed:
            _ = self._raw.execute  # the driver's own closed-cursor error, if it has one
            raise ch.closed_error()
        # an event loop's thread steps the statement itself when the adapter
        # can (asynchdb._stepper): no worker, no wake-up
        loop = (_stepper.running_loop() if ch.steps and kind == "execute" and flags
                and sink is None and not int(flags) & _POPULATION_BITS else None)
        if flags and sink is None and seconds is None and loop is None:
            ch.wake_early()  # its wake-up overlaps building the job
        job = Job(ch, kind, _noop, raw_cursor=self._raw)
        job.loop = loop
        if flags:
            job.repair_after_wake = True  # an Operation's waiters go through asynchdb
        if kind == "executemany":
            adapter = ch.adapter
            if adapter.chunks_executemany and len(args) == 2:
                fn = _chunked(job, adapter, ch, self._raw, fn, args, kwargs)
            elif adapter.counts_executemany:
                args = (args[0], _counting(job, args[1]), *args[2:])
        # one partial, not a closure (a function, its cells and their tuple):
        # fewer objects for the collector per operation (benchmarks P9)
        job.fn = functools.partial(fn, *args, **kwargs) if args or kwargs else fn
        job.returns_owner = returns_cursor
        # int(): an IntFlag `&` builds a new flag through the enum machinery,
        # about 1 us on the caller's path (benchmarks P2)
        if int(flags) & _POPULATION_BITS and kind != "executemany":
            background = flags & (Asynch.SEQUENTIAL_POPULATION | Asynch.BACKGROUND_POPULATION)
            job.populate = RowBuffer(self._limit if background else None)
        if sink is not None:
            job.advise(sink)
        object.__setattr__(self, "_guard", job)
        if flags and sink is None and seconds is None:
            # the plain asynchronous call: queue it, then build the handle
            # while the worker wakes up (with no listener nothing asks the
            # job for its handle before it exists)
            ch.submit(job)
            return Operation(job, self)
        if seconds is not None:
            job.set_deadline(seconds)
        if flags:
            op: Operation[Any] = Operation(job, self)
            ch.submit(job)
            return op
        ch.run_sync(job)
        _, value, error = job.outcome()
        if error is None:
            return self if value is OWNER else value
        # The error goes to the caller, whose frames its traceback will hold
        # (often with this cursor in them).  Nothing the cursor keeps may refer
        # to it, or cursor and error form a cycle that only the collector frees,
        # and a released cursor would not abort its next operation at once.
        # A driver error needs no guard (the next call goes to the driver, as
        # after a plain call); an abort leaves the guard with its own copy, so
        # that reads still raise it.  And this frame, which the traceback keeps,
        # lets go of the job (job and error would be a cycle through it).
        if job.canceled():
            job.detach_error()
        else:
            object.__setattr__(self, "_guard", None)
        del self, job, ch, value
        try:
            raise error
        finally:
            error = None

    # ------------------------------------------------------------------
    # reading results
    # ------------------------------------------------------------------
    def fetchone(self) -> Any:
        """The driver's ``fetchone``; during population, the next buffered row."""
        if self._guard is not None:
            buf = self._settle(False)
            if buf is not None:
                try:
                    return buf.take_one()
                except KeyboardInterrupt:
                    _interrupt.population_interrupted(self._guard)
                    raise
        ch = self._ch
        since = _clock()  # a Ctrl-C before this is not this call's (_interrupt)
        if ch.take():  # no hop: these drivers' fetches read rows held in memory
            outer, outer_kind, outer_since = ch.inline, ch.inline_kind, ch.inline_since
            raw = self._raw
            ch.inline_since, ch.inline, ch.inline_kind = since, raw, "fetchone"
            try:
                try:
                    return raw.fetchone()
                except BaseException as exc:
                    # a copy, before anything chains to it (Adapter.keeps_errors)
                    copy = _detached(exc) if ch.adapter.keeps_errors else exc
                    if _interrupt.ARMED:  # the error path only: Ctrl-C? (docs/interrupts.md)
                        try:
                            _interrupt.after_error(ch, copy)
                        except KeyboardInterrupt as ki:
                            # Python's own handler raised it on entering after_error
                            _interrupt.after_error(ch, ki)
                            raise
                    if copy is not exc:
                        raise copy from copy.__cause__
                    raise
            except KeyboardInterrupt as ki:
                if _interrupt.EARLY_SIGNALS:  # Python 3.9/3.10 (interrupt.py)
                    _interrupt.taken_on_entry(ch, ki)
                raise
            finally:
                ch.inline, ch.inline_kind, ch.inline_since = outer, outer_kind, outer_since
                ch.release()
        return ch.call(self._raw.fetchone)

    def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        """The driver's ``fetchmany``; during population, the rows buffered so far.

        During population it blocks only until at least one row is there (or
        the set ended) and returns at most ``size`` (default ``arraysize``) rows.
        """
        if self._guard is not None:
            buf = self._settle(False)
            if buf is not None:
                size = args[0] if args else kwargs.get("size", self._raw.arraysize)
                try:
                    return buf.take_many(int(size))
                except KeyboardInterrupt:
                    _interrupt.population_interrupted(self._guard)
                    raise
        return self._ch.call(self._raw.fetchmany, *args, **kwargs)

    def fetchall(self) -> Any:
        """The driver's ``fetchall``; during population, every remaining row."""
        if self._guard is not None:
            buf = self._settle(False)
            if buf is not None:
                try:
                    return buf.take_all()
                except KeyboardInterrupt:
                    _interrupt.population_interrupted(self._guard)
                    raise
        ch = self._ch
        since = _clock()  # a Ctrl-C before this is not this call's (_interrupt)
        if ch.take():  # no hop: these drivers' fetches read rows held in memory
            outer, outer_kind, outer_since = ch.inline, ch.inline_kind, ch.inline_since
            raw = self._raw
            ch.inline_since, ch.inline, ch.inline_kind = since, raw, "fetchall"
            try:
                try:
                    return raw.fetchall()
                except BaseException as exc:
                    # a copy, before anything chains to it (Adapter.keeps_errors)
                    copy = _detached(exc) if ch.adapter.keeps_errors else exc
                    if _interrupt.ARMED:  # the error path only: Ctrl-C? (docs/interrupts.md)
                        try:
                            _interrupt.after_error(ch, copy)
                        except KeyboardInterrupt as ki:
                            # Python's own handler raised it on entering after_error
                            _interrupt.after_error(ch, ki)
                            raise
                    if copy is not exc:
                        raise copy from copy.__cause__
                    raise
            except KeyboardInterrupt as ki:
                if _interrupt.EARLY_SIGNALS:  # Python 3.9/3.10 (interrupt.py)
                    _interrupt.taken_on_entry(ch, ki)
                raise
            finally:
                ch.inline, ch.inline_kind, ch.inline_since = outer, outer_kind, outer_since
                ch.release()
        return ch.call(self._raw.fetchall)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    @property
    def description(self) -> Any:
        if self._guard is not None:
            self._settle(False)
        return self._raw.description

    @property
    def rowcount(self) -> Any:
        if self._guard is not None:
            self._settle(False)
        return self._raw.rowcount

    @property
    def lastrowid(self) -> Any:
        if self._guard is not None:
            self._settle(False)
        return self._raw.lastrowid

    @property
    def arraysize(self) -> Any:
        return self._raw.arraysize

    @arraysize.setter
    def arraysize(self, value: Any) -> None:
        self._raw.arraysize = value

    @property
    def connection(self) -> Connection:
        """The wrapping :class:`~asynchdb.Connection`."""
        return self._conn  # type: ignore[no-any-return]

    def setinputsizes(self, *args: Any, **kwargs: Any) -> Any:
        if self._guard is not None:
            self._settle(True)
        return self._ch.call(self._raw.setinputsizes, *args, **kwargs)

    def setoutputsize(self, *args: Any, **kwargs: Any) -> Any:
        return self._ch.call(self._raw.setoutputsize, *args, **kwargs)

    # ------------------------------------------------------------------
    # closing
    # ------------------------------------------------------------------
    def close(self) -> None:
        """Abort the pending operation, if any, then close the driver cursor.

        Never blocks for longer than a bounded wait: when the connection is busy
        with other work, the driver cursor is closed by its worker afterwards.
        """
        ch = self._ch
        if ch.home is not None and not self._closed:
            ch.check_home()  # the driver's same-thread rule, before anything changes
        job = self._guard
        if job is not None:
            if not job.done():
                job.abort(force=True)
            # reads now raise the driver's closed-cursor error, not ZombieError
            object.__setattr__(self, "_guard", None)
        if self._closed:
            return
        object.__setattr__(self, "_closed", True)
        ch = self._ch
        raw = self._raw
        if not ch.close_cursor(raw):
            # parked: the owner closes the driver cursor once it lets go
            object.__setattr__(self, "_raw", _ClosedCursor(ch.module))

    def __del__(self) -> None:
        try:
            job = self._guard
            if job is not None and not job.done():
                job.abort(force=True)
            if not self._closed and not isinstance(self._raw, _ClosedCursor):
                self._ch.discard_cursor(self._raw)
        except Exception:  # noqa: BLE001  # pragma: no cover - never raise from a finalizer
            pass

    # ------------------------------------------------------------------
    # context manager and driver extras
    # ------------------------------------------------------------------
    def __enter__(self) -> Cursor:
        enter = getattr(type(self._raw), "__enter__", None)
        if enter is None:
            # what ``with`` says of the driver's cursor on this Python
            if sys.version_info < (3, 11):
                raise AttributeError("__enter__")
            raise TypeError(f"'{type(self._raw).__name__}' object does not support the "
                            "context manager protocol")
        self._ch.call(enter, self._raw)
        return self

    def __exit__(self, *exc: Any) -> Any:
        job = self._guard
        if job is not None and not job.done():
            job.abort(force=True)
        return self._ch.call(type(self._raw).__exit__, self._raw, *exc)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raw = self._raw
        attr = getattr(raw, name)
        if isinstance(attr, _METHOD_TYPES) and getattr(attr, "__self__", None) is raw:
            return _Extra(self, attr)
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN or isinstance(getattr(Cursor, name, None), property):
            object.__setattr__(self, name, value)
        else:
            setattr(self._raw, name, value)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # pickle and copy as the driver object (which refuses): the default
        # would take this wrapper's __class__ (the driver's) for its own
        return self.driver_cursor.__reduce_ex__(protocol)

    def __delattr__(self, name: str) -> None:
        if name in _OWN or isinstance(getattr(Cursor, name, None), property):
            object.__delattr__(self, name)
        else:
            delattr(self._raw, name)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        job = self._guard
        if job is not None and not job.done():
            state = "zombie"
        return f"<asynchdb.Cursor {state} on {self._ch.adapter.name} at {id(self):#x}>"


class _Extra:
    """A driver-specific cursor method, run under the connection's ownership rule."""

    __slots__ = ("_cursor", "_fn")

    def __init__(self, cursor: Cursor, fn: Callable[..., Any]) -> None:
        self._cursor = cursor
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cur = self._cursor
        if cur._guard is not None:
            cur._settle(True)
        result = cur._ch.call(self._fn, *unwrap_args(args), **unwrap_kwargs(kwargs))
        return cur if result is cur._raw else result

    def __repr__(self) -> str:
        return f"<asynchdb wrapper of {self._fn!r}>"


def _unwrap(value: Any) -> Any:
    # type(), not isinstance(): the wrappers' __class__ is the driver's
    name = getattr(type(value), "_unwrap_to", None)
    return value if name is None else getattr(value, name)


def unwrap_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with every wrapped connection or cursor replaced by the driver's own."""
    return tuple(_unwrap(a) for a in args) if args else args


def unwrap_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with every wrapped connection or cursor replaced by the driver's own."""
    return {k: _unwrap(v) for k, v in kwargs.items()} if kwargs else kwargs


def _noop() -> None:  # pragma: no cover - replaced before the job runs
    return None


#: Parameter sets per chunk when the sequence has no length.
CHUNK = 500
#: About this many chunks when it has one (each chunk at least MIN_CHUNK sets).
CHUNKS = 20
MIN_CHUNK = 50


def _chunked(job: Job, adapter: Any, ch: Any, raw_cursor: Any, fn: Callable[..., Any],
             args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` (the driver's executemany) run chunk by chunk through the adapter."""
    operation, seq = args

    def run(*_: Any, **__: Any) -> Any:
        # owner thread
        if adapter.chunked_executemany(ch.view, raw_cursor, operation, _chunks(job, seq),
                                       kwargs):
            return None
        return fn(operation, seq, **kwargs)

    return run


def _chunks(job: Job, seq: Iterable[Any]) -> Iterator[list[Any]]:
    """Cut ``seq`` into chunks, counting the parameter sets of each chunk done."""
    total: Optional[int]
    try:
        total = len(seq)  # type: ignore[arg-type]
    except TypeError:
        total = None
    size = max(MIN_CHUNK, -(-total // CHUNKS)) if total else CHUNK
    if total:
        job.set_progress(0, total)
    done = 0
    chunk: list[Any] = []
    for params in seq:
        chunk.append(params)
        if len(chunk) >= size:
            yield chunk
            done += len(chunk)
            chunk = []
            _chunk_done(job, done, total)
    if chunk:
        yield chunk
        done += len(chunk)
        _chunk_done(job, done, total)


def _chunk_done(job: Job, done: int, total: Optional[int]) -> None:
    # the driver asked for the next chunk: the last one is done
    if not total:
        job.set_progress(0, None, f"{done} parameter sets done")
    elif done < total:
        job.set_progress(done)
    if job.abort_requested() and (total is None or done < total):
        # none more is sent; the job ends CANCELED (a cancel with no driver error)
        raise StoppedByAbort(f"executemany was aborted after {done} parameter sets")


def _counting(job: Job, seq: Iterable[Any]) -> Iterator[Any]:
    """Hand parameter sets to the driver one by one, counting those done."""
    total: Optional[int]
    try:
        total = len(seq)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if total:
        job.set_progress(0, total)
    done = 0
    for params in seq:
        yield params
        # the driver asks for the next set: this one is done (count it before
        # the next is produced, which may take long)
        done += 1
        if not total:
            job.set_progress(0, None, f"{done} parameter sets done")
        elif done < total:
            job.set_progress(done)

