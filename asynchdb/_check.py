"""``python -m asynchdb check``: the cancel-safety checks against a live database.

What each check does: docs/adapters.md, "The check command".  Each check runs
in a subprocess of its own (a driver that crashes or hangs then fails that
check, and the run goes on); the child gets its connect arguments on stdin,
never on its command line, so a password does not show in the process list.
The parent prints one row a check: ``pass``, ``fail`` with what was seen, or
``n/a`` with why.

Where the statement runs is checked on the server when the server is known
(PostgreSQL: ``pg_stat_activity``; MariaDB/MySQL:
``information_schema.processlist``; ClickHouse: ``system.processes`` on the
target and on each server of its ``system.clusters``), through a second plain connection opened
with the same arguments; the slow statement carries a unique comment so that
it can be found there.  In-process engines (SQLite, DuckDB) have no server:
there "stopped" means the driver call returned.

Threads: the parent runs checks one after another; a child runs one check,
its driver calls on asynchdb's own threads and its main thread.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from . import DeadlineExceeded, Phase
from . import connect as asynchdb_connect

__all__ = ["CHECKS", "Outcome", "add_parser", "run", "run_checks"]

#: check id -> the row's text (the table of docs/adapters.md, in its order)
CHECKS: dict[str, str] = {
    "abort-stops": "abort stops the statement on the server",
    "abort-before-start": "an abort just before the statement starts is not lost",
    "next-statement": "an abort never reaches the next statement",
    "close-during-call": "close during a running call is safe",
    "cancel-after": "cancel_after fires",
    "usable-after-abort": "the connection is usable after an abort",
    "ctrl-c": "Ctrl-C cancels",
    "exit-pending": "exit with a statement pending is prompt",
}
#: Slow statements (>= 10 s unless stopped) by database family.
SLOW_SQL = {
    "sqlite": ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
               "WHERE x < 100000000000) SELECT count(*) FROM c"),
    "postgresql": "SELECT pg_sleep(120)",
    "mysql": "SELECT SLEEP(120)",
    "duckdb": "SELECT count(*) FROM range(1000000000000000) t(x) WHERE x % 7 = 3",
    # endless: 1 ms a row in blocks of 10 rows (a KILL QUERY is noticed between blocks)
    "clickhouse": ("SELECT count() FROM system.numbers WHERE sleepEachRow(0.001) = 0 "
                   "SETTINGS max_block_size = 10"),
}
_FAMILY_OF_MODULE = {
    "sqlite3": "sqlite", "_sqlite3": "sqlite", "apsw": "sqlite", "adbc_driver_sqlite": "sqlite",
    "duckdb": "duckdb", "_duckdb": "duckdb",
    "psycopg": "postgresql", "psycopg2": "postgresql", "pg8000": "postgresql",
    "adbc_driver_postgresql": "postgresql",
    "pymysql": "mysql", "MySQLdb": "mysql", "mariadb": "mysql", "mysql": "mysql",
    "clickhouse_driver": "clickhouse",
}
#: Drivers whose connect callable is not ``module.connect`` (apsw is no PEP 249
#: module: ``asynchdb.connect(apsw.Connection, path)``, docs/drivers.md).
_CONNECT_ATTR = {"apsw": "Connection"}


def connector(module: Any) -> Any:
    """What ``asynchdb.connect`` and a plain connection take for ``module``."""
    attr = _CONNECT_ATTR.get(getattr(module, "__name__", ""), "connect")
    return module if attr == "connect" else getattr(module, attr)
#: Seconds a check's bounded waits allow (a statement that outlives it was not stopped).
BOUND = 10.0
#: Seconds a whole child may take.
CHILD_LIMIT = 120.0
#: The interpreter exits within 2 s with operations pending (docs/abort.md), and
#: Ctrl-C raises KeyboardInterrupt within 2 s (docs/adapters.md, "The check command").
EXIT_WITHIN = 2.0
CTRL_C_WITHIN = 2.0
RESULT = "ASYNCHDB-CHECK "
#: Checks about what a cancel does: n/a for a driver without one.
_NEED_CANCEL = frozenset({"abort-before-start", "next-statement"})


@dataclass
class Outcome:
    check: str
    verdict: str   # "pass", "fail" or "n/a"
    detail: str = ""

    @property
    def title(self) -> str:
        return CHECKS.get(self.check, self.check)


# ---------------------------------------------------------------------------
# what both sides need: opening plain connections, the family, the server view
# ---------------------------------------------------------------------------
@dataclass
class Spec:
    """How to reach the database (what the child reads on stdin)."""

    module: str
    args: list[Any]
    kwargs: dict[str, Any]
    slow_sql: str
    family: Optional[str]
    tries: int = 30


def _set_autocommit(raw: Any) -> None:
    attr = getattr(raw, "autocommit", None)
    try:
        if callable(attr):
            attr(True)            # PyMySQL, mysqlclient
        else:
            raw.autocommit = True
    except Exception:  # noqa: BLE001 - a driver without autocommit: rollback after each poll
        pass


def family_of(module: str, raw: Any = None) -> Optional[str]:
    """The database family behind a driver (None: unknown)."""
    root = module.split(".", maxsplit=1)[0]
    if root in _FAMILY_OF_MODULE:
        return _FAMILY_OF_MODULE[root]
    if root == "pyodbc" and raw is not None:
        try:
            dbms = str(raw.getinfo(17)).lower()  # SQL_DBMS_NAME
        except Exception:  # noqa: BLE001 - a driver that cannot say
            return None
        for key, fam in (("postgres", "postgresql"), ("maria", "mysql"), ("mysql", "mysql"),
                         ("sqlite", "sqlite"), ("duckdb", "duckdb")):
            if key in dbms:
                return fam
    return None


class Monitor:
    """Which statements carrying a tag the server runs (None: no server to ask)."""

    def __init__(self, spec: Spec) -> None:
        self.raw: Any = None
        self.sql: Optional[str] = None
        if spec.family == "postgresql":
            self.sql = ("SELECT query FROM pg_stat_activity WHERE state = 'active' "
                        "AND pid <> pg_backend_pid() AND query LIKE '%asynchdb_check_%'")
        elif spec.family == "mysql":
            self.sql = ("SELECT info FROM information_schema.processlist "
                        "WHERE id <> CONNECTION_ID() AND info LIKE '%asynchdb_check_%'")
        #: ClickHouse: one plain connection a server of the target's clusters.
        self.others: list[Any] = []
        if spec.family == "clickhouse":
            # the polling query's own text holds the pattern: it excludes itself
            self.sql = ("SELECT query FROM system.processes WHERE query LIKE "
                        "'%asynchdb_check_%' AND query NOT LIKE '%system.processes%'")
        if self.sql is not None:
            mod = importlib.import_module(spec.module)
            self.raw = mod.connect(*spec.args, **spec.kwargs)
            _set_autocommit(self.raw)
            if spec.family == "clickhouse":
                self.others = _clickhouse_servers(mod, self.raw, spec)

    @property
    def server(self) -> bool:
        return self.raw is not None

    def running(self, tag: str) -> Optional[list[str]]:
        if self.raw is None or self.sql is None:
            return None
        found: list[str] = []
        for raw in (self.raw, *self.others):
            cur = raw.cursor()
            try:
                # the pattern is the tags' common prefix, so the polling query (whose
                # text holds it) never finds itself or another monitor's query
                cur.execute(self.sql)
                found += [str(r[0]) for r in cur.fetchall()]
            finally:
                cur.close()
            try:
                raw.rollback()   # PostgreSQL caches pg_stat_activity per transaction
            except Exception:  # noqa: BLE001 - autocommit drivers may refuse
                pass
        return [q for q in found if tag in q]

    def wait(self, tag: str, present: bool, timeout: float = BOUND) -> bool:
        """Poll (bounded) until the tagged statement is (not) on the server."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            now = bool(self.running(tag))
            if now == present:
                return True
            if time.monotonic() >= deadline:
                return False
            pause.wait(0.01)

    def close(self) -> None:
        for raw in (self.raw, *self.others):
            if raw is not None:
                try:
                    raw.close()
                except Exception:  # noqa: BLE001
                    pass
        self.raw = None
        self.others = []


