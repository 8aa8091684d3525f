"""The asynchdb demo: ``python -m asynchdb demo``.

It needs nothing but Python's own ``sqlite3``.  In about ten seconds it:

1. builds a sample shop database (customers and orders) in a temporary folder;
2. runs an analytic query asynchronously, polling its status on a live line;
3. runs a much heavier query with a ``cancel_after=`` deadline, shows it ends
   CANCELED with ``DeadlineExceeded``, and shows that SQLite really stopped:
   its own progress handler stops counting, and the same connection answers
   the next query in milliseconds;
4. lets a listener veto one ``abort()`` and allow the next;

then prints a summary of the timings.  ``--quick`` makes everything small.

Thread: the demo runs on the caller's thread; asynchdb runs each query on a
pool worker thread and the deadline on its timer thread.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, TextIO

import asynchdb
from asynchdb import Operation, Phase, Status

__all__ = ["DEFAULT_ROWS", "MIN_ROWS", "QUICK_ROWS", "run_demo"]

#: Orders in the default database (customers: one per ``ORDERS_PER_CUSTOMER``).
DEFAULT_ROWS = 500_000
#: Orders with ``--quick``.
QUICK_ROWS = 20_000
#: Fewest orders for which the heavy query outlasts its deadline many times over
#: (it takes about 3 s at 10,000 orders and grows with the square).
MIN_ROWS = 10_000
#: Average number of orders per customer.
ORDERS_PER_CUSTOMER = 20
#: Seconds between two polls of the live status line.
TICK = 0.2


SCHEMA = """
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,   -- no index: the analytic queries scan
    amount REAL NOT NULL,
    day INTEGER NOT NULL            -- day of the year, 0..364
);
"""

# One recursive CTE per table: far faster than sending rows from Python.
FILL_CUSTOMERS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO customers (id, name, region)
SELECT i, 'customer ' || i,
       CASE i % 7 WHEN 0 THEN 'North' WHEN 1 THEN 'South' WHEN 2 THEN 'East'
                  WHEN 3 THEN 'West' WHEN 4 THEN 'Centre' WHEN 5 THEN 'Coast'
                  ELSE 'Islands' END
FROM n
"""

FILL_ORDERS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO orders (id, customer_id, amount, day)
SELECT i, 1 + abs(random()) % ?, (100 + abs(random()) % 99901) / 100.0, abs(random()) % 365
FROM n
"""

#: Section 2: repeat purchases within 30 days, per region (a self-join).
ANALYTIC_SQL = """
SELECT c.region,
       count(*)                          AS repeat_purchases,
       round(avg(b.day - a.day), 1)      AS avg_gap_days,
       round(sum(b.amount), 2)           AS repeat_revenue
FROM orders AS a
JOIN orders AS b ON b.customer_id = a.customer_id
                AND b.day > a.day AND b.day <= a.day + 30
JOIN customers AS c ON c.id = a.customer_id
GROUP BY c.region
ORDER BY repeat_purchases DESC
"""

#: Sections 3 and 4: orders above their customer's average.  The correlated
#: subquery rescans every order for every order (rows squared): hours of work.
HEAVY_SQL = """
SELECT c.region, count(*) AS big_orders
FROM orders AS o JOIN customers AS c ON c.id = o.customer_id
WHERE o.amount > (SELECT avg(o2.amount) FROM orders AS o2
                  WHERE o2.customer_id = o.customer_id)
