"""Channel: one wrapped driver connection, its queue, and who may touch it.

The ownership rule lives here and nowhere else.  At any moment at most one
thread calls into the driver connection or any of its cursors: the *owner*.
A thread becomes the owner with :meth:`Channel.take` and stops being it with
:meth:`Channel.release`, once per successful ``take``; the owner is either a
pool thread draining the queue (:meth:`Channel.drain`) or, for a synchronous
call made while nothing is queued, the caller's own thread, so the drop-in
path pays no thread hop.

The ownership is a re-entrant lock, so it always knows its owner thread, and
``take`` is re-entrant: a thread that already owns the connection goes
straight in (and releases once more when done).  That is how
driver callbacks that run on the calling thread while a call is in progress
(a sqlite3 user function, a generator feeding ``executemany``, the listener of
a synchronous call) use the connection exactly as far as the raw driver
allows: they run, or they get the driver's own error ("Recursive use of
cursors not allowed"), and never wait for a thread that waits for them.

Driver cursors released while someone else owns the connection are parked in
the *graveyard* and closed by the next thread that takes the connection (in
``take``, before its own call; between tasks in ``drain``; before the close);
a cursor is never closed from a non-owner thread, from inside a nested call,
or under ``_mutex``.

The only driver call a non-owner makes is the cancel primitive
(:meth:`Channel.cancel`), under ``_cancel_lock`` and only while the call it
targets is the one running, so a cancel never overlaps the start of the next
statement, a close, or a cursor close: MariaDB Connector/ODBC frees memory in
use when a cancel races a close (see docs/drivers.md).

Tasks run one after another in the order they were submitted.

Locks, outermost first (docs/design.md has the whole table): ``_owner`` (the
ownership itself, held across driver calls; never taken under either of the
others), ``_cancel_lock`` (held around a cancel and around ``begin``/``end``;
the owner takes it in ``begin`` and in the close), ``_mutex`` (the queue and
its flags; held for a few assignments).
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from time import perf_counter_ns as _clock
from typing import Any, Callable, Optional, Protocol

from . import _interrupt
from ._hub import HUB
from ._pin import PinThread, bound_to_opener, elsewhere
from .adapters import Adapter, CallView
from .errors import AsynchError, _detached

log = logging.getLogger("asynchdb")

_get_ident = threading.get_ident

#: Seconds ``close()`` waits for a busy worker before leaving the close to it.
CLOSE_WAIT = 5.0

#: What ``task.start_steps(loop)`` answers (:meth:`Channel.pump`): the loop
#: waits for the statement's next step; it ended (or never ran); it must run
#: on a worker (the adapter has no steps for it; nothing ran).
STEPPING, ENDED, BLOCKING = 0, 1, 2


class Task(Protocol):
    """Something queued on a channel (an operation's job, a population turn, a call)."""

    def run(self) -> None:
        """Do the work; never raises (owner thread)."""

    def done(self) -> bool:
        """Whether it ended (a task that ended never runs)."""

    def stop(self, reason: str) -> None:
        """End it without running it, or abort it if it runs (no veto; any thread)."""


class Running(Task, Protocol):
    """The call inside the driver now (an operation's job), as the channel knows it."""

    @property
    def view(self) -> CallView: ...


class _View:
    """The :class:`~asynchdb.adapters.ConnectionView` an adapter gets of a channel.

    It refers to the channel weakly: the channel keeps its view, and a cycle
    between them would keep every closed connection (and what its adapter
    keeps, such as the connect arguments) until the collector runs.
    """

    __slots__ = ("_ch", "state")

    def __init__(self, channel: Channel) -> None:
        self._ch = weakref.ref(channel)
        self.state: Any = None

    @property
    def raw(self) -> Any:
        ch = self._ch()
        return ch.raw if ch is not None else None

    @property
    def running(self) -> Optional[CallView]:
        ch = self._ch()
        call = ch.running if ch is not None else None
        return call.view if call is not None else None

    @property
    def closing(self) -> bool:
        ch = self._ch()
        return ch is None or ch.closing


class _Call:
    """A synchronous call that had to wait its turn: run on the worker, waited for here."""

    __slots__ = ("args", "error", "fn", "kwargs", "value", "_ended", "_lock", "_started")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.fn: Optional[Callable[..., Any]] = fn
        self.args = args
        self.kwargs = kwargs
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._started = False
        self._ended = threading.Event()

    def run(self) -> None:
        # owner thread
        with self._lock:
            if self._ended.is_set():
                return  # stopped while queued
            self._started = True
        fn, args, kwargs = self.fn, self.args, self.kwargs
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        try:
            assert fn is not None
            self.value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread
            self.error = exc
        finally:
            del fn, args, kwargs
            self._ended.set()

    def done(self) -> bool:
        return self._ended.is_set()

    def started(self) -> bool:
        return self._started

    def stop(self, reason: str) -> None:
        # a call that runs is not the channel's to stop (closing waits for it)
        with self._lock:
            if self._started or self._ended.is_set():
                return
            self.error = _StoppedCall(reason)
            self._ended.set()

    def wait(self, timeout: Optional[float]) -> bool:
        return self._ended.wait(timeout)


_HOOKS: dict[type, tuple[bool, bool, bool]] = {}


def _call_hooks(adapter: Adapter) -> tuple[bool, bool, bool]:
    """Which per-call hooks the adapter's class overrides.

    ``(text_source, progress_source, result_lost)``.

    The base hooks return None or False; calling them anyway costs
    bound-method calls on the worker's path before and after every driver
    call (benchmarks P2, P8).  Cached per adapter class.
    """
    cls = type(adapter)
    known = _HOOKS.get(cls)
    if known is None:
        known = _HOOKS[cls] = (
            getattr(cls, "text_source", None) is not Adapter.text_source,
            getattr(cls, "progress_source", None) is not Adapter.progress_source,
            getattr(cls, "result_lost", None) is not Adapter.result_lost)
    return known


def _has_steps(adapter: Adapter) -> bool:
    """Whether the adapter offers statements as steps (``Adapter.execute_steps``)."""
    return type(adapter).execute_steps is not Adapter.execute_steps


def _wrong_thread(home: int, here: int) -> BaseException:
    return AsynchError(f"this connection's synchronous calls belong to thread {home}; "
                       f"this is thread {here}")


class _StoppedCall(Exception):
    """Marks a queued call that the connection's close ended before it ran."""


#: Seconds the one-time question "is this connection bound to its opener?" may take.
PROBE_WAIT = 5.0


class Channel:
    """One driver connection and its logical worker (internal)."""

    def __init__(self, adapter: Adapter, raw: Any = None) -> None:
        self.adapter = adapter
        #: Which per-call hooks the adapter has (see :func:`_call_hooks`).
        self.call_hooks = _call_hooks(adapter)
        self.raw = raw
        self.module: Any = adapter.module
        #: What the adapter sees of this channel.
        self.view = _View(self)
        self._mutex = threading.RLock()
        self._tasks: collections.deque[Task] = collections.deque()
        #: True while a pool thread is assigned to drain the queue.
        self._scheduled = False
        self._owner = threading.RLock()
        #: Stop being the owner, once per successful :meth:`take` (the lock's
        #: own release: the drop-in path pays one Python call, ``take``).
        self.release = self._owner.release
        self._cancel_lock = threading.RLock()
        #: The call inside the driver right now (its cancel target).
        self.running: Optional[Running] = None
        #: The synchronous call made without a job that is inside the driver
        #: right now, on its owner's thread (what Ctrl-C cancels): the driver
        #: cursor with ``inline_kind`` the method's name, or the bound driver
        #: method with ``inline_kind`` None; both None between calls.  Set and
        #: restored by the caller around the call (nested calls restore the
        #: outer one).
        self.inline: Any = None
        self.inline_kind: Optional[str] = None
        #: When that call began (``time.perf_counter_ns()``, read before the
        #: call took the connection): a SIGINT sent before it was not for this
        #: call (Python raised its KeyboardInterrupt before the call began).
        #: A call stores it before ``inline`` and restores it after
        #: (_interrupt._main_calls reads it on both sides of ``inline``).
        self.inline_since = 0
        #: No new work is accepted.
        self.closed = False
        #: Closing: hooks stop whatever statement runs.
        self.closing = False
        #: The driver connection was closed.
        self.raw_closed = False
        #: Driver cursors whose wrapper was released while another thread owned
        #: the connection; the next owner closes them on its way out.
        self._graveyard: collections.deque[Any] = collections.deque()
        #: Tasks parked for buffer space: neither queued nor running, but
        #: pending all the same (close must stop them too).
        self._parked: weakref.WeakSet[Any] = weakref.WeakSet()
        self.counters = {"submitted": 0, "hopped": 0, "aborted": 0}
        #: ``raw`` is the adapter's stand-in, not the driver connection itself.
        self.stand_in = False
        #: ``connection.cursor()`` may run on the caller's thread whatever runs.
        self.cursor_anywhere = adapter.cursor_anywhere
        #: The one thread whose synchronous calls the driver allows (sqlite3's
        #: check_same_thread), or None.  Workers are exempt: they are owners.
        self.home: Optional[int] = None
        self._home_error: Callable[[int, int], BaseException] = _wrong_thread
        #: The thread of asynchdb's own that makes every driver call of a
        #: connection the driver binds to its opening thread (_pin.py), or None.
        self.pin: Optional[PinThread] = None
        #: The driver connection refuses every thread but its opener's (asked
        #: once, when a synchronous job would hop; None until then).
        self._bound: Optional[bool] = None
        #: The statement an event loop's thread is stepping on this connection
        #: (an ``asynchdb._stepper._Stepper``), or None: while it is set the
        #: queue is scheduled and no worker drains it.
        self.stepping: Any = None
        #: An event loop's thread may step statements (Adapter.execute_steps;
        #: never on a pinned connection: its calls all run on the pin thread).
        self.steps = _has_steps(adapter)
        HUB.opened(self)
        _interrupt.arm()  # Ctrl-C reaches the database (main thread only)

    def set_adapter(self, adapter: Adapter) -> None:
        """The adapter, once known from the connection a connect callable returned."""
        self.adapter = adapter
        self.call_hooks = _call_hooks(adapter)
        self.module = adapter.module
        if self.pin is None:
            self.cursor_anywhere = adapter.cursor_anywhere
            self.steps = _has_steps(adapter)

    def set_pin(self, pin: PinThread) -> None:
        """Drain this channel on ``pin`` only; synchronous calls hop to it."""
        self.pin = pin
        # never a thread's id: every caller's take() hops (the pin thread's
        # own calls happen inside drain, as the owner)
        self.home = -1
        self.cursor_anywhere = False
        self.steps = False  # every call on the pin thread

    def unpin(self) -> None:
        """The connection turned out not to be bound: back to the pool (pin thread)."""
        pin = self.pin
        if pin is not None:
            self.pin = None
            self.home = None
            self.cursor_anywhere = self.adapter.cursor_anywhere
            self.steps = _has_steps(self.adapter)
            pin.stop()

    def set_stand_in(self, stand_in: Any) -> None:
        """The adapter's ``prepare`` returned a stand-in: call it instead of the driver."""
        self.raw = stand_in
        self.stand_in = True

    def driver_raw(self) -> Any:
        """The driver connection itself (not the adapter's stand-in)."""
        raw = self.raw
        return getattr(raw, "driver_connection", raw) if self.stand_in else raw

    def bind_home(self, thread_id: int, error: Callable[[int, int], BaseException]) -> None:
        """Keep the driver's same-thread rule for synchronous calls (caller thread).

        ``error(home, here)`` is the driver's own error.  :meth:`take` checks
        the caller's thread (one attribute test for connections without a
        home thread; a ``get_ident`` more for those with one, benchmarks P1).
        """
        self.home = thread_id
        self._home_error = error

    def check_home(self) -> None:
        """Raise the driver's error for a synchronous call from a thread it refuses."""
        if self.pin is not None:
            return  # pinned: every thread's calls hop to the pin thread
        here = threading.get_ident()
        if here != self.home and not self._owner._is_owned():  # type: ignore[attr-defined]
            raise self._home_error(self.home, here)  # type: ignore[arg-type]

    # ------------------------------------------------------------------
    # ownership (any thread)
    # ------------------------------------------------------------------
    def take(self) -> bool:
        """Become the owner for a call: True (then :meth:`release` once done) or False.

        True at once for the thread that owns the connection already (a
        nested call, from a driver callback); for any other thread only when
        nobody owns it and no queued work must run first.  False: use
        :meth:`call`, which runs the call in turn.
        """
        home = self.home
        if home is not None and home != _get_ident() and not self._owner._is_owned():  # type: ignore[attr-defined]
            if self.pin is not None:
                return False  # pinned: the call runs on the pin thread, in turn
            # the driver's same-thread rule (sqlite3), before anything runs;
            # owners (workers, nested callbacks) are exempt
            raise self._home_error(home, _get_ident())
        if self._graveyard:
            return self._take_and_bury()  # rare: parked cursors to close first
        # _try_own, written out: this is the drop-in path (benchmarks P1)
        if not self._scheduled and self._owner.acquire(False):
            if not self._scheduled:
                return True  # free (or ours already: the lock is re-entrant)
            self._owner.release()  # type: ignore[unreachable]  # see _try_own
        owner = self._owner
        return owner._is_owned() and owner.acquire()  # type: ignore[attr-defined]

    def _try_own(self) -> bool:
        """Own the connection if it is free and no queued work must run first."""
        if self._scheduled or not self._owner.acquire(False):
            return False
        if self._scheduled:
            # work was queued between the two reads (an event loop's
            # statement owns the connection only during its steps): in turn
            self._owner.release()  # type: ignore[unreachable]  # (another thread set it)
            return False
        return True

    def _take_anywhere(self) -> bool:
        """:meth:`take` without the home-thread rule (finalizers, internal closes)."""
        pin = self.pin
        if pin is not None and pin.ident != _get_ident():
            owner = self._owner
            return owner._is_owned() and owner.acquire()  # type: ignore[attr-defined]
        if self._graveyard:
            return self._take_and_bury()
        if self._try_own():
            return True
        owner = self._owner
        return owner._is_owned() and owner.acquire()  # type: ignore[attr-defined]

    def _take_and_bury(self) -> bool:
        owner = self._owner
        if owner._is_owned():  # type: ignore[attr-defined]
            return owner.acquire()  # nested: the outermost owner closes them
        if not self._try_own():
            return False
        self._bury()
        return True

    def owns(self) -> bool:
        """Whether the current thread owns the connection."""
        return self._owner._is_owned()  # type: ignore[attr-defined,no-any-return]

    def owned_by(self, thread_id: int) -> bool:
        """Whether ``thread_id`` owns the connection right now (any thread; a snapshot).

        For the Ctrl-C watcher only: the lock keeps its owner's id but shows
        it only in its ``repr`` (``owner=<id>``, CPython 3.9 to 3.14;
        tests/unit/test_interrupt_registry.py checks it).  This keeps the
        drop-in path free of a ``get_ident`` per call.
        """
        return f" owner={thread_id} " in repr(self._owner)

    # ------------------------------------------------------------------
    # queueing (any thread)
    # ------------------------------------------------------------------
    def submit(self, task: Task, *, closing: bool = False) -> None:
        """Queue ``task`` behind earlier work; a pool thread will run it.

        A statement an event loop's thread is to step (``task.loop``, set on
        that thread) starts at once on this thread when the queue was idle
        (:meth:`pump`).
        """
        with self._mutex:
            if self.closed and not closing:
                raise self.closed_error()
            self._tasks.append(task)
            self.counters["submitted"] += 1
            if self._scheduled:
                return
            self._scheduled = True
        loop = getattr(task, "loop", None)
        if loop is not None and self.pin is None:
            self.pump(loop)
        else:
            (self.pin or HUB).dispatch(self)

    # ------------------------------------------------------------------
    # statements an event loop steps (asynchdb._stepper)
    # ------------------------------------------------------------------
    def pump(self, loop: Any) -> None:
        """Start the statements queued for ``loop``, one at a time, until one waits.

        ``loop``'s thread, with the queue scheduled and nobody draining it
        (``submit``, or the stepper whose statement just ended).  Each starts
        owning the connection; once one waits for its socket, the stepper
        calls this again when it ends.  Anything else at the head of the
        queue (a call from another thread, a statement for a worker) goes to
        a worker, which drains the rest as usual.
        """
        task: Any = None
        try:
            while True:
                # never wait for the connection on the loop's thread: a
                # caller that took it inline before the queue was scheduled
                # (or this thread, from inside a driver callback) keeps it,
                # and a worker waits for it instead
                if self.owns() or not self._owner.acquire(False):
                    break
                try:
                    with self._mutex:
                        # read and taken at once, owning the connection: a
                        # worker woken once too often may have drained it
                        if not self._tasks:
                            self._scheduled = False
                            return
                        head: Any = self._tasks[0]
                        if getattr(head, "loop", None) is not loop or self.closing:
                            break
                        task = self._tasks.popleft()
                    if self._graveyard:
                        self._bury()
                    how = task.start_steps(loop)
                finally:
                    self._owner.release()
                if how == STEPPING:
                    return
                if how == BLOCKING:
                    with self._mutex:
                        self._tasks.appendleft(task)
                    break
                task = None
        except BaseException:
            # an interrupt on the loop's thread: whatever is queued still
            # runs, on a worker (a statement it stopped before it started
            # goes back to the head; one that started and was given up
            # queued its own resumption there)
            if (task is not None and self.stepping is None and not task.done()
                    and not task.running()):
                with self._mutex:
                    self._tasks.appendleft(task)
            if self.stepping is None:
                self.dispatch()
            raise
        self.dispatch()

    def dispatch(self) -> None:
        """Have a worker drain the scheduled queue (the thread that scheduled it).

        ``submit`` writes this out: it is on the path of every asynchronous call.
        """
        (self.pin or HUB).dispatch(self)

    def own(self) -> None:
        """Own the connection for one step of a statement (the stepping thread).

        The queue is scheduled for the stepper, so nobody else owns it; the
        lock records the thread, so a callback inside the step goes straight
        in (:meth:`take`).  :meth:`release` once the step is done.
        """
        self._owner.acquire()

    def resume_elsewhere(self, task: Task, *, dispatch: bool = True) -> None:
        """A worker runs ``task`` first, then drains the queue (any thread).

        The queue is scheduled for a stepper that gives it up (its statement
        handed over, or ended in a way only a worker may handle).
        ``dispatch=False``: the caller wakes the worker (``pump``, once).
        """
        with self._mutex:
            self._tasks.appendleft(task)
        if dispatch:
            self.dispatch()

    def before_blocking(self) -> None:
        """The current thread is about to wait for this connection's work (any thread).

        If it is the event loop's thread that steps the running statement,
        that statement could never end: a worker finishes it instead.
        """
        st = self.stepping
        if st is not None and st.thread == _get_ident():
            st.hand_over()

    def repair(self) -> None:
        """The adapter's repair after an abort (owner thread); a failure is logged."""
        try:
            self.adapter.after_abort(self.view)
        except Exception:
            log.warning("asynchdb: repairing the connection after an abort failed",
                        exc_info=True)

    def wake_early(self) -> None:
        """A task is about to be submitted: start waking a worker now (any thread).

        Waking a parked pool thread takes tens of microseconds (it sleeps in
        the kernel), longer than building the job: started first, the wake-up
        overlaps the caller's work instead of following it (benchmarks P2).
        The worker drains whatever is queued when it gets there; if the task is
        not queued yet it finds the queue empty and leaves, and ``submit``
        dispatches again.  On an event loop's thread that starts operations
        back to back, the wake-ups after the first wait for the end of the
        loop's step (``Hub.dispatch_soon``, ``asynchdb._aio._Batch``).
        """
        with self._mutex:
            if self._scheduled or self.closed:
                return
            self._scheduled = True
        if self.pin is not None:
            self.pin.dispatch(self)
        else:
            HUB.dispatch_soon(self)

    def park(self, task: Task) -> bool:
        """``task`` holds back for buffer space; closing the connection stops it too.

        False once the connection is closing: a close that found the task
        neither queued, parked nor running (a population between its
        statement's end and its first batch) did not stop it, so it must stop
        itself instead of waiting for room nobody will make.
        """
        with self._mutex:
            if self.closed:
                return False
            self._parked.add(task)
            return True

    def drain(self) -> None:
        """Run queued tasks until the queue is empty (pool thread)."""
        self._owner.acquire()
        if self.stepping is not None:
            # an event loop steps the running statement: this worker was
            # woken once too often (an interrupt on the loop's thread)
            self._owner.release()
            return
        try:
            while True:
                if self._graveyard:
                    with self._mutex:
                        head = self._tasks[0] if self._tasks else None
                    # parked cursors first, while the next task is still
                    # queued (a close stops it there; popped and not yet
                    # running, it would slip past); but not before a
                    # handed-over statement's rest: its driver lock is held
                    # until it ends (psycopg's server-side cursor close
                    # takes it), and only that task ends it
                    if not getattr(head, "holds_driver", False):
                        self._bury()
                    del head
                with self._mutex:
                    if not self._tasks:
                        self._scheduled = False
                        self._owner.release()
                        return
                    task = self._tasks.popleft()
                task.run()
                del task  # a kept traceback may keep this frame (Job.run explains)
        except BaseException:  # pragma: no cover - task.run never raises
            with self._mutex:
                self._scheduled = False
            self._owner.release()
            raise

    # ------------------------------------------------------------------
    # synchronous calls (caller thread)
    # ------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the driver synchronously: inline when the connection is free, else in turn."""
        return self.call_as(fn, None, fn, *args, **kwargs)

    def call_as(self, inline: Any, kind: Optional[str], fn: Callable[..., Any],
                *args: Any, **kwargs: Any) -> Any:
        """:meth:`call`, registered as ``inline`` and ``kind`` (what Ctrl-C would cancel).

        Caller thread.  ``inline`` and ``kind`` are as :attr:`inline` and
        :attr:`inline_kind` say: the bound driver method and None (as
        :meth:`call` passes them), or a driver cursor and the name of the
        method ``fn`` runs on it (SQLAlchemy's ``do_execute``, which takes the
        cursor as an argument, saves binding a method per statement).
        """
        since = _clock()  # a Ctrl-C before this is not this call's (_interrupt)
        if not self.adapter.interrupt_on_worker or not _interrupt.interruptible_here():
            if self.take():
                outer, outer_kind, outer_since = self.inline, self.inline_kind, self.inline_since
                self.inline_since, self.inline, self.inline_kind = since, inline, kind
                try:
                    try:
                        return fn(*args, **kwargs)
                    except BaseException as exc:
                        # a copy, before anything chains to it (Adapter.keeps_errors)
                        copy = _detached(exc) if self.adapter.keeps_errors else exc
                        if _interrupt.ARMED:  # the error path only: Ctrl-C? (docs/interrupts.md)
                            try:
                                _interrupt.after_error(self, copy)
                            except KeyboardInterrupt as ki:
                                # Python's own handler raised it on entering after_error
                                _interrupt.after_error(self, ki)
                                raise
                        if copy is not exc:
                            raise copy from copy.__cause__
                        raise
                except KeyboardInterrupt as ki:
                    if _interrupt.EARLY_SIGNALS:  # Python 3.9/3.10 (interrupt.py)
                        _interrupt.taken_on_entry(self, ki)
                    raise
                finally:
                    self.inline, self.inline_kind, self.inline_since = \
                        outer, outer_kind, outer_since
                    self.release()
        elif self.adapter.hold_interrupt and self.take():
            # a pure-Python driver on the main thread: inline, Ctrl-C held off
            try:
                return _interrupt.held_call(self, inline, kind, since, fn, args, kwargs)
            finally:
                self.release()
        task = _Call(fn, args, kwargs)
        if kind is None:  # what Ctrl-C would cancel
            target, name = getattr(inline, "__self__", None), getattr(inline, "__name__", "call")
        else:
            target, name = inline, kind
        del inline, fn, args, kwargs
        self.counters["hopped"] += 1
        self.submit(task)
        self.before_blocking()
        try:
            task.wait(None)
        except KeyboardInterrupt as ki:
            task.stop("interrupted")  # Ctrl-C while queued: it never runs
            # running on the worker: cancel it, wait (bounded) for it to end
            _interrupt.hopped_call_interrupted(self, task, name, target, ki)
            raise
        error = task.error
        if error is None:
            return task.value
        task.error = None
        del task
        if isinstance(error, _StoppedCall):
            raise self.closed_error()
        if self.adapter.keeps_errors:
            error = _detached(error)
        try:
            raise error
        finally:
            error = None  # no reference cycle through the traceback

    def run_sync(self, task: Any) -> None:
        """Run a job synchronously (a call with ``cancel_after=`` or ``listener=``).

        Inline when the connection is free, unless the driver cannot cancel:
        then the call runs on the worker, so that a deadline can still release
        the caller (the call itself is abandoned).  ``task`` has ``run`` and
        ``wait(timeout)``.
        """
        try:
            inline = self.owns() or (self.adapter.can_cancel
                                     and (not _interrupt.interruptible_here()
                                          or self._bound_to_opener()))
            if inline and self.take():
                try:
                    task.run()
                finally:
                    self.release()
                return
            # on the worker; on the main thread Ctrl-C then lands in the wait,
            # never inside the job's bookkeeping (_interrupt.wait_job)
            self.submit(task)
            self.before_blocking()
            _interrupt.wait_job(task)
        finally:
            del task  # a kept traceback may keep this frame (Job.run explains)

    def _bound_to_opener(self) -> bool:
        """Whether the driver connection refuses other threads (asked once; caller thread).

        A synchronous job on the main thread runs on a worker so that Ctrl-C
        lands in the wait (``run_sync``); a connection the driver binds to its
        opening thread (``asynchdb.wrap()`` of a sqlite3 connection opened with
        ``check_same_thread=True``, as SQLAlchemy opens an in-memory database)
        cannot go there, so its job runs inline, as before Ctrl-C support.
        The adapter is asked on a short-lived thread (``_pin.elsewhere``): the
        question only has an answer away from the opener.
        """
        bound = self._bound
        if bound is None:
            adapter = self.adapter
            if (self.home is not None or self.pin is not None
                    or type(adapter).bound_to_opener is Adapter.bound_to_opener):
                bound = False  # asynchdb opened it (or pins it): any thread may call
            else:
                bound = bool(elsewhere(bound_to_opener, adapter, self.raw, timeout=PROBE_WAIT))
            self._bound = bound
        return bound

    # ------------------------------------------------------------------
    # the running call (owner thread) and its cancel (any thread)
    # ------------------------------------------------------------------
    def begin(self, call: Running) -> None:
        with self._cancel_lock:
            self.running = call

    def end(self, call: Running) -> None:
        with self._cancel_lock:
            if self.running is call:
                self.running = None

    def end_now(self, call: Running) -> bool:
        """:meth:`end`, unless a cancel is being sent right now: then False (owner thread).

        For an event loop's thread, which must not wait for a cancel on its
        way (a network round trip).
        """
        if not self._cancel_lock.acquire(False):
            return False
        try:
            if self.running is call:
                self.running = None
        finally:
            self._cancel_lock.release()
        return True

    def cancel(self, call: Running) -> bool:
        """Send the driver's cancel if ``call`` is the one running now."""
        with self._cancel_lock:
            if self.running is not call or self.raw_closed:
                return False
            self.counters["aborted"] += 1
            try:
                self.adapter.cancel(self.view, call.view)
            except Exception:
                log.warning("asynchdb: the driver's cancel failed", exc_info=True)
                return False
            return True

    def adopt(self, call: Running) -> bool:
        """Make a synchronous call running on the worker the cancel target (Ctrl-C).

        Only while no job runs: undone by :meth:`end`.
        """
        with self._cancel_lock:
            if self.running is not None or self.raw_closed:
                return False
            self.running = call
            return True

    def cancel_inline(self, view: CallView,
                      still: Optional[Callable[[], bool]] = None) -> bool:
        """Send the driver's cancel for a call made with no job (Ctrl-C; watcher thread).

        The drop-in fast path keeps no record of its call: ``view`` describes
        it, found on the calling thread's stack.  Not while a job runs (that
        call is not the one being interrupted) or once the connection closed.
        """
        with self._cancel_lock:
            if self.running is not None or self.raw_closed or (still is not None and not still()):
                return False
            self.counters["aborted"] += 1
            self.adapter.cancel(self.view, view)
            return True

    def settle_cancels(self) -> None:
        """Return once no cancel is being sent (any thread; a barrier on the cancel lock)."""
        with self._cancel_lock:
            pass

    # ------------------------------------------------------------------
    # cursors
    # ------------------------------------------------------------------
    def close_cursor(self, raw_cursor: Any) -> bool:
        """Close a driver cursor for ``Cursor.close()``; False if it had to be parked.

        Inline when the connection is free, and from inside a driver callback
        on the owner thread (the driver's own error, if any, is raised); when
        another thread owns the connection, the cursor is parked and closed
        by the owner when it lets go.
        """
        if self.raw_closed:
            return True
        if not self.take():
            self._graveyard.append(raw_cursor)
            return False
        try:
            self.adapter.close_cursor(raw_cursor)
        finally:
            self.release()
        return True

    def discard_cursor(self, raw_cursor: Any) -> None:
        """A wrapper was released (finalizer): close its driver cursor now or park it."""
        if self.raw_closed:
            return
        if not self.owns() and self._take_anywhere():  # finalizers: any thread
            try:
                self._close_quietly(raw_cursor)
            finally:
                self.release()
        else:
            # nested (a finalizer that runs inside a driver call) or busy: later
            self._graveyard.append(raw_cursor)

    def _bury(self) -> None:
        # owner thread
        while self._graveyard:
            try:
                raw_cursor = self._graveyard.popleft()
            except IndexError:  # pragma: no cover - raced with another bury
                return
            self._close_quietly(raw_cursor)

    def _close_quietly(self, raw_cursor: Any) -> None:
        # owner thread
        if self.raw_closed:
            return
        try:
            self.adapter.close_cursor(raw_cursor)
        except Exception:
            log.debug("asynchdb: closing a released cursor failed", exc_info=True)

    # ------------------------------------------------------------------
    # closing
    # ------------------------------------------------------------------
    def stop_all(self, reason: str) -> None:
        """Stop everything queued, parked or running (no veto)."""
        with self._mutex:
            tasks = list(self._tasks)
            tasks.extend(self._parked)
        running = self.running
        if running is not None:
            # last: once it ends the worker moves on, so the queued ones go first
            tasks.append(running)
        for task in tasks:
            if not task.done():
                task.stop(reason)

    def close(self, wait: Optional[float] = CLOSE_WAIT) -> None:
        """Stop pending work, then close the driver connection on its owner.

        Returns once closed, or after ``wait`` seconds if a call that cannot be
        stopped still holds the worker (the close then happens when it returns).
        """
        with self._mutex:
            if self.closed:
                return
            self.closed = True
        self.closing = True
        busy = self._scheduled  # a call runs: close on the worker once it ends
        self.stop_all("the connection was closed")
        if self.owns():
            self._close_raw()
            return
        if not busy and self._take_anywhere():  # finalizers too: any thread
            try:
                self._close_raw()
            finally:
                self.release()
            return
        task = _Call(self._close_raw, (), {})
        self.submit(task, closing=True)
        self.before_blocking()
        if wait is None or wait > 0:
            task.wait(wait)

    def _close_raw(self) -> None:
        # owner thread
        if self.raw_closed:
            return
        if self._graveyard:
            self._bury()
        raw = self.raw
        with self._cancel_lock:
            # a Ctrl-C cancel (cancel_inline, watcher thread) in flight ends
            # first, and none starts after: never a cancel racing the close
            self.raw_closed = True
        try:
            if raw is not None:
                self.adapter.close_connection(raw)
        finally:
            HUB.closed(self)
            if self.pin is not None:
                self.pin.stop()  # it ends once this drain returns

    def release_unopened(self) -> None:
        """The driver connection never opened (or its connect failed): forget it."""
        with self._mutex:
            if self.raw_closed:
                return
            self.closed = True
            self.raw_closed = True
        HUB.closed(self)
        if self.pin is not None:
            self.pin.stop()

    def shutdown_at_exit(self) -> None:
        """Interpreter exit: stop and close without waiting (any thread)."""
        self.close(wait=0)

    def closed_error(self) -> BaseException:
        """The driver's own ProgrammingError (or InterfaceError) for a closed connection."""
        mod = self.module
        cls = getattr(mod, "ProgrammingError", None) or getattr(mod, "InterfaceError", None)
        msg = "Cannot operate on a closed connection."
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls(msg)
        return AsynchError(msg)

    def statistics(self) -> dict[str, Any]:
        """Counters for ``Connection.statistics()``."""
        with self._mutex:
            queued = len(self._tasks)
        return {
            "driver": self.adapter.name,
            "can_cancel": self.adapter.can_cancel,
            "queued": queued,
            "running": self.running is not None,
            "closed": self.closed,
            **self.counters,
            "pool_threads": HUB.thread_count(),
        }