def _clickhouse_servers(mod: Any, first: Any, spec: Spec) -> list[Any]:
    """Plain connections to the other servers of the target's clusters (``system.clusters``).

    A statement on a Distributed table runs on every shard, and asynchdb's
    ClickHouse adapter kills it on each: the check looks for it on each.  A
    server of the configuration that does not answer (ClickHouse ships example
    clusters) is left out.
    """
    cur = first.cursor()
    try:
        cur.execute("SELECT DISTINCT host_address, port FROM system.clusters "
                    "WHERE is_local = 0")
        servers = [(str(h), int(p)) for h, p in cur.fetchall()]
    finally:
        cur.close()
    login = {k: v for k, v in spec.kwargs.items() if k in ("user", "password")}
    conns = []
    for host, port in servers:
        raw = mod.connect(host=host, port=port, database="system", connect_timeout=2,
                          **login)
        try:
            probe = raw.cursor()
            probe.execute("SELECT 1")
            probe.fetchall()
        except Exception:  # noqa: BLE001 - not a server of ours: left out
            raw.close()
            continue
        conns.append(raw)
    return conns


def tagged(spec: Spec, tag: str) -> str:
    """The slow statement with a comment carrying ``tag`` (found on the server by it)."""
    return f"/* {tag} */ {spec.slow_sql.strip().rstrip(';')}"


