"""psycopg2: abort with ``connection.cancel()`` (libpq's ``PQcancel``).

``connection.cancel()`` is psycopg2's primitive meant to be called from
another thread while a statement runs: it does not take the connection's lock
(the executing thread holds it for the whole call), and calls libpq's
``PQcancel``, which opens a separate connection to the server, asks it to
cancel whatever the connection's backend runs, and returns once the server has
closed that request (the backend has been signalled by then).  psycopg2 keeps
the GIL during that round trip (its source has no ``Py_BEGIN_ALLOW_THREADS``
there): other Python threads pause for about a millisecond; the executing
thread is in libpq with the GIL released and is not held up.  The executing
thread gets ``psycopg2.errors.QueryCanceled`` (a
``psycopg2.extensions.QueryCanceledError``, SQLSTATE 57014).  Measured here
(docs/drivers.md): 1.7 ms median from the call to the executing thread
unblocking.

Hazards, measured, and how they are met:

* The cancel is connection-wide: the server cancels whatever the backend runs
  when the request arrives.  The engine calls :meth:`Psycopg2Adapter.cancel`
  only under the channel's cancel lock while the aborted job is the statement
  running, and starts the next statement only after ``cancel()`` returned, so
  it never reaches a later statement.
* A cancel that reaches the server before the query did is ignored by it: the
  engine re-issues it every :attr:`Psycopg2Adapter.reissue_cancel` seconds
  while the call runs.
* ``close()`` from another thread while a statement runs blocks until the
  statement ends (psycopg2 holds the connection's lock for the whole call):
  asynchdb aborts first and closes on the owner thread.

State after an abort: outside a transaction (``autocommit``) the connection is
ready.  Inside one (psycopg2's default) PostgreSQL fails the whole transaction
(``get_transaction_status()`` is ``TRANSACTION_STATUS_INERROR``; every later
statement raises ``InFailedSqlTransaction``).  :meth:`Psycopg2Adapter.after_abort`
rolls it back so the connection is usable at once; the earlier work of that
transaction is discarded (it could not have been committed anyway).
"""

from __future__ import annotations

import sys
from typing import Any

from ..adapters import Adapter, CallView, ConnectionView

#: ``psycopg2.extensions.TRANSACTION_STATUS_INERROR``.
_INERROR = 3


class Psycopg2Adapter(Adapter):
    name = "psycopg2"
    can_cancel = True
    #: A cancel request that reached the server before the query did is ignored.
    reissue_cancel = 0.05
    #: psycopg2's ``executemany`` takes the parameter sets one at a time from an iterator.
    counts_executemany = True
    #: ``connection.cursor()`` builds the cursor without talking to the server
    #: (psycopg2 2.9: 0 ms while another thread's ``pg_sleep(1)`` ran).
    cursor_anywhere = True
    #: its connect blocks in C: Ctrl-C abandons a main-thread connect at once
    connect_on_worker = True

    def __init__(self, module: Any | None) -> None:
        if module is None or getattr(module, "__name__", "") != "psycopg2":
            module = sys.modules.get("psycopg2", module)
        super().__init__(module)

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread, under the channel's cancel lock, while the call runs;
        # psycopg2 does not take the connection's lock here (it keeps the GIL)
        conn.raw.cancel()

    def is_cancel_error(self, exc: BaseException) -> bool:
        extensions = sys.modules.get("psycopg2.extensions")
        canceled = getattr(extensions, "QueryCanceledError", None)
        return isinstance(canceled, type) and isinstance(exc, canceled)

    def after_abort(self, conn: ConnectionView) -> None:
        # owner thread: a statement canceled inside a transaction fails the
        # whole transaction; roll it back so the connection can be used again
        raw = conn.raw
        if not raw.closed and raw.get_transaction_status() == _INERROR:
            raw.rollback()

    def describe(self, raw: Any) -> str:
        return "psycopg2"
