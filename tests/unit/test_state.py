"""The operation state machine, driven through the public API against the fake driver.

Covers docs/usage.md and docs/abort.md (population flags excepted): phases,
abort in every phase (queued, running, just before the driver starts, too late,
abandoned), ordering on one connection, the zombie cursor, results and futures,
waits and deadlines, release by garbage collection, closing, the inline fast
path and bad input.

Every statement blocks on a gate of ``asynchdb.testing`` that the test opens, so
nothing depends on timing: there is no sleep, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import math
import signal
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from plugin import wait_until

import asynchdb
from asynchdb import Asynch, DeadlineExceeded, OperationCanceled, Phase, ZombieError
from asynchdb import testing as fake

#: Seconds any single wait may take before the test fails.
WAIT = 5.0


# ---------------------------------------------------------------------------
# the fake, with callproc/nextset and a record of which thread ran what
# ---------------------------------------------------------------------------
class ProcCursor(fake.FakeCursor):
    """The fake's cursor plus ``callproc``/``nextset``; records threads and errors."""

    def execute(self, sql: str, params: Any = None) -> fake.FakeCursor:
        conn: Any = self.connection
        conn.calls.append((sql, threading.get_ident(), threading.current_thread().name))
        try:
            return super().execute(sql, params)
        except BaseException as exc:
            conn.raised.append(exc)
            raise

    def callproc(self, name: str, params: Any = ()) -> Any:
        self.execute(name)
        return ("out", *params)

    def nextset(self) -> Any:
        self.execute("nextset")
        return None


class Env:
    """One fake connection wrapped by ``asynchdb.connect`` and its driver object."""

    def __init__(self, can_cancel: bool = True) -> None:
        self.conn = asynchdb.connect(fake, can_cancel=can_cancel)
        raw: Any = self.conn.driver_connection
        self.raw = raw
        raw.calls = []
        raw.raised = []
        raw.cursors = []

        def cursor() -> ProcCursor:
            raw._check()
            cur = ProcCursor(raw)
            raw.cursors.append(cur)
            return cur

        raw.cursor = cursor

    def cursors(self, n: int) -> list[asynchdb.Cursor]:
        # created up front: a synchronous cursor() queues behind running work
        return [self.conn.cursor() for _ in range(n)]

    def started(self, name: str) -> None:
        assert self.raw.started(name).wait(WAIT), f"statement {name!r} never started"

    def statements(self) -> list[str]:
        return [sql for sql, _ in self.raw.log]

    def thread_of(self, sql: str) -> int:
        (ident,) = [t for s, t, _ in self.raw.calls if s == sql]
        return int(ident)

    def shutdown(self) -> None:
        for name in list(self.raw._started):
            self.raw.release(name)
        self.conn.close()


@pytest.fixture
def make_env() -> Iterator[Callable[..., Env]]:
    envs: list[Env] = []

    def make(can_cancel: bool = True) -> Env:
        env = Env(can_cancel)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.shutdown()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


class GatedOpener:
    """A connect callable that blocks until ``gate`` is set; records what it opened."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.opened: list[fake.FakeConnection] = []
        self.closed = threading.Event()

    def __call__(self) -> fake.FakeConnection:
        self.calls += 1
        assert self.gate.wait(WAIT)
        raw = fake.connect()
        real_close = raw.close

        def close() -> None:
            real_close()
            self.closed.set()

        raw.close = close  # type: ignore[method-assign]
        self.opened.append(raw)
        return raw


class StopRecorder:
    """A listener that only records on_stop."""

    def __init__(self) -> None:
        self.stops: list[asynchdb.Status] = []
        self.stopped = threading.Event()

    def on_stop(self, op: asynchdb.Operation[Any], status: asynchdb.Status) -> None:
        self.stops.append(status)
        self.stopped.set()


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asynchdb-worker")]


def check_invariants(st: asynchdb.Status) -> None:
    assert 0 <= st.progress <= st.progress_max
    assert st.done == (st.phase >= Phase.COMPLETE)
    if st.phase is Phase.COMPLETE:
        assert st.progress == st.progress_max
    else:
        # OLE DB conformance test: progress < max until COMPLETE
        assert st.progress < st.progress_max
    if st.phase is Phase.CANCELED:
        assert isinstance(st.error, OperationCanceled)
    if st.phase is Phase.INITIALIZATION:
        assert st.error is None


# ---------------------------------------------------------------------------
# phases
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["release", "abort", "fail"])
def test_phases_only_move_forward(env: Env, ending: str) -> None:
    a, b = env.cursors(2)
    op0 = a.execute("block g0", asynch=True)
    env.started("g0")
    op = b.execute("fail" if ending == "fail" else "block g1", asynch=True)
    seen: list[asynchdb.Status] = [op.get_status()]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            st = op.get_status()
            seen.append(st)
            if st.done:
                return

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert seen[0].phase is Phase.INITIALIZATION  # queued behind g0
        env.raw.release("g0")
        if ending != "fail":
            env.started("g1")
            assert op.get_status().phase is Phase.INITIALIZATION  # running
            if ending == "release":
                env.raw.release("g1")
            else:
                op.abort()
        assert op.wait_for_completion(WAIT)
    finally:
        stop.set()
        poller.join(WAIT)
    seen.append(op.get_status())
    phases = [st.phase for st in seen]
    assert phases == sorted(phases), phases
    for st in seen:
        check_invariants(st)
    final = seen[-1]
    expected = {"release": Phase.COMPLETE, "abort": Phase.CANCELED, "fail": Phase.COMPLETE}
    assert final.phase is expected[ending]
    if ending == "fail":
        assert isinstance(final.error, fake.ProgrammingError)
    elif ending == "release":
        assert final.error is None
    # an ended operation's status no longer changes
    assert op.get_status() == final
    assert op0.get_status().phase is Phase.COMPLETE


def test_status_of_an_ended_operation_is_a_frozen_snapshot(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("rows 3", asynch=True)
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st == asynchdb.Status(Phase.COMPLETE, st.progress_max, st.progress_max, st.status_text)
    with pytest.raises(AttributeError):
        st.phase = Phase.CANCELED  # type: ignore[misc]


# ---------------------------------------------------------------------------
# abort
# ---------------------------------------------------------------------------
def test_abort_while_queued_never_runs(env: Env) -> None:
    a, b, c = env.cursors(3)
    op1 = a.execute("block g1", asynch=True)
    env.started("g1")
    op2 = b.execute("q2", asynch=True)
    op3 = c.execute("q3", asynch=True)
    assert op2.abort() is None
    # at once: nothing to wait for
    assert op2.done()
    st = op2.get_status()
    assert st.phase is Phase.CANCELED
    exc = op2.exception(0)
    assert type(exc) is OperationCanceled
    assert st.error is exc
    assert exc.__cause__ is None  # no driver error: it never reached the driver
    # the statement running meanwhile was not touched
    assert not op1.done()
    assert env.raw.lost_cancels == 0
    env.raw.release("g1")
    assert op3.wait_for_completion(WAIT)
    assert op1.exception(0) is None
    assert op1.get_status().phase is Phase.COMPLETE
    assert env.statements() == ["block g1", "q3"]
    with pytest.raises(OperationCanceled) as ei:
        op2.result(0)
    assert ei.value is exc


def test_abort_while_running_cancels_in_the_driver(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    assert op.abort() is None
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase is Phase.CANCELED
    exc = op.exception(0)
    assert type(exc) is OperationCanceled
    assert st.error is exc
    # the driver's own error is the cause, unchanged
    assert exc.__cause__ is env.raw.raised[-1]
    assert type(exc.__cause__) is fake.OperationalError
    assert exc.__cause__.args == ("canceled",)
    assert env.raw.log == [("block g1", "canceled")]
    with pytest.raises(OperationCanceled) as ei:
        op.result(0)
    assert ei.value is exc


class _RepairGate(fake.FakeAdapter):
    """The fake's adapter with a repair (``after_abort``) the test holds open."""

    started = threading.Event()
    proceed = threading.Event()

    def after_abort(self, conn: Any) -> None:
        type(self).started.set()
        assert type(self).proceed.wait(WAIT)