# ---------------------------------------------------------------------------
# the child: one check
# ---------------------------------------------------------------------------
class _Child:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.module = importlib.import_module(spec.module)
        self.monitor = Monitor(spec)

    def connect(self) -> Any:
        return asynchdb_connect(connector(self.module), *self.spec.args, **self.spec.kwargs)

    def start(self, conn: Any, cur: Any = None, **kw: Any) -> tuple[Any, Any, str]:
        """Start the slow statement asynchronously; wait until it runs."""
        tag = f"asynchdb_check_{uuid.uuid4().hex[:16]}"
        cur = cur if cur is not None else conn.cursor()
        op = cur.execute(tagged(self.spec, tag), asynch=True, **kw)
        if self.monitor.server:
            self.monitor.wait(tag, True)
        else:
            deadline = time.monotonic() + BOUND
            while not conn.statistics()["running"] and time.monotonic() < deadline:
                threading.Event().wait(0.005)
        threading.Event().wait(0.05)  # well inside the statement
        return op, cur, tag

    def gone(self, tag: str, conn: Any = None) -> Optional[str]:
        """None when the statement stopped, else what is still there.

        On a server: it left the server's list.  In-process: the connection's
        worker is no longer inside the driver call (a closed connection: its
        call had to end for the close to happen).
        """
        if self.monitor.server:
            if not self.monitor.wait(tag, False):
                return f"it still runs on the server {BOUND:g} s later"
            return None
        if conn is not None and not conn.closed:
            deadline = time.monotonic() + BOUND
            while conn.statistics()["running"]:
                if time.monotonic() >= deadline:
                    return f"the driver call still runs {BOUND:g} s later"
                threading.Event().wait(0.01)
        return None

    @staticmethod
    def ended(op: Any) -> str:
        st = op.get_status()
        text = f"{st.phase.name}"
        if st.status_text:
            text += f" ({st.status_text})"
        return text

    # -- the checks ---------------------------------------------------------
    def abort_stops(self) -> Outcome:
        conn = self.connect()
        try:
            op, _cur, tag = self.start(conn)
            if op.done():
                return Outcome("abort-stops", "fail",
                               f"the slow statement ended by itself: {self.ended(op)}")
            t0 = time.monotonic()
            op.abort()
            if not op.wait_for_completion(BOUND):
                return Outcome("abort-stops", "fail", f"not ended {BOUND:g} s after abort()")
            took = (time.monotonic() - t0) * 1000
            st = op.get_status()
            if st.phase is not Phase.CANCELED:
                return Outcome("abort-stops", "fail",
                               f"ended {st.phase.name}: the driver did not confirm a cancel")
            if st.status_text and st.status_text.startswith("abandoned"):
                return Outcome("abort-stops", "fail", st.status_text)
            still = self.gone(tag, conn)
            if still:
                return Outcome("abort-stops", "fail", still)
            cause = st.error.__cause__ if st.error is not None else None
            where = "gone from the server" if self.monitor.server else "driver call returned"
            return Outcome("abort-stops", "pass",
                           f"CANCELED in {took:.1f} ms, {where}; driver error "
                           f"{type(cause).__name__ if cause else 'none'}")
        finally:
            conn.close()

    def abort_before_start(self) -> Outcome:
        import random

        rng = random.Random(5)
        conn = self.connect()
        lost = 0
        tries = max(4, self.spec.tries // 2)
        try:
            for i in range(tries):
                cur = conn.cursor()
                tag = f"asynchdb_check_{uuid.uuid4().hex[:16]}"
                if i % 2:
                    class Early:
                        # aborts at its first notification, near the driver call's start
                        def on_progress(self, op: Any, status: Any) -> None:
                            if status.phase is Phase.INITIALIZATION:
                                op.abort()
                    op = cur.execute(tagged(self.spec, tag), asynch=True, listener=Early())
                else:
                    op = cur.execute(tagged(self.spec, tag), asynch=True)
                    threading.Event().wait(rng.uniform(0, 0.003))
                    op.abort()
                if not op.wait_for_completion(BOUND) or op.get_status().phase is not Phase.CANCELED:
                    lost += 1
                    op.abort()
                    op.wait_for_completion(BOUND)
                st = op.get_status()
                if st.status_text and st.status_text.startswith("abandoned"):
                    return Outcome("abort-before-start", "fail", st.status_text)
                if self.gone(tag, conn):
                    lost += 1
                cur.close()
        finally:
            conn.close()
        if lost:
            return Outcome("abort-before-start", "fail",
                           f"{lost} of {tries} aborts near the start were lost")
        return Outcome("abort-before-start", "pass",
                       f"{tries} aborts at 0-3 ms and at the first notification: all CANCELED")

    def next_statement(self) -> Outcome:
        import random

        rng = random.Random(4)
        conn = self.connect()
        tries = self.spec.tries
        bad: list[str] = []
        canceled = 0
        try:
            a_cur, b_cur = conn.cursor(), conn.cursor()
            for _ in range(tries):
                tag = f"asynchdb_check_{uuid.uuid4().hex[:16]}"
                a = a_cur.execute(tagged(self.spec, tag), asynch=True)
                threading.Event().wait(rng.uniform(0, 0.006))
                a.abort()
                b = b_cur.execute("SELECT 1", asynch=True)
                if not (a.wait_for_completion(BOUND) and b.wait_for_completion(BOUND)):
                    bad.append("an operation did not end")
                    break
                canceled += a.get_status().phase is Phase.CANCELED
                st = a.get_status()
                if st.status_text and st.status_text.startswith("abandoned"):
                    return Outcome("next-statement", "n/a",
                                   f"the driver has no cancel to reach it ({st.status_text})")
                error = b.exception()
                if error is not None:
                    bad.append(f"the next statement failed: {error!r}")
                    continue
                got = [tuple(r) for r in b_cur.fetchall()]
                if got != [(1,)]:
                    bad.append(f"the next statement returned {got!r}")
        finally:
            conn.close()
        if bad:
            return Outcome("next-statement", "fail", f"{len(bad)} of {tries}: {bad[0]}")
        return Outcome("next-statement", "pass",
                       f"{tries} tries, the statement queued behind never failed "
                       f"({canceled} aborts confirmed)")

    def close_during_call(self) -> Outcome:
        # The thread that opens the connection also closes it while the statement
        # runs on asynchdb's worker: what a program does, and the only thread a
        # sqlite3 connection opened without check_same_thread=False may be
        # closed from (docs/usage.md, "Types and threads").  The main thread watches
        # with bounded waits, so a close that blocks fails the check.
        box: dict[str, Any] = {}
        started = threading.Event()

        def body() -> None:
            try:
                conn = self.connect()
                box["op"], _cur, box["tag"] = self.start(conn)
            except BaseException as exc:  # noqa: BLE001 - reported
                box["start-error"] = exc
                started.set()
                return
            started.set()
            t0 = time.monotonic()
            try:
                conn.close()
            except BaseException as exc:  # noqa: BLE001 - reported
                box["error"] = exc
            box["took"] = (time.monotonic() - t0) * 1000

        th = threading.Thread(target=body, name="asynchdb-check-opener", daemon=True)
        th.start()
        if not started.wait(2 * BOUND):
            return Outcome("close-during-call", "fail", "the slow statement did not start")
        if "start-error" in box:
            return Outcome("close-during-call", "fail",
                           f"starting the statement raised {box['start-error']!r}")
        th.join(BOUND)
        if th.is_alive():
            return Outcome("close-during-call", "fail", f"close() blocked more than {BOUND:g} s")
        op, tag = box["op"], box["tag"]
        if "error" in box:
            return Outcome("close-during-call", "fail", f"close() raised {box['error']!r}")
        if not op.wait_for_completion(BOUND):
            return Outcome("close-during-call", "fail", "the operation did not end")
        st = op.get_status()
        if st.status_text and st.status_text.startswith("abandoned"):
            return Outcome("close-during-call", "fail", st.status_text)
        still = self.gone(tag)
        if still:
            return Outcome("close-during-call", "fail", still)
        return Outcome("close-during-call", "pass",
                       f"close() returned in {box['took']:.1f} ms, operation {self.ended(op)}")

    def cancel_after(self) -> Outcome:
        conn = self.connect()
        tag = f"asynchdb_check_{uuid.uuid4().hex[:16]}"
        try:
            cur = conn.cursor()
            t0 = time.monotonic()
            try:
                cur.execute(tagged(self.spec, tag), cancel_after=0.5)
            except DeadlineExceeded:
                took = time.monotonic() - t0
            except Exception as exc:  # noqa: BLE001 - reported
                return Outcome("cancel-after", "fail", f"raised {exc!r}, not DeadlineExceeded")
            else:
                return Outcome("cancel-after", "fail", "the statement completed")
            if took > BOUND:
                return Outcome("cancel-after", "fail", f"raised only after {took:.1f} s")
            still = self.gone(tag, conn)
            if still:
                return Outcome("cancel-after", "fail",
                               f"DeadlineExceeded after {took:.2f} s, but {still}")
            return Outcome("cancel-after", "pass",
                           f"cancel_after=0.5 raised DeadlineExceeded after {took:.2f} s"
                           + ("; gone from the server" if self.monitor.server else ""))
        finally:
            conn.close()

    def usable_after_abort(self) -> Outcome:
        conn = self.connect()
        try:
            op, cur, _tag = self.start(conn)
            op.abort()
            if not op.wait_for_completion(BOUND):
                return Outcome("usable-after-abort", "fail", "the abort did not end")
            st = op.get_status()
            if st.status_text and st.status_text.startswith("abandoned"):
                return Outcome("usable-after-abort", "n/a",
                               "the call was abandoned: the connection is busy until the "
                               "statement ends")
            t0 = time.monotonic()
            nxt = cur.execute("SELECT 1", asynch=True)
            if not nxt.wait_for_completion(BOUND):
                return Outcome("usable-after-abort", "fail", "SELECT 1 did not end")
            error = nxt.exception()
            if error is not None:
                return Outcome("usable-after-abort", "fail", f"SELECT 1 raised {error!r}")
            got = [tuple(r) for r in cur.fetchall()]
            if got != [(1,)]:
                return Outcome("usable-after-abort", "fail", f"SELECT 1 returned {got!r}")
            return Outcome("usable-after-abort", "pass",
                           f"SELECT 1 on the same cursor after the abort: "
                           f"{(time.monotonic() - t0) * 1000:.1f} ms")
        finally:
            conn.close()

    def ctrl_c_child(self, tag: str) -> None:
        """Run the slow statement synchronously on the main thread; report how it ended."""
        conn = self.connect()
        cur = conn.cursor()
        print("STARTING", flush=True)
        try:
            cur.execute(tagged(self.spec, tag))
        except KeyboardInterrupt as exc:
            at = time.monotonic()
            cause = exc.__context__
            print("INTERRUPTED", at, type(cause).__name__ if cause else "-", flush=True)
            try:
                cur.execute("SELECT 1")
                print("AFTER", json.dumps([list(r) for r in cur.fetchall()]), flush=True)
            except Exception as err:  # noqa: BLE001 - reported
                print("AFTER-ERROR", repr(err), flush=True)
        except Exception as exc:  # noqa: BLE001 - reported
            print("ERROR", repr(exc), flush=True)
        else:
            print("COMPLETED", flush=True)
        conn.close()

    def exit_child(self, tag: str) -> None:
        conn = self.connect()
        op, _cur, _ = self.start(conn)
        print("PENDING", not op.done(), flush=True)
        self._keep = (conn, op)
        print("END", time.monotonic(), flush=True)


def _child_main() -> int:
    """Entry of a check's subprocess: the spec on stdin, one result line on stdout."""
    data = json.loads(sys.stdin.readline())
    spec = Spec(**data["spec"])
    child = _Child(spec)
    check = data["check"]
    if check == "ctrl-c":
        child.ctrl_c_child(data["tag"])
        return 0
    if check == "exit-pending":
        child.exit_child(data["tag"])
        return 0
    fn: Callable[[], Outcome] = getattr(child, check.replace("-", "_"))
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - a check that broke fails
        out = Outcome(check, "fail", f"raised {exc!r}")
    child.monitor.close()
    print(RESULT + json.dumps(asdict(out)), flush=True)
    sys.stderr.flush()
    # no waiting at exit for a statement a driver without cancel left running
    os._exit(0)


# ---------------------------------------------------------------------------
# the parent
# ---------------------------------------------------------------------------
def _spawn(spec: Spec, check: str, tag: str = "") -> subprocess.Popen[str]:
    # A check must see the driver, not the shell: a process started in the
    # background of a shell without job control inherits SIGINT ignored
    # (docs/interrupts.md), and the Ctrl-C check's child would then never
    # get its KeyboardInterrupt.  The child restores Python's default handler.
    code = ("import signal, sys\n"
            "if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:\n"
            "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from asynchdb._check import _child_main\n"
            "sys.exit(_child_main())")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"spec": asdict(spec), "check": check, "tag": tag}) + "\n")
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    return proc


