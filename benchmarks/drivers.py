"""Driver benchmarks: asynchdb on real drivers, against the raw driver and its peers.

``python -m benchmarks.drivers`` (about three minutes) writes
``benchmarks/results/drivers.json``, ``benchmarks/results/drivers.md`` and
``docs/drivers-benchmarks.md``; ``--quick`` is a smoke run of seconds that
writes ``benchmarks/results/drivers-quick.{json,md}`` only.

Per backend (pyodbc + PostgreSQL / MariaDB / SQLite ODBC, psycopg, DuckDB,
clickhouse-driver on a two-shard ClickHouse cluster), in
one run, modes interleaved (:mod:`benchmarks._harness`), medians:

* P1 synchronous overhead: ``execute`` + ``fetchall`` through the wrapper vs
  the raw driver (target <= 1.10x).
* P2 asynchronous round trip: ``execute(asynch=True)``, ``result()``,
  ``fetchall()`` vs a naive ``ThreadPoolExecutor(1)`` (and aioodbc for pyodbc)
  (target <= 1.0x the naive executor).
* P3 abort latency: ``abort()`` until ``wait_for_completion()`` returns, vs
  the driver's own cancel measured the same way (until the executing thread
  is back), on a statement that has run for a while (target <= 2x, p99 <= 20 ms).

And once:

* P6a threads held by 1000 idle wrapped sqlite3 connections (target 0), vs
  aiosqlite (one thread per connection).
* P6b N concurrent ``SELECT pg_sleep(0.05)`` on N psycopg connections vs N raw
  threads (target >= 0.9x throughput); N is 200 or what PostgreSQL's
  ``max_connections`` leaves free, reported.

Backends, connection strings and long statements: the registry
``benchmarks/backends.py`` the test suite uses too (environment variables
``ASYNCHDB_PG_ODBC``, ``ASYNCHDB_MARIADB_ODBC``, ``ASYNCHDB_SQLITE_ODBC``,
``ASYNCHDB_PSYCOPG_DSN``, with its defaults; DuckDB runs in memory here).  A
backend that cannot be reached is reported as skipped.  Nothing here asserts an
absolute time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # python benchmarks/drivers.py: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import concurrent.futures
import datetime
import importlib
import json
import os
import platform
import queue
import sqlite3
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

import asynchdb
from asynchdb import Phase
from benchmarks._harness import Mode, Series, compare, interleave, quantile, summarize, us
from benchmarks.backends import BY_NAME, DUCKDB_RATE, SQLITE_RATE, Backend

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "drivers-benchmarks.md"
pc = time.perf_counter_ns



@dataclass(frozen=True)
class Sizes:
    reps: int = 8            # interleaved repetitions for P1/P2
    calls: int = 150         # timed calls per batch (P1/P2)
    warmup: int = 10
    p3_reps: int = 8         # repetitions for P3
    p3_per_batch: int = 4    # aborts per batch
    p3_delay_s: float = 0.03
    idle_conns: int = 1000
    concurrent: int = 200
    rounds: int = 6


FULL = Sizes()
QUICK = Sizes(reps=2, calls=30, warmup=3, p3_reps=2, p3_per_batch=2, idle_conns=100,
              concurrent=20, rounds=2)


@dataclass(frozen=True)
class Target:
    """One backend of the registry: what the benchmarks run on it, how its driver cancels."""

    backend: Backend
    rows_sql: str              # 100 small rows
    #: seconds the registry's long statement would run unless stopped
    long_seconds: float
    #: a connection string instead of the registry's (DuckDB: in memory)
    dsn_override: Optional[str] = None

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def module(self) -> str:
        return self.backend.module_name

    @property
    def odbc(self) -> bool:
        return self.backend.odbc_driver is not None

    @property
    def long_sql(self) -> str:
        """A statement that runs for many seconds unless stopped."""
        return self.backend.long_sql(self.long_seconds)

    def dsn(self) -> str:
        return self.dsn_override if self.dsn_override is not None else self.backend.dsn()

    def mod(self) -> Any:
        return self.backend.module()

    def connect_raw(self, **kw: Any) -> Any:
        if self.dsn_override is None:
            return self.backend.connect_raw(**kw)
        return self.mod().connect(self.dsn(), **kw)

    def connect(self, **kw: Any) -> asynchdb.Connection:
        if self.dsn_override is None:
            return self.backend.connect(**kw)
        conn: asynchdb.Connection = asynchdb.connect(self.mod(), self.dsn(), **kw)
        return conn

    def raw_cancel(self, conn: Any, cur: Any) -> None:
        """The driver's own cancel primitive, as a user of the raw driver calls it.

        The MySQL-family drivers have none: a user sends ``KILL QUERY <id>`` on a
        second connection, kept open (opened outside the timed part).
        """
        if self.module == "psycopg":
            conn.cancel_safe()
        elif self.module == "duckdb":
            cur.interrupt()
        elif self.module == "psycopg2":
            conn.cancel()
        elif self.module == "pg8000":
            # pg8000 has none: the cancel request a user would send (what the adapter sends)
            from asynchdb._drivers._pg8000 import _target_of, send_cancel_request

            target = _target_of(conn)
            assert target is not None
            send_cancel_request(target)
        elif self.module.startswith("adbc_driver_"):
            cur.adbc_cancel()
        elif self.module == "apsw":
            conn.interrupt()
        elif self.backend.server == "mariadb" and self.module != "pyodbc":
            killer, thread_id = _KILLERS[id(conn)]
            kc = killer.cursor()
            kc.execute(f"KILL QUERY {thread_id}")
            kc.close()
        elif self.module == "clickhouse_driver.dbapi":
            # no cancel in the driver: what a raw user writes is KILL QUERY for the
            # query id they gave the statement, from a second cursor (its own session)
            killer = _CLICKHOUSE_KILLERS.get(id(conn))
            if killer is None:
                killer = _CLICKHOUSE_KILLERS[id(conn)] = conn.cursor()
            killer.execute(f"KILL QUERY WHERE query_id = '{cur._query_id}' ASYNC")
        else:
            cur.cancel()


#: raw MySQL-family connection id -> (its KILL QUERY connection, its server thread id)
_KILLERS: dict[int, tuple[Any, int]] = {}
#: raw ClickHouse connection -> the cursor its benchmark cancel kills from
_CLICKHOUSE_KILLERS: dict[int, Any] = {}


TARGETS: tuple[Target, ...] = (
    Target(BY_NAME["pyodbc-postgresql"], "SELECT g, 'row' FROM generate_series(1, 100) g", 30),
    Target(BY_NAME["pyodbc-mariadb"], "SELECT seq, 'row' FROM seq_1_to_100", 30),
    # the registry's count runs SQLITE_RATE rows a second: this one counts to 10**10
    Target(BY_NAME["pyodbc-sqlite"],
           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
           "SELECT x, 'row' FROM c", 10**10 / SQLITE_RATE),
    Target(BY_NAME["psycopg"], "SELECT g, 'row' FROM generate_series(1, 100) g", 30),
    # DUCKDB_RATE rows a second: range(10**11)
    Target(BY_NAME["duckdb"], "SELECT range, 'row' FROM range(100)", 10**11 / DUCKDB_RATE,
           dsn_override=":memory:"),
    Target(BY_NAME["psycopg2"], "SELECT g, 'row' FROM generate_series(1, 100) g", 30),
    Target(BY_NAME["pg8000"], "SELECT g, 'row' FROM generate_series(1, 100) g", 30),
    Target(BY_NAME["adbc-postgresql"], "SELECT g, 'row' FROM generate_series(1, 100) g", 30),
    # adbc-sqlite has no cancel (P3 would measure an abandon): not benchmarked
    Target(BY_NAME["apsw"],
           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
           "SELECT x, 'row' FROM c", 10**10 / SQLITE_RATE),
    Target(BY_NAME["pymysql"], "SELECT seq, 'row' FROM seq_1_to_100", 30),
    Target(BY_NAME["mysqlclient"], "SELECT seq, 'row' FROM seq_1_to_100", 30),
    Target(BY_NAME["mariadb"], "SELECT seq, 'row' FROM seq_1_to_100", 30),
)
if "clickhouse" in BY_NAME:  # the two-shard cluster, through its Distributed table
    TARGETS = (*TARGETS, Target(
        BY_NAME["clickhouse"], "SELECT x, 'row' FROM asynchdb_dist WHERE x <= 100 ORDER BY x", 30))


def _series_out(series: dict[str, Series]) -> dict[str, Any]:
    return {name: summarize(s) for name, s in series.items()}


def _unavailable(t: Target) -> Optional[str]:
    """Why the backend cannot be benchmarked here (the registry's probe), or None."""
    if t.dsn_override is None:
        return t.backend.unavailable()
    missing = t.backend.driver_unavailable()
    if missing is not None:
        return missing
    try:
        conn = t.connect_raw()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    conn.close()
    return None


# ---------------------------------------------------------------------------
# P1: synchronous overhead
# ---------------------------------------------------------------------------
def _timed_calls(cur: Any, sql: str, sz: Sizes) -> Callable[[], list[float]]:
    def batch() -> list[float]:
        res: list[float] = []
        for i in range(sz.calls + sz.warmup):
            t0 = pc()
            cur.execute(sql)
            cur.fetchall()
            if i >= sz.warmup:
                res.append(pc() - t0)
        return res

    return batch


def run_p1(t: Target, sz: Sizes) -> dict[str, Any]:
    raw = t.connect_raw()
    wrapped = t.connect()
    out: dict[str, Any] = {"title": "P1: synchronous execute + fetchall, wrapper vs raw",
                           "unit": "ns per call", "queries": {}}
    try:
        for key, sql in (("select1", "SELECT 1"), ("rows100", t.rows_sql)):
            rcur, wcur = raw.cursor(), wrapped.cursor()
            series = interleave([Mode("raw driver", _timed_calls(rcur, sql, sz)),
                                 Mode("asynchdb", _timed_calls(wcur, sql, sz))], sz.reps)
            out["queries"][key] = {
                "sql": sql, "modes": _series_out(series),
                "comparisons": [compare(series["asynchdb"], series["raw driver"], 1.10)]}
            rcur.close()
            wcur.close()
    finally:
        wrapped.close()
        raw.close()
    return out


# ---------------------------------------------------------------------------
# P2: asynchronous round trip
# ---------------------------------------------------------------------------
#: P2's context mode: the least a hand-written asynchronous call can do.
FLOOR = "a bare worker thread (floor)"
#: P2's naive executor with the split asynchdb has: execute on the worker, fetchall
#: on the caller (context: what the hop costs without where the rows are read)
SPLIT = "ThreadPoolExecutor(1), fetchall on the caller"


async def _aioodbc_batch(cur: Any, sql: str, sz: Sizes) -> list[float]:
    res: list[float] = []
    for i in range(sz.calls + sz.warmup):
        t0 = pc()
        await cur.execute(sql)
        await cur.fetchall()
        if i >= sz.warmup:
            res.append(pc() - t0)
    return res


class _Floor:
    """The least a hand-written asynchronous call can do: the floor P2 is read against.

    One dedicated thread waits on a ``SimpleQueue``; the caller queues the
    ``execute``, waits on a bare lock the thread releases, and fetches on its
    own thread, as asynchdb's ``result()`` then ``fetchall()`` do.  No
    ownership, no phases, no abort: what asynchdb adds over this is its cost.
    """

    def __init__(self, t: Target) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        opened: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, args=(t, opened),
                                        name="bench-floor", daemon=True)
        self._thread.start()
        self.conn, self.cur = opened.get(timeout=60)

    def _main(self, t: Target, opened: queue.SimpleQueue[Any]) -> None:
        conn = t.connect_raw()
        opened.put((conn, conn.cursor()))
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, gate = job
            fn()
            gate.release()

    def run(self, fn: Callable[[], Any]) -> None:
        gate = threading.Lock()
        gate.acquire()
        self._jobs.put((fn, gate))
        gate.acquire()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(10)
        self.cur.close()
        self.conn.close()


