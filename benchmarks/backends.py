"""The real database backends, and how to reach them: one registry for tests and benchmarks.

One :class:`Backend` record per driver family and server: its driver module,
its connection string (an environment variable, with a default), and the
statements written in its dialect that the suites and benchmarks need (a long
statement that only a cancel stops, a series of rows).  Nothing here connects
at import time: a backend is probed (imported, then connected once) the first
time someone asks for it, and the answer is cached for the process.

This module imports neither pytest nor anything under ``tests/``, so
``benchmarks/drivers.py`` and ``benchmarks/stress.py`` (and their
subprocesses) use it as they are; the test suite reaches it through
``tests/plugin.py``, which adds what needs pytest (skip, or fail when
required).

Environment variables (the defaults below are docs/drivers.md's connection strings):

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
``ASYNCHDB_PYMYSQL_URL``, ``ASYNCHDB_MYSQLCLIENT_URL``, ``ASYNCHDB_MARIADB_URL``
    PyMySQL, mysqlclient and MariaDB Connector/Python: a URL in the command
    line's spelling (``mysql+pymysql://root@127.0.0.1:3306/test``), turned into
    ``connect`` keywords by ``asynchdb._targets.parse_target`` (plus the record's
    ``connect_kwargs``: multi-statement batches for PyMySQL and mysqlclient).
``ASYNCHDB_CLICKHOUSE_URL``
    clickhouse_driver URL of one server of the two-shard cluster that
    ``scripts/start-services.sh`` starts (tables ``asynchdb_dist`` and
    ``asynchdb_local``); the other servers are read from ``system.clusters``.
``ASYNCHDB_REQUIRE_BACKENDS``
    ``all``, or a comma list of backend names: a required backend whose
    driver or server is missing makes its tests FAIL instead of skip (CI sets
    ``all``), and makes the stress run count it as a failure.

sqlite3 and DuckDB need no server: they use files in a scratch directory of the
process (:func:`scratch_path`), removed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional

import asynchdb

#: Seconds a probe connection may take before the backend counts as missing.
PROBE_TIMEOUT = 5

PG_ODBC = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres;PWD="
MARIADB_ODBC = ("DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;DATABASE=test;UID=root;"
                "PWD=;OPTION=67108864")
SQLITE_ODBC = "DRIVER={SQLite3};Database={path};BigInt=1"
PSYCOPG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"
PYMYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
MYSQLCLIENT_URL = "mysql+mysqldb://root@127.0.0.1:3306/test"
#: CLIENT.MULTI_STATEMENTS: multi-statement batches, for ``nextset()``
MULTI_STATEMENTS = {"client_flag": 65536}
MARIADB_URL = "mysql+mariadbconnector://root@127.0.0.1:3306/test"

#: Rows a second the in-process engines count through (order of magnitude, 2 vCPU).
SQLITE_RATE = 4_000_000
DUCKDB_RATE = 250_000_000

_tmpdir: Optional[str] = None
_tmplock = threading.Lock()


def scratch_path(name: str) -> str:
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


def is_required(name: str) -> bool:
    """Whether ``name`` must be present: ``all`` covers every name, the stress's fake too."""
    value = os.environ.get("ASYNCHDB_REQUIRE_BACKENDS", "").strip()
    return value.lower() == "all" or name in required()


def marker() -> str:
    """A unique tag to find one statement among the server's running ones."""
    return f"asynchdb_{uuid.uuid4().hex[:16]}"


def main_thread_reached(ch: Any, method: str, hopped_before: int) -> bool:
    """Whether the main thread's ``method`` call is inside the driver, or on its worker.

    For the helpers that send SIGINT to a call (any thread; a snapshot of
    ``asynchdb``'s channel ``ch``), read as the Ctrl-C watcher reads it, never
    from the main thread's frames.  An inline call registers one of two ways
    (``Channel.inline``): the driver cursor and the method's name (the
    cursor's fast paths), or the bound method and None (``Channel.call``,
    taken when the first try found the connection busy and the call's own
    found it free; a helper that watched only for the first missed the
    second, 2026-12-07).  A driver whose main-thread calls hop to the worker
    counts once the hop is made (``hopped`` above ``hopped_before``).
    """
    kind = ch.inline_kind
    inside = kind == method or (
        kind is None and getattr(ch.inline, "__name__", None) == method)
    main = threading.main_thread().ident or 0
    return bool((inside and ch.owned_by(main)) or ch.counters["hopped"] > hopped_before)


