"""The sqlite3 benchmarks P1-P4 (see docs/benchmarks.md for what each one means).

Every benchmark builds its connections first, then runs its modes interleaved
(:func:`benchmarks._harness.interleave`), then closes everything it opened.
All times are ``time.perf_counter_ns`` differences, in nanoseconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import random
import sqlite3
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import asynchdb
from asynchdb import Asynch, Phase

from ._harness import Mode, Series, compare, interleave, summarize

pc = time.perf_counter_ns

#: One small table: 1000 rows, an index on ``name`` (a permutation of 0..999).
SETUP_SCRIPT = """
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL NOT NULL);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000)
INSERT INTO items SELECT i, printf('item-%04d', (i * 7919) % 1000), i * 0.5 FROM s;
CREATE INDEX items_name ON items(name);
"""


@dataclass(frozen=True)
class Query:
    key: str
    label: str
    sql: str
    #: Builds the parameter tuple of the i-th call, or None for a query without parameters.
    param: Optional[Callable[[random.Random], tuple[Any, ...]]]


QUERIES: dict[str, Query] = {
    q.key: q for q in (
        Query("select1", "SELECT 1 (pure overhead)", "SELECT 1", None),
        Query("rows100", "100 rows from a 1000-row table",
              "SELECT id, name, score FROM items WHERE id > ? ORDER BY id LIMIT 100",
              lambda rnd: (rnd.randrange(0, 900),)),
        Query("point", "indexed point lookup (1 row)",
              "SELECT id, name, score FROM items WHERE name = ?",
              lambda rnd: (f"item-{rnd.randrange(0, 1000):04d}",)),
    )
}

#: A statement that runs for seconds (about 150 ns per row here) unless stopped.
LONG_SQL = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 20000000) SELECT count(*) FROM c")
#: P4: ``pause()`` lets the waiter block first; ``stamp()`` is evaluated last.
STAMP_SQL = "SELECT stamp(pause())"


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does (``--quick`` vs the full run)."""

    warmup: int
    p1_reps: int
    p1_samples: int   # samples per batch
    p1_calls: int     # at most this many calls timed together in one sample
    p1_sample_us: int  # ... and about this long a sample (calibrated per query)
    p2_reps: int
    p2_iters: int
    p3_reps: int
    p3_iters: int
    p3_delay_s: float  # extra wait after the statement is seen running
    p4_reps: int
    p4_iters: int
    p4_pause_s: float


QUICK = Sizes(warmup=3, p1_reps=4, p1_samples=3, p1_calls=100, p1_sample_us=100,
              p2_reps=4, p2_iters=25, p3_reps=2, p3_iters=3, p3_delay_s=0.002,
              p4_reps=2, p4_iters=10, p4_pause_s=0.0003)
FULL = Sizes(warmup=20, p1_reps=120, p1_samples=5, p1_calls=400, p1_sample_us=200,
             p2_reps=40, p2_iters=100, p3_reps=60, p3_iters=8, p3_delay_s=0.002,
             p4_reps=40, p4_iters=25, p4_pause_s=0.0003)


def sizes_dict(s: Sizes) -> dict[str, Any]:
    return asdict(s)


def _params(q: Query, n: int, seed: int) -> list[tuple[Any, ...]]:
    if q.param is None:
        return []
    rnd = random.Random(f"{seed}-{q.key}")
    make = q.param
    return [make(rnd) for _ in range(n)]


def _series_out(series: dict[str, Series]) -> dict[str, Any]:
    return {name: summarize(s) for name, s in series.items()}


# ---------------------------------------------------------------------------
# P1: the synchronous drop-in path
# ---------------------------------------------------------------------------
class _Forwarder:
    """The thinnest possible Python wrapper: the floor for any pure-Python layer."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def execute(self, operation: Any, *args: Any) -> _Forwarder:
        self._raw.execute(operation, *args)
        return self

    def fetchall(self) -> Any:
        return self._raw.fetchall()


class _LockedForwarder:
    """The forwarder plus the ownership rule's non-blocking lock around each call."""

    __slots__ = ("_lock", "_raw")

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._lock = threading.Lock()

    def execute(self, operation: Any, *args: Any) -> _LockedForwarder:
        lock = self._lock
        if not lock.acquire(False):
            raise RuntimeError("busy")
        try:
            self._raw.execute(operation, *args)
        finally:
            lock.release()
        return self

    def fetchall(self) -> Any:
        lock = self._lock
        if not lock.acquire(False):
            raise RuntimeError("busy")
        try:
            return self._raw.fetchall()
        finally:
            lock.release()