GROUP BY c.region
"""

PROBE_SQL = "SELECT count(*) FROM customers"


class _StepCounter:
    """SQLite's own progress handler, counting virtual-machine steps.

    Installed with the driver's ``set_progress_handler`` (asynchdb chains it
    behind its own).  It shows from SQLite's side whether a statement runs.

    Thread: called by SQLite on whichever thread runs a statement.
    """

    EVERY = 1000

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 0  # 0: go on

    @property
    def steps(self) -> int:
        return self.calls * self.EVERY


class _VetoFirstAbort:
    """A listener that vetoes the first abort request and allows the next."""

    def __init__(self) -> None:
        self.progress_calls = 0
        self.abort_requests = 0
        self.stops: list[Status] = []
        #: on_stop may come a moment after wait_for_completion() returned
        self.stopped = threading.Event()

    def on_progress(self, op: Operation[Any], status: Status) -> Optional[bool]:
        # Thread: the timer thread (ticks), the worker (start/end), or the
        # thread that called abort() (the CANCELED request).
        self.progress_calls += 1
        if status.phase == Phase.CANCELED:
            self.abort_requests += 1
            return self.abort_requests > 1  # False vetoes the abort
        return None  # go on (False here would *ask* for an abort)

    def on_stop(self, op: Operation[Any], status: Status) -> None:
        self.stops.append(status)
        self.stopped.set()


@dataclass
class _Timings:
    build: float = 0.0
    start_call: float = 0.0
    analytic: float = 0.0
    analytic_polls: int = 0
    deadline: float = 0.0
    veto_wait: float = 0.0
    canceled_after: float = 0.0
    probe: float = 0.0
    abort_latency: float = 0.0


class _Printer:
    """Plain prints, plus one live line redrawn with ``\\r`` on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        try:
            self.tty = out.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._live_width = 0
        self._last_plain = -1.0

    def line(self, text: str = "") -> None:
        self.end_live()
        print(text, file=self.out, flush=True)

    def live(self, text: str, elapsed: float) -> None:
        if self.tty:
            # one terminal row, or the carriage return cannot redraw it
            text = text[:max(20, shutil.get_terminal_size().columns - 1)]
            pad = max(0, self._live_width - len(text))
            self.out.write("\r" + text + " " * pad)
            self.out.flush()
            self._live_width = len(text)
        elif elapsed - self._last_plain >= 1.0:
            # not a terminal (a pipe, a log): one line a second is plenty
            self._last_plain = elapsed
            print(text, file=self.out, flush=True)

    def end_live(self) -> None:
        if self._live_width:
            self.out.write("\n")
            self.out.flush()
            self._live_width = 0
        self._last_plain = -1.0


def _status_line(st: Status, elapsed: float, last_text: Optional[str]) -> str:
    text = st.status_text
    if text is None:
        text = f"(last status text: {last_text})" if last_text else ""
    return f"    {elapsed:5.1f} s  {st.phase.name:<14} {st.progress}/{st.progress_max}  {text}"


def _watch(op: Operation[Any], p: _Printer, started: float) -> int:
    """Poll ``op`` until it ends, redrawing the live line; return the number of polls.

    ``wait_for_completion(TICK)`` is the tick: it returns as soon as the
    operation ends, and never cancels anything when it times out.
    """
    polls = 0
    last_text: Optional[str] = None
    while True:
        polls += 1
        ended = op.wait_for_completion(TICK)
        st = op.get_status()
        elapsed = time.perf_counter() - started
        p.live(_status_line(st, elapsed, last_text), elapsed)
        last_text = st.status_text or last_text
        if ended:
            p.end_live()
            return polls