def _round_trips(one: Callable[[], None], sz: Sizes) -> Callable[[], list[float]]:
    """A batch of P2: ``one()`` timed ``sz.calls`` times after ``sz.warmup``.

    One function call more per round trip than writing the loop out (tens of
    nanoseconds against P2's tens of microseconds, the same for every mode).
    """
    def batch() -> list[float]:
        res: list[float] = []
        for i in range(sz.calls + sz.warmup):
            t0 = pc()
            one()
            if i >= sz.warmup:
                res.append(pc() - t0)
        return res

    return batch


def run_p2(t: Target, sz: Sizes) -> dict[str, Any]:
    wrapped = t.connect()
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-tpe")
    raw = ex.submit(t.connect_raw).result()  # the naive wrapper's connection lives on its thread
    floor = _Floor(t)
    loop: Optional[asyncio.AbstractEventLoop] = None
    aconn: Any = None
    aio_error: Optional[str] = None
    if t.odbc:
        try:
            import aioodbc

            loop = asyncio.new_event_loop()
            aconn = loop.run_until_complete(aioodbc.connect(dsn=t.dsn()))
        except Exception as exc:  # optional peer
            aio_error = f"{type(exc).__name__}: {exc}"
    out: dict[str, Any] = {"title": "P2: asynchronous round trip (execute, wait, fetchall)",
                           "unit": "ns per call", "queries": {},
                           "aioodbc": None if not t.odbc else (aio_error or "yes")}
    try:
        for key, sql in (("select1", "SELECT 1"), ("rows100", t.rows_sql)):
            wcur = wrapped.cursor()
            rcur = ex.submit(raw.cursor).result()

            def ours(wcur: Any = wcur, sql: str = sql) -> None:
                wcur.execute(sql, asynch=True).result()
                wcur.fetchall()

            def call(rcur: Any = rcur, sql: str = sql) -> Any:
                rcur.execute(sql)
                return rcur.fetchall()

            def naive(call: Callable[[], Any] = call) -> None:
                ex.submit(call).result()

            def naive_split(rcur: Any = rcur, sql: str = sql) -> None:
                # the same executor, rows fetched on the caller as asynchdb's are
                ex.submit(rcur.execute, sql).result()
                rcur.fetchall()

            def bare(sql: str = sql) -> None:
                fcur = floor.cur
                floor.run(lambda: fcur.execute(sql))
                fcur.fetchall()

            modes = [Mode(name, _round_trips(one, sz)) for name, one in (
                ("asynchdb", ours), ("ThreadPoolExecutor(1), naive", naive),
                (SPLIT, naive_split), (FLOOR, bare))]
            acur: Any = None
            if loop is not None and aconn is not None:
                acur = loop.run_until_complete(aconn.cursor())

                def aio(acur: Any = acur, sql: str = sql) -> list[float]:
                    assert loop is not None
                    return loop.run_until_complete(_aioodbc_batch(acur, sql, sz))

                modes.append(Mode("aioodbc", aio))
            series = interleave(modes, sz.reps)
            comps = [compare(series["asynchdb"], series["ThreadPoolExecutor(1), naive"], 1.0)]
            if "aioodbc" in series:
                comps.append(compare(series["asynchdb"], series["aioodbc"], 1.0))
            comps.append(compare(series["asynchdb"], series[SPLIT]))  # context
            comps.append(compare(series["asynchdb"], series[FLOOR]))  # context
            out["queries"][key] = {"sql": sql, "modes": _series_out(series),
                                   "comparisons": comps}
            wcur.close()
            ex.submit(rcur.close).result()
            if acur is not None and loop is not None:
                loop.run_until_complete(acur.close())
    finally:
        wrapped.close()
        floor.close()
        ex.submit(raw.close).result()
        ex.shutdown(wait=True)
        if loop is not None:
            if aconn is not None:
                loop.run_until_complete(aconn.close())
            loop.close()
    return out


