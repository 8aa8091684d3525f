"""Shared helpers for the sqlite3 suites (real sqlite3, no mocks).

* ``count_sql(n)``: a recursive CTE counting to ``n`` (about 5 million rows a
  second here); ``LONG`` counts to 10**9, minutes of work that sqlite can
  interrupt between virtual-machine steps.
* ``Gate``: a user function ``gate(name)`` that blocks inside a statement until
  the test releases it, so a test can hold a connection's worker exactly where
  it wants (no sleeps).  The progress hook cannot stop a statement while it is
  inside a Python function, so a gate is also a statement that abort cannot end
  before its release.
* ``wait_until``: ``plugin.wait_until`` with these suites' bound and a finer poll.

The listener that records notifications is ``plugin.Recorder``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any, Callable

import plugin

import asynchdb

#: Seconds every wait in these suites is bounded by (a broken test fails, never hangs).
BOUND = 10.0


def count_sql(n: int, first: str = "1", result: str = "count(*)") -> str:
    """A single-row query that counts to ``n`` step by step.

    ``first`` is the SQL expression of the first value (must be 1); pass a user
    function call to learn when the statement started.  ``result`` is what the
    query selects from the counted rows.
    """
    return (f"WITH RECURSIVE c(x) AS (SELECT {first} UNION ALL SELECT x + 1 FROM c "
            f"WHERE x < {n}) SELECT {result} FROM c")


def long_write_sql(table: str, n: int = 10**9) -> str:
    """An INSERT that writes ``n`` rows into ``table(x)``, one per counted step."""
    return (f"INSERT INTO {table}(x) WITH RECURSIVE c(x) AS "
            f"(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT x FROM c")


#: A query that would run for minutes: only an abort ends it in a test.
LONG = count_sql(10**9)


def wait_until(predicate: Callable[[], Any], timeout: float = BOUND,
               interval: float = 0.002) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    return plugin.wait_until(predicate, timeout, interval)


class Gate:
    """``gate(name)`` in SQL: signal ``started(name)``, block until ``release(name)``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started: dict[str, threading.Event] = {}
        self._open: set[str] = set()
        self.threads: dict[str, int] = {}

    def install(self, conn: Any) -> Gate:
        conn.create_function("gate", 1, self._gate)
        return self

    def started(self, name: str) -> threading.Event:
        with self._cond:
            return self._started.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        with self._cond:
            self._open.add(name)
            self._cond.notify_all()

    def release_all(self) -> None:
        with self._cond:
            self._open.update(self._started)
            self._cond.notify_all()

    def _gate(self, name: str) -> int:
        ev = self.started(name)
        with self._cond:
            self.threads[name] = threading.get_ident()
            ev.set()
            if not self._cond.wait_for(lambda: name in self._open, timeout=BOUND):
                raise RuntimeError(f"gate {name!r} was never released")
        return 1


@contextlib.contextmanager
def wrapped(path: Any = ":memory:", **kwargs: Any) -> Iterator[asynchdb.Connection]:
    """``asynchdb.connect(sqlite3, path)``, closed afterwards whatever happens."""
    conn = asynchdb.connect(sqlite3, str(path), **kwargs)
    try:
        yield conn
    finally:
        conn.close()


def run_long(conn: Any, sql: str = LONG, **kwargs: Any) -> tuple[Any, Any]:
    """Start ``sql`` asynchronously on a new cursor; wait until the worker is inside it.

    Returns (operation, cursor).  "Inside" means the statement has run some
    virtual-machine steps (its status text says so).
    """
    cur = conn.cursor()
    op = cur.execute(sql, asynch=True, **kwargs)
    assert wait_until(lambda: (op.get_status().status_text or "").find("virtual-machine") >= 0
                      or op.done()), "the long statement never started"
    return op, cur
