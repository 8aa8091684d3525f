"""An error raised to the user does not keep its cursor alive.

asynchdb keeps an operation's error (``op.exception()`` returns it; a read on
a cursor whose statement was aborted raises it again).  The traceback of an
error raised to the caller holds the caller's frames, which usually hold the
cursor.  If the cursor kept that very error, cursor and error would form a
cycle that only the garbage collector frees, whenever it runs, and releasing
the cursor with its next running Operation would not abort the statement at
once (docs/abort.md: release aborts).  The stress runner found exactly that: a
cursor that had raised ``DeadlineExceeded`` from a synchronous
``execute(cancel_after=)`` and was released later ran its next statement to the
end.

So nothing a cursor keeps refers to an error raised through it, and none of
asynchdb's frames in such a traceback holds the cursor or the Operation.
These tests run with the collector disabled and check with weak references.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import asynchdb
from asynchdb import DeadlineExceeded, OperationCanceled, Phase
from asynchdb import testing as fake

BOUND = 10.0


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@pytest.fixture
def conn() -> Iterator[tuple[asynchdb.Connection, Any]]:
    raw = fake.connect()
    c = asynchdb.wrap(raw)
    try:
        yield c, raw
    finally:
        c.close()


class _Stop:
    def __init__(self) -> None:
        self.ended = threading.Event()
        self.phase: Any = None

    def on_stop(self, op: Any, status: Any) -> None:
        self.phase = status.phase
        self.ended.set()


def _release_running(raw: Any, cur: asynchdb.Cursor, name: str) -> tuple[Any, Any, _Stop]:
    """Start a blocking statement on ``cur``: weak references to cursor and Operation."""
    stop = _Stop()
    op = cur.execute(f"block {name}", asynch=True, listener=stop)
    assert raw.started(name).wait(BOUND)
    return weakref.ref(cur), weakref.ref(op), stop


def _check_released(made: tuple[Any, Any, _Stop]) -> None:
    cur_ref, op_ref, stop = made
    # the frame that used them returned: reference counting alone must free both
    assert cur_ref() is None
    assert op_ref() is None
    assert stop.ended.wait(BOUND)
    assert stop.phase is Phase.CANCELED


def test_after_a_synchronous_deadline(no_gc: None, conn: tuple[Any, Any]) -> None:
    c, raw = conn

    def use() -> tuple[Any, Any, _Stop]:
        cur = c.cursor()
        with pytest.raises(DeadlineExceeded) as first:
            cur.execute("block d1", cancel_after=0.01)
        with pytest.raises(DeadlineExceeded) as again:
            cur.fetchall()  # the zombie guard raises the abort again
        assert again.value is not first.value and str(again.value) == str(first.value)
        del first, again  # the test's own cycle (this frame <-> its ExceptionInfo)
        return _release_running(raw, cur, "d2")

    _check_released(use())


def test_after_a_synchronous_driver_error(no_gc: None, conn: tuple[Any, Any]) -> None:
    c, raw = conn

    def use() -> tuple[Any, Any, _Stop]:
        cur = c.cursor()
        with pytest.raises(fake.ProgrammingError):
            cur.execute("fail", cancel_after=BOUND)
        with pytest.raises(fake.ProgrammingError):
            cur.executemany("fail", [()], cancel_after=BOUND)
        return _release_running(raw, cur, "e1")

    _check_released(use())


def test_after_an_asynchronous_abort_raised_by_a_read(no_gc: None,
                                                      conn: tuple[Any, Any]) -> None:
    c, raw = conn

    def use() -> tuple[Any, Any, _Stop]:
        cur = c.cursor()
        op = cur.execute("block r1", asynch=True)
        assert raw.started("r1").wait(BOUND)
        op.abort()
        assert op.wait_for_completion(BOUND)
        with pytest.raises(OperationCanceled):
            cur.fetchone()
        with pytest.raises(OperationCanceled):
            _ = cur.description
        del op
        return _release_running(raw, cur, "r2")

    _check_released(use())


def test_result_raises_the_very_error_and_no_frame_of_ours_keeps_the_handle(
        no_gc: None, conn: tuple[Any, Any]) -> None:
    c, _raw = conn
    cur = c.cursor()
    op = cur.execute("fail", asynch=True)
    with pytest.raises(fake.ProgrammingError) as info:
        op.result(BOUND)
    assert info.value is op.exception()  # identity is the contract for Operations
    tb = info.value.__traceback__
    ours = []
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename.startswith(asynchdb.__path__[0]):
            ours.append(frame.f_code.co_name)
            held = [v for v in frame.f_locals.values()
                    if isinstance(v, (asynchdb.Operation, asynchdb.Cursor))]
            assert not held, (frame.f_code.co_name, held)
        tb = tb.tb_next
    assert ours, "the traceback passes through asynchdb's frames"


def test_a_closed_connection_is_freed_by_reference_counting(no_gc: None) -> None:
    """Channel and its adapter view must not form a cycle (it kept the connect arguments)."""
    import sqlite3

    conn = asynchdb.connect(sqlite3, ":memory:")
    conn.cursor().execute("SELECT 1", asynch=True).result(BOUND)
    ch_ref = weakref.ref(conn._ch)  # type: ignore[attr-defined]
    conn.close()
    del conn
    assert ch_ref() is None
