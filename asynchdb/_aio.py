"""asyncio: ``await op`` without blocking the event loop, and task cancellation as abort.

This module is imported only by ``Operation.__await__`` (so ``import asynchdb``
never imports asyncio) and is the only place that knows asyncio.

Threads:

* the event loop's thread runs :func:`wait`: the awaiting task suspends on
  an :class:`_Ended` (the operation's end, with the part of an asyncio
  future that a task uses); it never blocks on a lock, a driver call or a
  cancel;
* the thread that ends the operation (a worker, or the aborting thread) runs
  the job's end callbacks (``Job.on_end``), which only hand the ended
  operation to the loop's inbox (:class:`_Inbox`): one
  ``call_soon_threadsafe`` wakes the loop for every operation that ends
  before it got there (1,000 operations awaited at once: far fewer wake-ups
  than operations, benchmarks P9), and the loop's thread wakes the waiting
  tasks from there.  When that thread is the loop's own (a statement it
  stepped, asynchdb._stepper), a plain ``call_soon`` does;
* the timer thread sends the abort when an awaiting task is cancelled: a
  cancel can take milliseconds (psycopg opens a connection to send it,
  MariaDB a ``KILL QUERY``) and listeners may take as long as they like to
  decide on a veto, and neither may stall the loop;
* the other direction: the workers of operations the loop's thread starts
  back to back are woken as a batch (:class:`_Batch`), by the loop's thread
  when its step ends, or by the timer thread if the loop does not get
  control back soon.

Cancelling the awaiting task aborts the operation and the task raises
``CancelledError`` once the operation ended, or once a listener vetoed the
abort, or after :data:`DRAIN` seconds at most, whichever comes first.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Callable

from ._hub import HUB
from .errors import AbortVetoed, OperationCanceled

if TYPE_CHECKING:
    from ._hub import Channel, TimerEntry
    from ._operation import Job, Operation

#: Seconds a cancelled task waits at most for its aborted operation to end.
DRAIN = 5.0
#: Operations started on an event loop's thread less than this many seconds
#: after the one before join a batch (:class:`_Batch`).  Back to back, a loop
#: starts one every 5-10 us; an ``await`` round trip takes 90 us or more.
BATCH_WINDOW = 50e-6
#: Seconds at most a batch waits for its loop to get control back (a loop
#: that other code blocks, or that stopped): then the timer thread sends it.
BATCH_WAIT = 0.002

_get_running_loop = asyncio._get_running_loop


class _Batch:
    """Workers to wake when the event loop's current step ends (the loop's thread).

    A step that starts many operations on idle connections (``gather`` over
    a list of ``execute(asynch=True)``) would wake a worker for each at once,
    and every one of them would take the GIL from the loop while it is still
    making the others: the step took several times as long, and the loop's
    lag with it (benchmarks P9).  So the first wake-up goes at once and one
    that follows it within :data:`BATCH_WINDOW` joins a batch, sent by one
    ``call_soon`` when the step ends, or by the timer thread after
    :data:`BATCH_WAIT` if the loop has not got control back by then.  The
    operations are queued on their connections at once, in order, as always:
    only their workers' wake-up waits.
    """

    __slots__ = ("_channels", "_last", "_lock", "_timer")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The batch; a flush is scheduled exactly while it is not empty.
        self._channels: list[Channel] = []
        self._timer: TimerEntry | None = None
        #: When the loop's thread last dispatched (``time.perf_counter``).
        self._last = float("-inf")

    def defer(self, loop: asyncio.AbstractEventLoop, channel: Channel) -> bool:
        """Take the dispatch of ``channel`` over (True), or leave it to the caller (loop thread)."""
        now = time.perf_counter()
        last, self._last = self._last, now
        if now - last >= BATCH_WINDOW and not self._channels:
            return False  # the first in a while: wake its worker now
        with self._lock:
            self._channels.append(channel)
            if len(self._channels) > 1:
                return True  # its flush is scheduled already
        loop.call_soon(self.flush)
        self._timer = HUB.timer.schedule(BATCH_WAIT, self.flush)
        return True

    def flush(self) -> None:
        """Wake the batch's workers (the loop's thread, or the timer thread)."""
        with self._lock:
            channels, self._channels = self._channels, []
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        for ch in channels:
            HUB.dispatch(ch)


def _defer(channel: Channel) -> bool:
    """``Hub.defer``: batch the wake-ups of an event loop's thread (dispatching thread)."""
    loop = _get_running_loop()
    if loop is None:
        return False
    return _inbox(loop).batch.defer(loop, channel)


