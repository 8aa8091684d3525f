"""executemany progress counts parameter sets done, on every backend (docs/usage.md).

Drivers that take the sets one by one (sqlite3, pyodbc) are counted as they
are taken; drivers that batch or pipeline them (psycopg) are run in chunks.
The sequence below samples the operation's status each time the driver (or
the chunking) takes a set: the sets before it are the most that can be done.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from plugin import BOUND, wait_until

import asynchdb
from asynchdb import Phase
from asynchdb.adapters import _for_module as for_module
from benchmarks.backends import Backend

N = 1000


def rows(cursor: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in cursor.fetchall()]


class Sampling:
    """A sized sequence of parameter sets that records the status as each is taken."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.op: Optional[asynchdb.Operation[Any]] = None
        self.ready = threading.Event()
        self.samples: list[tuple[int, int, int]] = []  # (index taken, progress, max)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, str]]:
        assert self.ready.wait(BOUND)
        for i in range(self.n):
            assert self.op is not None
            st = self.op.get_status()
            assert st.phase is Phase.INITIALIZATION
            self.samples.append((i, st.progress, st.progress_max))
            yield (i, f"row {i}")


def test_executemany_progress_counts_parameter_sets(backend: Backend,
                                                    conn: asynchdb.Connection) -> None:
    adapter = for_module(backend.module())
    counted = adapter.counts_executemany or adapter.chunks_executemany
    table = f"emp_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"{backend.temp_table} {table} (x INTEGER, y VARCHAR(20))")
    seq = Sampling(N)
    p = backend.param
    op = cur.executemany(f"INSERT INTO {table} VALUES ({p}, {p})", seq, asynch=True)
    seq.op = op
    seq.ready.set()
    assert op.result(BOUND) is cur
    st = op.get_status()
    assert st.phase is Phase.COMPLETE and st.progress == st.progress_max
    progress = [s[1] for s in seq.samples]
    assert len(seq.samples) == N
    assert progress == sorted(progress), "progress went backwards"
    assert all(p <= i for i, p, _ in seq.samples), "counted a set before it was done"
    if counted:
        assert st.progress_max == N
        assert all(m == N for _, _, m in seq.samples[1:])
        assert progress[-1] >= N // 2, f"no parameter sets counted: {progress[-10:]}"
    else:  # honest: nothing known until it ends
        assert set(progress) == {0}
    expected = _raw_rowcount(backend)
    if expected is not None:  # the driver's, for the whole sequence
        assert cur.rowcount == expected
    else:  # apsw is no PEP 249 driver: its cursor has no rowcount, nor does ours
        assert not hasattr(cur, "rowcount")
    cur.execute(f"SELECT count(*), sum(x) FROM {table}")
    assert rows(cur) == [(N, sum(range(N)))]


def _raw_rowcount(backend: Backend) -> Optional[int]:
    """The raw driver's rowcount after the same executemany (None: it has none)."""
    raw = backend.connect_raw()
    try:
        table = f"emp_{uuid.uuid4().hex[:8]}"
        cur = raw.cursor()
        cur.execute(f"{backend.temp_table} {table} (x INTEGER, y VARCHAR(20))")
        p = backend.param
        cur.executemany(f"INSERT INTO {table} VALUES ({p}, {p})",
                        [(i, f"row {i}") for i in range(N)])
        count: Optional[int] = getattr(cur, "rowcount", None)
        return count
    finally:
        raw.close()


@pytest.mark.backend("psycopg")
def test_psycopg_chunked_executemany_is_all_or_nothing_in_autocommit(
        conn: asynchdb.Connection) -> None:
    """Pipelined, psycopg's executemany is one implicit transaction: so are the chunks."""
    conn.autocommit = True
    table = f"emp_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER PRIMARY KEY)")
    params = [(i,) for i in range(N)] + [(0,)]  # the last set violates the key
    op = cur.executemany(f"INSERT INTO {table} VALUES (%s)", params, asynch=True)
    assert op.wait_for_completion(BOUND)
    err = op.exception(0)
    assert err is not None and type(err).__name__ == "UniqueViolation", err
    cur.execute(f"SELECT count(*) FROM {table}")
    assert rows(cur) == [(0,)]


