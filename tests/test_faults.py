"""Server faults: a backend killed mid-statement, a refused connect, a silent server.

Every case must give a clear driver error (or ``DeadlineExceeded`` for a
connect to a server that never answers) at ``result()``, nothing may hang
(every wait is bounded), and afterwards the Connection either works again or
says it is unusable: a further call raises the driver's own error, promptly.

Only addresses on 127.0.0.1 are ever contacted: the servers of
``benchmarks/backends.py``, a port that was just closed, and a listener of the
test's own that accepts and never answers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from plugin import closed_port, require, wait_until

import asynchdb
from asynchdb import DeadlineExceeded, OperationCanceled, Phase
from asynchdb._targets import parse_target
from benchmarks.backends import Backend, marker

#: Seconds every wait here is bounded by.
BOUND = 15.0
#: Seconds "promptly" means for a call on a connection whose server went away.
PROMPT = 5.0
#: Seconds a killed statement would otherwise run.
LONG = 30.0


def pg_odbc(port: int) -> str:
    return ("DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;"
            f"PORT={port};DATABASE=test;UID=postgres;PWD=")


def mariadb_odbc(port: int) -> str:
    return ("DRIVER={MariaDB Unicode};SERVER=127.0.0.1;"
            f"PORT={port};DATABASE=test;UID=root;PWD=;OPTION=67108864")


def psycopg_dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} dbname=test user=postgres connect_timeout=60"


def mysql_url(url: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The connect arguments of a MySQL-family URL (``asynchdb._targets``), 60 s timeout."""
    target = parse_target(url)
    return target.args, {**target.kwargs, "connect_timeout": 60}


