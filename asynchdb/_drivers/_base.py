"""The contract between the engine and one driver family.

An adapter tells the engine four things about a DB-API driver: how to open a
connection so that it can be used from asynchdb's worker threads, how to stop a
running statement (and from which thread that is safe), how to recognise the
error the driver raises when a statement was stopped that way, and what to do
with the connection afterwards.  Everything else (queueing, phases, listeners,
deadlines, the zombie guard) lives in the engine and is the same for every
driver.

Threads, for every hook below:

* ``connect``, ``prepare``, ``after_abort`` and ``close_*`` run on whichever
  thread owns the connection at that moment (a worker, or the caller of a
  synchronous call).  The engine guarantees that no other driver call on the
  same connection runs at the same time.
* ``cancel`` runs on the thread that called ``Operation.abort()`` (or on the
  timer thread for deadlines and re-issued cancels), *while* the worker is
  inside the driver call.  The engine holds the connection's cancel lock around
  it and only calls it while the operation being aborted is the one running, so
  a cancel never overlaps the start of the next statement or a close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .._channel import Channel
    from ..operation import Job


class Adapter:
    """Base adapter: the honest fallback for any DB-API driver.

    It has no cancel primitive, so an abort *abandons* the running call (see
    ``API.md`` section 5).  Subclasses override what their driver can do better.
    """

    #: Short name used in ``repr``, status text and docs.
    name = "generic"
    #: True when ``cancel`` really stops a running statement.
    can_cancel = False
    #: Seconds between re-issued cancels while an aborted statement still runs
    #: (``None``: the first cancel is enough).  Needed for drivers whose cancel
    #: is lost when it lands before the statement reached the server.
    reissue_cancel: float | None = None
    #: ``executemany`` consumes its parameter sets one by one, so a counting
    #: iterator measures honest progress.
    counts_executemany = False
    #: ``connection.cursor()`` makes no driver call that could overlap a running
    #: statement, so it need not wait for the connection's worker (sqlite3).
    cursor_anywhere = False

    def __init__(self, module: Any | None) -> None:
        self.module = module

    # -- opening ----------------------------------------------------------
    def connect(self, factory: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        """Open the driver connection (owner thread)."""
        return factory(*args, **kwargs)

    def prepare(self, channel: Channel) -> None:
        """Install hooks on a freshly opened or wrapped connection (owner thread)."""

    # -- aborting ---------------------------------------------------------
    def cancel(self, channel: Channel, raw_cursor: Any | None) -> None:
        """Ask the driver to stop the running statement (aborting thread)."""
        raise NotImplementedError

    def is_cancel_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is how the driver reports a statement stopped by ``cancel``."""
        return False

    def after_abort(self, channel: Channel) -> None:
        """Repair the connection after a statement was stopped (owner thread)."""

    def result_lost(self, channel: Channel, job: Job) -> bool:
        """Whether a cancel destroyed the result of a call that returned normally.

        Called on the owner thread after every call that returned without an
        error, once it left the driver (no further cancel can reach it).  True
        ends the operation CANCELED instead of COMPLETE: a cancel was sent and
        the result cannot be read (ODBC: a cancel that lands as the statement
        finishes closes its result set).  Must be quick: it runs on every call.
        """
        return False

    # -- closing ----------------------------------------------------------
    def close_cursor(self, raw_cursor: Any) -> None:
        """Close a driver cursor (owner thread)."""
        raw_cursor.close()

    def close_connection(self, raw: Any) -> None:
        """Close a driver connection (owner thread)."""
        raw.close()

    def text_source(self, channel: Channel) -> Callable[[], str | None] | None:
        """A callable giving status text while a driver call runs (owner thread sets it up)."""
        return None

    def progress_source(self, channel: Channel) -> Callable[[], tuple[int, int] | None] | None:
        """A callable giving the driver's own ``(progress, progress_max)`` estimate.

        Set up on the owner thread just before the driver call (``channel.running``
        is the job); called from any thread while the call runs, under the job's
        lock, so it must be quick.  It returns None while nothing is known.
        """
        return None

    #: The cancel primitive may be sent while the worker fetches rows for
    #: background population.  Off by default: SQLite ODBC answers a fetch it
    #: interrupted with a row of NULLs instead of an error.  The population
    #: loop checks the abort between batches either way.
    cancel_while_fetching = False
    #: Driver methods meant to be called from another thread while a statement
    #: runs (sqlite3's ``interrupt``): called directly, never queued.
    direct_extras: frozenset[str] = frozenset()

    def extra(self, channel: Channel, name: str) -> Any:
        """A replacement for the driver extra ``name``, or None to pass it through."""
        return None

    def describe(self, raw: Any) -> str:
        """A short description for ``repr``; never includes credentials."""
        return type(raw).__module__.split(".")[0]