class _RepairGateConnection(fake.FakeConnection):
    __module__ = "asynchdb.testing"  # the module holding the driver's exceptions
    __asynchdb_adapter__ = _RepairGate


def test_a_synchronous_call_returns_after_the_repair() -> None:
    """A deadline's call returns only once the repair of its aborted statement ended.

    Its caller may use the driver connection at once, outside asynchdb
    (SQLAlchemy rolls back on the driver connection as soon as the deadline's
    wait returns), and a driver such as mysqlclient refuses a connection used
    by two threads at the same time.
    """
    _RepairGate.started.clear()
    _RepairGate.proceed.clear()
    conn = asynchdb.wrap(_RepairGateConnection())
    raw: Any = conn.driver_connection
    returned = threading.Event()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            conn.cursor().execute("block g1", cancel_after=0.01)
        except BaseException as exc:  # checked below
            errors.append(exc)
        returned.set()

    caller = threading.Thread(target=call)
    try:
        caller.start()
        assert raw.started("g1").wait(WAIT)
        assert _RepairGate.started.wait(WAIT)
        # the repair is held open: the call cannot return (a bounded look)
        early = returned.wait(0.2)
        _RepairGate.proceed.set()
        assert returned.wait(WAIT)
        assert not early, "the call returned while the repair still ran"
        assert len(errors) == 1 and isinstance(errors[0], DeadlineExceeded)
    finally:
        _RepairGate.proceed.set()
        caller.join(WAIT)
        conn.close()


def test_an_operation_wakes_its_waiters_before_the_repair() -> None:
    """An aborted Operation's waiters wake at once; everything else waits for the repair.

    ``wait_for_completion`` returns as soon as the driver confirmed the abort.
    The worker keeps the connection until the repair ended: a call made
    through asynchdb meanwhile runs after it, and the operation's future and
    listeners (whose callbacks may use the connection) hear of the end after it.
    """
    _RepairGate.started.clear()
    _RepairGate.proceed.clear()
    conn = asynchdb.wrap(_RepairGateConnection())
    raw: Any = conn.driver_connection
    heard: list[str] = []

    class Listener:
        def on_stop(self, op: Any, status: Any) -> None:
            heard.append("stop")

    try:
        op = conn.cursor().execute("block g1", asynch=True, listener=Listener())
        fut = op.future
        assert raw.started("g1").wait(WAIT)
        op.abort()
        assert _RepairGate.started.wait(WAIT)
        assert op.wait_for_completion(WAIT), "the waiter did not wake during the repair"
        assert op.get_status().phase is Phase.CANCELED
        assert not fut.done() and heard == []
        # a call through asynchdb waits its turn behind the repair
        ran = threading.Event()
        follow = threading.Thread(target=lambda: (conn.cursor().execute("rows 1"), ran.set()))
        follow.start()
        early = ran.wait(0.2)
        _RepairGate.proceed.set()
        assert ran.wait(WAIT)
        follow.join(WAIT)
        assert not early, "a call ran on the connection during the repair"
        with pytest.raises(OperationCanceled):
            fut.result(WAIT)
        assert op.wait_for_completion(WAIT)
    finally:
        _RepairGate.proceed.set()
        conn.close()
    assert heard == ["stop"]


