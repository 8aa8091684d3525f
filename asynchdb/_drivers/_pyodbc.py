"""pyodbc: abort with ``SQLCancel`` on the statement handle that runs the call.

``Cursor.cancel()`` is pyodbc's thread-safe cancel primitive: it calls
``SQLCancel`` on the cursor's statement handle with the GIL released, from the
aborting thread, while the worker is inside ``SQLExecDirect`` (or
``SQLFetch``, ``SQLMoreResults``).  What the executing thread gets depends on
the ODBC driver (DRIVERS.md), all ``pyodbc.Error`` with a SQLSTATE:

=====================  ================================================
driver                 executing thread gets
=====================  ================================================
psqlODBC (PostgreSQL)  57014 ``canceling statement due to user request``
MariaDB Connector      HY018 ``Query execution was interrupted (1317)``;
                       ``BENCHMARK()`` just returns early, no error
SQLite ODBC            HY000 ``interrupted (9)``
others (standard)      HY008 ``Operation canceled``, 70100
=====================  ================================================

Hazards handled here and in the engine:

* A cancel that lands before the statement reached the driver does nothing:
  the engine re-issues it every :attr:`PyodbcAdapter.reissue_cancel` seconds
  while the call still runs.
* unixODBC's ``SQLCancel`` on a statement that is *not* executing acts as
  ``SQLFreeStmt(SQL_CLOSE)``: a cancel that lands as the statement finishes
  closes its result set.  If that happens inside pyodbc's ``execute`` (while it
  describes the columns) the call fails with HY010 "Function sequence error":
  with an abort requested that is the cancel's doing, so the operation ends
  CANCELED (:meth:`PyodbcAdapter.is_cancel_error`).  If it happens after the
  last ODBC call of ``execute``, the call returns normally but every fetch would
  fail with HY010; whether that happened cannot be observed, so a call that
  returned a result set although its cancel was sent ends CANCELED too
  (:meth:`PyodbcAdapter.result_lost`).  A call without a result set (DML, DDL)
  ends COMPLETE: pyodbc read its row count before returning.  An HY010 with no
  abort requested stays the driver's error.
* MariaDB Connector/ODBC crashes the process when ``SQLCancel`` races
  ``SQLFreeHandle`` (double free): the engine sends the cancel only under the
  channel's cancel lock while the aborted job is the one running, so it never
  overlaps a cursor close, a connection close or the next statement.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Optional

from ._base import Adapter

if TYPE_CHECKING:
    from .._channel import Channel
    from ..operation import Job

#: SQLSTATEs that mean "your cancel stopped the statement".
CANCEL_STATES = frozenset({
    "HY008",  # ODBC: operation canceled
    "57014",  # PostgreSQL: query_canceled
    "HY018",  # MariaDB Connector/ODBC: server declined cancel / interrupted (1317)
    "70100",  # MySQL/MariaDB: query execution was interrupted (1317)
})
#: Function sequence error: a cancel that closed the statement as it finished.
SEQUENCE_ERROR = "HY010"
#: Calls whose result set a late cancel can close.
_RESULT_CALLS = frozenset({"execute", "executemany", "nextset", "callproc"})


class _State:
    """Per-connection record of the last job a cancel was sent for."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent: Optional[weakref.ref[Job]] = None


class PyodbcAdapter(Adapter):
    name = "pyodbc"
    can_cancel = True
    #: SQLCancel before SQLExecDirect started is lost: repeat it while the call runs.
    reissue_cancel = 0.05
    #: pyodbc (without fast_executemany) executes one parameter set at a time.
    counts_executemany = True

    def prepare(self, channel: Channel) -> None:
        channel.hook = _State()

    def cancel(self, channel: Channel, raw_cursor: Any | None) -> None:
        # aborting thread, under the channel's cancel lock, while the job runs
        if raw_cursor is None:
            return  # a call with no statement handle of its own (fetch hop, commit)
        state = channel.hook
        if isinstance(state, _State) and channel.running is not None:
            state.sent = weakref.ref(channel.running)
        raw_cursor.cancel()

    def is_cancel_error(self, exc: BaseException) -> bool:
        mod = self.module
        error = getattr(mod, "Error", None)
        if not (isinstance(error, type) and isinstance(exc, error)) or not exc.args:
            return False
        sqlstate = str(exc.args[0])
        if sqlstate in CANCEL_STATES:
            return True
        message = str(exc.args[1]) if len(exc.args) > 1 else ""
        if sqlstate == "HY000":
            # SQLite ODBC: "interrupted (9)"; MariaDB may report 1317 as HY000
            low = message.lower()
            return "interrupted" in low or "(1317)" in message
        # the engine asks only while an abort is requested: a sequence error
        # then means the cancel closed the statement as it finished
        return sqlstate == SEQUENCE_ERROR

    def result_lost(self, channel: Channel, job: Job) -> bool:
        state = channel.hook
        if not isinstance(state, _State) or state.sent is None or state.sent() is not job:
            return False
        state.sent = None
        if job.kind not in _RESULT_CALLS or job.raw_cursor is None:
            return False
        try:
            return job.raw_cursor.description is not None
        except Exception:  # noqa: BLE001 - a cursor that cannot say has lost it
            return True

    def describe(self, raw: Any) -> str:
        return "pyodbc"
