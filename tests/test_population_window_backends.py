"""The POPULATION-entry window on real drivers (see tests/unit/test_population_window.py).

The statement is held inside the driver call (sqlite3: a user function that
waits for an Event; PostgreSQL: an advisory lock another session holds) while
the test installs the Event ``wait_for_population`` waits on; the worker then
stops in it right as the job turns POPULATING, and the test reads
``cursor.description`` there.  Before the fix that read dropped the cursor's
guard and the later reads came from the driver cursor, after the rows the
worker had buffered: the stress run's "rows out of order".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from plugin import BOUND, require, wait_until

import asynchdb
from asynchdb import Asynch, Phase

ROWS = 50
BUFFER = 10


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
        self.held_too_long = not self.go.wait(BOUND)


def _read_all(cur: asynchdb.Cursor) -> list[int]:
    """fetchall on a helper thread under a watchdog."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(cur.fetchall()), daemon=True)
    t.start()
    t.join(BOUND)
    assert not t.is_alive(), "fetchall did not return"
    return [int(r[0]) for r in box[0]]


def _read_in_the_window(conn: asynchdb.Connection, sql: str,
                        blocked: Callable[[], bool], open_gate: Callable[[], None]) -> None:
    cur = conn.cursor()
    cur.buffer_rows = BUFFER
    op = cur.execute(sql, asynch=Asynch.SEQUENTIAL_POPULATION)
    try:
        assert wait_until(blocked, BOUND), "the statement never reached its gate"
        assert op.get_status().phase is Phase.INITIALIZATION
        held = HeldEvent()
        op._job._readable = held  # the Event wait_for_population waits on
    finally:
        open_gate()
    assert held.inside.wait(BOUND), "the worker never entered POPULATION"
    try:
        assert op.wait_for_population(0)
        assert cur.description is not None
    finally:
        held.go.set()
    rows = _read_all(cur)
    assert not held.held_too_long
    assert rows == list(range(ROWS))
    assert op.wait_for_completion(BOUND)
    st = op.get_status()
    assert st.phase is Phase.COMPLETE and st.error is None


@pytest.mark.backend("sqlite3")
def test_sqlite3_read_as_population_starts_comes_from_the_buffer(
        conn: asynchdb.Connection) -> None:
    entered, gate = threading.Event(), threading.Event()

    def hold(x: int) -> int:
        # worker thread, inside execute's first step
        if x == 0:
            entered.set()
            gate.wait(BOUND)
        return 1

    conn.create_function("hold", 1, hold)
    sql = (f"WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c "
           f"LIMIT {ROWS}) SELECT x FROM c WHERE hold(x)")
    _read_in_the_window(conn, sql, entered.is_set, gate.set)


@pytest.mark.backend("pyodbc-postgresql")
def test_pyodbc_postgresql_read_as_population_starts_comes_from_the_buffer(
        conn: asynchdb.Connection) -> None:
    key = 7_000_000 + os.getpid() % 1_000_000
    holder = require("pyodbc-postgresql").connect_raw()
    holder.autocommit = True
    try:
        hc = holder.cursor()
        hc.execute("SELECT pg_advisory_lock(?)", key)
        hc.fetchall()
        sql = (f"SELECT g FROM (SELECT pg_advisory_xact_lock_shared({key})) AS w, "
               f"generate_series(0, {ROWS - 1}) AS g ORDER BY g")

        def blocked() -> bool:
            hc.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                       "'Lock' AND query LIKE ? AND pid <> pg_backend_pid()",
                       f"%pg_advisory_xact_lock_shared({key})%")
            return bool(hc.fetchone()[0])

        def open_gate() -> None:
            hc.execute("SELECT pg_advisory_unlock(?)", key)
            hc.fetchall()

        _read_in_the_window(conn, sql, blocked, open_gate)
    finally:
        holder.close()
