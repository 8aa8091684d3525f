"""Operation: the handle of one asynchronous call, and the state machine behind it.

The state machine lives in :class:`Job` (internal); :class:`Operation` is the
user's handle.  They are two objects so that the worker can hold the job while
the user's handle can still be garbage collected: releasing the last reference
to a running operation (and its cursor) aborts it, as in OLE DB.

A job's :class:`State` and the public phase it shows::

    PENDING    queued on the connection's worker       -> INITIALIZATION
    RUNNING    the driver call is in progress          -> INITIALIZATION
    POPULATING rows still arriving                     -> POPULATION
    COMPLETE   ended, with a value or the driver error  -> COMPLETE
    CANCELED   aborted                                  -> CANCELED

Moves: PENDING -> RUNNING -> (POPULATING ->) COMPLETE, and PENDING, RUNNING or
POPULATING -> CANCELED.  Every move happens under the job's lock: PENDING ->
RUNNING in ``run``, -> POPULATING in ``_enter_population``, the terminal moves
in ``_end`` (called by the ``_finish_*`` methods and ``_apply_abort``).  Other
modules ask the job (``done``, ``initializing``, ``populating``, ``canceled``)
instead of comparing states.

Following one abort: ``abort`` (any thread) asks the listeners through the
notifier (``_notify``) when there are any; ``_apply_abort`` then ends a job
that has not started, abandons one the driver cannot cancel, or sends the
driver's cancel through the channel (``Channel.cancel``, re-sent by the timer
while the call runs); the owner thread sees the driver call end and
``_finish_error`` or ``_finish_canceled`` makes it CANCELED and asks the
adapter to repair the connection.

Locks: ``Job._lock`` guards the state, the outcome, the timers and (shared
with the notifier) the listener table and its queue.  It is held only for a
few assignments: no driver call and no listener callback runs under it (the
driver's live progress sources are read before taking it).  The only other
locks taken under it are leaf locks (an Event's, the timer's) that never wait
for anything.  It is reentrant so that a finalizer run by the garbage collector
on a thread that holds it cannot deadlock.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import copy
import enum
import functools
import logging
import threading
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar

from . import _interrupt, _stepper, oledb
from ._args import check_timeout
from ._hub import HUB
from ._notify import Note, Notifier, OleDbSink, Reply, Sink, hresult_of, make_sink
from ._population import BATCH, FIRST_BATCH
from ._stepper import BLOCKING
from .errors import AbortVetoed, DeadlineExceeded, OperationCanceled, _detached
from .status import Phase, Status

if TYPE_CHECKING:
    from ._channel import Channel
    from ._hub import TimerEntry
    from ._population import RowBuffer

__all__ = ["Operation"]

T = TypeVar("T")
log = logging.getLogger("asynchdb")


class State(enum.IntEnum):
    """Where a job is (module docstring).  Only this module compares states by order."""

    #: Queued on the connection's worker; nothing sent to the driver yet.
    PENDING = 0
    #: The driver call is in progress (the cursor is a zombie).
    RUNNING = 1
    #: The driver call returned; the worker is still fetching rows.
    POPULATING = 2
    #: Ended with a value or with the driver's error.
    COMPLETE = 3
    #: Aborted.
    CANCELED = 4


PENDING, RUNNING, POPULATING, COMPLETE, CANCELED = State
_PHASE = (Phase.INITIALIZATION, Phase.INITIALIZATION, Phase.POPULATION,
          Phase.COMPLETE, Phase.CANCELED)

#: Seconds between progress notifications while a driver call runs.
TICK = 0.5

#: The C reentrant lock: threading.RLock() is a Python-level factory around it.
_new_rlock = getattr(_thread, "RLock", threading.RLock)


def _fetch_by_one(raw: Any, n: int) -> list[Any]:
    """Up to ``n`` rows from a cursor that has ``fetchone`` but no ``fetchmany`` (apsw)."""
    rows = []
    for _ in range(n):
        row = raw.fetchone()
        if row is None:
            break
        rows.append(row)
    return rows


def fresh_error(error: BaseException | None, *, cause: bool) -> OperationCanceled:
    """A new instance of an abort's error: same class and message, no traceback.

    ``cause``: keep the driver's error as ``__cause__``.  Nothing refers to the
    copy until it is raised, so its traceback cannot close a reference cycle.
    """
    assert isinstance(error, OperationCanceled)
    fresh = copy.copy(error)
    fresh.__cause__ = error.__cause__ if cause else None
    fresh.__traceback__ = None
    return fresh


class _Turn:
    """One more round of population, queued on the channel like a job."""

    __slots__ = ("job",)

    def __init__(self, job: Job) -> None:
        self.job = job

    def done(self) -> bool:
        return self.job.done()

    def stop(self, reason: str) -> None:
        self.job.stop(reason)

    def run(self) -> None:
        try:
            self.job.populate_turn()
        except BaseException:  # pragma: no cover - populate_turn never raises
            log.exception("asynchdb: population failed")
        finally:
            del self  # see Job.run


class _CallView:
    """The :class:`~asynchdb.adapters.CallView` an adapter gets of a job (read-only).

    It refers to the job weakly: the job keeps its view, and a cycle between
    them would keep a failed job's error, and the caller's frames in its
    traceback, alive until the collector runs (tests/unit/test_no_cycles.py).
    """

    __slots__ = ("__weakref__", "_job")

    def __init__(self, job: Job) -> None:
        self._job = weakref.ref(job)

    @property
    def kind(self) -> str:
        job = self._job()
        if job is None:
            return ""
        return "populate" if job._state == POPULATING else job.kind

    @property
    def cursor(self) -> Any:
        job = self._job()
        return job.raw_cursor if job is not None else None

    @property
    def abort_requested(self) -> bool:
        job = self._job()
        return job is not None and job._abort_requested


class StoppedByAbort(Exception):
    """Raised by work that stopped itself at a safe point because an abort was requested.

    The job then ends CANCELED, as after the driver's own cancel error
    (an executemany run in chunks stops between two chunks).
    """


class _OwnerValue:
    """Marker: the operation's value is the cursor that started it."""


