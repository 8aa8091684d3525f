"""Statements an event loop's thread steps itself (psycopg 3; asynchdb/_stepper.py).

``execute(..., asynch=True)`` on a loop's thread runs on that thread, one step
per ready socket, with no worker.  What must hold, each on the real server,
on the default loop and on uvloop, each under a watchdog (a regression is a
deadlock: it fails in seconds instead of hanging):

* the statement really runs on the loop's thread, and many in flight keep
  each connection's order;
* every way the loop's thread can block on a connection whose statement it
  steps (a synchronous call, ``wait_for_completion``, ``close``) hands the
  statement to a worker instead of waiting for itself;
* a loop that stops serving its statements without calling asynchdb (its
  thread blocked in user code, the loop closed) has them finished by a
  worker (the watchdog);
* an abort and an error end on a worker, with the connection repaired.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest
from plugin import BOUND, WATCHDOG, bounded, require_module, wait_until

import asynchdb
from asynchdb import Phase
from benchmarks.backends import BY_NAME, marker

pytestmark = pytest.mark.backend("psycopg")
uvloop = require_module("uvloop")

B = BY_NAME["psycopg"]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(coro: Coroutine[Any, Any, Any], kind: str) -> Any:
    """Run ``coro`` on a fresh loop of ``kind`` under the watchdog, then close the loop."""
    def scenario() -> Any:
        loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    return bounded(scenario)


def _stepping(conn: asynchdb.Connection) -> bool:
    return conn._ch.stepping is not None  # type: ignore[attr-defined]


def test_statements_run_on_the_loop_thread_in_order(loop_kind: str) -> None:
    with B.wrapped(autocommit=True) as a, B.wrapped(autocommit=True) as b:
        seen: list[int] = []
        # a notice is handled inside the step that reads it: on the stepping thread
        a.driver_connection.add_notice_handler(lambda _: seen.append(threading.get_ident()))
        conns = [a, b]

        async def main() -> tuple[int, list[Any]]:
            cursors = [conns[k % 2].cursor() for k in range(40)]
            ops = [cur.execute("SELECT %s, clock_timestamp()", (k,), asynch=True)
                   for k, cur in enumerate(cursors)]
            assert _stepping(a) and _stepping(b)  # started here, waiting for the server
            await asyncio.gather(*ops)
            notice = a.cursor().execute(
                "DO $$ BEGIN RAISE NOTICE 'hello'; END $$", asynch=True)
            await notice
            return threading.get_ident(), [c.fetchone() for c in cursors]

        loop_thread, rows = run(main(), loop_kind)
        assert [r[0] for r in rows] == list(range(40))
        for i in range(2):  # one connection's statements ran in the order they were started
            times = [r[1] for r in rows[i::2]]
            assert times == sorted(times)
        assert seen == [loop_thread]
        assert not _stepping(a) and not _stepping(b)


@pytest.mark.parametrize("how", ["sync_call", "wait_for_completion", "result", "commit"])
def test_blocking_on_the_loop_thread_hands_the_statement_over(loop_kind: str, how: str) -> None:
    with B.wrapped(autocommit=True) as conn:

        async def main() -> Any:
            cur = conn.cursor()
            op = cur.execute("SELECT 41, pg_sleep(0.3)", asynch=True)
            queued = conn.cursor().execute("SELECT 42", asynch=True)
            assert _stepping(conn)
            if how == "sync_call":  # a plain call waits its turn, on this thread
                assert conn.cursor().execute("SELECT 43").fetchall() == [(43,)]
            elif how == "wait_for_completion":
                assert op.wait_for_completion(BOUND)
            elif how == "result":
                assert op.result(BOUND) is cur
            else:  # a connection method waits its turn too
                conn.commit()
            assert op.wait_for_completion(BOUND) and queued.wait_for_completion(BOUND)
            return cur.fetchall(), queued.result().fetchall(), op.get_status().phase

        first, second, phase = run(main(), loop_kind)
        assert (first[0][0], second, phase) == (41, [(42,)], Phase.COMPLETE)


def test_close_on_the_loop_thread_stops_the_statement(loop_kind: str) -> None:
    tag = marker()
    with B.monitor() as running:
        conn = B.connect(autocommit=True)

        async def main() -> asynchdb.Operation[Any]:
            op = conn.cursor().execute(B.long_sql(60, tag), asynch=True)
            assert wait_until(lambda: running(tag), BOUND)
            conn.close()
            return op

        op = run(main(), loop_kind)
        assert op.wait_for_completion(BOUND)
        assert op.get_status().phase == Phase.CANCELED
        assert wait_until(lambda: not running(tag), BOUND)


def test_a_blocked_loop_thread_has_its_statement_finished_elsewhere(loop_kind: str) -> None:
    """The loop's thread waits for something only the statement's end brings (watchdog)."""
    with B.wrapped(autocommit=True) as conn:
        ended = threading.Event()

        async def main() -> float:
            op = conn.cursor().execute("SELECT pg_sleep(0.05)", asynch=True)
            threading.Thread(target=lambda: op.wait_for_completion(BOUND) and ended.set(),
                             daemon=True).start()
            t0 = time.monotonic()
            assert ended.wait(BOUND), "the statement never ended while its loop was blocked"
            await op
            return time.monotonic() - t0

        assert run(main(), loop_kind) < BOUND


def test_statements_left_in_flight_when_the_loop_closes_still_end(loop_kind: str) -> None:
    with B.wrapped(autocommit=True) as conn:
        box: list[asynchdb.Operation[Any]] = []

        async def main() -> None:
            cur = conn.cursor()
            box.append(cur.execute("SELECT 7, pg_sleep(0.1)", asynch=True))
            box.append(conn.cursor().execute("SELECT 8", asynch=True))
            # returns at once: the loop closes with both in flight

        run(main(), loop_kind)
        first, second = box
        assert first.result(WATCHDOG).fetchall()[0][0] == 7
        assert second.result(WATCHDOG).fetchall() == [(8,)]
        assert conn.cursor().execute("SELECT 9").fetchall() == [(9,)]


def test_error_and_abort_in_a_transaction_leave_the_connection_usable(loop_kind: str) -> None:
    tag = marker()
    with B.wrapped() as conn, B.monitor() as running:  # not autocommit: in a transaction

        async def main() -> Any:
            with pytest.raises(B.module().errors.DivisionByZero):
                await conn.cursor().execute("SELECT 1/0", asynch=True)
            conn.rollback()  # the driver's error leaves the transaction failed, as raw
            op = conn.cursor().execute(B.long_sql(60, tag), asynch=True)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(op, 0.5)
            assert op.get_status().phase == Phase.CANCELED
            # the adapter's repair rolled the failed transaction back
            return (await conn.cursor().execute("SELECT 5", asynch=True)).fetchall()

        assert run(main(), loop_kind) == [(5,)]
        assert wait_until(lambda: not running(tag), BOUND)


def test_other_threads_calls_interleave_with_stepped_statements(loop_kind: str) -> None:
    with B.wrapped(autocommit=True) as conn:
        got: list[Any] = []
        stop = threading.Event()

        def other() -> None:
            while not stop.is_set():
                got.append(conn.cursor().execute("SELECT 1").fetchall())

        async def main() -> list[Any]:
            t = threading.Thread(target=other)
            t.start()
            try:
                cursors = [conn.cursor() for _ in range(200)]
                for k, cur in enumerate(cursors):
                    cur.execute("SELECT %s", (k,), asynch=True)
                    if k % 10 == 9:
                        await asyncio.sleep(0)
                while any(c._guard is not None and not c._guard.done() for c in cursors):
                    await asyncio.sleep(0.001)
                return [c.fetchone()[0] for c in cursors]
            finally:
                stop.set()
                t.join(WATCHDOG)

        assert run(main(), loop_kind) == list(range(200))
        assert got and all(g == [(1,)] for g in got)


def test_a_cursor_closed_while_a_statement_is_stepped_waits_for_it(loop_kind: str) -> None:
    """Closing a server-side cursor needs psycopg's connection lock, which the statement holds.

    The close is parked, and the worker that finishes the handed-over
    statement closes it only after the statement (it deadlocked before).
    """
    with B.wrapped(autocommit=True) as conn:

        async def main() -> Any:
            named = conn.cursor(name="parked")
            cur = conn.cursor()
            op = cur.execute("SELECT 3, pg_sleep(0.2)", asynch=True)
            assert _stepping(conn)
            named.close()  # parked: the connection is the statement's
            assert op.wait_for_completion(BOUND)  # hands the statement over
            return cur.fetchall()

        assert run(main(), loop_kind)[0][0] == 3
        assert conn.cursor().execute("SELECT 4").fetchall() == [(4,)]
