"""pyodbc + psqlODBC: an abort is sent by the server (``pg_cancel_backend``), not ``SQLCancel``.

psqlODBC's ``SQLCancel`` from the aborting thread crashed a stress run once
(``double free or corruption``, docs/reliability.md).  For a connection that
``asynchdb.connect`` opened, the pyodbc adapter cancels from a twin connection
with ``pg_cancel_backend(<pid>)`` instead (``asynchdb/_drivers/_pyodbc.py``).
These tests look at the server: which session sent the cancel, that the
statement is gone, and that the twin leaves with its connection.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from plugin import BOUND, wait_until

import asynchdb
from asynchdb import Phase
from benchmarks.backends import BY_NAME

PG = BY_NAME["pyodbc-postgresql"]
pytestmark = pytest.mark.backend(PG.name)


def _pid(conn: Any) -> int:
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = int(cur.fetchone()[0])
    cur.close()
    return pid


def _sessions(monitor: Any, sql: str, *params: Any) -> list[Any]:
    cur = monitor.cursor()
    cur.execute(sql, *params)
    rows = cur.fetchall()
    cur.close()
    return rows


def _cancellers(monitor: Any, pid: int) -> list[int]:
    """Backends whose last statement was ``pg_cancel_backend(pid)``."""
    rows = _sessions(monitor, "SELECT pid FROM pg_stat_activity WHERE query = ?",
                     f"SELECT pg_cancel_backend({pid})")
    return [int(r[0]) for r in rows]


def _running(monitor: Any, tag: str) -> int:
    rows = _sessions(monitor, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                              "AND query LIKE ? AND pid <> pg_backend_pid()", f"%{tag}%")
    return int(rows[0][0])


def _abort_a_sleep(monitor: Any, cur: Any) -> asynchdb.Operation[Any]:
    """Start a long statement, abort it once the server runs it; it must be gone."""
    tag = uuid.uuid4().hex
    op = cur.execute(f"SELECT pg_sleep(30) /* {tag} */", asynch=True)
    wait_until(lambda: _running(monitor, tag) == 1)
    op.abort()
    assert op.wait_for_completion(BOUND)
    assert op.get_status().phase is Phase.CANCELED
    assert _running(monitor, tag) == 0
    return op


def test_an_abort_is_sent_by_a_twin_and_the_twin_leaves_with_the_connection() -> None:
    monitor = PG.connect_raw(autocommit=True)
    conn = PG.connect()
    try:
        pid = _pid(conn)
        assert _cancellers(monitor, pid) == []  # no twin before the first abort
        cur = conn.cursor()
        op = _abort_a_sleep(monitor, cur)
        assert op.exception().__cause__.args[0] == "57014"  # the server's cancel, as before
        twins = _cancellers(monitor, pid)
        assert len(twins) == 1 and twins[0] != pid
        cur.execute("SELECT 1")  # the connection goes on
        assert cur.fetchall()[0][0] == 1
        _abort_a_sleep(monitor, cur)  # a second abort uses the same twin
        assert _cancellers(monitor, pid) == twins
    finally:
        conn.close()
    # closing the connection closes its twin
    wait_until(lambda: not _sessions(monitor, "SELECT 1 FROM pg_stat_activity WHERE pid = ?",
                                     twins[0]))
    monitor.close()


def test_a_wrapped_connection_falls_back_to_sqlcancel() -> None:
    """Its connection string is not known to the adapter: the driver's own cancel."""
    monitor = PG.connect_raw(autocommit=True)
    conn = asynchdb.wrap(PG.connect_raw())
    try:
        pid = _pid(conn)
        _abort_a_sleep(monitor, conn.cursor())
        assert _cancellers(monitor, pid) == []
    finally:
        conn.close()
        monitor.close()


def test_opening_leaves_no_transaction_behind() -> None:
    """The adapter asks for the backend's pid at connect; psqlODBC's BEGIN for it is ended."""
    monitor = PG.connect_raw(autocommit=True)
    conn = PG.connect()
    try:
        pid = conn._ch.view.state.thread_id  # type: ignore[attr-defined]
        rows = _sessions(monitor, "SELECT state FROM pg_stat_activity WHERE pid = ?", pid)
        assert rows and rows[0][0] == "idle"
    finally:
        conn.close()
        monitor.close()