def _tagged(tag: Optional[str]) -> str:
    """The select-list tail naming ``tag`` (nothing without a tag)."""
    return "" if tag is None else f", '{tag}'"


def _count_sql(rows: int, tag: Optional[str] = None) -> str:
    return (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) "
            f"SELECT count(*){_tagged(tag)} FROM c")


def _range_sql(rows: int, tag: Optional[str] = None) -> str:
    return f"SELECT count(*){_tagged(tag)} FROM range({rows}) t(x) WHERE x % 7 = 3"


def _series_sql(n: int) -> str:
    return (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
            f"SELECT x FROM c")


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
    #: "postgresql", "mariadb", "clickhouse", or None for an in-process engine.
    server: Optional[str]
    #: ``long_sql(seconds, tag=None)``: one statement that runs about ``seconds`` and can
    #: be cancelled; a ``tag`` appears in its text (to find it server-side) and as its
    #: last column.
    long_sql: Callable[..., str]
    #: ``rows_sql(n)``: ``n`` rows of one integer column counting 1, 2, ... n.
    rows_sql: Callable[[int], str] = _series_sql
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
    #: The parameter marker (``paramstyle`` qmark, format or numeric).
    param: str = "?"
    #: The module's connect callable (apsw, not a PEP 249 module, has ``Connection``).
    connect_attr: str = "connect"
    #: ``to_args(dsn) -> (args, kwargs)`` for a driver that takes no connection string.
    to_args: Optional[Callable[[str], tuple[tuple[Any, ...], dict[str, Any]]]] = None
    #: The driver takes ``autocommit=`` at connect; otherwise it is set as an attribute.
    autocommit_kwarg: bool = True
    #: The driver has a cancel (False: an abort abandons the call, docs/abort.md).
    can_cancel: bool = True
    #: The connection string is a URL for ``asynchdb._targets.parse_target``
    #: (drivers whose ``connect`` takes keywords only).
    url: bool = False
    #: Generic suite tests that cannot apply to this backend: test function
    #: name -> why (reported as a skip with that reason, required or not).
    not_applicable: dict[str, str] = field(default_factory=dict)

    # -- reaching it ---------------------------------------------------------
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    def params(self, n: int) -> str:
        """``n`` parameter markers, comma separated (``$1, $2`` for numeric ``$1``)."""
        if self.param == "$1":
            return ", ".join(f"${i}" for i in range(1, n + 1))
        return ", ".join([self.param] * n)

    def driver(self) -> Any:
        """What to give ``asynchdb.connect``: the module, or its connect callable (apsw)."""
        mod = self.module()
        return mod if self.connect_attr == "connect" else getattr(mod, self.connect_attr)

    def dsn(self) -> str:
        """The connection string (or database path) in use."""
        if self.env_var is None and self.default is None:
            return scratch_path(f"{self.name}.db")  # an in-process engine's file
        value = os.environ.get(self.env_var or "", "") or self.default or ""
        if "{path}" in value:
            value = value.replace("{path}", scratch_path(f"{self.name}.db"))
        return value

    def connect_args(self, **overrides: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` for ``module.connect`` (and ``asynchdb.connect``)."""
        if self.to_args is not None:
            args, parsed = self.to_args(self.dsn())
            return args, {**parsed, **self.connect_kwargs, **overrides}
        kwargs = {**self.connect_kwargs, **overrides}
        if self.url:
            from asynchdb._targets import parse_target

            target = parse_target(self.dsn())
            return target.args, {**target.kwargs, **kwargs}
        return (self.dsn(),), kwargs

    def connect_raw(self, **overrides: Any) -> Any:
        """A plain driver connection (no wrapper)."""
        autocommit = overrides.pop("autocommit", None) if not self.autocommit_kwarg else None
        args, kwargs = self.connect_args(**overrides)
        raw = getattr(self.module(), self.connect_attr)(*args, **kwargs)
        if autocommit is not None:
            raw.autocommit = autocommit
        return raw

    def connect(self, **overrides: Any) -> asynchdb.Connection:
        """A wrapped connection; close it."""
        args, kwargs = self.connect_args(**overrides)
        conn: asynchdb.Connection = asynchdb.connect(self.driver(), *args, **kwargs)
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

    def driver_unavailable(self) -> Optional[str]:
        """Why the driver itself is missing (its module, its ODBC driver), or None."""
        try:
            mod = self.module()
        except ImportError as exc:
            return f"{self.module_name} is not installed ({exc})"
        if self.odbc_driver is not None and self.odbc_driver not in mod.drivers():
            return f"the ODBC driver {{{self.odbc_driver}}} is not registered"
        return None

    def _probe(self) -> Optional[str]:
        missing = self.driver_unavailable()
        if missing is not None:
            return missing
        try:
            raw = self.connect_raw(**self._probe_kwargs())
        except Exception as exc:
            return f"cannot connect to {self.name}: {exc!r}"
        try:
            cur = raw.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
            if self.server == "clickhouse":
                try:  # every shard of the cluster answers
                    cur.execute("SELECT count() FROM asynchdb_dist")
                    cur.fetchall()
                except Exception as exc:
                    return f"the ClickHouse cluster does not answer: {exc!r}"[:300]
        finally:
            raw.close()
        return None

    def _probe_kwargs(self) -> dict[str, Any]:
        if self.module_name == "pyodbc":
            return {"timeout": PROBE_TIMEOUT}
        if self.url and self.server == "mariadb":
            return {"connect_timeout": PROBE_TIMEOUT}
        return {}

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
        if self.server == "clickhouse":
            with clickhouse_monitor(self) as per_server:
                yield lambda tag: [q for found in per_server(tag).values() for q in found]
            return
        raw = self.connect_raw(autocommit=True)
        try:
            if self.server == "postgresql":
                sql = ("SELECT query FROM pg_stat_activity WHERE state = 'active' "
                       "AND pid <> pg_backend_pid() AND query LIKE {p}")
            else:
                sql = ("SELECT info FROM information_schema.processlist "
                       "WHERE id <> CONNECTION_ID() AND info LIKE {p}")
            sql = sql.format(p=self.param)

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


_probe_lock = threading.Lock()
_probed: dict[str, Optional[str]] = {}

def _pg_sleep(seconds: float, tag: Optional[str] = None) -> str:
    return f"SELECT pg_sleep({seconds}){_tagged(tag)}"


def _mariadb_sleep(seconds: float, tag: Optional[str] = None) -> str:
    return f"SELECT SLEEP({seconds}){_tagged(tag)}"


def _sqlite_count(seconds: float, tag: Optional[str] = None) -> str:
    return _count_sql(max(1, int(seconds * SQLITE_RATE)), tag)


def _duckdb_range(seconds: float, tag: Optional[str] = None) -> str:
    return _range_sql(max(1, int(seconds * DUCKDB_RATE)), tag)


BACKENDS: tuple[Backend, ...] = (
    Backend(
        name="sqlite3", module_name="sqlite3", env_var=None, default=None, server=None,
        long_sql=_sqlite_count, temp_table="CREATE TEMP TABLE",
    ),
    Backend(
        name="pyodbc-postgresql", module_name="pyodbc", env_var="ASYNCHDB_PG_ODBC",
        default=PG_ODBC, server="postgresql", long_sql=_pg_sleep,
        rows_sql=lambda n: f"SELECT generate_series(1, {n})",
        batch_sql="SELECT 1; SELECT 2, 3", odbc_driver="PostgreSQL Unicode",
    ),
    Backend(
        name="pyodbc-mariadb", module_name="pyodbc", env_var="ASYNCHDB_MARIADB_ODBC",
        default=MARIADB_ODBC, server="mariadb", long_sql=_mariadb_sleep,
        # the Sequence engine (a recursive CTE stops at max_recursive_iterations, 1000)
        rows_sql=lambda n: f"SELECT seq FROM seq_1_to_{n}",
        batch_sql="SELECT 1; SELECT 2, 3", odbc_driver="MariaDB Unicode",
    ),
    Backend(
        name="pyodbc-sqlite", module_name="pyodbc", env_var="ASYNCHDB_SQLITE_ODBC",
        default=SQLITE_ODBC, server=None, long_sql=_sqlite_count,
        odbc_driver="SQLite3", temp_table="CREATE TEMP TABLE",
    ),
    Backend(
        name="psycopg", module_name="psycopg", env_var="ASYNCHDB_PSYCOPG_DSN",
        default=PSYCOPG_DSN, server="postgresql", long_sql=_pg_sleep,
        rows_sql=lambda n: f"SELECT generate_series(1, {n})",
        batch_sql="SELECT 1; SELECT 2, 3", keeps_transaction=False, param="%s",
    ),
    Backend(
        name="duckdb", module_name="duckdb", env_var=None, default=None, server=None,
        long_sql=_duckdb_range, rows_sql=lambda n: f"SELECT range + 1 FROM range({n})",
        keeps_transaction=False,
    ),
    # MySQL-family drivers on MariaDB: KILL QUERY from a twin connection
    Backend(
        name="pymysql", module_name="pymysql", env_var="ASYNCHDB_PYMYSQL_URL",
        default=PYMYSQL_URL, server="mariadb", long_sql=_mariadb_sleep,
        rows_sql=lambda n: f"SELECT seq FROM seq_1_to_{n}",
        batch_sql="SELECT 1; SELECT 2, 3", param="%s", url=True,
        connect_kwargs=MULTI_STATEMENTS,
    ),
    Backend(
        name="mysqlclient", module_name="MySQLdb", env_var="ASYNCHDB_MYSQLCLIENT_URL",
        default=MYSQLCLIENT_URL, server="mariadb", long_sql=_mariadb_sleep,
        rows_sql=lambda n: f"SELECT seq FROM seq_1_to_{n}",
        batch_sql="SELECT 1; SELECT 2, 3", param="%s", url=True,
        connect_kwargs=MULTI_STATEMENTS,
    ),
    Backend(
        name="mariadb", module_name="mariadb", env_var="ASYNCHDB_MARIADB_URL",
        default=MARIADB_URL, server="mariadb", long_sql=_mariadb_sleep,
        rows_sql=lambda n: f"SELECT seq FROM seq_1_to_{n}", url=True,
    ),
)

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg8000_args(url: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """pg8000 takes keywords, not a connection string: split a ``postgresql://`` URL."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    kwargs: dict[str, Any] = {"user": unquote(parts.username or "postgres"),
                              "host": parts.hostname or "127.0.0.1",
                              "port": parts.port or 5432,
                              "database": parts.path.lstrip("/") or None,
                              "timeout": 30}
    if parts.password is not None:
        kwargs["password"] = unquote(parts.password)
    return (), kwargs


BACKENDS += (
    Backend(
        name="psycopg2", module_name="psycopg2", env_var="ASYNCHDB_PSYCOPG2_DSN",
        default=PSYCOPG_DSN, server="postgresql", long_sql=_pg_sleep,
        rows_sql=lambda n: f"SELECT generate_series(1, {n})",
        batch_sql=None, keeps_transaction=False, param="%s", autocommit_kwarg=False,
    ),
    Backend(
        name="pg8000", module_name="pg8000", env_var="ASYNCHDB_PG8000_URL",
        default=PG_URL, server="postgresql", long_sql=_pg_sleep,
        rows_sql=lambda n: f"SELECT generate_series(1, {n})",
        keeps_transaction=False, param="%s", to_args=_pg8000_args, autocommit_kwarg=False,
    ),
    Backend(
        name="adbc-postgresql", module_name="adbc_driver_postgresql.dbapi",
        env_var="ASYNCHDB_ADBC_PG_URL", default=PG_URL, server="postgresql",
        long_sql=_pg_sleep, rows_sql=lambda n: f"SELECT generate_series(1, {n})",
        keeps_transaction=False, param="$1",
    ),
    Backend(
        name="adbc-sqlite", module_name="adbc_driver_sqlite.dbapi", env_var=None,
        default=None, server=None, long_sql=_sqlite_count, temp_table="CREATE TEMP TABLE",
        # adbc-driver-sqlite 1.13 answers adbc_cancel() with NOT_IMPLEMENTED
        can_cancel=False,
    ),
    Backend(
        name="apsw", module_name="apsw", env_var=None, default=None, server=None,
        long_sql=_sqlite_count, temp_table="CREATE TEMP TABLE", connect_attr="Connection",
    ),
)


# -- ClickHouse: a two-shard cluster (scripts/start-services.sh) ------------------
CLICKHOUSE_URL = "clickhouse://127.0.0.1:9000/default"
#: Seconds sleepEachRow spends on each row of the long statement (each shard in parallel).
CLICKHOUSE_ROW_SLEEP = 0.001


def _clickhouse_sleep(seconds: float, tag: Optional[str] = None) -> str:
    """A statement on the Distributed table that sleeps about ``seconds`` on both shards.

    Each shard holds every other ``x`` (odd on one, even on the other), so
    ``x <= n`` gives each shard ``n / 2`` rows; ``sleepEachRow`` makes a row
    cost 1 ms, in blocks of 10 rows (a kill is noticed between blocks).
    ``PREWHERE`` filters before the sleep.  ClickHouse counts the rows read of
    the rows it expects to read (``system.processes``, progress packets).
    """
    n = max(1, int(seconds * 2 / CLICKHOUSE_ROW_SLEEP))
    return (f"SELECT count(){_tagged(tag)} FROM asynchdb_dist PREWHERE x <= {n} "
            f"WHERE sleepEachRow({CLICKHOUSE_ROW_SLEEP}) = 0 SETTINGS max_block_size = 10")


@contextlib.contextmanager
def clickhouse_monitor(backend: Backend) -> Iterator[Callable[[str], dict[str, list[str]]]]:
    """A function listing, per server of the cluster, the running queries with a tag.

    One raw cursor per server of the cluster ``asynchdb`` (``system.clusters``);
    the answer maps ``"host:port"`` to the query texts (a shard's part of a
    query on the Distributed table names the local table, and the tag).
    """
    mod = backend.module()
    first = backend.connect_raw()
    try:
        cur = first.cursor()
        cur.execute("SELECT host_address, port FROM system.clusters "
                    "WHERE cluster = 'asynchdb' ORDER BY shard_num")
        servers = [(str(h), int(p)) for h, p in cur.fetchall()]
    finally:
        first.close()
    url = urllib.parse.urlsplit(backend.dsn())
    login = {"user": urllib.parse.unquote(url.username or "default"),
             "password": urllib.parse.unquote(url.password or "")}
    conns = {f"{h}:{p}": mod.connect(host=h, port=p, database="system", **login)
             for h, p in servers}
    try:
        cursors = {name: c.cursor() for name, c in conns.items()}

        def running(tag: str) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for name, c in cursors.items():
                c.execute("SELECT query FROM system.processes WHERE query LIKE %(p)s "
                          "AND query NOT LIKE '%%system.processes%%'", {"p": f"%{tag}%"})
                found[name] = [str(row[0]) for row in c.fetchall()]
            return found

        yield running
    finally:
        for c in conns.values():
            c.close()


_CLICKHOUSE_NA = {
    "test_execute_asynch_gives_the_drivers_rows":
        "ClickHouse 18.16 applies ORDER BY to the last SELECT of a UNION ALL only, so the "
        "suite's two-row statement has no fixed order (tests/test_clickhouse.py checks "
        "rows and description instead)",
    "test_executemany_asynch_inserts_every_row":
        "a ClickHouse INSERT takes its rows as data after VALUES, not as placeholders, and "
        "VARCHAR(20) is no ClickHouse type (tests/test_clickhouse.py covers executemany)",
    "test_executemany_progress_counts_parameter_sets":
        "a ClickHouse INSERT takes its rows as data after VALUES, not as placeholders, and "
        "VARCHAR(20) is no ClickHouse type (tests/test_clickhouse.py covers executemany)",
    "test_a_cancel_landing_as_the_statement_returns":
        "its DML half inserts with placeholders, which ClickHouse's INSERT does not take "
        "(tests/test_clickhouse.py runs the same late cancel on a SELECT and an INSERT)",
    "test_transaction_after_an_abort":
        "ClickHouse has no transactions (the driver's commit and rollback do nothing)",
}

BACKENDS = (*BACKENDS, Backend(
    name="clickhouse", module_name="clickhouse_driver.dbapi",
    env_var="ASYNCHDB_CLICKHOUSE_URL", default=CLICKHOUSE_URL, server="clickhouse",
    long_sql=_clickhouse_sleep,
    rows_sql=lambda n: f"SELECT x FROM asynchdb_dist WHERE x <= {n} ORDER BY x",
    # paramstyle pyformat: a SELECT takes a dict (%(name)s); an INSERT takes its rows
    # as data after VALUES.  The suites that bind positional "%s" are n/a above.
    keeps_transaction=False, param="%s", not_applicable=_CLICKHOUSE_NA,
))

BY_NAME = {b.name: b for b in BACKENDS}
