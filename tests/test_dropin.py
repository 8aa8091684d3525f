"""Drop-in fidelity on sqlite3: the wrapper takes only its own keywords.

asynchdb's keywords are exactly ``asynch``, ``cancel_after`` and
``listener``; everything else (``timeout=``, ``driver=``, positional or not)
reaches the driver unchanged, so a program keeps its meaning when
``sqlite3.connect`` becomes ``asynchdb.connect(sqlite3, ...)``.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

import asynchdb
from asynchdb import DeadlineExceeded, Phase

#: Seconds any wait here is bounded by.
BOUND = 10.0


def test_timeout_is_sqlite3s_busy_timeout(tmp_path: Any) -> None:
    """``timeout=`` sets SQLite's busy timeout: a locked database waits that long, then raises."""
    path = str(tmp_path / "busy.db")
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.commit()
    holder.execute("BEGIN EXCLUSIVE")
    conn = asynchdb.connect(sqlite3, path, timeout=0.3)
    try:
        start = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            conn.execute("SELECT * FROM t")
        waited = time.monotonic() - start
        # the driver's busy wait, not asynchdb's deadline (which would raise
        # DeadlineExceeded) and not sqlite3's default of 5 s
        assert 0.25 <= waited < 3.0, waited
    finally:
        conn.close()
        holder.rollback()
        holder.close()


def test_timeout_keyword_goes_to_a_connect_callable() -> None:
    seen: dict[str, Any] = {}

    def factory(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        seen.update(args=args, kwargs=kwargs)
        return sqlite3.connect(":memory:", check_same_thread=False)

    conn = asynchdb.connect(factory, "x", timeout=7, driver="mine")
    try:
        assert seen == {"args": ("x",), "kwargs": {"timeout": 7, "driver": "mine"}}
    finally:
        conn.close()


def test_driver_is_positional_only() -> None:
    """``driver=`` is the driver's keyword (pyodbc's), never asynchdb's."""
    with pytest.raises(TypeError):
        asynchdb.connect(driver=sqlite3)  # type: ignore[call-arg]


def test_cancel_after_zero_on_connect_raises_before_the_driver_runs() -> None:
    calls: list[Any] = []

    def factory() -> sqlite3.Connection:  # pragma: no cover - must not run
        calls.append(1)
        return sqlite3.connect(":memory:", check_same_thread=False)

    with pytest.raises(DeadlineExceeded):
        asynchdb.connect(factory, cancel_after=0)
    op = asynchdb.connect(factory, asynch=True, cancel_after=0)
    assert op.wait_for_completion(BOUND)
    assert op.get_status().phase == Phase.CANCELED
    assert isinstance(op.exception(), DeadlineExceeded)
    assert calls == []


def test_cancel_after_zero_on_execute_raises_before_the_statement_runs() -> None:
    conn = asynchdb.connect(sqlite3, ":memory:")
    try:
        conn.execute("CREATE TABLE t (x)")
        cur = conn.cursor()
        with pytest.raises(DeadlineExceeded):
            cur.execute("INSERT INTO t VALUES (1)", cancel_after=0)
        op = cur.execute("INSERT INTO t VALUES (2)", asynch=True, cancel_after=0)
        assert op.wait_for_completion(BOUND)
        assert isinstance(op.exception(), DeadlineExceeded)
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    finally:
        conn.close()


def test_timeout_on_execute_is_the_drivers_error() -> None:
    """sqlite3's ``execute`` takes no ``timeout``: the driver's own TypeError, not a deadline."""
    conn = asynchdb.connect(sqlite3, ":memory:")
    try:
        raw = sqlite3.connect(":memory:")
        with pytest.raises(TypeError) as raw_error:
            raw.cursor().execute("SELECT 1", timeout=1)  # type: ignore[call-arg]
        raw.close()
        with pytest.raises(TypeError) as wrapped_error:
            conn.cursor().execute("SELECT 1", timeout=1)
        assert str(wrapped_error.value) == str(raw_error.value)
    finally:
        conn.close()
