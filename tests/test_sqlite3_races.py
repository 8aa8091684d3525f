"""Races on real sqlite3: aborts, deadlines, closes and listeners landing at every
moment of an operation's life, many iterations each, threads lined up with
barriers.  Every wait is bounded; a lost abort shows up as a statement that
runs for minutes, caught by the bound.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlite_helpers import (
    BOUND,
    LONG,
    Gate,
    count_sql,
    wait_until,
    wrapped,
)

import asynchdb
from asynchdb import DeadlineExceeded, OperationCanceled, Phase


def interrupted(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.args == ("interrupted",)


def _spin(seconds: float) -> None:
    """Jitter for sweeping a race window (nothing to wait for: a sleep is the point).

    Short ones busy-wait (the GIL stays here, so the worker is held back too);
    longer ones sleep, letting the worker run meanwhile.
    """
    if seconds < 20e-6:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    else:
        time.sleep(seconds)


class _Barrier:
    """Run ``fn`` on a helper thread in lock-step with the test, once per ``go()``."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=BOUND)
        self.fn: Any = None
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.stop = False
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        while True:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                return
            if self.stop:
                return
            try:
                self.fn()
            except BaseException as exc:
                self.errors.append(exc)
            finally:
                self.done.set()

    def go(self, fn: Any) -> threading.Event:
        """Release the helper to run ``fn`` exactly when this thread passes the barrier.

        Returns an Event set once ``fn`` returned.
        """
        self.fn = fn
        self.done.clear()
        self.barrier.wait()
        return self.done

    def close(self) -> None:
        self.stop = True
        try:
            self.barrier.wait(timeout=1.0)
        except threading.BrokenBarrierError:
            pass
        self.thread.join(BOUND)
        assert not self.errors, self.errors


def test_abort_never_stops_a_later_statement(conn: Any) -> None:
    """Start A, abort A, run B at once: B is never interrupted (300 times).

    Another cursor keeps a partly fetched statement pending all along, the case
    where sqlite3's interrupt() would stay set and fail every later statement.
    """
    conn.execute("CREATE TABLE t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    partly = conn.cursor()
    partly.execute("SELECT x FROM t ORDER BY x")
    assert partly.fetchone() == (0,)
    n_b = 20_000  # enough steps for the progress handler to run many times inside B
    outcomes: Counter[str] = Counter()
    for i in range(300):
        a = conn.cursor().execute(LONG, asynch=True)
        if i % 3 == 2:
            # let A really start first, sometimes
            assert wait_until(lambda a=a: a.get_status().status_text)
        a.abort()
        if i % 2:
            assert conn.execute(count_sql(n_b)).fetchone() == (n_b,)  # B, synchronous
        else:
            b = conn.cursor().execute(count_sql(n_b), asynch=True)  # B, asynchronous
            assert b.result(BOUND).fetchone() == (n_b,)
            assert b.get_status().phase == Phase.COMPLETE
        assert a.wait_for_completion(BOUND)
        assert a.get_status().phase == Phase.CANCELED
        cause = a.exception().__cause__
        assert cause is None or interrupted(cause)
        outcomes["before start" if cause is None else "interrupted"] += 1
    assert partly.fetchone() == (1,)
    print(f"A aborted: {dict(outcomes)}")
    assert outcomes["interrupted"] >= 100


def test_abort_while_queued_or_as_the_worker_picks_it_up_is_never_lost(conn: Any) -> None:
    """A waits behind a blocker; the blocker ends exactly as A is aborted (200 times).

    A is a statement of minutes: a lost abort would let it run and the bounded
    wait would fail.
    """
    gate = Gate().install(conn)
    helper = _Barrier()
    outcomes: Counter[str] = Counter()
    try:
        for i in range(200):
            name = f"g{i}"
            blocker = conn.cursor().execute(f"SELECT gate('{name}')", asynch=True)
            assert gate.started(name).wait(BOUND)
            a = conn.cursor().execute(LONG, asynch=True)
            _spin(random.random() * 50e-6)
            helper.go(lambda name=name: gate.release(name))
            _spin(random.random() * 100e-6)
            a.abort()
            assert a.wait_for_completion(BOUND), "an abort was lost"
            assert blocker.result(BOUND) is not None
            st = a.get_status()
            assert st.phase == Phase.CANCELED
            cause = a.exception().__cause__
            assert cause is None or interrupted(cause)
            outcomes["queued" if cause is None else "running"] += 1
    finally:
        gate.release_all()
        helper.close()
    print(f"abort landed: {dict(outcomes)}")
    assert sum(outcomes.values()) == 200


def test_abort_as_it_finishes_reports_the_truth(tmp_path: Any) -> None:
    """COMPLETE means the statement's write is there; CANCELED means it is not.

    Statements of random length (0.02 to 20 ms) are aborted at a random moment;
    an abort that came too late must be reported COMPLETE, never as a cancel.
    """
    with wrapped(tmp_path / "finish.db", isolation_level=None) as conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n)")
        rnd = random.Random(8)
        outcomes: Counter[str] = Counter()
        for i in range(300):
            n = rnd.choice([100, 1_000, 5_000, 20_000, 100_000])
            sql = "INSERT INTO t(id, n) " + count_sql(n, result=f"{i}, count(*)")
            op = conn.cursor().execute(sql, asynch=True)
            _spin(rnd.random() * 3e-3)
            op.abort()
            assert op.wait_for_completion(BOUND)
            st = op.get_status()
            rows = conn.execute("SELECT n FROM t WHERE id = ?", (i,)).fetchall()
            if st.phase == Phase.COMPLETE:
                assert st.error is None
                assert rows == [(n,)]
                outcomes["complete"] += 1
            else:
                assert st.phase == Phase.CANCELED
                assert rows == []
                cause = op.exception().__cause__
                assert cause is None or interrupted(cause)
                outcomes["canceled"] += 1
        print(f"abort as it finishes: {dict(outcomes)}")
        assert outcomes["complete"] and outcomes["canceled"]