def _p1_batch(cur: Any, sql: str, params: list[tuple[Any, ...]], calls: int,
              samples: int, warmup: int) -> Callable[[], list[float]]:
    # the same loop for every mode: only the cursor object differs
    def plain() -> list[float]:
        for _ in range(warmup):
            cur.execute(sql)
            cur.fetchall()
        out: list[float] = []
        for _ in range(samples):
            t0 = pc()
            for _ in range(calls):
                cur.execute(sql)
                cur.fetchall()
            out.append((pc() - t0) / calls)
        return out

    def with_params() -> list[float]:
        for p in params[:warmup]:
            cur.execute(sql, p)
            cur.fetchall()
        out: list[float] = []
        for k in range(samples):
            chunk = params[k * calls:(k + 1) * calls]
            t0 = pc()
            for p in chunk:
                cur.execute(sql, p)
                cur.fetchall()
            out.append((pc() - t0) / calls)
        return out

    return plain if not params else with_params


P1_MODES = ("sqlite3", "sqlite3 + no-op progress handler", "Python forwarder",
            "Python forwarder + owner lock", "asynchdb")


def run_p1(sz: Sizes, seed: int) -> dict[str, Any]:
    """Sync drop-in ``execute`` + ``fetchall``: asynchdb vs raw sqlite3 (``:memory:``)."""
    raws = [sqlite3.connect(":memory:") for _ in range(4)]
    raws[1].set_progress_handler(lambda: 0, 1000)  # what asynchdb installs, minus its logic
    wrapped = asynchdb.connect(sqlite3, ":memory:")
    conns: list[Any] = [*raws, wrapped]
    for c in conns:
        c.executescript(SETUP_SCRIPT)
    out: dict[str, Any] = {
        "title": "P1: synchronous drop-in execute + fetchall vs raw sqlite3",
        "unit": "ns per execute+fetchall (mean of a timed batch; median over batches)",
        "calls_per_sample": {},
        "queries": {},
    }
    try:
        for q in QUERIES.values():
            calls = _calibrate(raws[0], q, sz, seed)
            out["calls_per_sample"][q.key] = calls
            params = _params(q, sz.p1_samples * calls, seed)
            cursors: list[Any] = [
                raws[0].cursor(), raws[1].cursor(),
                _Forwarder(raws[2].cursor()), _LockedForwarder(raws[3].cursor()),
                wrapped.cursor(),
            ]
            expect = raws[0].execute(q.sql, *(params[:1] or [()])).fetchall()
            for cur in cursors:  # same answers everywhere
                got = cur.execute(q.sql, *(params[:1] or [()])).fetchall()
                if got != expect:
                    raise AssertionError(f"P1 {q.key}: {type(cur).__name__} disagrees")
            modes = [Mode(name, _p1_batch(cur, q.sql, params, calls,
                                          sz.p1_samples, sz.warmup))
                     for name, cur in zip(P1_MODES, cursors)]
            series = interleave(modes, sz.p1_reps)
            raw, ours = series["sqlite3"], series["asynchdb"]
            med = {k: v["median_ns"] for k, v in _series_out(series).items()}
            out["queries"][q.key] = {
                "label": q.label,
                "sql": q.sql,
                "modes": _series_out(series),
                "comparisons": [compare(ours, raw, 1.10)],
                "breakdown_ns": {
                    "sqlite3 itself": med["sqlite3"],
                    "progress handler (asynchdb installs one)":
                        _diff(med["sqlite3 + no-op progress handler"], med["sqlite3"]),
                    "one Python method layer per call (floor of any wrapper)":
                        _diff(med["Python forwarder"], med["sqlite3"]),
                    "non-blocking owner lock acquire/release":
                        _diff(med["Python forwarder + owner lock"], med["Python forwarder"]),
                    "rest of asynchdb's fast path":
                        _diff(med["asynchdb"], med["Python forwarder + owner lock"]),
                },
            }
            for cur in cursors:
                if isinstance(cur, (_Forwarder, _LockedForwarder)):
                    cur._raw.close()
                else:
                    cur.close()
        out["asynchdb_counters"] = wrapped.statistics()
    finally:
        wrapped.close()
        for c in raws:
            c.close()
    return out