def _died(proc: subprocess.Popen[str], err: str) -> str:
    rc = proc.returncode
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        return f"the process died of {name}"
    tail = err.strip().splitlines()[-1] if err.strip() else ""
    return f"the process exited {rc}" + (f": {tail}" if tail else "")


def _run_plain(spec: Spec, check: str) -> Outcome:
    proc = _spawn(spec, check)
    try:
        out, err = proc.communicate(timeout=CHILD_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Outcome(check, "fail", f"hung (killed after {CHILD_LIMIT:g} s)")
    for line in out.splitlines():
        if line.startswith(RESULT):
            got = json.loads(line[len(RESULT):])
            return Outcome(got["check"], got["verdict"], got["detail"])
    return Outcome(check, "fail", _died(proc, err))


def _readline(proc: subprocess.Popen[str], timeout: float) -> Optional[str]:
    """One stdout line of ``proc`` within ``timeout`` seconds (None: none came)."""
    box: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    th = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
    th.start()
    th.join(timeout)
    return box[0] if box and box[0] else None


def _run_ctrl_c(spec: Spec, monitor: Monitor) -> Outcome:
    if not hasattr(signal, "SIGINT") or os.name == "nt":
        return Outcome("ctrl-c", "n/a", "needs POSIX signals")
    tag = f"asynchdb_check_{uuid.uuid4().hex[:16]}"
    proc = _spawn(spec, "ctrl-c", tag)
    try:
        first = _readline(proc, 30)
        if first is None or not first.startswith("STARTING"):
            proc.kill()
            _, err = proc.communicate()
            return Outcome("ctrl-c", "fail", _died(proc, err))
        if monitor.server and not monitor.wait(tag, True):
            proc.kill()
            proc.communicate()
            return Outcome("ctrl-c", "fail", "the statement never showed on the server")
        threading.Event().wait(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = _readline(proc, BOUND)
        if line is None:
            proc.kill()
            proc.communicate()
            return Outcome("ctrl-c", "fail",
                           f"no KeyboardInterrupt within {BOUND:g} s of SIGINT (the driver "
                           f"call went on)")
        if not line.startswith("INTERRUPTED"):
            proc.kill()
            proc.communicate()
            return Outcome("ctrl-c", "fail", f"the call ended otherwise: {line.strip()}")
        parts = line.split()
        took = float(parts[1]) - sent
        after = _readline(proc, BOUND) or ""
        proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Outcome("ctrl-c", "fail", "the process hung after the interrupt")
    problems = []
    if took > CTRL_C_WITHIN:
        problems.append(f"KeyboardInterrupt came {took:.2f} s after SIGINT")
    if monitor.server and not monitor.wait(tag, False):
        problems.append(f"the statement still runs on the server {BOUND:g} s later")
    if not after.startswith("AFTER [[1]]"):
        problems.append(f"the connection is not usable afterwards ({after.strip()})")
    if problems:
        return Outcome("ctrl-c", "fail", "; ".join(problems))
    return Outcome("ctrl-c", "pass",
                   f"KeyboardInterrupt {took * 1000:.0f} ms after SIGINT (cause "
                   f"{parts[2]}), statement stopped, connection usable")


def _run_exit(spec: Spec, monitor: Monitor) -> Outcome:
    tag = f"asynchdb_check_{uuid.uuid4().hex[:16]}"
    proc = _spawn(spec, "exit-pending", tag)
    try:
        out, err = proc.communicate(timeout=CHILD_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Outcome("exit-pending", "fail", f"the process did not exit ({CHILD_LIMIT:g} s)")
    ended = time.monotonic()
    ends = [ln for ln in out.splitlines() if ln.startswith("END ")]
    if not ends or "PENDING True" not in out:
        return Outcome("exit-pending", "fail", _died(proc, err))
    took = ended - float(ends[-1].split()[1])
    problems = []
    if proc.returncode != 0:
        problems.append(_died(proc, err))
    if took > EXIT_WITHIN:
        problems.append(f"the interpreter took {took:.2f} s to exit")
    if monitor.server and not monitor.wait(tag, False):
        problems.append(f"the statement still runs on the server {BOUND:g} s after exit")
    if problems:
        return Outcome("exit-pending", "fail", "; ".join(problems))
    return Outcome("exit-pending", "pass", f"exited {took * 1000:.0f} ms after its last line"
                   + ("; the statement is gone from the server" if monitor.server else ""))


def run_checks(spec: Spec, only: Optional[list[str]] = None,
               progress: Optional[Callable[[Outcome], None]] = None) -> list[Outcome]:
    """Run the checks (all, or ``only``), each in a subprocess; their outcomes in order."""
    monitor = Monitor(spec)
    results: list[Outcome] = []
    no_cancel = not describe_driver(spec)["can_cancel"]
    try:
        for check in CHECKS:
            if only and check not in only:
                continue
            if no_cancel and check in _NEED_CANCEL:
                out = Outcome(check, "n/a", "the driver has no cancel: every abort abandons "
                                            "the call (see the first row)")
            elif check == "ctrl-c":
                out = _run_ctrl_c(spec, monitor)
            elif check == "exit-pending":
                out = _run_exit(spec, monitor)
            else:
                out = _run_plain(spec, check)
            results.append(out)
            if progress is not None:
                progress(out)
    finally:
        monitor.close()
    return results


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------
def render_table(header: dict[str, Any], results: list[Outcome]) -> str:
    lines = [f"asynchdb check: {header['driver']} ({header['adapter']} adapter, "
             f"{'real cancel' if header['can_cancel'] else 'no cancel: aborts abandon'}) "
             f"on {header['target']}", "",
             "| check | result | seen |", "|---|---|---|"]
    for r in results:
        detail = r.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.title} | {r.verdict} | {detail} |")
    failed = sum(r.verdict == "fail" for r in results)
    lines += ["", f"{len(results)} checks: {sum(r.verdict == 'pass' for r in results)} pass, "
                  f"{failed} fail, {sum(r.verdict == 'n/a' for r in results)} n/a"]
    return "\n".join(lines) + "\n"


def render_json(header: dict[str, Any], results: list[Outcome]) -> str:
    return json.dumps({**header, "checks": [
        {"check": r.check, "title": r.title, "verdict": r.verdict, "detail": r.detail}
        for r in results]}) + "\n"


def describe_driver(spec: Spec) -> dict[str, Any]:
    """Which adapter the driver gets and whether it cancels (opens one connection).

    ``can_cancel`` is the connection's, not the adapter class's: an adapter
    may learn at connect that its driver has no cancel (ADBC's SQLite driver).
    """
    mod = importlib.import_module(spec.module)
    conn = asynchdb_connect(connector(mod), *spec.args, **spec.kwargs)
    try:
        stats = conn.statistics()
    finally:
        conn.close()
    version = getattr(mod, "__version__", None) or getattr(mod, "version", None)
    return {"driver": spec.module, "driver_version": str(version) if version else None,
            "adapter": stats["driver"], "can_cancel": bool(stats["can_cancel"])}


# ---------------------------------------------------------------------------
# the command line (registered by asynchdb.__main__ through add_parser)
# ---------------------------------------------------------------------------
def add_parser(commands: Any) -> None:
    """Register ``check`` on the command line's subparsers; ``ns.run`` runs it."""
    import argparse

    check = commands.add_parser(
        "check", help="run the cancel-safety checks against a live database",
        description="Run asynchdb's cancel-safety checks with any DB-API driver against a "
                    "live database and print one row a check: pass, fail (with what was "
                    "seen) or n/a. Exit status 0 only when nothing failed.",
        epilog="TARGET: sqlite:///rel.db, sqlite:////abs.db, duckdb:///path, "
               "postgresql://user@host:port/db (psycopg, else psycopg2; "
               "postgresql+psycopg2:// or +pg8000:// to choose), mysql:// or mariadb://"
               "user@host/db (PyMySQL, else mysqlclient, else mariadb; mysql+mysqldb://, "
               "mysql+mariadbconnector://), clickhouse://host:port/db, odbc:<connection "
               "string>; with --driver "
               "MODULE, TARGET is passed as is to MODULE.connect(TARGET) "
               "(apsw: apsw.Connection(TARGET)).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    check.add_argument("target", metavar="TARGET", help="database URL (see below)")
    check.add_argument("--driver", metavar="MODULE",
                       help="DB-API module to use; TARGET goes to its connect() unchanged")
    check.add_argument("--slow-sql", metavar="SQL",
                       help="a statement that runs for at least 10 s (default for SQLite, "
                            "PostgreSQL, MariaDB/MySQL, DuckDB and ClickHouse)")
    check.add_argument("--format", choices=("table", "json"), default="table",
                       help="table (Markdown, to paste into an issue) or json")
    check.add_argument("--tries", type=int, default=30, metavar="N",
                       help="tries of the 'never the next statement' check")
    check.add_argument("--only", metavar="CHECK,...",
                       help="run only these checks: " + ", ".join(CHECKS))
    check.set_defaults(run=run)


def run(ns: Any) -> int:
    """``check``: exit 0 when nothing failed, 1 when a check failed, 2 for bad usage."""
    from ._targets import TargetError, driver_target, parse_target

    try:
        target = driver_target(ns.driver, ns.target) if ns.driver else parse_target(ns.target)
    except TargetError as exc:
        print(f"asynchdb check: {exc}", file=sys.stderr)
        return 2
    shown = target.description
    module, args, kwargs = target.module, target.args, dict(target.kwargs)
    only = [c.strip() for c in ns.only.split(",")] if ns.only else None
    if only and any(c not in CHECKS for c in only):
        print(f"asynchdb check: unknown check in --only; known: {', '.join(CHECKS)}",
              file=sys.stderr)
        return 2
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        print(f"asynchdb check: the driver {module} cannot be imported "
              f"({target.scrub(str(exc))})", file=sys.stderr)
        return 2
    family = family_of(module)
    if family is None and module.split(".")[0] == "pyodbc":
        try:
            raw = mod.connect(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any driver's connect error, reported
            print(f"asynchdb check: cannot connect to {shown}: {type(exc).__name__}: "
                  f"{target.scrub(str(exc))}", file=sys.stderr)
            return 1
        try:
            family = family_of(module, raw)
        finally:
            raw.close()
    slow = ns.slow_sql or SLOW_SQL.get(family or "")
    if slow is None:
        print("asynchdb check: --slow-sql is required for this database (a statement that "
              "runs for at least 10 s)", file=sys.stderr)
        return 2
    spec = Spec(module, list(args), kwargs, slow, family, max(1, ns.tries))
    if ns.format == "table":
        print(f"checking {module} on {shown} ...", file=sys.stderr, flush=True)
    try:
        header = {**describe_driver(spec), "target": shown, "family": family,
                  "slow_sql": slow}
        results = run_checks(spec, only, progress=lambda r: print(
            f"  {r.verdict:4} {r.title}", file=sys.stderr, flush=True))
    except Exception as exc:  # noqa: BLE001 - a connect failed: unreachable
        print(f"asynchdb check: cannot use {shown}: {type(exc).__name__}: "
              f"{target.scrub(str(exc))}", file=sys.stderr)
        return 1
    for r in results:
        r.detail = target.scrub(r.detail)
    out = render_json(header, results) if ns.format == "json" else render_table(header, results)
    sys.stdout.write(out)
    return 1 if any(r.verdict == "fail" for r in results) else 0
