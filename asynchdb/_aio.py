"""asyncio: ``await op`` without blocking the event loop, and task cancellation as abort.

This module is imported only by ``Operation.__await__`` (so ``import asynchdb``
never imports asyncio) and is the only place that knows asyncio.

Threads:

* the event loop's thread runs :func:`wait`: it creates an asyncio future per
  awaiting task and suspends on it; it never blocks on a lock, a driver call
  or a cancel;
* the thread that ends the operation (a worker, or the aborting thread) runs
  the job's end callbacks (``Job.on_end``), which only hand the ended
  operation to the loop's inbox (:class:`_Inbox`): one
  ``call_soon_threadsafe`` wakes the loop for every operation that ends
  before it got there (1,000 operations awaited at once: far fewer wake-ups
  than operations, benchmarks P9);
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
    """The asyncio futures of one loop to resolve, posted from any thread.

    The first post of a batch schedules one drain with
    ``call_soon_threadsafe``; posts before that drain runs only join it.
    """

    __slots__ = ("__weakref__", "_drain_scheduled", "_futures", "_lock", "_loop", "batch")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weakly: the inboxes are kept per loop, and must not keep the loops
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._futures: list[asyncio.Future[None]] = []
        self._drain_scheduled = False
        #: The other direction: workers this loop's thread is about to wake.
        self.batch = _Batch()

    def post(self, fut: asyncio.Future[None]) -> None:
        """Resolve ``fut`` on the loop soon (any thread)."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            self._forget()
            return
        with self._lock:
            self._futures.append(fut)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # closed meanwhile
            self._forget()

    def _forget(self) -> None:
        # any thread: the loop is gone or closed, nobody waits any more
        with self._lock:
            self._futures.clear()
            self._drain_scheduled = False

    def _drain(self) -> None:
        # loop thread
        with self._lock:
            futures, self._futures = self._futures, []
            self._drain_scheduled = False
        for fut in futures:
            if not fut.done():
                fut.set_result(None)


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


class _Waker:
    """A callback (any thread) that resolves ``fut`` on its loop.

    One object per ``await`` (a partial of a bound method would be three,
    for the collector to track: benchmarks P9).
    """

    __slots__ = ("_fut", "_inbox")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
        self._inbox = _inbox(loop)
        self._fut = fut

    def __call__(self) -> None:
        self._inbox.post(self._fut)


def _ended_future(loop: asyncio.AbstractEventLoop, job: Job) -> asyncio.Future[None]:
    """An asyncio future of ``loop`` resolved once ``job`` ended (any thread ends it)."""
    fut: asyncio.Future[None] = loop.create_future()
    job.on_end(_Waker(loop, fut))
    return fut


def wait(op: Operation[Any]) -> Generator[Any, None, Any]:
    """``await op``: the operation's value or error, as ``op.result()`` gives it.

    A generator, which ``Operation.__await__`` returns as it is: a coroutine
    would add itself and its ``__await__`` wrapper to every ``await``.
    """
    job = op._job
    if not job.done():
        loop = asyncio.get_running_loop()
        ended = _ended_future(loop, job)
        try:
            yield from ended
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
    wake = _Waker(loop, settled)
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
