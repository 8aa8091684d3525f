"""Statements an event loop's thread drives, with no worker thread per statement.

``cursor.execute(sql, asynch=True)`` made on a thread that runs an asyncio
event loop, with an adapter that offers the statement as non-blocking steps
(:meth:`asynchdb.adapters.Adapter.execute_steps`; psycopg 3), does not wake a
worker: the loop's thread sends the statement, and runs the next step each
time the driver's socket is ready.  A thread per busy connection costs every
statement its share of a GIL convoy: 1,000 statements awaited at once over 50
connections ran at about half the speed of 50 raw threads that way, whatever
asynchdb did per statement (benchmarks P9, docs/interrupts.md).

Invariant: a connection's queue is served by exactly one driver at a time,
as before: a worker draining it, or a loop's thread stepping its statement
(``Channel.stepping`` names the stepper).  While a stepper waits for its
socket nobody owns the connection, but the queue stays *scheduled*, so every
other thread's call queues behind it (``Channel.take`` says no); during a
step the loop's thread owns it, so a callback the driver makes inside a step
goes straight in, as on a worker.

Threads:

* the loop's thread starts a statement (``Channel.pump``, owning the
  connection), runs each step in its socket's reader or writer callback,
  ends the job when the steps return a value, and starts the next statement
  queued for the same loop (anything else queued goes to a worker);
* a worker ends a statement whose steps raised (the error path may repair the
  connection, a round trip, or wait for a cancel still being sent), and
  finishes, blocking in ``poll``, a statement *handed over*
  (:meth:`_Stepper.hand_over`) because the loop's thread is about to block
  (a synchronous call, ``wait_for_completion``, ``close``: ``Channel.
  before_blocking``) or because the loop stopped serving it;
* the timer thread runs the watchdog (:meth:`_Loop.check`): every
  :data:`WATCH` seconds, a stepper whose loop closed or stopped, or whose
  socket was ready at :data:`STALL_CHECKS` checks in a row with no step
  between, is handed over.  It catches what no call site can see: a loop's thread blocked in
  user code on something only the statement's end would bring, a loop
  stopped or closed with statements in flight.

Measured hazard: a loop's reader callback for a socket can run once more
after a hand-over (it was already due); it then drops the registration only
if it is still its own (:attr:`_Loop.fds`), since the next stepper on the
same socket may have registered its own meanwhile.
"""

from __future__ import annotations

import logging
import select
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Optional

from ._channel import BLOCKING, ENDED, STEPPING
from ._hub import HUB

if TYPE_CHECKING:
    from ._channel import Channel
    from ._hub import TimerEntry
    from .adapters import Steps

__all__ = ["BLOCKING", "ENDED", "STEPPING", "running_loop", "start"]

log = logging.getLogger("asynchdb")

#: Seconds between the watchdog's checks.
WATCH = 0.025
#: Checks in a row that must find a stepper's socket ready with no step
#: between before it moves to a worker: a loop's thread blocked in user code
#: hands its statements over 75-100 ms late.  A loop that is only busy must
#: not lose them: one step that starts 1,000 operations takes 15-30 ms here
#: (P9's loop lag), and a statement handed over takes the rest of its
#: connection's queue to a worker.
STALL_CHECKS = 4

# a stepper's states
_LOOP, _STEP, _AWAY, _DONE = range(4)


def running_loop() -> Any:
    """The event loop running on this thread, if it can watch sockets; else None.

    Never imports asyncio.  A loop without ``add_reader`` (Windows'
    proactor loop) cannot step statements: they run on workers.
    """
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    loop = aio._get_running_loop()
    if loop is None:
        return None
    cls = type(loop)
    able = _WATCHES.get(cls)
    if able is None:
        able = _WATCHES[cls] = cls.add_reader is not aio.AbstractEventLoop.add_reader
    return loop if able else None


#: Event loop classes, and whether they implement ``add_reader``.
_WATCHES: dict[type, bool] = {}


