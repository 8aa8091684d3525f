"""``python -m asynchdb query``: run one statement on any database, watch it, stop it.

The statement runs as an asynchdb :class:`~asynchdb.Operation` (the driver
call and the fetching of its rows on the connection's worker, with
background population), and the main thread only waits on it in bounded
slices of at most 0.1 s, redrawing the status line on stderr and taking the
rows that have arrived.  So Ctrl-C always lands in the main thread's wait, as
a ``KeyboardInterrupt``, and is turned into ``Operation.abort()``: the
driver's real cancel.  ``--cancel-after S`` is the operation's
``cancel_after=`` deadline, counted from the start (connecting included).

Threads: the main thread runs everything here; the connection's worker runs
the driver calls; a listener (on asynchdb's notifier thread) only sets an
Event so that the main thread wakes as soon as rows arrive.

Invariants: stdout gets rows and nothing else; every message goes to stderr,
scrubbed of the target's passwords; the exit status is 0 success, 1 the
database reported an error, 2 bad usage, 124 ``--cancel-after`` passed, 130
interrupted (docs/cli.md, "Exit status").
"""

from __future__ import annotations

import argparse
import csv
import datetime
import decimal
import importlib
import json
import math
import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, Optional, TextIO

from ._connection import Connection, connect
from ._operation import Operation
from ._statusline import LineState, StatusLine, make_status_line, text_width
from ._targets import Target, TargetError, driver_target, parse_target
from .errors import DeadlineExceeded, OperationCanceled
from .status import Asynch, Phase, Status

__all__ = ["EXIT_CANCEL_AFTER", "EXIT_DB_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "add_parser", "run"]

EXIT_OK = 0
EXIT_DB_ERROR = 1
EXIT_USAGE = 2
EXIT_CANCEL_AFTER = 124
EXIT_INTERRUPTED = 130

#: The longest single wait of the main thread (Ctrl-C and redraws happen between).
_SLICE = 0.1
#: How long the main thread waits for an aborted statement to end before it
#: gives up waiting and closes the connection (which aborts again, bounded).
_ABORT_WAIT = 10.0

_EXAMPLES = """\
targets (the scheme picks the driver):
  sqlite:///relative.db  sqlite:////absolute.db  sqlite://   (in memory)
  duckdb:///file.duckdb  duckdb://
  postgresql://user@host:5432/db     (psycopg 3, else psycopg2)
  postgresql+psycopg2://...  postgresql+pg8000://...
  mysql://user@host/db  mariadb://...  (PyMySQL, else mysqlclient, else mariadb)
  mysql+mysqldb://...  clickhouse://host:9000/db  odbc:DRIVER={...};SERVER=...
  --driver MODULE TARGET   passes TARGET unchanged to MODULE.connect

exit status: 0 success, 1 database error, 2 bad usage,
             124 --cancel-after passed, 130 interrupted (Ctrl-C)

examples:
  python -m asynchdb query sqlite:///shop.db "SELECT * FROM orders LIMIT 5"
  python -m asynchdb query postgresql://postgres@127.0.0.1/test -f report.sql --cancel-after 30
  echo "SELECT 42 AS answer" | python -m asynchdb query duckdb:// - --format json
"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``query`` command to the subparsers of ``python -m asynchdb``."""
    query = commands.add_parser(
        "query", help="run one SQL statement on any database; Ctrl-C cancels it there",
        description="Run one SQL statement against a database, with a live status line on "
                    "stderr; --cancel-after and Ctrl-C cancel the statement in the database "
                    "itself. Rows go to stdout, everything else to stderr.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    query.add_argument("target", metavar="TARGET",
                       help="a URL such as postgresql://user@host/db (see below)")
    query.add_argument("sql", metavar="SQL", nargs="?",
                       help="the statement; '-' reads it from stdin")
    query.add_argument("-f", "--file", metavar="FILE", help="read the statement from FILE")
    query.add_argument("--cancel-after", metavar="S", type=_seconds,
                       help="cancel the statement in the database after S seconds (exit 124)")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="rows as an aligned table (default), CSV with a header, "
                            "or one JSON object a line")
    shown = query.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show the status line even when stderr is not a terminal")
    shown.add_argument("--no-progress", dest="progress", action="store_false",
                       help="never show the status line")
    query.add_argument("--driver", metavar="MODULE",
                       help="a DB-API module; TARGET then goes to MODULE.connect as is")
    return query  # type: ignore[no-any-return]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


