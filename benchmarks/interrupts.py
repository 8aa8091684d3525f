"""P7, P8, P9: Ctrl-C and asyncio, against what a user has without asynchdb.

``python -m benchmarks.interrupts [--quick] [--only P7,P8,P9] [--no-write]``

* **P7** SIGINT to "statement gone": the main thread runs a long statement
  through asynchdb (the drop-in call); a helper thread sends SIGINT to the
  process once the statement runs, and polls until it is gone from
  ``pg_stat_activity`` / ``processlist`` (in-process engines: until the main
  thread got ``KeyboardInterrupt``).  Baseline: the driver's own cancel
  primitive called from the helper thread on a raw connection (sqlite3
  ``interrupt``, DuckDB ``interrupt``, pyodbc ``Cursor.cancel``, psycopg
  ``cancel_safe``), timed the same way.  Target: median and p99 within the
  driver's own latency + 50 ms.  Trials alternate between the two modes.
* **P8** one asyncio round trip (execute, await, fetchall of ``SELECT 1``):
  ``await cur.execute(sql, asynch=True)`` + ``fetchall()`` against ``await
  asyncio.to_thread(...)`` around the raw calls (what an asyncio user
  writes), on every backend; against aiosqlite on sqlite3, aioodbc on pyodbc,
  and psycopg's ``AsyncConnection`` on PostgreSQL (context); and, as context
  on every backend, ``to_thread`` around ``execute`` alone with ``fetchall``
  on the loop's thread, the split ``await op`` has.  Modes are interleaved
  (benchmarks/_harness.py).
* **P9** 1,000 statements (``pg_sleep(0.005)``) awaited at once over a pool of
  connections on PostgreSQL (psycopg) against the same work on as many raw
  threads, each with its own connection; and the event loop's lag (a 10 ms
  ticker) while asynchdb's run, and the CPU per statement of each side.
  Context sides: ``run_in_executor``, asynchdb with no loop, raw threads
  beside GIL bursts or with extra Python, and psycopg's ``AsyncConnection``
  (no thread at all).
  Then the same shape on ``benchmarks/_sleepdb.py``, a driver whose statement
  is ``time.sleep``, as context: asynchdb's own cost with no database
  sharing the CPUs.

The machine these run on is shared with other jobs: read ratios, not
absolute times, and compare the per-repetition spread.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import faulthandler
import json
import os
import resource
import signal
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import asynchdb
from benchmarks._harness import Mode, compare, interleave, quantile, summarize
from benchmarks.backends import BACKENDS, BY_NAME, Backend, marker

RESULTS = Path(__file__).resolve().parent / "results"
#: Backends P7 runs (``--backends``); empty: all.
ONLY_BACKENDS: set[str] = set()


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


# ---------------------------------------------------------------------------
# P7
# ---------------------------------------------------------------------------
def _raw_cancel(backend: Backend, raw: Any, cur: Any) -> Optional[Callable[[], None]]:
    """The driver's own cancel primitive for a statement running on ``cur``, if any.

    For the drivers with none of their own, what a user would send by hand:
    PostgreSQL's cancel request with pg8000's key, ``KILL QUERY`` from a
    second connection for the MySQL family and ClickHouse (by the query id the
    statement was given).  None: no baseline (adbc-sqlite).
    """
    mod = backend.module_name
    if mod in ("sqlite3", "apsw"):
        return raw.interrupt  # type: ignore[no-any-return]
    if mod == "duckdb":
        return cur.interrupt  # type: ignore[no-any-return]
    if mod == "pyodbc":
        return cur.cancel  # type: ignore[no-any-return]
    if mod == "psycopg":
        return lambda: raw.cancel_safe(timeout=5)
    if mod == "psycopg2":
        return raw.cancel  # type: ignore[no-any-return]
    if mod == "adbc_driver_postgresql.dbapi":
        return cur.adbc_cancel  # type: ignore[no-any-return]
    if mod == "pg8000":
        from asynchdb._drivers._pg8000 import _target_of, send_cancel_request

        target = _target_of(raw)
        return None if target is None else (lambda: send_cancel_request(target))
    if mod in ("pymysql", "MySQLdb", "mariadb"):
        tid = raw.thread_id
        tid = int(tid() if callable(tid) else tid)
        return lambda: _from_second_connection(backend, f"KILL QUERY {tid}")
    if mod == "clickhouse_driver.dbapi":
        # no cancel in the driver: a raw user names the statement and kills it by
        # name, on every server of the cluster, as the adapter does (the shards'
        # parts carry the name as their initial query id).  Sent once, as a
        # user would, it still left a shard's part running to its end in about
        # 1 trial in 25 (a baseline "p99" of 10 s, 2026-12-07): run_p7 counts
        # such misses apart
        qid = uuid.uuid4().hex
        cur.set_query_id(qid)
        killers = _clickhouse_killers(backend)
        return lambda: _clickhouse_kill(killers, qid)
    return None


#: ClickHouse: one raw cursor per server, the local one first, opened once (as
#: the adapter keeps its own): a hand-written kill need not connect each time.
_CH_KILLERS: dict[str, list[Any]] = {}


def _clickhouse_killers(backend: Backend) -> list[Any]:
    found = _CH_KILLERS.get(backend.name)
    if found is not None:
        return found
    import urllib.parse

    first = backend.connect_raw()
    cur = first.cursor()
    cur.execute("SELECT DISTINCT host_address, port FROM system.clusters WHERE is_local = 0 "
                "ORDER BY host_address, port")
    others = [(str(h), int(p)) for h, p in cur.fetchall()]
    url = urllib.parse.urlsplit(backend.dsn())
    login = {"user": urllib.parse.unquote(url.username or "default"),
             "password": urllib.parse.unquote(url.password or "")}
    mod = backend.module()
    killers = [cur] + [mod.connect(host=h, port=p, database="system", **login).cursor()
                       for h, p in others]
    _CH_KILLERS[backend.name] = killers
    return killers


def _clickhouse_kill(killers: list[Any], qid: str) -> None:
    """The shards' parts first (by initial query id), then the query itself."""
    for peer in killers[1:]:
        peer.execute(f"KILL QUERY WHERE initial_query_id = '{qid}' ASYNC")
        peer.fetchall()
    killers[0].execute(f"KILL QUERY WHERE query_id = '{qid}' ASYNC")
    killers[0].fetchall()


