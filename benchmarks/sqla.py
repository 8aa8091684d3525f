"""SQLAlchemy benchmark: an engine instrumented by asynchdb vs the same engine plain.

``python -m benchmarks.sqla`` (a minute or two) writes
``benchmarks/results/sqlalchemy.json`` and ``.md``; ``--quick`` is a smoke run
that writes ``sqlalchemy-quick.{json,md}``.

Per backend (sqlite3 in memory; PostgreSQL through psycopg, psycopg2 and
pg8000; MariaDB through pyodbc + Connector/ODBC, PyMySQL, mysqlclient and
Connector/Python; DuckDB in memory), two engines of the same URL, one
of them passed to ``asynchdb.sqlalchemy.instrument``; each holds one
connection and runs ``conn.execute(text(sql)).all()`` for ``SELECT 1`` and a
100-row select.  Modes interleaved (:mod:`benchmarks._harness`), medians:

* ``instrumented``: the instrumented engine with no asynchdb option (every
  statement goes through asynchdb's drop-in path).  Targets: <= 1.05x plain
  on PostgreSQL and MariaDB, <= 1.15x on sqlite3 in memory.
* ``with deadline``: the same with ``asynchdb_cancel_after=30`` (an Operation
  per statement, the rows fetched inside it): reported, no target.

A backend that cannot be reached is reported as skipped.  Nothing here asserts
an absolute time.  The figures depend on the load of the machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # python benchmarks/sqla.py: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import datetime
import json
import platform
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Optional

from benchmarks._harness import Mode, compare, interleave, summarize, us
from benchmarks.backends import BY_NAME

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
pc = time.perf_counter_ns


@dataclass(frozen=True)
class Sizes:
    reps: int = 10
    calls: int = 200
    warmup: int = 20


FULL = Sizes()
QUICK = Sizes(reps=2, calls=30, warmup=5)


@dataclass(frozen=True)
class Target:
    name: str
    #: the backend of benchmarks/backends.py probed for availability (None: in memory)
    backend: Optional[str]
    #: ``() -> (url, connect_args)``
    url: Callable[[], tuple[str, dict[str, Any]]]
    rows_sql: str
    target: float
    module: str


def _psycopg_url() -> tuple[str, dict[str, Any]]:
    from psycopg.conninfo import conninfo_to_dict

    return "postgresql+psycopg://", conninfo_to_dict(BY_NAME["psycopg"].dsn())


def _mariadb_url() -> tuple[str, dict[str, Any]]:
    dsn = BY_NAME["pyodbc-mariadb"].dsn()
    return "mysql+pyodbc:///?odbc_connect=" + urllib.parse.quote_plus(dsn), {}


def _psycopg2_url() -> tuple[str, dict[str, Any]]:
    from psycopg.conninfo import conninfo_to_dict

    return "postgresql+psycopg2://", conninfo_to_dict(BY_NAME["psycopg2"].dsn())


def _url_of(backend: str, dialect: str) -> Callable[[], tuple[str, dict[str, Any]]]:
    """A backend whose connection string is a URL: with ``dialect`` as its scheme."""
    return lambda: (dialect + "://" + BY_NAME[backend].dsn().partition("://")[2], {})


_PG_ROWS = "SELECT g, 'row' FROM generate_series(1, 100) g"
_MARIADB_ROWS = "SELECT seq, 'row' FROM seq_1_to_100"

TARGETS = (
    Target("sqlite3 (memory)", None, lambda: ("sqlite://", {}),
           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
           "SELECT x, 'row' FROM c", 1.15, "sqlite3"),
    Target("postgresql+psycopg", "psycopg", _psycopg_url, _PG_ROWS, 1.05, "psycopg"),
    Target("mysql+pyodbc (MariaDB)", "pyodbc-mariadb", _mariadb_url, _MARIADB_ROWS, 1.05,
           "pyodbc"),
    Target("duckdb (memory)", None, lambda: ("duckdb:///:memory:", {}),
           "SELECT range, 'row' FROM range(100)", 0.0, "duckdb_engine"),
    Target("postgresql+psycopg2", "psycopg2", _psycopg2_url, _PG_ROWS, 1.05, "psycopg2"),
    Target("postgresql+pg8000", "pg8000", _url_of("pg8000", "postgresql+pg8000"),
           _PG_ROWS, 1.05, "pg8000"),
    Target("mysql+pymysql (MariaDB)", "pymysql", _url_of("pymysql", "mysql+pymysql"),
           _MARIADB_ROWS, 1.05, "pymysql"),
    Target("mysql+mysqldb (MariaDB)", "mysqlclient", _url_of("mysqlclient", "mysql+mysqldb"),
           _MARIADB_ROWS, 1.05, "MySQLdb"),
    Target("mariadb+mariadbconnector", "mariadb",
           _url_of("mariadb", "mariadb+mariadbconnector"), _MARIADB_ROWS, 1.05, "mariadb"),
)


def _unavailable(t: Target) -> Optional[str]:
    try:
        __import__("sqlalchemy")
        __import__(t.module)
    except ImportError as exc:
        return f"not installed: {exc}"
    if t.backend is not None:
        return BY_NAME[t.backend].unavailable()
    return None


def _batch(conn: Any, stmt: Any, sz: Sizes) -> Callable[[], list[float]]:
    def batch() -> list[float]:
        res: list[float] = []
        for i in range(sz.calls + sz.warmup):
            t0 = pc()
            conn.execute(stmt).all()
            if i >= sz.warmup:
                res.append(pc() - t0)
        return res

    return batch


def _nothing(*args: Any) -> None:
    """An empty ``before_cursor_execute`` listener (the "empty listener" mode)."""


def run_target(t: Target, sz: Sizes) -> dict[str, Any]:
    import sqlalchemy as sa

    import asynchdb.sqlalchemy as asa

    url, connect_args = t.url()
    plain = sa.create_engine(url, connect_args=connect_args)
    instrumented = asa.instrument(sa.create_engine(url, connect_args=connect_args))
    # the floor of any per-statement hook: SQLAlchemy's own event, doing nothing
    hooked = sa.create_engine(url, connect_args=connect_args)
    sa.event.listen(hooked, "before_cursor_execute", _nothing)
    out: dict[str, Any] = {"queries": {}}
    try:
        with plain.connect() as pconn, instrumented.connect() as iconn, \
                hooked.connect() as hconn:
            for key, sql in (("select1", "SELECT 1"), ("rows100", t.rows_sql)):
                stmt = sa.text(sql)
                # on the statement: Connection.execution_options() would change
                # the connection itself (SQLAlchemy 2.x), and so the other mode
                timed = stmt.execution_options(asynchdb_cancel_after=30)
                series = interleave([Mode("plain", _batch(pconn, stmt, sz)),
                                     Mode("instrumented", _batch(iconn, stmt, sz)),
                                     Mode("with deadline", _batch(iconn, timed, sz)),
                                     Mode("empty listener", _batch(hconn, stmt, sz))],
                                    sz.reps)
                target = t.target or None
                out["queries"][key] = {
                    "sql": sql,
                    "series": {name: summarize(s) for name, s in series.items()},
                    "instrumented_vs_plain": compare(series["instrumented"], series["plain"],
                                                     target),
                    "deadline_vs_plain": compare(series["with deadline"], series["plain"]),
                    "listener_vs_plain": compare(series["empty listener"], series["plain"]),
                }
            pconn.rollback()
            iconn.rollback()
            hconn.rollback()
    finally:
        plain.dispose()
        instrumented.dispose()
        hooked.dispose()
    return out


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# SQLAlchemy: instrumented engine vs the same engine plain",
        "",
        f"Measured {report['when']} on {report['machine']}, Python {report['python']}, "
        f"SQLAlchemy {report.get('sqlalchemy', '?')}. The machine is shared with other "
        "jobs (2 vCPU, loaded): figures move by several percent between runs.",
        "",
        "One held connection per engine, `conn.execute(text(sql)).all()`, modes "
        "interleaved, medians in microseconds; ratio = median / plain median "
        "(per-repetition ratio median and range in brackets); min ratio = fastest "
        "sample / fastest sample, the least noisy figure on a loaded host. "
        "\"Empty listener\" is the plain engine with a `before_cursor_execute` listener "
        "that does nothing: the least any per-statement hook costs.",
        "",
        "| backend | query | plain | instrumented | ratio | min ratio | target | with deadline "
        "| ratio | empty listener | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in report["targets"].items():
        if "skipped" in res:
            lines.append(f"| {name} | skipped: {res['skipped']} | | | | | | | | |")
            continue
        for key, q in res["queries"].items():
            s = q["series"]
            c = q["instrumented_vs_plain"]
            d = q["deadline_vs_plain"]
            e = q["listener_vs_plain"]
            pr = c.get("per_rep", {})
            spread = (f" [{pr.get('median')}; {pr.get('min')}-{pr.get('max')}]"
                      if pr else "")
            target = "" if c["target"] is None else (
                f"<= {c['target']} ({'met' if c['met'] else 'NOT met'})")
            low = s["instrumented"]["min_ns"] / s["plain"]["min_ns"]
            lines.append(
                f"| {name} | {key} | {us(s['plain']['median_ns'])} | "
                f"{us(s['instrumented']['median_ns'])} | {c['ratio']}{spread} | {low:.3f} | "
                f"{target} | "
                f"{us(s['with deadline']['median_ns'])} | {d['ratio']} | "
                f"{us(s['empty listener']['median_ns'])} | {e['ratio']} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--only", help="run only targets whose name contains this")
    parser.add_argument("--reps", type=int, help="interleaved repetitions (default 10)")
    parser.add_argument("--calls", type=int,
                        help="timed statements per batch (default 200); smaller batches "
                             "and more repetitions even out a latency that switches "
                             "between two levels for seconds at a time")
    args = parser.parse_args(argv)
    sz = QUICK if args.quick else FULL
    if args.reps or args.calls:
        sz = Sizes(reps=args.reps or sz.reps, calls=args.calls or sz.calls, warmup=sz.warmup)
    report: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {platform.system()}",
        "python": platform.python_version(),
        "sizes": vars(sz),
        "targets": {},
    }
    try:
        import sqlalchemy

        report["sqlalchemy"] = sqlalchemy.__version__
    except ImportError:
        pass
    for t in TARGETS:
        if args.only and args.only not in t.name:
            continue
        why = _unavailable(t)
        if why is not None:
            report["targets"][t.name] = {"skipped": why}
            print(f"{t.name}: skipped ({why})", file=sys.stderr)
            continue
        print(f"{t.name}...", file=sys.stderr)
        report["targets"][t.name] = run_target(t, sz)
    stem = "sqlalchemy-quick" if args.quick else "sqlalchemy"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = _markdown(report)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
