"""The stepper's hand-overs on a deterministic fake driver with steps (no server).

The fake's statement is one step that waits for a byte on a socket pair: the
test writes that byte, so it decides when the "server" answers, and where the
loop's thread is at that moment.  Each scenario runs under the watchdog
(``plugin.bounded``): a regression is a deadlock and fails in seconds.
The same behaviours on PostgreSQL: tests/test_stepper.py.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from collections.abc import Generator
from typing import Any, Optional

import pytest
from plugin import BOUND, await_until, bounded, wait_until

import asynchdb
from asynchdb import Phase, _stepper
from asynchdb.adapters import Adapter, CallView, ConnectionView, Steps


class Canceled(Exception):
    """The fake server's answer to a cancel."""


class StepsAdapter(Adapter):
    name = "stepfake"
    can_cancel = True
    cursor_anywhere = True  # the fake's cursor() makes no call

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        conn.raw.answer(b"c")

    def is_cancel_error(self, exc: BaseException) -> bool:
        return isinstance(exc, Canceled)

    def after_abort(self, conn: ConnectionView) -> None:
        conn.raw.repairs += 1

    def execute_steps(self, conn: ConnectionView, cursor: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Optional[tuple[int, Steps]]:
        return conn.raw.client.fileno(), cursor.steps(*args)


class FakeConnection:
    """A connection whose every statement waits for one byte from the "server"."""

    __asynchdb_adapter__ = StepsAdapter

    def __init__(self) -> None:
        self.client, self.server = socket.socketpair()
        #: (what, statement, thread name) for every statement's start and end
        #: (names: a finished thread's id is reused by the next thread)
        self.log: list[tuple[str, str, str]] = []
        self.waiting = threading.Event()  # a statement waits for its byte
        self.repairs = 0

    def answer(self, byte: bytes) -> None:
        self.server.send(byte)

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.client.close()
        self.server.close()


class FakeCursor:
    description = None
    rowcount = -1
    arraysize = 1

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.value: Any = None

    def steps(self, sql: str) -> Generator[int, int, FakeCursor]:
        conn = self.conn
        conn.log.append(("start", sql, threading.current_thread().name))
        conn.waiting.set()
        while not (yield 1):  # sent 0: nothing ready yet, ask again
            pass
        if sql == "twice":  # a statement of two steps
            conn.client.recv(1)
            while not (yield 1):
                pass
        byte = conn.client.recv(1)
        conn.waiting.clear()
        conn.log.append(("end", sql, threading.current_thread().name))
        if byte == b"c":
            raise Canceled(sql)
        if sql == "interrupt":  # as if Ctrl-C landed inside the driver's code
            raise KeyboardInterrupt
        self.value = (sql, byte.decode())
        return self

    def execute(self, sql: str) -> FakeCursor:
        # the blocking call a worker makes: the same steps, waited for with select
        gen = self.steps(sql)
        try:
            mask = next(gen)
            while True:
                select.select([self.conn.client], [], [])
                mask = gen.send(mask)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def fetchall(self) -> list[Any]:
        return [self.value]

    def close(self) -> None:
        pass


def run_loop(coro: Any) -> Any:
    """Run ``coro`` on a fresh loop under the watchdog; close the loop."""
    def scenario() -> Any:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    return bounded(scenario)


@pytest.fixture
def conn() -> Any:
    raw = FakeConnection()
    c = asynchdb.wrap(raw)
    yield c
    c.close()


def _threads(conn: Any, sql: str) -> tuple[str, str]:
    raw = conn.driver_connection
    start = next(t for what, s, t in raw.log if what == "start" and s == sql)
    end = next(t for what, s, t in raw.log if what == "end" and s == sql)
    return start, end


def test_a_statement_is_stepped_on_the_loop_thread(conn: Any) -> None:
    raw = conn.driver_connection

    async def main() -> str:
        op = conn.cursor().execute("one", asynch=True)
        assert conn._ch.stepping is not None
        raw.answer(b"x")
        assert (await op).fetchall() == [("one", "x")]
        return threading.current_thread().name

    loop_thread = run_loop(main())
    assert _threads(conn, "one") == (loop_thread, loop_thread)
    assert conn._ch.stepping is None


def test_a_synchronous_call_on_the_loop_thread_hands_the_statement_over(conn: Any) -> None:
    raw = conn.driver_connection

    def server() -> None:
        # answers once the statement left the loop (the loop's thread is blocked)
        if wait_until(lambda: conn._ch.stepping is None, BOUND):
            raw.answer(b"x")

    async def main() -> tuple[str, Any]:
        op = conn.cursor().execute("one", asynch=True)
        helper = threading.Thread(target=server)
        helper.start()
        conn.commit()  # waits its turn behind the statement, on this thread
        helper.join(BOUND)
        return threading.current_thread().name, op.result(0)

    loop_thread, cur = run_loop(main())
    start, end = _threads(conn, "one")
    assert start == loop_thread and end != loop_thread  # finished on a worker
    assert cur.fetchall() == [("one", "x")]


def test_the_watchdog_hands_over_a_blocked_loop_and_the_next_statement_is_stepped(
        conn: Any) -> None:
    raw = conn.driver_connection
    ended = threading.Event()

    async def main() -> tuple[str, Any, Any]:
        op = conn.cursor().execute("one", asynch=True)
        cur2 = conn.cursor()

        def server() -> None:
            raw.answer(b"x")
            if op.wait_for_completion(BOUND):
                ended.set()

        threading.Thread(target=server, daemon=True).start()
        # blocked in user code on something only the statement's end brings
        assert ended.wait(BOUND), "the statement never ended while its loop was blocked"
        # the loop's registration for the socket is stale now; a new
        # statement on the same socket registers its own and is stepped here
        op2 = cur2.execute("two", asynch=True)
        for _ in range(3):
            await asyncio.sleep(0)  # the loop polls: the stale callback has nothing to do
        raw.answer(b"y")
        return threading.current_thread().name, await op, await op2

    loop_thread, first, second = run_loop(main())
    assert _threads(conn, "one")[1] != loop_thread
    assert _threads(conn, "two") == (loop_thread, loop_thread)
    assert first.fetchall() == [("one", "x")] and second.fetchall() == [("two", "y")]


def test_a_cancelled_task_aborts_the_stepped_statement(conn: Any) -> None:
    async def main() -> asynchdb.Operation[Any]:
        op = conn.cursor().execute("one", asynch=True)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(op, 0.05)
        return op

    op = run_loop(main())
    assert op.get_status().phase == Phase.CANCELED
    assert isinstance(op.exception().__cause__, Canceled)  # the driver's own answer
    # the connection goes on: the next statement, from a plain thread, on a worker
    nxt = conn.cursor().execute("two", asynch=True)
    assert conn.driver_connection.waiting.wait(BOUND)
    conn.driver_connection.answer(b"z")
    assert nxt.result(BOUND).fetchall() == [("two", "z")]


def test_statements_in_flight_when_the_loop_closes_end_on_a_worker(conn: Any) -> None:
    box: list[asynchdb.Operation[Any]] = []

    async def main() -> str:
        first, second = conn.cursor(), conn.cursor()
        box.append(first.execute("one", asynch=True))
        box.append(second.execute("two", asynch=True))  # queued behind it
        return threading.current_thread().name

    loop_thread = run_loop(main())  # the loop closes with both in flight
    raw = conn.driver_connection
    raw.answer(b"x")
    assert box[0].wait_for_completion(BOUND)
    assert raw.waiting.wait(BOUND)  # the worker runs the next one now
    raw.answer(b"y")
    assert box[1].result(BOUND).fetchall() == [("two", "y")]
    assert box[0].result(0).fetchall() == [("one", "x")]
    assert _threads(conn, "one")[0] == loop_thread
    assert loop_thread not in _threads(conn, "two")


def test_a_statement_started_while_another_thread_calls_inline_does_not_block_the_loop(
        conn: Any) -> None:
    raw = conn.driver_connection
    other = threading.Thread(target=lambda: conn.cursor().execute("inline"))
    other.start()  # owns the connection inline (nothing was queued), waiting for its byte
    assert raw.waiting.wait(BOUND)

    async def main() -> tuple[bool, Any]:
        op = conn.cursor().execute("one", asynch=True)  # must not wait for "inline"
        still_inline = [what for what, sql, _ in raw.log if sql == "inline"] == ["start"]
        raw.answer(b"a")  # "inline" ends; a worker then runs "one"
        other.join(BOUND)
        assert wait_until(lambda: raw.waiting.is_set() and len(raw.log) == 3, BOUND)
        raw.answer(b"b")
        return still_inline, await op

    still_inline, cur = run_loop(main())
    assert still_inline, "execute(asynch=True) returned only after the inline call ended"
    assert cur.fetchall() == [("one", "b")]


def test_an_interrupt_inside_a_step_leaves_the_connection_served_and_repaired(
        conn: Any) -> None:
    raw = conn.driver_connection
    box: list[asynchdb.Operation[Any]] = []

    async def main() -> None:
        first, second = conn.cursor(), conn.cursor()
        box.append(first.execute("interrupt", asynch=True))
        box.append(second.execute("two", asynch=True))
        raw.answer(b"x")
        await box[1]

    with pytest.raises(KeyboardInterrupt):
        run_loop(main())  # the interrupt leaves the loop, as Ctrl-C's would
    assert box[0].wait_for_completion(BOUND)
    assert raw.repairs == 1  # the adapter's repair ran before anything else
    assert raw.waiting.wait(BOUND)  # and the next statement runs, on a worker
    raw.answer(b"y")
    assert box[1].result(BOUND).fetchall() == [("two", "y")]


class _NoReaders(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """A loop that cannot watch sockets (as Windows' proactor loop)."""

    add_reader = asyncio.AbstractEventLoop.add_reader  # type: ignore[assignment]


class _RefusesReaders(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """A loop that has add_reader but refuses it at run time."""

    def add_reader(self, *args: Any) -> None:  # type: ignore[override]
        raise NotImplementedError


@pytest.mark.parametrize("loop_class", [_NoReaders, _RefusesReaders])
def test_a_loop_that_cannot_watch_sockets_leaves_the_statement_to_a_worker(
        conn: Any, loop_class: type) -> None:
    raw = conn.driver_connection

    def scenario() -> Any:
        loop = loop_class()

        async def main() -> Any:
            op = conn.cursor().execute("one", asynch=True)
            assert raw.waiting.wait(BOUND)
            raw.answer(b"x")
            return await op

        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    assert bounded(scenario).fetchall() == [("one", "x")]
    assert _threads(conn, "one")[1] != "bounded-scenario"


def _interrupt_once(monkeypatch: pytest.MonkeyPatch, name: str, call: int) -> None:
    """Make ``_Stepper.<name>`` raise KeyboardInterrupt on its ``call``-th call, as Ctrl-C."""
    original = getattr(_stepper._Stepper, name)
    calls = [0]

    def interrupted(self: Any, *args: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(_stepper._Stepper, name, interrupted)


@pytest.mark.parametrize(("name", "call", "sql"), [
    ("watch", 2, "twice"),  # between two steps
    ("_end", 1, "one"),     # after the last step, before its job ended
])
def test_an_interrupt_between_steps_leaves_the_statement_to_a_worker(
        conn: Any, monkeypatch: pytest.MonkeyPatch, name: str, call: int, sql: str) -> None:
    raw = conn.driver_connection
    _interrupt_once(monkeypatch, name, call)
    box: list[asynchdb.Operation[Any]] = []

    async def main() -> None:
        box.append(conn.cursor().execute(sql, asynch=True))
        raw.answer(b"x")
        await box[0]

    with pytest.raises(KeyboardInterrupt):
        run_loop(main())
    if sql == "twice":
        raw.answer(b"y")
    op = box[0]
    assert op.result(BOUND).fetchall() == [(sql, "y" if sql == "twice" else "x")]
    assert conn._ch.stepping is None
    nxt = conn.cursor().execute("next", asynch=True)  # the connection goes on
    assert raw.waiting.wait(BOUND)
    raw.answer(b"z")
    assert nxt.result(BOUND).fetchall() == [("next", "z")]


class SlowCancelAdapter(StepsAdapter):
    """A cancel that stays on its way until the test lets it go (psycopg opens a
    connection to send one)."""

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        raw = conn.raw
        raw.cancel_sent.set()
        assert raw.cancel_go.wait(BOUND)


class SlowCancelConnection(FakeConnection):
    __asynchdb_adapter__ = SlowCancelAdapter

    def __init__(self) -> None:
        super().__init__()
        self.cancel_sent = threading.Event()
        self.cancel_go = threading.Event()


def test_a_statement_that_returns_while_its_cancel_is_on_the_way_never_blocks_the_loop() -> None:
    # The last step returns a value while an abort's cancel holds the cancel
    # lock.  The loop's thread must not wait for that lock (Channel.end_now):
    # a worker ends the job once the cancel is through, and the value stands
    # (a cancel that arrives after the end destroys nothing here).
    raw = SlowCancelConnection()
    conn = asynchdb.wrap(raw)
    ended_on: list[str] = []
    try:
        async def main() -> tuple[str, bool, bool, Any]:
            op = conn.cursor().execute("one", asynch=True)
            op.future.add_done_callback(
                lambda _: ended_on.append(threading.current_thread().name))
            aborter = threading.Thread(target=op.abort)
            aborter.start()
            assert raw.cancel_sent.wait(BOUND)  # the abort holds the cancel lock now
            raw.answer(b"x")  # ... and the statement returns
            # the loop's thread goes on stepping and serving this coroutine
            # while the cancel is still on its way
            free = await await_until(lambda: conn._ch.stepping is None)
            pending = not op.done()  # a worker waits for the cancel to end it
            raw.cancel_go.set()
            aborter.join(BOUND)
            cur = await op
            return threading.current_thread().name, free, pending, cur

        loop_thread, free, pending, cur = run_loop(main())
        assert free, "the loop's thread waited for the cancel lock"
        assert pending
        assert cur.fetchall() == [("one", "x")]
        assert _threads(conn, "one") == (loop_thread, loop_thread)  # stepped on the loop
        assert ended_on and ended_on[0] != loop_thread  # ended on a worker
    finally:
        raw.cancel_go.set()
        conn.close()

