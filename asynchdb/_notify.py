"""Notifications: an operation's listeners, and the one-at-a-time delivery of what they hear.

This module is the OLE DB connection point of one operation: the listener
table (cookies), the ordered queue of notifications with a single deliverer,
and the veto round trip of an abort.  The state machine (``_operation.Job``)
decides *what* happened; the :class:`Notifier` decides *who hears it, on which
thread, in which order*.

Invariants:

* Notifications for one operation are delivered one at a time, in the order
  they were posted.  Whoever posts while nobody delivers becomes the deliverer
  and drains the queue; a notification posted from inside a callback (by the
  deliverer itself) is queued and delivered after that callback returns.
* No callback runs under the lock.  The lock is the job's own (shared, so that
  "is the call still running?" and "queue this tick" are one step, and a tick
  can never land after ``on_stop``).
* A listener that raises is logged and keeps receiving notifications.
* An abort is decided only after every listener heard CANCELED; ``False`` from
  any of them vetoes it unless it cannot be vetoed (close, release, exit).

Threads: the start and end of the work are posted by the thread that runs the
driver call; periodic progress by the timer thread; the CANCELED notification
by the thread that called ``abort()``.  Each is delivered by whichever thread
is the deliverer at that moment.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from . import oledb
from .errors import OperationCanceled
from .status import Phase, Status

if TYPE_CHECKING:
    from ._operation import Operation
    from .listeners import Listener

log = logging.getLogger("asynchdb")

_get_ident = threading.get_ident


class Sink:
    """A listener adapted to one calling convention (internal)."""

    __slots__ = ("_low", "_progress", "_stop", "listener")

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self._progress = getattr(listener, "on_progress", None)
        self._stop = getattr(listener, "on_stop", None)
        self._low = getattr(listener, "on_low_resource", None)
        if self._progress is None and self._stop is None and self._low is None:
            raise TypeError(
                "a listener needs at least one of on_progress, on_stop, "
                f"on_low_resource; got {type(listener).__name__}"
            )
        _require_callable(listener, ("on_progress", self._progress), ("on_stop", self._stop),
                          ("on_low_resource", self._low))

    def progress(self, op: Operation[Any], status: Status) -> bool:
        """Call on_progress; True means 'go on', False means veto/abort."""
        if self._progress is None:
            return True
        return self._progress(op, status) is not False

    def stop(self, op: Operation[Any], status: Status) -> None:
        if self._stop is not None:
            self._stop(op, status)

    def low_resource(self, op: Operation[Any]) -> None:
        if self._low is not None:
            self._low(op)


class OleDbSink(Sink):
    """An ``IDBAsynchNotify`` sink: HRESULT returns, unwanted phases honoured."""

    __slots__ = ("_no_low", "_no_progress", "_unwanted")

    def __init__(self, sink: Any) -> None:
        self.listener = sink
        self._progress = getattr(sink, "OnProgress", None)
        self._stop = getattr(sink, "OnStop", None)
        self._low = getattr(sink, "OnLowResource", None)
        if self._progress is None and self._stop is None and self._low is None:
            raise TypeError(
                "an OLE DB sink needs OnProgress, OnStop or OnLowResource; "
                f"got {type(sink).__name__}"
            )
        _require_callable(sink, ("OnProgress", self._progress), ("OnStop", self._stop),
                          ("OnLowResource", self._low))
        self._unwanted: set[int] = set()
        self._no_progress = False
        self._no_low = False

    def progress(self, op: Operation[Any], status: Status) -> bool:
        if self._progress is None or self._no_progress:
            return True
        phase = int(status.phase)
        if phase in self._unwanted:
            return True
        hr = self._progress(oledb.DB_NULL_HCHAPTER, oledb.DBASYNCHOP_OPEN, status.progress,
                            status.progress_max, phase, status.status_text)
        if hr == oledb.S_FALSE:
            return False
        if hr in (oledb.E_NOTIMPL, oledb.DB_S_UNWANTEDOPERATION):
            self._no_progress = True
        elif hr == oledb.DB_S_UNWANTEDPHASE:
            self._unwanted.add(phase)
        return True

    def stop(self, op: Operation[Any], status: Status) -> None:
        if self._stop is None:
            return
        self._stop(oledb.DB_NULL_HCHAPTER, oledb.DBASYNCHOP_OPEN, hresult_of(status),
                   status.status_text)

    def low_resource(self, op: Operation[Any]) -> None:
        if self._low is None or self._no_low:
            return
        if self._low(0) == oledb.E_NOTIMPL:
            self._no_low = True


def _require_callable(obj: Any, *methods: tuple[str, Any]) -> None:
    """Refuse, before anything runs, a listener whose method is not callable."""
    for name, fn in methods:
        if fn is not None and not callable(fn):
            raise TypeError(f"{type(obj).__name__}.{name} must be callable, "
                            f"not {type(fn).__name__}")


def hresult_of(status: Status) -> int:
    """The HRESULT OLE DB would report for a status."""
    if status.phase == Phase.CANCELED:
        return oledb.DB_E_CANCELED
    if status.error is not None:
        return oledb.E_FAIL
    return oledb.S_OK


def make_sink(listener: Union[Listener, Sink, Any]) -> Sink:
    """Adapt a listener object; raise TypeError before anything runs if it is none."""
    if isinstance(listener, Sink):
        return listener
    return Sink(listener)


class _Muted(Sink):
    """Stands in the listener table for a sink advised after the end (unadvise works)."""

    __slots__ = ()

    def __init__(self, sink: Sink) -> None:
        self.listener = sink.listener
        self._progress = self._stop = self._low = None


class Reply:
    """The listeners' answer to a CANCELED notification (veto or not)."""

    __slots__ = ("event", "vetoed")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.vetoed = False