@pytest.mark.backend("psycopg")
def test_psycopg_executemany_returning_is_not_chunked(conn: asynchdb.Connection) -> None:
    table = f"emp_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER)")
    op = cur.executemany(f"INSERT INTO {table} VALUES (%s) RETURNING x",
                         [(i,) for i in range(120)], returning=True, asynch=True)
    assert op.result(BOUND) is cur
    got = [cur.fetchone()[0]]
    while cur.nextset():
        got.append(cur.fetchone()[0])
    assert got == list(range(120))


@pytest.mark.backend("psycopg")
def test_psycopg_chunked_executemany_aborts_and_keeps_nothing(conn: asynchdb.Connection) -> None:
    conn.autocommit = True
    table = f"emp_{uuid.uuid4().hex[:8]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER)")
    seq = Sampling(N)
    # each set sleeps 2 ms on the server: the whole would take 2 s
    op = cur.executemany(f"INSERT INTO {table} SELECT %s FROM pg_sleep(0.002) WHERE %s <> ''",
                         seq, asynch=True)
    seq.op = op
    seq.ready.set()
    assert wait_until(lambda: op.get_status().progress > 0), "no chunk was ever done"
    op.abort()
    assert op.wait_for_completion(BOUND)
    st = op.get_status()
    assert st.phase is Phase.CANCELED, st
    assert st.progress < N
    cur.execute(f"SELECT count(*) FROM {table}")
    assert rows(cur) == [(0,)]  # all or nothing, as psycopg's own pipelined executemany


@pytest.mark.backend("mariadb")
def test_mariadb_chunked_executemany_is_all_or_nothing(conn: asynchdb.Connection) -> None:
    """One bulk command is all or nothing: so are its chunks, in autocommit or not."""
    for autocommit in (True, False):
        conn.autocommit = autocommit
        table = f"emp_{uuid.uuid4().hex[:8]}"
        cur = conn.cursor()
        cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER PRIMARY KEY) ENGINE=InnoDB")
        if not autocommit:
            cur.execute(f"INSERT INTO {table} VALUES (-1)")  # earlier work, kept
        params = [(i,) for i in range(N)] + [(0,)]  # the last set violates the key
        op = cur.executemany(f"INSERT INTO {table} VALUES (?)", params, asynch=True)
        assert op.wait_for_completion(BOUND)
        assert op.exception(0) is not None
        cur.execute(f"SELECT count(*) FROM {table}")
        assert rows(cur) == [(0 if autocommit else 1,)], autocommit
        conn.rollback()


@pytest.mark.backend("mariadb")
def test_mariadb_chunked_executemany_aborts_and_keeps_nothing(conn: asynchdb.Connection) -> None:
    for autocommit in (True, False):
        conn.autocommit = autocommit
        table = f"emp_{uuid.uuid4().hex[:8]}"
        cur = conn.cursor()
        cur.execute(f"CREATE TEMPORARY TABLE {table} (x INTEGER) ENGINE=InnoDB")
        if not autocommit:
            cur.execute(f"INSERT INTO {table} VALUES (-1)")  # earlier work, kept
        # each set sleeps 2 ms on the server: the whole would take 2 s
        op = cur.executemany(f"INSERT INTO {table} VALUES (? + SLEEP(0.002) * 0)",
                             [(i,) for i in range(N)], asynch=True)
        assert wait_until(lambda o=op: o.get_status().progress > 0), "no chunk was ever done"
        op.abort()
        assert op.wait_for_completion(BOUND)
        st = op.get_status()
        assert st.phase is Phase.CANCELED, st
        assert st.progress < N
        cur.execute(f"SELECT count(*) FROM {table}")
        assert rows(cur) == [(0 if autocommit else 1,)], autocommit
        conn.rollback()
