"""Ctrl-C: SIGINT cancels the synchronous call the main thread is running.

Invariant: a synchronous call on the main thread that SIGINT interrupts, while
Python's default SIGINT handler is installed, is cancelled in the database
with the adapter's cancel (as ``abort()`` does it), the connection is
repaired with the adapter's ``after_abort``, and the caller gets
``KeyboardInterrupt`` once the driver call has returned, with the driver's
error (usually its cancel error) as ``__context__``.  The drop-in fast path
pays a clock read and three attribute stores and their restore per call
(``Channel.inline``): no thread hop, no lock, no ``get_ident``.  Everything else here happens
after a signal came in, and no thread ever reads another thread's frames.

How (threads):

* The **main thread**, when it opens a connection, points
  ``signal.set_wakeup_fd`` at one end of a socket pair (unless another fd is
  set: then that owner keeps it, and this module stays off until it is
  unset).  Python's C-level signal handler writes the signal number there at
  once, even while the main thread is blocked inside a driver's C code.
* The **watcher thread** (``asynchdb-sigint``, alive while connections are
  open) reads it. For a SIGINT under Python's default handler it looks for
  the call the main thread is making inside the driver: every inline driver
  call registers itself on its channel for its duration (``Channel.inline``:
  the driver cursor, the method's name and when the call began; with their
  restore, the only per-call cost of Ctrl-C, measured in docs/interrupts.md), and the channel's
  ownership lock tells whose call it is. It sends the adapter's cancel for
  that call (re-sent every ``reissue_cancel`` seconds while the main thread
  is still in it, as for an abort), unless the call began after the signal
  was sent (see "A signal's time" below). It never reads the main thread's frames:
  doing that from another thread (``sys._current_frames()`` and ``f_back``)
  crashed CPython 3.11 once in our stress runs (docs/reliability.md). A wait
  on an ``Operation`` (``result()``, ``wait_for_completion()``) is never
  cancelled. A fetch waiting for background population is a Python-level
  wait: the main thread's own ``KeyboardInterrupt`` ends it, and the cursor
  aborts the population (:func:`population_interrupted`).
* Back on the main thread, the driver call returns or raises.  Python runs
  the default handler at its first chance, which may be inside a driver's
  own Python code (psycopg then cancels too, and re-raises
  ``KeyboardInterrupt``), inside a callback the driver calls (sqlite3
  swallows the exception and reports ``OperationalError('interrupted')``),
  or right after the call.  The call's ``except`` clause (the error path
  only, so free when nothing fails) calls :func:`after_error`, which
  recognises the interrupted call, repairs the connection and raises
  ``KeyboardInterrupt`` if the driver swallowed it, marked as repaired
  (:func:`repaired`).  When the driver's call failed in C with the signal
  pending, Python's handler raises on *entering* :func:`after_error`; the
  ``except`` clause then calls it again with that ``KeyboardInterrupt``
  (DuckDB under duckdb_engine; sqlite3 waiting on a locked database).  If the handler's
  ``KeyboardInterrupt`` came outside the call's ``except`` clause (after a
  call that returned), the watcher notices that the call ended unclaimed and
  runs the repair as the connection's owner.
* A driver whose calls run Python code between its socket reads and writes
  (``Adapter.hold_interrupt``: PyMySQL, pg8000, clickhouse-driver, and
  MariaDB Connector/Python, whose ``execute`` sends in one C call and reads
  the response in the next) must not get the ``KeyboardInterrupt`` there,
  which would break its protocol.  Its main-thread calls run
  inline with Python's SIGINT handler swapped for one that only counts
  (:func:`held_call`, about 1 us per call): the watcher still sends the
  cancel, the call returns with the cancel's error (or its result), and
  ``KeyboardInterrupt`` is raised then, after the repair.
* An adapter with ``interrupt_on_worker`` alone (ADBC, which swaps in its
  own SIGINT handler around a main-thread call) has the main thread's calls
  run on the worker while Ctrl-C could reach them (a thread hop, as for a
  call that waits its turn): the ``KeyboardInterrupt`` lands in the wait
  (:func:`hopped_call_interrupted`), never inside the driver.  A cancel is
  re-sent only while the main thread is still in the interrupted call, and
  never once the connection closes.
* Calls that build a job (``cancel_after=``, ``listener=``) run on a worker
  when the main thread could be interrupted, so the ``KeyboardInterrupt``
  lands in the wait (:func:`wait_job`), never inside the engine's
  bookkeeping (where it would leave a cursor a zombie): the wait aborts the
  job, waits for it to end (bounded), and raises.
* A ``KeyboardInterrupt`` taken in any wait takes the signal's byte from the
  socket on the main thread (:func:`signal_taken`), so that a watcher that
  runs late never mistakes the main thread's next call for the interrupted
  one.

A signal's time: a watcher that reads the byte late (it waits for the GIL
under load) may find the main thread inside a later call than the one
SIGINT interrupted.  When Python raised that ``KeyboardInterrupt`` in the
program's own code, between two calls, the program may have caught it and
started its next statement, which the watcher would cancel as the
interrupted call (measured on eleven backends, tests/test_interrupt.py).  So
each inline call notes when it began (``Channel.inline_since``, a
``time.perf_counter_ns()`` read before the call takes the connection), and
on Linux the socket is a datagram pair whose datagrams the kernel stamps
with their send time (``SO_TIMESTAMPNS``, the system clock, moved onto
``perf_counter_ns``'s as it is read, so that a step of the system clock
cannot hide a running call): the watcher cancels only calls that began
before the signal.  A signal that came before the
clock was read has had its ``KeyboardInterrupt`` by then, at the check
Python makes after that call.  Where the stamp is not to be had (another
system, or a kernel that does not give it: checked at arming), every
registered call counts as interrupted, as before.

Measured hazards this design keeps away (docs/interrupts.md): with Python's
default handler pending, pyodbc reports the cancelled call as ``HY000 'The
driver did not supply an error!'`` instead of 57014; sqlite3 swallows a
``KeyboardInterrupt`` raised in a callback (our progress handler) and
raises ``OperationalError('interrupted')``; DuckDB's own signal check raises
``RuntimeError('Query interrupted')`` or ignores the signal.

A program that installed its own SIGINT handler keeps full control (nothing
here acts), and so does a thread running an asyncio loop that handles SIGINT
(``asyncio.run`` on 3.11+, ``loop.add_signal_handler``): use ``await op``
there.  A driver with no cancel primitive behaves as it does raw.
"""

