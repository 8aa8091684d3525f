"""Stress: randomized operations with aborts at random moments, on every backend.

``python -m benchmarks.stress --short`` (CI, through ``tests/test_stress.py``)
or ``python -m benchmarks.stress --ops 100000`` (by hand; writes
``benchmarks/results/stress.{json,md}``).

Each backend runs in subprocesses of ``--chunk`` operations each, so a driver
that crashes the process is *counted* (and the run goes on with the next
chunk) instead of killing the run.  Inside a subprocess one thread drives two
connections through a random mix of scenarios:

``quick``
    a short statement; its rows must be right.
``abort``
    a statement that runs far longer than the watchdog (``--long`` seconds),
    aborted after a random delay (zero included: the abort races the start),
    from this thread or another one; half the time a short *follow-up*
    statement is started on the same connection right after the abort.
``deadline``
    the long statement with ``cancel_after=`` of 0-50 ms, asynchronous or not.
``populate``
    a row-returning statement with background population (a small buffer),
    read in part, then aborted: the rows read before and after come in order.
``close``
    the long statement, then the connection is closed under it.
``drop``
    the long statement, then its cursor and Operation are released
    (``gc.collect()``); a listener hears the end.
``reentrant``
    a short statement whose listener runs another short statement on the same
    connection from inside the call (synchronous or not): both give the right
    rows, and neither waits for the other.
``taskcancel``
    the long statement awaited by an asyncio task, which is cancelled after a
    random delay (zero included); the task must end with ``CancelledError``
    once the operation ended, CANCELED; half the time a follow-up.  Half the
    time the statement starts on the loop's thread (stepped there by psycopg),
    and half of those the loop's thread blocks in ``wait_for_completion``
    for the delay first (the statement moves to a worker).
``sigint``
    the long statement as a plain synchronous call on the main thread; a
    helper thread sends SIGINT to the process once the call is inside the
    driver (after a random extra delay); the call must raise
    ``KeyboardInterrupt`` long before the statement's natural end, and a
    follow-up must run (not on the fake driver, which blocks in Python).
``sigint_between``
    the main thread sends itself SIGINT while it runs Python between two
    statements, catches the ``KeyboardInterrupt`` and at once runs a 50 ms
    statement on the main thread: it must run whole (a cancel of it is a
    stray cancel).  The watcher reads the signal late there (it waits for the
    GIL), and must not take that statement for the interrupted one.

Counters (all must stay zero):

crashes
    a subprocess died by a signal, or with exit status 134 or 139.
deadlocks
    an operation not ended ``--watchdog`` seconds after its abort (deadline,
    close, release), a close or a synchronous call that did not return, or a
    subprocess that had to be killed.
lost_aborts
    an abort accepted while the long statement ran, and the operation ended
    COMPLETE only when the statement ran to its natural end (``--long``
    seconds): the cancel was lost.  An operation not ended within the
    watchdog is waited for until then, to tell a lost cancel from a deadlock.
stray_cancels
    a statement started after an abort was canceled (the follow-up), or the
    statement after a Ctrl-C caught between statements (``sigint_between``).
broken_transactions
    a statement after an abort failed because the abort left the connection's
    transaction aborted (PostgreSQL SQLSTATE 25P02); the run rolls back and
    goes on.
leaked_threads
    asynchdb threads still alive 5 s after every connection was closed.
errors
    anything else unexpected: a wrong result, an unexpected exception.

Reported, not counted as failures:

complete_after_abort
    the abort stopped the long statement early but the driver reported
    success (MariaDB's ``SLEEP()`` returns 1 when ``KILL QUERY`` interrupts
    it): per the contract an operation whose driver confirms no cancel ends
    COMPLETE.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # python benchmarks/stress.py: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import contextlib
import datetime
import faulthandler
import functools
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
import threading
import time
import traceback
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import asynchdb
from asynchdb import DeadlineExceeded, OperationCanceled, Phase, Status
from benchmarks.backends import BY_NAME, main_thread_reached

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Where children write the thread stacks of a deadlock (override: ASYNCHDB_STRESS_DUMPS).
DUMPS = Path(tempfile.gettempdir()) / "asynchdb-stress-dumps"

#: Backends in the order they are reported.
ALL_BACKENDS = ("sqlite3", "fake", "pyodbc-postgresql", "pyodbc-mariadb", "pyodbc-sqlite",
                "psycopg", "duckdb", "psycopg2", "pg8000", "adbc-postgresql", "apsw",
                "pymysql", "mysqlclient", "mariadb", "clickhouse")
#: The counters that must be zero.
COUNTERS = ("crashes", "deadlocks", "lost_aborts", "stray_cancels", "broken_transactions",
            "leaked_threads", "errors")
#: Marks the child's result line on stdout.
RESULT_TAG = "STRESS-RESULT "
#: Exit statuses of a process killed by abort() / a segfault (shells report 128+n).
CRASH_CODES = (134, 139)
#: Scenario weights.
WEIGHTS = {"quick": 3, "abort": 6, "deadline": 3, "populate": 2, "close": 1, "drop": 1,
           "reentrant": 1, "taskcancel": 2, "sigint": 2, "sigint_between": 1}
#: The statement run right after a Ctrl-C caught between statements: long
#: enough that a cancel the watcher sent for it would stop it.
BETWEEN_SECONDS = 0.05
#: Seconds asynchdb threads get to retire once every connection is closed.
THREAD_GRACE = 5.0


# ----------------------------------------------------------------------
# backends (child side)
# ----------------------------------------------------------------------
@dataclass
class Target:
    """How the stress child reaches one backend."""

    name: str
    #: Open a wrapped connection.
    connect: Callable[[], asynchdb.Connection]
    #: One statement running about ``seconds`` (far longer than the watchdog).
    long_sql: Callable[[float], str]
    #: A statement returning one row ``(1,)`` at once.
    quick_sql: Callable[[], str]
    quick_rows: list[tuple[Any, ...]]
    #: ``rows_sql(n)``: ``n`` rows of one integer column counting up from ``first``.
    rows_sql: Callable[[int], str]
    first: int = 1
    #: The server's kind (``backends.Backend.server``), None in process.
    server: Optional[str] = None


def _fake_target() -> Target:
    from asynchdb import testing as fake

    names = iter(range(1, 1 << 62))
    return Target("fake", lambda: asynchdb.connect(fake),
                  lambda s: f"block stress{next(names)}", lambda: "rows 1", [(0,)],
                  rows_sql=lambda n: f"rows {n}", first=0)


def load_target(name: str) -> tuple[Optional[Target], Optional[str]]:
    """The backend's Target (from benchmarks/backends.py), or ``(None, why it is unavailable)``."""
    if name == "fake":
        return _fake_target(), None
    backend = BY_NAME.get(name)
    if backend is None:
        return None, f"unknown backend {name}"
    reason = backend.unavailable()
    if reason is not None:
        return None, str(reason)
    connect: Callable[[], asynchdb.Connection] = backend.connect
    if name == "sqlite3":
        # the scenarios call the connection synchronously from helper threads
        # (close, rollback, reads under a watchdog): sqlite3's same-thread rule,
        # which asynchdb keeps, must be off as it would be for the raw driver
        connect = functools.partial(backend.connect, check_same_thread=False)
    return Target(name, connect, lambda s: backend.long_sql(s, "stress"),
                  lambda: "SELECT 1", [(1,)], rows_sql=backend.rows_sql,
                  server=backend.server), None