# ---------------------------------------------------------------------------
# P3: abort latency
# ---------------------------------------------------------------------------
class _RawRunner:
    """A thread that runs one statement at a time on a raw connection."""

    def __init__(self, t: Target) -> None:
        self.t = t
        self.conn = t.connect_raw()
        self.cur = self.conn.cursor()
        if t.backend.server == "mariadb" and t.module != "pyodbc":
            self.cur.execute("SELECT CONNECTION_ID()")
            _KILLERS[id(self.conn)] = (t.connect_raw(autocommit=True),
                                       int(self.cur.fetchone()[0]))
        self.go = threading.Event()
        self.done = threading.Event()
        self.sql = ""
        self.error: Optional[BaseException] = None
        self.quit = False
        self.thread = threading.Thread(target=self._main, name="bench-raw-runner", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        while True:
            self.go.wait()
            self.go.clear()
            if self.quit:
                return
            if self.t.module == "clickhouse_driver.dbapi":
                self.cur.set_query_id(uuid.uuid4().hex)  # what its cancel names
            try:
                self.cur.execute(self.sql)
                self.error = None
            except Exception as exc:
                self.error = exc
            self.done.set()

    def run(self, sql: str) -> None:
        self.sql = sql
        self.done.clear()
        self.go.set()

    def stop(self) -> None:
        self.quit = True
        self.go.set()
        self.thread.join(5)
        self.cur.close()
        killer = _KILLERS.pop(id(self.conn), None)
        if killer is not None:
            killer[0].close()
        self.conn.close()


def run_p3(t: Target, sz: Sizes) -> dict[str, Any]:
    wrapped = t.connect()
    wcur = wrapped.cursor()
    runner = _RawRunner(t)
    pause = threading.Event().wait
    problems = {"asynchdb_not_canceled": 0, "raw_not_stopped": 0, "raw_cancel_repeats": 0}

    def ours() -> list[float]:
        res: list[float] = []
        for _ in range(sz.p3_per_batch):
            op = wcur.execute(t.long_sql, asynch=True)
            pause(sz.p3_delay_s)
            t0 = pc()
            op.abort()
            ok = op.wait_for_completion(10)
            res.append(pc() - t0)
            if not ok or op.get_status().phase is not Phase.CANCELED:
                problems["asynchdb_not_canceled"] += 1
                op.wait_for_completion(60)
        return res

    def raw() -> list[float]:
        res: list[float] = []
        for _ in range(sz.p3_per_batch):
            runner.run(t.long_sql)
            pause(sz.p3_delay_s)
            t0 = pc()
            t.raw_cancel(runner.conn, runner.cur)
            # a cancel that landed before the statement started is lost: repeat it
            # every 50 ms, as asynchdb does
            while not runner.done.wait(0.05):
                problems["raw_cancel_repeats"] += 1
                t.raw_cancel(runner.conn, runner.cur)
            res.append(pc() - t0)
            if runner.error is None:
                problems["raw_not_stopped"] += 1
            if t.module in ("psycopg", "psycopg2", "pg8000", "adbc_driver_postgresql.dbapi"):
                runner.conn.rollback()
        return res

    name_ours = "asynchdb abort() -> wait_for_completion() returns"
    name_raw = f"{t.module} cancel -> the executing thread's call returns"
    try:
        series = interleave([Mode(name_ours, ours), Mode(name_raw, raw)], sz.p3_reps)
    finally:
        wcur.close()
        wrapped.close()
        runner.stop()
    a, b = series[name_ours], series[name_raw]
    p99_ms = quantile(a.samples, 0.99) / 1e6 if a.samples else None
    return {
        "title": "P3: abort latency on a running statement",
        "unit": "ns from the abort/cancel call until the caller is released",
        "sql": t.long_sql, "delay_after_start_s": sz.p3_delay_s,
        "modes": _series_out(series),
        "comparisons": [compare(a, b, 2.0), compare(a, b, None, stat="p99")],
        "p99_ms": None if p99_ms is None else round(p99_ms, 2),
        "p99_target_ms": 20.0,
        "p99_met": None if p99_ms is None else p99_ms <= 20.0,
        "problems": problems,
    }


# ---------------------------------------------------------------------------
# P6: threads held and concurrency
# ---------------------------------------------------------------------------
#: The Ctrl-C watcher: one per process while connections are open on the main
#: thread (asynchdb/_interrupt.py), however many there are; not held by them.
_WATCHER = "asynchdb-sigint"


def _asynchdb_threads() -> int:
    """asynchdb's threads that connections hold: pool threads, the timer."""
    return sum(1 for th in threading.enumerate()
               if th.name.startswith("asynchdb-") and th.name != _WATCHER)


def run_p6_idle(sz: Sizes) -> dict[str, Any]:
    """Threads held by N idle wrapped sqlite3 connections, vs aiosqlite."""
    n = sz.idle_conns
    base = threading.active_count()
    conns = [asynchdb.connect(sqlite3, ":memory:") for _ in range(n)]
    try:
        ops = [c.cursor().execute("SELECT 1", asynch=True) for c in conns]
        for op in ops:
            op.result(30)
        busy_threads = threading.active_count() - base
        deadline = time.monotonic() + 15
        idle_wait = threading.Event()
        while _asynchdb_threads() and time.monotonic() < deadline:
            idle_wait.wait(0.05)
        idle_threads = threading.active_count() - base
        asynchdb_idle = _asynchdb_threads()
        watcher = sum(1 for th in threading.enumerate() if th.name == _WATCHER)
    finally:
        for c in conns:
            c.close()
    out: dict[str, Any] = {
        "title": f"P6a: threads held by {n} idle wrapped sqlite3 connections",
        "connections": n, "asynchdb_threads_right_after_work": busy_threads,
        "asynchdb_threads_idle": asynchdb_idle, "process_threads_idle": idle_threads,
        "ctrl_c_watcher": watcher, "target": 0, "met": asynchdb_idle == 0,
    }
    try:
        import aiosqlite
    except ImportError:
        out["aiosqlite"] = "not installed"
        return out

    async def aio() -> int:
        dbs = [await aiosqlite.connect(":memory:") for _ in range(n)]
        try:
            for db in dbs:
                async with db.execute("SELECT 1") as c:
                    await c.fetchall()
            return threading.active_count() - base
        finally:
            for db in dbs:
                await db.close()

    out["aiosqlite_threads_idle"] = asyncio.run(aio())
    return out


def _pg_slots(t: Target) -> tuple[int, int]:
    conn = t.connect_raw(autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SHOW max_connections")
        max_conn = int(cur.fetchone()[0])
        cur.execute("SELECT count(*) FROM pg_stat_activity")
        used = int(cur.fetchone()[0])
        return max_conn, used
    finally:
        conn.close()


def run_p6_concurrent(sz: Sizes) -> dict[str, Any]:
    """N concurrent pg_sleep(0.05) on N psycopg connections: asynchdb vs N raw threads."""
    t = next(x for x in TARGETS if x.name == "psycopg")
    reason = _unavailable(t)
    if reason is not None:
        return {"skipped": reason}
    max_conn, used = _pg_slots(t)
    # leave room for the rest of the machine (and for this benchmark's own checks)
    n = max(2, min(sz.concurrent, max_conn - used - 15))
    sql = "SELECT pg_sleep(0.05)"
    peak = [0]

    # each mode opens its n connections (untimed) and closes them after its
    # rounds, so that only n are open at any time
    def ours() -> list[float]:
        wrapped = [t.connect(autocommit=True) for _ in range(n)]
        try:
            wcurs = [c.cursor() for c in wrapped]
            t0 = pc()
            for _ in range(sz.rounds):
                ops = [cur.execute(sql, asynch=True) for cur in wcurs]
                peak[0] = max(peak[0], _asynchdb_threads())
                for op in ops:
                    op.result(30)
            return [(pc() - t0) / (n * sz.rounds)]
        finally:
            for c in wrapped:
                c.close()

    def raw() -> list[float]:
        barrier = threading.Barrier(n + 1)
        conns = [t.connect_raw(autocommit=True) for _ in range(n)]

        def work(conn: Any) -> None:
            cur = conn.cursor()
            barrier.wait()
            for _ in range(sz.rounds):
                cur.execute(sql)
                cur.fetchall()
                barrier.wait()

        threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in conns]
        try:
            for th in threads:
                th.start()
            barrier.wait()
            t0 = pc()
            for _ in range(sz.rounds):
                barrier.wait()
            return [(pc() - t0) / (n * sz.rounds)]
        finally:
            for th in threads:
                th.join(30)
            for c in conns:
                c.close()

    series = interleave([Mode("asynchdb", ours), Mode("raw threads", raw)],
                        max(2, sz.reps // 2))
    a = statistics.median(series["asynchdb"].samples)
    b = statistics.median(series["raw threads"].samples)
    ratio = b / a  # throughput ratio: ours / raw = (1/a) / (1/b)
    return {
        "title": f"P6b: {n} concurrent `{sql}` on {n} psycopg connections",
        "max_connections": max_conn, "connections_in_use_before": used,
        "requested": sz.concurrent, "statements_at_once": n, "rounds": sz.rounds,
        "asynchdb_statements_per_s": round(1e9 / a, 1),
        "raw_threads_statements_per_s": round(1e9 / b, 1),
        "throughput_ratio": round(ratio, 3), "target": 0.9, "met": ratio >= 0.9,
        "asynchdb_peak_threads": peak[0],
    }


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------
def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "asynchdb": asynchdb.__version__,
                           "sqlite": sqlite3.sqlite_version}
    for name in ("pyodbc", "psycopg", "duckdb", "aioodbc", "aiosqlite", "pymysql", "MySQLdb",
                 "mariadb"):
        try:
            mod = importlib.import_module(name)
            out[name] = getattr(mod, "__version__", None) or getattr(mod, "version", None)
        except Exception:
            out[name] = None
    return out


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10, check=False)
        return head.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _fmt_ratio(c: dict[str, Any]) -> str:
    if c.get("ratio") is None:
        return "n/a"
    target = c.get("target")
    mark = "" if target is None else (" (met)" if c.get("met") else " (NOT met)")
    spread = c.get("per_rep")
    extra = f" [{spread['p25']}-{spread['p75']}]" if spread else ""
    return f"{c['ratio']}x{extra}{mark}"


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = ["# Driver benchmarks", "",
             f"{meta['date']}, commit {meta['commit']}, {meta['machine']}, "
             f"mode {meta['mode']}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + ".", "",
             "Medians over interleaved repetitions (`benchmarks/_harness.py`); "
             "ratios are asynchdb / reference, with the spread of per-repetition "
             "ratios [p25-p75]. Times in microseconds unless noted.", "",
             "## Summary", "",
             "| backend | P1 SELECT 1 (target <= 1.10x) | P1 100 rows | P2 vs naive executor "
             "(target <= 1.0x) | P2 100 rows vs naive executor | P2 vs the executor "
             "fetching on the caller (context, SELECT 1) | P2 vs aioodbc "
             "| P2 vs a bare worker thread (context) "
             "| P3 abort median (vs driver, target <= 2x) | P3 p99 (target <= 20 ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["backends"].items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | | | | |")
            continue
        p1, p2, p3 = r["P1"], r["P2"], r["P3"]
        p2c = p2["queries"]["select1"]["comparisons"]
        aio = next((c for c in p2c if c["to"] == "aioodbc"), None)
        bare = next((c for c in p2c if c["to"] == FLOOR), None)
        split = next((c for c in p2c if c["to"] == SPLIT), None)
        ours3 = next(iter(p3["modes"].values()))
        lines.append(
            f"| {name} | {_fmt_ratio(p1['queries']['select1']['comparisons'][0])} "
            f"| {_fmt_ratio(p1['queries']['rows100']['comparisons'][0])} "
            f"| {_fmt_ratio(p2c[0])} "
            f"| {_fmt_ratio(p2['queries']['rows100']['comparisons'][0])} "
            f"| {_fmt_ratio(split) if split else 'n/a'} | {_fmt_ratio(aio) if aio else 'n/a'} "
            f"| {_fmt_ratio(bare) if bare else 'n/a'} "
            f"| {us(ours3['median_ns'], 0)} us, {_fmt_ratio(p3['comparisons'][0])} "
            f"| {p3['p99_ms']} ms{' (met)' if p3['p99_met'] else ' (NOT met)'} |")
    lines += ["", "## Per backend", ""]
    for name, r in results["backends"].items():
        if "skipped" in r:
            continue
        lines += [f"### {name}", ""]
        for key in ("P1", "P2"):
            for qk, q in r[key]["queries"].items():
                lines += [f"{r[key]['title']}, `{q['sql']}` ({qk}):", "",
                          "| mode | median | p90 | p99 | n |", "|---|---|---|---|---|"]
                for mode, st in q["modes"].items():
                    lines.append(f"| {mode} | {us(st['median_ns'])} | {us(st['p90_ns'])} "
                                 f"| {us(st['p99_ns'])} | {st['n']} |")
                lines.append("")
        p3 = r["P3"]
        lines += [f"{p3['title']}, `{p3['sql']}`, aborted {p3['delay_after_start_s']} s "
                  "after it started:", "",
                  "| mode | median | p90 | p99 | n |", "|---|---|---|---|---|"]
        for mode, st in p3["modes"].items():
            lines.append(f"| {mode} | {us(st['median_ns'], 0)} | {us(st['p90_ns'], 0)} "
                         f"| {us(st['p99_ns'], 0)} | {st['n']} |")
        lines += ["", f"Problems: {p3['problems']}", ""]
    p6a, p6b = results["P6a"], results["P6b"]
    lines += ["## P6: threads and concurrency", ""]
    if "skipped" in p6a:
        lines += [f"P6a skipped: {p6a['skipped']}", ""]
    else:
        aio_idle = p6a.get("aiosqlite_threads_idle", p6a.get("aiosqlite"))
        lines += [f"**{p6a['title']}**: asynchdb threads once idle: "
                  f"**{p6a['asynchdb_threads_idle']}** (target 0, "
                  f"{'met' if p6a['met'] else 'NOT met'}); right after the work "
                  f"{p6a['asynchdb_threads_right_after_work']}; aiosqlite with as many "
                  f"connections: {aio_idle} threads. "
                  f"Not counted: the process's one Ctrl-C watcher thread "
                  f"({p6a.get('ctrl_c_watcher', '?')} here), alive while any connection is "
                  f"open on the main thread, whatever their number.",
                  ""]
    if "skipped" in p6b:
        lines.append(f"P6b skipped: {p6b['skipped']}")
    else:
        lines += [f"**{p6b['title']}** (PostgreSQL max_connections {p6b['max_connections']}, "
                  f"{p6b['connections_in_use_before']} in use before; {p6b['requested']} "
                  f"requested, {p6b['statements_at_once']} run at once, "
                  f"{p6b['rounds']} rounds): asynchdb {p6b['asynchdb_statements_per_s']} "
                  f"statements/s, raw threads {p6b['raw_threads_statements_per_s']} "
                  f"statements/s: ratio **{p6b['throughput_ratio']}x** (target >= 0.9, "
                  f"{'met' if p6b['met'] else 'NOT met'}); asynchdb used at most "
                  f"{p6b['asynchdb_peak_threads']} pool threads.", ""]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.drivers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run of seconds")
    ap.add_argument("--only", default="", help="comma list of backends (default: all)")
    ap.add_argument("--no-p6", action="store_true", help="skip P6")
    args = ap.parse_args(argv)
    sz = QUICK if args.quick else FULL
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    started = time.monotonic()
    results: dict[str, Any] = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(), "mode": "quick" if args.quick else "full",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "versions": _versions(),
        "sizes": sz.__dict__}, "backends": {}}
    for t in TARGETS:
        if only and t.name not in only:
            continue
        reason = _unavailable(t)
        if reason is not None:
            results["backends"][t.name] = {"skipped": reason}
            print(f"{t.name}: skipped ({reason})", flush=True)
            continue
        r: dict[str, Any] = {}
        for key, fn in (("P1", run_p1), ("P2", run_p2), ("P3", run_p3)):
            t0 = time.monotonic()
            r[key] = fn(t, sz)
            print(f"{t.name} {key} done in {time.monotonic() - t0:.1f} s", flush=True)
        results["backends"][t.name] = r
    if not args.no_p6:
        results["P6a"] = run_p6_idle(sz)
        print("P6a done", flush=True)
        results["P6b"] = run_p6_concurrent(sz)
        print("P6b done", flush=True)
    else:
        results["P6a"] = {"skipped": "--no-p6"}
        results["P6b"] = {"skipped": "--no-p6"}
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    md = render(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    if only:
        suffix += "-" + "-".join(sorted(only))
    (RESULTS / f"drivers{suffix}.json").write_text(json.dumps(results, indent=1) + "\n",
                                                   encoding="utf-8")
    (RESULTS / f"drivers{suffix}.md").write_text(md, encoding="utf-8")
    if not args.quick and not only:
        DOCS.parent.mkdir(parents=True, exist_ok=True)
        DOCS.write_text(md.replace("# Driver benchmarks", "# Driver benchmarks (measured)", 1)
                        + "\nHow to re-run: `python -m benchmarks.drivers` "
                        "(`--quick` for a smoke run). See also docs/drivers.md.\n",
                        encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