from __future__ import annotations

import atexit
import logging
import select
import signal
import socket
import struct
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Optional

from ._hub import HUB
from .adapters import Adapter
from .errors import OperationCanceled, _detached

# signal's own C functions, without signal.py's enum conversions around them:
# getsignal costs 65 ns instead of 6 us, a swap and its restore about 1 us
# instead of 20 us (measured on the 2026-12-06 host)
_sig: Any = signal
try:
    import _signal as _sig  # type: ignore[import-not-found,no-redef]
except ImportError:  # pragma: no cover - not CPython
    pass

log = logging.getLogger("asynchdb")

#: Seconds an interrupted call is followed: cancels re-sent, then the repair.
FOLLOW = 5.0
#: Seconds between two looks at an interrupted call that still runs.  Short:
#: a record holds the call's driver cursor until a look finds the call over,
#: when Python's own KeyboardInterrupt beat :func:`after_error` to it (DuckDB,
#: measured: 4 of 10 Ctrl-Cs), and the connection's repair waits for that
#: look.  Looks happen only for FOLLOW seconds after a Ctrl-C.
LOOK = 0.01
#: Seconds a job interrupted by Ctrl-C may take to end before the wait gives up.
JOB_WAIT = 5.0

_MAIN: int = threading.main_thread().ident or 0
_SIGINT = int(signal.SIGINT)
_DEFAULT = signal.default_int_handler
_STOP = 0  # no signal has number 0: the watcher's stop byte
_POKE = 255  # nor 255: "look at your records"
#: Linux's ``SO_TIMESTAMPNS`` (and its control message's type): the kernel
#: stamps each datagram with its send time, ``CLOCK_REALTIME`` as
#: ``time.time_ns()`` reads it (:func:`_on_call_clock` moves it onto
#: ``perf_counter_ns``, the calls' clock).  The socket module does not name
#: it; arming checks that it works (:func:`_stamped_pair`).
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")  # the control message's struct timespec
#: The time of a SIGINT whose send time is unknown: after every call (any
#: ``perf_counter_ns()``, on any build: not ``sys.maxsize``, which is 2**31 - 1
#: on 32-bit Pythons).
_UNKNOWN = 1 << 64

#: True while our socket is the wakeup fd (read without the lock: a hint).
ARMED = False
#: Python 3.9 and 3.10 run a pending signal's handler on entering an ``except``
#: clause, before any of it runs: a driver call that failed in C with SIGINT
#: pending then raises the ``KeyboardInterrupt`` past the clause that would
#: have claimed it (:func:`taken_on_entry` claims it one level out).  From
#: 3.11 the handler runs on entering :func:`after_error` (measured).
EARLY_SIGNALS = sys.version_info < (3, 11)

_lock = threading.Lock()  # the socket's read side, _records, _watcher
_rsock: Optional[socket.socket] = None
_wsock: Optional[socket.socket] = None
_watcher: Optional[threading.Thread] = None
#: Interrupted inline calls, by channel (the innermost call on each).
_records: dict[Any, _Record] = {}