class _Usage(Exception):
    """Bad usage: the message goes to stderr and the exit status is 2."""


def _read_sql(ns: argparse.Namespace, stdin: TextIO) -> str:
    if ns.file is not None and ns.sql is not None:
        raise _Usage("give the statement either as SQL or with -f FILE, not both")
    if ns.file is not None:
        try:
            if ns.file == "-":
                return stdin.read()
            with open(ns.file, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise _Usage(f"cannot read {ns.file}: {exc}") from None
    if ns.sql == "-":
        return stdin.read()
    if ns.sql is None:
        raise _Usage("no statement: give SQL, -f FILE, or - to read it from stdin")
    return str(ns.sql)


def _resolve(ns: argparse.Namespace) -> tuple[Target, Any]:
    target = (driver_target(ns.driver, ns.target) if ns.driver
              else parse_target(ns.target))
    try:
        module = importlib.import_module(target.module)
    except ImportError as exc:
        raise TargetError(f"cannot import {target.module} for {target.description}: "
                          f"{target.scrub(str(exc))}") from None
    if not callable(getattr(module, "connect", None)):
        raise TargetError(f"{target.module} has no connect(): not a DB-API module")
    return target, module


# -- output ----------------------------------------------------------------

def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, datetime.timedelta)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(name if n == 1 else f"{name}_{n}")
    return out


class _Output:
    """Writes rows in one format; ``stream`` rows as they come or ``buffer`` them."""

    def __init__(self, fmt: str, out: TextIO, names: list[str], *, stream: bool) -> None:
        self.fmt = fmt
        self.out = out
        self.names = names
        self.stream = stream and fmt != "table"  # a table needs every width first
        self.rows: list[Any] = []
        self.count = 0
        self._csv: Any = None
        if fmt == "csv":
            self._csv = csv.writer(out, lineterminator="\n")
        self._keys = _unique(names)
        self._header_done = False

    def add(self, rows: list[Any]) -> None:
        self.count += len(rows)
        if self.stream:
            self._write(rows)
        else:
            self.rows.extend(rows)

    def finish(self) -> None:
        if not self.stream:
            self._write(self.rows)
            self.rows = []
        if self.fmt == "csv" and not self._header_done:
            self._write([])
        self.out.flush()

    def _write(self, rows: list[Any]) -> None:
        if self.fmt == "csv":
            if not self._header_done:
                self._csv.writerow(self.names)
                self._header_done = True
            self._csv.writerows([[_text(v) for v in row] for row in rows])
        elif self.fmt == "json":
            for row in rows:
                obj = {k: _json_value(v) for k, v in zip(self._keys, row)}
                self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        else:
            self.out.write(_table(self.names, rows))
        if self.stream:
            self.out.flush()


def _cell(value: Any) -> str:
    return _text(value).replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def _table(names: list[str], rows: list[Any]) -> str:
    """An aligned table with a header, as psql prints one (numbers on the right)."""
    cells = [[_cell(v) for v in row] for row in rows]
    right = [all(isinstance(row[i], (int, float, decimal.Decimal))
                 and not isinstance(row[i], bool) for row in rows if row[i] is not None)
             and any(row[i] is not None for row in rows) for i in range(len(names))]
    widths = [text_width(n) for n in names]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], text_width(c))

    def line(values: list[str], align: list[bool]) -> str:
        parts = []
        for v, w, r in zip(values, widths, align):
            pad = " " * (w - text_width(v))
            parts.append(pad + v if r else v + pad)
        return (" " + " | ".join(parts)).rstrip() + "\n"

    out = [line(names, [False] * len(names)),
           "-" + "-+-".join("-" * w for w in widths) + "-\n"]
    out += [line(row, right) for row in cells]
    return "".join(out)


# -- the run ---------------------------------------------------------------