# ----------------------------------------------------------------------
# the child: one chunk of operations on one backend
# ----------------------------------------------------------------------
@dataclass
class Tally:
    """What one chunk (or a whole backend) counted."""

    operations: int = 0
    crashes: int = 0
    deadlocks: int = 0
    lost_aborts: int = 0
    stray_cancels: int = 0
    broken_transactions: int = 0
    leaked_threads: int = 0
    errors: int = 0
    #: aborts that stopped the statement early, reported COMPLETE by the driver
    complete_after_abort: int = 0
    #: aborts of a running long statement that ended CANCELED
    aborts_confirmed: int = 0
    #: follow-up statements started right after an abort (stray cancel checks)
    followups: int = 0
    chunks: int = 0
    seconds: float = 0.0
    #: seconds from abort() to the end of the operation
    abort_latency: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    scenarios: dict[str, int] = field(default_factory=dict)

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if kind == "deadlocks" and _DUMPS is not None:
            _dump_threads(text)
        if len(self.samples) < 20:
            self.samples.append(f"{kind}: {text}")

    def merge(self, other: Tally) -> None:
        for name in (*COUNTERS, "operations", "aborts_confirmed", "complete_after_abort",
                     "followups", "chunks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        self.abort_latency.extend(other.abort_latency)
        self.samples.extend(other.samples[:max(0, 20 - len(self.samples))])
        for k, v in other.scenarios.items():
            self.scenarios[k] = self.scenarios.get(k, 0) + v


#: Child only: where a deadlock's thread stacks are written (``ASYNCHDB_STRESS_DUMPS``).
_DUMPS: Optional[Path] = None


def _dump_threads(why: str) -> None:
    """Write every thread's stack to a new file in ``_DUMPS`` (a deadlock's evidence)."""
    assert _DUMPS is not None
    _DUMPS.mkdir(parents=True, exist_ok=True)
    path = _DUMPS / f"deadlock-{os.getpid()}-{time.monotonic_ns()}.txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write(why + "\n\n")
        f.flush()
        faulthandler.dump_traceback(file=f, all_threads=True)


def _dump_holders(refs: tuple[weakref.ref[Any], ...]) -> None:
    """Write what still refers to released objects (a drop that did not abort)."""
    assert _DUMPS is not None
    _DUMPS.mkdir(parents=True, exist_ok=True)
    path = _DUMPS / f"holders-{os.getpid()}-{time.monotonic_ns()}.txt"
    here = sys._getframe()
    with open(path, "w", encoding="utf-8") as f:
        for ref in refs:
            obj = ref()
            f.write(f"== {obj!r}\n")
            if obj is None:
                continue
            seen = {id(here)}
            level = [obj]
            for depth in range(6):  # referrers, breadth first, a few levels up
                nxt: list[Any] = []
                for o in level:
                    for r in gc.get_referrers(o):
                        if id(r) in seen or r is level or r is nxt:
                            continue
                        seen.add(id(r))
                        f.write(f"{'  ' * depth}{type(r).__name__}: "
                                f"{' '.join(repr(r)[:300].split())}\n")
                        nxt.append(r)
                level = nxt[:40]
            del obj, level, nxt
        f.write(f"\ngc.garbage: {len(gc.garbage)}\n\nrunning frames:\n")
        f.flush()
        # faulthandler reads the stacks in C, holding the GIL throughout: a
        # walk of other threads' frames in Python (f_back) can crash 3.11
        faulthandler.dump_traceback(file=f, all_threads=True)


class _Stop:
    """A listener hearing the end of an operation (and when it came)."""

    def __init__(self) -> None:
        self.ended = threading.Event()
        self.status: Optional[Status] = None
        self.at = 0.0

    def on_stop(self, op: Any, status: Status) -> None:
        self.at = time.monotonic()
        self.status = status
        self.ended.set()


def _is_cancel(exc: Optional[BaseException]) -> bool:
    """Whether an error looks like a driver's report of a canceled statement."""
    if exc is None:
        return False
    if isinstance(exc, OperationCanceled):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("cancel", "interrupt", "57014", "hy008", "hy018",
                                          "1317"))