class _Call:
    """The :class:`~asynchdb.adapters.CallView` of an inline call being interrupted."""

    __slots__ = ("__weakref__", "cursor", "kind")

    abort_requested = True

    def __init__(self, kind: str, cursor: Any) -> None:
        self.kind = kind
        self.cursor = cursor


class _Record:
    """One inline call the watcher sent a cancel for."""

    __slots__ = ("channel", "claimed", "inline", "kind", "sent", "since", "until", "view")

    def __init__(self, channel: Any, inline: Any, kind: Optional[str], since: int) -> None:
        self.channel = channel
        self.inline = inline
        self.kind = kind
        self.since = since
        if kind is None:  # a bound driver method (Channel.call)
            cursor = _cursor_of(channel, getattr(inline, "__self__", None))
            self.view = _Call(getattr(inline, "__name__", "call"), cursor)
        else:  # a driver cursor, in one of the cursor's own fast paths
            self.view = _Call(kind, inline)
        self.claimed = False
        self.sent = time.monotonic()
        self.until = self.sent + FOLLOW

    def matches(self, inline: Any, kind: Optional[str], since: int) -> bool:
        """Whether this records the call registered as ``inline``, ``kind``, ``since``.

        The same cursor and method, begun at the same time: the next call on
        the cursor is another call.
        """
        return inline is self.inline and kind == self.kind and since == self.since

    def is_for(self, ch: Any) -> bool:
        """Whether this records the call registered on ``ch`` now (any thread; a snapshot)."""
        return self.matches(ch.inline, ch.inline_kind, ch.inline_since)

    def running(self) -> bool:
        """Whether the main thread is still in this call (any thread; a snapshot)."""
        return self.is_for(self.channel) and self.channel.owned_by(_MAIN)


def _cursor_of(ch: Any, owner: Any) -> Any:
    """The driver cursor a bound driver method belongs to, or None for the connection's."""
    return None if owner is None or owner is getattr(ch, "raw", None) else owner


# ---------------------------------------------------------------------------
# arming (main thread, when a connection opens) and disarming
# ---------------------------------------------------------------------------
def arm() -> None:
    """Make Ctrl-C reach the database while connections are open (any thread; acts on main)."""
    global ARMED, _rsock, _wsock, _watcher
    if threading.get_ident() != _MAIN:
        return
    with _lock:
        if _wsock is None:
            pair = _stamped_pair()
            if pair is None:
                try:
                    pair = socket.socketpair()
                except OSError:  # pragma: no cover - no socket pair: no Ctrl-C cancel
                    return
            r, w = pair
            r.setblocking(False)
            w.setblocking(False)
            _rsock, _wsock = r, w
        assert _rsock is not None
        fd = _wsock.fileno()
        try:
            old = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        except (ValueError, OSError):  # not the main interpreter
            return
        if old not in (-1, fd):
            # someone else's: they keep it (an asyncio loop, the program itself)
            signal.set_wakeup_fd(old)
            ARMED = False
            return
        if not ARMED:
            _read(_rsock)  # signals from while nobody listened are old news
        ARMED = True
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(target=_watch, name="asynchdb-sigint", daemon=True)
            _watcher.start()


