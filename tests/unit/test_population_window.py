"""A read in the instant the operation enters POPULATION must read the row buffer.

The stress run's ``populate: rows out of order after 19000 rows`` (20,000 rows,
``buffer_rows`` 1000, pyodbc-postgresql): the worker made the job POPULATING
(and woke ``wait_for_population``) and only then marked the row buffer
started.  A read on another thread in between saw "not initializing, buffer not
started", dropped the cursor's guard and went to the driver cursor; every
later read did too, so the rows the worker had buffered were never read.

The fake driver holds the worker inside that instant (in the Event that
``wait_for_population`` waits on), so the interleaving is exact: no sleep,
every wait bounded.  The probe is ``cursor.description``: it makes the same
guard decision as ``fetchmany`` but does not block, so the test needs no
timing in either outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import asynchdb
from asynchdb import Asynch, Phase
from asynchdb import testing as fake

#: Seconds any single wait may take before the test fails.
WAIT = 5.0
ROWS = 50


class GatedRowsCursor(fake.FakeCursor):
    """``gate NAME N``: block like ``block NAME``, then return a set of N rows."""

    def execute(self, sql: str, params: Any = None) -> fake.FakeCursor:
        _, name, n = sql.split()
        super().execute(f"block {name}")
        self._show([(i,) for i in range(int(n))])
        return self


class HeldEvent(threading.Event):
    """Set by the worker as the job turns POPULATING; holds it there until ``go``."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.go = threading.Event()
        self.held_too_long = False

    def set(self) -> None:
        super().set()
        # worker thread: the job is POPULATING; hold it until the test has read
        self.inside.set()
        self.held_too_long = not self.go.wait(WAIT)


@pytest.fixture
def conn() -> Iterator[asynchdb.Connection]:
    c = asynchdb.connect(fake)
    raw: Any = c.driver_connection

    def cursor() -> GatedRowsCursor:
        raw._check()
        return GatedRowsCursor(raw)

    raw.cursor = cursor
    try:
        yield c
    finally:
        raw.release("g1")
        c.close()


def _read_all(cur: asynchdb.Cursor) -> list[Any]:
    """fetchall on a helper thread under a watchdog (a wrong path could hang)."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(cur.fetchall()), daemon=True)
    t.start()
    t.join(WAIT)
    assert not t.is_alive(), "fetchall did not return"
    return list(box[0])


def test_read_as_population_starts_comes_from_the_buffer(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.buffer_rows = 10
    op = cur.execute("gate g1 50", asynch=Asynch.SEQUENTIAL_POPULATION)
    raw: Any = conn.driver_connection
    assert raw.started("g1").wait(WAIT)
    held = HeldEvent()
    # the Event wait_for_population waits on, installed while the call runs
    op._job._readable = held
    raw.release("g1")
    assert held.inside.wait(WAIT), "the worker never entered POPULATION"
    try:
        # the worker is between "POPULATING" and its first batch (get_status
        # would wait for the job's lock, which the worker holds here)
        assert op.wait_for_population(0)
        assert cur.description is not None
    finally:
        held.go.set()
    rows = _read_all(cur)
    assert not held.held_too_long
    # docs/usage.md, "Population": every row, in order, through the buffer
    assert rows == [(i,) for i in range(ROWS)]
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase == Phase.COMPLETE and st.error is None
    assert st.progress == ROWS


def test_abort_as_population_starts_keeps_a_consecutive_range(
        conn: asynchdb.Connection) -> None:
    # the stress scenario itself: read part, abort, read the rest
    cur = conn.cursor()
    cur.buffer_rows = 10
    op = cur.execute("gate g1 50", asynch=Asynch.SEQUENTIAL_POPULATION)
    raw: Any = conn.driver_connection
    assert raw.started("g1").wait(WAIT)
    held = HeldEvent()
    op._job._readable = held
    raw.release("g1")
    assert held.inside.wait(WAIT), "the worker never entered POPULATION"
    try:
        assert cur.description is not None
    finally:
        held.go.set()
    head: list[Any] = []
    t = threading.Thread(target=lambda: head.extend(cur.fetchmany(5)), daemon=True)
    t.start()
    t.join(WAIT)
    assert not t.is_alive(), "fetchmany did not return"
    op.abort()
    assert op.wait_for_completion(WAIT)
    rows = head + _read_all(cur)
    # docs/usage.md, "Population": the rows already fetched stay readable, in order
    assert rows == [(i,) for i in range(len(rows))]
    assert op.get_status().phase in (Phase.CANCELED, Phase.COMPLETE)
