"""P5: background population on sqlite3.

* throughput: reading a 1M-row result with ``fetchmany(1000)`` while the worker
  populates (``Asynch.SEQUENTIAL_POPULATION``) vs the same loop on the raw
  sqlite3 cursor (target >= 0.9x the raw throughput);
* time to first row after ``execute(asynch=...)`` returns (target <= 5 ms), with
  the raw ``execute`` + ``fetchone`` for scale;
* peak memory (tracemalloc) while a slow reader drains a 1M-row result: bounded
  by the buffer, not by the result; ``fetchall`` of the same result for scale.

Modes are interleaved within each repetition; medians are reported.

Run: ``python -m benchmarks.population [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import asynchdb
from asynchdb import Asynch, Phase

RESULTS = Path(__file__).resolve().parent / "results"
QUERY = "SELECT id, amount, note FROM t"


def build(path: str, rows: int) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, amount REAL, note TEXT)")
    con.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?) "
        "INSERT INTO t SELECT x, x * 0.5, 'n' || (x % 97) FROM c", (rows,))
    con.commit()
    con.close()


class _Populating:
    """A listener whose event is set once the cursor is readable."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def on_progress(self, op: Any, status: asynchdb.Status) -> None:
        if status.phase >= Phase.POPULATION:
            self.event.set()


def raw_loop(path: str) -> float:
    con = sqlite3.connect(path)
    t0 = time.perf_counter()
    cur = con.execute(QUERY)
    n = 0
    while True:
        rows = cur.fetchmany(1000)
        if not rows:
            break
        n += len(rows)
    dt = time.perf_counter() - t0
    con.close()
    return dt


def wrapped_loop(path: str) -> float:
    conn = asynchdb.connect(sqlite3, path)
    cur = conn.cursor()
    ready = _Populating()
    t0 = time.perf_counter()
    op = cur.execute(QUERY, asynch=Asynch.SEQUENTIAL_POPULATION, listener=ready)
    ready.event.wait(30)
    n = 0
    while True:
        rows = cur.fetchmany(1000)
        if not rows:
            break
        n += len(rows)
    dt = time.perf_counter() - t0
    op.wait_for_completion(30)
    conn.close()
    return dt


def first_row_wrapped(path: str) -> float:
    conn = asynchdb.connect(sqlite3, path)
    cur = conn.cursor()
    ready = _Populating()
    op = cur.execute(QUERY, asynch=Asynch.SEQUENTIAL_POPULATION, listener=ready)
    t0 = time.perf_counter()  # execute has returned
    ready.event.wait(30)
    cur.fetchone()
    dt = time.perf_counter() - t0
    op.abort()
    op.wait_for_completion(30)
    conn.close()
    return dt


def first_row_raw(path: str) -> float:
    con = sqlite3.connect(path)
    t0 = time.perf_counter()
    cur = con.execute(QUERY)
    cur.fetchone()
    dt = time.perf_counter() - t0
    con.close()
    return dt


def peak_memory(fn: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def slow_reader(path: str, buffer_rows: int) -> Callable[[], None]:
    def run() -> None:
        conn = asynchdb.connect(sqlite3, path)
        cur = conn.cursor()
        cur.buffer_rows = buffer_rows
        ready = _Populating()
        op = cur.execute(QUERY, asynch=Asynch.SEQUENTIAL_POPULATION, listener=ready)
        ready.event.wait(60)
        batches = 0
        while True:
            rows = cur.fetchmany(100)
            if not rows:
                break
            batches += 1
            if batches % 5 == 0:
                time.sleep(0.001)  # a reader slower than the worker
        op.wait_for_completion(60)
        conn.close()

    return run


def raw_fetchall(path: str) -> Callable[[], None]:
    def run() -> None:
        con = sqlite3.connect(path)
        rows = con.execute(QUERY).fetchall()
        assert rows
        del rows
        con.close()

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small result, few repetitions")
    ap.add_argument("--rows", type=int, default=None)
    args = ap.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    reps = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "p5.db")
        build(path, rows)
        raw_t: list[float] = []
        wrap_t: list[float] = []
        ttfr: list[float] = []
        ttfr_raw: list[float] = []
        raw_loop(path)
        wrapped_loop(path)  # warm the page cache and the pool
        for _ in range(reps):
            raw_t.append(raw_loop(path))
            wrap_t.append(wrapped_loop(path))
            ttfr.append(first_row_wrapped(path))
            ttfr_raw.append(first_row_raw(path))
        mem_slow = peak_memory(slow_reader(path, 10_000))  # the default buffer
        mem_small = peak_memory(slow_reader(path, 1_000))
        mem_all = peak_memory(raw_fetchall(path))
    raw_med, wrap_med = statistics.median(raw_t), statistics.median(wrap_t)
    result = {
        "benchmark": "P5 population (sqlite3)",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": __import__("os").cpu_count(),
        "rows": rows,
        "repetitions": reps,
        "raw_fetchmany_s": raw_med,
        "population_fetchmany_s": wrap_med,
        "throughput_ratio": raw_med / wrap_med,
        "first_row_ms": statistics.median(ttfr) * 1e3,
        "first_row_ms_max": max(ttfr) * 1e3,
        "raw_execute_fetchone_ms": statistics.median(ttfr_raw) * 1e3,
        "peak_mb_slow_reader_buffer_10000": mem_slow / 2**20,
        "peak_mb_slow_reader_buffer_1000": mem_small / 2**20,
        "peak_mb_raw_fetchall": mem_all / 2**20,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "population-quick" if args.quick else "population"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"P5 population, sqlite3 {result['sqlite']}, Python {result['python']}, "
        f"{result['cpus']} CPUs, {rows:,} rows, median of {reps} interleaved runs",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| throughput vs raw `fetchmany(1000)` loop | {result['throughput_ratio']:.2f}x "
        f"({wrap_med * 1e3:.0f} ms vs {raw_med * 1e3:.0f} ms) | >= 0.9x |",
        f"| time to first row after `execute` returns | {result['first_row_ms']:.2f} ms "
        f"(max {result['first_row_ms_max']:.2f}) | <= 5 ms |",
        f"| raw `execute` + `fetchone`, for scale | {result['raw_execute_fetchone_ms']:.2f} ms | |",
        f"| peak memory, slow reader, buffer 10,000 rows | "
        f"{result['peak_mb_slow_reader_buffer_10000']:.1f} MB | bounded by the buffer |",
        f"| peak memory, slow reader, buffer 1,000 rows | "
        f"{result['peak_mb_slow_reader_buffer_1000']:.1f} MB | |",
        f"| peak memory, raw `fetchall`, for scale | {result['peak_mb_raw_fetchall']:.1f} MB | |",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