def _spin(n: int) -> int:
    """Python code that runs for a while, to be interrupted in (caller thread)."""
    total = 0
    for i in range(n):
        total += i
    return total


def _pause(seconds: float) -> None:
    if seconds > 0:
        threading.Event().wait(seconds)


def _in_thread(fn: Callable[[], Any], bound: float) -> tuple[bool, Optional[BaseException]]:
    """Run ``fn`` on a helper thread; (returned within ``bound``, its exception)."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=run, name="stress-helper", daemon=True)
    t.start()
    t.join(bound)
    return not t.is_alive(), (box[0] if box else None)


def parse_weights(text: str) -> dict[str, int]:
    """``WEIGHTS``, or a mix like ``drop=5,abort=1`` (scenarios not named do not run)."""
    if not text.strip():
        return dict(WEIGHTS)
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in WEIGHTS:
            raise SystemExit(f"unknown scenario {name!r} (known: {', '.join(WEIGHTS)})")
        out[name] = int(weight or 1)
    return out


class Slot:
    """One wrapped connection and its cursors."""

    def __init__(self, target: Target, tally: Tally, watchdog: float) -> None:
        self.target = target
        self.tally = tally
        self.watchdog = watchdog
        self.conn: Optional[asynchdb.Connection] = None
        self.cursors: list[asynchdb.Cursor] = []
        self.reopen()

    def reopen(self) -> None:
        self.close()
        self.conn = self.target.connect()
        self.cursors = [self.conn.cursor(), self.conn.cursor()]

    def try_reopen(self) -> None:
        """Reopen after an error was counted; a failure here is the next scenario's to see."""
        with contextlib.suppress(Exception):
            self.reopen()

    def close(self) -> None:
        conn, self.conn, self.cursors = self.conn, None, []
        if conn is None:
            return
        returned, exc = _in_thread(conn.close, self.watchdog)
        if not returned:
            self.tally.note("deadlocks", "Connection.close() did not return")
        elif exc is not None:
            self.tally.note("errors", f"close raised {exc!r}")

    def cursor(self, i: int) -> asynchdb.Cursor:
        """Cursor 0 or 1 (two distinct cursors, replaced when one was given up)."""
        if self.conn is None:
            self.reopen()
        assert self.conn is not None
        while len(self.cursors) < 2:
            self.cursors.append(self.conn.cursor())
        return self.cursors[i % 2]


