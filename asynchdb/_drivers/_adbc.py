"""ADBC (``adbc_driver_postgresql.dbapi``, ``adbc_driver_sqlite.dbapi``): ``adbc_cancel()``.

ADBC's DB-API layer (``adbc_driver_manager.dbapi``) gives every cursor
``adbc_cancel()``, i.e. ``AdbcStatementCancel``, which the ADBC standard allows
from another thread while the statement runs.  What it does depends on the
ADBC driver (measured here, docs/drivers.md):

* adbc-driver-postgresql: libpq's cancel request.  The executing thread gets
  ``adbc_driver_manager.OperationalError`` with ``status_code``
  ``AdbcStatusCode.CANCELLED`` and ``sqlstate`` 57014; 2.5 ms median.  The
  cancel is connection-wide: a naive cancel sent while the next statement
  started cancelled it in 34 of 40 trials.  The engine sends it only under the
  channel's cancel lock while the aborted job is the statement running, and
  starts the next statement only after it returned (0 of 40 then).  A cancel
  that reached the server before the query did is ignored: the engine
  re-issues it every :attr:`AdbcAdapter.reissue_cancel` seconds.
  Not in autocommit, the driver sends ``BEGIN`` before a statement; a cancel
  that lands on it is reported as status ``IO`` with no SQLSTATE ("Failed to
  begin transaction: ERROR: canceling statement due to user request"): the
  adapter recognises PostgreSQL's message too.
* adbc-driver-sqlite (1.13): ``NotSupportedError`` ``NOT_IMPLEMENTED``.  There
  is no cancel: :meth:`AdbcAdapter.prepare` asks the driver once per
  connection (``adbc_cancel()`` on an idle cursor, which a driver that
  implements it treats as a no-op) and, when it answers NOT_IMPLEMENTED, sets
  :attr:`AdbcAdapter.can_cancel` to False for that connection: an abort then
  abandons the call honestly (CANCELED at once, the status text says the
  statement may still be running).  A release that implements the cancel gets
  the real one with no change here.

Both drivers release the GIL while a statement runs.  ``close()`` from another
thread while a statement runs is not safe: with PostgreSQL it returned at once,
the server went on running the query, and the executing thread later failed
with a bogus "out of memory" from freed state; with SQLite it blocked until the
statement ended.  asynchdb aborts first and closes on the owner thread.

A late cancel (PostgreSQL): ``execute()`` of a query returns normally when it
is canceled, and the cancel's error waits in its result for the first fetch
(the driver runs a query as ``COPY ... TO STDOUT``).  A query whose cancel was
sent and that returned a result set ends CANCELED
(:meth:`AdbcAdapter.result_lost`); DML and DDL end COMPLETE (they ran).

State after an abort (PostgreSQL): ADBC connections are not in autocommit by
default, and a canceled statement fails the transaction ("the connection is in
an error state; first rollback").  :meth:`AdbcAdapter.after_abort` rolls it
back, discarding that transaction's earlier work (it could not have been
committed anyway); a rollback with no transaction open is harmless.

``executemany`` binds every parameter set at once (an Arrow batch): progress is
0 of 1 until it ends, as for psycopg 3.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any, Optional

from ..adapters import Adapter, CallView, ConnectionView

log = logging.getLogger("asynchdb")

#: ``adbc_driver_manager.AdbcStatusCode.CANCELLED``.
_CANCELLED = 11
#: ``adbc_driver_manager.AdbcStatusCode.NOT_IMPLEMENTED``.
_NOT_IMPLEMENTED = 2
#: SQLSTATE query_canceled.
_QUERY_CANCELED = "57014"
#: PostgreSQL's message for 57014 (with English ``lc_messages``).
_CANCELED_MESSAGE = "canceling statement due to user request"
_STATEMENT_CALLS = frozenset({"execute", "executemany"})


class _State:
    """Per-connection adapter state."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        #: The call the last cancel was sent for.
        self.sent: Optional[weakref.ref[CallView]] = None


def _manager() -> Any:
    return sys.modules.get("adbc_driver_manager")


