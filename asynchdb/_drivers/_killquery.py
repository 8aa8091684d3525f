"""MariaDB / MySQL (and psqlODBC): stop one connection's statement from a twin.

Shared by every adapter whose server is MariaDB or MySQL (pyodbc with
Connector/ODBC, PyMySQL, mysqlclient, MariaDB Connector/Python).  None of
these drivers can stop a running statement from another thread on its own
(Connector/ODBC's ``SQLCancel`` can, but it is not memory-safe: see
``_pyodbc.py``).  The server can: ``KILL QUERY <id>``, sent on a second
connection (the *twin*) opened with the same connect arguments, stops the
statement that connection ``<id>`` runs, and its client gets error 1317
"Query execution was interrupted".

Invariant: a KILL never reaches a later statement.  Measured on MariaDB 10.11
(docs/drivers.md):

* the server resets a connection's kill flag when it starts each command, so a
  ``KILL QUERY`` that arrives while the connection is idle is forgotten (a
  KILL sent to an idle connection, then a 3-million-row count on it: the count
  ran to its end, on all three Python drivers);
* ``KILL QUERY`` returns only once the server has flagged the target, so when
  the twin's ``execute`` returned, nothing of it is still in flight;
* the engine calls ``Adapter.cancel`` under the channel's cancel lock, only
  while the aborted call is the one running, and starts the next statement
  only after ``cancel`` returned.

So the kill lands on the aborted statement, or on an idle connection (and is
forgotten), never on the statement after it.  Without that binding, a KILL
aimed at one short statement killed the one queued right behind it in 43-55 of
150 trials per driver.  A KILL that arrives before the server started the
statement is forgotten too: adapters set ``reissue_cancel`` so that the engine
repeats it while the call runs.

PostgreSQL through psqlODBC uses the same twin with
:data:`PG_CANCEL` (``pg_cancel_backend(<pid>)``): psqlODBC's own ``SQLCancel``
from another thread crashed the process once in about 400,000 stress
operations (``_pyodbc.py``).  The server keeps the same promise there: a
cancel signal that reaches a backend while it waits for its next command is
dropped (PostgreSQL ignores a query cancel while it reads a command), and the
function returns once the signal was sent, under the channel's cancel lock.

Threads: :meth:`KillQuery.send` runs on the aborting thread (the engine
serialises cancels, so never two at once); :meth:`KillQuery.close` on the
connection's owner thread, when no cancel can be under way.  The twin is
opened at the first abort (one connect, 0.4-90 ms here; later aborts cost one
round trip) and is never used for anything but ``KILL QUERY``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

log = logging.getLogger("asynchdb")

#: MariaDB/MySQL: stop the statement connection ``{}`` runs.
KILL_QUERY = "KILL QUERY {}"
#: PostgreSQL: cancel the statement backend ``{}`` runs (sent by a twin, as KILL QUERY is).
PG_CANCEL = "SELECT pg_cancel_backend({})"

#: MySQL/MariaDB error: the statement was stopped by KILL QUERY.
ER_QUERY_INTERRUPTED = 1317


class KillQuery:
    """A twin connection that sends ``KILL QUERY <thread id>`` (see the module docstring).

    ``opener`` opens the twin: the driver's connect with the aborted
    connection's own arguments.  It is called at the first :meth:`send`, and
    again once if the twin broke.
    """

    __slots__ = ("_opener", "_sql", "_twin")

    def __init__(self, opener: Callable[[], Any], sql: str = KILL_QUERY) -> None:
        self._opener = opener
        #: The statement, with ``{}`` for the target's id.
        self._sql = sql
        self._twin: Any = None

    def send(self, thread_id: int) -> None:
        """Kill the statement connection ``thread_id`` runs (aborting thread).

        Returns once the server has flagged it.  Raises the driver's error
        when the twin cannot be opened or the KILL is refused twice.
        """
        sql = self._sql.format(int(thread_id))
        for attempt in (1, 2):
            if self._twin is None:
                self._twin = self._opener()
            try:
                cur = self._twin.cursor()
                try:
                    cur.execute(sql)
                finally:
                    cur.close()
                return
            except Exception:  # a broken twin (server restart, timeout): a new one, once
                twin, self._twin = self._twin, None
                try:
                    twin.close()
                except Exception:  # noqa: BLE001 - it is broken already
                    pass
                if attempt == 2:
                    raise

    def close(self) -> None:
        """Close the twin, if it was opened (owner thread, no cancel under way)."""
        twin, self._twin = self._twin, None
        if twin is not None:
            try:
                twin.close()
            except Exception:
                log.debug("asynchdb: closing the KILL QUERY connection failed", exc_info=True)


def error_code(exc: BaseException) -> Optional[int]:
    """The MySQL error number of a driver exception, or None.

    PyMySQL and mysqlclient put it first in ``args``; MariaDB Connector/Python
    in ``errno``.
    """
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int):
        return errno
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None