#: backend name -> (connect args for a given port) for the connect faults
CONNECT_TO: dict[str, Callable[[int], tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "psycopg": lambda port: ((psycopg_dsn(port),), {}),
    "pyodbc-postgresql": lambda port: ((pg_odbc(port),), {}),
    "pyodbc-mariadb": lambda port: ((mariadb_odbc(port),), {}),
    "psycopg2": lambda port: ((psycopg_dsn(port),), {}),
    "pg8000": lambda port: ((), {"user": "postgres", "host": "127.0.0.1", "port": port,
                                 "database": "test", "timeout": 60}),
    "adbc-postgresql": lambda port: (
        (f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=60",), {}),
    "pymysql": lambda port: mysql_url(f"mysql+pymysql://root@127.0.0.1:{port}/test"),
    "mysqlclient": lambda port: mysql_url(f"mysql+mysqldb://root@127.0.0.1:{port}/test"),
    "mariadb": lambda port: mysql_url(f"mysql+mariadbconnector://root@127.0.0.1:{port}/test"),
}


def in_thread(fn: Callable[[], Any],
              bound: float = PROMPT) -> tuple[bool, Any, Optional[BaseException]]:
    """Run ``fn`` on a helper thread: (returned within ``bound``, value, exception)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["exc"] = exc

    t = threading.Thread(target=run, name="fault-helper", daemon=True)
    t.start()
    t.join(bound)
    return not t.is_alive(), box.get("value"), box.get("exc")


def on(name: str, connect: bool = True) -> Any:
    """Parameter ``name``, marked as needing that backend (``connect=False``: its driver)."""
    return pytest.param(name, marks=pytest.mark.backend(name, connect=connect))


# ----------------------------------------------------------------------
# a backend killed while its statement runs
# ----------------------------------------------------------------------
def _server_id(backend: Backend, admin: Any, tag: str) -> Optional[int]:
    """The server's id for the session running the statement tagged ``tag``."""
    if backend.server == "postgresql":
        sql = ("SELECT pid FROM pg_stat_activity WHERE state = 'active' "
               "AND pid <> pg_backend_pid() AND query LIKE {p}")
    else:
        sql = ("SELECT id FROM information_schema.processlist "
               "WHERE id <> CONNECTION_ID() AND info LIKE {p}")
    sql = sql.format(p=backend.param)
    cur = admin.cursor()
    try:
        cur.execute(sql, (f"%{tag}%",))
        row = cur.fetchone()
        return None if row is None else int(row[0])
    finally:
        cur.close()


def _kill(backend: Backend, admin: Any, session: int) -> None:
    cur = admin.cursor()
    try:
        if backend.server == "postgresql":
            cur.execute(f"SELECT pg_terminate_backend({backend.param}::int)", (session,))
            assert cur.fetchone()[0] in (True, "1", 1)
        else:
            cur.execute(f"KILL CONNECTION {int(session)}")
    finally:
        cur.close()


def _check_unusable_or_recovered(backend: Backend, conn: asynchdb.Connection) -> str:
    """A further call either works or raises the driver's error, promptly."""
    mod = backend.module()

    def again() -> Any:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        return [tuple(r) for r in cur.fetchall()]

    returned, value, exc = in_thread(again)
    assert returned, "a call on the connection after the fault hung"
    if exc is None:
        assert value == [(1,)]
        outcome = "recovered"
    else:
        assert isinstance(exc, mod.Error), f"not the driver's error: {exc!r}"
        assert not isinstance(exc, asynchdb.AsynchError)
        outcome = "unusable"
        # the asynchronous path says the same, at result(), promptly
        returned, op, exc2 = in_thread(lambda: conn.cursor().execute("SELECT 1", asynch=True))
        assert returned
        if exc2 is None:
            assert op.wait_for_completion(PROMPT), "an operation after the fault hung"
            with pytest.raises(mod.Error):
                op.result(0)
        else:
            assert isinstance(exc2, mod.Error), f"not the driver's error: {exc2!r}"
    returned, _, exc = in_thread(conn.close)
    assert returned and exc is None, f"close after the fault: {exc!r}"
    return outcome


@pytest.mark.parametrize("name", [on("psycopg"), on("pyodbc-postgresql"), on("pyodbc-mariadb"),
                                  on("psycopg2"), on("pg8000"), on("adbc-postgresql"),
                                  on("pymysql"), on("mysqlclient"), on("mariadb")])
def test_backend_killed_mid_statement(name: str) -> None:
    """pg_terminate_backend / KILL CONNECTION while the statement runs: a driver error."""
    backend = require(name)
    mod = backend.module()
    tag = marker()
    admin = backend.connect_raw(autocommit=True)
    conn = backend.connect()
    try:
        cur = conn.cursor()
        op = cur.execute(backend.long_sql(LONG, tag), asynch=True)
        session: list[int] = []
        assert wait_until(lambda: session.append(_server_id(backend, admin, tag) or 0)
                          or session[-1] > 0, BOUND), "the statement never ran on the server"
        t0 = time.monotonic()
        _kill(backend, admin, session[-1])
        assert op.wait_for_completion(BOUND), "the operation hung after its backend was killed"
        assert time.monotonic() - t0 < LONG / 2, "it ran to its natural end"
        st = op.get_status()
        # nobody aborted: the failure is the driver's, reported as COMPLETE with it
        assert st.phase == Phase.COMPLETE, st
        if st.error is None and name == "adbc-postgresql":
            # ADBC's execute returns as the copy fails; the driver's error waits
            # in the result, for the first fetch (raw too)
            returned, _, fetched = in_thread(cur.fetchall)
            assert returned and isinstance(fetched, mod.Error), repr(fetched)
            outcome = _check_unusable_or_recovered(backend, conn)
            print(f"{name}: at fetch {type(fetched).__name__}: {str(fetched)[:120]!r}; "
                  f"afterwards {outcome}")
            return
        assert isinstance(st.error, mod.Error), f"not a clear driver error: {st.error!r}"
        assert not isinstance(st.error, OperationCanceled)
        with pytest.raises(mod.Error) as info:
            op.result(0)
        assert info.value is st.error
        assert str(info.value)
        outcome = _check_unusable_or_recovered(backend, conn)
        print(f"{name}: {type(st.error).__name__}: {str(st.error)[:120]!r}; afterwards {outcome}")
    finally:
        if not conn.closed:  # _check_unusable_or_recovered closed it (pyodbc: twice raises)
            conn.close()
        admin.close()


# ----------------------------------------------------------------------
# connects that fail or never get an answer
# ----------------------------------------------------------------------
class BlackHole:
    """A loopback listener that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.05)
        self.port = int(self.server.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.got_one = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="black-hole", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted.append(client)
            self.got_one.set()

    def close(self) -> None:
        """Stop listening and hang up on everyone (the abandoned connects then fail)."""
        self._stop.set()
        self.thread.join(PROMPT)
        self.server.close()
        for c in self.accepted:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


def _module_for(name: str) -> Any:
    """The backend's driver module (no server needed): skip without it, fail if required."""
    return require(name, connect=False).module()


#: The connect faults: no server needed, only each driver.
DRIVERS = [on(name, connect=False) for name in sorted(CONNECT_TO)]


@pytest.mark.parametrize("asynch", [False, True], ids=["sync", "asynch"])
@pytest.mark.parametrize("name", DRIVERS)
def test_connect_to_closed_port(name: str, asynch: bool) -> None:
    """Connection refused: the driver's own error, at once, and no thread left behind."""
    mod = _module_for(name)
    args, kwargs = CONNECT_TO[name](closed_port())
    t0 = time.monotonic()
    if asynch:
        op = asynchdb.connect(mod, *args, asynch=True, **kwargs)
        assert op.wait_for_completion(BOUND), "a refused connect hung"
        st = op.get_status()
        assert st.phase == Phase.COMPLETE and isinstance(st.error, mod.Error), st
        with pytest.raises(mod.Error) as info:
            op.result(0)
    else:
        returned, _, exc = in_thread(lambda: asynchdb.connect(mod, *args, **kwargs), BOUND)
        assert returned, "a refused connect hung"
        assert isinstance(exc, mod.Error), f"not the driver's error: {exc!r}"
        with pytest.raises(mod.Error) as info:
            raise exc
    assert time.monotonic() - t0 < PROMPT
    # pg8000 says "Can't create a connection", with the ConnectionRefusedError as its cause
    text = f"{info.value} {info.value.__cause__ or ''}".lower()
    assert "refused" in text or "can't connect" in text or "(111)" in text, text


@pytest.mark.parametrize("asynch", [False, True], ids=["sync", "asynch"])
@pytest.mark.parametrize("name", DRIVERS)
def test_connect_deadline_to_silent_server(name: str, asynch: bool,
                                           black_hole: BlackHole) -> None:
    """A server that accepts and never answers: ``cancel_after=`` gives DeadlineExceeded."""
    mod = _module_for(name)
    args, kwargs = CONNECT_TO[name](black_hole.port)
    deadline = 0.5
    t0 = time.monotonic()
    if asynch:
        op = asynchdb.connect(mod, *args, asynch=True, cancel_after=deadline, **kwargs)
        assert op.wait_for_completion(BOUND), "a connect with a deadline hung"
        elapsed = time.monotonic() - t0
        st = op.get_status()
        assert st.phase == Phase.CANCELED, st
        assert isinstance(st.error, DeadlineExceeded)
        with pytest.raises(DeadlineExceeded, match="deadline"):
            op.result(0)
    else:
        returned, _, exc = in_thread(
            lambda: asynchdb.connect(mod, *args, cancel_after=deadline, **kwargs), BOUND)
        elapsed = time.monotonic() - t0
        assert returned, "a synchronous connect with a deadline hung"
        assert isinstance(exc, DeadlineExceeded), f"expected DeadlineExceeded, got {exc!r}"
    assert black_hole.got_one.is_set(), "the driver never reached the listener"
    assert deadline * 0.9 <= elapsed < deadline + PROMPT, elapsed
    # the driver's connect is abandoned, not stopped: it ends when the peer hangs up
    # (the fixture closes the listener; the thread-leak check then waits for it)


@pytest.mark.backend("psycopg", connect=False)
def test_connect_deadline_late_connection_is_closed(black_hole: BlackHole) -> None:
    """An abandoned connect that fails later is logged, never raised, and frees its worker."""
    mod = _module_for("psycopg")
    op = asynchdb.connect(mod, psycopg_dsn(black_hole.port), asynch=True, cancel_after=0.2)
    assert op.wait_for_completion(BOUND)
    assert op.get_status().phase == Phase.CANCELED
    black_hole.close()
    # the worker comes free once the driver notices the hang-up (no thread left)
    assert wait_until(lambda: not [t for t in threading.enumerate()
                                   if t.name.startswith("asynchdb-worker")], BOUND)
    with pytest.raises(DeadlineExceeded):
        op.result(0)