def _calibrate(raw: sqlite3.Connection, q: Query, sz: Sizes, seed: int) -> int:
    """Calls per sample so that a sample of raw sqlite3 lasts about ``p1_sample_us``.

    Short samples interleave the modes finely, so a burst of noise from another
    tenant lands on every mode alike instead of on one long batch.
    """
    params = _params(q, 50, seed) or [()] * 50
    cur = raw.cursor()
    best = None
    for _ in range(3):
        t0 = pc()
        for p in params:
            cur.execute(q.sql, p)
            cur.fetchall()
        t = (pc() - t0) / len(params)
        best = t if best is None else min(best, t)
    cur.close()
    assert best is not None
    return max(10, min(sz.p1_calls, round(sz.p1_sample_us * 1000 / best)))


def _diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else round(a - b, 1)


# ---------------------------------------------------------------------------
# P2: the asynchronous round trip
# ---------------------------------------------------------------------------
def _have_aiosqlite() -> bool:
    try:
        import aiosqlite  # noqa: F401
    except ImportError:
        return False
    return True


async def _aio_open(script: str) -> Any:
    import aiosqlite

    db = await aiosqlite.connect(":memory:")
    await db.executescript(script)
    return db


async def _aio_batch(db: Any, sql: str, params: Sequence[Optional[tuple[Any, ...]]],
                     warmup: int) -> list[float]:
    # runs inside one running event loop; each iteration is timed inside the loop
    for p in params[:warmup]:
        c = await db.execute(sql, p)
        await c.fetchall()
    out: list[float] = []
    for p in params:
        t0 = pc()
        c = await db.execute(sql, p)
        await c.fetchall()
        out.append(pc() - t0)
    return out


P2_QUERIES = ("select1", "rows100")
PREPOP = "asynchdb, asynch=PREPOPULATE (rows fetched on the worker)"


def run_p2(sz: Sizes, seed: int) -> dict[str, Any]:
    """Async execute, result(), fetchall() vs a naive executor and aiosqlite."""
    wrapped = asynchdb.connect(sqlite3, ":memory:")
    wrapped.executescript(SETUP_SCRIPT)
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-tpe")
    # the naive wrapper: the sqlite3 connection belongs to the executor's thread
    raw = ex.submit(sqlite3.connect, ":memory:").result()
    ex.submit(raw.executescript, SETUP_SCRIPT).result()
    aio = _have_aiosqlite()
    loop: Optional[asyncio.AbstractEventLoop] = None
    db: Any = None
    if aio:
        loop = asyncio.new_event_loop()
        db = loop.run_until_complete(_aio_open(SETUP_SCRIPT))
    out: dict[str, Any] = {
        "title": "P2: asynchronous round trip (execute, wait, fetchall)",
        "unit": "ns per iteration, timed one by one",
        "aiosqlite": aio,
        "queries": {},
    }
    try:
        for key in P2_QUERIES:
            q = QUERIES[key]
            n = sz.p2_iters + sz.warmup
            plist: list[Optional[tuple[Any, ...]]] = list(_params(q, n, seed)) or [None] * n
            wcur = wrapped.cursor()
            pcur = wrapped.cursor()
            rcur = ex.submit(raw.cursor).result()

            def ours(wcur: Any = wcur, sql: str = q.sql,
                     plist: list[Optional[tuple[Any, ...]]] = plist,
                     flag: Any = True) -> list[float]:
                res: list[float] = []
                for i, p in enumerate(plist):
                    args = () if p is None else (p,)
                    t0 = pc()
                    op = wcur.execute(sql, *args, asynch=flag)
                    op.result()
                    wcur.fetchall()
                    if i >= sz.warmup:
                        res.append(pc() - t0)
                return res

            def prepop(wcur: Any = pcur, sql: str = q.sql,
                       plist: list[Optional[tuple[Any, ...]]] = plist) -> list[float]:
                return ours(wcur, sql, plist, Asynch.PREPOPULATE)

            def naive(rcur: Any = rcur, sql: str = q.sql,
                      plist: list[Optional[tuple[Any, ...]]] = plist) -> list[float]:
                res: list[float] = []
                for i, p in enumerate(plist):
                    args = () if p is None else (p,)
                    t0 = pc()
                    ex.submit(rcur.execute, sql, *args).result()
                    ex.submit(rcur.fetchall).result()
                    if i >= sz.warmup:
                        res.append(pc() - t0)
                return res

            modes = [Mode("asynchdb", ours), Mode("ThreadPoolExecutor(1), naive", naive)]
            if hasattr(Asynch, "PREPOPULATE"):
                modes.append(Mode(PREPOP, prepop))
            if aio and loop is not None:
                def aiosq(sql: str = q.sql,
                          plist: list[Optional[tuple[Any, ...]]] = plist) -> list[float]:
                    assert loop is not None
                    return loop.run_until_complete(
                        _aio_batch(db, sql, plist[sz.warmup:], sz.warmup))

                modes.append(Mode("aiosqlite", aiosq))
            hopped_before = wrapped.statistics()["hopped"]
            series = interleave(modes, sz.p2_reps)
            comps = [compare(series["asynchdb"], series["ThreadPoolExecutor(1), naive"], 0.8)]
            if "aiosqlite" in series:
                comps.append(compare(series["asynchdb"], series["aiosqlite"], 0.5))
            out["queries"][key] = {
                "label": q.label,
                "sql": q.sql,
                "modes": _series_out(series),
                "comparisons": comps,
                # fetchall after result() should run inline, not hop back to the worker
                "asynchdb_fetchall_hops": wrapped.statistics()["hopped"] - hopped_before,
            }
            wcur.close()
            pcur.close()
            ex.submit(rcur.close).result()
    finally:
        wrapped.close()
        ex.submit(raw.close).result()
        ex.shutdown(wait=True)
        if loop is not None:
            if db is not None:
                loop.run_until_complete(db.close())
            loop.close()
    return out


