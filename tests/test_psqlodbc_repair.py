"""pyodbc + psqlODBC: an abort never leaves the transaction failed (25P02).

psqlODBC undoes a canceled statement with ``ROLLBACK TO`` its per-statement
savepoint.  The stress runner found that a second cancel can cancel that
rollback too, leaving the transaction failed (docs/reliability.md); the pyodbc
adapter's ``after_abort`` repairs it.  The race itself is a microseconds
window, so these tests build the failed state deterministically and call the
repair the way the engine does (on the owner thread, after the aborted call
returned); the stress runner exercises the race at scale.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from plugin import BOUND, wait_until

import asynchdb
from asynchdb import Phase
from benchmarks.backends import BY_NAME, marker

PG = BY_NAME["pyodbc-postgresql"]
#: every test here needs it (the ``conn`` fixture connects to it)
pytestmark = pytest.mark.backend(PG.name)


def _sent(cur: Any) -> str:
    cur.execute("SELECT current_query()")
    return str(cur.fetchone()[0])


def _savepoint(cur: Any) -> str:
    """The name of psqlODBC's per-statement savepoint (inside a transaction)."""
    text = _sent(cur)
    return text.split("SAVEPOINT ", 1)[1].split(";", 1)[0]


def _fail_transaction_behind_psqlodbc(cur: Any, keep_savepoint: bool) -> None:
    """Leave the transaction failed without psqlODBC's ``ROLLBACK TO``, as a canceled one does.

    A statement that names savepoints itself is sent as it is, and psqlODBC
    does not roll back to its own savepoint when it fails.  With
    ``keep_savepoint`` a savepoint of psqlODBC's name is left, as after a
    canceled ``ROLLBACK TO``; without, none is (no partial repair possible).
    """
    name = _savepoint(cur)
    again = f"SAVEPOINT {name}; " if keep_savepoint else ""
    with pytest.raises(PG.module().Error) as info:
        cur.execute(f"RELEASE SAVEPOINT {name}; {again}SELECT 1/0")
    assert info.value.args[0] == "22012"
    with pytest.raises(PG.module().Error) as info:
        cur.execute("SELECT 1")
    assert info.value.args[0] == "25P02"


def test_probe_learns_the_savepoint_and_keeps_the_transaction(conn: asynchdb.Connection) -> None:
    table = f"asy_rep_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER)")
    cur.execute(f"INSERT INTO {table} VALUES (1)")
    ch = conn._ch  # type: ignore[attr-defined]
    ch.call(lambda: ch.adapter.after_abort(ch.view))
    assert ch.view.state.savepoint is not None and ch.view.state.savepoint.startswith("_EXEC_SVP_")
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchall()[0][0] == 1  # nothing rolled back: the transaction was healthy


def test_probe_outside_a_transaction_opens_none(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    conn.rollback()  # no transaction now
    ch = conn._ch  # type: ignore[attr-defined]
    ch.call(lambda: ch.adapter.after_abort(ch.view))
    # the probe's own transaction was ended: the next statement begins a new one
    assert _sent(cur).lstrip().upper().startswith("BEGIN")


def test_a_failed_transaction_goes_back_to_the_statement_savepoint(
        conn: asynchdb.Connection, caplog: pytest.LogCaptureFixture) -> None:
    table = f"asy_rep_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER)")
    ch = conn._ch  # type: ignore[attr-defined]
    ch.call(lambda: ch.adapter.after_abort(ch.view))  # an earlier abort's probe saw the name
    cur.execute(f"INSERT INTO {table} VALUES (1)")
    _fail_transaction_behind_psqlodbc(cur, keep_savepoint=True)
    with caplog.at_level(logging.INFO, logger="asynchdb"):
        ch.call(lambda: ch.adapter.after_abort(ch.view))
    assert any("statement savepoint" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchall()[0][0] == 1  # the work before the failed statement is kept


def test_a_failed_transaction_without_its_savepoint_is_rolled_back_with_a_warning(
        conn: asynchdb.Connection, caplog: pytest.LogCaptureFixture) -> None:
    table = f"asy_rep_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER)")
    conn.commit()
    cur.execute(f"INSERT INTO {table} VALUES (1)")
    ch = conn._ch  # type: ignore[attr-defined]
    ch.call(lambda: ch.adapter.after_abort(ch.view))
    _fail_transaction_behind_psqlodbc(cur, keep_savepoint=False)
    with caplog.at_level(logging.INFO, logger="asynchdb"):
        ch.call(lambda: ch.adapter.after_abort(ch.view))
    assert any("whole transaction was rolled back" in r.getMessage()
               and r.levelno == logging.WARNING for r in caplog.records)
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchall()[0][0] == 0  # the failed transaction could not have committed it


def test_autocommit_connections_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    with PG.wrapped(autocommit=True) as conn:
        ch = conn._ch  # type: ignore[attr-defined]
        assert ch.view.state.postgres
        cur = conn.cursor()
        cur.execute("SELECT 1")
        ch.call(lambda: ch.adapter.after_abort(ch.view))
        assert ch.view.state.savepoint is None  # no probe ran
        assert "SAVEPOINT" not in _sent(cur)


def test_an_aborted_statement_keeps_earlier_work_and_the_connection_usable(
        conn: asynchdb.Connection) -> None:
    """The whole path: abort inside a transaction, many times, never a 25P02 after."""
    table = f"asy_rep_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER)")
    cur.execute(f"INSERT INTO {table} VALUES (1)")
    for _ in range(20):
        tag = marker()
        op = cur.execute(PG.long_sql(30, tag), asynch=True)
        assert wait_until(lambda op=op: conn.statistics()["running"] or op.done())
        op.abort()
        assert op.wait_for_completion(BOUND)
        assert op.get_status().phase is Phase.CANCELED
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchall()[0][0] == 1