class Child:
    """Runs one chunk of random scenarios on one backend."""

    def __init__(self, target: Target, ops: int, seed: int, watchdog: float,
                 long_seconds: float) -> None:
        self.target = target
        self.ops = ops
        self.rng = random.Random(seed)
        self.watchdog = watchdog
        self.long = long_seconds
        self.tally = Tally(chunks=1)
        self.weights = parse_weights(os.environ.get("ASYNCHDB_STRESS_WEIGHTS", ""))
        self.slots: list[Slot] = []

    # -- helpers -------------------------------------------------------------
    def _await_end(self, op: asynchdb.Operation[Any], what: str,
                   started: float) -> Optional[Status]:
        """The status once ended; None (and counted) when not ended within the watchdog."""
        if op.wait_for_completion(self.watchdog):
            return op.get_status()
        self._late(op.wait_for_completion, op.get_status, what, started)
        return None

    def _late(self, wait: Callable[[float], bool], status: Callable[[], Optional[Status]],
              what: str, started: float) -> None:
        # not ended within the watchdog: a lost cancel ends COMPLETE at the
        # statement's natural end; anything else is a deadlock
        rest = started + self.long + self.watchdog - time.monotonic()
        if rest > 0 and wait(rest):
            st = status()
            if st is not None and st.phase == Phase.COMPLETE and st.error is None:
                self.tally.note("lost_aborts", f"{what}: ran to its natural end after its "
                                               f"abort ({time.monotonic() - started:.1f} s)")
                return
        self.tally.note("deadlocks", f"{what}: not ended {self.watchdog} s after its abort "
                                     f"(status {status()})")

    def _judge_aborted(self, st: Optional[Status], what: str, t0: Optional[float],
                       stop: Optional[_Stop] = None, started: Optional[float] = None,
                       slot: Optional[Slot] = None) -> None:
        """An abort was accepted while the long statement ran (or was about to)."""
        if st is None:
            return
        if st.phase == Phase.CANCELED:
            self.tally.aborts_confirmed += 1
            if t0 is not None:
                end = stop.at if stop is not None and stop.ended.wait(self.watchdog) \
                    else time.monotonic()
                self.tally.abort_latency.append(max(0.0, end - t0))
        elif st.error is None:
            took = "" if started is None else f" {time.monotonic() - started:.3f} s after its start"
            if started is not None and time.monotonic() - started >= self.long * 0.9:
                self.tally.note("lost_aborts", f"{what}: ran to its natural end{took}")
            else:
                # the statement stopped early, yet the driver reported success
                self.tally.note("complete_after_abort", f"{what}: COMPLETE{took}")
        elif _is_cancel(st.error):
            self.tally.note("errors", f"{what}: cancel reported as a failure: {st.error!r}")
        else:
            self._failed(what, st.error, slot)

    def _failed(self, what: str, exc: BaseException, slot: Optional[Slot]) -> None:
        """An unexpected error; an aborted transaction is counted apart and rolled back."""
        text = str(exc)
        if "25P02" in text or "current transaction is aborted" in text:
            self.tally.note("broken_transactions", f"{what}: {exc!r}")
            if slot is not None and slot.conn is not None:
                _in_thread(slot.conn.rollback, self.watchdog)
        else:
            self.tally.note("errors", f"{what}: failed: {exc!r}")

    def _check_quick(self, cur: asynchdb.Cursor, what: str, slot: Optional[Slot] = None) -> None:
        op = cur.execute(self.target.quick_sql(), asynch=True)
        if not op.wait_for_completion(self.watchdog):
            self.tally.note("deadlocks", f"{what}: a quick statement did not end")
            op.abort()
            return
        st = op.get_status()
        if st.phase == Phase.CANCELED or _is_cancel(st.error):
            self.tally.note("stray_cancels", f"{what}: canceled: {st.error!r}")
            return
        if st.error is not None:
            self._failed(what, st.error, slot)
            return
        rows = [tuple(r) for r in cur.fetchall()]
        if rows != self.target.quick_rows:
            self.tally.note("errors", f"{what}: wrong rows {rows!r}")

    # -- scenarios -----------------------------------------------------------
    def quick(self, slot: Slot) -> None:
        self._check_quick(slot.cursor(self.rng.randrange(2)), "quick", slot)

    def reentrant(self, slot: Slot) -> None:
        """A listener that uses the connection from inside the call it listens to.

        It runs on the thread that owns the connection (the caller of a
        synchronous call, or the worker of an asynchronous one), so its call
        goes straight in; a wrapper that queued it behind the call it is
        inside would deadlock.
        """
        cur, other = slot.cursor(0), slot.cursor(1)
        quick, expected = self.target.quick_sql(), self.target.quick_rows
        inner: list[Any] = []

        class UsesConnection:
            def on_progress(self, op: Any, status: Status) -> None:
                if status.phase == Phase.INITIALIZATION and not inner:
                    other.execute(quick)
                    inner.append([tuple(r) for r in other.fetchall()])

        asynch = self.rng.random() < 0.5
        outer: list[Any] = []

        def run() -> None:
            if asynch:
                op = cur.execute(quick, asynch=True, listener=UsesConnection())
                if not op.wait_for_completion(self.watchdog):
                    return
                op.result()
            else:
                cur.execute(quick, listener=UsesConnection())
            outer.append([tuple(r) for r in cur.fetchall()])

        mode = "asynch" if asynch else "sync"
        returned, exc = _in_thread(run, self.watchdog)
        if not returned or (asynch and not outer and exc is None):
            self.tally.note("deadlocks", f"reentrant ({mode}): a listener's call on its own "
                                         "connection did not return")
        elif exc is not None:
            self._failed(f"reentrant ({mode})", exc, slot)
        elif inner != [expected] or outer != [expected]:
            self.tally.note("errors", f"reentrant ({mode}): rows {outer!r} / {inner!r}")

    def abort(self, slot: Slot) -> None:
        cur = slot.cursor(0)
        stop = _Stop()
        started = time.monotonic()
        op = cur.execute(self.target.long_sql(self.long), asynch=True, listener=stop)
        delay = self.rng.choice([0.0, 0.0, 0.001, 0.005, 0.02, self.rng.uniform(0, 0.05)])
        elsewhere = self.rng.random() < 0.3
        follow = self.rng.random() < 0.5
        t0 = time.monotonic() + delay
        if elsewhere:
            def later() -> None:
                nonlocal t0
                _pause(delay)
                t0 = time.monotonic()
                op.abort()

            aborter = threading.Thread(target=later, name="stress-aborter", daemon=True)
            aborter.start()
            aborter.join(self.watchdog)
            if aborter.is_alive():
                self.tally.note("deadlocks", "abort() from another thread did not return")
                return
        else:
            _pause(delay)
            t0 = time.monotonic()
            op.abort()
        if follow:
            # a statement started after the abort must never be canceled by it
            self.tally.followups += 1
            self._check_quick(slot.cursor(1), "follow-up", slot)
        self._judge_aborted(self._await_end(op, "abort", started), "abort", t0, stop, started,
                            slot)

    def deadline(self, slot: Slot) -> None:
        cur = slot.cursor(self.rng.randrange(2))
        cancel_after = self.rng.choice([0.0, 0.001, self.rng.uniform(0, 0.05)])
        started = time.monotonic()
        if self.rng.random() < 0.5:
            op = cur.execute(self.target.long_sql(self.long), asynch=True,
                             cancel_after=cancel_after)
            st = self._await_end(op, "deadline", started)
            if st is None:
                return
            if st.phase == Phase.CANCELED and not isinstance(st.error, DeadlineExceeded):
                self.tally.note("errors", f"deadline: CANCELED with {st.error!r}")
            self._judge_aborted(st, "deadline", None, None, started, slot)
            return
        box: list[BaseException] = []

        def sync() -> None:
            try:
                cur.execute(self.target.long_sql(self.long), cancel_after=cancel_after)
            except BaseException as exc:
                box.append(exc)

        returned, _ = _in_thread(sync, self.watchdog + cancel_after)
        if not returned:
            slot.cursors.remove(cur)
            done = threading.Event()
            self._late(lambda t: done.wait(t) or bool(box), lambda: None,
                       "a synchronous call with a deadline", started)
            return
        took = time.monotonic() - started
        if not box:
            if took >= self.long * 0.9:
                self.tally.note("lost_aborts", "deadline: a synchronous call ran to its end")
            else:
                self.tally.note("complete_after_abort",
                                f"deadline: a synchronous call returned after {took:.3f} s")
        elif not isinstance(box[0], DeadlineExceeded):
            self._failed("deadline (synchronous)", box[0], slot)
        else:
            self.tally.aborts_confirmed += 1

    def populate(self, slot: Slot) -> None:
        """Background population, read in part, then aborted: rows stay in order."""
        cur = slot.cursor(1)
        cur.buffer_rows = self.rng.choice([10, 100, 1000])
        n = self.rng.choice([10, 1000, 20_000])
        want = self.rng.randrange(0, n + 1)
        first = self.target.first
        op = cur.execute(self.target.rows_sql(n), asynch=asynchdb.Asynch.SEQUENTIAL_POPULATION)
        got: list[int] = []

        def read(limit: int) -> None:
            # wait (bounded) for the end of INITIALIZATION, then read up to limit rows
            deadline = time.monotonic() + self.watchdog
            while op.get_status().phase == Phase.INITIALIZATION:
                if op.wait_for_completion(0.002) or time.monotonic() > deadline:
                    break
            while len(got) < limit:
                rows = cur.fetchmany(min(500, limit - len(got)))
                if not rows:
                    break
                got.extend(int(r[0]) for r in rows)

        returned, exc = _in_thread(lambda: read(want), self.watchdog)
        if not returned:
            self.tally.note("deadlocks", "populate: a read did not return")
            slot.cursors.remove(cur)
            op.abort()
            return
        if exc is not None:
            self.tally.note("errors", f"populate: read raised {exc!r}")
            return
        op.abort()
        st = self._await_end(op, "populate", time.monotonic() - self.watchdog)
        if st is None:
            return
        if st.phase == Phase.COMPLETE and st.error is not None:
            self._failed("populate", st.error, slot)
            return
        returned, exc = _in_thread(lambda: read(n), self.watchdog)
        if not returned:
            self.tally.note("deadlocks", "populate: reading the rest did not return")
            slot.cursors.remove(cur)
            return
        if exc is not None and not isinstance(exc, OperationCanceled):
            self.tally.note("errors", f"populate: reading the rest raised {exc!r}")
            return
        if got != list(range(first, first + len(got))):
            self.tally.note("errors", f"populate: rows out of order after {len(got)} rows")
        elif st.phase == Phase.COMPLETE and len(got) != n:
            self.tally.note("errors", f"populate: COMPLETE with {len(got)} of {n} rows")
        if st.phase == Phase.CANCELED:
            self.tally.aborts_confirmed += 1

    def close(self, slot: Slot) -> None:
        started = time.monotonic()
        op = slot.cursor(0).execute(self.target.long_sql(self.long), asynch=True)
        _pause(self.rng.choice([0.0, 0.005, 0.02]))
        t0 = time.monotonic()
        slot.close()
        self._judge_aborted(self._await_end(op, "close", started), "close", t0, None, started)
        slot.reopen()

    def drop(self, slot: Slot) -> None:
        stop = _Stop()
        cur = slot.cursor(0)
        started = time.monotonic()
        op: Optional[asynchdb.Operation[Any]] = cur.execute(
            self.target.long_sql(self.long), asynch=True, listener=stop)
        _pause(self.rng.choice([0.0, 0.005, 0.02]))
        slot.cursors.remove(cur)
        t0 = time.monotonic()
        kept = (weakref.ref(cur), weakref.ref(op))
        del cur, op
        gc.collect()
        # A previous error of this cursor (its traceback holds frames whose `self` is
        # the cursor) may be garbage still referenced for a moment by a worker (while
        # it repairs the connection after that job): the collector reclaims it on a
        # later pass, as it would in a running program.  Give it one every second.
        deadline = time.monotonic() + self.watchdog
        while not stop.ended.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                if _DUMPS is not None:
                    _dump_holders(kept)
                self._late(stop.ended.wait, lambda: stop.status, "drop", started)
                return
            gc.collect()
        self._judge_aborted(stop.status, "drop", t0, stop, started, slot)

    def taskcancel(self, slot: Slot) -> None:
        """An asyncio task awaiting the long statement is cancelled: the operation aborts.

        Half the time the statement starts on the loop's thread (an adapter
        with steps, psycopg, then steps it there instead of a worker), and
        half of those the loop's thread first blocks in ``wait_for_completion``
        for the delay, which hands the statement to a worker before the cancel.
        """
        import asyncio

        cur = slot.cursor(0)
        started = time.monotonic()
        on_loop = self.rng.random() < 0.5
        block = on_loop and self.rng.random() < 0.5
        op = None if on_loop else cur.execute(self.target.long_sql(self.long), asynch=True)
        delay = self.rng.choice([0.0, 0.0, 0.001, 0.005, 0.02])
        t0 = started

        async def main() -> Optional[BaseException]:
            nonlocal t0, op
            if op is None:
                op = cur.execute(self.target.long_sql(self.long), asynch=True)
            task = asyncio.ensure_future(op)
            if block:
                # the task awaits first (a task cancelled before it ever ran
                # never awaited the operation, so it cannot abort it)
                await asyncio.sleep(0)
                op.wait_for_completion(delay)  # the loop's thread blocks meanwhile
            else:
                await asyncio.sleep(delay)
            t0 = time.monotonic()
            task.cancel()
            try:
                await task
            except BaseException as exc:
                return exc
            return None

        loop = asyncio.new_event_loop()
        try:
            got = loop.run_until_complete(asyncio.wait_for(main(), self.watchdog))
        except (asyncio.TimeoutError, TimeoutError):
            self.tally.note("deadlocks", "taskcancel: the cancelled task did not end")
            slot.cursors.remove(cur)
            return
        finally:
            loop.close()
        assert op is not None
        if not isinstance(got, asyncio.CancelledError):
            self.tally.note("errors", f"taskcancel: the task ended with {got!r}")
        elif not op.done():
            self.tally.note("errors", "taskcancel: the task ended before its operation did")
        if self.rng.random() < 0.5:
            self.tally.followups += 1
            self._check_quick(slot.cursor(1), "taskcancel follow-up", slot)
        self._judge_aborted(self._await_end(op, "taskcancel", started), "taskcancel", t0,
                            None, started, slot)

    def sigint(self, slot: Slot) -> None:
        """Ctrl-C during a plain synchronous call on the main thread cancels it."""
        import signal

        if self.target.name == "fake" or threading.current_thread() is not \
                threading.main_thread():
            self.quick(slot)
            return
        cur = slot.cursor(0)
        delay = self.rng.choice([0.0, 0.0, 0.001, 0.005, 0.02])
        sent: list[float] = []
        ch = cur._ch  # what the main thread's inline call registers (Channel.inline)
        hopped = ch.counters["hopped"]

        def send() -> None:
            # helper thread: wait (bounded) until the main thread is inside the
            # driver's execute, or waits for it on the worker
            deadline = time.monotonic() + self.watchdog
            while time.monotonic() < deadline:
                if main_thread_reached(ch, "execute", hopped):
                    _pause(delay)
                    sent.append(time.monotonic())
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                _pause(0.001)

        helper = threading.Thread(target=send, name="stress-sigint", daemon=True)
        started = time.monotonic()
        helper.start()
        outcome: Optional[BaseException] = None
        try:
            cur.execute(self.target.long_sql(self.long))
            cur.fetchall()
        except KeyboardInterrupt as exc:
            outcome = exc
        except Exception as exc:
            outcome = exc
        took = time.monotonic() - started
        try:
            helper.join(self.watchdog)
        except KeyboardInterrupt:
            # the signal was handled only after the call had ended: say how it
            # ended, instead of letting the KeyboardInterrupt end the whole chunk
            # (seen once in 100,000 pyodbc-postgresql operations, 2026-12-06)
            at = f"{sent[0] - started:.3f} s" if sent else "?"
            self.tally.note("errors", f"sigint: SIGINT (sent at {at}) was handled after the "
                                      f"call ended at {took:.3f} s with {outcome!r}")
            slot.try_reopen()
            return
        if not sent:
            # say how the call ended: an error at once (a stray abort, a
            # lock) and a call that never reached the driver read the same
            context = getattr(outcome, "__context__", None)
            self.tally.note("errors", f"sigint: the call was never seen inside the driver; it "
                                      f"ended after {took:.3f} s with {outcome!r} "
                                      f"(context {context!r})")
            slot.try_reopen()
            return
        if isinstance(outcome, KeyboardInterrupt):
            self.tally.aborts_confirmed += 1
            self.tally.abort_latency.append(max(0.0, time.monotonic() - sent[0]))
        elif outcome is None:
            if took >= self.long * 0.9:
                self.tally.note("lost_aborts", f"sigint: ran to its natural end ({took:.1f} s)")
            else:
                self.tally.note("errors", f"sigint: returned after {took:.3f} s with no "
                                          "KeyboardInterrupt")
        else:
            self._failed("sigint", outcome, slot)
            return
        self.tally.followups += 1
        self._check_quick(slot.cursor(1), "sigint follow-up", slot)

    def sigint_between(self, slot: Slot) -> None:
        """Ctrl-C in the program's own code, caught, then a plain statement: it runs whole.

        The main thread sends itself SIGINT while it runs Python between two
        statements; Python's handler raises ``KeyboardInterrupt`` there, the
        program catches it and starts a 50 ms statement at once, before the
        watcher (waiting for the GIL) has read the signal.  That statement
        is not the interrupted one: a cancel, or a second
        ``KeyboardInterrupt``, counts as a stray cancel.
        """
        import signal

        if self.target.name == "fake" or threading.current_thread() is not \
                threading.main_thread():
            self.quick(slot)
            return
        cur = slot.cursor(self.rng.randrange(2))
        try:
            os.kill(os.getpid(), signal.SIGINT)
            _spin(self.rng.randrange(1, 20_000))  # the handler raises in here
        except KeyboardInterrupt:
            pass
        else:
            self.tally.note("errors", "sigint_between: no KeyboardInterrupt")
            return
        started = time.monotonic()
        try:
            cur.execute(self.target.long_sql(BETWEEN_SECONDS))
            cur.fetchall()
        except KeyboardInterrupt:
            self.tally.note("stray_cancels", "sigint_between: the next statement raised "
                                             "KeyboardInterrupt")
            slot.try_reopen()
            return
        except Exception as exc:
            if _is_cancel(exc):
                self.tally.note("stray_cancels", f"sigint_between: canceled: {exc!r}")
            else:
                self._failed("sigint_between", exc, slot)
            return
        took = time.monotonic() - started
        if self.target.server == "mariadb" and took < BETWEEN_SECONDS * 0.6:
            # a KILL QUERY makes SLEEP() return early with no error
            self.tally.note("stray_cancels", f"sigint_between: SLEEP ended after {took:.3f} s")

    # -- the run -------------------------------------------------------------
    def run(self) -> Tally:
        t_start = time.monotonic()
        names = list(self.weights)
        weights = [self.weights[n] for n in names]
        try:
            self.slots = [Slot(self.target, self.tally, self.watchdog) for _ in range(2)]
            for _ in range(self.ops):
                slot = self.rng.choice(self.slots)
                scenario = self.rng.choices(names, weights)[0]
                self.tally.scenarios[scenario] = self.tally.scenarios.get(scenario, 0) + 1
                try:
                    getattr(self, scenario)(slot)
                except Exception as exc:
                    self.tally.note("errors", f"{scenario}: {exc!r}")
                    slot.try_reopen()
                self.tally.operations += 1
        finally:
            for slot in self.slots:
                slot.close()
            self.slots = []
        gc.collect()
        deadline = time.monotonic() + THREAD_GRACE
        left = _asynchdb_threads()
        while left and time.monotonic() < deadline:
            left[0].join(0.05)
            left = _asynchdb_threads()
        if left:
            self.tally.note("leaked_threads", ", ".join(t.name for t in left))
            self.tally.leaked_threads = len(left)
        self.tally.seconds = time.monotonic() - t_start
        return self.tally


