"""Background population and listeners on every real backend (docs/population.md)."""

from __future__ import annotations

from typing import Any

import pytest
from plugin import BOUND, Recorder, wait_until

import asynchdb
from asynchdb import Asynch, Phase
from benchmarks.backends import Backend

N = 3000


def series_sql(backend: Backend, n: int) -> str:
    """``n`` rows ``(i, 2*i)`` in order, in the backend's own dialect."""
    if backend.server == "postgresql":
        return f"SELECT g, g * 2 FROM generate_series(0, {n - 1}) AS g ORDER BY g"
    if backend.server == "mariadb":
        return f"SELECT seq, seq * 2 FROM seq_0_to_{n - 1} ORDER BY seq"
    if backend.name == "duckdb":
        return f"SELECT range, range * 2 FROM range({n}) ORDER BY range"
    if backend.name == "clickhouse":  # both shards of the Distributed table (x from 1)
        return f"SELECT x - 1, (x - 1) * 2 FROM asynchdb_dist WHERE x <= {n} ORDER BY x"
    return (f"WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c "
            f"LIMIT {n}) SELECT x, x * 2 FROM c")


def ints(rows: list[Any]) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in r) for r in rows]


def test_population_delivers_every_row_in_order(backend: Backend,
                                                 conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.buffer_rows = 100
    rec = Recorder()
    op = cur.execute(series_sql(backend, N), asynch=Asynch.SEQUENTIAL_POPULATION,
                     listener=rec)
    # a full buffer holds the worker back and says so
    assert rec.low_event.wait(BOUND)
    st = op.get_status()
    assert st.phase is Phase.POPULATION and 0 < st.progress < st.progress_max
    got = ints(cur.fetchmany(5))
    got += ints(cur.fetchall())
    assert got == [(i, 2 * i) for i in range(N)]
    assert rec.stopped.wait(BOUND)
    st = op.get_status()
    assert st.phase is Phase.COMPLETE
    assert st.progress == st.progress_max == N
    assert rec.phases[0] is Phase.INITIALIZATION
    assert Phase.POPULATION in rec.phases
    assert rec.phases[-1] is Phase.COMPLETE
    assert len(rec.stops) == 1


def test_abort_during_population_keeps_the_rows_fetched(backend: Backend,
                                                        conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.buffer_rows = 100
    rec = Recorder()
    op = cur.execute(series_sql(backend, N), asynch=Asynch.BACKGROUND_POPULATION,
                     listener=rec)
    assert rec.low_event.wait(BOUND)
    head = ints(cur.fetchmany(10))
    op.abort()
    assert op.wait_for_completion(BOUND)
    st = op.get_status()
    assert st.phase is Phase.CANCELED
    got = head + ints(cur.fetchall())
    assert got == [(i, 2 * i) for i in range(len(got))]
    assert len(got) == st.progress < N
    assert cur.fetchone() is None
    # the connection and the cursor go on
    cur.execute("SELECT 1")
    assert ints(cur.fetchall()) == [(1,)]


def test_prepopulate_completes_with_every_row(backend: Backend,
                                              conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    op = cur.execute(series_sql(backend, N), asynch=Asynch.PREPOPULATE)
    assert op.result(BOUND) is cur
    assert op.get_status().progress == N
    assert ints(cur.fetchall()) == [(i, 2 * i) for i in range(N)]


def test_a_listener_hears_a_running_statement(backend: Backend,
                                              conn: asynchdb.Connection) -> None:
    """At least one progress notification at the start, then the end; a veto holds."""
    cur = conn.cursor()
    vetoes = []

    class Veto(Recorder):
        def on_progress(self, op: Any, status: asynchdb.Status) -> Any:
            super().on_progress(op, status)
            if status.phase is Phase.CANCELED and not vetoes:
                vetoes.append(status)
                return False
            return None

    rec = Veto()
    op = cur.execute(backend.long_sql(1.5, "asynchdb-listener"), asynch=True, listener=rec)
    assert wait_until(lambda: Phase.INITIALIZATION in rec.phases, BOUND)
    with pytest.raises(asynchdb.AbortVetoed):
        op.abort()
    assert not op.done()
    op.abort()  # the second one goes through
    assert op.wait_for_completion(BOUND)
    assert rec.stopped.wait(BOUND)
    assert len(rec.stops) == 1
    assert rec.stops[0].phase in (Phase.CANCELED, Phase.COMPLETE)
    assert rec.phases.count(Phase.CANCELED) == 2