class _Loop:
    """The steppers one event loop drives, and their watchdog."""

    __slots__ = ("__weakref__", "fds", "loop", "lock", "steppers", "timer")

    def __init__(self, loop: Any) -> None:
        self.loop = weakref.ref(loop)
        self.lock = threading.Lock()
        #: Steppers waiting for their socket or in a step.
        self.steppers: set[_Stepper] = set()
        #: Whose callback each socket's registration is (the loop's thread
        #: only, or the watchdog once the loop closed).  Weak: a closed loop
        #: may drop a registration without calling it, and a stepper refers
        #: to its loop.
        self.fds: weakref.WeakValueDictionary[int, _Stepper] = weakref.WeakValueDictionary()
        self.timer: Optional[TimerEntry] = None

    def add(self, st: _Stepper) -> None:
        with self.lock:
            self.steppers.add(st)
            if self.timer is None:
                self.timer = HUB.timer.schedule(WATCH, self.check)

    def discard(self, st: _Stepper) -> None:
        with self.lock:
            self.steppers.discard(st)

    def check(self) -> Optional[float]:
        """The watchdog (timer thread): hand over what the loop does not serve."""
        with self.lock:
            steppers = list(self.steppers)
            if not steppers:
                self.timer = None
                return None
        loop = self.loop()
        closed = loop is None or loop.is_closed()
        gone = closed or not loop.is_running()  # type: ignore[union-attr]
        for st in steppers:
            st.check(gone)
        if closed:
            # no thread will drop the registrations of a closed loop: forget
            # them (each stepper refers to the loop)
            self.fds.clear()
        return WATCH


_loops: weakref.WeakKeyDictionary[Any, _Loop] = weakref.WeakKeyDictionary()
_loops_lock = threading.Lock()


def _loop_state(loop: Any) -> _Loop:
    with _loops_lock:
        state = _loops.get(loop)
        if state is None:
            state = _loops[loop] = _Loop(loop)
        return state


def start(loop: Any, ch: Channel, job: Any, fileno: int, gen: Steps) -> int:
    """Begin ``job`` and run its statement's first step; STEPPING if the loop waits for the next.

    The loop's thread, owning the connection (``Channel.pump``).  A statement
    that ends in its first step, or that never begins (aborted while
    queued), ends here (ENDED); so does one the loop cannot watch (an event
    loop without ``add_reader``), which a worker finishes.  An interrupt
    (KeyboardInterrupt, SystemExit) is re-raised once the statement is in a
    worker's hands, ended, or back at the head of the queue unstarted;
    ``pump`` then has a worker serve the queue.
    """
    st = _Stepper(loop, ch, job, fileno, gen)
    try:
        if not job.begin():
            gen.close()  # unstarted: nothing ran
            return ENDED
        try:
            mask = gen.send(None)  # type: ignore[arg-type]
        except StopIteration as stop:
            job.returned(stop.value, None)
            return ENDED
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # inside the driver's own code: the query may be out with its
                # results unread; the adapter's repair after an abort reads them
                ch.repair()
            job.returned(None, exc)
            if not isinstance(exc, Exception):
                raise
            return ENDED
        st.mask = mask
        ch.stepping = st
        try:
            st.watch(mask)
        except Exception:
            log.debug("asynchdb: the event loop cannot watch the socket", exc_info=True)
            st.give_up(dispatch=False)  # pump wakes the worker
            return ENDED
        st.state.add(st)  # last: the watchdog sees only a registered stepper
    except BaseException:
        # an interrupt between the steps above
        if job.running() and st.live():
            st.give_up(dispatch=False)  # pump wakes the worker
        raise
    return STEPPING


