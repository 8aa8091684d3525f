"""The real database backends the behaviour suites run on, and how to reach them.

One :class:`Backend` record per driver family and server.  Nothing here
connects at import time: a backend is probed (imported, then connected once)
the first time a test asks for it, and the answer is cached for the session.

Environment variables (defaults are DRIVERS.md's connection strings):

``ASYNCHDB_PG_ODBC``
    pyodbc + psqlODBC connection string.
``ASYNCHDB_MARIADB_ODBC``
    pyodbc + MariaDB Connector/ODBC connection string (keep ``OPTION=67108864``
    for multi-statement batches).
``ASYNCHDB_SQLITE_ODBC``
    pyodbc + SQLite ODBC connection string; ``{path}`` is replaced by a
    temporary database file.
``ASYNCHDB_PSYCOPG_DSN``
    psycopg conninfo string.
``ASYNCHDB_REQUIRE_BACKENDS``
    ``all``, or a comma list of backend names: a required backend whose
    driver or server is missing makes its tests FAIL instead of skip (CI sets
    ``all``).

sqlite3 and DuckDB need no server: they use temporary files.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional

import pytest

import asynchdb

#: Seconds every wait in the backend suites is bounded by.
BOUND = 15.0
#: Seconds a probe connection may take before the backend counts as missing.
PROBE_TIMEOUT = 5

PG_ODBC = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres;PWD="
MARIADB_ODBC = ("DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;DATABASE=test;UID=root;"
                "PWD=;OPTION=67108864")
SQLITE_ODBC = "DRIVER={SQLite3};Database={path};BigInt=1"
PSYCOPG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"

#: Rows a second the in-process engines count through (order of magnitude, 2 vCPU).
SQLITE_RATE = 4_000_000
DUCKDB_RATE = 250_000_000

_tmpdir: Optional[str] = None
_tmplock = threading.Lock()


def tmp_path_for(name: str) -> str:
    """A file path in this process's scratch directory (removed at exit)."""
    global _tmpdir
    with _tmplock:
        if _tmpdir is None:
            _tmpdir = tempfile.mkdtemp(prefix="asynchdb-backends-")
            atexit.register(shutil.rmtree, _tmpdir, True)
    return os.path.join(_tmpdir, name)


def required() -> set[str]:
    """Names of the backends that must be present (``ASYNCHDB_REQUIRE_BACKENDS``)."""
    value = os.environ.get("ASYNCHDB_REQUIRE_BACKENDS", "").strip()
    if not value:
        return set()
    if value.lower() == "all":
        return {b.name for b in BACKENDS}
    return {part.strip() for part in value.split(",") if part.strip()}


def marker() -> str:
    """A unique tag to find one statement among the server's running ones."""
    return f"asynchdb_{uuid.uuid4().hex[:16]}"


def _count_sql(rows: int, tag: str) -> str:
    return (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) "
            f"SELECT count(*), '{tag}' FROM c")


def _range_sql(rows: int, tag: str) -> str:
    return f"SELECT count(*), '{tag}' FROM range({rows}) t(x) WHERE x % 7 = 3"