class AdbcAdapter(Adapter):
    name = "adbc"
    can_cancel = True
    #: A cancel that reached the server before the query did is ignored.
    reissue_cancel = 0.05
    #: On the main thread ADBC swaps in its own SIGINT handler around a call
    #: and turns Ctrl-C into its cancel's error, with no KeyboardInterrupt:
    #: main-thread calls run on the worker instead, where ADBC leaves SIGINT
    #: alone (docs/interrupts.md).  Not without a cancel (SQLite: raw).
    interrupt_on_worker = True

    def __init__(self, module: Any | None) -> None:
        # the exceptions live in adbc_driver_manager (the dbapi modules re-export them)
        super().__init__(module if module is not None else _manager())

    def prepare(self, conn: ConnectionView) -> None:
        # owner thread: ask once whether this ADBC driver implements the cancel
        conn.state = _State()
        if not self._cancel_implemented(conn.raw):
            self.can_cancel = False
            self.interrupt_on_worker = False  # Ctrl-C as raw: ADBC's own handling

    def _cancel_implemented(self, raw: Any) -> bool:
        """Whether the driver behind ``raw`` implements ``AdbcStatementCancel``."""
        mod = getattr(self.module, "__name__", "")
        if mod.startswith("adbc_driver_postgresql"):
            return True  # known: libpq's cancel request
        probe = raw.cursor()
        try:
            probe.adbc_cancel()  # nothing runs: a no-op where it is implemented
        except Exception as exc:  # only NOT_IMPLEMENTED means "none"
            if getattr(exc, "status_code", None) == _NOT_IMPLEMENTED:
                return False
            log.debug("asynchdb: probing adbc_cancel failed", exc_info=True)
        finally:
            probe.close()
        return True

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread, under the channel's cancel lock, while the call runs
        state = conn.state
        if isinstance(state, _State):
            state.sent = weakref.ref(call)
        cursor = call.cursor
        if cursor is not None:
            cursor.adbc_cancel()
        else:
            conn.raw.adbc_cancel()

    def is_cancel_error(self, exc: BaseException) -> bool:
        manager = _manager()
        error = getattr(manager, "Error", None)
        if not (isinstance(error, type) and isinstance(exc, error)):
            return False
        if (getattr(exc, "status_code", None) == _CANCELLED
                or getattr(exc, "sqlstate", None) == _QUERY_CANCELED):
            return True
        # A cancel that lands on the BEGIN the driver sends before a statement
        # (not in autocommit) comes back as status IO, with no SQLSTATE, and
        # only PostgreSQL's message says what happened (seen once in 5000
        # stress operations).  The engine asks only while an abort is requested.
        return _CANCELED_MESSAGE in str(exc)

    def result_lost(self, conn: ConnectionView, call: CallView) -> bool:
        """A canceled query's ``execute()`` returns normally: the error waits in its result.

        ADBC's PostgreSQL driver runs a query as ``COPY (...) TO STDOUT`` and
        ``execute()`` returns as soon as the copy ended, canceled or not; the
        cancel's error (CANCELLED, 57014) is raised by the first fetch
        (measured: ``execute`` of ``pg_sleep(5)`` returned 0.5 s after a
        cancel at 0.5 s).  A call that returned a result set although its
        cancel was sent therefore ends CANCELED, and the transaction the
        cancel failed is rolled back here, as :meth:`after_abort` would.
        """
        # owner thread, after every call that returned normally
        state = conn.state
        if not isinstance(state, _State) or state.sent is None or state.sent() is not call:
            return False
        state.sent = None
        cursor = call.cursor
        if call.kind not in _STATEMENT_CALLS or cursor is None:
            return False
        try:
            if not cursor.description:
                return False  # DML, DDL (no columns): it ran, and its row count was read
        except Exception:  # noqa: BLE001 - a cursor that cannot say has lost it
            pass
        self.after_abort(conn)
        return True

    def after_abort(self, conn: ConnectionView) -> None:
        # owner thread: PostgreSQL failed the transaction; a rollback with none
        # open (autocommit) does nothing
        conn.raw.rollback()

    def describe(self, raw: Any) -> str:
        return self._driver_of(raw) or "adbc"

    @staticmethod
    def _driver_of(raw: Any) -> Optional[str]:
        module = type(raw).__module__.split(".")[0]
        return module if module.startswith("adbc_driver_") else None