def _from_second_connection(backend: Backend, sql: str) -> None:
    """Run ``sql`` on a connection opened for it, as a user's hand-written kill does."""
    twin = backend.connect_raw()
    try:
        c = twin.cursor()
        c.execute(sql)
        c.close()
    finally:
        twin.close()


def _trial(backend: Backend, mode: str, conn: Any, raw: Any,
           running: Callable[[str], Optional[list[str]]],
           seconds: float) -> Optional[tuple[float, Optional[float]]]:
    """One statement stopped by SIGINT (asynchdb) or the raw cancel.

    Seconds from the stop to the statement's being gone, and to the call's
    return (asynchdb: the ``KeyboardInterrupt`` raised; raw: the driver's
    error; None if the call returned normally, as a killed ``SLEEP()`` may).
    """
    tag = marker()
    sql = backend.long_sql(seconds, tag)
    cur = conn.cursor() if mode == "asynchdb" else raw.cursor()
    inside = threading.Event()
    result: dict[str, float] = {}

    def stopper() -> None:
        # helper thread: wait until the statement runs, stop it, time until it is gone
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = running(tag)
            if seen is None:  # in-process: give the statement 50 ms to get going
                if inside.wait(1):
                    time.sleep(0.05)
                    break
            elif seen:
                break
            time.sleep(0.002)
        else:
            return
        result["sent"] = time.monotonic()
        if mode == "asynchdb":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            if cancel is None:
                result.pop("sent")
                return
            cancel()
        if running(tag) is not None:
            while running(tag) and time.monotonic() - result["sent"] < 10:
                time.sleep(0.001)
            result["gone"] = time.monotonic()

    # read on this thread: MySQLdb refuses thread_id() while a call runs
    cancel = _raw_cancel(backend, raw, cur) if mode == "raw" else None
    helper = threading.Thread(target=stopper)
    helper.start()
    inside.set()
    try:
        cur.execute(sql)
        cur.fetchall()
    except KeyboardInterrupt:
        result["returned"] = time.monotonic()
    except Exception:  # the driver's cancel error (raw mode)
        result["returned"] = time.monotonic()
    try:
        helper.join(15)
    except KeyboardInterrupt:
        # the SIGINT came after the call had ended (the helper saw the
        # statement as it ended): no trial, and the helper must end before
        # the monitor's connection, which it uses, is closed
        helper.join(15)
        return None
    with contextlib.suppress(Exception):
        cur.close()
    if mode == "raw":  # a canceled statement may have failed the transaction
        with contextlib.suppress(Exception):
            raw.rollback()
    if "sent" not in result:
        return None
    end = result.get("gone", result.get("returned"))
    if end is None:
        return None
    returned = result.get("returned")
    return end - result["sent"], None if returned is None else returned - result["sent"]


#: A stop that left its 20 s statement running this long did not stop it.
MISSED_MS = 5000.0


