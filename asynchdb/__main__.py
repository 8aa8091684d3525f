"""Command line: ``python -m asynchdb demo`` (also installed as ``asynchdb-demo``) and
``python -m asynchdb check`` (the cancel-safety checks, API.md section 11)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, Optional

from ._version import __version__

__all__ = ["main"]


def _positive_rows(text: str) -> int:
    try:
        n = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    from .demo import MIN_ROWS

    if n < MIN_ROWS:
        raise argparse.ArgumentTypeError(f"at least {MIN_ROWS:,} rows, not {n:,}")
    return n


def _parser() -> argparse.ArgumentParser:
    from .demo import DEFAULT_ROWS, MIN_ROWS, QUICK_ROWS

    parser = argparse.ArgumentParser(
        prog="python -m asynchdb",
        description="asynchdb: OLE DB's asynchronous processing model for any DB-API 2.0 "
                    "driver.")
    parser.add_argument("--version", action="version", version=f"asynchdb {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run the demo on a temporary sqlite3 database (about 10 s)",
        description="Build a sample sqlite3 database in a temporary folder, run an analytic "
                    "query asynchronously while polling its status, stop a heavier one with "
                    "a deadline and prove SQLite stopped, and let a listener veto an abort.")
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--rows", type=_positive_rows, default=DEFAULT_ROWS, metavar="N",
                      help=f"orders in the sample database (default {DEFAULT_ROWS:,}, "
                           f"at least {MIN_ROWS:,})")
    size.add_argument("--quick", action="store_true",
                      help=f"a tiny run of a few seconds ({QUICK_ROWS:,} orders, short waits)")
    check = commands.add_parser(
        "check", help="run the cancel-safety checks against a live database",
        description="Run asynchdb's cancel-safety checks with any DB-API driver against a "
                    "live database and print one row a check: pass, fail (with what was "
                    "seen) or n/a. Exit status 0 only when nothing failed.",
        epilog="TARGET: sqlite:///rel.db, sqlite:////abs.db, duckdb:///path, "
               "postgresql://user@host:port/db (psycopg, else psycopg2; "
               "postgresql+psycopg2:// or +pg8000:// to choose), mysql:// or mariadb://"
               "user@host/db (PyMySQL, else mysqlclient, else mariadb; mysql+mysqldb://, "
               "mysql+mariadbconnector://), odbc:<connection string>; with --driver "
               "MODULE, TARGET is passed as is to MODULE.connect(TARGET).")
    check.add_argument("target", metavar="TARGET", help="database URL (see below)")
    check.add_argument("--driver", metavar="MODULE",
                       help="DB-API module to use; TARGET goes to its connect() unchanged")
    check.add_argument("--slow-sql", metavar="SQL",
                       help="a statement that runs for at least 10 s (default for SQLite, "
                            "PostgreSQL, MariaDB/MySQL and DuckDB)")
    check.add_argument("--format", choices=("table", "json"), default="table",
                       help="table (Markdown, to paste into an issue) or json")
    check.add_argument("--tries", type=int, default=30, metavar="N",
                       help="tries of the 'never the next statement' check (default 30)")
    check.add_argument("--only", metavar="CHECK,...",
                       help="run only these checks (ids: abort-stops, abort-before-start, "
                            "next-statement, close-during-call, cancel-after, "
                            "usable-after-abort, ctrl-c, exit-pending)")
    return parser


def _check(ns: argparse.Namespace) -> int:
    """``check``: exit 0 when nothing failed, 1 when a check failed, 2 for bad usage."""
    import importlib

    from ._check import (
        CHECKS,
        SLOW_SQL,
        Spec,
        describe_driver,
        family_of,
        render_json,
        render_table,
        run_checks,
    )
    from ._targets import UnknownTarget, describe_target, package_for, parse_target

    shown = describe_target(ns.target)
    if ns.driver:
        module, args = ns.driver, (ns.target,)
        kwargs: dict[str, Any] = {}
    else:
        try:
            module, args, kwargs = parse_target(ns.target)
        except UnknownTarget as exc:
            print(f"asynchdb check: {exc}", file=sys.stderr)
            return 2
    only = [c.strip() for c in ns.only.split(",")] if ns.only else None
    if only and any(c not in CHECKS for c in only):
        print(f"asynchdb check: unknown check in --only; known: {', '.join(CHECKS)}",
              file=sys.stderr)
        return 2
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        print(f"asynchdb check: the driver {module} is not installed ({exc}); "
              f"install {package_for(module)}", file=sys.stderr)
        return 2
    family = family_of(module)
    if family is None and module.split(".")[0] == "pyodbc":
        try:
            raw = mod.connect(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any driver's connect error, reported
            print(f"asynchdb check: cannot connect to {shown}: {type(exc).__name__}",
                  file=sys.stderr)
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
    spec = Spec(module, list(args), dict(kwargs), slow, family, max(1, ns.tries))
    header = {**describe_driver(spec), "target": shown, "family": family,
              "slow_sql": slow}
    if ns.format == "table":
        print(f"checking {module} on {shown} ...", file=sys.stderr, flush=True)
    try:
        results = run_checks(spec, only, progress=lambda r: print(
            f"  {r.verdict:4} {r.title}", file=sys.stderr, flush=True))
    except Exception as exc:  # noqa: BLE001 - the monitor's connect failed: unreachable
        print(f"asynchdb check: cannot use {shown}: {type(exc).__name__}: "
              f"{describe_target(str(exc))}", file=sys.stderr)
        return 1
    out = render_json(header, results) if ns.format == "json" else render_table(header, results)
    sys.stdout.write(out)
    return 1 if any(r.verdict == "fail" for r in results) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` by default.
            Run as ``asynchdb-demo``, the ``demo`` command is implied.
    """
    if argv is None:
        args = sys.argv[1:]
        if os.path.basename(sys.argv[0]).startswith("asynchdb-demo"):
            args = ["demo", *args]
    else:
        args = list(argv)
    parser = _parser()
    ns = parser.parse_args(args)
    if ns.command == "check":
        return _check(ns)
    if ns.command != "demo":
        parser.print_help()
        return 2
    from .demo import QUICK_ROWS, run_demo

    try:
        if ns.quick:
            return run_demo(QUICK_ROWS, quick=True)
        return run_demo(ns.rows)
    except KeyboardInterrupt:
        # the demo's connection was closed on the way out, which aborted its query
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
