"""apsw: abort through a progress handler bound to the running operation.

apsw is SQLite, so its ``Connection.interrupt()`` is ``sqlite3_interrupt``:
connection-wide, and it stops every statement pending on the connection, not
just the one an operation runs.  Instead the adapter installs a progress
handler (apsw keeps several, told apart by ``id``: ours is
:data:`HANDLER_ID`, so the user's own ``set_progress_handler`` neither
replaces it nor is replaced) that returns True only while *this* operation's
abort flag is set (or the connection is closing).  SQLite then stops the
running statement, and the executing thread gets ``apsw.InterruptError``.
The same handler counts virtual-machine steps for the status text (a count
with no known maximum).

Measured here (docs/drivers.md): ``interrupt()`` from another thread stops a
statement in 0.1 ms; ``close()`` from another thread while a statement runs
raises ``apsw.ThreadingViolationError`` at once (apsw refuses concurrent use of
a connection: safe, but asynchdb closes on the owner thread anyway); apsw
releases the GIL while SQLite runs.

After an abort: an interrupted read keeps the transaction; an interrupted
write inside a transaction rolls the transaction back (SQLite's rule).
Nothing to repair.  apsw is not a PEP 249 module (no ``connect``): open it
with ``asynchdb.connect(apsw.Connection, path)`` or ``asynchdb.wrap()``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..adapters import Adapter, CallView, ConnectionView

#: Virtual-machine instructions between two calls of the progress handler.
GRANULARITY = 1000
#: The ``id`` of asynchdb's progress handler among the connection's handlers.
HANDLER_ID = "asynchdb"


class _Hook:
    """The progress handler installed on every wrapped apsw connection."""

    __slots__ = ("conn", "ticks")

    def __init__(self, conn: ConnectionView) -> None:
        self.conn = conn
        self.ticks = 0

    def __call__(self) -> bool:
        # owner thread, inside sqlite3_step; must be quick and never raise
        self.ticks += 1
        conn = self.conn
        call = conn.running
        return bool((call is not None and call.abort_requested) or conn.closing)

    def text_for(self) -> Callable[[], Optional[str]]:
        start = self.ticks

        def text() -> Optional[str]:
            steps = (self.ticks - start) * GRANULARITY
            return f"apsw: about {steps} virtual-machine steps" if steps else None

        return text


class ApswAdapter(Adapter):
    name = "apsw"
    can_cancel = True
    #: apsw's ``executemany`` takes the parameter sets one at a time.
    counts_executemany = True
    #: the hook raises InterruptError mid-fetch: a clean stop, never a bogus row
    cancel_while_fetching = True
    #: the user's own ``interrupt()`` is SQLite's: connection-wide, any thread
    direct_extras = frozenset({"interrupt"})

    def prepare(self, conn: ConnectionView) -> None:
        # owner thread
        hook = _Hook(conn)
        conn.state = hook
        conn.raw.set_progress_handler(hook, GRANULARITY, id=HANDLER_ID)

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # Nothing to send: the hook sees the job's abort flag at its next call,
        # at most GRANULARITY instructions later.
        return None

    def is_cancel_error(self, exc: BaseException) -> bool:
        interrupted = getattr(self.module, "InterruptError", None)
        return isinstance(interrupted, type) and isinstance(exc, interrupted)

    def text_source(self, conn: ConnectionView,
                    call: CallView) -> Optional[Callable[[], Optional[str]]]:
        hook = conn.state
        return hook.text_for() if isinstance(hook, _Hook) else None

    def describe(self, raw: Any) -> str:
        return "apsw"