def test_end_callbacks_run_once_at_the_end(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """``Job.on_end`` (what ``await op`` uses): after the end, once; at once if ended."""
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    seen: list[tuple[str, bool]] = []

    def broken() -> None:
        raise RuntimeError("a broken callback")

    job = op._job  # type: ignore[attr-defined]
    job.on_end(lambda: seen.append(("first", op.done())))
    job.on_end(broken)
    job.on_end(lambda: seen.append(("second", op.done())))
    assert env.raw.started("g1").wait(WAIT)
    assert seen == []
    with caplog.at_level(logging.ERROR, logger="asynchdb"):
        env.raw.release("g1")
        assert op.wait_for_completion(WAIT)
        # the worker runs them right after waking the waiters
        wait_until(lambda: len(seen) == 2, WAIT)
    assert seen == [("first", True), ("second", True)]
    assert "an end callback failed" in caplog.text  # logged; the others still ran
    job.on_end(lambda: seen.append(("late", op.done())))
    assert seen[-1] == ("late", True)  # ended already: at once, on this thread


def test_abort_landing_just_before_the_driver_starts_is_not_lost(env: Env) -> None:
    """The worker is inside the driver call but the statement is not running yet.

    The fake, like real drivers, loses a cancel sent while nothing runs; the abort
    must still stop the statement once it starts.
    """
    raw = env.raw
    (cur,) = env.cursors(1)
    paused, go = threading.Event(), threading.Event()
    me = threading.get_ident()
    real_check = raw._check

    def check() -> None:
        # the fake checks its connection first thing in execute(): hold the
        # worker there, after asynchdb handed it the statement
        if threading.get_ident() != me and not paused.is_set():
            paused.set()
            assert go.wait(WAIT)
        real_check()

    raw._check = check
    op = cur.execute("block g1", asynch=True)
    assert paused.wait(WAIT)
    assert op.get_status().phase is Phase.INITIALIZATION
    op.abort()
    go.set()
    assert op.wait_for_completion(WAIT), "the abort was lost"
    assert op.get_status().phase is Phase.CANCELED
    assert ("block g1", "ok") not in raw.log


@pytest.mark.parametrize("stmt", ["rows 2", "fail"])
def test_abort_after_completion_is_a_no_op(env: Env, stmt: str) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute(stmt, asynch=True)
    assert op.wait_for_completion(WAIT)
    before = op.get_status()
    error = op.exception(0)
    assert op.abort() is None
    assert op.abort() is None
    assert op.get_status() == before
    assert before.phase is Phase.COMPLETE
    assert op.exception(0) is error
    assert env.raw.lost_cancels == 0  # no cancel was sent to the idle driver
    if error is None:
        assert op.result(0) is cur
        assert cur.fetchall() == [(0,), (1,)]


def test_second_abort_is_a_no_op(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    op.abort()
    assert op.abort() is None
    assert op.wait_for_completion(WAIT)
    first = op.exception(0)
    assert op.abort() is None
    assert op.exception(0) is first
    assert op.get_status().phase is Phase.CANCELED
    assert env.raw.log == [("block g1", "canceled")]


def test_two_aborts_of_a_statement_deaf_to_cancel(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("hang g1", asynch=True)
    env.started("g1")
    assert op.abort() is None
    assert op.abort() is None
    # requested, not confirmed: still INITIALIZATION
    assert not op.done()
    assert op.get_status().phase is Phase.INITIALIZATION
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    assert op.get_status().phase is Phase.COMPLETE


def test_abort_in_the_race_window_after_the_driver_finished_is_complete(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    env.raw.release("g1")
    op.abort()  # the statement has finished, or finishes regardless of the cancel
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase is Phase.COMPLETE
    assert st.error is None
    assert op.result(0) is cur
    assert env.raw.log == [("block g1", "ok")]


def test_abort_the_driver_ignores_ends_complete_not_canceled(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("hang g1", asynch=True)
    env.started("g1")
    op.abort()
    assert not op.wait_for_completion(0)
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase is Phase.COMPLETE
    assert st.error is None
    assert op.exception(0) is None
    assert op.result(0) is cur
    assert env.raw.log == [("hang g1", "ok")]


def test_abort_never_cancels_the_next_statement(env: Env) -> None:
    a, b = env.cursors(2)
    op1 = a.execute("hang g1", asynch=True)
    env.started("g1")
    op1.abort()
    op2 = b.execute("block g2", asynch=True)
    env.raw.release("g1")
    env.started("g2")
    assert op1.wait_for_completion(WAIT)
    assert op1.get_status().phase is Phase.COMPLETE
    assert not op2.done()
    env.raw.release("g2")
    assert op2.wait_for_completion(WAIT)
    assert op2.exception(0) is None
    assert env.raw.log == [("hang g1", "ok"), ("block g2", "ok")]


# ---------------------------------------------------------------------------
# abandon: a driver without a cancel primitive
# ---------------------------------------------------------------------------
def test_abort_without_cancel_primitive_abandons_the_call(make_env: Callable[..., Env]) -> None:
    env = make_env(can_cancel=False)
    raw = env.raw
    a, b, c = env.cursors(3)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    op.abort()
    # CANCELED at once, without waiting for the driver
    assert op.done()
    st = op.get_status()
    assert st.phase is Phase.CANCELED
    assert isinstance(st.error, OperationCanceled)
    assert st.status_text is not None
    assert "may still be running" in st.status_text
    # later work on the connection waits for the worker to come free
    op2 = b.execute("q2", asynch=True)
    result: dict[str, Any] = {}

    def sync_call() -> None:
        result["thread"] = threading.get_ident()
        result["value"] = c.execute("s3")

    t = threading.Thread(target=sync_call)
    t.start()
    assert not op2.wait_for_completion(0)
    assert raw.log == []
    raw.release("g1")
    assert op2.wait_for_completion(WAIT)
    t.join(WAIT)
    assert not t.is_alive()
    assert result["value"] is c
    assert env.statements() == ["block g1", "q2", "s3"]
    assert raw.lost_cancels == 0  # no cancel was ever sent
    # the late result was discarded: still CANCELED, reads still refused
    assert op.get_status().phase is Phase.CANCELED
    with pytest.raises(OperationCanceled):
        op.result(0)
    with pytest.raises(OperationCanceled):
        a.fetchall()
    # the cursor executes again
    assert a.execute("rows 1") is a
    assert a.fetchall() == [(0,)]


def test_late_error_of_an_abandoned_call_is_logged(
        make_env: Callable[..., Env], caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(can_cancel=False)
    caplog.set_level(logging.WARNING, logger="asynchdb")
    a, b = env.cursors(2)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    op.abort()
    assert op.done()
    aborted_with = op.exception(0)
    env.raw.cancel()  # the abandoned statement now fails on its own
    op2 = b.execute("q2", asynch=True)
    assert op2.wait_for_completion(WAIT)
    late = env.raw.raised[-1]
    assert isinstance(late, fake.OperationalError)
    records = [r for r in caplog.records if r.name == "asynchdb"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is late
    # the operation keeps the error it was abandoned with
    assert op.exception(0) is aborted_with
    assert op.get_status().phase is Phase.CANCELED


def test_abandoned_async_connect_closes_its_late_connection() -> None:
    opener = GatedOpener()
    op = asynchdb.connect(opener, asynch=True)
    op.abort()  # no driver can cancel a connect: it is abandoned
    assert op.done()
    st = op.get_status()
    assert st.phase is Phase.CANCELED
    assert st.status_text is not None
    assert "may still be running" in st.status_text
    opener.gate.set()
    assert opener.closed.wait(WAIT), "the late connection was not closed"
    assert opener.opened[0].closed_by != threading.get_ident()
    with pytest.raises(OperationCanceled):
        op.result(0)


def test_async_connect_result_is_the_connection() -> None:
    op = asynchdb.connect(fake, asynch=True)
    conn = op.result(WAIT)
    try:
        assert isinstance(conn, asynchdb.Connection)
        assert op.get_status().phase is Phase.COMPLETE
        assert conn.cursor().execute("rows 2").fetchall() == [(0,), (1,)]
    finally:
        conn.close()


def test_async_connect_failure_passes_the_driver_error() -> None:
    boom = fake.OperationalError("cannot connect")

    def opener() -> Any:
        raise boom

    op = asynchdb.connect(opener, asynch=True)
    assert op.wait_for_completion(WAIT)
    assert op.exception(0) is boom
    st = op.get_status()
    assert st.phase is Phase.COMPLETE
    assert st.error is boom
    with pytest.raises(fake.OperationalError) as ei:
        op.result(0)
    assert ei.value is boom


# ---------------------------------------------------------------------------
# ordering
# ---------------------------------------------------------------------------
def test_operations_on_one_connection_run_in_submission_order(env: Env) -> None:
    curs = env.cursors(7)
    ops: list[asynchdb.Operation[Any]] = [curs[0].execute("block g0", asynch=True)]
    env.started("g0")
    ops.append(curs[1].execute("q1", asynch=True))
    ops.append(curs[2].execute("fail f2", asynch=True))
    ops.append(curs[3].executemany("m3", [(1,), (2,)], asynch=True))
    ops.append(curs[4].callproc("p4", (1,), asynch=True))
    ops.append(curs[5].execute("block g5", asynch=True))
    ops.append(curs[6].nextset(asynch=True))
    env.raw.release("g5")
    assert all(not op.done() for op in ops)
    assert env.statements() == []
    env.raw.release("g0")
    for op in ops:
        assert op.wait_for_completion(WAIT)
    assert env.statements() == ["block g0", "q1", "fail f2", "m3", "m3", "p4", "block g5",
                                "nextset"]
    me = threading.get_ident()
    assert all(t != me for _, t, _ in env.raw.calls)


# ---------------------------------------------------------------------------
# the zombie cursor
# ---------------------------------------------------------------------------
ZOMBIE_USES: dict[str, Callable[[asynchdb.Cursor], Any]] = {
    "description": lambda c: c.description,
    "rowcount": lambda c: c.rowcount,
    "lastrowid": lambda c: c.lastrowid,
    "fetchone": lambda c: c.fetchone(),
    "fetchmany": lambda c: c.fetchmany(2),
    "fetchmany()": lambda c: c.fetchmany(),
    "fetchall": lambda c: c.fetchall(),
    "next": lambda c: next(iter(c)),
    "list": lambda c: list(c),
    "execute": lambda c: c.execute("x"),
    "execute asynch": lambda c: c.execute("x", asynch=True),
    "executemany": lambda c: c.executemany("x", [(1,)]),
    "executemany asynch": lambda c: c.executemany("x", [(1,)], asynch=True),
    "callproc": lambda c: c.callproc("x", (1,)),
    "callproc asynch": lambda c: c.callproc("x", (1,), asynch=True),
    "nextset": lambda c: c.nextset(),
    "nextset asynch": lambda c: c.nextset(asynch=True),
    "setinputsizes": lambda c: c.setinputsizes([None]),
}

#: Reads that raise the abort's OperationCanceled after a cancel in INITIALIZATION.
READS = {k: ZOMBIE_USES[k] for k in (
    "description", "rowcount", "lastrowid", "fetchone", "fetchmany", "fetchall", "next", "list")}


@pytest.mark.parametrize("where", ["queued", "running"])
def test_zombie_cursor_refuses_use_naming_the_operation(env: Env, where: str) -> None:
    a, b = env.cursors(2)
    if where == "queued":
        first = a.execute("block g0", asynch=True)
        env.started("g0")
        op = b.execute("rows 2", asynch=True)
        cur = b
    else:
        op = first = a.execute("block g0", asynch=True)
        env.started("g0")
        cur = a
    for use, call in ZOMBIE_USES.items():
        with pytest.raises(ZombieError) as ei:
            call(cur)
        assert ei.value.operation is op, use
        assert "zombie" in str(ei.value), use
        assert repr(op) in str(ei.value), use
    # the refusals changed nothing: the operation goes on and nothing else ran
    assert not op.done()
    assert env.raw.log == []
    env.raw.release("g0")
    assert op.wait_for_completion(WAIT)
    assert first.wait_for_completion(WAIT)
    assert op.get_status().phase is Phase.COMPLETE
    assert env.statements() == (["block g0", "rows 2"] if where == "queued" else ["block g0"])
    # no longer a zombie
    assert cur.fetchall() == ([(0,), (1,)] if where == "queued" else [])


def test_closing_a_zombie_cursor_aborts_its_operation(env: Env) -> None:
    a, b = env.cursors(2)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    assert a.close() is None
    assert op.wait_for_completion(WAIT)
    assert op.get_status().phase is Phase.CANCELED
    assert isinstance(op.exception(0).__cause__, fake.OperationalError)
    with pytest.raises(fake.ProgrammingError):
        a.execute("q")
    with pytest.raises(fake.ProgrammingError):
        a.execute("q", asynch=True)
    barrier = b.execute("q2", asynch=True)
    assert barrier.wait_for_completion(WAIT)
    assert env.raw.cursors[0].closed, "the driver cursor was not closed"
    assert env.statements() == ["block g1", "q2"]


def test_closing_a_cursor_whose_operation_is_queued_aborts_it(env: Env) -> None:
    a, b = env.cursors(2)
    first = a.execute("block g1", asynch=True)
    env.started("g1")
    op = b.execute("q2", asynch=True)
    b.close()
    assert op.done()
    assert op.get_status().phase is Phase.CANCELED
    env.raw.release("g1")
    assert first.wait_for_completion(WAIT)
    assert first.exception(0) is None
    assert env.statements() == ["block g1"]


def test_after_a_cancel_in_initialization_reads_raise_and_execute_works(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    op.abort()
    assert op.wait_for_completion(WAIT)
    exc = op.exception(0)
    for name, read in READS.items():
        with pytest.raises(OperationCanceled) as ei:
            read(cur)
        # a fresh copy each read (the Operation keeps the original, whose traceback
        # must not collect the readers' frames: tests/unit/test_no_cycles.py)
        assert type(ei.value) is type(exc) and str(ei.value) == str(exc), name
        assert ei.value is not exc and ei.value.__cause__ is exc.__cause__, name
    assert cur.execute("rows 2") is cur
    assert cur.fetchall() == [(0,), (1,)]
    op2 = cur.execute("rows 1", asynch=True)
    assert op2.result(WAIT) is cur
    assert cur.fetchone() == (0,)


def test_after_a_canceled_operation_an_asynch_execute_works(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    op.abort()
    assert op.wait_for_completion(WAIT)
    op2 = cur.execute("rows 3", asynch=True)
    assert op2.result(WAIT) is cur
    assert list(cur) == [(0,), (1,), (2,)]


# ---------------------------------------------------------------------------
# result, exception, done, future
# ---------------------------------------------------------------------------
def test_results_of_each_asynchronous_call(env: Env) -> None:
    cur = env.conn.cursor()
    op = cur.execute("rows 2", asynch=True)
    assert op.result(WAIT) is cur
    assert op.exception(0) is None
    assert op.done()
    assert cur.fetchall() == [(0,), (1,)]
    op = cur.executemany("m", [(1,), (2,), (3,)], asynch=True)
    assert op.result(WAIT) is cur
    assert cur.rowcount == 3
    op = cur.callproc("p", (1, 2), asynch=True)
    assert op.result(WAIT) == ("out", 1, 2)
    op = cur.nextset(asynch=True)
    assert op.result(WAIT) is None
    # the same calls without asynch return what the driver returns
    assert cur.callproc("p", (3,)) == ("out", 3)
    assert cur.nextset() is None
    assert cur.executemany("m", [(1,)]) is cur


def test_done_tracks_the_end(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    assert op.done() is False
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    assert op.done() is True


def test_driver_errors_pass_through_unchanged(env: Env) -> None:
    a, b, c = env.cursors(3)
    raw = env.raw
    # synchronous, inline
    with pytest.raises(fake.ProgrammingError) as ei:
        a.execute("fail")
    assert ei.value is raw.raised[-1]
    assert type(ei.value) is fake.ProgrammingError
    # asynchronous
    op = a.execute("fail", asynch=True)
    assert op.wait_for_completion(WAIT)
    err = raw.raised[-1]
    assert ei.value is not err
    assert op.exception(0) is err
    st = op.get_status()
    assert st.phase is Phase.COMPLETE
    assert st.error is err
    with pytest.raises(fake.ProgrammingError) as ei2:
        op.result(0)
    assert ei2.value is err
    assert op.future.exception(0) is err
    # synchronous, queued behind other work (runs on the worker)
    blocker = b.execute("block g1", asynch=True)
    env.started("g1")
    caught: list[BaseException] = []

    def sync_fail() -> None:
        try:
            c.execute("fail")
        except BaseException as exc:
            caught.append(exc)

    t = threading.Thread(target=sync_fail)
    t.start()
    raw.release("g1")
    t.join(WAIT)
    assert blocker.wait_for_completion(WAIT)
    assert len(caught) == 1
    assert caught[0] is raw.raised[-1]
    assert type(caught[0]) is fake.ProgrammingError


def test_closed_connection_errors_are_the_driver_classes(env: Env) -> None:
    (cur,) = env.cursors(1)
    env.conn.close()
    with pytest.raises(fake.ProgrammingError):
        cur.execute("q")
    with pytest.raises(fake.ProgrammingError):
        cur.execute("q", asynch=True)
    with pytest.raises(fake.ProgrammingError):
        env.conn.cursor()


def test_closed_wrapped_connection_errors_are_the_driver_classes() -> None:
    conn = asynchdb.wrap(fake.connect())
    cur = conn.cursor()
    conn.close()
    with pytest.raises(fake.ProgrammingError):
        cur.execute("q", asynch=True)
    with pytest.raises(fake.ProgrammingError):
        cur.execute("q")


def test_future_with_concurrent_futures_wait_and_as_completed(env: Env) -> None:
    a, b = env.cursors(2)
    op1 = a.execute("block g1", asynch=True)
    op2 = b.execute("fail", asynch=True)
    futs = [op1.future, op2.future]
    assert op1.future is futs[0]
    done, pending = concurrent.futures.wait(futs, timeout=0)
    assert not done
    assert set(pending) == set(futs)
    env.raw.release("g1")
    done, pending = concurrent.futures.wait(futs, timeout=WAIT)
    assert not pending
    assert set(concurrent.futures.as_completed(futs, timeout=WAIT)) == set(futs)
    assert op1.future.result(0) is a
    assert op2.future.exception(0) is op2.exception(0)
    assert isinstance(op2.future.exception(0), fake.ProgrammingError)


def test_future_first_completed_is_the_first_to_end(env: Env) -> None:
    a, b = env.cursors(2)
    op1 = a.execute("block g1", asynch=True)
    op2 = b.execute("q2", asynch=True)
    env.started("g1")
    op1.abort()
    done, _ = concurrent.futures.wait([op2.future, op1.future], timeout=WAIT,
                                      return_when=concurrent.futures.FIRST_COMPLETED)
    assert op1.future in done
    assert op2.wait_for_completion(WAIT)


def test_future_of_an_aborted_operation_raises_operation_canceled(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    fut = op.future
    env.started("g1")
    op.abort()
    assert op.wait_for_completion(WAIT)
    concurrent.futures.wait([fut], timeout=WAIT)
    assert fut.done()
    with pytest.raises(concurrent.futures.CancelledError) as ei:
        fut.result(0)
    assert ei.value is op.exception(0)
    # a future taken after the end settles at once
    assert op.future.exception(0) is op.exception(0)


def test_future_with_asyncio_wrap_future(env: Env) -> None:
    a, b = env.cursors(2)

    async def main() -> None:
        op = a.execute("rows 2", asynch=True)
        cur = await asyncio.wait_for(asyncio.wrap_future(op.future), WAIT)
        assert cur is a
        op2 = b.execute("block g2", asynch=True)
        fut = asyncio.wrap_future(op2.future)
        done, _ = await asyncio.wait([fut], timeout=0)
        assert not done
        env.raw.release("g2")
        assert await asyncio.wait_for(fut, WAIT) is b
        op3 = b.execute("block g3", asynch=True)
        fut3 = asyncio.wrap_future(op3.future)
        op3.abort()
        with pytest.raises(OperationCanceled):
            await asyncio.wait_for(fut3, WAIT)
        op4 = a.execute("fail", asynch=True)
        with pytest.raises(fake.ProgrammingError):
            await asyncio.wait_for(asyncio.wrap_future(op4.future), WAIT)

    asyncio.run(main())


# ---------------------------------------------------------------------------
# waits
# ---------------------------------------------------------------------------
def test_wait_for_completion_timeout_returns_false_and_never_cancels(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    assert op.wait_for_completion(0) is False
    assert op.wait_for_completion(0.01) is False
    assert not op.done()
    assert op.get_status().phase is Phase.INITIALIZATION
    assert env.raw.log == []
    assert env.raw.lost_cancels == 0
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT) is True
    assert op.wait_for_completion(0) is True
    assert op.wait_for_completion() is True
    assert op.get_status().phase is Phase.COMPLETE
    assert env.raw.log == [("block g1", "ok")]


@pytest.mark.parametrize("method", ["wait_for_completion", "result", "exception"])
def test_infinite_wait_is_no_limit(env: Env, method: str) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    out: list[Any] = []

    def wait() -> None:
        try:
            out.append(getattr(op, method)(math.inf))
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    env.raw.release("g1")
    t.join(WAIT)
    assert not t.is_alive()
    expected = {"wait_for_completion": True, "result": cur, "exception": None}[method]
    assert out == [expected]


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, -math.inf])
@pytest.mark.parametrize("method", ["wait_for_completion", "result", "exception"])
def test_negative_or_nan_wait_raises_value_error(env: Env, method: str, bad: float) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    with pytest.raises(ValueError):
        getattr(op, method)(bad)
    assert not op.done()
    assert env.raw.log == []
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    with pytest.raises(ValueError):
        getattr(op, method)(bad)  # also once it ended


@pytest.mark.parametrize("bad", ["1", b"1", True, [1]])
def test_non_number_wait_raises_type_error(env: Env, bad: Any) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("rows 1", asynch=True)
    for method in (op.wait_for_completion, op.result, op.exception):
        with pytest.raises(TypeError):
            method(bad)
    assert op.wait_for_completion(WAIT)


def test_result_timeout_raises_timeout_error_and_the_operation_keeps_running(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    with pytest.raises(TimeoutError) as ei:
        op.result(0.01)
    assert not isinstance(ei.value, OperationCanceled)
    with pytest.raises(TimeoutError):
        op.result(0)
    with pytest.raises(TimeoutError) as ei2:
        op.exception(0.01)
    assert not isinstance(ei2.value, OperationCanceled)
    assert not op.done()
    assert op.get_status().phase is Phase.INITIALIZATION
    env.raw.release("g1")
    assert op.result(WAIT) is cur
    assert env.raw.log == [("block g1", "ok")]


# ---------------------------------------------------------------------------
# deadlines (cancel_after=)
# ---------------------------------------------------------------------------
def _check_deadline_error(exc: BaseException | None) -> None:
    assert type(exc) is DeadlineExceeded
    assert isinstance(exc, OperationCanceled)
    assert isinstance(exc, TimeoutError)
    assert isinstance(exc, concurrent.futures.CancelledError)


def test_async_deadline_aborts_with_deadline_exceeded(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True, cancel_after=0.25)
    env.started("g1")  # the deadline stops a running statement
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase is Phase.CANCELED
    exc = op.exception(0)
    _check_deadline_error(exc)
    assert st.error is exc
    assert exc.__cause__ is env.raw.raised[-1]
    assert env.raw.log == [("block g1", "canceled")]
    with pytest.raises(DeadlineExceeded):
        op.result(0)


@contextlib.contextmanager
def own_sigint_handler() -> Iterator[None]:
    """The program's own SIGINT handler: a job's synchronous call then runs inline.

    Under Python's default handler, on the main thread, such a call runs on the
    worker so that Ctrl-C lands in the wait (docs/interrupts.md).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def test_sync_deadline_raises_deadline_exceeded(env: Env) -> None:
    (cur,) = env.cursors(1)
    with pytest.raises(DeadlineExceeded) as ei, own_sigint_handler():
        cur.execute("block g1", cancel_after=0.05)
    _check_deadline_error(ei.value)
    assert env.thread_of("block g1") == threading.get_ident()  # ran inline
    assert ("block g1", "ok") not in env.raw.log
    # the cursor works again
    assert cur.execute("rows 1", cancel_after=WAIT) is cur
    assert cur.fetchall() == [(0,)]


def test_sync_deadline_without_cancel_primitive_releases_the_caller(
        make_env: Callable[..., Env]) -> None:
    env = make_env(can_cancel=False)
    a, b = env.cursors(2)
    raised: list[BaseException] = []

    def call() -> None:
        try:
            a.execute("block g1", cancel_after=0.25)
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=call)
    t.start()
    env.started("g1")
    t.join(WAIT)  # returns at the deadline although the statement still runs
    assert not t.is_alive()
    assert len(raised) == 1
    _check_deadline_error(raised[0])
    assert env.raw.log == []  # abandoned: it is still running
    op = b.execute("q2", asynch=True)
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    assert env.statements() == ["block g1", "q2"]


def test_deadline_that_does_not_pass_changes_nothing(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("rows 2", asynch=True, cancel_after=WAIT * 10)
    assert op.result(WAIT) is cur
    assert op.get_status().phase is Phase.COMPLETE
    assert cur.execute("rows 1", cancel_after=WAIT * 10) is cur
    assert cur.fetchall() == [(0,)]


def test_zero_deadline_aborts_before_the_statement_starts(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("q1", asynch=True, cancel_after=0)
    assert op.wait_for_completion(WAIT)
    _check_deadline_error(op.exception(0))
    with pytest.raises(DeadlineExceeded):
        cur.execute("q2", cancel_after=0)
    assert env.raw.log == []


def test_deadline_of_a_queued_operation_aborts_it_before_it_runs(env: Env) -> None:
    a, b = env.cursors(2)
    op1 = a.execute("block g1", asynch=True)
    env.started("g1")
    op2 = b.execute("q2", asynch=True, cancel_after=0.05)
    assert op2.wait_for_completion(WAIT)
    _check_deadline_error(op2.exception(0))
    assert not op1.done()
    env.raw.release("g1")
    assert op1.wait_for_completion(WAIT)
    assert env.statements() == ["block g1"]


def test_infinite_deadline_is_no_deadline_and_later_deadlines_still_fire(env: Env) -> None:
    a, b = env.cursors(2)
    op1 = a.execute("block g1", asynch=True, cancel_after=math.inf)
    env.started("g1")
    op2 = b.execute("q2", asynch=True, cancel_after=0.05)
    assert op2.wait_for_completion(WAIT), "a later deadline did not fire"
    _check_deadline_error(op2.exception(0))
    assert not op1.done()
    env.raw.release("g1")
    assert op1.result(WAIT) is a


def test_connect_deadline_abandons_the_connect() -> None:
    opener = GatedOpener()
    op = asynchdb.connect(opener, asynch=True, cancel_after=0.05)
    assert op.wait_for_completion(WAIT)
    _check_deadline_error(op.exception(0))
    opener.gate.set()
    assert opener.closed.wait(WAIT)


def test_sync_connect_deadline_raises_deadline_exceeded() -> None:
    opener = GatedOpener()
    with pytest.raises(DeadlineExceeded):
        asynchdb.connect(opener, cancel_after=0.05)
    opener.gate.set()
    assert opener.closed.wait(WAIT)


# ---------------------------------------------------------------------------
# garbage collection
# ---------------------------------------------------------------------------
def test_releasing_a_running_operation_and_its_cursor_aborts(env: Env) -> None:
    a, b = env.cursors(2)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    refs = [weakref.ref(op), weakref.ref(a)]
    del op, a
    gc.collect()
    assert [r() for r in refs] == [None, None]
    barrier = b.execute("q2", asynch=True)
    assert barrier.wait_for_completion(WAIT)
    assert env.raw.log == [("block g1", "canceled"), ("q2", "ok")]


def test_releasing_a_queued_operation_and_its_cursor_aborts(env: Env) -> None:
    a, b, c = env.cursors(3)
    first = a.execute("block g1", asynch=True)
    env.started("g1")
    op = b.execute("q2", asynch=True)
    del op, b
    gc.collect()
    env.raw.release("g1")
    barrier = c.execute("q3", asynch=True)
    assert barrier.wait_for_completion(WAIT)
    assert first.exception(0) is None
    assert env.statements() == ["block g1", "q3"]


def test_releasing_only_the_operation_does_not_abort(env: Env) -> None:
    a, b = env.cursors(2)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    ref = weakref.ref(op)
    del op
    gc.collect()
    assert ref() is None
    with pytest.raises(ZombieError):
        a.fetchall()  # still pending
    env.raw.release("g1")
    barrier = b.execute("q2", asynch=True)
    assert barrier.wait_for_completion(WAIT)
    assert env.raw.log == [("block g1", "ok"), ("q2", "ok")]
    assert a.fetchall() == []


def test_releasing_only_the_cursor_does_not_abort(env: Env) -> None:
    (a,) = env.cursors(1)
    op = a.execute("rows 2", asynch=True)
    del a
    gc.collect()
    cur = op.result(WAIT)
    assert isinstance(cur, asynchdb.Cursor)
    assert cur.fetchall() == [(0,), (1,)]


def test_releasing_a_pending_connect_operation_abandons_it() -> None:
    opener = GatedOpener()
    op = asynchdb.connect(opener, asynch=True)
    ref = weakref.ref(op)
    del op
    gc.collect()
    assert ref() is None
    opener.gate.set()
    assert opener.closed.wait(WAIT), "the late connection was not closed"


# ---------------------------------------------------------------------------
# closing the connection
# ---------------------------------------------------------------------------
def test_close_during_a_call_aborts_then_closes_on_the_worker(env: Env) -> None:
    a, b, c = env.cursors(3)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    queued = b.execute("q2", asynch=True)
    env.conn.close()
    assert op.done()
    assert queued.done()
    assert op.get_status().phase is Phase.CANCELED
    assert isinstance(op.exception(0).__cause__, fake.OperationalError)
    assert queued.get_status().phase is Phase.CANCELED
    assert env.raw.log == [("block g1", "canceled")]
    assert env.raw.closed
    assert env.raw.closed_by is not None
    assert env.raw.closed_by != threading.get_ident()
    assert env.conn.closed
    with pytest.raises(fake.ProgrammingError):
        c.execute("q3", asynch=True)
    env.conn.close()  # twice is harmless


def test_close_with_a_statement_deaf_to_cancel_closes_when_it_returns(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("hang g1", asynch=True)
    env.started("g1")
    canceled = threading.Event()
    real_cancel = env.raw.cancel

    def cancel() -> None:
        real_cancel()
        canceled.set()

    env.raw.cancel = cancel
    closer = threading.Thread(target=env.conn.close)
    closer.start()
    assert canceled.wait(WAIT)  # close() sent the cancel: the driver ignores it
    assert env.conn.closed
    assert not env.raw.closed  # never while the driver call runs
    env.raw.release("g1")
    closer.join(WAIT)
    assert not closer.is_alive()
    assert op.wait_for_completion(WAIT)
    assert env.raw.closed
    assert env.raw.closed_by != threading.get_ident()
    assert env.raw.closed_by != closer.ident


def test_close_while_the_worker_closes_a_parked_cursor_stops_the_next_statement(
        env: Env) -> None:
    # A cursor closed while the worker owns the connection is parked; the
    # worker closes it before it takes the next statement off the queue.  A
    # connection close that arrives meanwhile must still find that statement
    # queued and stop it: taken off the queue first, it would be neither
    # queued nor running, and would run to its end after the close (the
    # stress runner's "close: ran to its natural end after its abort").
    a, b, parked = env.cursors(3)
    closing = threading.Event()
    go_on = threading.Event()
    raw_parked: Any = parked.driver_cursor
    real_close = raw_parked.close

    def slow_close() -> None:
        closing.set()
        assert go_on.wait(WAIT)
        real_close()

    raw_parked.close = slow_close
    first = a.execute("block g1", asynch=True)
    env.started("g1")
    parked.close()  # the worker owns the connection: parked
    second = b.execute("block g2", asynch=True)
    env.raw.release("g1")
    assert closing.wait(WAIT)  # the worker is closing the parked cursor
    closer = threading.Thread(target=env.conn.close)
    closer.start()
    assert wait_until(lambda: env.conn.closed, WAIT)
    go_on.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert first.get_status().phase is Phase.COMPLETE
    assert second.wait_for_completion(WAIT)
    assert second.get_status().phase is Phase.CANCELED
    assert not env.raw.started("g2").is_set()  # it never reached the driver
    assert [sql for sql, _ in env.raw.log] == ["block g1"]
    assert env.raw.closed


def test_close_of_an_idle_connection_closes_inline(env: Env) -> None:
    (cur,) = env.cursors(1)
    cur.execute("q1")
    env.conn.close()
    assert env.raw.closed
    assert env.raw.closed_by == threading.get_ident()


def test_close_after_asynchronous_work_ended(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("rows 1", asynch=True)
    assert op.wait_for_completion(WAIT)
    env.conn.close()
    assert env.raw.closed
    assert op.get_status().phase is Phase.COMPLETE


# ---------------------------------------------------------------------------
# threads: inline fast path, hops
# ---------------------------------------------------------------------------
def test_sync_calls_run_inline_without_a_thread_hop(env: Env) -> None:
    me = threading.get_ident()
    cur = env.conn.cursor()
    assert cur.execute("rows 2") is cur
    assert cur.fetchone() == (0,)
    assert cur.fetchall() == [(1,)]
    cur.executemany("m", [(1,), (2,)])
    assert cur.callproc("p", (1,)) == ("out", 1)
    cur.nextset()
    env.conn.commit()
    # with a deadline or a listener too, when the connection is free (and
    # Ctrl-C cannot interrupt them: see own_sigint_handler)
    with own_sigint_handler():
        assert cur.execute("d", cancel_after=WAIT) is cur
        rec = StopRecorder()
        assert cur.execute("l", listener=rec) is cur
    assert {t for _, t, _ in env.raw.calls} == {me}
    assert env.raw.threads == {me}
    assert worker_threads() == []
    # another thread's synchronous calls run on that thread
    other: dict[str, Any] = {}

    def run() -> None:
        other["ident"] = threading.get_ident()
        env.conn.cursor().execute("o")

    t = threading.Thread(target=run)
    t.start()
    t.join(WAIT)
    assert env.thread_of("o") == other["ident"]
    assert worker_threads() == []


def test_asynchronous_calls_run_on_a_worker(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("a1", asynch=True)
    assert op.wait_for_completion(WAIT)
    ((_, ident, name),) = env.raw.calls
    assert ident != threading.get_ident()
    assert name.startswith("asynchdb-worker")


def test_sync_call_while_async_work_is_queued_runs_after_it(env: Env) -> None:
    a, b, c = env.cursors(3)
    op1 = a.execute("block g1", asynch=True)
    env.started("g1")
    op2 = b.execute("q2", asynch=True)
    result: dict[str, Any] = {}

    def sync_call() -> None:
        result["ident"] = threading.get_ident()
        result["value"] = c.execute("s3")

    t = threading.Thread(target=sync_call)
    t.start()
    assert not op2.done()
    env.raw.release("g1")
    t.join(WAIT)
    assert not t.is_alive()
    assert op1.wait_for_completion(WAIT)
    assert op2.wait_for_completion(WAIT)
    assert result["value"] is c  # the drop-in return value
    assert env.statements() == ["block g1", "q2", "s3"]
    assert env.thread_of("s3") != result["ident"]


# ---------------------------------------------------------------------------
# bad input: refused before anything runs
# ---------------------------------------------------------------------------
BAD_CALL_KWARGS: list[tuple[dict[str, Any], type[BaseException]]] = [
    ({"asynch": True, "cancel_after": -1}, ValueError),
    ({"asynch": True, "cancel_after": -0.5}, ValueError),
    ({"asynch": True, "cancel_after": math.nan}, ValueError),
    ({"asynch": True, "cancel_after": "1"}, TypeError),
    ({"asynch": True, "cancel_after": True}, TypeError),
    ({"cancel_after": -1}, ValueError),
    ({"cancel_after": math.nan}, ValueError),
    ({"cancel_after": "1"}, TypeError),
    ({"asynch": 0x40}, ValueError),
    ({"asynch": 0x41}, ValueError),
    ({"asynch": 0x100}, ValueError),
    ({"asynch": -1}, ValueError),
    ({"asynch": "yes"}, TypeError),
    ({"asynch": 1.0}, TypeError),
    ({"asynch": Asynch.RANDOM_POPULATION}, asynchdb.NotSupportedError),
    ({"asynch": Asynch.INITIALIZE | Asynch.RANDOM_POPULATION}, asynchdb.NotSupportedError),
    ({"asynch": 0x04}, asynchdb.NotSupportedError),
    ({"asynch": True, "listener": object()}, TypeError),
    ({"listener": object()}, TypeError),
    ({"asynch": True, "listener": 42}, TypeError),
]

CALLS: dict[str, Callable[..., Any]] = {
    "execute": lambda c, **kw: c.execute("q1", **kw),
    "executemany": lambda c, **kw: c.executemany("q1", [(1,)], **kw),
    "callproc": lambda c, **kw: c.callproc("q1", (), **kw),
    "nextset": lambda c, **kw: c.nextset(**kw),
}


@pytest.mark.parametrize(("kwargs", "error"), BAD_CALL_KWARGS,
                         ids=[repr(k) for k, _ in BAD_CALL_KWARGS])
def test_bad_input_to_a_call_is_refused_before_anything_runs(
        env: Env, kwargs: dict[str, Any], error: type[BaseException]) -> None:
    (cur,) = env.cursors(1)
    for name, call in CALLS.items():
        with pytest.raises(error):
            call(cur, **kwargs)
        assert env.raw.log == [], name
    assert env.raw.log == []
    assert worker_threads() == []
    # the cursor is not left a zombie
    assert cur.execute("q2") is cur
    assert env.raw.log == [("q2", "ok")]


def test_not_supported_error_is_a_value_error(env: Env) -> None:
    (cur,) = env.cursors(1)
    with pytest.raises(ValueError):
        cur.execute("q1", asynch=Asynch.RANDOM_POPULATION)
    assert env.raw.log == []


BAD_CONNECT_KWARGS: list[tuple[dict[str, Any], type[BaseException]]] = [
    ({"asynch": True, "cancel_after": -1}, ValueError),
    ({"asynch": True, "cancel_after": math.nan}, ValueError),
    ({"asynch": True, "cancel_after": "1"}, TypeError),
    ({"cancel_after": -1}, ValueError),
    ({"asynch": 0x40}, ValueError),
    ({"asynch": "yes"}, TypeError),
    ({"asynch": Asynch.RANDOM_POPULATION}, asynchdb.NotSupportedError),
    ({"asynch": True, "listener": object()}, TypeError),
    ({"listener": object()}, TypeError),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_CONNECT_KWARGS,
                         ids=[repr(k) for k, _ in BAD_CONNECT_KWARGS])
def test_bad_input_to_connect_is_refused_before_anything_runs(
        kwargs: dict[str, Any], error: type[BaseException]) -> None:
    calls: list[int] = []

    def opener() -> Any:
        calls.append(1)
        return fake.connect()

    with pytest.raises(error):
        asynchdb.connect(opener, **kwargs)
    assert calls == []
    assert worker_threads() == []


@pytest.mark.parametrize("driver", [42, None, "sqlite3", object(), math, b"x"],
                         ids=["int", "None", "str", "object", "module-without-connect", "bytes"])
def test_connect_refuses_what_is_not_a_dbapi_driver(driver: Any) -> None:
    for asynch in (False, True):
        with pytest.raises(TypeError):
            asynchdb.connect(driver, asynch=asynch)
    assert worker_threads() == []


@pytest.mark.parametrize("obj", [42, None, object(), fake, "conn"],
                         ids=["int", "None", "object", "module", "str"])
def test_wrap_refuses_what_is_not_an_open_dbapi_connection(obj: Any) -> None:
    with pytest.raises(TypeError):
        asynchdb.wrap(obj)
    assert worker_threads() == []


def test_wrap_of_a_wrapped_connection_is_itself(env: Env) -> None:
    assert asynchdb.wrap(env.conn) is env.conn


def test_a_close_between_a_statement_and_its_population_still_ends_it() -> None:
    """A population that parks after the connection closed stops itself.

    Between the statement's end and the population's first batch the job is
    neither queued, parked nor running, so a close's stop finds nothing to
    stop.  A listener holds the worker there (it hears POPULATION on the
    worker) until the close has stopped everything it could see and queued
    the driver's close; the population then fills the buffer and would wait
    for room nobody makes: it must end CANCELED instead (found by
    test_stateful on Python 3.9, then 2 in 3 closes with a vetoing listener).
    """
    conn = asynchdb.connect(fake)
    closer: list[threading.Thread] = []

    class HoldAtPopulation:
        def on_progress(self, op: Any, status: Any) -> None:
            if status.phase == Phase.POPULATION and not closer:
                t = threading.Thread(target=conn.close, name="test-close", daemon=True)
                closer.append(t)
                t.start()
                # the close stopped what it saw and queued the driver's close
                assert wait_until(lambda: conn.statistics()["queued"] >= 1, 5.0)

    cur = conn.cursor()
    cur.buffer_rows = 3
    op = cur.execute("rows 10", asynch=Asynch.SEQUENTIAL_POPULATION,
                     listener=HoldAtPopulation())
    assert op.wait_for_completion(10), f"still {op.get_status()} after the close"
    status = op.get_status()
    assert status.phase == Phase.CANCELED, status
    assert isinstance(status.error, OperationCanceled) and "closed" in str(status.error)
    closer[0].join(10)
    assert not closer[0].is_alive() and conn.closed


def test_releasing_the_cursor_the_handle_and_its_future_still_aborts() -> None:
    """Taking ``op.future`` once must not keep the cursor alive for as long as the job runs.

    The job keeps the future's relay until it ends; the relay held the cursor
    (the future's value), so releasing every reference no longer aborted the
    statement (test_stateful on Python 3.9).
    """
    conn = asynchdb.connect(fake)
    raw = conn.driver_connection
    try:
        cur = conn.cursor()
        op = cur.execute("block g1", asynch=True)
        fut = op.future
        assert raw.started("g1").wait(5)
        job = op._job
        del cur, op, fut
        gc.collect()
        assert job.wait(5), "releasing the cursor, the handle and the future did not abort"
        assert job.status().phase == Phase.CANCELED
        assert ("block g1", "canceled") in raw.log
    finally:
        raw.release("g1")
        conn.close()


def test_a_futures_callbacks_hear_the_abort_that_releasing_made() -> None:
    """The future does not hold the statement, but its callbacks still hear how it ended."""
    conn = asynchdb.connect(fake)
    raw = conn.driver_connection
    heard: list[Any] = []
    try:
        cur = conn.cursor()
        op = cur.execute("block g1", asynch=True)
        op.future.add_done_callback(heard.append)
        assert raw.started("g1").wait(5)
        del cur, op
        gc.collect()
        assert wait_until(lambda: len(heard) == 1, 5), "the future never settled"
        assert isinstance(heard[0].exception(0), OperationCanceled)
        assert ("block g1", "canceled") in raw.log
    finally:
        raw.release("g1")
        conn.close()


def test_the_future_of_an_execute_gives_its_cursor() -> None:
    conn = asynchdb.connect(fake)
    raw = conn.driver_connection
    try:
        cur = conn.cursor()
        fut = cur.execute("block g1; rows 2", asynch=True).future
        assert raw.started("g1").wait(5)
        gc.collect()
        assert not fut.done()  # the cursor is held: nothing aborted it
        raw.release("g1")
        assert fut.result(5) is cur
        assert cur.nextset() is True and cur.fetchall() == [(0,), (1,)]
    finally:
        raw.release("g1")
        conn.close()