class _Inbox:
    """What one loop's thread is to wake, posted from any thread.

    An entry is a :class:`_Ended` or a :class:`_Settle`; the loop's thread
    calls its ``fire()``.  The first post of a batch schedules one drain with
    ``call_soon_threadsafe``; posts before that drain runs only join it.
    """

    __slots__ = ("__weakref__", "_drain_scheduled", "_entries", "_lock", "_loop", "batch")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weakly: the inboxes are kept per loop, and must not keep the loops
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._entries: list[_Ended | _Settle] = []
        self._drain_scheduled = False
        #: The other direction: workers this loop's thread is about to wake.
        self.batch = _Batch()

    def post(self, entry: _Ended | _Settle) -> None:
        """Have the loop's thread fire ``entry`` soon (any thread)."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            self._forget()
            return
        with self._lock:
            self._entries.append(entry)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            if _get_running_loop() is loop:
                # the loop's own thread (a statement it stepped ended): no
                # need to wake it through its self-pipe
                loop.call_soon(self._drain)
            else:
                loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # closed meanwhile
            self._forget()

    def _forget(self) -> None:
        # any thread: the loop is gone or closed, nobody waits any more
        with self._lock:
            self._entries.clear()
            self._drain_scheduled = False

    def _drain(self) -> None:
        # loop thread
        with self._lock:
            entries, self._entries = self._entries, []
            self._drain_scheduled = False
        for i, entry in enumerate(entries):
            try:
                entry.fire()
            except BaseException:
                # a task's step let KeyboardInterrupt or SystemExit through
                # (asyncio re-raises them): the rest wait for the next drain
                # instead of being lost
                self._requeue(entries[i + 1:])
                raise

    def _requeue(self, entries: list[_Ended | _Settle]) -> None:
        # loop thread
        if not entries:
            return
        with self._lock:
            self._entries[:0] = entries
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            loop.call_soon(self._drain)


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = \
    weakref.WeakKeyDictionary()
_inboxes_lock = threading.Lock()


#: The inbox asked for last: most programs run one loop, and the lookup
#: above takes a lock per ``await`` (benchmarks P8).  Replaced whole, so a
#: loop thread reads either pair, never half of one.
_last: tuple[Callable[[], Any], _Inbox | None] = (lambda: None, None)


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    """``loop``'s inbox (its thread; loops in several threads may ask at once)."""
    global _last
    ref, inbox = _last
    if inbox is not None and ref() is loop:
        return inbox
    with _inboxes_lock:
        inbox = _inboxes.get(loop)
        if inbox is None:
            inbox = _inboxes[loop] = _Inbox(loop)
    _last = (inbox._loop, inbox)
    return inbox


class _Settle:
    """A job's end callback (any thread) that resolves an asyncio future on its loop."""

    __slots__ = ("_fut", "_inbox")

    def __init__(self, inbox: _Inbox, fut: asyncio.Future[None]) -> None:
        self._inbox = inbox
        self._fut = fut

    def __call__(self) -> None:
        self._inbox.post(self)

    def fire(self) -> None:
        # loop thread
        if not self._fut.done():
            self._fut.set_result(None)


#: _Ended's states
_PENDING, _ENDED, _CANCELLED = 0, 1, 2