class _Stepper:
    """One statement a loop's thread steps (see the module docstring for the threads)."""

    __slots__ = ("__weakref__", "_lock", "_seen", "_stalls", "_state", "_steps", "ch", "fileno",
                 "gen", "job", "loop", "mask", "state", "thread", "watching")

    def __init__(self, loop: Any, ch: Channel, job: Any, fileno: int, gen: Steps) -> None:
        self.loop = loop
        self.state = _loop_state(loop)
        self.ch = ch
        self.job = job
        self.fileno = fileno
        self.gen = gen
        #: What the generator waits for (1 readable, 2 writable, 3 either);
        #: 0 before its first step.
        self.mask = 0
        #: The loop's thread.
        self.thread = threading.get_ident()
        self._lock = threading.Lock()
        self._state = _LOOP
        #: Steps run so far, and how many had run when the watchdog last saw
        #: the socket ready with the loop not stepping (-1: it did not).
        self._steps = 0
        self._seen = -1
        #: Checks in a row that found the socket ready with no step between.
        self._stalls = 0
        #: What is registered with the loop for this stepper (loop thread).
        self.watching = 0

    # -- the loop's thread ------------------------------------------------
    def watch(self, mask: int) -> None:
        self.mask = mask
        loop, fd = self.loop, self.fileno
        prev = self.state.fds.get(fd)
        if prev is not None and prev is not self:
            prev._unwatch()  # handed over: its registration was left behind
        if mask & 1:
            loop.add_reader(fd, self.ready, 1)
        if mask & 2:
            loop.add_writer(fd, self.ready, 2)
        self.watching = mask
        self.state.fds[fd] = self

    def _unwatch(self) -> None:
        watching, self.watching = self.watching, 0
        loop, fd = self.loop, self.fileno
        if self.state.fds.get(fd) is not self:
            return  # another stepper's registration now
        del self.state.fds[fd]
        if watching & 1:
            loop.remove_reader(fd)
        if watching & 2:
            loop.remove_writer(fd)

    def ready(self, ready: int) -> None:
        """The socket is ready: run the next step (the loop's reader or writer callback)."""
        with self._lock:
            state = self._state
            if state == _LOOP:
                self._state = _STEP
        if state != _LOOP:
            self._unwatch()  # handed over: a worker runs the rest
            return
        ch = self.ch
        owned = False
        outcome: Optional[tuple[Any, Optional[BaseException]]] = None
        try:
            self._unwatch()
            self._steps += 1
            ch.own()
            owned = True
            try:
                mask = self.gen.send(ready)
            except StopIteration as stop:
                outcome = (stop.value, None)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                outcome = (None, exc)
            owned = False
            ch.release()
            if outcome is not None:
                self._end(*outcome)
                return
            self.watch(mask)
        except BaseException:
            # an interrupt between the steps above: a worker goes on
            if owned:
                ch.release()
            if self._state == _STEP:
                if outcome is None:
                    self.give_up(dispatch=True)
                else:  # the statement ended: a worker ends its job
                    with self._lock:
                        self._state = _DONE
                    self._leave()
                    job, self.gen, self.job = self.job, None, None  # type: ignore[assignment]
                    ch.resume_elsewhere(_Finish(job, *outcome))
            raise
        with self._lock:
            self._state = _LOOP

    def _end(self, value: Any, exc: Optional[BaseException]) -> None:
        # the loop's thread, after the last step; the queue is still ours
        ch, job = self.ch, self.job
        try:
            with self._lock:
                self._state = _DONE
            self.gen = self.job = None  # type: ignore[assignment]
            # the end of a call takes the cancel lock, which an abort holds
            # while its cancel is on the way (psycopg opens a connection to
            # send it): never waited for here
            here = exc is None and ch.end_now(job) and not job.abort_requested()
            if here:
                ch.own()
                try:
                    self._leave()
                    job.returned(value, None)
                finally:
                    ch.release()
            else:
                # an error (its path may repair the connection, a round
                # trip) or an abort: a worker ends it, then serves the queue
                self._leave()
                ch.resume_elsewhere(_Finish(job, value, exc))
        except BaseException:
            # an interrupt while ending: whatever is left, a worker does
            # (Channel.drain refuses to run beside a live stepper, so a
            # worker too many is harmless)
            with self._lock:
                self._state = _DONE
            self._leave()
            if not job.done():
                ch.resume_elsewhere(_Finish(job, value, exc))
            else:
                ch.dispatch()
            raise
        if not here:
            if exc is not None and not isinstance(exc, Exception):
                raise exc  # KeyboardInterrupt, SystemExit: the loop's to handle
            return
        del job
        ch.pump(self.loop)

    def _leave(self) -> None:
        # any thread: no longer the connection's stepper
        self.state.discard(self)
        if self.ch.stepping is self:
            self.ch.stepping = None

    # -- any thread ----------------------------------------------------------
    def hand_over(self) -> bool:
        """Let a worker finish the statement; False if it is no longer the loop's to give."""
        with self._lock:
            if self._state != _LOOP:
                return False
            self._state = _AWAY
        self._leave()
        if threading.get_ident() == self.thread:
            self._unwatch()
        else:
            # the registrations are the loop's to drop, on its thread
            try:
                self.loop.call_soon_threadsafe(self._unwatch)
            except RuntimeError:
                pass  # the loop is closed: nothing will call them
        self.ch.resume_elsewhere(_Resume(self))
        return True

    def live(self) -> bool:
        """Neither handed over nor ended (any thread; a snapshot)."""
        return self._state in (_LOOP, _STEP)

    def give_up(self, *, dispatch: bool) -> None:
        """An interrupt on the loop's thread between steps: a worker finishes (loop thread).

        ``dispatch``: wake it now; else the caller (``Channel.pump``) does.
        """
        with self._lock:
            self._state = _AWAY
        self._leave()
        self._unwatch()
        self.ch.resume_elsewhere(_Resume(self), dispatch=dispatch)

    def check(self, gone: bool) -> None:
        """The watchdog's look at this stepper (timer thread)."""
        if self._state != _LOOP:
            self._seen = -1
            return
        if gone:
            self.hand_over()
            return
        if not _ready_now(self.fileno, self.mask):
            self._seen = -1
        elif self._seen != self._steps:
            self._seen, self._stalls = self._steps, 1
        else:
            # ready at the last checks too, and no step since
            self._stalls += 1
            if self._stalls >= STALL_CHECKS:
                self.hand_over()  # the loop does not serve it: blocked, or stopped


