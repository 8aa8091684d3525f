"""Passwords never leak into what asynchdb shows: reprs, status, logs, its own errors.

A distinctive secret goes in as ``PWD=`` in an ODBC connection string (psqlODBC
with trust authentication accepts any password), as psycopg's ``password=``
keyword and inside its conninfo string, and to a connect that fails (a closed
port) or never gets an answer (a silent listener of the test's own).  Then
every text asynchdb produces along the way is collected and searched: the
``repr`` of Connection, Cursor and Operation, status snapshots (status text
included) seen by polling and by listeners, every record on the ``asynchdb``
logger at DEBUG (message and formatted traceback), and the messages of
asynchdb's own exceptions (ZombieError, OperationCanceled, DeadlineExceeded,
AbortVetoed, NotSupportedError, the TimeoutError of a wait that ran out).
The driver's own exceptions are not asynchdb's to rewrite; they are checked
too, so that a leak there would at least be known.
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from typing import Any, Optional

import plugin
import pytest
from plugin import closed_port, require, wait_until

import asynchdb
from asynchdb import (
    AbortVetoed,
    Asynch,
    DeadlineExceeded,
    NotSupportedError,
    OperationCanceled,
    Phase,
    Status,
    ZombieError,
)
from asynchdb import testing as fake
from asynchdb.adapters import Adapter
from benchmarks.backends import Backend

SECRET = "s3cr3t-XYZ"
BOUND = 15.0
LONG = 30.0

PG_ODBC = ("DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT={port};DATABASE=test;"
           "UID=postgres;PWD=" + SECRET)
PSYCOPG = "host=127.0.0.1 port={port} dbname=test user=postgres connect_timeout=60"


class Texts:
    """Everything asynchdb showed during a test, to search for the secret."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, where: str, obj: Any) -> None:
        text = obj if isinstance(obj, str) else repr(obj)
        with self.lock:
            self.items.append((where, text))
        if isinstance(obj, BaseException):
            self.add(f"{where} str", str(obj))
        if isinstance(obj, Status):
            self.add(f"{where} text", str(obj.status_text))
            if obj.error is not None:
                self.add(f"{where} error", str(obj.error))

    def op(self, where: str, op: asynchdb.Operation[Any]) -> None:
        self.add(f"{where} repr", op)
        self.add(f"{where} status", op.get_status())
        self.add(f"{where} GetStatus", op.GetStatus())

    def check(self, caplog: pytest.LogCaptureFixture) -> None:
        formatter = logging.Formatter("%(message)s")
        # called at teardown: caplog.records would hold only the teardown's records
        records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
        assert any(r.name.startswith("asynchdb") for r in records) or not records
        for record in records:
            if record.name.startswith("asynchdb"):
                self.add(f"log {record.levelname}", formatter.format(record))
        assert self.items, "nothing was collected"
        leaks = [(where, text) for where, text in self.items if SECRET in text]
        assert not leaks, f"the password leaked: {leaks}"


class Recorder(plugin.Recorder):
    """The shared recording listener, also keeping the statuses and handles it is shown."""

    def __init__(self, texts: Texts, veto: bool = False) -> None:
        super().__init__(veto=veto)
        self.texts = texts

    def on_progress(self, op: Any, status: Status) -> Optional[bool]:
        self.texts.add("on_progress status", status)
        self.texts.add("on_progress op", op)
        answer: Optional[bool] = super().on_progress(op, status)
        return answer

    def on_stop(self, op: Any, status: Status) -> None:
        self.texts.add("on_stop status", status)
        self.texts.add("on_stop op", op)
        super().on_stop(op, status)


@pytest.fixture
def texts(caplog: pytest.LogCaptureFixture) -> Iterator[Texts]:
    caplog.set_level(logging.DEBUG, logger="asynchdb")
    t = Texts()
    yield t
    t.check(caplog)


def on(name: str) -> Any:
    """Parameter ``name``, marked as needing that backend (skipped before ``texts`` exists)."""
    return pytest.param(name, marks=pytest.mark.backend(name))


def backend_and_module(name: str) -> tuple[Backend, Any]:
    backend = require(name)
    return backend, backend.module()