class Note:
    """One notification waiting in the queue."""

    __slots__ = ("error", "force", "kind", "reply", "status", "target")

    def __init__(self, kind: str, status: Optional[Status], reply: Optional[Reply] = None,
                 target: Optional[Sink] = None, force: bool = False,
                 error: Optional[OperationCanceled] = None) -> None:
        self.kind = kind          # "progress", "stop", "low", "abort" ("tick": periodic)
        self.status = status
        self.reply = reply
        self.target = target      # only this sink (late advise), else all
        self.force = force        # an abort that cannot be vetoed (close, release, exit)
        self.error = error        # the error an "abort" note applies


class Subject(Protocol):
    """What the notifier needs of the operation it speaks for (the job)."""

    def handle(self) -> Operation[Any]:
        """The user's handle, passed to every callback."""

    def running(self) -> bool:
        """Whether the driver call is still in progress (ticks only then)."""

    def request_abort(self) -> None:
        """A listener returned False in INITIALIZATION or POPULATION."""

    def decide_abort(self, note: Note, vetoed: bool) -> None:
        """Every listener heard CANCELED: apply the abort, or drop it if vetoed."""


class Notifier:
    """The listeners of one operation and the delivery of what they hear."""

    __slots__ = ("_cookies", "_deliverer", "_lock", "_notes", "_sinks", "_subject")

    def __init__(self, subject: Subject, lock: threading.RLock) -> None:
        self._subject = subject
        self._lock = lock
        self._sinks: dict[int, Sink] = {}
        self._cookies = itertools.count(1)
        self._notes: collections.deque[Note] = collections.deque()
        self._deliverer: Optional[int] = None

    # -- the listener table (caller holds the lock) ----------------------------
    def add(self, sink: Sink, *, ended: bool) -> int:
        """Add a sink; one advised after the end hears only its own two notifications."""
        cookie = next(self._cookies)
        self._sinks[cookie] = _Muted(sink) if ended else sink
        return cookie

    def empty(self) -> bool:
        return not self._sinks

    def remove(self, cookie: int) -> None:
        """Remove a sink; KeyError for an unknown cookie (any thread)."""
        with self._lock:
            # a cookie is an int: True or 1.0 would otherwise match cookie 1
            if (not isinstance(cookie, int) or isinstance(cookie, bool)
                    or cookie not in self._sinks):
                raise KeyError(cookie)
            del self._sinks[cookie]

    # -- delivery ----------------------------------------------------------------
    def delivering_here(self) -> bool:
        """Whether the current thread is inside a callback of this operation."""
        return self._deliverer == _get_ident()

    def post(self, note: Note) -> None:
        """Queue a notification; deliver the queue unless someone else is."""
        with self._lock:
            if note.kind == "tick":
                if not self._subject.running():
                    return  # the call ended meanwhile: never after on_stop
                note.kind = "progress"
            self._notes.append(note)
            if self._deliverer is not None:
                return
            self._deliverer = _get_ident()
        self._deliver_all()

    def _deliver_all(self) -> None:
        # the delivering thread; one note at a time, in order
        op: Optional[Operation[Any]] = None
        while True:
            with self._lock:
                if not self._notes:
                    self._deliverer = None
                    return
                note = self._notes.popleft()
                sinks = [note.target] if note.target is not None else list(self._sinks.values())
            if op is None:
                op = self._subject.handle()
            self._deliver(op, note, sinks)

    def _deliver(self, op: Operation[Any], note: Note, sinks: list[Sink]) -> None:
        kind = note.kind
        status = note.status
        if kind == "abort":
            assert status is not None and note.reply is not None
            vetoed = False
            for s in sinks:
                try:
                    if not s.progress(op, status):
                        vetoed = True
                except Exception:
                    log.exception("asynchdb: listener %r raised in on_progress", s.listener)
            note.reply.vetoed = vetoed
            self._subject.decide_abort(note, vetoed)
            note.reply.event.set()
            return
        for s in sinks:
            try:
                if kind == "progress":
                    assert status is not None
                    if not s.progress(op, status) and status.phase < Phase.COMPLETE:
                        # False in INITIALIZATION or POPULATION asks for an abort
                        self._subject.request_abort()
                elif kind == "stop":
                    assert status is not None
                    s.stop(op, status)
                else:
                    s.low_resource(op)
            except Exception:
                log.exception("asynchdb: listener %r raised in on_%s", s.listener, kind)
