"""Background population on sqlite3 (docs/population.md, OLE DB rowset population)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from plugin import Recorder, wait_until

import asynchdb
from asynchdb import Asynch, Phase

N = 20_000
SERIES = (
    "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c LIMIT {n}) "
    "SELECT x, x * 2 FROM c"
)
WAIT = 10.0


@pytest.fixture
def conn() -> Iterator[asynchdb.Connection]:
    c = asynchdb.connect(sqlite3, ":memory:")
    try:
        yield c
    finally:
        c.close()


def populating(op: asynchdb.Operation[Any]) -> bool:
    """Wait (bounded) until the cursor is readable: the op left INITIALIZATION."""
    return wait_until(lambda: op.get_status().phase >= Phase.POPULATION, WAIT)


def expected(n: int) -> list[tuple[int, int]]:
    return [(i, i * 2) for i in range(n)]


@pytest.mark.parametrize("flag", [Asynch.SEQUENTIAL_POPULATION,
                                  Asynch.BACKGROUND_POPULATION,
                                  Asynch.INITIALIZE | Asynch.SEQUENTIAL_POPULATION])
def test_rows_arrive_in_order_and_complete(conn: asynchdb.Connection, flag: Asynch) -> None:
    cur = conn.cursor()
    op = cur.execute(SERIES.format(n=N), asynch=flag)
    assert populating(op)
    rows = [cur.fetchone()]
    rows += cur.fetchmany(7)
    rows += cur.fetchall()
    assert rows == expected(N)
    assert cur.fetchone() is None
    assert cur.fetchall() == []
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase == Phase.COMPLETE
    assert st.progress == st.progress_max == N
    assert op.result() is cur


def test_population_phase_is_visible_and_cursor_readable(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.buffer_rows = 100
    rec = Recorder()
    op = cur.execute(SERIES.format(n=N), asynch=Asynch.SEQUENTIAL_POPULATION, listener=rec)
    # the buffer fills and the worker holds back: the phase is POPULATION
    assert rec.low_event.wait(WAIT)
    st = op.get_status()
    assert st.phase == Phase.POPULATION
    assert 0 < st.progress < st.progress_max
    # during POPULATION the cursor is fully usable for reading
    assert cur.description is not None
    assert cur.fetchone() == (0, 0)
    assert op.get_status().phase == Phase.POPULATION
    assert cur.fetchall() == expected(N)[1:]
    assert rec.stopped.wait(WAIT)
    assert rec.stops[-1].phase == Phase.COMPLETE


def test_buffer_is_bounded_and_parking_frees_the_connection(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.buffer_rows = 200
    rec = Recorder()
    op = cur.execute(SERIES.format(n=N), asynch=Asynch.BACKGROUND_POPULATION, listener=rec)
    assert rec.low_event.wait(WAIT)
    job = op._job  # white box: the buffer's fill level
    assert job.populate is not None
    assert job.populate.buffered() <= 200
    # the worker parked instead of waiting: the connection runs other work meanwhile
    other = conn.cursor().execute("SELECT 42", asynch=True)
    assert other.result(WAIT).fetchall() == [(42,)]
    assert op.get_status().phase == Phase.POPULATION
    assert job.populate.buffered() <= 200
    assert cur.fetchall() == expected(N)
    assert op.wait_for_completion(WAIT)
    assert rec.low >= N // 200 - 1  # held back for every buffer-full of rows


def test_progress_is_rows_fetched_and_notified_per_batch(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    rec = Recorder()
    op = cur.execute(SERIES.format(n=5000), asynch=Asynch.SEQUENTIAL_POPULATION, listener=rec)
    assert populating(op)
    assert cur.fetchall() == expected(5000)
    assert rec.stopped.wait(WAIT)
    assert op.done()
    pop = [s for s in rec.progress if s.phase == Phase.POPULATION]
    assert len(pop) >= 2
    seen = [s.progress for s in pop]
    assert seen == sorted(seen)
    assert all(s.progress < s.progress_max for s in pop)
    assert max(seen) == 5000
    complete = [s for s in rec.progress if s.phase == Phase.COMPLETE]
    assert len(complete) == 1
    assert complete[0].progress == complete[0].progress_max == 5000
    assert len(rec.stops) == 1


def test_abort_during_population_keeps_rows_already_fetched(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.buffer_rows = 300
    rec = Recorder()
    op = cur.execute(SERIES.format(n=N), asynch=Asynch.SEQUENTIAL_POPULATION, listener=rec)
    assert rec.low_event.wait(WAIT)
    head = cur.fetchmany(10)
    op.abort()
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase == Phase.CANCELED
    assert isinstance(st.error, asynchdb.OperationCanceled)
    fetched = st.progress
    rest = cur.fetchall()
    rows = head + rest
    # the rows already fetched stay readable, in order, and the set ends after them
    assert rows == expected(len(rows))
    assert len(rows) == fetched
    assert cur.fetchone() is None
    # the cursor can execute again
    assert cur.execute("SELECT 7").fetchall() == [(7,)]


def test_prepopulate_completes_only_with_every_row(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    op = cur.execute(SERIES.format(n=N), asynch=Asynch.PREPOPULATE)
    assert op.result(WAIT) is cur
    st = op.get_status()
    assert st.phase == Phase.COMPLETE
    assert st.progress == N
    assert op._job.populate is not None and op._job.populate.buffered() == N
    assert cur.fetchall() == expected(N)


def test_populate_on_demand_is_initialize(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    rec = Recorder()
    op = cur.execute(SERIES.format(n=100), asynch=Asynch.POPULATE_ON_DEMAND, listener=rec)
    assert op.result(WAIT) is cur
    assert rec.stopped.wait(WAIT)
    assert all(s.phase != Phase.POPULATION for s in rec.progress)
    assert cur.fetchall() == expected(100)


def test_random_population_is_refused_before_anything_runs(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    with pytest.raises(asynchdb.NotSupportedError):
        cur.execute("CREATE TABLE never(x)", asynch=Asynch.RANDOM_POPULATION)
    with pytest.raises(ValueError):
        cur.execute("CREATE TABLE never(x)",
                    asynch=Asynch.SEQUENTIAL_POPULATION | Asynch.RANDOM_POPULATION)
    cur.execute("SELECT name FROM sqlite_master WHERE name = 'never'")
    assert cur.fetchall() == []


def test_statement_without_rows_never_reports_population(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    rec = Recorder()
    op = cur.execute("CREATE TABLE t(x)", asynch=Asynch.SEQUENTIAL_POPULATION, listener=rec)
    assert op.result(WAIT) is cur
    assert rec.stopped.wait(WAIT)
    assert [s.phase for s in rec.progress] == [Phase.INITIALIZATION, Phase.COMPLETE]


def test_driver_error_during_population_comes_after_the_rows(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    # abs() of the smallest integer overflows: sqlite raises at row 1500
    sql = ("WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c LIMIT 3000) "
           "SELECT CASE WHEN x < 1500 THEN x ELSE abs(-9223372036854775807 - 1) END FROM c")
    op = cur.execute(sql, asynch=Asynch.SEQUENTIAL_POPULATION)
    assert populating(op)
    rows = []
    with pytest.raises(sqlite3.OperationalError, match="overflow"):
        while True:
            batch = cur.fetchmany(100)
            if not batch:
                break
            rows += batch
    # the rows of every batch the worker completed, in order; a driver's
    # fetchmany that fails discards its own partial batch (sqlite3 does)
    assert 0 < len(rows) <= 1500
    assert rows == [(i,) for i in range(len(rows))]
    assert op.wait_for_completion(WAIT)
    st = op.get_status()
    assert st.phase == Phase.COMPLETE
    assert isinstance(st.error, sqlite3.OperationalError)
    assert op.exception() is st.error


def test_new_execute_ends_the_population(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.buffer_rows = 100
    rec = Recorder()
    op = cur.execute(SERIES.format(n=N), asynch=Asynch.SEQUENTIAL_POPULATION, listener=rec)
    assert rec.low_event.wait(WAIT)
    assert cur.execute("SELECT 1").fetchall() == [(1,)]
    assert op.done()
    assert op.get_status().phase == Phase.CANCELED


def test_fetch_blocks_only_until_the_next_row(conn: asynchdb.Connection) -> None:
    """A reader gets the first row while the rest is still being produced."""
    gate = threading.Event()

    def slow(x: int) -> int:
        if x == 10:
            # hold the statement after 10 rows until the reader has row 0
            assert gate.wait(WAIT)
        return x

    conn.create_function("slow", 1, slow)
    cur = conn.cursor()
    op = cur.execute(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c LIMIT 20) "
        "SELECT slow(x) FROM c", asynch=Asynch.SEQUENTIAL_POPULATION)
    try:
        assert wait_until(lambda: op.get_status().phase == Phase.POPULATION, WAIT)
        assert cur.fetchone() == (0,)
        assert not op.done()
    finally:
        gate.set()
    assert [r[0] for r in cur.fetchall()] == list(range(1, 20))
    assert op.wait_for_completion(WAIT)


def test_buffer_rows_validation(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(ValueError):
            cur.buffer_rows = bad  # type: ignore[assignment]
    cur.buffer_rows = 5
    assert cur.buffer_rows == 5