def test_deadline_racing_completion(conn: Any) -> None:
    rnd = random.Random(3)
    outcomes: Counter[str] = Counter()
    n = 20_000  # a few ms
    cur = conn.cursor()
    took = []
    for _ in range(5):
        started = time.perf_counter()
        cur.execute(count_sql(n)).fetchone()
        took.append(time.perf_counter() - started)
    # deadlines around the statement's own time on this machine
    d = sorted(took)[2]
    for _ in range(150):
        timeout = d * rnd.choice([0.0, 0.25, 0.5, 1.0, 1.5, 2.5])
        if rnd.random() < 0.5:
            op = cur.execute(count_sql(n), asynch=True, cancel_after=timeout)
            assert op.wait_for_completion(BOUND)
            err = op.exception()
            value = None if err else cur.fetchone()
        else:
            try:
                value = cur.execute(count_sql(n), cancel_after=timeout).fetchone()
                err = None
            except DeadlineExceeded as exc:
                err, value = exc, None
        if err is None:
            assert value == (n,)
            outcomes["complete"] += 1
        else:
            assert isinstance(err, DeadlineExceeded)
            assert err.__cause__ is None or interrupted(err.__cause__)
            outcomes["deadline"] += 1
    # the connection is fine afterwards, no deadline left over
    assert conn.execute(count_sql(n)).fetchone() == (n,)
    print(f"deadline vs completion: {dict(outcomes)}")
    assert outcomes["complete"] and outcomes["deadline"]


def test_close_racing_a_running_or_starting_statement(tmp_path: Any) -> None:
    """conn.close() from another thread at any moment: no crash, bounded, all ends.

    sqlite3 itself segfaults when closed from another thread while a call runs
    (measured: docs/abort.md); asynchdb must abort first and close on the owner.
    """
    helper = _Barrier()
    outcomes: Counter[str] = Counter()
    worst = 0.0
    try:
        for i in range(60):
            conn = asynchdb.connect(sqlite3, str(tmp_path / f"close{i % 3}.db"),
                                    check_same_thread=False)
            raw = conn.driver_connection
            mode = i % 3
            result: dict[str, Any] = {}
            closed = threading.Event()

            def close(conn: Any = conn, closed: threading.Event = closed,
                      result: dict[str, Any] = result) -> None:
                t0 = time.perf_counter()
                conn.close()
                result["took"] = time.perf_counter() - t0
                closed.set()

            if mode == 0:  # asynchronous statement, close as it is submitted
                helper.go(close)
                try:
                    op = conn.cursor().execute(LONG, asynch=True)
                except sqlite3.ProgrammingError:
                    op = None
                    outcomes["refused"] += 1
            elif mode == 1:  # asynchronous statement already running
                op = conn.cursor().execute(LONG, asynch=True)
                _spin(random.random() * 1e-3)
                helper.go(close)
            else:  # synchronous statement on this thread, inline
                op = None
                helper.go(close)
                try:
                    conn.execute(LONG)
                    raise AssertionError("a minutes-long statement completed")
                except sqlite3.ProgrammingError:
                    outcomes["refused"] += 1
                except sqlite3.OperationalError as exc:
                    assert exc.args == ("interrupted",)
                    outcomes["interrupted sync"] += 1
            assert closed.wait(BOUND)
            worst = max(worst, result["took"])
            if op is not None:
                assert op.wait_for_completion(BOUND)
                assert op.get_status().phase == Phase.CANCELED
                outcomes["canceled"] += 1
            with pytest.raises(sqlite3.ProgrammingError):
                raw.execute("SELECT 1")  # really closed
    finally:
        helper.close()
    print(f"close races: {dict(outcomes)}, slowest close {worst * 1e3:.1f} ms")
    assert worst < 2.0