def _stamped_pair() -> Optional[tuple[socket.socket, socket.socket]]:
    """A datagram socket pair whose datagrams carry their send time, or None (main thread).

    Linux only, and only if a datagram sent here comes back stamped with a
    time between the clock's readings before and after the send: the check
    also proves the kernel's clock and ``time.time_ns()`` agree.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    except (OSError, AttributeError):  # pragma: no cover - no AF_UNIX
        return None
    try:
        r.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        r.settimeout(1.0)
        before = time.time_ns()
        w.send(bytes((_POKE,)))
        after = time.time_ns()
        data, stamp = _recv(r)
        if data == bytes((_POKE,)) and stamp is not None and before <= stamp <= after:
            return r, w
    except OSError:  # pragma: no cover - no such option here
        pass
    r.close()  # pragma: no cover - a kernel that does not stamp
    w.close()
    return None


def _recv(sock: socket.socket) -> tuple[bytes, Optional[int]]:
    """One datagram (or a stream's bytes) and its send time, ``time.time_ns()``'s, if stamped."""
    # any thread
    if sock.type != socket.SOCK_DGRAM:  # the fallback pair: no stamps
        return sock.recv(512), None
    data, ancillary, _flags, _addr = sock.recvmsg(512, socket.CMSG_SPACE(_TIMESPEC.size))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS \
                and len(payload) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return data, sec * 1_000_000_000 + nsec
    return data, None


#: Nanoseconds the two readings of the calls' clock around one of the system
#: clock may lie apart for :func:`_on_call_clock` to trust them (normally
#: under 100 ns; a GIL switch or a preemption between them takes far longer).
_BRACKET = 1_000


def _on_call_clock(stamp: int) -> int:
    """A ``time.time_ns()`` time, on the calls' clock, ``perf_counter_ns()`` (any thread).

    Moved by the two clocks' difference as read now, with the system clock
    read between two readings of the calls' clock no more than
    :data:`_BRACKET` apart (read again otherwise: a GIL switch between two
    unbracketed readings put a signal milliseconds late, after the
    statement that the program started once it had caught its
    ``KeyboardInterrupt``, which the watcher then cancelled: 7 stray cancels
    in 4,638 ``sigint_between`` stress scenarios on psycopg2).  The earlier
    reading is used: the result is never later than the signal was, so a
    signal from before a call is never taken for that call's (a signal that
    came within the bracket after a call began may be taken for an earlier
    one's: that call then runs to its end, as raw).  A step of the system
    clock matters only between the signal and this read, not over the
    call's run.
    """
    for _ in range(10):
        before = time.perf_counter_ns()
        system = time.time_ns()
        after = time.perf_counter_ns()
        if after - before <= _BRACKET:
            break
    return stamp - system + before


def _idle() -> None:
    """No connection is open any more: stop the watcher (any thread)."""
    global ARMED
    with _lock:
        watcher = _watcher
        if watcher is None:
            return
        if threading.get_ident() == _MAIN and _wsock is not None:
            try:
                old = signal.set_wakeup_fd(-1)
                if old not in (-1, _wsock.fileno()):
                    signal.set_wakeup_fd(old)  # someone else's since: theirs to keep
            except (ValueError, OSError):  # pragma: no cover
                pass
            ARMED = False
        _send_stop()
    if watcher is not threading.current_thread():
        watcher.join(1.0)


def _send_stop() -> None:
    _send(_STOP)


def _send(byte: int) -> None:
    """Write one byte for the watcher (any thread)."""
    ws = _wsock
    if ws is not None:
        try:
            ws.send(bytes((byte,)))
        except OSError:  # pragma: no cover - full: the watcher is awake anyway
            pass


def _at_exit() -> None:
    """Interpreter exit (main thread): give the wakeup fd back, close the sockets."""
    global ARMED, _rsock, _wsock
    with _lock:
        if _wsock is None:
            return
        try:
            old = signal.set_wakeup_fd(-1)
            if old not in (-1, _wsock.fileno()):
                signal.set_wakeup_fd(old)  # someone else's: theirs to keep
        except (ValueError, OSError):  # pragma: no cover - not the main thread
            return
        ARMED = False
        _send_stop()
        rsock, wsock, _rsock, _wsock = _rsock, _wsock, None, None
    # the watcher (a daemon) may still select on rsock: it is not woken by the
    # close (no end of file on a datagram pair), and dies with the interpreter
    for sock in (wsock, rsock):
        if sock is not None:
            sock.close()


HUB.on_idle.append(_idle)
atexit.register(_at_exit)


def interruptible_here() -> bool:
    """Whether SIGINT could interrupt a call made now on this thread (caller thread)."""
    return (ARMED and threading.get_ident() == _MAIN
            and _sig.getsignal(_SIGINT) is _DEFAULT)


def could_interrupt() -> bool:
    """Whether SIGINT would raise KeyboardInterrupt on this thread now (caller thread).

    :func:`interruptible_here` without the watcher: for a wait that takes the
    ``KeyboardInterrupt`` itself (a connect opened on a worker), so also
    before the first connection armed the watcher.
    """
    return threading.get_ident() == _MAIN and _sig.getsignal(_SIGINT) is _DEFAULT


def _ours() -> bool:
    """Whether SIGINT is Python's default handler, or held by :func:`held_call` (any thread)."""
    handler = _sig.getsignal(_SIGINT)
    return handler is _DEFAULT or handler is _hold


# ---------------------------------------------------------------------------
# the watcher thread
# ---------------------------------------------------------------------------
def _read(sock: socket.socket) -> tuple[bytes, int]:
    """Everything waiting on the socket, and when its last SIGINT was sent.

    The caller holds ``_lock``.  The time is ``perf_counter_ns()``'s clock,
    or :data:`_UNKNOWN` when a SIGINT came unstamped; 0 when none came.
    """
    chunks = []
    sigint = 0
    while True:
        try:
            data, stamp = _recv(sock)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # pragma: no cover - closed
            break
        if not data:
            break
        chunks.append(data)
        if _SIGINT in data:
            sigint = max(sigint, _UNKNOWN if stamp is None else _on_call_clock(stamp))
    return b"".join(chunks), sigint


def _watch() -> None:
    # watcher thread
    sock = _rsock
    assert sock is not None
    while True:
        timeout = LOOK if _records else None
        try:
            select.select([sock], [], [], timeout)
        except (OSError, ValueError):  # pragma: no cover - closed under us
            return
        if not _wake(sock):
            return


def _wake(sock: socket.socket) -> bool:
    """One wake-up of the watcher: False when it is to stop (watcher thread).

    A function of its own so that nothing it touched stays referenced while
    the watcher sleeps: a record holds the interrupted call's driver cursor,
    which the caller must be free to close (or release) once the call is over.
    """
    global _watcher
    found: list[_Record] = []
    with _lock:
        data, sigint = _read(sock)
        if _STOP in data and HUB.open_count() == 0:
            if _watcher is threading.current_thread():
                _watcher = None
            _records.clear()
            return False
        if sigint and _ours():
            found = _targets(sigint)
    for rec in found:
        _cancel(rec)
    if _records:
        _follow_up()
    return True


def _main_calls() -> list[tuple[Any, Any, Optional[str], int]]:
    """The inline driver calls the main thread is in: ``(channel, inline, kind, since)``.

    Any thread.  A call stores its ``since`` first and restores it last (a
    nested call's restore brings the outer call's back), so ``since`` is read
    on both sides of ``inline`` and ``inline_kind``: when it moved, the call
    was registering or ending under the reads, and they are taken again.

    Read from what each call registers on its channel (``Channel.inline``),
    never from the main thread's stack: reading another thread's frames
    (``sys._current_frames()`` and ``f_back``) can crash CPython 3.11 when
    that thread pops them meanwhile (one segmentation fault in about 95,000
    stress operations that did, docs/reliability.md; the same crash is
    reported against profilers that sample that way).
    """
    calls = []
    for ch in HUB.open_channels():
        c: Any = ch
        for _ in range(100):  # a moving call settles within two reads
            since = c.inline_since
            inline, kind = c.inline, c.inline_kind
            if c.inline_since == since:
                break
        if inline is not None and c.owned_by(_MAIN):
            calls.append((c, inline, kind, since))
    return calls


def _targets(sigint: int) -> list[_Record]:
    """The main thread's driver calls a SIGINT sent at ``sigint`` interrupted, recorded.

    Watcher thread (or the main thread, :func:`signal_taken`), holding
    ``_lock``.  A call that began after the signal was sent is not one of
    them: Python raised the signal's ``KeyboardInterrupt`` before it began
    (the module's docstring, "A signal's time").  A wait on an ``Operation`` (or a
    job's wait, or a fetch waiting for population) registers no inline call,
    so it is never cancelled; those waits handle their own
    ``KeyboardInterrupt``.  Nested calls on one connection register the
    innermost; calls nested across connections are each recorded (the
    ``KeyboardInterrupt`` ends them all).

    While a :func:`held_call` runs, Python's handler only counts: a call
    nested in it (a driver callback's) that began after the signal still
    has the signal's ``KeyboardInterrupt`` ahead of it, and is one of them
    when the held call began before the signal.
    """
    calls = _main_calls()
    if _sig.getsignal(_SIGINT) is _hold and any(since <= sigint for *_, since in calls):
        sigint = _UNKNOWN
    found = []
    for ch, inline, kind, since in calls:
        if since > sigint:
            continue
        rec = _records.get(ch)
        if rec is None or not rec.matches(inline, kind, since):
            rec = _records[ch] = _Record(ch, inline, kind, since)
        found.append(rec)
    return found


def _interrupted(kind: str) -> OperationCanceled:
    return OperationCanceled(f"{kind} was aborted: interrupted (SIGINT)")


def _cancel(rec: _Record) -> None:
    # watcher thread, outside _lock: a cancel may take a network round trip
    try:
        log.debug("asynchdb: Ctrl-C: cancelling %s", rec.view.kind)
        rec.channel.cancel_inline(rec.view, lambda: _still_running(rec))
    except Exception:
        log.info("asynchdb: the cancel for Ctrl-C failed", exc_info=True)


def _still_running(rec: _Record) -> bool:
    """Whether the main thread is still in the interrupted call (watcher, cancel lock held).

    A cancel re-sent once the call returned could stop the caller's next
    statement (MySQL's ``KILL QUERY`` and PostgreSQL's cancel request target
    the connection); and the connection may be closing.
    """
    return not rec.claimed and rec.running()


def _follow_up() -> None:
    """Re-send cancels to calls still running; repair the connections of unclaimed ones."""
    # watcher thread
    now = time.monotonic()
    resend: list[_Record] = []
    repair: list[_Record] = []
    with _lock:
        for ch, rec in list(_records.items()):
            if rec.running() and now < rec.until:
                again = ch.adapter.reissue_cancel
                if again is not None and now - rec.sent >= again and not rec.claimed:
                    rec.sent = now
                    resend.append(rec)
                continue
            del _records[ch]
            if not rec.claimed:
                repair.append(rec)
    for rec in resend:
        _cancel(rec)
    for rec in repair:
        _repair_as_owner(rec.channel)


def _repair_as_owner(ch: Any) -> None:
    """The main thread's call ended without :func:`after_error`: repair it here (watcher)."""
    if type(ch.adapter).after_abort is Adapter.after_abort or not ch.take():
        return  # nothing to repair, or busy again (the next owner gets the driver's state)
    try:
        _repair(ch)
    finally:
        ch.release()


def _repair(ch: Any) -> None:
    # the connection's owner
    if ch.raw_closed:
        return
    try:
        ch.adapter.after_abort(ch.view)
    except Exception:
        log.warning("asynchdb: repairing the connection after Ctrl-C failed", exc_info=True)


# ---------------------------------------------------------------------------
# the main thread, after the call
# ---------------------------------------------------------------------------
def after_error(ch: Any, exc: BaseException) -> None:
    """A driver call failed on the owner thread: was it Ctrl-C?  Then raise KeyboardInterrupt.

    Called from the ``except`` clause of an inline driver call (the caller
    re-raises ``exc`` if this returns).  On the main thread, when the watcher
    interrupted this very call (or a SIGINT it has not read yet is waiting),
    the connection is repaired and ``KeyboardInterrupt`` is raised with
    ``exc`` as its ``__context__`` (unless ``exc`` is one already).
    """
    if threading.get_ident() != _MAIN:
        return
    with _lock:
        # claimed, and forgotten at once: the record holds the driver cursor
        rec = _records.get(ch)
        if rec is not None and rec.is_for(ch):
            del _records[ch]
            rec.claimed = True
        elif _rsock is None or _pending_sigint(_rsock) < ch.inline_since:
            return  # no SIGINT waiting, or one whose KeyboardInterrupt came before this call
        else:
            rec = None
    if rec is not None:
        # A cancel the watcher is sending at this moment (it checked that the
        # call still ran, then sends) must be out before the caller goes on:
        # sent during the caller's next statement it would stop that one
        # (pyodbc-postgresql: 57014 on the next SELECT, or SQLCancel closing
        # its result, HY010; 2 of 6 `check` runs).  Later sends see the claim.
        ch.settle_cancels()
    if not _ours():
        return
    _repair(ch)
    _forget_printed(sys._getframe(1))
    if isinstance(exc, KeyboardInterrupt):
        _mark_repaired(exc)
        return
    raise _mark_repaired(KeyboardInterrupt())


def taken_on_entry(ch: Any, ki: KeyboardInterrupt) -> None:
    """A KeyboardInterrupt raised on entering an inline call's ``except`` clause (3.9/3.10).

    Called one level out from that clause, still owning ``ch`` and with the
    call still registered: it does what the clause would have done, once.
    """
    if ARMED and not repaired(ki):
        after_error(ch, ki)


#: SIGINTs that came while a :func:`held_call` ran (main thread only).
_caught = 0


def _hold(signum: int, frame: Optional[FrameType]) -> None:
    """SIGINT's Python handler while a :func:`held_call` runs: count, raise nothing (main)."""
    global _caught
    _caught += 1


def held_call(ch: Any, inline: Any, kind: Optional[str], since: int,
              fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a driver on the main thread with Ctrl-C held off until it returns.

    Main thread, owning ``ch``, under Python's default handler (the caller
    checked :func:`interruptible_here`); ``inline``, ``kind`` and ``since``
    are what the call registers (``Channel.inline``).  A ``KeyboardInterrupt``
    raised inside PyMySQL's, pg8000's or clickhouse-driver's socket read, or
    between MariaDB Connector/Python's send and read, leaves their protocol
    state broken, so while ``fn`` runs the handler only counts (:func:`_hold`);
    a socket read that SIGINT interrupts is retried (PEP 475).
    The C-level handler still wakes the watcher, which cancels the call as
    for any driver.  Once ``fn`` returned or raised, the connection is
    repaired and ``KeyboardInterrupt`` raised (by :func:`after_error`, still
    under the hold, so a second Ctrl-C cannot break the repair).  Costs two
    ``signal`` swaps (about 1 us) instead of a thread hop (about 80 us).
    """
    global _caught
    outer, outer_kind, outer_since = ch.inline, ch.inline_kind, ch.inline_since
    _caught = 0
    _sig.signal(_SIGINT, _hold)
    ch.inline_since, ch.inline, ch.inline_kind = since, inline, kind
    try:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            # a copy, before anything chains to it (Adapter.keeps_errors)
            copy = _detached(exc) if ch.adapter.keeps_errors else exc
            if ARMED:
                after_error(ch, copy)  # raises KeyboardInterrupt after a Ctrl-C
            if _caught and not isinstance(exc, KeyboardInterrupt):
                # counted, but the watcher never saw it (its wakeup byte was
                # lost): still the caller's Ctrl-C, never dropped
                raise KeyboardInterrupt  # noqa: B904 - the error is its context, as elsewhere
            if copy is not exc:
                raise copy from copy.__cause__
            raise
        if _caught:  # Ctrl-C while it ran, and it finished anyway
            ki = KeyboardInterrupt()
            after_error(ch, ki)
            raise ki
    finally:
        ch.inline, ch.inline_kind, ch.inline_since = outer, outer_kind, outer_since
        if _sig.getsignal(_SIGINT) is _hold:  # unless something swapped it meanwhile
            _sig.signal(_SIGINT, _DEFAULT)
    if _caught:  # between the check and the swap back: as raw, just after the call
        raise KeyboardInterrupt
    return result


def _forget_printed(call: FrameType) -> None:
    """Drop ``sys.last_value`` if it is this Ctrl-C, printed by the driver (main thread).

    psycopg2 prints (``PyErr_Print``) an exception raised while it decodes
    a server error message, and Python's handler may raise the
    ``KeyboardInterrupt`` right there.  ``PyErr_Print`` leaves it in
    ``sys.last_value`` for good, and its traceback's frames lead back
    (``f_back``) to ``call``, the asynchdb frame calling the driver, and so
    to the caller's cursor, which could then never be released (the stress
    runner's ``drop`` scenario counted one lost abort in 100,000 operations).
    Only a ``KeyboardInterrupt`` raised inside this very call is dropped.
    These are this thread's own frames: walking them is safe.
    """
    value = getattr(sys, "last_value", None)
    if not isinstance(value, KeyboardInterrupt):
        return
    tb = value.__traceback__
    while tb is not None:
        frame: Optional[FrameType] = tb.tb_frame
        while frame is not None:
            if frame is call:
                for name in ("last_type", "last_value", "last_traceback", "last_exc"):
                    if hasattr(sys, name):
                        delattr(sys, name)
                return
            frame = frame.f_back
        tb = tb.tb_next


#: Set on a KeyboardInterrupt raised once its call was cancelled and the
#: connection repaired (read by :func:`repaired`).
_REPAIRED = "_asynchdb_repaired"


def _mark_repaired(ki: KeyboardInterrupt) -> KeyboardInterrupt:
    setattr(ki, _REPAIRED, True)
    return ki


def repaired(exc: BaseException) -> bool:
    """Whether ``exc`` is a KeyboardInterrupt raised after its call ended and was repaired.

    Then the connection is in a known state: the interrupted call is over
    (cancelled, or finished) and the adapter's ``after_abort`` ran before the
    exception left asynchdb.  ``asynchdb.sqlalchemy`` keeps such a connection
    in the pool, as it does one whose deadline cancelled its statement.
    """
    return getattr(exc, _REPAIRED, False) is True


def _pending_sigint(sock: socket.socket) -> int:
    """When the last SIGINT the watcher has not read yet was sent (0: none; :func:`_read`).

    Main thread, holding ``_lock``.
    """
    data, sigint = _read(sock)
    if _STOP in data:
        _send_stop()  # not ours to take
    if _POKE in data:
        _send(_POKE)
    return sigint


def signal_taken() -> None:
    """The main thread got a SIGINT's ``KeyboardInterrupt`` in a wait: take its wake-up byte.

    Main thread (any other returns at once), from the ``except
    KeyboardInterrupt`` of a wait (``Job.wait``, which :func:`wait_job` uses;
    :func:`hopped_call_interrupted`; :func:`population_interrupted`).  Left in the socket, the byte
    would be read by the watcher whenever it next runs, and by then the main
    thread may have started its next statement, which the watcher would cancel
    as the interrupted call: that statement raised ``KeyboardInterrupt`` at
    once (tests/test_interrupt.py holds the watcher back to show it).
    Driver calls the main thread is still inside (a wait nested in a driver
    callback) are what the SIGINT interrupted: they are cancelled here, as
    the watcher would have.
    """
    if threading.get_ident() != _MAIN:
        return
    with _lock:
        sigint = 0 if _rsock is None else _pending_sigint(_rsock)
        if not sigint or not _ours():
            return
        found = _targets(sigint)
    if not found:
        return
    for rec in found:
        _cancel(rec)
    _send(_POKE)  # the watcher follows the records up: re-sent cancels, repairs


def wait_job(job: Any) -> None:
    """Wait for a job run on a worker for a synchronous call (main thread).

    A ``KeyboardInterrupt`` lands here, in the wait: the job is aborted (the
    real cancel, no veto), the wait goes on until it ended (at most
    :data:`JOB_WAIT` seconds, further interrupts included), and the
    ``KeyboardInterrupt`` is raised with the driver's error as its context.
    """
    try:
        job.wait(None)
    except KeyboardInterrupt as ki:  # Job.wait took the signal's byte (signal_taken)
        if _sig.getsignal(_SIGINT) is _DEFAULT:
            job.abort(_interrupted(job.kind), force=True)
            _wait_through_interrupts(job.wait, time.monotonic() + JOB_WAIT)
            error = job.outcome()[2]
            cause = error.__cause__ if isinstance(error, OperationCanceled) else error
            if cause is not None:
                ki.__context__ = cause
            if job.done():  # ended, and repaired before it woke this wait
                _mark_repaired(ki)
        raise


def _wait_through_interrupts(wait: Callable[[float], bool], deadline: float) -> None:
    """Call ``wait(seconds)`` until it returns True or ``deadline`` passes (caller thread).

    Further Ctrl-Cs while winding down an interrupted call are absorbed: the
    first ``KeyboardInterrupt`` is already on its way out.
    """
    while True:
        left = deadline - time.monotonic()
        try:
            if left <= 0 or wait(left):
                return
        except KeyboardInterrupt:
            continue


def population_interrupted(job: Any) -> None:
    """A fetch waiting for background population got ``KeyboardInterrupt`` (caller thread).

    Under Python's default handler (Ctrl-C), the population is aborted (no
    veto): the rows already fetched stay readable.  The caller re-raises.
    """
    signal_taken()
    if job is not None and not job.done() and \
            _sig.getsignal(_SIGINT) is _DEFAULT:
        job.abort(_interrupted(job.kind), force=True)


def hopped_call_interrupted(ch: Any, task: Any, name: str, target: Any,
                            ki: KeyboardInterrupt) -> None:
    """Ctrl-C while a synchronous call that had to wait its turn runs on the worker.

    Caller thread (the main thread, in ``Channel.call``'s wait).  Under
    Python's default handler: send the adapter's cancel for it, wait until it
    ended (at most :data:`JOB_WAIT` seconds, further interrupts included),
    repair the connection as its owner, and give ``ki`` the call's error as
    context.  The caller re-raises ``ki``.
    """
    signal_taken()
    if not task.started() or task.done() or \
            _sig.getsignal(_SIGINT) is not _DEFAULT:
        return
    cursor = _cursor_of(ch, target)
    # The call becomes the channel's running call for the time of the cancel
    # (sqlite3's progress handler reads its abort flag there), and its flag
    # is up only while it has not ended, so the next statement never sees it.
    stand = _Running(task, name, cursor)
    if not ch.adopt(stand):
        return
    deadline = time.monotonic() + JOB_WAIT
    again = ch.adapter.reissue_cancel
    try:
        while not task.done():
            if not task.done():
                ch.cancel(stand)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                task.wait(min(left, again if again is not None else left))
            except KeyboardInterrupt:
                continue
    finally:
        ch.end(stand)
    if task.error is not None:
        if ch.adapter.keeps_errors:  # the driver keeps the original (Adapter.keeps_errors)
            task.error = _detached(task.error)
        ki.__context__ = task.error
    # the repair runs on the worker, in turn; wait for it (bounded), so that
    # the caller meets a repaired connection when the KeyboardInterrupt lands
    fix = _Repair(ch)
    ch.submit(fix)
    _wait_through_interrupts(fix.wait, deadline)
    if fix.done():
        _mark_repaired(ki)


class _Running:
    """A synchronous call running on the worker, as the channel's running call (Ctrl-C)."""

    __slots__ = ("__weakref__", "cursor", "kind", "task")

    def __init__(self, task: Any, kind: str, cursor: Any) -> None:
        self.task = task
        self.kind = kind
        self.cursor = cursor

    @property
    def view(self) -> _Running:
        return self

    @property
    def abort_requested(self) -> bool:
        return not self.task.done()

    def run(self) -> None:  # pragma: no cover - never queued
        return None

    def done(self) -> bool:
        return bool(self.task.done())

    def stop(self, reason: str) -> None:
        return None  # the call is stopped by the cancel; closing waits for it


class _Repair:
    """The adapter's repair, queued on the channel like a synchronous call."""

    __slots__ = ("ch", "ended", "stopped")

    def __init__(self, ch: Any) -> None:
        self.ch = ch
        self.ended = threading.Event()
        self.stopped = False

    def run(self) -> None:
        # owner thread
        try:
            if not self.stopped and type(self.ch.adapter).after_abort is not Adapter.after_abort:
                _repair(self.ch)
        finally:
            self.ended.set()

    def done(self) -> bool:
        """Whether the repair ran (not just: was stopped by a close)."""
        return self.ended.is_set() and not self.stopped

    def wait(self, timeout: float) -> bool:
        return self.ended.wait(timeout)

    def stop(self, reason: str) -> None:
        self.stopped = True
        self.ended.set()
