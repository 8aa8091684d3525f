"""Channel: one wrapped driver connection, its queue and who may touch it.

Ownership rule: at any moment at most one thread calls into the driver
connection (or any of its cursors), the *owner*, holding ``_owner``.  The owner
is either a pool thread draining the queue (``drain``) or, for a synchronous
call made while nothing is queued, the caller's own thread: the drop-in path
pays no thread hop.  The only driver call made by a non-owner is the cancel
primitive (``cancel``), under ``_cancel_lock`` and only while the operation it
targets is the one running, so a cancel never overlaps the start of the next
statement, a close, or a cursor close (MariaDB ODBC double free, DRIVERS.md).

Operations run one after another in the order they were submitted.
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable

from ._hub import HUB
from .errors import OperationCanceled
from .operation import COMPLETE, Job

if TYPE_CHECKING:
    from ._drivers._base import Adapter

log = logging.getLogger("asynchdb")

#: Seconds ``close()`` waits for a busy worker before leaving the close to it.
CLOSE_WAIT = 5.0

_get_ident = threading.get_ident


class Channel:
    """One driver connection and its logical worker (internal)."""

    def __init__(self, adapter: Adapter, raw: Any = None) -> None:
        self.adapter = adapter
        self.raw = raw
        self.module: Any = adapter.module
        self._mutex = threading.RLock()
        self._tasks: collections.deque[Any] = collections.deque()  # Job or _Turn
        #: True while a pool thread is assigned to drain the queue.
        self._scheduled = False
        self._owner = threading.Lock()
        self._owner_thread: int | None = None
        self._cancel_lock = threading.RLock()
        #: The job inside a driver call right now (read by the sqlite3 hook).
        self.running: Job | None = None
        #: No new work is accepted.
        self.closed = False
        #: Closing: hooks stop whatever statement runs.
        self.closing = False
        #: The driver connection was closed.
        self.raw_closed = False
        #: Driver cursors whose wrapper was released while the owner was busy.
        self.graveyard: collections.deque[Any] = collections.deque()
        #: Populations parked for buffer space: neither queued nor running, but
        #: pending all the same (close must abort them too).
        self.parked: weakref.WeakSet[Job] = weakref.WeakSet()
        #: Adapter-specific state (the sqlite3 progress hook).
        self.hook: Any = None
        self.counters = {"submitted": 0, "inline": 0, "hopped": 0, "aborted": 0}
        HUB.opened(self)

    # ------------------------------------------------------------------
    # queueing (any thread)
    # ------------------------------------------------------------------
    def submit(self, job: Any, *, closing: bool = False) -> None:
        """Queue ``job`` behind earlier work; a pool thread will run it."""
        with self._mutex:
            if self.closed and not closing:
                raise self.closed_error()
            self._tasks.append(job)
            self.counters["submitted"] += 1
            if self._scheduled:
                return
            self._scheduled = True
        HUB.dispatch(self)

    def drain(self) -> None:
        """Run queued jobs until the queue is empty (pool thread)."""
        self._owner.acquire()
        self._owner_thread = _get_ident()
        try:
            while True:
                if self.graveyard:
                    self._bury()  # driver calls: never under _mutex
                with self._mutex:
                    if not self._tasks:
                        self._scheduled = False
                        self._owner_thread = None
                        self._owner.release()
                        return
                    job = self._tasks.popleft()
                job.run()
                del job  # a kept traceback may keep this frame (Job.run explains)
        except BaseException:  # pragma: no cover - job.run never raises
            with self._mutex:
                self._scheduled = False
                self._owner_thread = None
            self._owner.release()
            raise

    # ------------------------------------------------------------------
    # synchronous calls (caller thread)
    # ------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the driver synchronously, inline when the connection is free."""
        if self._owner_thread == _get_ident():
            return fn(*args, **kwargs)  # nested: a listener on the owner thread
        if not self._scheduled and self._owner.acquire(False):
            try:
                return fn(*args, **kwargs)
            finally:
                if self.graveyard:
                    self._bury()
                self._owner.release()
        # busy or work queued: run in order behind it, on the worker
        job = Job(self, "call", lambda: fn(*args, **kwargs))
        self.counters["hopped"] += 1
        self.submit(job)
        job.wait(None)
        try:
            return job.value()
        except BaseException:
            del job  # the job keeps the error: its traceback must not keep the job
            raise

    def run_sync(self, job: Job) -> None:
        """Run a job synchronously (a call with cancel_after= or listener=).

        Inline when the connection is free, unless the driver cannot cancel:
        then the call runs on the worker so that a deadline can still release
        the caller (the call itself is abandoned).
        """
        try:
            if not self.adapter.can_cancel and self._owner_thread != _get_ident():
                self.submit(job)
                job.wait(None)
                return
            if self._owner_thread == _get_ident():
                job.run()
                return
            if not self._scheduled and self._owner.acquire(False):
                try:
                    job.run()
                finally:
                    if self.graveyard:
                        self._bury()
                    self._owner.release()
                return
            self.submit(job)
            job.wait(None)
        finally:
            del job  # a kept traceback may keep this frame (Job.run explains)

    # ------------------------------------------------------------------
    # the running statement (owner thread) and its cancel (any thread)
    # ------------------------------------------------------------------
    def begin(self, job: Job) -> None:
        with self._cancel_lock:
            self.running = job

    def end(self, job: Job) -> None:
        with self._cancel_lock:
            if self.running is job:
                self.running = None

    def cancel(self, job: Job) -> bool:
        """Send the driver's cancel if ``job`` is the statement running now."""
        with self._cancel_lock:
            if self.running is not job or self.raw_closed:
                return False
            self.counters["aborted"] += 1
            try:
                self.adapter.cancel(self, job.raw_cursor)
            except Exception:
                log.warning("asynchdb: the driver's cancel failed", exc_info=True)
                return False
            return True

    # ------------------------------------------------------------------
    # closing
    # ------------------------------------------------------------------
    def discard_cursor(self, raw_cursor: Any) -> None:
        """Close a released driver cursor now if the connection is free, else later."""
        if self.raw_closed:
            return
        if self._owner_thread != _get_ident() and self._owner.acquire(False):
            try:
                self._close_cursor(raw_cursor)
            finally:
                self._owner.release()
        else:
            self.graveyard.append(raw_cursor)

    def _bury(self) -> None:
        # owner thread
        while self.graveyard:
            try:
                raw_cursor = self.graveyard.popleft()
            except IndexError:  # pragma: no cover - raced with another bury
                return
            self._close_cursor(raw_cursor)

    def _close_cursor(self, raw_cursor: Any) -> None:
        if self.raw_closed:
            return
        try:
            self.adapter.close_cursor(raw_cursor)
        except Exception:
            log.debug("asynchdb: closing a released cursor failed", exc_info=True)

    def abort_all(self, reason: str) -> None:
        """Abort everything queued or running (no veto)."""
        with self._mutex:
            jobs = [getattr(t, "job", t) for t in self._tasks]
            jobs.extend(self.parked)
        running = self.running
        if running is not None:
            # last: once it ends the worker moves on, so the queued ones go first
            jobs.append(running)
        for job in jobs:
            if job.state < COMPLETE:
                job.abort(OperationCanceled(f"{job.kind} was aborted: {reason}"), force=True)

    def close(self, wait: float | None = CLOSE_WAIT) -> None:
        """Abort pending work, then close the driver connection on its owner.

        Returns once closed, or after ``wait`` seconds if a call that cannot be
        stopped still holds the worker (the close then happens when it returns).
        """
        with self._mutex:
            if self.closed:
                return
            self.closed = True
        self.closing = True
        busy = self._scheduled  # a call runs: close on the worker once it ends
        self.abort_all("the connection was closed")
        if self._owner_thread == _get_ident():
            self._close_raw()
            return
        if not busy and not self._scheduled and self._owner.acquire(False):
            try:
                self._close_raw()
            finally:
                self._owner.release()
            return
        job = Job(self, "close", self._close_raw, cancellable=False)
        self.submit(job, closing=True)
        if wait is None or wait > 0:
            job.wait(wait)

    def _close_raw(self) -> None:
        # owner thread
        if self.raw_closed:
            return
        if self.graveyard:
            self._bury()
        raw = self.raw
        self.raw_closed = True
        try:
            if raw is not None:
                self.adapter.close_connection(raw)
        finally:
            HUB.closed(self)

    def release_unopened(self) -> None:
        """The driver connection never opened (or its connect failed): forget it."""
        with self._mutex:
            if self.raw_closed:
                return
            self.closed = True
            self.raw_closed = True
        HUB.closed(self)

    def shutdown_at_exit(self) -> None:
        """Interpreter exit: abort and close without waiting (any thread)."""
        self.close(wait=0)

    def closed_error(self) -> BaseException:
        """The driver's own ProgrammingError (or InterfaceError) for a closed connection."""
        mod = self.module
        cls = getattr(mod, "ProgrammingError", None) or getattr(mod, "InterfaceError", None)
        msg = "Cannot operate on a closed connection."
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls(msg)
        from .errors import AsynchError

        return AsynchError(msg)
