"""A DB-API module whose every statement is ``time.sleep(SECONDS)``: no database, no driver CPU.

``SLEEP x`` sleeps ``x`` seconds instead.

For benchmarks that measure asynchdb's own cost (benchmarks P9, engine only):
the statement releases the GIL for its whole length, as a network driver
waiting on its socket does, and costs next to nothing before and after, so
what a run spends beyond the raw threads is asynchdb's (and asyncio's).  No
cancel primitive: asynchdb wraps it with its generic adapter.
"""

from __future__ import annotations

import time
from typing import Any, Optional

# the exceptions of asynchdb's own fake driver: nothing here raises them
from asynchdb.testing import (  # noqa: F401 - the DB-API module's names
    DatabaseError,
    Error,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    Warning,
)

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

#: Seconds each statement sleeps.
SECONDS = 0.005


class Cursor:
    arraysize = 1

    def __init__(self) -> None:
        self.description: Optional[tuple[tuple[Any, ...], ...]] = None
        self.rowcount = -1

    def execute(self, sql: str, params: Any = None) -> Cursor:
        # "SLEEP 0.1": that long instead (a warm-up that keeps every connection busy)
        time.sleep(float(sql[6:]) if sql.startswith("SLEEP ") else SECONDS)
        self.description = (("x", None, None, None, None, None, None),)
        self.rowcount = 1
        return self

    def fetchall(self) -> list[tuple[int]]:
        return [(1,)]

    def close(self) -> None:
        pass


class Connection:
    def cursor(self) -> Cursor:
        return Cursor()

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def connect() -> Connection:
    return Connection()
