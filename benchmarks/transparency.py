"""isinstance transparency: asynchdb's own forwarding vs ``wrapt.ObjectProxy`` on P1.

Issue 10 asked for ``isinstance(conn, <the driver's class>)`` and suggested
``wrapt.ObjectProxy``, OpenTelemetry's choice for DB-API instrumentation.
asynchdb reports the driver's class through a ``__class__`` property on its
own ``__slots__`` classes, which costs nothing on the drop-in path (isinstance
checks the real type first).  This measures the alternative: the same drop-in
fast path (take the connection, call the driver, release) on a
``wrapt.ObjectProxy`` subclass, against asynchdb's Cursor and the raw driver,
interleaved, medians (benchmarks/_harness.py).  The proxy here has only that
fast path; asynchdb's Cursor has its whole surface, so the comparison
favours the proxy.

    python benchmarks/transparency.py [psycopg pyodbc-postgresql ...]

Needs ``wrapt`` (not a dependency of asynchdb).  No absolute time is asserted.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

if not __package__:  # python benchmarks/transparency.py: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asynchdb
from benchmarks._harness import Mode, interleave, summarize
from benchmarks.backends import BY_NAME
from benchmarks.drivers import Sizes, _timed_calls


def _proxy_class() -> Any:
    import wrapt

    base: Any = wrapt.ObjectProxy  # typed or not, by wrapt's version

    class ProxyCursor(base):  # type: ignore[misc]
        """asynchdb.Cursor's drop-in fast path on a wrapt proxy."""

        def __init__(self, ch: Any, raw: Any) -> None:
            super().__init__(raw)
            self._self_ch = ch

        def execute(self, operation: Any, *args: Any) -> Any:
            ch = self._self_ch
            if ch.take():
                try:
                    if args:
                        self.__wrapped__.execute(operation, *args)
                    else:
                        self.__wrapped__.execute(operation)
                finally:
                    ch.release()
            else:
                ch.call(self.__wrapped__.execute, operation, *args)
            return self

        def fetchall(self) -> Any:
            ch = self._self_ch
            if ch.take():
                try:
                    return self.__wrapped__.fetchall()
                finally:
                    ch.release()
            return ch.call(self.__wrapped__.fetchall)

    return ProxyCursor


def measure(name: str, raw: Any, wrapped: Any, queries: list[tuple[str, str]],
            sz: Sizes) -> dict[str, dict[str, float]]:
    proxy_cls = _proxy_class()
    out: dict[str, dict[str, float]] = {}
    for key, sql in queries:
        ours = wrapped.cursor()
        proxy = proxy_cls(wrapped._ch, wrapped.driver_connection.cursor())
        driver_cls = type(ours.driver_cursor)
        assert isinstance(proxy, driver_cls) and isinstance(ours, driver_cls)
        series = interleave([Mode("raw", _timed_calls(raw.cursor(), sql, sz)),
                             Mode("asynchdb", _timed_calls(ours, sql, sz)),
                             Mode("wrapt.ObjectProxy", _timed_calls(proxy, sql, sz))], sz.reps)
        out[f"{name} {key}"] = {m: summarize(s)["median_ns"] for m, s in series.items()}
    return out


def main(argv: list[str]) -> None:
    sz = Sizes(reps=8)
    res: dict[str, dict[str, float]] = {}
    raw = sqlite3.connect(":memory:", check_same_thread=False)
    wrapped = asynchdb.connect(sqlite3, ":memory:", check_same_thread=False)
    for c in (raw, wrapped):
        c.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT)")
        c.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(1000)])
    res.update(measure("sqlite3", raw, wrapped, [
        ("SELECT 1", "SELECT 1"), ("100 rows", "SELECT id, name FROM items LIMIT 100")], sz))
    wrapped.close()
    raw.close()
    for name in argv:
        b = BY_NAME[name]
        r, w = b.connect_raw(), b.connect()
        try:
            res.update(measure(name, r, w, [("SELECT 1", "SELECT 1"),
                                            ("100 rows", b.rows_sql(100))], sz))
        finally:
            w.close()
            r.close()
    print("| query | raw (ns) | asynchdb (ns) | wrapt.ObjectProxy (ns) |")
    print("|---|---:|---:|---:|")
    for key, m in res.items():
        print(f"| {key} | {m['raw']:.0f} | {m['asynchdb']:.0f} | {m['wrapt.ObjectProxy']:.0f} |")
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
