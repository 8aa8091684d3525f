"""What ``await op`` suspends on (asynchdb._aio._Ended), under both of asyncio's tasks.

``_Ended`` is not an ``asyncio.Future``: it has the part of one that a task
uses for what a coroutine yields, and the inbox's drain runs the task's
wake-up itself.  CPython has two tasks that use that part, the C one
(``asyncio.Task``) and the Python one (``asyncio.tasks._PyTask``), which
call it differently (``cancel(msg)`` positionally or by keyword): every
behaviour here runs under both.  Against the fake driver; every wait is
bounded (``asyncio.wait_for`` around each run, ``fake.MAX_BLOCK`` in the
driver).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, Callable

import pytest

import asynchdb
from asynchdb import Phase, _aio
from asynchdb import testing as fake

WAIT = 5.0

TASKS: dict[str, Callable[..., asyncio.Task[Any]]] = {
    "c-task": asyncio.Task,
    "python-task": asyncio.tasks._PyTask,  # type: ignore[attr-defined]
}


@pytest.fixture(params=sorted(TASKS))
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Coroutine[Any, Any, Any]], Any]]:
    """Run a coroutine on a fresh loop whose tasks are all of one kind."""
    make = TASKS[request.param]
    loop = asyncio.new_event_loop()
    loop.set_task_factory(lambda lp, coro, **kw: make(coro, loop=lp, **kw))

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        return loop.run_until_complete(asyncio.wait_for(coro, WAIT))

    yield runner
    loop.close()


@pytest.fixture
def conn() -> Iterator[asynchdb.Connection]:
    c = asynchdb.connect(fake)
    yield c
    for name in list(c.driver_connection._started):
        c.driver_connection.release(name)
    c.close()


def test_value_error_and_many_awaiters(run: Callable[..., Any],
                                       conn: asynchdb.Connection) -> None:
    async def main() -> None:
        cur = conn.cursor()
        assert (await cur.execute("rows 3", asynch=True)).fetchall() == [(0,), (1,), (2,)]
        with pytest.raises(fake.ProgrammingError):
            await conn.cursor().execute("fail", asynch=True)
        # five tasks on one operation that is still running when they suspend
        op = conn.cursor().execute("block many", asynch=True)
        waiters = [asyncio.ensure_future(_await(op)) for _ in range(5)]
        await asyncio.sleep(0)  # every waiter is suspended on the operation's end
        assert not any(w.done() for w in waiters)
        conn.driver_connection.release("many")
        results = await asyncio.gather(*waiters)
        assert all(r is results[0] for r in results)  # each got the cursor

    run(main())


def test_cancelling_the_task_aborts_the_operation(run: Callable[..., Any],
                                                 conn: asynchdb.Connection) -> None:
    op = conn.cursor().execute("block g", asynch=True)

    async def main() -> None:
        task = asyncio.ensure_future(_await(op))
        await asyncio.get_running_loop().run_in_executor(
            None, conn.driver_connection.started("g").wait, WAIT)
        task.cancel("stop")
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    # the task raised only after the operation ended, aborted in the driver
    assert op.get_status().phase == Phase.CANCELED
    assert any("canceled" in str(entry) for entry in conn.driver_connection.log)


def test_wait_for_times_out_and_aborts(run: Callable[..., Any],
                                      conn: asynchdb.Connection) -> None:
    op = conn.cursor().execute("block w", asynch=True)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_await(op), 0.05)

    run(main())
    assert op.get_status().phase == Phase.CANCELED


def test_the_future_side_on_its_own() -> None:
    loop = asyncio.new_event_loop()
    try:
        ended = _aio._Ended(loop, _aio._inbox(loop))
        assert ended.get_loop() is loop and not ended.done()
        with pytest.raises(asyncio.InvalidStateError):
            ended.result()
        woken: list[Any] = []
        ended.add_done_callback(woken.append)
        assert ended.remove_done_callback(print) == 0
        # a cancel wakes the task on the loop's next turn, as a future's does
        assert ended.cancel("why") is True and ended.cancel() is False
        assert ended.cancelled() and woken == []
        loop.run_until_complete(asyncio.sleep(0))
        assert woken == [ended]
        with pytest.raises(asyncio.CancelledError, match="why"):
            ended.result()
        with pytest.raises(asyncio.CancelledError):
            ended.exception()
        ended.fire()  # the operation's end, after the cancel: nothing more
        assert woken == [ended] and "cancelled" in repr(ended)
        # an end runs the wake-up at once, in the drain, with its context
        done = _aio._Ended(loop, _aio._inbox(loop))
        done.add_done_callback(woken.append)
        done.fire()
        assert woken[-1] is done and done.result() is None and done.exception() is None
        late: list[Any] = []
        done.add_done_callback(late.append)  # added after the end: on the next turn
        loop.run_until_complete(asyncio.sleep(0))
        assert late == [done]
    finally:
        loop.close()


class _Entry:
    def __init__(self, fired: list[str], name: str, *, interrupt: bool = False) -> None:
        self.fired, self.name, self.interrupt = fired, name, interrupt

    def fire(self) -> None:
        self.fired.append(self.name)
        if self.interrupt:
            raise KeyboardInterrupt


def test_a_drain_interrupted_by_one_entry_keeps_the_others() -> None:
    # a task's step lets KeyboardInterrupt through (asyncio re-raises it): the
    # entries after it in the same drain must still fire, on the next turn
    loop = asyncio.new_event_loop()
    try:
        inbox = _aio._Inbox(loop)
        fired: list[str] = []
        for entry in (_Entry(fired, "a", interrupt=True), _Entry(fired, "b"),
                      _Entry(fired, "c")):
            inbox.post(entry)  # type: ignore[arg-type]
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.sleep(0.01))
        assert fired == ["a"]
        loop.run_until_complete(asyncio.sleep(0))
        assert fired == ["a", "b", "c"]
    finally:
        loop.close()


async def _await(op: Any) -> Any:
    return await op


def test_a_wake_up_that_raises_leaves_the_others_to_the_next_turn() -> None:
    loop = asyncio.new_event_loop()
    try:
        ended = _aio._Ended(loop, _aio._inbox(loop))
        woken: list[Any] = []

        def interrupted(_: Any) -> None:
            raise KeyboardInterrupt

        ended.add_done_callback(interrupted)
        ended.add_done_callback(woken.append)
        with pytest.raises(KeyboardInterrupt):
            ended.fire()
        assert woken == []
        loop.run_until_complete(asyncio.sleep(0))
        assert woken == [ended]
    finally:
        loop.close()
