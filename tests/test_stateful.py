"""Stateful (hypothesis) tests of Operation, Cursor and Connection on the fake driver.

A rule-based state machine opens fake connections and runs random interleavings
of asynchronous executes (blocking, cancel-deaf, instant, failing, row-returning
with background population), aborts, bounded waits, status polls, gate
releases, cursor and connection closes, advise/unadvise, dropped references
followed by ``gc.collect()``, and the same actions from helper threads.

What must hold whatever the interleaving:

* the phase seen by any one observer only moves forward; ``0 <= progress <=
  progress_max``; at COMPLETE ``progress == progress_max``;
* every listener gets exactly one ``on_stop``, last, carrying the final phase;
* ``wait_for_completion`` returns True once the operation ended;
* an abort accepted while a cancellable statement runs ends it CANCELED (never
  lost); a cancel-deaf statement that ran is reported COMPLETE (never a false
  cancel); no statement is canceled unless its own operation was aborted;
* nothing deadlocks: every wait is bounded, and once every gate is released
  every operation, helper thread and asynchdb thread ends within a bound.

The fake driver's gates make each run deterministic enough: assertions only
state what must be true whatever the thread timing.
"""

from __future__ import annotations

import gc
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import plugin
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import Phase as HPhase
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from plugin import asynchdb_threads, wait_no_asynchdb_threads, wait_until

import asynchdb
from asynchdb import Asynch, OperationCanceled, Phase, Status, ZombieError
from asynchdb import testing as fake

#: Cursors opened with each connection.
CURSORS = 4
#: Draws that pick one of the model's objects (modulo its length): the same
#: draws whatever the thread timing did to the model.
IDX = st.integers(0, 1 << 16)
#: Hypothesis replays runs: preconditions must not depend on thread timing.
HAS_OPS = precondition(lambda self: self.attempts > 0)
HAS_CURSOR = precondition(lambda self: bool(self._live_cursors()))


def pick(items: list[Any], i: int) -> Any:
    return items[i % len(items)] if items else None


#: Seconds a helper thread gets before it is parked as "legitimately blocked".
JOIN = 0.3
#: Seconds anything gets to end once every gate is released (the watchdog).
BOUND = 10.0
#: Seconds within which an aborted running cancellable statement must be CANCELED.
CANCEL_BOUND = 5.0

_CI = bool(os.environ.get("CI") or os.environ.get("ASYNCHDB_REQUIRE_BACKENDS"))


class Recorder(plugin.Recorder):
    """The shared recording listener, told whether it was advised after the start."""

    advised_late = False


@dataclass(eq=False)
class ConnRec:
    raw: fake.FakeConnection
    conn: asynchdb.Connection
    can_cancel: bool
    closed: bool = False
    released: set[str] = field(default_factory=set)


@dataclass(eq=False)
class OpRec:
    n: int
    kind: str                      # block, hang, noop, fail, rows
    sql: str
    gate: Optional[str]
    c: ConnRec
    cursor: Optional[asynchdb.Cursor]
    op: Optional[asynchdb.Operation[Any]]
    job: Any                       # the internal Job: survives a dropped handle
    cancel_after: Optional[float]
    populate: bool
    nrows: int
    listeners: dict[int, Recorder] = field(default_factory=dict)
    unadvised: list[Recorder] = field(default_factory=list)
    vetoable: bool = False
    #: something may have aborted it (abort, deadline, close, drop)
    abort_asked: bool = False
    #: an abort was applied while the statement surely ran in a cancellable driver
    must_cancel: bool = False
    seen: list[Status] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    read: list[Any] = field(default_factory=list)
    #: a later synchronous call reused the cursor: its rows are not this op's
    reused: bool = False
    reader: Optional[threading.Thread] = None
    #: done callbacks of op.future, once the future was asked for
    fut_calls: Optional[list[Any]] = None

    def expected_rows(self) -> list[tuple[int]]:
        return [(i,) for i in range(self.nrows)]


def check_status(st_: Status) -> None:
    assert isinstance(st_.phase, Phase)
    assert 0 <= st_.progress <= st_.progress_max, st_
    if st_.phase == Phase.COMPLETE:
        assert st_.progress == st_.progress_max, st_
    assert st_.done == (st_.phase >= Phase.COMPLETE)
    if st_.phase == Phase.CANCELED:
        assert isinstance(st_.error, OperationCanceled), st_