class _Resume:
    """A handed-over statement, finished on a worker (owner thread)."""

    __slots__ = ("st",)

    #: It holds the driver's own lock until it ends (``Channel.drain``).
    holds_driver = True

    def __init__(self, st: _Stepper) -> None:
        self.st = st

    def run(self) -> None:
        st = self.st
        gen, job, mask = st.gen, st.job, st.mask
        st.gen = st.job = None  # type: ignore[assignment]
        try:
            # its first step, or "nothing is ready yet": it yields what it
            # waits for now (a wait noted before an interrupt may be stale)
            mask = gen.send(None if mask == 0 else 0)  # type: ignore[arg-type]
            while True:
                mask = gen.send(_wait(st.fileno, mask))
        except StopIteration as stop:
            job.returned(stop.value, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            job.returned(None, exc)
        finally:
            del gen, job

    def done(self) -> bool:
        return False  # it must run: it holds the statement's generator

    def stop(self, reason: str) -> None:
        job = self.st.job
        if job is not None:
            job.stop(reason)


class _Finish:
    """A statement that ended in an error or with an abort requested, ended on a worker."""

    __slots__ = ("exc", "job", "value")

    def __init__(self, job: Any, value: Any, exc: Optional[BaseException]) -> None:
        self.job = job
        self.value = value
        self.exc = exc

    def run(self) -> None:
        # owner thread
        job, value, exc = self.job, self.value, self.exc
        self.value = self.exc = None
        if exc is not None and not isinstance(exc, Exception):
            # an interrupt inside the driver's own code (a loop run without
            # asyncio.run's SIGINT handler): the adapter's repair after an
            # abort puts the connection back in order
            job.channel.repair()
        job.returned(value, exc)
        del job, value, exc

    def done(self) -> bool:
        return False

    def stop(self, reason: str) -> None:
        pass  # the statement ended already


_POLLIN = getattr(select, "POLLIN", 1)
_POLLOUT = getattr(select, "POLLOUT", 4)
_POLLERR = (getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16)
            | getattr(select, "POLLNVAL", 32))


def _wait(fd: int, mask: int) -> int:
    """Block until ``fd`` is ready as ``mask`` asks; what is ready (worker thread)."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        r, w, _ = select.select([fd] if mask & 1 else [], [fd] if mask & 2 else [], [fd])
        return (1 if r else 0) | (2 if w else 0) or mask
    p = select.poll()
    p.register(fd, (_POLLIN if mask & 1 else 0) | (_POLLOUT if mask & 2 else 0))
    while True:
        ready = 0
        for _, ev in p.poll():
            if ev & _POLLERR:
                return mask  # the driver's next step reads the error
            if ev & _POLLIN:
                ready |= 1
            if ev & _POLLOUT:
                ready |= 2
        if ready:
            return ready


def _ready_now(fd: int, mask: int) -> bool:
    """Whether ``fd`` is ready as ``mask`` asks, right now (timer thread)."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        try:
            r, w, x = select.select([fd] if mask & 1 else [], [fd] if mask & 2 else [], [fd], 0)
        except (OSError, ValueError):
            return True  # closed under us: let a worker find out
        return bool(r or w or x)
    p = select.poll()
    p.register(fd, (_POLLIN if mask & 1 else 0) | (_POLLOUT if mask & 2 else 0))
    return bool(p.poll(0))