def _error_name(exc: Optional[BaseException]) -> str:
    if exc is None:
        return "None"
    return f"{type(exc).__name__}: {exc}"


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def run_demo(rows: int = DEFAULT_ROWS, *, quick: bool = False,
             out: Optional[TextIO] = None) -> int:
    """Run the demo and print what happens; return a process exit status.

    Args:
        rows: orders in the sample database (customers: one per 20 orders).
        quick: shorter waits (the deadline, the veto), for tests and impatient
            people; the caller picks a small ``rows`` to go with it.
        out: where to print; standard output by default.

    Returns:
        0 when every step behaved as asynchdb promises, 1 otherwise.

    Raises:
        ValueError: fewer than ``MIN_ROWS`` rows.

    Thread: blocks the calling thread for the whole demo.
    """
    if rows < MIN_ROWS:
        raise ValueError(f"the demo needs at least {MIN_ROWS:,} rows, not {rows:,}")
    if out is None:
        out = sys.stdout
    p = _Printer(out)
    # short waits on a small database, where the heavy query lasts seconds, not hours
    short = quick or rows < 100_000
    deadline = 0.5 if short else 2.0
    veto_wait = 0.3 if short else 0.8
    customers = max(10, rows // ORDERS_PER_CUSTOMER)
    t = _Timings(deadline=deadline, veto_wait=veto_wait)
    ok = True
    total_start = time.perf_counter()

    p.line(f"asynchdb {asynchdb.__version__} demo (Python {sys.version.split()[0]}, "
           f"SQLite {sqlite3.sqlite_version})")
    with tempfile.TemporaryDirectory(prefix="asynchdb-demo-") as tmp:
        path = os.path.join(tmp, "shop.db")
        conn = asynchdb.connect(sqlite3, path)
        try:
            ok = _run(conn, p, path, rows, customers, t) and ok
        finally:
            conn.close()
    total = time.perf_counter() - total_start

    p.line()
    p.line("Summary")
    polls = f"{t.analytic_polls} poll" + ("" if t.analytic_polls == 1 else "s")
    rows_label = f"build ({rows:,} orders)"
    p.line(f"  {rows_label:<28} {t.build:6.2f} s")
    p.line(f"  {'analytic query, asynch=True':<28} {t.analytic:6.2f} s  COMPLETE; execute() "
           f"returned in {_fmt_ms(t.start_call)}, {polls} meanwhile")
    label = f"heavy query, cancel_after={t.deadline:g}"
    p.line(f"  {label:<28} {t.canceled_after:6.2f} s  CANCELED (DeadlineExceeded); SQLite "
           f"stopped; next query {_fmt_ms(t.probe)}")
    p.line(f"  {'abort vetoed, then allowed':<28} {t.abort_latency * 1000:6.1f} ms from the "
           "second abort() to CANCELED")
    p.line(f"  {'total':<28} {total:6.2f} s")
    if not ok:
        p.line("Something did not behave as expected: see the lines marked UNEXPECTED.")
    return 0 if ok else 1


def _run(conn: asynchdb.Connection, p: _Printer, path: str, rows: int, customers: int,
         t: _Timings) -> bool:
    ok = True

    # -- 1. build -------------------------------------------------------------
    p.line()
    p.line("[1/4] Building a sample shop database (synchronous drop-in calls)")
    p.line(f"    {path}")
    start = time.perf_counter()
    cur = conn.cursor()
    cur.executescript(SCHEMA)
    cur.execute(FILL_CUSTOMERS, (customers,))
    cur.execute(FILL_ORDERS, (rows, customers))
    conn.commit()
    t.build = time.perf_counter() - start
    p.line(f"    {customers:,} customers and {rows:,} orders in {t.build:.2f} s "
           "(recursive CTE inserts)")
    counter = _StepCounter()
    conn.set_progress_handler(counter, _StepCounter.EVERY)

    # -- 2. an analytic query, asynchronously ----------------------------------
    p.line()
    p.line("[2/4] An analytic query, run asynchronously: repeat purchases within 30 days")
    p.line("    op = cur.execute(ANALYTIC_SQL, asynch=True)")
    start = time.perf_counter()
    op = cur.execute(ANALYTIC_SQL, asynch=True)
    t.start_call = time.perf_counter() - start
    p.line(f"    returned {op!r} in {_fmt_ms(t.start_call)}")
    try:
        cur.fetchall()
    except asynchdb.ZombieError:
        p.line("    meanwhile the cursor is a zombie: cur.fetchall() raises ZombieError")
    else:
        # the query may already be over on a tiny database
        p.line("    (the query ended before the cursor could be shown as a zombie)")
    t.analytic_polls = _watch(op, p, start)
    t.analytic = time.perf_counter() - start
    st = op.get_status()
    if st.phase != Phase.COMPLETE or st.error is not None:
        p.line(f"    UNEXPECTED: {st.phase.name}: {_error_name(st.error)}")
        return False
    result = op.result()
    p.line(f"    {st.phase.name} in {t.analytic:.2f} s; op.result() is the cursor:")
    p.line(f"      {'region':<8} {'repeat purchases':>16} {'avg gap (days)':>14} "
           f"{'repeat revenue':>15}")
    for region, count, gap, revenue in result.fetchall():
        p.line(f"      {region:<8} {count:>16,} {gap:>14} {revenue:>15,.2f}")

    # -- 3. a deadline that really cancels -----------------------------------
    p.line()
    p.line("[3/4] A much heavier query with a deadline: orders above their customer's "
           "average (rows squared)")
    p.line(f"    op = cur.execute(HEAVY_SQL, asynch=True, cancel_after={t.deadline:g})")
    base = counter.steps
    start = time.perf_counter()
    op = cur.execute(HEAVY_SQL, asynch=True, cancel_after=t.deadline)
    _watch(op, p, start)
    t.canceled_after = time.perf_counter() - start
    st = op.get_status()
    steps_at_end = counter.steps - base
    err = op.exception()
    p.line(f"    {st.phase.name} after {t.canceled_after:.2f} s: {_error_name(err)}")
    if err is not None and err.__cause__ is not None:
        p.line(f"    the driver's own error is its __cause__: "
               f"{type(err.__cause__).__module__}.{_error_name(err.__cause__)}")
    if st.phase != Phase.CANCELED or not isinstance(err, asynchdb.DeadlineExceeded):
        p.line("    UNEXPECTED: the deadline did not cancel the query")
        ok = False
    # Did SQLite really stop?  Its own progress handler tells.
    time.sleep(0.5)
    steps_later = counter.steps - base
    stopped = steps_later == steps_at_end
    p.line(f"    SQLite's own progress handler counted {steps_at_end:,} VM steps by the cancel "
           f"and {steps_later:,} half a second later:")
    p.line("    " + ("the statement is no longer running" if stopped
                     else "UNEXPECTED: SQLite is still running it"))
    ok = ok and stopped
    try:
        cur.fetchall()
    except asynchdb.OperationCanceled:
        p.line("    reading the canceled result raises OperationCanceled; "
               "the cursor can execute again")
    start = time.perf_counter()
    (count,) = cur.execute(PROBE_SQL).fetchone()
    t.probe = time.perf_counter() - start
    p.line(f"    the same connection at once: {PROBE_SQL} -> {count:,} in {_fmt_ms(t.probe)}")

    # -- 4. a listener vetoes an abort -----------------------------------------
    p.line()
    p.line("[4/4] A listener that vetoes the first abort and allows the second")
    listener = _VetoFirstAbort()
    p.line("    op = cur.execute(HEAVY_SQL, asynch=True, listener=VetoFirstAbort())")
    base = counter.steps
    op = cur.execute(HEAVY_SQL, asynch=True, listener=listener)
    veto_wait = t.veto_wait
    op.wait_for_completion(veto_wait)  # let it get going (a wait never cancels)
    try:
        op.abort()
    except asynchdb.AbortVetoed as exc:
        p.line(f"    op.abort() -> AbortVetoed: {exc}")
    else:
        p.line("    UNEXPECTED: the first abort was not vetoed")
        ok = False
    before = counter.steps - base
    still_running = not op.wait_for_completion(veto_wait)
    after = counter.steps - base
    p.line(f"    the query goes on: {op.get_status().phase.name}, SQLite steps "
           f"{before:,} -> {after:,} in {veto_wait:g} s")
    if not still_running or after <= before:
        p.line("    UNEXPECTED: the query did not go on after the veto")
        ok = False
    start = time.perf_counter()
    op.abort()
    op.wait_for_completion(10)
    t.abort_latency = time.perf_counter() - start
    st = op.get_status()
    listener.stopped.wait(5)
    p.line(f"    op.abort() again -> accepted; {st.phase.name} "
           f"{_fmt_ms(t.abort_latency)} later")
    p.line(f"    the listener heard {listener.progress_calls} on_progress calls "
           f"({listener.abort_requests} of them abort requests), then on_stop "
           + (f"with {listener.stops[-1].phase.name}" if len(listener.stops) == 1
              else f"{len(listener.stops)} times"))
    if st.phase != Phase.CANCELED or len(listener.stops) != 1:
        p.line("    UNEXPECTED: the second abort did not cancel the query")
        ok = False
    cur.close()
    return ok