def run_p7(trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {"title": "P7: SIGINT to statement gone, vs the driver's own cancel",
                           "backends": {}}
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        out["skipped"] = "Python's default SIGINT handler is not installed"
        return out
    for b in BACKENDS:
        if ONLY_BACKENDS and b.name not in ONLY_BACKENDS:
            continue
        reason = b.unavailable()
        if reason is not None:
            out["backends"][b.name] = {"skipped": reason}
            continue
        if not b.can_cancel:
            out["backends"][b.name] = {"skipped": "no cancel: Ctrl-C behaves as raw"}
            continue
        seconds = 20.0
        conn = b.connect()
        raw = b.connect_raw()
        times: dict[str, list[float]] = {"asynchdb": [], "raw": []}
        returns: dict[str, list[float]] = {"asynchdb": [], "raw": []}
        try:
            with b.monitor() as running:
                for i in range(trials * 2):
                    mode = ("asynchdb", "raw")[i % 2]
                    t = _trial(b, mode, conn, raw, running, seconds)
                    if t is not None:
                        times[mode].append(t[0] * 1000)
                        if t[1] is not None:
                            returns[mode].append(t[1] * 1000)
        finally:
            conn.close()
            raw.close()
        row: dict[str, Any] = {}
        for mode, all_ms in times.items():
            # a stop that missed leaves the statement to its end: counted apart,
            # not folded into the latency (its "latency" is the watch's timeout)
            xs = [t for t in all_ms if t < MISSED_MS]
            row[mode] = {"n": len(xs), "missed": len(all_ms) - len(xs),
                         "median_ms": round(statistics.median(xs), 2) if xs else None,
                         "p99_ms": round(quantile(xs, 0.99), 2) if xs else None}
        a, r = row["asynchdb"], row["raw"]
        if a["median_ms"] is not None and r["median_ms"] is not None:
            row["median_over_raw_ms"] = round(a["median_ms"] - r["median_ms"], 2)
            row["p99_over_raw_ms"] = round(a["p99_ms"] - r["p99_ms"], 2)
            row["met"] = (row["median_over_raw_ms"] <= 50 and row["p99_over_raw_ms"] <= 50
                          and a["missed"] == 0)
        # when the call returned: asynchdb's KeyboardInterrupt against the raw
        # call's return with the cancel's error (API: within the driver's
        # cancel latency plus 100 ms)
        for mode, all_returns in returns.items():
            xs = [t for t in all_returns if t < MISSED_MS]
            row[mode]["returned_n"] = len(xs)
            row[mode]["returned_median_ms"] = round(statistics.median(xs), 2) if xs else None
            row[mode]["returned_p99_ms"] = round(quantile(xs, 0.99), 2) if xs else None
        ka, kr = row["asynchdb"], row["raw"]
        if ka["returned_median_ms"] is not None and kr["returned_median_ms"] is not None:
            row["ki_within_100ms"] = (
                ka["returned_median_ms"] <= kr["returned_median_ms"] + 100
                and ka["returned_p99_ms"] <= kr["returned_p99_ms"] + 100)
        out["backends"][b.name] = row
        print(f"P7 {b.name}: {row}", flush=True)
    return out


# ---------------------------------------------------------------------------
# P8
# ---------------------------------------------------------------------------
def _async_batch(loop: asyncio.AbstractEventLoop, step: Callable[[], Any],
                 n: int, warmup: int) -> Callable[[], list[float]]:
    async def many() -> list[float]:
        out = []
        for i in range(n + warmup):
            t0 = time.perf_counter_ns()
            await step()
            if i >= warmup:
                out.append(float(time.perf_counter_ns() - t0))
        return out

    return lambda: loop.run_until_complete(many())


#: P8's context mode: ``asyncio.to_thread`` around ``execute`` only, the rows
#: fetched on the loop's thread as after ``await op``
P8_SPLIT = "asyncio.to_thread(execute), fetchall on the loop"


def run_p8(n: int, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"title": "P8: one asyncio round trip (execute, await, fetchall "
                                    "of SELECT 1)", "unit": "us", "backends": {}}
    sql = "SELECT 1"
    loop = asyncio.new_event_loop()
    try:
        for b in BACKENDS:
            reason = b.unavailable()
            if reason is not None:
                out["backends"][b.name] = {"skipped": reason}
                continue
            closers: list[Callable[[], Any]] = []
            try:
                modes = _p8_modes(b, sql, loop, n, closers)
                series = interleave(modes, reps)
            finally:
                for close in reversed(closers):
                    with contextlib.suppress(Exception):
                        r = close()
                        if asyncio.iscoroutine(r):
                            loop.run_until_complete(r)
            ours = series["asynchdb await op"]
            row: dict[str, Any] = {"modes": {k: summarize(v) for k, v in series.items()},
                                   "comparisons": []}
            targets = {"asyncio.to_thread(raw)": 1.0, "aiosqlite": 0.5, "aioodbc": 0.6}
            for name, s in series.items():
                if s is not ours:
                    row["comparisons"].append(compare(ours, s, targets.get(name)))
            out["backends"][b.name] = row
            print(f"P8 {b.name}: " + ", ".join(
                f"{c['to']} {c['ratio']}x" for c in row["comparisons"]), flush=True)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    return out


def _p8_modes(b: Backend, sql: str, loop: asyncio.AbstractEventLoop, n: int,
              closers: list[Callable[[], Any]]) -> list[Mode]:
    warm = max(5, n // 20)
    conn = b.connect()
    closers.append(conn.close)
    cur = conn.cursor()

    async def ours() -> Any:
        c = await cur.execute(sql, asynch=True)
        return c.fetchall()

    raw = b.connect_raw(**({"check_same_thread": False} if b.name == "sqlite3" else {}))
    closers.append(raw.close)
    rcur = raw.cursor()

    def raw_call() -> Any:
        rcur.execute(sql)
        return rcur.fetchall()

    async def to_thread() -> Any:
        return await loop.run_in_executor(None, raw_call)

    async def to_thread_split() -> Any:
        # context: the same hop with asynchdb's split, rows fetched on the loop
        await loop.run_in_executor(None, rcur.execute, sql)
        return rcur.fetchall()

    modes = [Mode("asynchdb await op", _async_batch(loop, ours, n, warm)),
             Mode("asyncio.to_thread(raw)", _async_batch(loop, to_thread, n, warm)),
             Mode(P8_SPLIT, _async_batch(loop, to_thread_split, n, warm))]
    if b.name == "sqlite3":
        import aiosqlite

        aconn = loop.run_until_complete(aiosqlite.connect(b.dsn()))
        closers.append(aconn.close)

        async def aio() -> Any:
            async with aconn.execute(sql) as c:
                return await c.fetchall()

        modes.append(Mode("aiosqlite", _async_batch(loop, aio, n, warm)))
    if b.module_name == "pyodbc":
        try:
            import aioodbc
        except ImportError:
            aioodbc = None
        if aioodbc is not None:
            oconn = loop.run_until_complete(aioodbc.connect(dsn=b.dsn()))
            closers.append(oconn.close)

            async def odbc() -> Any:
                c = await oconn.cursor()
                await c.execute(sql)
                rows = await c.fetchall()
                await c.close()
                return rows

            modes.append(Mode("aioodbc", _async_batch(loop, odbc, n, warm)))
    if b.name == "psycopg":
        import psycopg

        pconn = loop.run_until_complete(psycopg.AsyncConnection.connect(b.dsn()))
        closers.append(pconn.close)

        async def native() -> Any:
            c = await pconn.execute(sql)
            return await c.fetchall()

        modes.append(Mode("psycopg AsyncConnection", _async_batch(loop, native, n, warm)))
    return modes


# ---------------------------------------------------------------------------
# P9
# ---------------------------------------------------------------------------
def run_p9(total: int, pool: int) -> dict[str, Any]:
    b = BY_NAME["psycopg"]
    out: dict[str, Any] = {"title": f"P9: {total} statements awaited at once, pool of {pool} "
                                    "connections (psycopg, pg_sleep(0.005))"}
    engine = _run_p9_engine(total, pool)
    reason = b.unavailable()
    if reason is not None:
        out["skipped"] = reason
        out["engine"] = engine
        return out
    sql = "SELECT pg_sleep(0.005)"
    runs: dict[str, Callable[[], dict[str, float]]] = {
        "asynchdb": lambda: _p9_asynchdb(b, sql, total, pool),
        "threads": lambda: _p9_threads(b, sql, total, pool, reuse=True),
        "threads_cursor_each": lambda: _p9_threads(b, sql, total, pool, reuse=False),
        "executor": lambda: _p9_executor(b, sql, total, pool),
        "asynchdb_without_loop": lambda: _p9_without_loop(b, sql, total, pool),
        "threads_beside_gil_bursts": lambda: _p9_threads(b, sql, total, pool, reuse=True,
                                                         bursts=True),
        "threads_plus_python": lambda: _p9_threads(b, sql, total, pool, reuse=True,
                                                   extra=EXTRA_PYTHON),
        "psycopg_async": lambda: _p9_psycopg_async(b, sql, total, pool)}
    order = list(runs)
    rounds = []
    for r in range(P9_ROUNDS):
        # each round starts with another side (the harness's rule: no side
        # always runs first, or always right after the same other one)
        k = r % len(order)
        rounds.append({name: runs[name]() for name in order[k:] + order[:k]})
    sides = tuple(order)
    med = {k: statistics.median(r[k]["per_s"] for r in rounds) for k in sides}
    tp_a, tp_t = med["asynchdb"], med["threads"]
    lag99 = statistics.median(r["asynchdb"]["lag_p99_ms"] for r in rounds)
    out.update({"rounds": rounds,
                **{f"{k}_per_s": round(med[k], 1) for k in sides},
                "ratio": round(tp_a / tp_t, 3),
                "ratio_cursor_each": round(tp_a / med["threads_cursor_each"], 3),
                "ratio_executor": round(tp_a / med["executor"], 3),
                "lag_p99_ms": round(lag99, 2),
                "loop_cpu_us": round(statistics.median(r["asynchdb"]["loop_cpu_us"]
                                                       for r in rounds), 1),
                "cpu_us_per_statement": {
                    k: round(statistics.median(r[k]["cpu_us"] for r in rounds), 1)
                    for k in sides},
                "switches_per_statement": {
                    k: round(statistics.median(r[k]["switches"] for r in rounds), 1)
                    for k in sides},
                "paired": {k: _paired(rounds, k) for k in sides if k != "threads"},
                "met": tp_a / tp_t >= 0.9 and lag99 <= 20,
                "engine": engine})
    print(f"P9: {out['ratio']}x threads ({out['ratio_cursor_each']}x threads with a cursor "
          f"per statement, {out['ratio_executor']}x asyncio with an executor), loop lag p99 "
          f"{out['lag_p99_ms']} ms", flush=True)
    return out


#: Rounds of P9 on PostgreSQL (each runs every side once, in a rotated order).
P9_ROUNDS = 7


def _paired(rounds: list[dict[str, dict[str, float]]], side: str) -> dict[str, float]:
    """``side``'s throughput over the raw threads', round by round: median and quartiles.

    The two ran within seconds of each other, so a round's ratio is steadier
    than the ratio of the medians when the host's speed drifts between rounds.
    """
    ratios = [r[side]["per_s"] / r["threads"]["per_s"] for r in rounds]
    return {"median": round(statistics.median(ratios), 3),
            "p25": round(quantile(ratios, 0.25), 3), "p75": round(quantile(ratios, 0.75), 3)}


def _run_p9_engine(total: int, pool: int) -> dict[str, Any]:
    """P9's shape on ``benchmarks._sleepdb`` (context): asynchdb's own cost, no database.

    A quieter reading than the PostgreSQL run, whose 50 server backends share
    the machine's CPUs with the benchmark: what asynchdb costs per statement,
    in CPU and in the loop's lag, beyond raw threads doing the same sleeps.
    """
    from benchmarks import _sleepdb

    sql = "SELECT 1"
    rounds = []
    for _ in range(5):
        conns = [asynchdb.wrap(_sleepdb.connect()) for _ in range(pool)]
        rounds.append({"asynchdb": _p9_timed(conns, sql, total, warm="SLEEP 0.1"),
                       "threads": _p9_threads_timed([_sleepdb.connect() for _ in range(pool)],
                                                    sql, total, reuse=True)})
    med = {k: {f: round(statistics.median(r[k][f] for r in rounds), 2)
               for f in ("per_s", "cpu_us")} for k in ("asynchdb", "threads")}
    out = {"title": f"P9, engine only: {total} statements of time.sleep("
                    f"{_sleepdb.SECONDS}) awaited at once, pool of {pool} (benchmarks/_sleepdb.py)",
           "rounds": rounds, "medians": med,
           "ratio": round(med["asynchdb"]["per_s"] / med["threads"]["per_s"], 3),
           "lag_p99_ms": round(statistics.median(r["asynchdb"]["lag_p99_ms"] for r in rounds), 2)}
    print(f"P9 engine only: {out['ratio']}x threads, CPU per statement "
          f"{med['asynchdb']['cpu_us']} us against {med['threads']['cpu_us']} us, loop lag p99 "
          f"{out['lag_p99_ms']} ms", flush=True)
    return out


def _cpu() -> float:
    """CPU seconds of the whole process, every thread, user and system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _switches() -> int:
    """Times a thread of the process gave up its CPU to wait (for the GIL, a lock, a socket)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def _per_statement(total: int, elapsed: float, cpu: float, switches: float) -> dict[str, float]:
    """A side's figures: its time, its throughput, and its CPU and waits per statement."""
    return {"seconds": elapsed, "per_s": total / elapsed, "cpu_us": cpu / total * 1e6,
            "switches": switches / total}


def _hold_gil(seconds: float) -> None:
    """Run Python (holding the GIL, but for the interpreter's own switches) for ``seconds``."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


#: What warms asynchdb's pool on PostgreSQL (``_p9_timed`` says why it is this long).
P9_WARM = "SELECT pg_sleep(0.1)"


def _p9_asynchdb(b: Backend, sql: str, total: int, pool: int) -> dict[str, float]:
    return _p9_timed([b.connect(autocommit=True) for _ in range(pool)], sql, total,
                     warm=P9_WARM)


def _p9_timed(conns: list[Any], sql: str, total: int, *, warm: str) -> dict[str, float]:
    """``total`` statements over ``conns``, all started at once and gathered; closes ``conns``.

    ``warm`` runs first on every connection at once, before the clock: a
    statement long enough that none ends before the last starts, so that
    asynchdb's pool has a thread per connection, as the raw side has
    (a pool thread serves whichever connection needs one: warmed with the
    timed 5 ms statement, 3 to 15 of the 50 threads were still started
    inside the timed part).
    """
    pool = len(conns)
    # cursors first, outside the timed part (psycopg's cursor() no longer
    # waits for a busy connection: the adapter sets cursor_anywhere)
    cursors = [conns[i % pool].cursor() for i in range(total)]
    lags: list[float] = []

    async def main() -> tuple[float, float, float, int]:
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                lags.append((now - last - 0.01) * 1000)
                last = now

        # warm, as the raw side is: its threads are started before its clock
        # starts, and asynchdb's pool threads (one a busy connection) are
        # started here; they stay KEEPALIVE seconds once idle
        await asyncio.gather(*(c.cursor().execute(warm, asynch=True) for c in conns))
        tick = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.05)
        cpu0, sw0, loop0 = _cpu(), _switches(), time.thread_time()
        t0 = time.perf_counter()
        ops = [cur.execute(sql, asynch=True) for cur in cursors]
        await asyncio.gather(*ops)
        elapsed = time.perf_counter() - t0
        cpu, loop_cpu = _cpu() - cpu0, time.thread_time() - loop0
        switches = _switches() - sw0
        stop.set()
        await tick
        return elapsed, cpu, loop_cpu, switches

    try:
        elapsed, cpu, loop_cpu, switches = asyncio.run(main())
    finally:
        for c in conns:
            c.close()
    return {**_per_statement(total, elapsed, cpu, switches),
            "loop_cpu_us": loop_cpu / total * 1e6,
            "lag_p99_ms": quantile(lags, 0.99), "lag_max_ms": max(lags)}


def _p9_threads(b: Backend, sql: str, total: int, pool: int, *,
                reuse: bool, bursts: bool = False, extra: float = 0.0) -> dict[str, float]:
    return _p9_threads_timed([b.connect_raw(autocommit=True) for _ in range(pool)],
                             sql, total, reuse=reuse, bursts=bursts, extra=extra)


#: Seconds of Python (a busy loop, holding the GIL) the raw threads run after
#: each statement in ``threads_plus_python``: more than asynchdb adds per
#: operation (2026-12-06, this host: about 3.5 us on the worker; 18 us of CPU
#: per statement in all with the sleep driver, the waiting thread's wake-ups
#: included).
EXTRA_PYTHON = 20e-6


#: The GIL-bound thread beside the raw threads (``bursts=True``): it runs
#: Python for BURST_ON seconds, then sleeps BURST_OFF seconds, as an event
#: loop that runs every statement's task does (asynchdb's loop spent about
#: 30-45 us of CPU per statement here, 2026-12-06).
BURST_ON, BURST_OFF = 300e-6, 400e-6


def _p9_threads_timed(raws: list[Any], sql: str, total: int, *,
                      reuse: bool, bursts: bool = False, extra: float = 0.0) -> dict[str, float]:
    """The same statements on a raw thread per connection in ``raws``; closes them.

    ``reuse``: each thread runs its statements on one cursor (what a thread
    writes); else on a cursor per statement, made before the clock starts,
    as the asynchdb side must (1,000 statements in flight are 1,000 cursors).
    A fresh psycopg cursor's first execute costs more CPU than a reused one's.

    ``bursts``: one more thread holds the GIL in bursts meanwhile
    (:data:`BURST_ON`, :data:`BURST_OFF`) and touches no database: what
    sharing the GIL with a busy event loop costs the raw threads alone.

    ``extra``: each thread runs that many seconds of Python after each
    statement, on its own thread, as a worker's bookkeeping would.
    """
    pool = len(raws)
    start = threading.Barrier(pool + 1)
    # statement k runs on connection k % pool, on that connection's thread
    if reuse:
        mine = [[r.cursor()] * len(range(i, total, pool)) for i, r in enumerate(raws)]
    else:
        each = [raws[k % pool].cursor() for k in range(total)]
        mine = [each[i::pool] for i in range(pool)]

    def work(i: int) -> None:
        start.wait()
        for cur in mine[i]:
            cur.execute(sql)
            cur.fetchall()
            if extra:
                _hold_gil(extra)

    done = threading.Event()

    def burst() -> None:
        while not done.is_set():
            _hold_gil(BURST_ON)
            time.sleep(BURST_OFF)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(pool)]
    for t in threads:
        t.start()
    burster = threading.Thread(target=burst)
    if bursts:
        burster.start()
    cpu0, sw0 = _cpu(), _switches()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu, switches = _cpu() - cpu0, _switches() - sw0
    done.set()
    if bursts:
        burster.join()
    for r in raws:
        r.close()
    return _per_statement(total, elapsed, cpu, switches)


def _p9_without_loop(b: Backend, sql: str, total: int, pool: int) -> dict[str, float]:
    """asynchdb's side with no event loop: started and waited for from a plain thread.

    The same operations on the same pool (warmed the same way), waited for
    with ``wait_for_completion`` one after the other: what the workers cost
    without the loop's tasks beside them.
    """
    conns = [b.connect(autocommit=True) for _ in range(pool)]
    try:
        cursors = [conns[k % pool].cursor() for k in range(total)]
        for op in [c.cursor().execute(P9_WARM, asynch=True) for c in conns]:
            op.wait_for_completion()
        cpu0, sw0 = _cpu(), _switches()
        t0 = time.perf_counter()
        ops = [cur.execute(sql, asynch=True) for cur in cursors]
        for op in ops:
            op.wait_for_completion()
        elapsed = time.perf_counter() - t0
        cpu, switches = _cpu() - cpu0, _switches() - sw0
    finally:
        for c in conns:
            c.close()
    return _per_statement(total, elapsed, cpu, switches)


def _p9_psycopg_async(b: Backend, sql: str, total: int, pool: int) -> dict[str, float]:
    """psycopg's own ``AsyncConnection`` on the event loop: the same work with no thread at all.

    Context for P9: how far one thread that waits on every socket at once
    (psycopg's non-blocking protocol under asyncio) gets against the 50
    threads.  A cursor per statement made before the clock, statement k on
    connection k % pool, one statement at a time per connection (an
    ``asyncio.Lock`` each, as asynchdb's queue per connection), each an
    execute and a fetchall; the connections warmed with ``P9_WARM``.
    """
    import psycopg

    async def main() -> tuple[float, float, float]:
        conns = [await psycopg.AsyncConnection.connect(b.dsn(), autocommit=True)
                 for _ in range(pool)]
        try:
            await asyncio.gather(*(c.execute(P9_WARM) for c in conns))
            turns = [asyncio.Lock() for _ in range(pool)]
            cursors = [conns[k % pool].cursor() for k in range(total)]

            async def one(k: int) -> Any:
                async with turns[k % pool]:
                    await cursors[k].execute(sql)
                    return await cursors[k].fetchall()

            cpu0, sw0 = _cpu(), _switches()
            t0 = time.perf_counter()
            await asyncio.gather(*(one(k) for k in range(total)))
            return time.perf_counter() - t0, _cpu() - cpu0, _switches() - sw0
        finally:
            for c in conns:
                await c.close()

    elapsed, cpu, switches = asyncio.run(main())
    return _per_statement(total, elapsed, cpu, switches)


def _p9_executor(b: Backend, sql: str, total: int, pool: int) -> dict[str, float]:
    """What an asyncio user writes instead: ``run_in_executor`` on a pool of ``pool`` threads.

    Raw connections, a cursor per statement made before the clock (as
    asynchdb's), statement k on connection k % pool, each call an execute
    and a fetchall; the executor's threads are started before the clock
    (a statement each, all at once).
    """
    raws = [b.connect_raw(autocommit=True) for _ in range(pool)]
    cursors = [raws[k % pool].cursor() for k in range(total)]
    executor = concurrent.futures.ThreadPoolExecutor(pool)

    def one(cur: Any) -> Any:
        cur.execute(sql)
        return cur.fetchall()

    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        warm = [r.cursor() for r in raws]
        await asyncio.gather(*(loop.run_in_executor(executor, one, c) for c in warm))
        cpu0, sw0 = _cpu(), _switches()
        t0 = time.perf_counter()
        await asyncio.gather(*(loop.run_in_executor(executor, one, c) for c in cursors))
        return time.perf_counter() - t0, _cpu() - cpu0, _switches() - sw0

    try:
        elapsed, cpu, switches = asyncio.run(main())
    finally:
        executor.shutdown()
        for r in raws:
            r.close()
    return _per_statement(total, elapsed, cpu, switches)


# ---------------------------------------------------------------------------
def render(results: dict[str, Any]) -> str:
    lines = ["# Ctrl-C and asyncio benchmarks (P7-P9)", "",
             f"Run {results['when']}, load average {results['load_start']} at the start, "
             f"{results['load_end']} at the end (2 shared CPUs, other jobs running: read "
             "ratios, not absolute times).", ""]
    partial = results.get("partial")
    if partial:
        lines += [f"Only {', '.join(partial['ran'])} ran then; the other parts are kept "
                  f"from the run of {partial['kept_from']}.", ""]
    p7 = results.get("P7")
    if p7:
        lines += [f"## {p7['title']}", "",
                  "A trial whose stop left the statement running past "
                  f"{MISSED_MS / 1000:.0f} s is counted as missed, apart from the latencies "
                  "(ClickHouse: a hand-written `KILL QUERY`, sent once as the query "
                  "starts, left a shard's part running to its end in about 1 trial in 25; "
                  "the adapter re-sends its kill); asynchdb must miss none.", "",
                  "The last two columns time the call's return instead: asynchdb's "
                  "`KeyboardInterrupt` raised, against the raw call returning with its "
                  "cancel's error (a killed MariaDB `SLEEP()` may return normally: not "
                  "counted).", "",
                  "| backend | asynchdb SIGINT median / p99 (ms) | driver's cancel median / p99 "
                  "(ms) | over the driver's, median / p99 (ms) | target <= +50 ms "
                  "| KeyboardInterrupt raised / raw call returned, medians (ms) "
                  "| within +100 ms (median and p99) |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in p7["backends"].items():
            if "skipped" in row:
                lines.append(f"| {name} | skipped: {row['skipped']} | | | | | |")
                continue
            a, r = row["asynchdb"], row["raw"]
            ki = row.get("ki_within_100ms")
            returned = (f"{a.get('returned_median_ms')} / {r.get('returned_median_ms')}"
                        if "returned_median_ms" in a else "-")

            def missed(m: dict[str, Any]) -> str:
                return f", {m['missed']} missed" if m.get("missed") else ""

            lines.append(f"| {name} | {a['median_ms']} / {a['p99_ms']} (n={a['n']}{missed(a)}) | "
                         f"{r['median_ms']} / {r['p99_ms']} (n={r['n']}{missed(r)}) | "
                         f"{row.get('median_over_raw_ms')} / {row.get('p99_over_raw_ms')} | "
                         f"{'yes' if row.get('met') else 'no'} | {returned} | "
                         f"{'-' if ki is None else ('yes' if ki else 'no')} |")
        lines.append("")
    p8 = results.get("P8")
    if p8:
        lines += [f"## {p8['title']}", "",
                  "| backend | asynchdb median (us) | compared with | its median (us) | ratio "
                  "(per-repetition p25-p75) | target |", "|---|---|---|---|---|---|"]
        for name, row in p8["backends"].items():
            if "skipped" in row:
                lines.append(f"| {name} | skipped: {row['skipped']} | | | | |")
                continue
            mine = row["modes"]["asynchdb await op"]["median_ns"] / 1000
            for c in row["comparisons"]:
                other = row["modes"][c["to"]]["median_ns"] / 1000
                pr = c.get("per_rep", {})
                target = f"<= {c['target']}x ({'met' if c['met'] else 'not met'})" \
                    if c["target"] is not None else "context"
                lines.append(f"| {name} | {mine:.1f} | {c['to']} | {other:.1f} | "
                             f"{c['ratio']}x ({pr.get('p25')}-{pr.get('p75')}) | {target} |")
        lines.append("")
    p9 = results.get("P9")
    if p9:
        lines += [f"## {p9['title']}", ""]
        if "skipped" in p9:
            lines.append(f"skipped: {p9['skipped']}")
        else:
            lines.append(f"asynchdb {p9['asynchdb_per_s']} statements/s, raw threads "
                         f"{p9['threads_per_s']}/s: {p9['ratio']}x (target >= 0.9x); event "
                         f"loop lag p99 {p9['lag_p99_ms']} ms (target <= 20 ms); medians of "
                         f"{len(p9['rounds'])} rounds.")
            paired = p9.get("paired", {}).get("asynchdb")
            if paired:
                lines += ["", f"Round by round (each round runs every side once, starting "
                              f"with another each time), asynchdb's throughput over the raw "
                              f"threads': median {paired['median']}x, quartiles "
                              f"{paired['p25']}-{paired['p75']}x."]
            if "ratio_cursor_each" in p9:
                lines += ["", f"Raw threads with a cursor per statement, made before the "
                              f"clock as asynchdb's are: {p9['threads_cursor_each_per_s']}/s, "
                              f"so asynchdb is {p9['ratio_cursor_each']}x them (context: "
                              f"a fresh psycopg cursor's first execute costs more than a "
                              f"reused one's)."]
            if "ratio_executor" in p9:
                lines += ["", f"What an asyncio user writes instead, `run_in_executor` on a "
                              f"pool of as many threads (raw connections, execute and "
                              f"fetchall): {p9['executor_per_s']}/s, so asynchdb is "
                              f"{p9['ratio_executor']}x it."]
            cpu = p9.get("cpu_us_per_statement")
            if cpu:
                sw = p9.get("switches_per_statement", {})
                pairs = p9.get("paired", {})
                lines += ["", "| side | statements/s | over raw threads, round by round "
                              "(median) | CPU per statement (us) | waits per statement |",
                          "|---|---|---|---|---|"]
                names = {"asynchdb": ("asynchdb", p9["asynchdb_per_s"]),
                         "threads": ("raw threads", p9["threads_per_s"]),
                         "threads_cursor_each": ("raw threads, a cursor per statement",
                                                 p9.get("threads_cursor_each_per_s")),
                         "executor": ("asyncio, run_in_executor", p9.get("executor_per_s")),
                         "asynchdb_without_loop": ("asynchdb with no event loop (a plain thread "
                                                   "starts and waits)",
                                                   p9.get("asynchdb_without_loop_per_s")),
                         "threads_beside_gil_bursts": (
                             "raw threads beside a thread holding the GIL in bursts",
                             p9.get("threads_beside_gil_bursts_per_s")),
                         "threads_plus_python": (
                             f"raw threads, each running {EXTRA_PYTHON * 1e6:.0f} us of Python "
                             "after each statement", p9.get("threads_plus_python_per_s")),
                         "psycopg_async": ("psycopg's own AsyncConnection on the loop, no "
                                           "thread at all", p9.get("psycopg_async_per_s"))}
                for key, (label, per_s) in names.items():
                    if key in cpu:
                        pair = pairs.get(key, {}).get("median", "")
                        ratio = "1 (the reference)" if key == "threads" else (
                            f"{pair}x" if pair != "" else "")
                        lines.append(f"| {label} | {per_s} | {ratio} | {cpu[key]} | "
                                     f"{sw.get(key, '')} |")
                lines += ["", "CPU: the whole process, every thread, user and system. Waits: "
                              "the times a thread of the process gave up its CPU to wait (for "
                              "the GIL, a lock or a socket; `ru_nvcsw`). Medians."]
                if "loop_cpu_us" in p9:
                    lines += ["", f"asynchdb's event loop thread spent {p9['loop_cpu_us']} us "
                                  "of CPU per statement (its tasks, asyncio's and asynchdb's "
                                  "share)."]
        engine = p9.get("engine")
        if engine:
            med = engine["medians"]
            lines += ["", f"### {engine['title']}", "",
                      f"Context, no target: asynchdb {med['asynchdb']['per_s']} statements/s, "
                      f"raw threads {med['threads']['per_s']}/s ({engine['ratio']}x); CPU per "
                      f"statement {med['asynchdb']['cpu_us']} us against "
                      f"{med['threads']['cpu_us']} us; event loop lag p99 "
                      f"{engine['lag_p99_ms']} ms; medians of {len(engine['rounds'])} rounds. "
                      "No database shares the CPUs here: this is asynchdb's (and asyncio's) "
                      "own cost per statement, and the steadier reading of the two."]
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    # a crash inside a driver's C code says where (one full P7 run ended with
    # SIGSEGV during the MariaDB Connector/Python part, 2026-12-07; not again since)
    faulthandler.enable()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.interrupts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="P7,P8,P9")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--pool", type=int, default=50)
    parser.add_argument("--backends", default="", help="P7 only on these (comma-separated)")
    parser.add_argument("--trials", type=int, default=0, help="P7 trials per mode")
    args = parser.parse_args(argv)
    ONLY_BACKENDS.update(n.strip() for n in args.backends.split(",") if n.strip())
    wanted = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "load_start": _load(), "python": sys.version.split()[0],
                               "asynchdb": asynchdb.__version__}
    if "P7" in wanted:
        results["P7"] = run_p7(args.trials or (5 if args.quick else 25))
    if "P8" in wanted:
        results["P8"] = run_p8(50 if args.quick else 300, 3 if args.quick else 8)
    if "P9" in wanted:
        results["P9"] = run_p9(200 if args.quick else 1000, args.pool)
    results["load_end"] = _load()
    text = render(results)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "interrupts.json"
        if wanted != {"P7", "P8", "P9"} and path.exists():
            # a partial run replaces only its own parts of the saved results
            saved = json.loads(path.read_text())
            for part in ("P7", "P8", "P9"):
                if part not in wanted and part in saved:
                    results[part] = saved[part]
            results["partial"] = {"ran": sorted(wanted),
                                  "kept_from": saved.get("partial", {}).get("kept_from")
                                  or saved.get("when")}
            text = render(results)
        path.write_text(json.dumps(results, indent=1) + "\n")
        (RESULTS / "interrupts.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