class _Wake:
    """A listener whose only job is to wake the main thread (notifier thread)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def on_progress(self, op: Operation[Any], status: Status) -> None:
        self.event.set()

    def on_stop(self, op: Operation[Any], status: Status) -> None:
        self.event.set()


class _Run:
    """One ``query`` invocation: its streams, its status line, its clock."""

    def __init__(self, ns: argparse.Namespace, target: Target, stdout: TextIO,
                 stderr: TextIO, line: Optional[StatusLine]) -> None:
        self.ns = ns
        self.target = target
        self.stdout = stdout
        self.stderr = stderr
        self.line = line
        self.start = time.monotonic()
        self.phase = "connecting"
        self.op: Optional[Operation[Any]] = None

    def say(self, message: str) -> None:
        if self.line is not None:
            self.line.close()
        self.stderr.write(self.target.scrub(message).rstrip("\n") + "\n")
        self.stderr.flush()

    def draw(self, status: Optional[Status] = None) -> None:
        if self.line is None:
            return
        total: Optional[int] = None
        done = 0
        text = ""
        if status is not None:
            text = self.target.scrub(status.status_text or "")
            if status.phase == Phase.INITIALIZATION and status.progress_max > 1:
                done, total = status.progress, status.progress_max
        self.line.show(LineState(self.phase, time.monotonic() - self.start, done, total, text))

    def remaining(self) -> Optional[float]:
        if self.ns.cancel_after is None:
            return None
        limit: float = self.ns.cancel_after
        return max(0.0, limit - (time.monotonic() - self.start))

    def wait(self, op: Operation[Any], until: Callable[[Status], bool],
             wake: Optional[_Wake] = None, each: Optional[Callable[[Status], None]] = None
             ) -> Status:
        """Wait in slices until ``until(status)``; redraw and call ``each`` between."""
        while True:
            status = op.get_status()
            if each is not None:
                each(status)  # sees exactly the status that ``until`` judges
            if until(status):
                return status
            self.draw(status)
            if wake is not None:
                wake.event.wait(_SLICE)
                wake.event.clear()
            else:
                op.wait_for_completion(_SLICE)

    def connect(self, module: Any) -> Connection:
        op = connect(module, *self.target.args, asynch=True,
                     cancel_after=self.remaining(), **self.target.kwargs)
        self.op = op
        self.wait(op, lambda s: s.done)
        conn: Connection = op.result()
        self.op = None
        return conn

    def execute(self, conn: Connection, sql: str) -> int:
        cur = conn.cursor()
        wake = _Wake()
        self.phase = "running"
        op = cur.execute(sql, asynch=Asynch.INITIALIZE | Asynch.SEQUENTIAL_POPULATION,
                         cancel_after=self.remaining(), listener=wake)
        self.op = op
        status = self.wait(op, lambda s: s.phase != Phase.INITIALIZATION, wake)
        if status.phase == Phase.CANCELED or status.error is not None:
            op.result()  # raises the driver's error or the cancel
        if cur.description is None:  # no result set: DDL, INSERT...
            self.wait(op, lambda s: s.done, wake)
            op.result()
            count = cur.rowcount
            conn.commit()
            self.op = None
            if self.line is not None:
                self.say(f"OK ({count} rows affected)" if count is not None and count >= 0
                         else "OK")
            return EXIT_OK
        names = [str(d[0]) for d in cur.description]
        output = _Output(self.ns.format, self.stdout, names,
                         stream=not _isatty(self.stdout))
        self.phase = "fetching"

        def take(status: Status) -> None:
            # the rows the worker already put in the buffer: fetchmany does not wait
            if status.phase == Phase.POPULATION:
                ready = status.progress - output.count
                if ready > 0:
                    output.add(cur.fetchmany(ready))
            elif status.phase == Phase.COMPLETE and status.error is None:
                output.add(cur.fetchall())
            if self.line is not None and status.phase == Phase.POPULATION:
                self.phase = f"fetching {output.count:,} rows"

        status = self.wait(op, lambda s: s.done, wake, take)
        op.result()  # the driver's error, a deadline, or a cancel
        conn.commit()
        self.op = None
        if self.line is not None:
            self.line.close()
        output.finish()
        if self.line is not None:
            elapsed = time.monotonic() - self.start
            self.say(f"({output.count:,} row{'s' if output.count != 1 else ''}, "
                     f"{elapsed:.2f} s)")
        return EXIT_OK

    def interrupted(self) -> int:
        """Ctrl-C: abort the running operation and wait (bounded) for it to end."""
        op = self.op
        was = self.phase
        self.phase = "cancelling"
        if was == "connecting":
            # no driver can cancel a connect: asynchdb abandons it (closed when it ends)
            if op is not None and not op.done():
                op.abort()
            self.say(f"interrupted while connecting to {self.target.description}")
            return EXIT_INTERRUPTED
        if op is None or op.done():
            self.say("interrupted")
            return EXIT_INTERRUPTED
        op.abort()
        ends = time.monotonic() + _ABORT_WAIT
        try:
            while not op.wait_for_completion(_SLICE) and time.monotonic() < ends:
                self.draw(op.get_status())
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting; closing the connection aborts again
        self.say("interrupted: " + _what_happened(op))
        return EXIT_INTERRUPTED


def _abandoned(op: Optional[Operation[Any]]) -> bool:
    """Whether ``op`` was given up on because its driver has no cancel."""
    if op is None:
        return False
    status = op.get_status()
    return status.phase == Phase.CANCELED and (status.status_text or "").startswith("abandoned")


def _what_happened(op: Operation[Any]) -> str:
    status = op.get_status()
    if status.phase == Phase.CANCELED:
        if _abandoned(op):
            return ("this driver cannot cancel: the statement was abandoned and may still "
                    "be running in the database")
        return "the statement was cancelled in the database"
    if status.done:
        return "the statement had already finished"
    return "the cancel was sent; the statement had not stopped yet, the connection is closed"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run(ns: argparse.Namespace, *, stdin: Optional[TextIO] = None,
        stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Run ``query`` with parsed arguments; return the exit status."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    try:
        sql = _read_sql(ns, stdin)
        if not sql.strip():
            raise _Usage("the statement is empty")
        target, module = _resolve(ns)
    except (_Usage, TargetError) as exc:
        stderr.write(f"python -m asynchdb query: error: {exc}\n")
        return EXIT_USAGE
    show = ns.progress if ns.progress is not None else _isatty(stderr)
    line = None
    if show:
        line = make_status_line(stderr, tty=_isatty(stderr),
                                style=os.environ.get("ASYNCHDB_STATUS_STYLE", "auto"))
    job = _Run(ns, target, stdout, stderr, line)
    conn: Optional[Connection] = None
    try:
        try:
            job.draw()
            conn = job.connect(module)
            return job.execute(conn, sql)
        except KeyboardInterrupt:
            return job.interrupted()
        except DeadlineExceeded:
            seconds = ns.cancel_after
            op = job.op
            if job.phase == "connecting":
                what = f"gave up connecting to {target.description}"
            elif op is not None:
                what = _what_happened(op)
            else:
                what = "the statement was cancelled in the database"
            job.say(f"cancelled: --cancel-after {seconds:g} s passed; {what}")
            return EXIT_CANCEL_AFTER
        except OperationCanceled:
            job.say("cancelled: the statement was cancelled")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # the reader of stdout went away (| head): stop quietly
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            return EXIT_OK
        except Exception as exc:  # noqa: BLE001 - the driver's error, reported as is
            cls = type(exc)
            name = cls.__qualname__ if cls.__module__ == "builtins" else (
                f"{cls.__module__}.{cls.__qualname__}")
            where = f"connecting to {target.description}: " if conn is None else ""
            job.say(f"error: {where}{name}: {exc}")
            return EXIT_DB_ERROR
    finally:
        if line is not None:
            line.close()
        if conn is not None and not _abandoned(job.op):
            # (an abandoned call still holds the connection's worker: closing would
            # wait for it, bounded, for nothing; the process exit closes the socket)
            try:
                conn.close()  # aborts anything still pending, bounded
            except KeyboardInterrupt:
                pass
            except Exception:  # noqa: BLE001 - closing after a failure: nothing to add
                pass
