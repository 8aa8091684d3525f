"""Threads: the shared worker pool and the timer thread.

Each connection is one *logical* worker (a channel, ``asynchdb._channel``,
with a FIFO of operations).  It borrows a thread from this pool only while it
has work: when its queue runs dry the thread goes back to the pool, waits
``KEEPALIVE`` seconds for another connection to serve, and then exits.  An idle
connection therefore holds no thread at all.

The timer thread runs deadlines, progress ticks and re-issued cancels.  It too
exists only while something is scheduled.

At interpreter exit every pending operation is aborted and the pool is joined
for at most ``EXIT_GRACE`` seconds; the threads are daemons, so a driver call
that cannot be stopped does not hold the process.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import queue
import threading
import time
import weakref
from typing import Any, Callable, Protocol

log = logging.getLogger("asynchdb")

#: Seconds an idle pool thread waits for more work before it exits.
KEEPALIVE = 2.0
#: Seconds the interpreter waits at exit for aborted work to wind down.
EXIT_GRACE = 1.0
#: While the timer thread lingers with nothing scheduled, it looks at its heap
#: this often, so that an entry due later than its next look needs no wake-up.
#: An abort schedules the cancel's re-issue (50 ms) just as the aborted call
#: returns on the worker; waking the timer thread then made the worker wait for
#: the GIL, and the abort took 70-100 us longer on an in-process engine
#: (benchmarks P3, SQLite ODBC).  40 looks in a 2 s linger cost far less.
LINGER_TICK = 0.05

_STOP = object()


class Channel(Protocol):
    """What the pool needs of a connection's logical worker (``asynchdb._channel``)."""

    def drain(self) -> None:
        """Run the connection's queued work until its queue is empty (pool thread)."""

    def shutdown_at_exit(self) -> None:
        """Abort and close without waiting (interpreter exit)."""


class _PoolThread:
    """One pool thread and its mailbox (worker thread side is ``_main``)."""

    __slots__ = ("mailbox", "thread")

    def __init__(self, hub: Hub, first: Channel) -> None:
        self.mailbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=hub._serve, args=(self, first), daemon=True,
            name=f"asynchdb-worker-{next(hub._names)}",
        )


class Hub:
    """The process-wide pool of worker threads and the timer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_PoolThread] = []
        self._threads: set[_PoolThread] = set()
        self._names = itertools.count(1)
        self._channels: weakref.WeakSet[Channel] = weakref.WeakSet()
        self._open = 0
        self._exiting = False
        #: Called (any thread, no lock held) when the last open connection closed.
        self.on_idle: list[Callable[[], None]] = []
        self.timer = Timer()
        self.timer.keep_alive = lambda: self._open > 0 and not self._exiting
        #: Installed by ``asynchdb._aio`` once an operation was awaited
        #: (dispatching thread): True when it took a :meth:`dispatch_soon`
        #: over, to make it when the event loop's current step ends.
        self.defer: Callable[[Channel], bool] | None = None

    # -- channels -----------------------------------------------------------
    def opened(self, channel: Channel) -> None:
        with self._lock:
            self._channels.add(channel)
            self._open += 1

    def closed(self, channel: Channel) -> None:
        """A channel closed; with none left open, idle threads leave at once."""
        with self._lock:
            self._channels.discard(channel)
            self._open -= 1
            if self._open > 0:
                return
            idle, self._idle = self._idle, []
            for pt in idle:
                self._threads.discard(pt)
        self.timer.wake()
        for hook in self.on_idle:
            hook()
        for pt in idle:
            pt.mailbox.put(_STOP)
        me = threading.current_thread()
        for pt in idle:
            if pt.thread is not me:
                pt.thread.join(1.0)

    # -- dispatch (any thread) ---------------------------------------------
    def dispatch(self, channel: Channel) -> None:
        """Give ``channel`` a thread to drain its queue on."""
        with self._lock:
            pt = self._idle.pop() if self._idle else None
            if pt is None:
                pt = _PoolThread(self, channel)
                self._threads.add(pt)
                start = True
            else:
                start = False
        if start:
            pt.thread.start()
        else:
            pt.mailbox.put(channel)

    def dispatch_soon(self, channel: Channel) -> None:
        """:meth:`dispatch`, or batched when an event loop's thread starts many (:attr:`defer`)."""
        defer = self.defer
        if defer is None or not defer(channel):
            self.dispatch(channel)

    # -- pool thread --------------------------------------------------------
    def _serve(self, me: _PoolThread, channel: Any) -> None:
        # worker thread: drain channels handed to us until idle for KEEPALIVE
        while channel is not _STOP:
            try:
                channel.drain()
            except BaseException:  # pragma: no cover - drain never raises
                log.exception("asynchdb worker failed")
            channel = None
            with self._lock:
                if self._exiting or self._open <= 0:
                    self._threads.discard(me)
                    return
                self._idle.append(me)
            try:
                channel = me.mailbox.get(timeout=KEEPALIVE)
            except queue.Empty:
                with self._lock:
                    if me in self._idle:
                        self._idle.remove(me)
                        self._threads.discard(me)
                        return
                # a dispatcher took us off the idle list: its channel is on the way
                channel = me.mailbox.get()

    def open_count(self) -> int:
        """How many connections are open."""
        return self._open

    def open_channels(self) -> list[Channel]:
        """The open connections' channels (any thread; a snapshot)."""
        with self._lock:
            return list(self._channels)

    def thread_count(self) -> int:
        with self._lock:
            return len(self._threads)

    # -- interpreter exit ----------------------------------------------------
    def _at_exit(self) -> None:
        with self._lock:
            self._exiting = True
            channels = list(self._channels)
            idle, self._idle = self._idle, []
        for pt in idle:
            pt.mailbox.put(_STOP)
        for ch in channels:
            try:
                ch.shutdown_at_exit()
            except Exception:  # pragma: no cover - best effort at exit
                log.exception("asynchdb: error while aborting at exit")
        deadline = time.monotonic() + EXIT_GRACE
        with self._lock:
            threads = [pt.thread for pt in self._threads]
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.timer.stop()


