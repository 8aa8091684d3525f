"""DuckDB: abort with ``interrupt()``; progress from ``query_progress()``.

A DuckDB "cursor" is a duplicate connection of its own (``Connection.cursor()``
returns a ``DuckDBPyConnection``), so both the cancel and the progress
estimate go to the cursor the call runs on, not to the connection that made
it.  ``interrupt()`` may be called from any thread; the executing thread then
gets ``duckdb.InterruptException`` ("INTERRUPT Error: Interrupted!").  An
interrupt sent while nothing runs is forgotten (it does not reach the next
statement), so one that lands before the query started is lost: the engine
re-issues it every :attr:`DuckDBAdapter.reissue_cancel` seconds while the call
runs.

Progress: ``query_progress()`` returns the percentage done, or -1 while
nothing is known; it only works with the ``enable_progress_bar`` setting on,
which is off by default in Python and is per connection (a cursor does not
inherit it, and it cannot be set globally).  Before the first asynchronous
``execute`` on a cursor the adapter turns it on for that cursor, with
``enable_progress_bar_print`` off so that nothing is printed.  Progress is
reported as ``progress`` of ``PROGRESS_MAX`` (tenths of a percent).

A late interrupt: DuckDB streams SELECT results, so ``execute()`` can return
while the query still runs (its remaining work happens during fetch).  An
interrupt that lands as ``execute()`` returns is kept by DuckDB and makes the
next fetch raise ``InterruptException``; :meth:`DuckDBAdapter.result_lost`
reports such an operation CANCELED.  DML and DDL (whose result is a complete
"Count") end COMPLETE.

State after an abort: an interrupted statement inside an explicit transaction
aborts the transaction ("Current transaction is aborted (please ROLLBACK)").
:meth:`DuckDBAdapter.after_abort` rolls it back so the connection is usable at
once; the work done earlier in that transaction is discarded.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any, Callable, Optional

from ..adapters import Adapter, CallView, ConnectionView

log = logging.getLogger("asynchdb")

#: ``progress_max`` of DuckDB's estimate: tenths of a percent.
PROGRESS_MAX = 1000
_PROGRESS_SETTINGS = ("SET enable_progress_bar = true", "SET enable_progress_bar_print = false")
_STATEMENT_CALLS = frozenset({"execute", "executemany"})


class _State:
    """Per-connection adapter state."""

    __slots__ = ("configured", "last_canceled", "sent")

    def __init__(self) -> None:
        #: Driver cursors (DuckDB connections) with progress tracking on.
        self.configured: weakref.WeakSet[Any] = weakref.WeakSet()
        #: The driver cursor the last cancel went to (after_abort repairs it).
        self.last_canceled: Optional[weakref.ref[Any]] = None
        #: The call the last cancel was sent for.
        self.sent: Optional[weakref.ref[CallView]] = None


class DuckDBAdapter(Adapter):
    name = "duckdb"
    can_cancel = True
    #: An interrupt that lands before the query started is forgotten.
    reissue_cancel = 0.05

    def __init__(self, module: Any | None) -> None:
        # a wrapped connection's class lives in the extension module _duckdb;
        # the DB-API names (exceptions, paramstyle) are on the duckdb package
        if module is None or getattr(module, "__name__", "") != "duckdb":
            module = sys.modules.get("duckdb", module)
        super().__init__(module)

    def prepare(self, conn: ConnectionView) -> None:
        # owner thread; progress tracking is turned on lazily, per cursor, so
        # that a wrapped connection's pending result is left alone
        conn.state = _State()

    def _track_progress(self, conn: ConnectionView, target: Any) -> None:
        # owner thread: turn DuckDB's progress tracking on for one connection
        state = conn.state
        if not isinstance(state, _State) or target is None:
            return
        try:
            if target in state.configured:
                return
            state.configured.add(target)
        except TypeError:  # not weak-referenceable: track nothing
            return
        for sql in _PROGRESS_SETTINGS:
            try:
                target.execute(sql)
            except Exception as exc:
                if self.is_cancel_error(exc):
                    # this job's abort interrupted the SET: end the job CANCELED now
                    # (inside a transaction the interrupt has aborted it already)
                    raise
                log.debug("asynchdb: DuckDB refused %r; no progress estimate", sql,
                          exc_info=True)
                return

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread, under the channel's cancel lock, while the call runs
        target = call.cursor if call.cursor is not None else conn.raw
        state = conn.state
        if isinstance(state, _State):
            state.sent = weakref.ref(call)
            try:
                state.last_canceled = weakref.ref(target)
            except TypeError:
                state.last_canceled = None
        target.interrupt()

    def result_lost(self, conn: ConnectionView, call: CallView) -> bool:
        # owner thread, after every call that returned normally.  DuckDB streams
        # a SELECT: execute() returns with the first rows and the rest of the
        # query runs during fetch, so an interrupt that lands as execute returns
        # stays pending and the next fetch raises InterruptException.  Such a
        # call ends CANCELED.  DML and DDL results (one "Count" column) are
        # complete when execute returns: they end COMPLETE.
        state = conn.state
        if not isinstance(state, _State) or state.sent is None or state.sent() is not call:
            return False
        state.sent = None
        cursor = call.cursor
        if call.kind not in _STATEMENT_CALLS or cursor is None:
            return False
        try:
            description = cursor.description
            streaming = cursor.rowcount == -1
        except Exception:  # noqa: BLE001 - a cursor that cannot say has lost it
            return True
        if description is None or not streaming:
            return False
        return not (len(description) == 1 and description[0][0] == "Count")

    def is_cancel_error(self, exc: BaseException) -> bool:
        cls = getattr(self.module, "InterruptException", None)
        return isinstance(cls, type) and isinstance(exc, cls)

    def after_abort(self, conn: ConnectionView) -> None:
        # owner thread: an interrupted statement aborts an explicit transaction
        state = conn.state
        target = None
        if isinstance(state, _State) and state.last_canceled is not None:
            target = state.last_canceled()
            state.last_canceled = None
        if target is None:
            target = conn.raw
        try:
            target.rollback()
        except Exception as exc:  # noqa: BLE001 - the driver's error, logged
            # "cannot rollback - no transaction is active": autocommit, nothing to do
            log.debug("asynchdb: DuckDB rollback after an abort: %r", exc)

    def progress_source(self, conn: ConnectionView,
                        call: CallView) -> Optional[Callable[[], Optional[tuple[int, int]]]]:
        # owner thread, just before the driver call
        cursor = call.cursor
        if call.kind not in _STATEMENT_CALLS or cursor is None:
            return None
        self._track_progress(conn, cursor)

        def estimate() -> Optional[tuple[int, int]]:
            # any thread, under the job's lock, while the call runs
            try:
                pct = float(cursor.query_progress())
            except Exception:  # noqa: BLE001 - an estimate is optional
                return None
            if not pct >= 0.0:  # -1: nothing known yet (or NaN)
                return None
            return min(int(pct * PROGRESS_MAX / 100.0), PROGRESS_MAX - 1), PROGRESS_MAX

        return estimate

    def describe(self, raw: Any) -> str:
        return "duckdb"
