"""Run the sqlite3 benchmarks: ``python -m benchmarks`` or ``python benchmarks/run.py``.

``--quick`` is a smoke test of a few seconds (prints the tables, writes
nothing unless ``--out`` is given).  The full run takes under three minutes
and writes ``benchmarks/results/sqlite3.json``, ``benchmarks/results/sqlite3.md``
and ``docs/benchmarks.md``.  No absolute time is ever asserted: the exit status
is 0 whenever every benchmark ran, whether or not its target was met.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # python benchmarks/run.py: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import time
from typing import Any, Optional

import asynchdb
from benchmarks import suite_sqlite3
from benchmarks._report import render_docs, render_markdown, summary_rows

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "asynchdb"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=False)
        commit = head.stdout.strip() or "unknown"
        # uncommitted engine changes in the working tree: say so
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(dist: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "implementation": platform.python_implementation(),
        "compiler": platform.python_compiler(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(affinity(0)) if affinity is not None else None,
        "cpu_model": _cpu_model(),
        "loadavg_start": _loadavg(),
    }


def versions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "python_full": sys.version,
        "sqlite": sqlite3.sqlite_version,
        "asynchdb": asynchdb.__version__,
        "aiosqlite": _version("aiosqlite"),
        "commit": _commit(),
    }


def _loadavg() -> Optional[str]:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return None


def profile(sizes: suite_sqlite3.Sizes) -> None:
    """cProfile the asynchdb paths of P1 (SELECT 1, sync) and P2 (SELECT 1, async)."""
    import cProfile
    import pstats

    conn = asynchdb.connect(sqlite3, ":memory:")
    cur = conn.cursor()
    n = max(2000, sizes.p1_calls * 20)

    def sync() -> None:
        for _ in range(n):
            cur.execute("SELECT 1")
            cur.fetchall()

    def asyn() -> None:
        for _ in range(n // 10):
            cur.execute("SELECT 1", asynch=True).result()
            cur.fetchall()

    try:
        for label, fn in (("P1 sync SELECT 1", sync), ("P2 async SELECT 1", asyn)):
            fn()
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            print(f"\n=== cProfile: {label} (caller thread only) ===")
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    finally:
        conn.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds: smoke test, prints, writes nothing by default")
    parser.add_argument("--only", default="",
                        help="comma-separated benchmarks to run (P1,P2,P3,P4)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for sqlite3.json and sqlite3.md "
                             "(default: benchmarks/results for a full run)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="where to write the docs page (default: docs/benchmarks.md "
                             "for a full run of every benchmark)")
    parser.add_argument("--no-write", action="store_true", help="write no file at all")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of asynchdb's P1/P2 paths and exit")
    args = parser.parse_args(argv)

    sizes = suite_sqlite3.QUICK if args.quick else suite_sqlite3.FULL
    if args.profile:
        profile(sizes)
        return 0
    wanted = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in suite_sqlite3.BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    selected = wanted or list(suite_sqlite3.BENCHMARKS)

    results: dict[str, Any] = {
        "schema": 1,
        "driver": "sqlite3",
        "mode": "quick" if args.quick else "full",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "sizes": suite_sqlite3.sizes_dict(sizes),
        "benchmarks": {},
    }
    t0 = time.perf_counter()
    for name in selected:
        t = time.perf_counter()
        print(f"{name} ...", end=" ", flush=True, file=sys.stderr)
        results["benchmarks"][name] = suite_sqlite3.BENCHMARKS[name](sizes, args.seed)
        results["benchmarks"][name]["duration_s"] = round(time.perf_counter() - t, 2)
        print(f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
    results["duration_s"] = round(time.perf_counter() - t0, 2)
    results["machine"]["loadavg_end"] = _loadavg()
    results["targets"] = [
        {"benchmark": label, "of": c["of"], "to": c["to"], "stat": c["stat"],
         "ratio": c["ratio"], "target": c["target"], "met": c["met"]}
        for label, _, c in summary_rows(results) if c["target"] is not None
    ]

    md = render_markdown(results)
    print(md)
    if args.no_write:
        return 0
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "sqlite3.json").write_text(json.dumps(results, indent=2) + "\n",
                                          encoding="utf-8")
        (out / "sqlite3.md").write_text(md + "\n", encoding="utf-8")
        print(f"wrote {out / 'sqlite3.json'} and {out / 'sqlite3.md'}", file=sys.stderr)
    docs = args.docs
    if docs is None and not args.quick and not wanted:
        docs = DOCS
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(render_docs(results), encoding="utf-8")
        print(f"wrote {docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