def exercise(texts: Texts, backend: Backend, mod: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> None:
    """Open asynchronously with the secret, then walk through every asynchdb error."""
    rec = Recorder(texts)
    op = asynchdb.connect(mod, *args, asynch=True, listener=rec, **kwargs)
    texts.op("connect op", op)
    conn = op.result(BOUND)
    texts.op("connect op done", op)
    texts.add("connection", conn)
    texts.add("statistics", conn.statistics())
    try:
        cur = conn.cursor()
        texts.add("cursor", cur)
        tag = "credentials"
        # a running statement: zombie errors, a wait that runs out, then an abort
        run = cur.execute(backend.long_sql(LONG, tag), asynch=True, listener=Recorder(texts))
        texts.op("running op", run)
        texts.add("zombie cursor", cur)
        with pytest.raises(ZombieError) as zombie:
            cur.fetchall()
        texts.add("ZombieError", zombie.value)
        with pytest.raises(TimeoutError) as waited:
            run.result(timeout=0.01)
        texts.add("TimeoutError", waited.value)
        run.abort()
        assert run.wait_for_completion(BOUND)
        texts.op("aborted op", run)
        assert isinstance(run.exception(0), OperationCanceled)
        texts.add("OperationCanceled", run.exception(0))
        # a deadline
        late = cur.execute(backend.long_sql(LONG, tag), asynch=True, cancel_after=0.05)
        assert late.wait_for_completion(BOUND)
        texts.op("deadline op", late)
        with pytest.raises(DeadlineExceeded) as deadline:
            late.result(0)
        texts.add("DeadlineExceeded", deadline.value)
        texts.add("DeadlineExceeded traceback", "".join(traceback.format_exception(
            deadline.value)))
        # a vetoed abort
        vetoed = cur.execute(backend.long_sql(LONG, tag), asynch=True,
                             listener=Recorder(texts, veto=True))
        with pytest.raises(AbortVetoed) as veto:
            vetoed.abort()
        texts.add("AbortVetoed", veto.value)
        cur.close()  # closing aborts, no veto
        assert vetoed.wait_for_completion(BOUND)
        texts.op("closed-cursor op", vetoed)
        # an unsupported flag, refused before anything runs
        with pytest.raises(NotSupportedError) as unsupported:
            conn.cursor().execute("SELECT 1", asynch=Asynch.RANDOM_POPULATION)
        texts.add("NotSupportedError", unsupported.value)
        # a successful statement, and the closed connection afterwards
        ok = conn.cursor().execute("SELECT 1", asynch=True)
        assert ok.wait_for_completion(BOUND)
        texts.op("ok op", ok)
    finally:
        conn.close()
    texts.add("closed connection", conn)
    assert rec.stopped.wait(BOUND)


@pytest.mark.backend("pyodbc-postgresql")
def test_pyodbc_pwd_in_connection_string(texts: Texts) -> None:
    backend, mod = backend_and_module("pyodbc-postgresql")
    exercise(texts, backend, mod, (PG_ODBC.replace("{port}", "5432"),), {})


@pytest.mark.backend("psycopg")
def test_psycopg_password_keyword(texts: Texts) -> None:
    backend, mod = backend_and_module("psycopg")
    exercise(texts, backend, mod, (PSYCOPG.format(port=5432),), {"password": SECRET})


@pytest.mark.backend("psycopg")
def test_psycopg_password_in_conninfo(texts: Texts) -> None:
    backend, mod = backend_and_module("psycopg")
    exercise(texts, backend, mod, (PSYCOPG.format(port=5432) + f" password={SECRET}",), {})


@pytest.mark.parametrize("name", [on("pyodbc-postgresql"), on("psycopg")])
def test_failed_connect(texts: Texts, name: str) -> None:
    """A refused connect with the secret: asynchronous, synchronous, with a listener."""
    _, mod = backend_and_module(name)
    port = closed_port()
    if name == "psycopg":
        args: tuple[Any, ...] = (PSYCOPG.format(port=port),)
        kwargs: dict[str, Any] = {"password": SECRET}
    else:
        args, kwargs = (PG_ODBC.replace("{port}", str(port)),), {}
    op = asynchdb.connect(mod, *args, asynch=True, listener=Recorder(texts), **kwargs)
    assert op.wait_for_completion(BOUND)
    texts.op("failed connect", op)
    error = op.exception(0)
    assert isinstance(error, mod.Error)
    texts.add("driver error (failed connect)", error)
    with pytest.raises(mod.Error) as info:
        asynchdb.connect(mod, *args, cancel_after=BOUND, **kwargs)
    texts.add("driver error (synchronous connect)", info.value)


@pytest.mark.parametrize("name", [on("pyodbc-postgresql"), on("psycopg")])
def test_connect_deadline_to_silent_server(texts: Texts, name: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """DeadlineExceeded, the abandoned connect's status text and its late failure log."""
    _, mod = backend_and_module(name)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = int(server.getsockname()[1])
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            client, _ = server.accept()
        except OSError:
            return
        accepted.append(client)

    acceptor = threading.Thread(target=accept, name="silent-server", daemon=True)
    acceptor.start()
    try:
        if name == "psycopg":
            args: tuple[Any, ...] = (PSYCOPG.format(port=port),)
            kwargs: dict[str, Any] = {"password": SECRET}
        else:
            args, kwargs = (PG_ODBC.replace("{port}", str(port)),), {}
        op = asynchdb.connect(mod, *args, asynch=True, cancel_after=0.3,
                              listener=Recorder(texts), **kwargs)
        assert op.wait_for_completion(BOUND)
        texts.op("abandoned connect", op)
        with pytest.raises(DeadlineExceeded) as info:
            op.result(0)
        texts.add("DeadlineExceeded (connect)", info.value)
        acceptor.join(BOUND)
    finally:
        for c in accepted:
            c.close()  # the abandoned driver connect fails now; that is logged
        server.close()
        acceptor.join(BOUND)
    # wait (bounded) for the abandoned connect's late failure to be logged
    assert wait_until(lambda: not [t for t in threading.enumerate()
                                   if t.name.startswith("asynchdb-worker")], BOUND)
    assert wait_until(lambda: any("abandoned" in r.getMessage() for r in caplog.records),
                      BOUND), [r.getMessage() for r in caplog.records]


def test_generic_adapter_password_keyword(texts: Texts) -> None:
    """A driver with no adapter (no cancel: aborts abandon): kwargs never shown."""
    seen: dict[str, Any] = {}

    def connect(*, password: str, database: str) -> fake.FakeConnection:
        seen["password"] = password
        return fake.FakeConnection()

    # the generic adapter, forced (a plain callable's connection gets its class's)
    connect.__asynchdb_adapter__ = Adapter  # type: ignore[attr-defined]
    op = asynchdb.connect(connect, password=SECRET, database="x", asynch=True,
                          listener=Recorder(texts))
    texts.op("generic connect", op)
    conn = op.result(BOUND)
    assert seen["password"] == SECRET  # it did reach the driver
    texts.add("generic connection", conn)
    assert conn.statistics()["driver"] == "generic"
    try:
        cur = conn.cursor()
        run = cur.execute("block g1", asynch=True, listener=Recorder(texts))
        assert conn.driver_connection.started("g1").wait(BOUND)
        run.abort()  # abandoned: CANCELED at once, the statement goes on
        texts.op("abandoned op", run)
        assert run.get_status().phase == Phase.CANCELED
        conn.driver_connection.release("g1")
        late = conn.cursor().execute("fail", asynch=True, cancel_after=5)
        assert late.wait_for_completion(BOUND)
        texts.op("failed op", late)
        texts.add("driver error", late.exception(0))
    finally:
        conn.close()


#: A MariaDB account whose password is the secret (created, then dropped, by the test).
MYSQL_USER = "asynchdb_cred"


@pytest.mark.parametrize("name", [on("pymysql"), on("mysqlclient"), on("mariadb")])
def test_mysql_family_password_keyword(texts: Texts, name: str) -> None:
    """PyMySQL, mysqlclient, Connector/Python: the password also opens the KILL QUERY twin.

    MariaDB checks passwords, so the test makes an account whose password is
    the secret; aborts then go through the twin opened with it, and a wrapped
    PyMySQL connection (whose twin is opened from the connection's own
    attributes) is exercised too.
    """
    backend, mod = backend_and_module(name)
    admin = backend.connect_raw(autocommit=True)
    try:
        cur = admin.cursor()
        cur.execute(f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'%' IDENTIFIED BY '{SECRET}'")
        cur.execute(f"GRANT ALL ON test.* TO '{MYSQL_USER}'@'%'")
        args, kwargs = backend.connect_args()
        kwargs = {**kwargs, "user": MYSQL_USER, "password": SECRET}
        exercise(texts, backend, mod, args, kwargs)
        if name == "pymysql":
            conn = asynchdb.wrap(mod.connect(*args, **kwargs))
            texts.add("wrapped connection", conn)
            try:
                run = conn.cursor().execute(backend.long_sql(LONG, "wrapped"), asynch=True,
                                            listener=Recorder(texts))
                run.abort()
                assert run.wait_for_completion(BOUND)
                texts.op("wrapped aborted op", run)
            finally:
                conn.close()
        # and a refused login with it
        with pytest.raises(mod.Error) as info:
            asynchdb.connect(mod, *args, **{**kwargs, "password": SECRET + "-wrong"})
        texts.add("driver error (refused login)", info.value)
    finally:
        admin.cursor().execute(f"DROP USER IF EXISTS '{MYSQL_USER}'@'%'")
        admin.close()