# ---------------------------------------------------------------------------
# P3: abort latency
# ---------------------------------------------------------------------------
class _RawRunner:
    """A plain thread running statements on its own sqlite3 connection (baselines)."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.inbox: queue.SimpleQueue[Optional[str]] = queue.SimpleQueue()
        self.started = threading.Event()
        self.done = threading.Event()
        self.returned_ns = 0
        self.outcome = ""
        self.thread = threading.Thread(target=self._main, name="bench-raw-sqlite3",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self, sql: str) -> None:
        """Start ``sql`` on the thread (caller then waits on ``done``)."""
        self.started.clear()
        self.done.clear()
        self.inbox.put(sql)

    def _main(self) -> None:
        cur = self.conn.cursor()
        while True:
            sql = self.inbox.get()
            if sql is None:
                break
            self.started.set()
            try:
                cur.execute(sql)
            except sqlite3.OperationalError as exc:
                self.returned_ns = pc()
                self.outcome = str(exc)
            else:
                self.returned_ns = pc()
                self.outcome = "completed"
            self.done.set()
        cur.close()

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(10)
        self.conn.close()


def _wait_running(op: Any, limit_s: float = 2.0) -> bool:
    """Poll ``get_status`` (sleeping, never spinning) until it shows VM steps."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        st = op.get_status()
        if st.done:
            return False
        if st.status_text:
            return True
        time.sleep(0.0002)
    return False


def run_p3(sz: Sizes, seed: int) -> dict[str, Any]:
    """abort() -> wait_for_completion() vs interrupt() -> the thread's call returning."""
    del seed
    wrapped = asynchdb.connect(sqlite3, ":memory:")
    wcur = wrapped.cursor()
    runner = _RawRunner()
    runner.start()
    notified = Series("sqlite3 interrupt(), until an Event wakes the main thread")
    abort_call = Series("asynchdb abort() call itself")
    problems = {"asynchdb_not_seen_running": 0, "asynchdb_not_canceled": 0,
                "sqlite3_not_interrupted": 0}

    def ours() -> list[float]:
        res: list[float] = []
        calls: list[float] = []
        for i in range(sz.p3_iters + 1):  # the first one is a warm-up
            op = wcur.execute(LONG_SQL, asynch=True)
            if not _wait_running(op):
                problems["asynchdb_not_seen_running"] += 1
            time.sleep(sz.p3_delay_s)
            t0 = pc()
            op.abort()
            t1 = pc()
            finished = op.wait_for_completion(10.0)
            t2 = pc()
            if not finished or op.get_status().phase != Phase.CANCELED:
                problems["asynchdb_not_canceled"] += 1
                op.wait_for_completion()
                continue
            if i:
                res.append(t2 - t0)
                calls.append(t1 - t0)
        abort_call.samples.extend(calls)
        return res

    def raw() -> list[float]:
        res: list[float] = []
        woke: list[float] = []
        for i in range(sz.p3_iters + 1):
            runner.run(LONG_SQL)
            runner.started.wait(10)
            time.sleep(sz.p3_delay_s)
            t0 = pc()
            runner.conn.interrupt()
            ok = runner.done.wait(1.0)
            t2 = pc()
            while not runner.done.is_set():  # interrupt landed before the statement
                runner.conn.interrupt()
                runner.done.wait(0.05)
            if not ok or runner.outcome != "interrupted":
                problems["sqlite3_not_interrupted"] += 1
                continue
            if i:
                res.append(runner.returned_ns - t0)
                woke.append(t2 - t0)
        notified.samples.extend(woke)
        if woke:
            notified.rep_medians.append(statistics.median(woke))
        return res

    name_ours = "asynchdb abort() -> wait_for_completion() returns"
    name_raw = "sqlite3 interrupt() -> the thread's execute returns"
    try:
        series = interleave([Mode(name_ours, ours), Mode(name_raw, raw)], sz.p3_reps)
    finally:
        wcur.close()
        wrapped.close()
        runner.stop()
    a, b = series[name_ours], series[name_raw]
    modes = _series_out(series)
    modes[notified.name] = summarize(notified)
    modes[abort_call.name] = summarize(abort_call)
    return {
        "title": "P3: abort latency on a running sqlite3 statement",
        "unit": "ns from the abort/interrupt call",
        "sql": LONG_SQL,
        "delay_after_running_s": sz.p3_delay_s,
        "modes": modes,
        # "measured the same way": from the abort/interrupt call until a waiting
        # thread wakes; the bare return of the interrupted thread is context
        "comparisons": [compare(a, notified, 2.0), compare(a, notified, 2.0, stat="p99"),
                        compare(a, b, None)],
        "problems": problems,
    }