@dataclass(frozen=True)
class Backend:
    """One driver + server combination (see the module docstring)."""

    #: Test id: sqlite3, pyodbc-postgresql, pyodbc-mariadb, pyodbc-sqlite, psycopg, duckdb.
    name: str
    #: The DB-API module, imported lazily.
    module_name: str
    #: Environment variable with the connection string (None: a local file).
    env_var: Optional[str]
    #: Default connection string.
    default: Optional[str]
    #: "postgresql", "mariadb", or None for an in-process engine.
    server: Optional[str]
    #: ``long_sql(seconds, tag)``: one statement that runs about ``seconds`` and can be
    #: cancelled; ``tag`` appears in its text (to find it server-side).
    long_sql: Callable[[float, str], str]
    #: A batch returning two result sets (``SELECT 1`` then ``SELECT 2, 3``), or None.
    batch_sql: Optional[str] = None
    #: ODBC driver name that must be registered (pyodbc backends).
    odbc_driver: Optional[str] = None
    #: Keyword arguments for the driver's connect.
    connect_kwargs: dict[str, Any] = field(default_factory=dict)
    #: After an abort inside a transaction, the transaction (and its earlier work) survives.
    keeps_transaction: bool = True
    #: A temporary table's DDL prefix (``CREATE TEMPORARY TABLE`` where it exists).
    temp_table: str = "CREATE TEMPORARY TABLE"
    #: The parameter marker (``paramstyle`` qmark or format).
    param: str = "?"

    # -- reaching it ---------------------------------------------------------
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    def dsn(self) -> str:
        """The connection string (or database path) in use."""
        if self.name == "sqlite3":
            return tmp_path_for("sqlite3.db")
        if self.name == "duckdb":
            return tmp_path_for("duckdb.db")
        value = os.environ.get(self.env_var or "", "") or self.default or ""
        if "{path}" in value:
            value = value.replace("{path}", tmp_path_for(f"{self.name}.db"))
        return value

    def connect_args(self, **overrides: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` for ``module.connect`` (and ``asynchdb.connect``)."""
        kwargs = {**self.connect_kwargs, **overrides}
        return (self.dsn(),), kwargs

    def connect_raw(self, **overrides: Any) -> Any:
        """A plain driver connection (no wrapper)."""
        args, kwargs = self.connect_args(**overrides)
        return self.module().connect(*args, **kwargs)

    def connect(self, **overrides: Any) -> asynchdb.Connection:
        """A wrapped connection; close it."""
        args, kwargs = self.connect_args(**overrides)
        conn: asynchdb.Connection = asynchdb.connect(self.module(), *args, **kwargs)
        return conn

    @contextlib.contextmanager
    def wrapped(self, **overrides: Any) -> Iterator[asynchdb.Connection]:
        conn = self.connect(**overrides)
        try:
            yield conn
        finally:
            conn.close()

    # -- availability ----------------------------------------------------------
    def unavailable(self) -> Optional[str]:
        """Why this backend cannot run here, or None (probed once, then cached)."""
        with _probe_lock:
            if self.name not in _probed:
                _probed[self.name] = self._probe()
            return _probed[self.name]

    def _probe(self) -> Optional[str]:
        try:
            mod = self.module()
        except ImportError as exc:
            return f"{self.module_name} is not installed ({exc})"
        if self.odbc_driver is not None and self.odbc_driver not in mod.drivers():
            return f"the ODBC driver {{{self.odbc_driver}}} is not registered"
        try:
            raw = self.connect_raw(**self._probe_kwargs())
        except Exception as exc:
            return f"cannot connect to {self.name}: {exc!r}"
        try:
            cur = raw.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
        finally:
            raw.close()
        return None

    def _probe_kwargs(self) -> dict[str, Any]:
        if self.module_name == "pyodbc":
            return {"timeout": PROBE_TIMEOUT}
        return {}

    def require(self) -> None:
        """Skip the calling test when the backend is missing, or fail if it is required."""
        reason = self.unavailable()
        if reason is None:
            return
        if self.name in required():
            pytest.fail(f"backend {self.name} is required (ASYNCHDB_REQUIRE_BACKENDS) "
                        f"but unavailable: {reason}")
        pytest.skip(f"backend {self.name} unavailable: {reason}")

    # -- the server's view ---------------------------------------------------
    @contextlib.contextmanager
    def monitor(self) -> Iterator[Callable[[str], Optional[list[str]]]]:
        """A function listing the server's running statements that contain a tag.

        It uses a separate raw connection in autocommit (PostgreSQL caches
        ``pg_stat_activity`` for the length of a transaction).  For an
        in-process engine the function returns None: there is no server.
        """
        if self.server is None:
            yield lambda tag: None
            return
        raw = self.connect_raw(autocommit=True)
        try:
            if self.server == "postgresql":
                sql = ("SELECT query FROM pg_stat_activity WHERE state = 'active' "
                       "AND pid <> pg_backend_pid() AND query LIKE {p}")
            else:
                sql = ("SELECT info FROM information_schema.processlist "
                       "WHERE id <> CONNECTION_ID() AND info LIKE {p}")
            sql = sql.format(p="%s" if self.module_name == "psycopg" else "?")

            def running(tag: str) -> Optional[list[str]]:
                cur = raw.cursor()
                try:
                    cur.execute(sql, (f"%{tag}%",))
                    return [str(row[0]) for row in cur.fetchall()]
                finally:
                    cur.close()

            yield running
        finally:
            raw.close()

    def __str__(self) -> str:
        return self.name


def asynchdb_threads() -> list[threading.Thread]:
    """asynchdb's own threads that are alive (pool, timer, pinned MariaDB threads)."""
    return [t for t in threading.enumerate() if t.name.startswith("asynchdb-") and t.is_alive()]


def wait_no_asynchdb_threads(grace: float) -> list[threading.Thread]:
    """The asynchdb threads still alive after at most ``grace`` seconds (bounded)."""
    deadline = time.monotonic() + grace
    while True:
        left = asynchdb_threads()
        if not left or time.monotonic() >= deadline:
            return left
        left[0].join(0.05)


def wait_until(predicate: Callable[[], Any], timeout: float = BOUND,
               interval: float = 0.005) -> bool:
    """Poll ``predicate`` (bounded) until it is true."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        pause.wait(interval)


_probe_lock = threading.Lock()
_probed: dict[str, Optional[str]] = {}

BACKENDS: tuple[Backend, ...] = (
    Backend(
        name="sqlite3", module_name="sqlite3", env_var=None, default=None, server=None,
        long_sql=lambda s, tag: _count_sql(max(1, int(s * SQLITE_RATE)), tag),
        temp_table="CREATE TEMP TABLE",
    ),
    Backend(
        name="pyodbc-postgresql", module_name="pyodbc", env_var="ASYNCHDB_PG_ODBC",
        default=PG_ODBC, server="postgresql",
        long_sql=lambda s, tag: f"SELECT pg_sleep({s}), '{tag}'",
        batch_sql="SELECT 1; SELECT 2, 3", odbc_driver="PostgreSQL Unicode",
    ),
    Backend(
        name="pyodbc-mariadb", module_name="pyodbc", env_var="ASYNCHDB_MARIADB_ODBC",
        default=MARIADB_ODBC, server="mariadb",
        long_sql=lambda s, tag: f"SELECT SLEEP({s}), '{tag}'",
        batch_sql="SELECT 1; SELECT 2, 3", odbc_driver="MariaDB Unicode",
    ),
    Backend(
        name="pyodbc-sqlite", module_name="pyodbc", env_var="ASYNCHDB_SQLITE_ODBC",
        default=SQLITE_ODBC, server=None,
        long_sql=lambda s, tag: _count_sql(max(1, int(s * SQLITE_RATE)), tag),
        odbc_driver="SQLite3", temp_table="CREATE TEMP TABLE",
    ),
    Backend(
        name="psycopg", module_name="psycopg", env_var="ASYNCHDB_PSYCOPG_DSN",
        default=PSYCOPG_DSN, server="postgresql",
        long_sql=lambda s, tag: f"SELECT pg_sleep({s}), '{tag}'",
        batch_sql="SELECT 1; SELECT 2, 3", keeps_transaction=False, param="%s",
    ),
    Backend(
        name="duckdb", module_name="duckdb", env_var=None, default=None, server=None,
        long_sql=lambda s, tag: _range_sql(max(1, int(s * DUCKDB_RATE)), tag),
        keeps_transaction=False,
    ),
)

BY_NAME = {b.name: b for b in BACKENDS}
