"""Wrong types and values at every public entry point: a clear error, before anything runs.

One table row per (entry point, bad argument): the exception type and a
fragment of its message are checked, and so is that nothing ran: the driver's
connect was not called, no statement reached the driver, nothing was queued
on the connection, the operation used for the Operation rows is unchanged,
and no asynchdb thread was started.  The OLE DB methods report bad arguments
with HRESULTs instead of exceptions; they have a table of their own.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from plugin import asynchdb_threads, wait_no_asynchdb_threads

import asynchdb
from asynchdb import Asynch, NotSupportedError, oledb
from asynchdb import testing as fake

BOUND = 10.0


class ProcCursor(fake.FakeCursor):
    """The fake cursor with the optional DB-API methods, so that they can be wrapped."""

    def callproc(self, procname: str, params: Any = ()) -> Any:
        self.connection._run(f"noop {procname}")
        return params

    def nextset(self) -> None:
        return None


class ProcConnection(fake.FakeConnection):
    def cursor(self) -> ProcCursor:
        self._check()
        return ProcCursor(self)


class Quiet:
    """A valid listener."""

    def on_stop(self, op: Any, status: Any) -> None:
        pass


class NotCallable:
    """A listener whose on_progress is not a method."""

    on_progress = 1


@dataclass
class Ctx:
    raw: ProcConnection
    conn: asynchdb.Connection
    cur: asynchdb.Cursor
    op: asynchdb.Operation[Any]
    calls: list[Any] = field(default_factory=list)

    def factory(self, *args: Any, **kwargs: Any) -> fake.FakeConnection:
        """A connect callable that records that it was called."""
        self.calls.append((args, kwargs))
        return fake.FakeConnection()


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    raw = ProcConnection()
    conn = asynchdb.wrap(raw)
    cur = conn.cursor()
    op = cur.execute("noop setup", asynch=True)
    assert op.wait_for_completion(BOUND)
    try:
        yield Ctx(raw, conn, cur, op)
    finally:
        conn.close()


Call = Callable[[Ctx], Any]

#: (id, the call, the exception type, a fragment of its message)
RAISES: list[tuple[str, Call, type[BaseException], str]] = [
    # -- asynchdb.connect --------------------------------------------------------
    ("connect-driver-None", lambda c: asynchdb.connect(None), TypeError,
     "driver must be a DB-API 2.0 module"),
    ("connect-driver-str", lambda c: asynchdb.connect("sqlite3", ":memory:"), TypeError,
     "not str"),
    ("connect-driver-int", lambda c: asynchdb.connect(42, asynch=True), TypeError, "not int"),
    ("connect-asynch-str", lambda c: asynchdb.connect(c.factory, asynch="yes"), TypeError,
     "asynch must be a bool or asynchdb.Asynch flags, not str"),
    ("connect-asynch-float", lambda c: asynchdb.connect(c.factory, asynch=1.5), TypeError,
     "not float"),
    ("connect-asynch-negative", lambda c: asynchdb.connect(c.factory, asynch=-1), ValueError,
     "unknown asynch flags"),
    ("connect-asynch-unknown-bit", lambda c: asynchdb.connect(c.factory, asynch=0x40),
     ValueError, "unknown asynch flags: 0x40"),
    ("connect-asynch-random", lambda c: asynchdb.connect(
        c.factory, asynch=Asynch.RANDOM_POPULATION), NotSupportedError, "RANDOM_POPULATION"),
    ("connect-asynch-population", lambda c: asynchdb.connect(
        c.factory, asynch=Asynch.SEQUENTIAL_POPULATION), NotSupportedError, "not to connect"),
    ("connect-deadline-str", lambda c: asynchdb.connect(c.factory, asynch=True, cancel_after="1"),
     TypeError, "cancel_after must be a number of seconds or None, not str"),
    ("connect-deadline-negative", lambda c: asynchdb.connect(c.factory, cancel_after=-1),
     ValueError, "cancel_after must be >= 0 seconds, not -1"),
    ("connect-deadline-nan", lambda c: asynchdb.connect(c.factory, asynch=True,
                                                       cancel_after=math.nan), ValueError, "nan"),
    ("connect-deadline-bool", lambda c: asynchdb.connect(c.factory, cancel_after=True), TypeError,
     "not bool"),
    ("connect-deadline-complex", lambda c: asynchdb.connect(c.factory, cancel_after=1j), TypeError,
     "not complex"),
    ("connect-listener-object", lambda c: asynchdb.connect(c.factory, asynch=True,
                                                           listener=object()),
     TypeError, "a listener needs at least one of on_progress, on_stop, on_low_resource"),
    ("connect-listener-int", lambda c: asynchdb.connect(c.factory, listener=42), TypeError,
     "got int"),
    ("connect-listener-not-callable", lambda c: asynchdb.connect(
        c.factory, asynch=True, listener=NotCallable()), TypeError,
     "NotCallable.on_progress must be callable, not int"),
    # -- asynchdb.wrap --------------------------------------------------------------
    ("wrap-None", lambda c: asynchdb.wrap(None), TypeError,
     "wrap() needs an open DB-API connection"),
    ("wrap-module", lambda c: asynchdb.wrap(sqlite3), TypeError, "module has no cursor()"),
    ("wrap-int", lambda c: asynchdb.wrap(42), TypeError, "int has no cursor()"),
    ("wrap-cursor", lambda c: asynchdb.wrap(c.raw.cursor()), TypeError, "has no cursor()"),
    # -- Connection: driver calls keep the driver's own errors ---------------------------
    ("connection-cursor-args", lambda c: c.conn.cursor(1, 2), TypeError, "positional argument"),
    ("connection-execute-missing", lambda c: c.conn.execute("noop", asynch=True),
     AttributeError, "has no attribute 'execute'"),
    ("connection-extra-missing", lambda c: c.conn.no_such_method(), AttributeError,
     "no_such_method"),
    # -- Cursor.execute ------------------------------------------------------------
    ("execute-asynch-str", lambda c: c.cur.execute("noop x", asynch="x"), TypeError,
     "asynch must be a bool"),
    ("execute-asynch-float", lambda c: c.cur.execute("noop x", asynch=2.5), TypeError,
     "not float"),
    ("execute-asynch-negative", lambda c: c.cur.execute("noop x", asynch=-1), ValueError,
     "unknown asynch flags"),
    ("execute-asynch-unknown-bit", lambda c: c.cur.execute("noop x", asynch=0x80), ValueError,
     "0x80"),
    ("execute-asynch-random", lambda c: c.cur.execute(
        "noop x", asynch=Asynch.RANDOM_POPULATION | Asynch.INITIALIZE), NotSupportedError,
     "use SEQUENTIAL_POPULATION"),
    ("execute-deadline-negative", lambda c: c.cur.execute("noop x", asynch=True, cancel_after=-0.1),
     ValueError, ">= 0 seconds"),
    ("execute-deadline-str-sync", lambda c: c.cur.execute("noop x", cancel_after="x"), TypeError,
     "cancel_after must be a number"),
    ("execute-deadline-nan", lambda c: c.cur.execute("noop x", asynch=True, cancel_after=math.nan),
     ValueError, "nan"),
    ("execute-deadline-list", lambda c: c.cur.execute("noop x", asynch=True, cancel_after=[]),
     TypeError, "not list"),
    ("execute-listener-object", lambda c: c.cur.execute("noop x", asynch=True,
                                                        listener=object()),
     TypeError, "a listener needs"),
    ("execute-listener-str-sync", lambda c: c.cur.execute("noop x", listener="x"), TypeError,
     "got str"),
    ("execute-listener-not-callable", lambda c: c.cur.execute(
        "noop x", asynch=True, listener=NotCallable()), TypeError, "must be callable"),
    # -- Cursor.executemany ---------------------------------------------------------
    ("executemany-asynch-str", lambda c: c.cur.executemany("noop x", [()], asynch="x"),
     TypeError, "asynch must be a bool"),
    ("executemany-asynch-random", lambda c: c.cur.executemany(
        "noop x", [()], asynch=Asynch.RANDOM_POPULATION), NotSupportedError, "RANDOM"),
    ("executemany-deadline-negative", lambda c: c.cur.executemany(
        "noop x", [()], asynch=True, cancel_after=-1), ValueError, ">= 0 seconds"),
    ("executemany-listener-object", lambda c: c.cur.executemany(
        "noop x", [()], asynch=True, listener=object()), TypeError, "a listener needs"),
    # -- Cursor.callproc ------------------------------------------------------------
    ("callproc-asynch-str", lambda c: c.cur.callproc("p", asynch="x"), TypeError,
     "asynch must be a bool"),
    ("callproc-deadline-nan", lambda c: c.cur.callproc("p", asynch=True, cancel_after=math.nan),
     ValueError, "nan"),
    ("callproc-listener-int", lambda c: c.cur.callproc("p", asynch=True, listener=42),
     TypeError, "got int"),
    # -- Cursor.nextset -------------------------------------------------------------
    ("nextset-asynch-str", lambda c: c.cur.nextset(asynch="x"), TypeError,
     "asynch must be a bool"),
    ("nextset-deadline-negative", lambda c: c.cur.nextset(asynch=True, cancel_after=-1), ValueError,
     ">= 0 seconds"),
    ("nextset-deadline-str-sync", lambda c: c.cur.nextset(cancel_after="soon"), TypeError,
     "not str"),
    ("nextset-listener-object", lambda c: c.cur.nextset(asynch=True, listener=object()),
     TypeError, "a listener needs"),
    ("nextset-positional", lambda c: c.cur.nextset(True), TypeError, "positional argument"),
    # -- Cursor.buffer_rows -----------------------------------------------------------
    ("buffer_rows-zero", lambda c: setattr(c.cur, "buffer_rows", 0), ValueError,
     "buffer_rows must be a positive int, not 0"),
    ("buffer_rows-negative", lambda c: setattr(c.cur, "buffer_rows", -5), ValueError, "-5"),
    ("buffer_rows-str", lambda c: setattr(c.cur, "buffer_rows", "10"), ValueError, "'10'"),
    ("buffer_rows-bool", lambda c: setattr(c.cur, "buffer_rows", True), ValueError, "True"),
    ("buffer_rows-float", lambda c: setattr(c.cur, "buffer_rows", 2.0), ValueError, "2.0"),
    # -- Operation ----------------------------------------------------------------
    ("wait-negative", lambda c: c.op.wait_for_completion(-1), ValueError, ">= 0 seconds"),
    ("wait-nan", lambda c: c.op.wait_for_completion(math.nan), ValueError, "nan"),
    ("wait-str", lambda c: c.op.wait_for_completion("1"), TypeError, "not str"),
    ("wait-bool", lambda c: c.op.wait_for_completion(True), TypeError, "not bool"),
    ("wait-list", lambda c: c.op.wait_for_completion([]), TypeError, "not list"),
    ("result-negative", lambda c: c.op.result(-1), ValueError, ">= 0 seconds"),
    ("result-str", lambda c: c.op.result("x"), TypeError, "not str"),
    ("exception-negative", lambda c: c.op.exception(-0.5), ValueError, "-0.5"),
    ("exception-dict", lambda c: c.op.exception({}), TypeError, "not dict"),
    ("advise-None", lambda c: c.op.advise(None), TypeError, "got NoneType"),
    ("advise-object", lambda c: c.op.advise(object()), TypeError, "a listener needs"),
    ("advise-int", lambda c: c.op.advise(42), TypeError, "got int"),
    ("advise-not-callable", lambda c: c.op.advise(NotCallable()), TypeError,
     "must be callable"),
    ("unadvise-zero", lambda c: c.op.unadvise(0), KeyError, "0"),
    ("unadvise-negative", lambda c: c.op.unadvise(-1), KeyError, "-1"),
    ("unadvise-str", lambda c: c.op.unadvise("1"), KeyError, "'1'"),
    ("unadvise-None", lambda c: c.op.unadvise(None), KeyError, "None"),
    ("unadvise-float", lambda c: (c.op.advise(Quiet()), c.op.unadvise(1.0)), KeyError, "1.0"),
    ("unadvise-bool", lambda c: (c.op.advise(Quiet()), c.op.unadvise(True)), KeyError, "True"),
]


@pytest.mark.parametrize(("call", "exc", "fragment"),
                         [pytest.param(f, e, m, id=i) for i, f, e, m in RAISES])
def test_bad_argument_raises_before_anything_runs(
        ctx: Ctx, call: Call, exc: type[BaseException], fragment: str) -> None:
    log = list(ctx.raw.log)
    stats = ctx.conn.statistics()
    status = ctx.op.get_status()
    threads = {t.ident for t in asynchdb_threads()}
    with pytest.raises(exc) as info:
        call(ctx)
    text = str(info.value)
    assert fragment in text, f"{fragment!r} not in {text!r}"
    # nothing ran: no connect, no statement, nothing queued, no new thread
    assert ctx.calls == [], "the driver's connect was called"
    assert ctx.raw.log == log, "a statement reached the driver"
    after = ctx.conn.statistics()
    assert after["submitted"] == stats["submitted"], "work was queued"
    assert after["queued"] == 0 and not after["running"]
    assert ctx.op.get_status() == status
    assert {t.ident for t in asynchdb_threads()} <= threads, "a thread was started"


def test_bad_connect_leaves_no_thread() -> None:
    """With no connection open, a refused connect starts no thread at all."""
    calls: list[int] = []

    def factory() -> fake.FakeConnection:
        calls.append(1)
        return fake.FakeConnection()

    assert wait_no_asynchdb_threads(BOUND) == []  # the pool retires once no connection is open
    for kwargs in ({"asynch": True, "cancel_after": -1}, {"asynch": "x"},
                   {"asynch": True, "listener": object()},
                   {"cancel_after": math.inf, "asynch": 64}):
        with pytest.raises((TypeError, ValueError)):
            asynchdb.connect(factory, **kwargs)
        assert asynchdb_threads() == []
    assert calls == []


def test_cookie_survives_bad_unadvise(ctx: Ctx) -> None:
    """True and 1.0 are not cookie 1: the listener stays advised."""
    cookie = ctx.op.advise(Quiet())
    assert cookie == 1
    for bad in (True, 1.0, "1"):
        with pytest.raises(KeyError):
            ctx.op.unadvise(bad)  # type: ignore[arg-type]
    ctx.op.unadvise(cookie)  # still there until now
    with pytest.raises(KeyError):
        ctx.op.unadvise(cookie)


#: (id, the OLE DB call, the HRESULT it must return)
HRESULTS: list[tuple[str, Call, Any]] = [
    ("GetStatus-chapter", lambda c: c.op.GetStatus(1)[0], oledb.DB_E_BADCHAPTER),
    ("GetStatus-chapter-str", lambda c: c.op.GetStatus("x")[0], oledb.DB_E_BADCHAPTER),
    ("GetStatus-chapter-None", lambda c: c.op.GetStatus(None)[0], oledb.DB_E_BADCHAPTER),
    ("Abort-chapter", lambda c: c.op.Abort(1), oledb.DB_E_BADCHAPTER),
    ("Abort-chapter-str", lambda c: c.op.Abort("x"), oledb.DB_E_BADCHAPTER),
    ("Abort-operation", lambda c: c.op.Abort(0, 7), oledb.E_INVALIDARG),
    ("Wait-negative", lambda c: c.op.WaitForAsynchCompletion(-5), oledb.E_INVALIDARG),
    ("Wait-str", lambda c: c.op.WaitForAsynchCompletion("x"), oledb.E_INVALIDARG),
    ("Wait-float", lambda c: c.op.WaitForAsynchCompletion(1.5), oledb.E_INVALIDARG),
    ("Wait-bool", lambda c: c.op.WaitForAsynchCompletion(True), oledb.E_INVALIDARG),
    ("Wait-None", lambda c: c.op.WaitForAsynchCompletion(None), oledb.E_INVALIDARG),
    ("Advise-None", lambda c: c.op.Advise(None), (oledb.E_INVALIDARG, 0)),
    ("Advise-object", lambda c: c.op.Advise(object()), (oledb.E_INVALIDARG, 0)),
    ("Advise-python-listener", lambda c: c.op.Advise(Quiet()), (oledb.E_INVALIDARG, 0)),
    ("Advise-not-callable", lambda c: c.op.Advise(type("S", (), {"OnStop": 1})()),
     (oledb.E_INVALIDARG, 0)),
    ("Unadvise-unknown", lambda c: c.op.Unadvise(999), oledb.CONNECT_E_NOCONNECTION),
    ("Unadvise-str", lambda c: c.op.Unadvise("x"), oledb.CONNECT_E_NOCONNECTION),
    ("Unadvise-None", lambda c: c.op.Unadvise(None), oledb.CONNECT_E_NOCONNECTION),
    ("Unadvise-bool", lambda c: c.op.Unadvise(True), oledb.CONNECT_E_NOCONNECTION),
]


@pytest.mark.parametrize(("call", "expected"),
                         [pytest.param(f, r, id=i) for i, f, r in HRESULTS])
def test_ole_db_bad_argument_hresult(ctx: Ctx, call: Call, expected: Any) -> None:
    status = ctx.op.get_status()
    stats = ctx.conn.statistics()
    assert call(ctx) == expected
    assert ctx.op.get_status() == status
    assert ctx.conn.statistics()["submitted"] == stats["submitted"]