class _Ended:
    """What ``await op`` suspends its task on: the operation's end, as a future.

    The awaiting task sees the part of an asyncio future it uses for what a
    coroutine yields (``_asyncio_future_blocking``, ``get_loop``,
    ``add_done_callback``, ``result``, ``cancel``: the same in the C and the
    Python ``Task``, Python 3.9-3.13).  It is one object per ``await`` and
    costs the loop less than an ``asyncio.Future``: the inbox's drain runs
    the task's wake-up itself, where a future's ``set_result`` would schedule
    it with ``call_soon`` for the loop's next turn (a Python ``Handle`` and
    a turn per operation; benchmarks P8 and P9).

    Threads: the job's end calls it (any thread), which only posts it to the
    loop's inbox; everything else runs on the loop's thread, so it needs no
    lock.  A task cancelled while it waits gets its wake-up at once, by
    ``call_soon`` as from a cancelled future, and ``result()`` raises
    ``CancelledError`` into :func:`wait`, which aborts the operation.
    """

    __slots__ = ("_asyncio_future_blocking", "_callbacks", "_cancel_message", "_inbox",
                 "_loop", "_state")

    def __init__(self, loop: asyncio.AbstractEventLoop, inbox: _Inbox) -> None:
        self._loop = loop
        self._inbox = inbox
        self._state = _PENDING
        self._callbacks: list[tuple[Callable[[Any], object], Any]] = []
        self._cancel_message: Any = None
        # what a future's __await__ sets before it yields itself: "a task
        # is to wait on me" (the task resets it)
        self._asyncio_future_blocking = True

    def __call__(self) -> None:
        # the job's end (any thread)
        self._inbox.post(self)

    def fire(self) -> None:
        # loop thread (the inbox's drain): run the task's wake-up now
        if self._state != _PENDING:
            return  # cancelled meanwhile: the task was woken then
        self._state = _ENDED
        callbacks, self._callbacks = self._callbacks, []
        for k, (fn, context) in enumerate(callbacks):
            try:
                if context is None:
                    fn(self)
                else:
                    context.run(fn, self)
            except BaseException:
                # the rest run on the loop's next turn, as a future's would
                self._call_soon(callbacks[k + 1:])
                raise

    def _call_soon(self, callbacks: list[tuple[Callable[[Any], object], Any]]) -> None:
        # loop thread: each wake-up on the loop's next turn, as a future's callbacks
        for fn, context in callbacks:
            self._loop.call_soon(fn, self, context=context)

    # -- the part of asyncio.Future a task uses (loop thread) -------------
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        if self._state == _PENDING:
            self._callbacks.append((fn, context))
        else:
            self._loop.call_soon(fn, self, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        kept = [(f, c) for f, c in self._callbacks if f != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def cancel(self, msg: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._cancel_message = msg
        callbacks, self._callbacks = self._callbacks, []
        self._call_soon(callbacks)
        return True

    def result(self) -> None:
        if self._state == _CANCELLED:
            raise (asyncio.CancelledError() if self._cancel_message is None
                   else asyncio.CancelledError(self._cancel_message))
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the operation has not ended yet")

    def exception(self) -> BaseException | None:
        self.result()
        return None

    def __repr__(self) -> str:
        return f"<asynchdb operation end {('pending', 'ended', 'cancelled')[self._state]}>"


def wait(op: Operation[Any]) -> Generator[Any, None, Any]:
    """``await op``: the operation's value or error, as ``op.result()`` gives it.

    A generator, which ``Operation.__await__`` returns as it is: a coroutine
    would add itself and its ``__await__`` wrapper to every ``await``.
    """
    job = op._job
    if not job.done():
        loop = asyncio.get_running_loop()
        ended = _Ended(loop, _inbox(loop))
        job.on_end(ended)
        try:
            yield ended  # the task waits for ended.fire() (or ended.cancel())
        except asyncio.CancelledError:
            # the awaiting task was cancelled (task.cancel, wait_for, timeout,
            # a TaskGroup failing): abort the operation, wait for it to end
            # (or for a veto, or DRAIN seconds), then let the cancellation go on
            yield from _abort_and_drain(loop, job).__await__()
            raise
    # ended: result() does not block (and with no timeout has none to check)
    return op.result()


HUB.defer = _defer


async def _abort_and_drain(loop: asyncio.AbstractEventLoop, job: Job) -> None:
    """Abort ``job`` off the loop and wait until it ended or the abort was refused."""
    if job.done():
        return
    settled: asyncio.Future[None] = loop.create_future()
    wake = _Settle(_inbox(loop), settled)
    job.on_end(wake)

    def send() -> None:
        # timer thread: the cancel (or the listeners' veto) may take a while
        try:
            job.abort(OperationCanceled(f"{job.kind} was aborted: the awaiting task "
                                        "was cancelled"))
        except AbortVetoed:
            wake()  # the operation goes on; the task need not wait for it

    HUB.timer.schedule(0.0, send)
    deadline = loop.time() + DRAIN
    while not settled.done():
        left = deadline - loop.time()
        if left <= 0:
            return
        try:
            await asyncio.wait((settled,), timeout=left)
        except asyncio.CancelledError:
            # cancelled again while winding down: the first cancellation is
            # already on its way out; keep waiting for the operation (bounded)
            continue
