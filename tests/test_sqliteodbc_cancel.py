"""pyodbc + SQLite ODBC: the cancel never touches the statement it stops.

SQLite ODBC's ``SQLCancel`` interrupts the connection and then closes the
statement handle it was given, from the calling thread.  Sent to the running
statement, that close races the worker's own cleanup: the stress runner saw
the process die of a double free in every 2,500-operation chunk.  So the
adapter sends it to an idle sibling cursor of the connection (docs/drivers.md).
The race itself cannot be timed in a test; its precondition can: the cursor
the engine names as running must come out of the cancel untouched.
"""

from __future__ import annotations

from typing import Any

import pytest
from plugin import BOUND, wait_until

import asynchdb
from asynchdb import Phase
from benchmarks.backends import BY_NAME, marker

ODBC = BY_NAME["pyodbc-sqlite"]
#: every test here needs it (the ``conn`` fixture connects to it)
pytestmark = pytest.mark.backend(ODBC.name)


class _Call:
    """A CallView for a cancel sent by hand: the statement on ``cursor``."""

    kind = "execute"
    abort_requested = True

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor


def test_the_cancel_leaves_the_named_cursor_alone(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")
    assert cur.fetchone()[0] == 1
    ch = conn._ch  # type: ignore[attr-defined]
    # what the aborting thread does, here with the cursor's result still open
    call = _Call(cur._raw)  # type: ignore[attr-defined]
    ch.call(lambda: ch.adapter.cancel(ch.view, call))
    # SQLCancel on this cursor would have closed it: the fetch would raise HY010
    assert [r[0] for r in cur.fetchall()] == [2, 3]
    cur.execute("SELECT 5")  # and the interrupt did not stay armed
    assert cur.fetchall()[0][0] == 5


def test_an_abort_still_stops_the_statement(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    op = cur.execute(ODBC.long_sql(30, marker()), asynch=True)
    assert wait_until(lambda: conn.statistics()["running"] or op.done())
    op.abort()
    assert op.wait_for_completion(BOUND)
    assert op.get_status().phase is Phase.CANCELED
    cur.execute("SELECT 7")
    assert cur.fetchall()[0][0] == 7