class Timer:
    """One thread running timed callbacks; it exits when nothing is scheduled.

    Callbacks run on the timer thread and must not block for long.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerEntry]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._live = 0
        self._stopped = False
        #: When the timer thread looks at the heap again on its own (monotonic
        #: seconds; under ``_cond``).  0 while it runs a callback: it looks
        #: again right after.  An entry due before this needs a notify.
        self._wake_at = 0.0
        #: Whether to linger when idle (connections are open): starting the
        #: thread again costs more than an abort on an in-process driver.
        self.keep_alive: Callable[[], bool] = lambda: False

    def schedule(self, delay: float, fn: Callable[[], float | None]) -> TimerEntry:
        """Run ``fn`` after ``delay`` seconds; if it returns a number, run it again then."""
        entry = TimerEntry(self, fn)
        when = time.monotonic() + delay
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), entry))
            self._live += 1
            if self._thread is None and not self._stopped:
                self._wake_at = 0.0
                self._thread = threading.Thread(
                    target=self._main, name="asynchdb-timer", daemon=True)
                self._thread.start()
            elif when < self._wake_at:
                self._cond.notify()
        return entry

    def _cancel(self, entry: TimerEntry) -> None:
        with self._cond:
            if entry.active:
                entry.active = False
                # a cancelled entry stays in the heap until its time: let go of
                # the callback (it holds a job, and through it the user's cursor)
                entry.fn = _spent
                self._live -= 1
                if self._live == 0:
                    self._heap.clear()
                    # the thread looks again at _wake_at and then lingers or
                    # exits; wake it only if that is later than a linger would
                    # end, or if it should exit now (no connection is open)
                    if (self._wake_at - time.monotonic() > KEEPALIVE
                            or not self.keep_alive()):
                        self._cond.notify()

    def _main(self) -> None:
        # timer thread
        while True:
            with self._cond:
                idle_until: float | None = None
                while True:
                    if self._live == 0 and not self._stopped and self.keep_alive():
                        now = time.monotonic()
                        if idle_until is None:
                            idle_until = now + KEEPALIVE
                        if now < idle_until:
                            self._wake_at = min(idle_until, now + LINGER_TICK)
                            self._cond.wait(self._wake_at - now)
                            continue
                    if self._stopped or self._live == 0:
                        self._thread = None
                        return
                    idle_until = None
                    when, _, entry = self._heap[0]
                    if not entry.active:
                        heapq.heappop(self._heap)
                        continue
                    delay = when - time.monotonic()
                    if delay <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._wake_at = when
                    self._cond.wait(delay)
                self._wake_at = 0.0  # runs the callback, then looks again
            try:
                again = entry.fn()
            except Exception:
                log.exception("asynchdb: timer callback failed")
                again = None
            with self._cond:
                if not _still_active(entry):
                    continue  # cancelled while it ran
                if again is None:
                    entry.active = False
                    entry.fn = _spent
                    self._live -= 1
                else:
                    heapq.heappush(
                        self._heap, (time.monotonic() + again, next(self._seq), entry))

    def wake(self) -> None:
        """Let an idle timer thread re-check whether it should linger."""
        with self._cond:
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            t = self._thread
            self._cond.notify()
        if t is not None and t is not threading.current_thread():
            t.join(0.5)


class TimerEntry:
    """A scheduled callback; ``cancel()`` is cheap and idempotent."""

    __slots__ = ("_timer", "active", "fn")

    def __init__(self, timer: Timer, fn: Callable[[], float | None]) -> None:
        self._timer = timer
        self.fn = fn
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self._timer._cancel(self)


def _still_active(entry: TimerEntry) -> bool:
    return entry.active


def _spent() -> None:
    """The callback of an entry that ran its last time or was cancelled."""


HUB = Hub()
atexit.register(HUB._at_exit)