def test_cursor_close_racing_its_operation(conn: Any) -> None:
    helper = _Barrier()
    rnd = random.Random(5)
    try:
        for _ in range(150):
            cur = conn.cursor()
            n = rnd.choice([10, 10_000, 10**9])
            op = cur.execute(count_sql(n), asynch=True)
            _spin(rnd.random() * 200e-6)
            closed = helper.go(cur.close)
            assert op.wait_for_completion(BOUND)
            assert closed.wait(BOUND)
            st = op.get_status()
            if n == 10**9:
                assert st.phase == Phase.CANCELED
            else:
                assert st.phase in (Phase.COMPLETE, Phase.CANCELED)
            with pytest.raises(sqlite3.ProgrammingError):
                cur.execute("SELECT 1")
        assert conn.execute(count_sql(1000)).fetchone() == (1000,)
    finally:
        helper.close()


def test_ordering_and_ownership_under_concurrency(conn: Any) -> None:
    """Four threads mix synchronous and asynchronous inserts on one connection.

    Operations run in the order each thread started them, nothing overlaps
    inside the driver (no 'Recursive use of cursors', no lost rows).
    """
    conn.execute("CREATE TABLE t(thread, seq)")
    barrier = threading.Barrier(4, timeout=BOUND)
    errors: list[BaseException] = []
    per_thread = 60

    def work(k: int) -> None:
        try:
            barrier.wait()
            ops = []
            cur = conn.cursor()
            for seq in range(per_thread):
                if seq % 3 == 0:
                    cur.execute("INSERT INTO t VALUES (?, ?)", (k, seq))
                else:
                    ops.append(conn.cursor().execute("INSERT INTO t VALUES (?, ?)", (k, seq),
                                                     asynch=True))
                if seq % 10 == 0:
                    cur.execute(count_sql(2_000))
                    assert cur.fetchone() == (2_000,)
            for op in ops:
                assert op.result(BOUND) is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND * 2)
    assert not errors, errors
    rows = conn.execute("SELECT thread, seq FROM t ORDER BY rowid").fetchall()
    assert len(rows) == 4 * per_thread
    for k in range(4):
        assert [s for t, s in rows if t == k] == list(range(per_thread))


class _Sequence:
    """A listener recording the order of every notification."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Phase]] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def on_progress(self, op: Any, status: asynchdb.Status) -> None:
        with self.lock:
            self.events.append(("progress", status.phase))

    def on_stop(self, op: Any, status: asynchdb.Status) -> None:
        with self.lock:
            self.events.append(("stop", status.phase))
        self.stopped.set()


def test_on_stop_is_last_and_once_with_fast_ticks(conn: Any, monkeypatch: Any) -> None:
    """Periodic progress racing the end of the statement never comes after on_stop."""
    from asynchdb import _operation as operation

    monkeypatch.setattr(operation, "TICK", 0.0002)
    rnd = random.Random(11)
    listeners = []
    for i in range(150):
        lst = _Sequence()
        n = rnd.choice([1_000, 5_000, 10_000])
        op = conn.cursor().execute(count_sql(n), asynch=True, listener=lst)
        if i % 4 == 0:
            _spin(rnd.random() * 1e-3)
            op.abort()
        assert op.wait_for_completion(BOUND)
        assert lst.stopped.wait(BOUND)
        listeners.append(lst)
    # let any straggling tick arrive before checking
    assert wait_until(lambda: not any(t.name == "asynchdb-timer" for t in threading.enumerate()),
                      BOUND)
    for lst in listeners:
        with lst.lock:
            events = list(lst.events)
        stops = [e for e in events if e[0] == "stop"]
        assert len(stops) == 1, events
        assert events[-1][0] == "stop", events
        # phases never go back, apart from the CANCELED of an abort request: a statement
        # that completed first still ends COMPLETE (the abort came too late)
        phases = [phase for _, phase in events if phase != Phase.CANCELED]
        assert phases == sorted(phases), events


def test_sync_calls_from_many_threads_while_async_work_runs(conn: Any) -> None:
    """Inline synchronous calls and worker calls never overlap on the connection."""
    conn.create_function("tid", 0, threading.get_ident)
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def sync_loop() -> None:
        try:
            while not stop.is_set():
                cur = conn.cursor()
                assert cur.execute(count_sql(500)).fetchone() == (500,)
                with lock:
                    counts["sync"] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync_loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(100):
            op = conn.cursor().execute(count_sql(500), asynch=True)
            if i % 5 == 0:
                op.abort()
            assert op.wait_for_completion(BOUND)
            if op.get_status().phase == Phase.COMPLETE:
                assert op.result().fetchone() == (500,)
                counts["async"] += 1
            else:
                assert isinstance(op.exception(), OperationCanceled)
    finally:
        stop.set()
        for t in threads:
            t.join(BOUND)
    assert not errors, errors
    assert counts["sync"] > 0 and counts["async"] >= 80