# ---------------------------------------------------------------------------
# P4: completion -> waiter wake-up
# ---------------------------------------------------------------------------
class _Stamp:
    """``stamp(x)``: records perf_counter_ns and returns x; ``pause()`` sleeps briefly."""

    def __init__(self, pause_s: float) -> None:
        self.ns = 0
        self.pause_s = pause_s

    def stamp(self, x: Any) -> Any:
        self.ns = pc()
        return x

    def pause(self) -> int:
        time.sleep(self.pause_s)
        return 1

    def install(self, conn: Any) -> None:
        conn.create_function("stamp", 1, self.stamp)
        conn.create_function("pause", 0, self.pause)


def run_p4(sz: Sizes, seed: int) -> dict[str, Any]:
    """From the end of the driver call on the worker to the waiting thread running again."""
    del seed
    s_ours, s_event, s_tpe = (_Stamp(sz.p4_pause_s) for _ in range(3))
    wrapped = asynchdb.connect(sqlite3, ":memory:")
    s_ours.install(wrapped)
    wcur = wrapped.cursor()
    runner = _RawRunner()
    s_event.install(runner.conn)
    runner.start()
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-tpe")
    traw = ex.submit(sqlite3.connect, ":memory:").result()
    ex.submit(s_tpe.install, traw).result()
    tcur = ex.submit(traw.cursor).result()
    n = sz.p4_iters + sz.warmup

    def ours() -> list[float]:
        res: list[float] = []
        for i in range(n):
            op = wcur.execute(STAMP_SQL, asynch=True)
            op.result()
            t1 = pc()
            if i >= sz.warmup:
                res.append(t1 - s_ours.ns)
        return res

    def event() -> list[float]:
        res: list[float] = []
        for i in range(n):
            runner.run(STAMP_SQL)
            runner.done.wait()
            t1 = pc()
            if i >= sz.warmup:
                res.append(t1 - s_event.ns)
        return res

    def tpe() -> list[float]:
        res: list[float] = []
        for i in range(n):
            ex.submit(tcur.execute, STAMP_SQL).result()
            t1 = pc()
            if i >= sz.warmup:
                res.append(t1 - s_tpe.ns)
        return res

    name_ours = "asynchdb op.result() returns"
    name_event = "threading.Event handoff (raw thread sets it after execute)"
    name_tpe = "ThreadPoolExecutor future.result() returns"
    try:
        series = interleave([Mode(name_ours, ours), Mode(name_event, event),
                             Mode(name_tpe, tpe)], sz.p4_reps)
    finally:
        wcur.close()
        wrapped.close()
        runner.stop()
        ex.submit(tcur.close).result()
        ex.submit(traw.close).result()
        ex.shutdown(wait=True)
    return {
        "title": "P4: completion to waiter wake-up",
        "unit": "ns from stamp() (last expression of the statement) to the waiter running",
        "sql": STAMP_SQL,
        "modes": _series_out(series),
        "comparisons": [compare(series[name_ours], series[name_event], None),
                        compare(series[name_ours], series[name_event], None, stat="p99"),
                        compare(series[name_ours], series[name_tpe], None)],
    }


BENCHMARKS: dict[str, Callable[[Sizes, int], dict[str, Any]]] = {
    "P1": run_p1,
    "P2": run_p2,
    "P3": run_p3,
    "P4": run_p4,
}