def _asynchdb_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asynchdb-") and t.is_alive()]


def child_main(args: argparse.Namespace) -> int:
    global _DUMPS
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background of a shell without job control (`cmd &`
        # in a script), which hands SIGINT down ignored: the sigint scenario
        # then waited out every long statement (20 s each), and a 5,000
        # operation chunk ran for hours.  A terminal's default, as pytest's
        # plugin restores it for the tests.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    dumps = os.environ.get("ASYNCHDB_STRESS_DUMPS")
    _DUMPS = Path(dumps) if dumps else None
    target, reason = load_target(args.child)
    if target is None:
        print(RESULT_TAG + json.dumps({"unavailable": reason}), flush=True)
        return 0
    tally = Child(target, args.ops, args.seed, args.watchdog, args.long).run()
    print(RESULT_TAG + json.dumps(asdict(tally)), flush=True)
    return 0


# ----------------------------------------------------------------------
# the parent: subprocesses per backend, then the report
# ----------------------------------------------------------------------
def run_chunk(backend: str, ops: int, seed: int, watchdog: float, long_seconds: float,
              limit: float) -> tuple[Optional[Tally], Optional[str]]:
    """One subprocess; (its tally, or None with why the backend is unavailable)."""
    cmd = [sys.executable, "-m", "benchmarks.stress", "--child", backend, "--ops", str(ops),
           "--seed", str(seed), "--watchdog", str(watchdog), "--long", str(long_seconds)]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    env.setdefault("ASYNCHDB_STRESS_DUMPS", str(DUMPS))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                              env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        tally = Tally(chunks=1, seconds=time.monotonic() - t0)
        tail = (exc.stderr or b"")[-400:]
        tally.note("deadlocks", f"the subprocess was killed after {limit:.0f} s: {tail!r}")
        return tally, None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            data = json.loads(line[len(RESULT_TAG):])
            if "unavailable" in data:
                return None, str(data["unavailable"])
            tally = Tally(**data)
            if proc.returncode != 0:
                tally.note("errors", f"exit status {proc.returncode}: {proc.stderr[-400:]}")
            return tally, None
    tally = Tally(chunks=1, seconds=time.monotonic() - t0)
    code = proc.returncode
    kind = "crashes" if code < 0 or code in CRASH_CODES else "errors"
    err = proc.stderr
    at = err.find("Fatal Python error")
    # the C library's message (double free...) precedes it; the crashing thread follows
    detail = err[max(0, at - 200):at + 1500] if at >= 0 else err[-1500:]
    tally.note(kind, f"the subprocess died (status {code}): {detail}")
    return tally, None


def run_backend(backend: str, ops: int, chunk: int, seed: int, watchdog: float,
                long_seconds: float) -> dict[str, Any]:
    total = Tally()
    done = 0
    index = 0
    while done < ops:
        n = min(chunk, ops - done)
        # a chunk normally takes well under 0.1 s an operation; a hang is killed
        limit = 60.0 + n * 0.5
        tally, reason = run_chunk(backend, n, seed * 1000 + index, watchdog, long_seconds, limit)
        if tally is None:
            return {"backend": backend, "unavailable": reason}
        total.merge(tally)
        done += n
        index += 1
    return {"backend": backend, **_summary(total)}


def _summary(t: Tally) -> dict[str, Any]:
    lat = sorted(t.abort_latency)
    out: dict[str, Any] = {name: getattr(t, name) for name in ("operations", *COUNTERS)}
    out.update({
        "aborts_confirmed": t.aborts_confirmed,
        "complete_after_abort": t.complete_after_abort,
        "followups": t.followups,
        "chunks": t.chunks,
        "seconds": round(t.seconds, 2),
        "abort_ms_median": round(statistics.median(lat) * 1000, 2) if lat else None,
        "abort_ms_p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2)
        if lat else None,
        "scenarios": t.scenarios,
        "samples": t.samples,
    })
    return out


def render_markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Stress run: {results['mode']}, {results['ops_per_backend']} operations per backend, "
        f"seed {results['seed']}, watchdog {results['watchdog']} s, long statements "
        f"{results['long_seconds']} s ({results['date']}, {results['machine']}).",
        "",
        "| backend | operations | crashes | deadlocks | lost aborts | stray cancels "
        "| broken transactions | leaked threads | other errors | aborts confirmed "
        "| COMPLETE after abort | abort→end median / p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["backends"]:
        if "unavailable" in r:
            lines.append(f"| {r['backend']} | unavailable: {r['unavailable']} "
                         "| | | | | | | | | | |")
            continue
        lat = (f"{r['abort_ms_median']} / {r['abort_ms_p99']}"
               if r["abort_ms_median"] is not None else "-")
        lines.append(
            f"| {r['backend']} | {r['operations']} | {r['crashes']} | {r['deadlocks']} "
            f"| {r['lost_aborts']} | {r['stray_cancels']} | {r['broken_transactions']} "
            f"| {r['leaked_threads']} | {r['errors']} | {r['aborts_confirmed']} "
            f"| {r['complete_after_abort']} | {lat} |")
    samples = [(r["backend"], s) for r in results["backends"] for s in r.get("samples", [])]
    problems = [(b, s) for b, s in samples if s.split(":", 1)[0] in COUNTERS]
    reported = [(b, s) for b, s in samples if s.split(":", 1)[0] not in COUNTERS]
    for title, chosen in (("First problems seen (up to 5 a backend):", problems),
                          ("Reported, not failures (up to 5 a backend):", reported)):
        if not chosen:
            continue
        lines += ["", title, ""]
        seen: dict[str, int] = {}
        for b, text in chosen:
            seen[b] = seen.get(b, 0) + 1
            if seen[b] <= 5:
                flat = " ".join(text.split())[:400].replace("`", "'")
                lines.append(f"- {b}: `{flat}`")
    return "\n".join(lines) + "\n"


def _machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, " \
           f"Python {platform.python_version()}"


def parent_main(args: argparse.Namespace) -> int:
    names = args.backends.split(",") if args.backends else list(ALL_BACKENDS)
    mode = "short" if args.short else "long"
    ops = args.ops if args.ops is not None else (300 if args.short else 100_000)
    chunk = args.chunk if args.chunk is not None else (ops if args.short else 5_000)
    results: dict[str, Any] = {
        "mode": mode, "ops_per_backend": ops, "chunk": chunk, "seed": args.seed,
        "watchdog": args.watchdog, "long_seconds": args.long,
        "date": datetime.date.today().isoformat(), "machine": _machine(),
        "backends": [],
    }
    by_name: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def work(name: str) -> None:
        r = run_backend(name, ops, chunk, args.seed, args.watchdog, args.long)
        with lock:
            by_name[name] = r
        print(_line(r), flush=True)

    # two backends at a time: the machine has two CPUs and the servers are shared
    pending = list(names)
    while pending:
        batch, pending = pending[:args.parallel], pending[args.parallel:]
        threads = [threading.Thread(target=work, args=(n,)) for n in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    results["backends"] = [by_name[n] for n in names]
    md = render_markdown(results)
    out = Path(args.out) if args.out else (None if args.short else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "stress.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        (out / "stress.md").write_text(md, encoding="utf-8")
    if args.json:
        print(RESULT_TAG + json.dumps(results), flush=True)
    else:
        print(md)
    bad = sum(r.get(c, 0) for r in results["backends"] for c in COUNTERS)
    return 1 if bad else 0


def _line(r: dict[str, Any]) -> str:
    if "unavailable" in r:
        return f"{r['backend']}: unavailable ({r['unavailable']})"
    counts = ", ".join(f"{c}={r[c]}" for c in COUNTERS)
    where = f" (thread stacks in {DUMPS})" if r["deadlocks"] else ""
    return f"{r['backend']}: {r['operations']} operations in {r['seconds']} s; {counts}{where}"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true",
                   help="the CI run: 300 operations per backend, nothing written")
    p.add_argument("--ops", type=int, help="operations per backend (default 100000)")
    p.add_argument("--chunk", type=int, help="operations per subprocess (default 5000)")
    p.add_argument("--backends", help=f"comma list (default: {','.join(ALL_BACKENDS)})")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--watchdog", type=float,
                   help="seconds an aborted operation may take to end (default 10; 5 short)")
    p.add_argument("--long", type=float,
                   help="seconds the long statement runs if nothing stops it "
                        "(default 60; 20 short)")
    p.add_argument("--parallel", type=int, default=2, help="backends run at once (default 2)")
    p.add_argument("--out", help="directory for stress.json and stress.md "
                                 "(default benchmarks/results; --short writes nothing)")
    p.add_argument("--weights", help="scenario mix, e.g. drop=5,abort=1 (default: "
                   + ",".join(f"{k}={v}" for k, v in WEIGHTS.items()) + ")")
    p.add_argument("--json", action="store_true", help="print the results as one JSON line")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.watchdog is None:
        args.watchdog = 5.0 if args.short else 10.0
    if args.long is None:
        args.long = 20.0 if args.short else 60.0
    if args.weights:
        parse_weights(args.weights)  # a bad mix fails here, before any subprocess
        os.environ["ASYNCHDB_STRESS_WEIGHTS"] = args.weights
    if args.child:
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # pragma: no cover - by hand
        traceback.print_exc()
        raise SystemExit(130) from None
