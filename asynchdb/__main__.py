"""Command line: ``python -m asynchdb demo | query | check``.

``demo`` is also installed as ``asynchdb-demo``.  ``query`` lives in
``asynchdb._query``.  ``check`` (docs/adapters.md) is built in its own module:
this file registers it through :func:`_add_check`, the one hook to adjust
when that module lands.
"""

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
    from ._query import add_parser

    add_parser(commands)
    _add_check(commands)
    return parser


def _add_check(commands: Any) -> None:
    """Register ``check``: the module that implements it, or a placeholder.

    The hook for the ``check`` command: a module ``asynchdb._check`` with
    ``add_parser(commands)`` and ``run(ns) -> int`` is used when present.
    """
    try:
        from . import _check  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        check = commands.add_parser(
            "check", help="run the cancel-safety checks on a live database",
            description="Run the cancel-safety checks on a live database "
                        "(not available in this build of asynchdb).")
        check.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        check.set_defaults(run=None)
    else:
        _check.add_parser(commands)


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
    if ns.command == "query":
        from ._query import run

        return run(ns)
    if ns.command == "check":
        runner = getattr(ns, "run", None)
        if runner is None:
            print("python -m asynchdb check: not available in this build", file=sys.stderr)
            return 2
        return int(runner(ns))
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