OWNER = _OwnerValue()


class Job:
    """The state of one operation (internal; see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_abort_error",
        "_abort_pending",
        "_abort_requested",
        "_error",
        "_event",
        "_future",
        "_handle_ref",
        "_lock",
        "_notifier",
        "_on_end",
        "_readable",
        "_state",
        "_status",
        "_timers",
        "_value",
        "cancellable",
        "channel",
        "fn",
        "kind",
        "loop",
        "on_dropped",
        "on_late_value",
        "populate",
        "progress",
        "progress_fn",
        "progress_max",
        "raw_cursor",
        "_view",
        "repair_after_wake",
        "returns_owner",
        "text",
        "text_fn",
    )

    def __init__(self, channel: Channel, kind: str, fn: Callable[[], Any], *,
                 cancellable: bool = True, raw_cursor: Any = None) -> None:
        self.channel = channel
        self.kind = kind
        self.fn = fn
        self._lock = _new_rlock()
        self._state = PENDING
        self._abort_requested = False
        self._abort_pending = False
        self._abort_error: OperationCanceled | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self.progress = 0
        self.progress_max = 1
        self.text: str | None = None
        self.text_fn: Callable[[], str | None] | None = None
        #: The driver's own progress estimate while the call runs (DuckDB).
        self.progress_fn: Callable[[], tuple[int, int] | None] | None = None
        self._status: Status | None = None
        #: Held while the job runs; waiters pass through it once it is released.
        self._event: threading.Lock | None = None
        #: Set once the cursor is readable (POPULATING or ended); made by the first waiter.
        self._readable: threading.Event | None = None
        self._future: concurrent.futures.Future[Any] | None = None
        #: Callbacks for the end (``on_end``), None until the first.
        self._on_end: list[Callable[[], None]] | None = None
        #: The listeners; None until the first is advised (the fast path has none).
        self._notifier: Notifier | None = None
        self._timers: list[TimerEntry] | None = None
        self._handle_ref: weakref.ref[Operation[Any]] | None = None
        #: False for work no cancel primitive can stop (a connect): abort abandons it.
        self.cancellable = cancellable
        #: The driver cursor the call runs on (pyodbc cancels through it).
        self.raw_cursor = raw_cursor
        self._view: _CallView | None = None
        #: The value is the cursor that started the call (``OWNER``), not what ``fn`` returned.
        self.returns_owner = False
        #: Called with a value that arrives after the job was abandoned.
        self.on_late_value: Callable[[Any], None] | None = None
        #: Called (aborting thread) when the job is aborted before it ever ran.
        self.on_dropped: Callable[[], None] | None = None
        #: The row buffer when the caller asked for background population.
        self.populate: RowBuffer | None = None
        #: An asynchronous operation: after an abort, its waiters wake before
        #: the adapter's repair (see _finish_error).
        self.repair_after_wake = False
        #: The event loop whose thread drives the call as steps, or None (a
        #: worker runs it; asynchdb._stepper).
        self.loop: Any = None

    @property
    def view(self) -> _CallView:
        """What the adapter sees of this job (any thread).

        Made when first asked for: most calls have no hook and no cancel that
        needs it.  One per job, whichever thread asks first (adapters compare
        views by identity: DuckDB's and pyodbc's ``result_lost``).
        """
        view = self._view
        if view is None:
            with self._lock:  # a leaf under the cancel lock (docs/design.md)
                view = self._view
                if view is None:
                    view = self._view = _CallView(self)
        return view

    # ------------------------------------------------------------------
    # observing (any thread)
    # ------------------------------------------------------------------
    def done(self) -> bool:
        return self._state >= COMPLETE

    def initializing(self) -> bool:
        """Queued or inside the driver call: the cursor is a zombie."""
        return self._state <= RUNNING

    def populating(self) -> bool:
        return self._state == POPULATING

    def canceled(self) -> bool:
        return self._state == CANCELED

    def running(self) -> bool:
        """Inside the driver call (the notifier's tick check; caller may hold the lock)."""
        return self._state == RUNNING

    def abort_requested(self) -> bool:
        """Whether an abort was accepted (it may not have taken effect yet)."""
        return self._abort_requested

    def status(self) -> Status:
        # The driver's live sources (sqlite3's step count, DuckDB's
        # query_progress) are read outside the lock: they may call the driver.
        text_fn, progress_fn = self.text_fn, self.progress_fn
        live = self._state == RUNNING and (text_fn is not None or progress_fn is not None)
        text = text_fn() if live and text_fn is not None else None
        estimate = progress_fn() if live and progress_fn is not None else None
        with self._lock:
            st = self._status
            if live and self._state == RUNNING:
                return self._build_status(_PHASE[self._state], text, estimate)
            if st is None:
                st = self._status = self._build_status(_PHASE[self._state], None, None)
            return st

    def _build_status(self, phase: Phase, live_text: str | None,
                      estimate: tuple[int, int] | None) -> Status:
        # caller holds self._lock
        text = live_text or self.text
        if self._state == CANCELED:
            error: BaseException | None = self._abort_error
        else:
            error = self._error
        prog, pmax = self.progress, self.progress_max
        if estimate is not None:
            prog, pmax = estimate
        if self._state == COMPLETE:
            prog = pmax
        elif prog >= pmax:
            pmax = prog + 1
        return Status(phase, prog, pmax, text, error)

    def _keep_last_estimate(self) -> None:
        # owner thread, the driver call returned normally: the driver's last
        # figures become the scale the operation completes on (ClickHouse's
        # rows to read), so COMPLETE reports progress == progress_max == them
        progress_fn = self.progress_fn
        estimate = progress_fn() if progress_fn is not None else None
        if estimate is not None and 0 <= estimate[0] <= estimate[1]:
            with self._lock:
                self.progress, self.progress_max = estimate

    def _keep_last_text(self) -> None:
        # owner thread, the driver call just returned: the final count stays visible
        text_fn = self.text_fn
        if text_fn is not None:
            text = text_fn()
            if text:
                with self._lock:
                    self.text = text
                    self._status = None

    def set_progress(self, progress: int, progress_max: int | None = None,
                     text: str | None = None) -> None:
        """Record progress (thread running the work)."""
        with self._lock:
            self.progress = progress
            if progress_max is not None:
                self.progress_max = progress_max
            if text is not None:
                self.text = text
            self._status = None

    def wait(self, timeout: float | None) -> bool:
        """Block until the job ended; False if ``timeout`` seconds passed first."""
        if self._state >= COMPLETE:
            return True
        with self._lock:
            if self._state >= COMPLETE:
                return True
            gate = self._event
            if gate is None:
                # a bare lock, not an Event: about 3 us less per round trip (benchmarks P2)
                gate = self._event = threading.Lock()
                gate.acquire()
        if timeout != 0:
            # an event loop's thread (this one?) may step the statement it waits for
            self.channel.before_blocking()
        try:
            if timeout is None or timeout >= threading.TIMEOUT_MAX:
                # Lock.acquire is interruptible by signals (KeyboardInterrupt) on POSIX;
                # a longer timeout (inf) would raise OverflowError: wait for the end
                gate.acquire()
            elif not (gate.acquire(True, timeout) if timeout > 0 else gate.acquire(False)):
                return False
        except KeyboardInterrupt:
            _interrupt.signal_taken()  # Ctrl-C here: no later cancel reaches the next call
            raise
        gate.release()  # let the next waiter through
        return True

    def wait_readable(self, timeout: float | None) -> bool:
        """Block until the cursor is readable (POPULATING or ended); False on timeout."""
        if self._state >= POPULATING:
            return True
        with self._lock:
            if self._state >= POPULATING:
                return True
            ready = self._readable
            if ready is None:
                ready = self._readable = threading.Event()
        if timeout != 0:
            self.channel.before_blocking()
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None  # inf: wait for it (a longer timeout raises OverflowError)
        try:
            return ready.wait(timeout)
        except KeyboardInterrupt:
            _interrupt.signal_taken()
            raise

    def value(self) -> Any:
        """The job's value, or raise its error (the driver's, unchanged); it has ended."""
        if self._state == COMPLETE and self._error is None:
            # COMPLETE is final and its value was stored before it (under the
            # lock): no lock needed to read it
            return self._value
        _, value, error = self.outcome()
        if error is not None:
            del self  # the job keeps the error: its traceback must not keep the job
            try:
                raise error
            finally:
                error = None  # no reference cycle through the traceback
        return value

    def outcome(self) -> tuple[int, Any, BaseException | None]:
        with self._lock:
            if self._state == CANCELED:
                return CANCELED, None, self._abort_error
            return self._state, self._value, self._error

    def detach_error(self) -> None:
        """Keep a fresh copy of the abort's error instead of the one raised to the caller.

        For a synchronous call (no Operation handle, so no identity to keep):
        the raised error's traceback holds the caller's frames, and the cursor
        still holds this job for its zombie guard.  The copy has the class and
        message (later reads raise it); the raised original has the cause.
        """
        with self._lock:
            if self._abort_error is not None:
                # no cause either: on a synchronous call the driver's error has
                # the caller's frames too (through the frames' f_back)
                self._abort_error = fresh_error(self._abort_error, cause=False)

    def future(self) -> concurrent.futures.Future[Any]:
        with self._lock:
            fut = self._future
            if fut is None:
                fut = self._future = concurrent.futures.Future()
                # a running future cannot be cancelled by Future.cancel(); aborting
                # is done with Operation.abort()
                fut.set_running_or_notify_cancel()
                if self._state >= COMPLETE:
                    self._settle_future(fut)
            return fut

    def on_end(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the job ended: at once if it has (any thread).

        It runs on the thread that ends the job, after the repair of an
        abort, with nothing locked, and must not block: ``await op`` hands the
        end to the event loop this way.  Lighter than :meth:`future` (a
        ``concurrent.futures.Future`` with its condition variable each, for
        1,000 operations awaited at once: benchmarks P9).
        """
        with self._lock:
            if self._state < COMPLETE:
                if self._on_end is None:
                    self._on_end = [fn]
                else:
                    self._on_end.append(fn)
                return
        fn()

    def _settle_future(self, fut: concurrent.futures.Future[Any]) -> None:
        if fut.done():
            return
        if self._state == CANCELED:
            fut.set_exception(self._abort_error)
        elif self._error is not None:
            fut.set_exception(self._error)
        else:
            fut.set_result(self._value)

    def handle(self) -> Operation[Any]:
        """The user's handle, or a new one if it was released."""
        ref = self._handle_ref
        op = ref() if ref is not None else None
        if op is None:
            op = Operation(self, None, release_aborts=False)
        return op

    def __repr__(self) -> str:
        return (f"<asynchdb operation {self.kind} {self._state.name.lower()} "
                f"progress={self.progress}/{self.progress_max}>")

    # ------------------------------------------------------------------
    # running (the thread that owns the connection)
    # ------------------------------------------------------------------
    def run(self) -> None:
        """Run the driver call; never raises.  Owner thread."""
        if not self.begin():
            return
        try:
            value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            self.returned(None, exc)
        else:
            self.returned(value, None)
        finally:
            # A traceback the job keeps (its error's, or a later read's) keeps
            # this frame and its callers': none may keep the job, or job and
            # error form a cycle only the collector frees, which keeps the
            # caller's frames, and the cursor in them (tests/unit/test_no_cycles.py).
            del self
            value = None

    def begin(self) -> bool:
        """Enter RUNNING before the driver call: False if it must not run (owner thread)."""
        with self._lock:
            if self._state != PENDING:
                return False  # aborted while queued
            self._state = RUNNING
            self._status = None
            notifier = self._notifier
        ch = self.channel
        if notifier is not None:
            notifier.post(Note("progress", self.status()))
            self._schedule(TICK, self._tick)
        ch.begin(self)
        if self._abort_requested:
            # the abort landed before the driver started: do not start it
            ch.end(self)
            self._finish_canceled(None)
            return False
        text_hook, progress_hook, _ = ch.call_hooks
        try:
            if text_hook:
                self.text_fn = ch.adapter.text_source(ch.view, self.view)
            if progress_hook:
                self.progress_fn = ch.adapter.progress_source(ch.view, self.view)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            self.returned(None, exc)
            return False
        return True

    def returned(self, value: Any, exc: BaseException | None) -> None:
        """The driver call ended with ``value`` or ``exc``: end the job (owner thread).

        The call's thread, or the worker that finished a statement an event
        loop started (asynchdb._stepper).
        """
        ch = self.channel
        try:
            if exc is not None:
                if ch.adapter.keeps_errors:
                    exc = _detached(exc)
                ch.end(self)
                if self.text_fn is not None:
                    self._keep_last_text()
                self._finish_error(exc)
                return
            if self.returns_owner:
                value = OWNER
            ch.end(self)
            if self.text_fn is not None:
                self._keep_last_text()
            if self.progress_fn is not None:
                self._keep_last_estimate()
            # only a cancel can destroy a result, and one is sent only once
            # the abort flag is up (read after ch.end, which waited for any
            # cancel of this call still being sent)
            if (ch.call_hooks[2] and self.abort_requested()
                    and ch.adapter.result_lost(ch.view, self.view)):
                # the cancel arrived as the call returned and destroyed its result
                self._finish_canceled(None)
                return
            buf = self.populate
            if buf is not None and getattr(self.raw_cursor, "description", None) is not None:
                self._enter_population(value, buf)
            else:
                self._finish_value(value)
        finally:
            del self, ch  # see run
            value = exc = buf = None

    def start_steps(self, loop: Any) -> int:
        """Start the call as steps ``loop``'s thread drives (asynchdb._stepper).

        The loop's thread, owning the connection.  :data:`STEPPING`: the
        first step is done and the loop waits for the next; :data:`ENDED`:
        it ended (or never ran); :data:`BLOCKING`: the adapter has no steps
        for it, so it must run on a worker as usual (nothing ran).
        """
        ch = self.channel
        fn = self.fn
        try:
            steps = ch.adapter.execute_steps(ch.view, self.raw_cursor, fn.args,  # type: ignore[attr-defined]
                                             fn.keywords)  # type: ignore[attr-defined]
        except Exception:
            log.warning("asynchdb: the adapter's execute_steps failed", exc_info=True)
            steps = None
        if steps is None:
            return BLOCKING
        fileno, gen = steps
        return _stepper.start(loop, ch, self, fileno, gen)

    # ------------------------------------------------------------------
    # background population (owner thread)
    # ------------------------------------------------------------------
    def _enter_population(self, value: Any, buf: RowBuffer) -> None:
        with self._lock:
            if self._state != RUNNING:
                return  # abandoned meanwhile
            # Before the state: a reader that sees POPULATING (its guard reads
            # the state without the lock) must find the buffer started, or it
            # drops the guard and reads the driver cursor behind the worker's
            # batches, skipping them (stress: "rows out of order").
            buf.started = True
            self._value = value
            self._state = POPULATING
            self.progress, self.progress_max = 0, 1
            self._status = None
            notifier = self._notifier
            if self._readable is not None:
                self._readable.set()
        if notifier is not None:
            notifier.post(Note("progress", self.status()))
        self.populate_turn()

    def populate_turn(self) -> None:
        """Fetch rows into the buffer until the set ends or the buffer is full."""
        buf = self.populate
        assert buf is not None
        if self._state != POPULATING:
            return
        ch = self.channel
        raw = self.raw_cursor
        fetchmany = getattr(raw, "fetchmany", None)
        if fetchmany is None:  # apsw's cursors have only fetchone
            fetchmany = functools.partial(_fetch_by_one, raw)
        size = FIRST_BATCH if buf.fetched == 0 else BATCH
        error: BaseException | None = None
        ended = False
        ch.begin(self)
        try:
            while not self._abort_requested:
                space = buf.space()
                if space <= 0:
                    if not ch.park(self):  # so that closing the connection aborts it
                        # the close came while this job was between its
                        # statement and this turn, where it did not see it
                        self.stop("the connection was closed")
                        continue
                    if buf.park(self._resume_population):
                        if self.abort_requested() and buf.unpark():
                            # an abort raced the park: it saw no parked worker,
                            # so this turn must end the operation itself
                            continue
                        ch.end(self)
                        self.low_resource()
                        return
                    continue
                rows = fetchmany(min(size, space))
                size = min(size * 16, BATCH)
                if not rows:
                    ended = True
                    break
                buf.put(rows if isinstance(rows, list) else list(rows))
                self.set_progress(buf.fetched)
                notifier = self._notifier
                if notifier is not None:
                    notifier.post(Note("progress", self.status()))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            error = _detached(exc) if ch.adapter.keeps_errors else exc
        ch.end(self)
        try:
            if self._abort_requested and (error is None or
                                          ch.adapter.is_cancel_error(error)):
                # population is asynchronous: its readers wake first, and the
                # repair follows before anything else uses the connection
                buf.finish()
                self._finish_canceled(error, repair=error is not None)
                return
            if error is not None:
                buf.finish(error)
                self._finish_error(error)
                return
            assert ended
            buf.finish()
            with self._lock:
                self.progress = self.progress_max = buf.fetched
            self._finish_value(self._value)
        finally:
            del self, ch, raw  # see run
            error = buf = rows = None

    def _resume_population(self) -> None:
        # reader thread: room again in the buffer; queue the next turn
        try:
            self.channel.submit(_Turn(self), closing=True)
        except Exception:  # pragma: no cover - submit with closing=True does not raise
            log.exception("asynchdb: could not resume population")

    def _finish_value(self, value: Any) -> None:
        with self._lock:
            if self._state == CANCELED:
                late = True
            else:
                late = False
                self._value = value
                self._end(COMPLETE)
        if late:
            self._late(value, None)
        else:
            self._after_end()

    def _stopped_by(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the driver confirming our abort (or close)."""
        return ((self._abort_requested or self.channel.closing)
                and (isinstance(exc, StoppedByAbort)
                     or self.channel.adapter.is_cancel_error(exc)))

    def _finish_error(self, exc: BaseException) -> None:
        # Where the repair runs, relative to waking the waiters:
        # * a synchronous call (a deadline, a listener, SQLAlchemy's statements):
        #   before.  Its caller may use the driver connection at once, outside
        #   asynchdb's ownership (SQLAlchemy rolls back on the driver connection
        #   as soon as a deadline's wait returns), and mysqlclient refuses a
        #   second thread.
        # * an asynchronous operation (repair_after_wake): after the
        #   ``wait_for_completion`` waiters wake, before futures and listeners
        #   hear of the end (their callbacks run on this thread, which owns the
        #   connection, and may use it).  This thread keeps the connection
        #   until the repair is done, so every call made through asynchdb runs
        #   after it; the abort's latency does not include the repair
        #   (DuckDB's rollback is a whole statement, about 200 us: benchmarks P3).
        repaired = (self._state != CANCELED and not self.repair_after_wake
                    and self._stopped_by(exc))
        if repaired:
            self._repair()
        with self._lock:
            if self._state == CANCELED:
                late = True
            else:
                late = False
                if self._stopped_by(exc):
                    if self._abort_error is None:
                        # close() stopped it (sqlite3's hook) before abort_all reached it
                        self._abort_requested = True
                        self._abort_error = OperationCanceled(
                            f"{self.kind} was aborted: the connection was closed")
                    self._abort_error.__cause__ = exc
                    self._end(CANCELED)
                else:
                    self._error = exc
                    self._end(COMPLETE)
            canceled = self._state == CANCELED
        if late:
            self._late(None, exc)
            return
        if canceled and not repaired:
            self._repair()  # an abort that came in just now
        self._after_end()

    def _finish_canceled(self, cause: BaseException | None, *, repair: bool = False) -> None:
        with self._lock:
            if self._state >= COMPLETE:
                return
            if cause is not None and self._abort_error is not None:
                self._abort_error.__cause__ = cause
            self._end(CANCELED)
        if repair:
            self._repair()  # the waiters are awake; futures and listeners wait
        self._after_end()

    def _repair(self) -> None:
        try:
            self.channel.adapter.after_abort(self.channel.view)
        except Exception:
            log.warning("asynchdb: repairing the connection after an abort failed",
                        exc_info=True)

    def _late(self, value: Any, exc: BaseException | None) -> None:
        # an abandoned call came back: discard its value, log its error
        if exc is not None:
            log.warning("asynchdb: abandoned %s failed after it was aborted: %r",
                        self.kind, exc, exc_info=exc)
        elif self.on_late_value is not None:
            try:
                self.on_late_value(value)
            except Exception:
                log.warning("asynchdb: discarding the late result of an abandoned %s "
                            "failed", self.kind, exc_info=True)

    def _end(self, state: State) -> None:
        # caller holds self._lock
        self._state = state
        if state == COMPLETE:
            self.progress = self.progress_max
        self._status = None
        gate = self._event
        if gate is not None:
            self._event = None  # released once, even if _end ran twice
            gate.release()
        if self._readable is not None:
            self._readable.set()

    def _after_end(self) -> None:
        # outside the lock: timers, future, listeners
        if (self._timers is None and self._future is None and self._notifier is None
                and self._on_end is None):
            # the common case, read without the lock: each of the four is set
            # under the lock, and one set after the end (a late _schedule,
            # future(), on_end or advise) sees the end state and settles itself
            return
        with self._lock:
            timers, self._timers = self._timers, None
            fut = self._future
            notifier = self._notifier
            state = self._state
            callbacks, self._on_end = self._on_end, None
        if timers:
            for t in timers:
                t.cancel()
        if fut is not None:
            self._settle_future(fut)
        if callbacks:
            for fn in callbacks:
                try:
                    fn()
                except Exception:
                    log.exception("asynchdb: an end callback failed")
        if notifier is not None:
            st = self.status()
            if state == COMPLETE and st.error is None:
                notifier.post(Note("progress", st))
            notifier.post(Note("stop", st))

    # ------------------------------------------------------------------
    # aborting (any thread)
    # ------------------------------------------------------------------
    def abort(self, error: OperationCanceled | None = None, *, force: bool = False) -> None:
        """Request an abort; see :meth:`Operation.abort`.

        ``force``: listeners hear CANCELED but cannot veto (close, release, exit).
        """
        with self._lock:
            if self._state >= COMPLETE or self._abort_requested:
                return
            if self._abort_pending and not force:
                return
            notifier = self._notifier
            if notifier is not None:
                self._abort_pending = True
        if error is None:
            error = OperationCanceled(f"{self.kind} was aborted")
        if notifier is None:
            self._apply_abort(error)
            return
        reply = Reply()
        now = self.status()
        status = Status(Phase.CANCELED, now.progress, now.progress_max, "abort requested", error)
        notifier.post(Note("abort", status, reply, force=force, error=error))
        if force:
            # no veto to wait for (close, release, exit: possibly a finalizer);
            # the CANCELED notification is queued first, so it still comes
            # before on_stop
            self._apply_abort(error)
            return
        if notifier.delivering_here():
            return  # asked from inside a callback: decided after it returns
        reply.event.wait()
        if reply.vetoed and not force:
            raise AbortVetoed(f"a listener vetoed the abort of {self.kind}")

    def decide_abort(self, note: Note, vetoed: bool) -> None:
        """Every listener heard CANCELED (deliverer thread): apply it or drop it."""
        assert note.error is not None
        if vetoed and not note.force:
            with self._lock:
                self._abort_pending = False
        else:
            self._apply_abort(note.error)

    def request_abort(self) -> None:
        """A listener returned False in INITIALIZATION or POPULATION (deliverer thread)."""
        try:
            self.abort()
        except AbortVetoed:  # pragma: no cover - decided after the callback returns
            pass

    def stop(self, reason: str) -> None:
        """Abort with no veto (the connection closes, the process exits)."""
        self.abort(OperationCanceled(f"{self.kind} was aborted: {reason}"), force=True)

    def _apply_abort(self, error: OperationCanceled) -> None:
        with self._lock:
            self._abort_pending = False
            if self._state >= COMPLETE or self._abort_requested:
                return
            self._abort_requested = True
            self._abort_error = error
            state = self._state
            dropped = self.on_dropped if state == PENDING else None
            if state == PENDING:
                self._end(CANCELED)
                final = True
            elif state == RUNNING and not (self.cancellable and self.channel.adapter.can_cancel):
                # no cancel primitive: abandon the call; the worker stays busy
                reason = (self.channel.adapter.no_cancel_reason if self.cancellable
                          else "the driver has no cancel")
                self.text = f"abandoned: {reason}; the statement may still be running"
                self._end(CANCELED)
                final = True
            else:
                final = False
        if final:
            self._after_end()
            if dropped is not None:
                dropped()
            return
        if state == POPULATING:
            buf = self.populate
            if buf is not None and buf.unpark():
                # parked for space: nothing runs, so the abort takes effect now;
                # the rows already fetched stay readable
                buf.finish()
                self._finish_canceled(None)
            elif self.channel.adapter.cancel_while_fetching:
                self.channel.cancel(self)
            # else: the population loop sees the flag after the batch it fetches
            return
        if state == RUNNING:
            self.channel.cancel(self)
            again = self.channel.adapter.reissue_cancel
            if again is not None:
                self._schedule(again, self._reissue)

    def _reissue(self) -> float | None:
        # timer thread: a cancel that landed before the statement started is lost;
        # repeat it until the worker reports the call ended
        if self._state != RUNNING:
            return None
        self.channel.cancel(self)
        return self.channel.adapter.reissue_cancel

    def _tick(self) -> float | None:
        # timer thread: periodic progress while the driver call runs
        if self._state != RUNNING:
            return None
        notifier = self._notifier
        if notifier is not None:
            notifier.post(Note("tick", self.status()))
        return TICK

    def _schedule(self, delay: float, fn: Callable[[], float | None]) -> None:
        entry = HUB.timer.schedule(delay, fn)
        with self._lock:
            if self._state >= COMPLETE:
                entry.cancel()
                return
            if self._timers is None:
                self._timers = []
            self._timers.append(entry)

    def set_deadline(self, seconds: float) -> None:
        def fire() -> None:
            try:
                self.abort(DeadlineExceeded(
                    f"{self.kind} was aborted: its deadline of {seconds:g} s passed"))
            except AbortVetoed:
                log.info("asynchdb: a listener vetoed the deadline abort of %s", self.kind)

        if seconds <= 0:
            fire()
        elif seconds >= threading.TIMEOUT_MAX:
            return  # inf: no deadline (the timer thread cannot wait that long)
        else:
            self._schedule(seconds, fire)  # returns None: runs once

    # ------------------------------------------------------------------
    # listeners (any thread; delivery is the notifier's)
    # ------------------------------------------------------------------
    def advise(self, sink: Sink) -> int:
        with self._lock:
            notifier = self._notifier
            if notifier is None:
                notifier = self._notifier = Notifier(self, self._lock)
            ended = self._state >= COMPLETE
            # a first listener advised while the driver call runs still hears
            # the periodic progress (and may ask for an abort from it)
            tick = notifier.empty() and self._state == RUNNING
            cookie = notifier.add(sink, ended=ended)
        if ended:
            st = self.status()
            notifier.post(Note("progress", st, target=sink))
            notifier.post(Note("stop", st, target=sink))
        elif tick:
            self._schedule(TICK, self._tick)
        return cookie

    def unadvise(self, cookie: int) -> None:
        notifier = self._notifier
        if notifier is None:
            raise KeyError(cookie)
        notifier.remove(cookie)

    def low_resource(self) -> None:
        notifier = self._notifier
        if notifier is not None:
            notifier.post(Note("low", None))


class Operation(Generic[T]):
    """The handle of one asynchronous call (OLE DB ``IDBAsynchStatus``).

    Every method may be called from any thread, at any time, including from
    inside a listener, and none blocks unless it says so.

    Releasing the last reference to a running operation and to its cursor
    aborts it.
    """

    __slots__ = ("__weakref__", "_fut", "_job", "_owner", "_release_aborts")

    def __init__(self, job: Job, owner: Any = None, *, release_aborts: bool = True) -> None:
        self._job = job
        self._owner = owner
        self._fut: concurrent.futures.Future[Any] | None = None
        self._release_aborts = release_aborts
        if release_aborts:
            job._handle_ref = weakref.ref(self)

    def __del__(self) -> None:
        # The owner (a cursor) aborts in its own finalizer when it goes too; an
        # operation with no owner (connect) aborts here.
        try:
            if self._release_aborts and self._owner is None and not self._job.done():
                self._job.abort(OperationCanceled(
                    f"{self._job.kind} was aborted: its Operation was released"), force=True)
        except Exception:  # noqa: BLE001  # pragma: no cover - never raise from a finalizer
            pass

    # -- the Python API ---------------------------------------------------
    def get_status(self) -> Status:
        """Return a snapshot of the phase, progress and outcome.  Never blocks."""
        return self._job.status()

    def abort(self) -> None:
        """Ask the driver to stop the statement now.

        If the call has not started, it never will, and the phase becomes
        CANCELED at once.  If it is running, the driver's cancel primitive is
        sent and the phase becomes CANCELED when the driver confirms; if the
        statement completes first, the operation ends COMPLETE (the abort came
        too late).  A driver with no cancel primitive has its call *abandoned*:
        CANCELED at once, the late result discarded.  Aborting an operation that
        ended, or aborting twice, does nothing.

        Thread: any.  Blocks only while listeners decide on a veto.

        Raises:
            AbortVetoed: a listener returned False for the CANCELED notification.
        """
        self._job.abort()

    def wait_for_completion(self, timeout: Optional[float] = None) -> bool:
        """Block until the phase is COMPLETE or CANCELED.

        Never cancels anything and never raises for the operation's outcome.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            True once the operation ended; False if the timeout passed first.

        Raises:
            ValueError: a negative or NaN timeout.
        """
        return self._job.wait(check_timeout(timeout))

    def wait_for_population(self, timeout: Optional[float] = None) -> bool:
        """Block until the cursor is readable: the phase is POPULATION, COMPLETE or CANCELED.

        For a population operation this is "the first rows can be read".
        Never cancels anything and never raises for the operation's outcome.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            True once the cursor is readable; False if the timeout passed first.

        Raises:
            ValueError: a negative or NaN timeout.
        """
        return self._job.wait_readable(check_timeout(timeout))

    def result(self, timeout: Optional[float] = None) -> T:
        """Return the call's value once it ended.

        Raises:
            Exception: the driver's exception, unchanged, if the call failed.
            OperationCanceled: the operation was aborted (DeadlineExceeded for a deadline).
            TimeoutError: ``timeout`` seconds passed; the operation keeps running.
        """
        job = self._job
        if not job.wait(None if timeout is None else check_timeout(timeout)):
            raise _timeout_error(self)
        try:
            value = job.value()
        except BaseException:
            # the job keeps the error: its traceback must not keep this handle
            # (and, through it, the cursor) in a cycle only the collector frees
            del self, job
            raise
        if value is OWNER:
            return self._owner  # type: ignore[no-any-return]
        return value  # type: ignore[no-any-return]

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """Return the error the operation ended with, or None; never raises it.

        Raises:
            TimeoutError: ``timeout`` seconds passed; the operation keeps running.
        """
        if not self._job.wait(check_timeout(timeout)):
            raise _timeout_error(self)
        return self._job.outcome()[2]

    def done(self) -> bool:
        """Whether the phase is COMPLETE or CANCELED."""
        return self._job.done()

    @property
    def future(self) -> concurrent.futures.Future[T]:
        """A ``concurrent.futures.Future`` that settles with the operation.

        Use it with ``concurrent.futures.wait``, ``as_completed`` or
        ``asyncio.wrap_future``.  ``Future.cancel()`` does not abort (the
        future is already running); use :meth:`abort`.
        """
        fut = self._fut
        if fut is None:
            inner = self._job.future()
            if self._owner is None:
                fut = inner
            else:
                # The value of an execute is its cursor, which only the handle
                # knows.  The job keeps the relay until it ends, and the relay
                # keeps this future (its callbacks hear the end whoever holds
                # it), but the cursor only weakly: holding the future does not
                # hold the statement, and releasing the cursor and the handle
                # aborts it as before (docs/abort.md).  Once settled, the
                # future holds its value, the cursor.
                fut = concurrent.futures.Future()
                fut.set_running_or_notify_cancel()
                owner_ref, out = weakref.ref(self._owner), fut

                def relay(f: concurrent.futures.Future[Any]) -> None:
                    exc = f.exception()
                    if exc is not None:
                        out.set_exception(exc)
                    else:
                        v = f.result()
                        # None only if the cursor was released as the statement ended
                        out.set_result(owner_ref() if v is OWNER else v)

                inner.add_done_callback(relay)
            self._fut = fut
        return fut

    def __await__(self) -> Generator[Any, None, T]:
        """``await op`` in asyncio: what :meth:`result` returns or raises.

        The event loop is never blocked: the end of the operation wakes it
        with ``call_soon_threadsafe``.  Any number of tasks may await one
        operation.  Cancelling an awaiting task aborts the operation (the
        real cancel) and the task raises ``CancelledError`` once it ended
        (at most 5 s later); ``asyncio.shield(op)`` protects it as usual.
        """
        wait = _aio_wait
        if wait is None:
            wait = _load_aio()
        return wait(self)  # type: ignore[no-any-return]

    def advise(self, listener: Any) -> int:
        """Add a listener; returns its cookie (positive, unique per operation).

        A listener advised after the operation ended immediately gets
        ``on_progress`` with the final phase, then ``on_stop``.
        """
        return self._job.advise(make_sink(listener))

    def unadvise(self, cookie: int) -> None:
        """Remove a listener.  Raises KeyError for an unknown cookie."""
        self._job.unadvise(cookie)

    def __repr__(self) -> str:
        st = self._job.status()
        return (f"<asynchdb.Operation {self._job.kind} phase={st.phase.name} "
                f"progress={st.progress}/{st.progress_max} at {id(self):#x}>")

    # -- OLE DB names -----------------------------------------------------
    def GetStatus(self, hChapter: int = 0, eOperation: int = 0  # noqa: N802,N803
                  ) -> tuple[int, int, int, int, Optional[str]]:
        """OLE DB ``IDBAsynchStatus::GetStatus``: (hr, progress, max, phase, text)."""
        if hChapter != oledb.DB_NULL_HCHAPTER:
            return oledb.DB_E_BADCHAPTER, 0, 0, 0, None
        st = self._job.status()
        if eOperation != oledb.DBASYNCHOP_OPEN:
            return oledb.S_OK, st.progress_max, st.progress_max, int(st.phase), st.status_text
        hr = hresult_of(st) if st.done else oledb.S_OK
        return hr, st.progress, st.progress_max, int(st.phase), st.status_text

    def Abort(self, hChapter: int = 0, eOperation: int = 0) -> int:  # noqa: N802,N803
        """OLE DB ``IDBAsynchStatus::Abort``: S_OK, DB_E_CANCELED (vetoed)..."""
        if hChapter != oledb.DB_NULL_HCHAPTER:
            return oledb.DB_E_BADCHAPTER
        if eOperation != oledb.DBASYNCHOP_OPEN:
            return oledb.E_INVALIDARG
        try:
            self._job.abort()
        except AbortVetoed:
            return oledb.DB_E_CANCELED
        return oledb.S_OK

    def WaitForAsynchCompletion(self, dwMillisecTimeOut: int) -> int:  # noqa: N802,N803
        """SQL Server's ``ISSAsynchStatus::WaitForAsynchCompletion``."""
        if isinstance(dwMillisecTimeOut, bool) or not isinstance(dwMillisecTimeOut, int) \
                or dwMillisecTimeOut < 0:
            return oledb.E_INVALIDARG
        timeout = None if dwMillisecTimeOut == oledb.INFINITE else dwMillisecTimeOut / 1000.0
        if not self._job.wait(timeout):
            return oledb.DB_S_ASYNCHRONOUS
        return hresult_of(self._job.status())

    def Advise(self, sink: Any) -> tuple[int, int]:  # noqa: N802
        """Connection point ``Advise`` for an ``IDBAsynchNotify`` sink: (hr, cookie)."""
        try:
            return oledb.S_OK, self._job.advise(OleDbSink(sink))
        except TypeError:
            return oledb.E_INVALIDARG, 0

    def Unadvise(self, cookie: int) -> int:  # noqa: N802
        """Connection point ``Unadvise``: S_OK or CONNECT_E_NOCONNECTION."""
        try:
            self._job.unadvise(cookie)
        except KeyError:
            return oledb.CONNECT_E_NOCONNECTION
        return oledb.S_OK


#: ``_aio.wait`` once something awaited an operation (asyncio is imported
#: only then); an import statement per ``await`` costs about 2 us (benchmarks P8).
_aio_wait: Callable[[Operation[Any]], Any] | None = None


def _load_aio() -> Callable[[Operation[Any]], Any]:
    global _aio_wait
    from . import _aio

    _aio_wait = _aio.wait
    return _aio.wait


def _timeout_error(op: Operation[Any]) -> TimeoutError:
    return TimeoutError(f"{op!r} has not ended yet (the operation keeps running)")