def check_sequence(seq: list[Status]) -> None:
    for a, b in zip(seq, seq[1:]):  # itertools.pairwise from 3.10
        assert b.phase >= a.phase, f"phase moved backwards: {a} then {b}"
        if a.done:
            assert b.phase == a.phase


class AsynchMachine(RuleBasedStateMachine):
    """Random interleavings against fake connections (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.conns: list[ConnRec] = []
        self.cursors: list[tuple[ConnRec, asynchdb.Cursor]] = []
        self.recs: list[OpRec] = []
        self.helpers: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.names = itertools.count(1)
        self.attempts = 0

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------
    def _in_thread(self, name: str, fn: Callable[[], None]) -> threading.Thread:
        """Run ``fn`` on a helper thread; park it if it blocks (joined at teardown)."""

        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # handed to the main thread
                self.errors.append(exc)

        t = threading.Thread(target=run, name=f"stateful-{name}", daemon=True)
        t.start()
        t.join(JOIN)
        if t.is_alive():
            self.helpers.append(t)
        self._raise_errors()
        return t

    def _raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]

    def _live_cursors(self) -> list[tuple[ConnRec, asynchdb.Cursor]]:
        return [(c, cur) for c, cur in self.cursors if not c.closed]

    def _ops(self) -> list[OpRec]:
        return [r for r in self.recs if r.op is not None]

    def _open(self, can_cancel: bool, asynch_connect: bool) -> None:
        if asynch_connect:
            op = asynchdb.connect(fake, can_cancel=can_cancel, asynch=True)
            assert op.wait_for_completion(BOUND)
            conn = op.result(0)
            check_status(op.get_status())
            assert op.get_status().phase == Phase.COMPLETE
        else:
            conn = asynchdb.wrap(fake.connect(can_cancel=can_cancel))
        raw = conn.driver_connection
        assert isinstance(raw, fake.FakeConnection)
        c = ConnRec(raw, conn, can_cancel)
        self.conns.append(c)
        # cursors are made up front, while the connection is idle, so that which
        # cursors exist never depends on thread timing (hypothesis replays runs)
        for _ in range(CURSORS):
            self.cursors.append((c, conn.cursor()))

    def _status(self, rec: OpRec) -> Status:
        s = rec.job.status() if rec.op is None else rec.op.get_status()
        check_status(s)
        return s

    # ------------------------------------------------------------------
    # rules
    # ------------------------------------------------------------------
    @initialize(can_cancel=st.booleans(), asynch_connect=st.booleans())
    def open_first(self, can_cancel: bool, asynch_connect: bool) -> None:
        self._open(can_cancel, asynch_connect)

    @rule()
    def statistics(self) -> None:
        """Always enabled: counters never block and stay consistent."""
        for c in self.conns:
            stats = c.conn.statistics()
            assert stats["driver"] == "fake" and stats["closed"] == c.conn.closed
            assert stats["queued"] >= 0 and stats["pool_threads"] >= 0

    @precondition(lambda self: sum(not c.closed for c in self.conns) < 2)
    @rule(can_cancel=st.booleans(), asynch_connect=st.booleans())
    def open_another(self, can_cancel: bool, asynch_connect: bool) -> None:
        self._open(can_cancel, asynch_connect)

    @HAS_CURSOR
    @rule(i=IDX,
          kind=st.sampled_from(["block", "block", "hang", "noop", "fail", "rows"]),
          cancel_after=st.one_of(st.none(), st.sampled_from([0.0, 0.02, 0.1])),
          populate=st.booleans(),
          nrows=st.integers(0, 12),
          listen=st.sampled_from(["none", "plain", "plain", "veto"]))
    def execute(self, i: int, kind: str, cancel_after: Optional[float],
                populate: bool, nrows: int, listen: str) -> None:
        self.attempts += 1
        c, cur = pick(self._live_cursors(), i)
        n = next(self.names)
        gate = f"g{n}" if kind in ("block", "hang") else None
        sql = {"block": f"block {gate}", "hang": f"hang {gate}", "noop": f"noop {n}",
               "fail": f"fail {n}", "rows": f"rows {nrows} r{n}"}[kind]
        populate = populate and kind == "rows"
        asynch: Any = Asynch.SEQUENTIAL_POPULATION if populate else True
        if populate:
            cur.buffer_rows = 3
        rec_listener = Recorder(veto=listen == "veto") if listen != "none" else None
        # the cursor's previous operation decides whether this is a zombie call
        prev = [r for r in self.recs if r.cursor is cur]
        before = self._status(prev[-1]) if prev else None
        try:
            op = cur.execute(sql, asynch=asynch, cancel_after=cancel_after, listener=rec_listener)
        except ZombieError as exc:
            assert before is not None and before.phase == Phase.INITIALIZATION, before
            assert isinstance(exc.operation, asynchdb.Operation)
            assert exc.operation._job is prev[-1].job
            assert "zombie" in str(exc)
            event("zombie cursor refused a call")
            return
        if before is not None:
            # it was not a zombie, so its INITIALIZATION had ended before the call
            assert self._status(prev[-1]).phase >= Phase.POPULATION
            # new work on the cursor ends a population (no veto)
            prev[-1].abort_asked = True
        assert isinstance(op, asynchdb.Operation)
        rec = OpRec(n, kind, sql, gate, c, cur, op, op._job, cancel_after, populate, nrows,
                    vetoable=listen == "veto")
        if rec_listener is not None:
            rec.listeners[1] = rec_listener
        if cancel_after is not None:
            rec.abort_asked = True
        self.recs.append(rec)

    @HAS_OPS
    @rule(i=IDX)
    def release(self, i: int) -> None:
        rec = pick([r for r in self.recs if r.gate and r.gate not in r.c.released], i)
        if rec is None:
            return
        assert rec.gate is not None
        rec.c.released.add(rec.gate)
        rec.c.raw.release(rec.gate)

    @HAS_OPS
    @rule(i=IDX)
    def await_start(self, i: int) -> None:
        """Give a gated statement time to start (bounded): aborts then hit it running."""
        rec = pick([r for r in self.recs if r.gate and r.gate not in r.c.released
                    and not r.c.closed], i)
        if rec is not None and rec.gate is not None:
            rec.c.raw.started(rec.gate).wait(JOIN)

    @HAS_OPS
    @rule(i=IDX)
    def abort(self, i: int) -> None:
        rec = pick(self._ops(), i)
        if rec is None:
            return
        assert rec.op is not None
        running = (rec.gate is not None and rec.c.raw.started(rec.gate).is_set()
                   and rec.gate not in rec.c.released and not rec.c.closed)
        was = self._status(rec)
        rec.abort_asked = True
        try:
            rec.op.abort()
        except asynchdb.AbortVetoed:
            assert rec.vetoable
            return
        if was.done:
            # aborting an ended operation is a no-op
            assert rec.op.get_status() == was
            return
        if running and not rec.vetoable:
            if not rec.c.can_cancel:
                # no cancel primitive: abandoned, CANCELED at once
                event("abort abandoned a running statement")
                now = rec.op.get_status()
                assert now.phase == Phase.CANCELED, now
                assert now.status_text and "abandoned" in now.status_text
            elif rec.kind == "block":
                event("abort of a running cancellable statement")
                rec.must_cancel = True
                assert rec.op.wait_for_completion(CANCEL_BOUND), "abort lost"
                assert rec.op.get_status().phase == Phase.CANCELED

    @HAS_OPS
    @rule(i=IDX, timeout=st.sampled_from([0, 0.001, 0.01, 0.05]))
    def wait(self, i: int, timeout: float) -> None:
        rec = pick(self._ops(), i)
        if rec is None:
            return
        assert rec.op is not None
        before = self._status(rec)
        t0 = time.monotonic()
        ok = rec.op.wait_for_completion(timeout)
        elapsed = time.monotonic() - t0
        after = self._status(rec)
        if before.done:
            assert ok, "wait_for_completion returned False for an ended operation"
        if ok:
            assert after.done and rec.op.done()
        else:
            assert elapsed >= timeout * 0.9
            assert after.phase >= before.phase
        # a wait never cancels: a CANCELED phase needs an abort of some kind
        if after.phase == Phase.CANCELED:
            assert rec.abort_asked

    @HAS_OPS
    @rule(i=IDX, timeout=st.sampled_from([0, 0.01]))
    def result(self, i: int, timeout: float) -> None:
        rec = pick(self._ops(), i)
        if rec is None:
            return
        assert rec.op is not None
        before = self._status(rec)
        try:
            value = rec.op.result(timeout)
        except OperationCanceled as exc:
            assert rec.op.get_status().phase == Phase.CANCELED
            assert rec.op.exception(0) is exc
            if isinstance(exc, asynchdb.DeadlineExceeded):
                assert rec.cancel_after is not None
        except TimeoutError:
            # the wait ran out (a DeadlineExceeded is an OperationCanceled, caught above)
            assert not before.done, "result() timed out on an ended operation"
        except fake.ProgrammingError as exc:
            assert rec.kind == "fail"
            st_ = rec.op.get_status()
            assert st_.phase == Phase.COMPLETE and st_.error is exc
        else:
            assert value is rec.cursor
            assert rec.kind != "fail"
            assert rec.op.get_status().phase == Phase.COMPLETE

    @HAS_OPS
    @rule(i=IDX)
    def future(self, i: int) -> None:
        """The concurrent.futures view, taken at any moment, settles exactly once."""
        rec = pick(self._ops(), i)
        if rec is None or rec.fut_calls is not None:
            return
        assert rec.op is not None
        calls: list[Any] = []
        rec.fut_calls = calls
        rec.op.future.add_done_callback(calls.append)
        assert rec.op.future is rec.op.future
        # WaitForAsynchCompletion(0) agrees with done()
        hr = rec.op.WaitForAsynchCompletion(0)
        if hr == asynchdb.oledb.DB_S_ASYNCHRONOUS:
            assert not self._status(rec).done or rec.op.done()
        else:
            assert rec.op.done()

    @HAS_OPS
    @rule(i=IDX)
    def poll(self, i: int) -> None:
        rec = pick(self._ops(), i)
        if rec is None:
            return
        rec.seen.append(self._status(rec))
        assert rec.op is not None
        hr, prog, pmax, phase, _ = rec.op.GetStatus()
        assert 0 <= prog <= pmax and phase >= int(rec.seen[-1].phase)
        if phase < Phase.COMPLETE:
            assert hr == asynchdb.oledb.S_OK

    @HAS_OPS
    @rule(i=IDX, late_veto=st.booleans())
    def advise(self, i: int, late_veto: bool) -> None:
        rec = pick(self._ops(), i)
        if rec is None:
            return
        assert rec.op is not None
        lis = Recorder(veto=late_veto)
        ended = rec.op.done()
        if late_veto:
            rec.vetoable = True
        cookie = rec.op.advise(lis)
        assert cookie > 0 and cookie not in rec.listeners
        rec.listeners[cookie] = lis
        if ended:
            # advised after the end: the final phase, then on_stop, at once
            lis.advised_late = True
            assert lis.stopped.is_set()
            with lis.lock:
                kinds = [k for k, _ in lis.events]
            assert kinds == ["progress", "stop"]

    @HAS_OPS
    @rule(i=IDX, j=IDX, bogus=st.booleans())
    def unadvise(self, i: int, j: int, bogus: bool) -> None:
        rec = pick(self._ops(), i)
        if rec is None:
            return
        assert rec.op is not None
        if bogus or not rec.listeners:
            with pytest.raises(KeyError):
                rec.op.unadvise(10_000 + len(rec.listeners))
            return
        cookie = pick(sorted(rec.listeners), j)
        rec.op.unadvise(cookie)
        rec.unadvised.append(rec.listeners.pop(cookie))
        with pytest.raises(KeyError):
            rec.op.unadvise(cookie)

    @HAS_OPS
    @rule(i=IDX, how=st.sampled_from(["fetchall", "fetchone", "fetchmany"]))
    def fetch(self, i: int, how: str) -> None:
        rec = pick([r for r in self.recs
                    if r.kind == "rows" and r.cursor is not None and not r.reused], i)
        if rec is None:
            return
        cur = rec.cursor
        assert cur is not None
        latest = [r for r in self.recs if r.cursor is cur][-1]
        if latest is not rec or (rec.reader is not None and rec.reader.is_alive()):
            return

        def read() -> None:
            try:
                if how == "fetchall":
                    rows = list(cur.fetchall())
                elif how == "fetchone":
                    row = cur.fetchone()
                    rows = [] if row is None else [row]
                else:
                    rows = list(cur.fetchmany(4))
            except ZombieError:
                return  # still in INITIALIZATION when the read started
            except OperationCanceled:
                # its own operation was canceled, or the read itself waited behind
                # busy work when the connection was closed (a hopped call is aborted)
                assert rec.job.status().phase == Phase.CANCELED or rec.c.conn.closed
                return
            except fake.ProgrammingError as exc:
                # the cursor or its connection was closed meanwhile
                assert "closed" in str(exc)
                return
            with rec.lock:
                rec.read.extend(tuple(r) for r in rows)
                assert rec.read == rec.expected_rows()[:len(rec.read)], rec.read

        rec.reader = self._in_thread("fetch", read)

    @HAS_OPS
    @rule(i=IDX, what=st.sampled_from(["abort", "wait", "status", "result"]))
    def from_thread(self, i: int, what: str) -> None:
        rec = pick(self._ops(), i)
        if rec is None:
            return
        op = rec.op
        assert op is not None
        if what == "abort":
            rec.abort_asked = True

        def act() -> None:
            seen: list[Status] = []
            for _ in range(3):
                s = op.get_status()
                check_status(s)
                seen.append(s)
                if what == "abort":
                    try:
                        op.abort()
                    except asynchdb.AbortVetoed:
                        assert rec.vetoable
                elif what == "wait":
                    if op.wait_for_completion(0.01):
                        assert op.get_status().done
                elif what == "result":
                    try:
                        op.result(0.01)
                    except (TimeoutError, OperationCanceled, fake.ProgrammingError):
                        pass
            seen.append(op.get_status())
            check_sequence(seen)

        self._in_thread(what, act)

    @HAS_CURSOR
    @rule(i=IDX, kind=st.sampled_from(["noop", "block", "fail"]),
          cancel_after=st.sampled_from([None, 0.05]))
    def sync_execute(self, i: int, kind: str, cancel_after: Optional[float]) -> None:
        """The drop-in path from a helper thread: it runs in order behind queued work."""
        c, cur = pick(self._live_cursors(), i)
        n = next(self.names)
        if kind == "block" and cancel_after is None:
            kind = "noop"  # a synchronous block with no deadline would need a release
        sql = {"noop": f"noop {n}", "block": f"block s{n}", "fail": f"fail {n}"}[kind]
        mine = [r for r in self.recs if r.cursor is cur]
        for r in mine:
            # a new call on the cursor ends its population; its rows are not ours
            r.abort_asked = True
            r.reused = True

        def run() -> None:
            try:
                assert cur.execute(sql, cancel_after=cancel_after) is cur
                assert kind == "noop"
            except ZombieError:
                assert mine, "a cursor with no operation is never a zombie"
            except fake.ProgrammingError as exc:
                assert kind == "fail" or "closed" in str(exc)
            except asynchdb.DeadlineExceeded:
                # its own statement blocked, or it waited behind blocked work
                assert cancel_after is not None
            except OperationCanceled:
                assert c.conn.closed  # the connection was closed under it

        self.cursors = [(cc, k) for cc, k in self.cursors if k is not cur]
        self._in_thread("sync", run)

    @HAS_CURSOR
    @rule(i=IDX, in_thread=st.booleans())
    def close_cursor(self, i: int, in_thread: bool) -> None:
        c, cur = pick(self._live_cursors(), i)
        mine = [r for r in self.recs if r.cursor is cur]
        for r in mine:
            r.abort_asked = True
        # the cursor's latest operation, if a cancellable statement surely runs now
        last = mine[-1] if mine else None
        running = (last is not None and last.kind == "block" and c.can_cancel
                   and not last.reused
                   and last.gate is not None and c.raw.started(last.gate).is_set()
                   and last.gate not in c.released and not last.job.done())
        if in_thread:
            self._in_thread("close-cursor", cur.close)
        else:
            t0 = time.monotonic()
            cur.close()
            assert time.monotonic() - t0 < BOUND
        self.cursors = [(cc, k) for cc, k in self.cursors if k is not cur]
        if running and not in_thread:
            assert last is not None
            # closing aborts (no veto) and the cancel is real
            last.must_cancel = True
            assert last.job.wait(CANCEL_BOUND), "closing the cursor did not abort"
            assert last.job.status().phase == Phase.CANCELED

    @precondition(lambda self: any(not c.closed for c in self.conns))
    @rule(i=IDX)
    def close_connection(self, i: int) -> None:
        c = pick([c for c in self.conns if not c.closed], i)
        for r in self.recs:
            if r.c is c:
                r.abort_asked = True
        closer = threading.Thread(target=c.conn.close, name="stateful-close", daemon=True)
        closer.start()
        # a cancel-deaf or abandoned statement holds the worker until released
        closer.join(JOIN)
        self._release_all(c)
        closer.join(BOUND)
        assert not closer.is_alive(), "Connection.close() did not return"
        c.closed = True
        assert c.conn.closed
        for r in self.recs:
            if r.c is c:
                assert r.job.wait(BOUND), f"operation {r.sql} did not end after close"
        # further calls say the connection is unusable, promptly, with the driver's error
        with pytest.raises(fake.ProgrammingError):
            c.conn.cursor()
        for cc, cur in self.cursors:
            if cc is c:
                with pytest.raises(fake.ProgrammingError):
                    cur.execute("noop", asynch=True)

    @HAS_OPS
    @rule(i=IDX)
    def drop_references(self, i: int) -> None:
        """Release the last references to a cursor and its operations: they abort."""
        rec = pick([r for r in self.recs if r.cursor is not None and r.op is not None], i)
        if rec is None:
            return
        cur = rec.cursor
        c = rec.c
        mine = [r for r in self.recs if r.cursor is cur]
        # a reader thread still blocked holds the cursor: then nothing is released yet
        held = any(r.reader is not None and r.reader.is_alive() for r in mine)
        # a settled concurrent.futures view keeps its value, the cursor, for as
        # long as the test keeps the job (rec.job): then nothing is released either
        held = held or any(r.fut_calls for r in mine)
        last = mine[-1]
        running = (not held and last.kind == "block" and c.can_cancel and not c.closed
                   and not last.reused and last.gate is not None
                   and c.raw.started(last.gate).is_set()
                   and last.gate not in c.released and not last.job.done())
        for r in mine:
            r.abort_asked = True
            r.cursor = None
            r.op = None
            r.reader = None
        self.cursors = [(cc, k) for cc, k in self.cursors if k is not cur]
        del cur, rec, mine
        gc.collect()
        if running:
            event("releasing the handles aborted a running statement")
            last.must_cancel = True
            assert last.job.wait(CANCEL_BOUND), "releasing the handles did not abort"
            assert last.job.status().phase == Phase.CANCELED

    # ------------------------------------------------------------------
    # invariants
    # ------------------------------------------------------------------
    @invariant()
    def phases_move_forward(self) -> None:
        self._raise_errors()
        for rec in self.recs:
            rec.seen.append(self._status(rec))
            check_sequence(rec.seen)
            if rec.op is not None and rec.seen[-1].done:
                assert rec.op.wait_for_completion(0)
                assert rec.op.done()

    @invariant()
    def listeners_well_formed(self) -> None:
        for rec in self.recs:
            for lis in [*rec.listeners.values(), *rec.unadvised]:
                with lis.lock:
                    events = list(lis.events)
                stops = [i for i, (k, _) in enumerate(events) if k == "stop"]
                assert len(stops) <= 1, events
                if stops:
                    assert stops[0] == len(events) - 1, f"on_stop was not last: {events}"
                for _, s in events:
                    if s is not None:
                        assert 0 <= s.progress <= s.progress_max, s

    # ------------------------------------------------------------------
    # teardown: release everything; everything must end, within bounds
    # ------------------------------------------------------------------
    def _release_all(self, c: ConnRec) -> None:
        for r in self.recs:
            if r.c is c and r.gate is not None and r.gate not in c.released:
                c.released.add(r.gate)
                c.raw.release(r.gate)
        # gates of synchronous blocks (with a deadline) too
        for n in range(1, next(self.names) + 1):
            c.raw.release(f"s{n}")

    def _close(self, c: ConnRec) -> None:
        if c.closed:
            return
        for r in self.recs:
            if r.c is c:
                r.abort_asked = True  # closing aborts what is pending
        closer = threading.Thread(target=c.conn.close, name="stateful-close", daemon=True)
        closer.start()
        closer.join(BOUND)
        assert not closer.is_alive(), "Connection.close() hung"
        c.closed = True

    def teardown(self) -> None:
        try:
            self._final_checks()
        finally:
            self._cleanup()

    def _final_checks(self) -> None:
        for c in self.conns:
            self._release_all(c)
        for t in self.helpers:
            t.join(BOUND)
            assert not t.is_alive(), f"helper {t.name} deadlocked"
        self._raise_errors()
        for rec in self.recs:
            if not rec.populate:
                # a population parked for buffer space waits for its reader: not here
                assert rec.job.wait(BOUND), f"{rec.sql} did not end once released (deadlock?)"
        # closing aborts what is left (parked populations), within a bound
        for c in self.conns:
            self._close(c)
        for rec in self.recs:
            assert rec.job.wait(BOUND), f"{rec.sql} did not end at close (deadlock?)"
        for rec in self.recs:
            self._check_outcome(rec)
        for c in self.conns:
            canceled = [sql for sql, how in c.raw.log if how == "canceled"]
            for sql in canceled:
                owners = [r for r in self.recs if r.sql == sql]
                if not owners:
                    # a synchronous block with a deadline
                    assert sql.startswith("block s"), sql
                    continue
                assert owners[0].abort_asked, f"stray cancel: {sql} was never aborted"

    def _check_outcome(self, rec: OpRec) -> None:
        final = rec.job.status()
        check_status(final)
        rec.seen.append(final)
        check_sequence(rec.seen)
        assert final.done
        event(f"{rec.kind} ended {final.phase.name}")
        if final.phase == Phase.CANCELED:
            assert rec.abort_asked, f"{rec.sql} CANCELED without an abort"
            if rec.kind == "hang" and rec.c.can_cancel:
                # a cancel-deaf statement that ran must not be reported canceled
                assert not rec.c.raw.started(rec.gate or "").is_set(), rec.sql
        else:
            assert not rec.must_cancel, f"abort of running {rec.sql} was lost"
            if rec.kind == "fail":
                assert isinstance(final.error, fake.ProgrammingError)
            else:
                assert final.error is None, final
        if rec.fut_calls is not None:
            # the future settled once, with the operation's outcome
            assert wait_until(lambda: len(rec.fut_calls or ()) == 1, BOUND), rec.fut_calls
            (fut,) = rec.fut_calls
            exc = fut.exception(0)
            if final.phase == Phase.CANCELED:
                assert isinstance(exc, OperationCanceled)
            elif rec.kind == "fail":
                assert isinstance(exc, fake.ProgrammingError)
            else:
                assert exc is None
        if rec.populate and final.phase == Phase.COMPLETE:
            assert final.progress == final.progress_max == rec.nrows or rec.nrows == 0
        # listeners: exactly one on_stop, last, carrying the final phase
        for lis in rec.listeners.values():
            assert lis.stopped.wait(BOUND), f"no on_stop for {rec.sql}"
            with lis.lock:
                events = list(lis.events)
            kinds = [k for k, _ in events]
            assert kinds.count("stop") == 1 and kinds[-1] == "stop", kinds
            stop = events[-1][1]
            assert stop is not None and stop.phase == final.phase, (stop, final)
            if final.phase == Phase.COMPLETE and final.error is None:
                last_progress = [s for k, s in events if k == "progress"][-1]
                assert last_progress is not None
                assert last_progress.phase == Phase.COMPLETE
                assert last_progress.progress == last_progress.progress_max
        for lis in rec.unadvised:
            with lis.lock:
                kinds = [k for k, _ in lis.events]
            assert kinds.count("stop") <= 1
            assert "stop" not in kinds or kinds[-1] == "stop"

    def _cleanup(self) -> None:
        for c in self.conns:
            self._release_all(c)
            self._close(c)
        for t in self.helpers:
            t.join(BOUND)
        self.recs.clear()
        self.cursors.clear()
        self.conns.clear()
        gc.collect()
        left = wait_no_asynchdb_threads(BOUND)
        assert not left, f"asynchdb threads left after the example: {left}"
        assert not asynchdb_threads()


AsynchMachine.TestCase.settings = settings(
    max_examples=100 if _CI else 120,
    stateful_step_count=35,
    deadline=None,
    derandomize=_CI,
    # no shrinking: an example of ~35 steps with bounded waits shrinks for minutes;
    # a failure prints its steps and a blob for @reproduce_failure instead
    phases=[HPhase.explicit, HPhase.reuse, HPhase.generate],
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)
TestAsynchMachine = pytest.mark.slow(AsynchMachine.TestCase)
