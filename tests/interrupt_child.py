"""The program tests/test_interrupt.py sends SIGINT to (run as a subprocess).

Usage: ``python tests/interrupt_child.py BACKEND TAG MODE``.  It opens a
wrapped connection, prints ``READY``, prints ``RUNNING`` once its main thread
is inside the long statement (a helper thread watches for it: a bounded
poll, so the parent never guesses with a sleep), then runs
it, and prints ``OUT {json}``: what the statement call raised, how long it
took, and whether the connection answers ``SELECT 1`` afterwards.

Modes: ``plain`` (the drop-in call), ``cancel_after`` (a synchronous call with
a deadline: the job path), ``listener`` (a synchronous call with a listener,
which hears every step: the job path too), ``executemany`` (the plain
``executemany`` of the long statement, once), ``callproc`` (a procedure
that sleeps), ``commit`` (a deferred trigger that sleeps), ``own-handler``
(the program installed its own SIGINT handler: asynchdb must leave it
alone), ``asyncio-run`` (a synchronous call inside ``asyncio.run``, whose
runner handles SIGINT itself), ``wait`` (waiting on an Operation: the
operation must go on).

``sys._current_frames`` raises here: asynchdb's Ctrl-C watcher must find
the interrupted call without reading the main thread's frames.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import weakref
from typing import Any, cast

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import asynchdb
from asynchdb import _interrupt
from benchmarks.backends import BY_NAME, main_thread_reached

#: Seconds the long statement would run if nothing stopped it.
LONG = 20.0
#: Seconds of the statement in ``own-handler`` mode and of a driver with no
#: cancel in ``plain`` mode (it must run to its end).
SHORT = 2.0


#: The real ``sys._current_frames``: asynchdb must never call it (below).
_current_frames = sys._current_frames


def _frames_forbidden() -> dict[int, object]:
    # Reading another thread's frames can crash CPython 3.11 (docs/reliability.md):
    # the Ctrl-C watcher must find the call without it, so here it fails loudly.
    raise AssertionError("sys._current_frames() called: the Ctrl-C path must not read frames")


sys._current_frames = _frames_forbidden


def _announce_inline(ch: object, method: str = "execute") -> None:
    """Print RUNNING once the main thread's ``method`` is inside the driver (helper thread).

    Read from what the call registers on its channel, as the Ctrl-C watcher
    does (``benchmarks.backends.main_thread_reached``).
    """
    hopped = cast(Any, ch).counters["hopped"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if main_thread_reached(ch, method, hopped):
            print("RUNNING", flush=True)
            return
        time.sleep(0.005)


def _announce_running(names: set[str]) -> None:
    """Print RUNNING once the main thread is inside one of ``names`` (helper thread).

    For the modes where the main thread waits in asynchdb's Python code (no
    driver call of its own to register): a walk of its frames, test-only.
    """
    main = threading.main_thread().ident
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        frame = _current_frames().get(main or 0)
        while frame is not None:
            if frame.f_code.co_name in names and \
                    frame.f_globals.get("__name__", "").startswith("asynchdb."):
                print("RUNNING", flush=True)
                return
            frame = frame.f_back
        time.sleep(0.005)


class _Heard:
    """A listener (``listener`` mode): counts what it hears, vetoes nothing."""

    def __init__(self) -> None:
        self.progress = 0
        self.stops: list[str] = []

    def on_progress(self, op: Any, status: Any) -> None:
        self.progress += 1

    def on_stop(self, op: Any, status: Any) -> None:
        self.stops.append(status.phase.name)

    def on_low_resource(self, op: Any) -> None:
        pass


def main() -> None:
    name, tag, mode = sys.argv[1:4]
    backend = BY_NAME[name]
    handled: list[int] = []
    if mode == "own-handler":
        signal.signal(signal.SIGINT, lambda *_: handled.append(1))
    conn = backend.connect()
    cur = conn.cursor()
    out: dict[str, object] = {}
    if mode == "callproc" and backend.server == "mariadb":
        # a procedure that sleeps (the MySQL family calls procedures by CALL)
        conn.cursor().execute("CREATE OR REPLACE PROCEDURE asynchdb_sleep(s DOUBLE) "
                              "BEGIN DO SLEEP(s); END")
    if mode == "commit":
        # a deferred constraint trigger that sleeps: the work happens at commit
        for sql in (
                "CREATE OR REPLACE FUNCTION asynchdb_slow_commit() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep({LONG}); RETURN NULL; END $$",
                "CREATE TEMP TABLE asynchdb_commit_t (x int)",
                "CREATE CONSTRAINT TRIGGER asynchdb_slow AFTER INSERT ON asynchdb_commit_t "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "
                "asynchdb_slow_commit()",
                "INSERT INTO asynchdb_commit_t VALUES (1)"):
            cur.execute(sql)
    if mode in ("plain", "own-handler", "executemany", "callproc", "commit", "asyncio-run"):
        method = mode if mode in ("executemany", "callproc", "commit") else "execute"
        announce = threading.Thread(target=_announce_inline, args=(cur._ch, method),
                                    daemon=True)
    else:
        watch = {"cancel_after": {"wait"}, "listener": {"wait"}, "wait": {"result"},
                 "population": {"take_all"}}[mode]
        announce = threading.Thread(target=_announce_running, args=(watch,), daemon=True)
    announce.start()
    print("READY", flush=True)
    started = time.monotonic()
    op = None
    heard = _Heard()
    try:
        if mode == "cancel_after":
            # a driver with no cancel abandons the statement, which runs to its
            # end before the connection answers again: keep it short
            cur.execute(backend.long_sql(LONG if backend.can_cancel else SHORT, tag),
                        cancel_after=60)
        elif mode == "executemany":
            # the plain executemany (Channel.call: the bound method registers)
            cur.executemany(backend.long_sql(LONG, tag), [()])
        elif mode == "commit":
            conn.commit()
        elif mode == "asyncio-run":
            # a synchronous call on the thread of asyncio.run, which handles
            # SIGINT itself (3.11+): asynchdb must leave it alone
            import asyncio

            async def on_the_loop(c: Any) -> None:
                c.execute(backend.long_sql(SHORT, tag))
                c.fetchall()
                await asyncio.sleep(0)  # where the runner's cancellation lands

            asyncio.run(on_the_loop(cur))
        elif mode == "callproc":
            # PostgreSQL drivers call a function by SELECT: pg_sleep itself
            cur.callproc("asynchdb_sleep" if backend.server == "mariadb" else "pg_sleep",
                         (LONG,))
        elif mode == "listener":
            cur.execute(backend.long_sql(LONG if backend.can_cancel else SHORT, tag),
                        listener=heard)
        elif mode == "population":
            # rows arrive slowly; fetchall waits on the population buffer
            # (SQLite through sqlite3 or apsw, whose fetch steps the query:
            # SQLite ODBC and DuckDB run it whole in execute, measured)
            sql = (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                   f"WHERE x < 200000000) SELECT x, '{tag}' FROM c "
                   f"WHERE x % 2000000 = 1")
            op = cur.execute(sql, asynch=asynchdb.Asynch.SEQUENTIAL_POPULATION)
            deadline = time.monotonic() + 30  # until the first row (bounded poll)
            while op.get_status().phase == asynchdb.Phase.INITIALIZATION and \
                    time.monotonic() < deadline:
                time.sleep(0.005)
            cur.fetchall()
        elif mode == "wait":
            op = cur.execute(backend.long_sql(LONG, tag), asynch=True)
            op.result()
        else:
            # a driver with no cancel runs the statement to its end (raw)
            short = mode == "own-handler" or not backend.can_cancel
            cur.execute(backend.long_sql(SHORT if short else LONG, tag))
            cur.fetchall()
        out["raised"] = None
    except KeyboardInterrupt as exc:
        out["raised"] = "KeyboardInterrupt"
        out["context"] = repr(exc.__context__)
        out["repaired"] = _interrupt.repaired(exc)
    except BaseException as exc:
        out["raised"] = repr(exc)
    out["elapsed"] = time.monotonic() - started
    out["handled"] = len(handled)
    if mode == "listener":
        # the listener hears how the operation ended (bounded: its delivery
        # may trail the call's return by a moment)
        deadline = time.monotonic() + 5
        while not heard.stops and time.monotonic() < deadline:
            time.sleep(0.005)
        out["listener_stops"] = heard.stops
    if op is not None and mode == "population":
        # the interrupted fetch aborted the population
        op.wait_for_completion(30)
        out["op_phase"] = op.get_status().phase.name
    elif op is not None:
        # waiting never cancels: the operation is still running; stop it now
        out["op_phase_after_interrupt"] = op.get_status().phase.name
        op.abort()
        op.wait_for_completion(30)
        out["op_phase"] = op.get_status().phase.name
    try:
        cur.execute("SELECT 1")
        out["after"] = cur.fetchall()[0][0]
    except BaseException as exc:
        out["after"] = repr(exc)
    out["hopped"] = cur._ch.counters["hopped"]  # calls that ran on the worker
    # once released, the interrupted call's cursor is freed while the
    # connection stays open (nothing in the Ctrl-C machinery keeps it)
    ref = weakref.ref(cur)
    del cur
    deadline = time.monotonic() + 2.0
    while ref() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    out["cursor_freed"] = ref() is None
    conn.close()
    print("OUT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
