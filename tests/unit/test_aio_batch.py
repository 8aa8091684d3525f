"""Workers woken in batches from an event loop's thread (asynchdb._aio._Batch).

A loop step that starts operations on several idle connections wakes the
first worker at once and the others when the step ends, or from the timer
thread if the loop does not get control back.  The operations themselves are
queued at once, in order.  Against the fake driver; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import asynchdb
from asynchdb import _aio
from asynchdb import testing as fake
from asynchdb._hub import HUB

WAIT = 5.0


class Dispatches(list[tuple[Any, str]]):
    """Each worker wake-up: (its connection's channel, the name of the thread that woke it).

    A worker woken before the operation was queued may find nothing, leave,
    and be woken again by the queueing (Channel.wake_early): count channels,
    not wake-ups.
    """

    def first(self, conn: asynchdb.Connection) -> str | None:
        """The thread that first woke ``conn``'s worker, if any did."""
        return next((name for ch, name in self if ch is conn._ch), None)


@pytest.fixture
def dispatches(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dispatches]:
    seen = Dispatches()
    real = HUB.dispatch

    def recording(channel: Any) -> None:
        seen.append((channel, threading.current_thread().name))
        real(channel)

    monkeypatch.setattr(HUB, "dispatch", recording)
    yield seen


def batched_cursors(monkeypatch: pytest.MonkeyPatch, conns: list[asynchdb.Connection],
                    dispatches: Dispatches, wait: float) -> list[asynchdb.Cursor]:
    """A cursor on each connection, with every wake-up from now on batched.

    A wide window joins every wake-up after the first to the batch; ``wait``
    is how long the batch waits for the loop before the timer sends it.
    """
    monkeypatch.setattr(_aio, "BATCH_WINDOW", 60.0)
    monkeypatch.setattr(_aio, "BATCH_WAIT", wait)
    cursors = [c.cursor() for c in conns]
    dispatches.clear()  # opening the connections dispatched too
    return cursors


@pytest.fixture
def conns() -> Iterator[list[asynchdb.Connection]]:
    made = [asynchdb.connect(fake) for _ in range(3)]
    yield made
    for c in made:
        for name in list(c.driver_connection._started):
            c.driver_connection.release(name)
        c.close()


def test_one_step_wakes_its_first_worker_at_once_and_the_rest_when_it_ends(
        monkeypatch: pytest.MonkeyPatch, dispatches: Dispatches,
        conns: list[asynchdb.Connection]) -> None:
    # a long wait: only the end of the step can send the batch
    cursors = batched_cursors(monkeypatch, conns, dispatches, wait=60.0)
    loop_thread = threading.current_thread().name

    async def main() -> list[str | None]:
        ops = [cur.execute(f"block b{i}", asynch=True) for i, cur in enumerate(cursors)]
        in_step = [dispatches.first(c) for c in conns]
        # the first worker was woken: its statement starts while the step goes on
        assert conns[0].driver_connection.started("b0").wait(WAIT)
        assert not conns[1].driver_connection.started("b1").is_set()
        await asyncio.sleep(0)  # the step ends: the batch goes
        for i, c in enumerate(conns):
            assert c.driver_connection.started(f"b{i}").wait(WAIT)
            c.driver_connection.release(f"b{i}")
        await asyncio.wait_for(asyncio.gather(*ops), WAIT)
        return in_step

    in_step = asyncio.run(main())
    assert in_step == [loop_thread, None, None]
    # the other two by the loop's call_soon
    assert [dispatches.first(c) for c in conns] == [loop_thread] * 3


def test_a_batch_reaches_its_workers_when_the_loop_never_gets_control_back(
        monkeypatch: pytest.MonkeyPatch, dispatches: Dispatches,
        conns: list[asynchdb.Connection]) -> None:
    cursors = batched_cursors(monkeypatch, conns, dispatches, wait=0.01)

    async def main() -> None:
        ops = [cur.execute("select", asynch=True) for cur in cursors]
        # blocking the loop (as synchronous code on it does): the timer sends the batch
        assert ops[2].wait_for_completion(WAIT)
        assert all(op.wait_for_completion(WAIT) for op in ops)
        await asyncio.wait_for(asyncio.gather(*ops), WAIT)

    asyncio.run(main())
    assert [dispatches.first(c) for c in conns] == [
        threading.current_thread().name, "asynchdb-timer", "asynchdb-timer"]


def test_operations_started_apart_each_wake_their_worker_at_once(
        dispatches: Dispatches, conns: list[asynchdb.Connection]) -> None:
    cursors = [c.cursor() for c in conns]
    dispatches.clear()  # opening the connections dispatched too

    async def main() -> None:
        me = threading.current_thread().name
        for c, cur in zip(conns, cursors):  # a round trip each: far apart (BATCH_WINDOW)
            op = cur.execute("select", asynch=True)
            assert dispatches.first(c) == me  # before the step ends
            await asyncio.wait_for(op, WAIT)

    asyncio.run(main())


def test_operations_off_an_event_loop_are_never_batched(
        monkeypatch: pytest.MonkeyPatch, dispatches: Dispatches,
        conns: list[asynchdb.Connection]) -> None:
    cursors = batched_cursors(monkeypatch, conns, dispatches, wait=60.0)
    assert HUB.defer is not None  # installed when asynchdb._aio was imported
    ops = [cur.execute("select", asynch=True) for cur in cursors]
    me = threading.current_thread().name
    assert [dispatches.first(c) for c in conns] == [me] * 3  # no loop runs on this thread
    assert all(op.wait_for_completion(WAIT) for op in ops)
