"""psycopg 3: abort with a PostgreSQL cancel request.

``Connection.cancel_safe()`` (psycopg 3.2+; ``cancel()`` before that) opens a
separate connection to the server and asks it to cancel whatever the
connection's backend is running; the executing thread then gets
``psycopg.errors.QueryCanceled`` (SQLSTATE 57014).

The cancel is connection-wide and asynchronous on the server: aimed at one
statement it can hit the next one.  The engine sends it only under the
channel's cancel lock while the aborted job is the statement running, and
starts the next statement only after the cancel call returned (the server
has signalled the backend by then, and a backend waiting for its next command
ignores a pending cancel), so it never reaches a later statement.  A cancel
that arrives before the query reached the server is ignored by it: the engine
re-issues it every :attr:`PsycopgAdapter.reissue_cancel` seconds while the
call runs.

State after an abort: outside a transaction (autocommit) the connection is
ready.  Inside a transaction PostgreSQL marks the whole transaction failed
(``transaction_status`` INERROR; every later statement fails with "current
transaction is aborted") until a rollback.  :meth:`PsycopgAdapter.after_abort`
rolls it back, so the connection is usable at once: the work done earlier in
that transaction is discarded (it could not have been committed anyway).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import Any

from ..adapters import Adapter, CallView, ConnectionView, Steps

#: Seconds ``cancel_safe`` may take to reach the server before giving up.
CANCEL_TIMEOUT = 5.0
#: ``pq.TransactionStatus.ACTIVE``: a command is in progress.
_ACTIVE = 1
#: ``pq.TransactionStatus.INERROR``.
_INERROR = 3


class PsycopgAdapter(Adapter):
    name = "psycopg"
    can_cancel = True
    #: executemany pipelines every parameter set (libpq 14+): run it in chunks
    chunks_executemany = True
    #: A cancel request that reached the server before the query did is ignored.
    reissue_cancel = 0.05
    #: ``Connection.cursor()`` only reads the connection's status (``PQstatus``)
    #: and builds the cursor object: no lock, no round trip (psycopg 3.3:
    #: 0 ms while another thread's ``pg_sleep(1)`` ran).
    cursor_anywhere = True

    def __init__(self, module: Any | None) -> None:
        if module is None or getattr(module, "__name__", "") != "psycopg":
            module = sys.modules.get("psycopg", module)
        super().__init__(module)

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread, under the channel's cancel lock, while the call runs
        raw = conn.raw
        cancel_safe = getattr(raw, "cancel_safe", None)
        if cancel_safe is not None:
            cancel_safe(timeout=CANCEL_TIMEOUT)
        else:  # psycopg < 3.2
            raw.cancel()

    def is_cancel_error(self, exc: BaseException) -> bool:
        mod = self.module
        errors = getattr(mod, "errors", None)
        canceled = getattr(errors, "QueryCanceled", None)
        return isinstance(canceled, type) and isinstance(exc, canceled)

    def after_abort(self, conn: ConnectionView) -> None:
        # owner thread: a canceled statement inside a transaction fails the
        # whole transaction; roll it back so the connection can be used again
        raw = conn.raw
        info = getattr(raw, "info", None)
        if info is None:
            return
        if int(info.transaction_status) == _ACTIVE:
            # Ctrl-C: the KeyboardInterrupt landed inside psycopg's own code
            # after the query was sent and before its results were read;
            # every later query would fail with "another command is already
            # in progress".  Stop the query and read its results to the end.
            self._drain(raw)
        if int(info.transaction_status) == _INERROR:
            raw.rollback()

    def execute_steps(self, conn: ConnectionView, cursor: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> tuple[int, Steps] | None:
        # owner thread (an event loop's).  psycopg's own Cursor.execute is
        # this generator driven by a blocking wait under the connection's
        # lock (psycopg 3.1-3.3): the same generator, the same lock, driven
        # by the loop instead.  Only for the plain client cursor class and
        # its subclasses that keep its execute (ClientCursor, RawCursor); a
        # server-side cursor's execute is another generator.
        base = getattr(self.module, "Cursor", None)
        raw = conn.raw
        if (base is None or getattr(type(cursor), "execute", None) is not base.execute
                or getattr(raw, "_pipeline", None) is not None):
            return None
        make = getattr(cursor, "_execute_gen", None)
        lock = getattr(raw, "lock", None)
        pgconn = getattr(raw, "pgconn", None)
        if make is None or lock is None or pgconn is None or cursor.connection is not raw:
            return None
        try:
            gen = make(*args, **kwargs)
            fileno = pgconn.socket
        except Exception:  # noqa: BLE001 - the worker's call raises the driver's own error
            return None
        return fileno, _locked(gen, lock, getattr(self.module.errors, "_NO_TRACEBACK", ()))

    def chunked_executemany(self, conn: ConnectionView, cursor: Any, operation: Any,
                            chunks: Iterable[list[Any]], kwargs: dict[str, Any]) -> bool:
        # owner thread.  The whole sequence's semantics, kept:
        # * returning=True keeps every set's result (nextset): not chunked;
        # * in a transaction the chunks run in it, as the one call would;
        # * in autocommit, a pipelined executemany is one implicit transaction
        #   (one Sync): the chunks run inside conn.transaction() to keep that
        #   all-or-nothing; without pipeline support each set commits alone
        #   either way;
        # * rowcount is the sum over the sets, as psycopg's own.
        if kwargs.get("returning") or set(kwargs) - {"returning"}:
            return False
        raw = conn.raw
        atomic = bool(getattr(raw, "autocommit", False)) and _pipelined(self.module)
        block = raw.transaction() if atomic else contextlib.nullcontext()
        total = 0
        with block:
            for chunk in chunks:
                cursor.executemany(operation, chunk)
                if cursor.rowcount > 0:
                    total += cursor.rowcount
        if hasattr(cursor, "_rowcount"):
            cursor._rowcount = total  # psycopg's own slot behind rowcount
        return True

    def _drain(self, raw: Any) -> None:
        # owner thread
        try:
            cancel_safe = getattr(raw, "cancel_safe", None)
            if cancel_safe is not None:
                cancel_safe(timeout=CANCEL_TIMEOUT)
            else:  # psycopg < 3.2
                raw.cancel()
        except Exception:  # noqa: BLE001 - reading the results ends it anyway
            pass
        pgconn = raw.pgconn
        while pgconn.get_result() is not None:
            pass

    def describe(self, raw: Any) -> str:
        return "psycopg"


def _locked(gen: Any, lock: Any, no_traceback: Any) -> Steps:
    """``gen`` under psycopg's connection lock, taken at the first step (any thread)."""
    with lock:
        try:
            return (yield from gen)
        except no_traceback as ex:
            # as Cursor.execute raises them: psycopg's errors without its frames
            raise ex.with_traceback(None)  # noqa: B904 - as psycopg raises it


def _pipelined(module: Any) -> bool:
    pipeline = getattr(module, "Pipeline", None)
    return bool(pipeline is not None and pipeline.is_supported())
