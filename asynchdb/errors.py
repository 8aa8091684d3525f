"""asynchdb's own exceptions.

Driver errors are never wrapped: ``Operation.result()`` re-raises the very
object the driver raised (for a driver whose adapter sets ``keeps_errors``,
a copy of it: same class, arguments, attributes and traceback; see
:func:`_detached`).  The classes here cover only what the
asynchronous layer adds::

    AsynchError(Exception)
    ├── ZombieError                      object used while its operation is in INITIALIZATION
    ├── OperationCanceled(concurrent.futures.CancelledError)   the operation was aborted
    │   └── DeadlineExceeded(TimeoutError)                       aborted by its cancel_after=
    ├── AbortVetoed                      a listener vetoed abort()
    └── NotSupportedError(ValueError)    a requested asynch flag this wrapper cannot honour
"""

from __future__ import annotations

import concurrent.futures
import copy
from typing import Any

__all__ = [
    "AbortVetoed",
    "AsynchError",
    "DeadlineExceeded",
    "NotSupportedError",
    "OperationCanceled",
    "ZombieError",
]


class AsynchError(Exception):
    """Base class of every error asynchdb raises itself."""


class ZombieError(AsynchError):
    """A cursor was used while its operation is still in INITIALIZATION.

    Until the driver call behind an asynchronous ``execute`` (or
    ``executemany``, ``callproc``, ``nextset``) has returned, the cursor has no
    results to show.  Wait for the operation (``wait_for_completion`` or
    ``result``), or ``abort()`` it, or ``close()`` the cursor.
    """

    def __init__(self, operation: Any) -> None:
        super().__init__(
            f"the cursor is a zombie until its pending operation ends: {operation!r}"
        )
        self.operation = operation


class OperationCanceled(AsynchError, concurrent.futures.CancelledError):
    """The operation was aborted and the driver confirmed it (or it was abandoned).

    The driver's own error, when there was one (``sqlite3.OperationalError:
    interrupted``, ``psycopg.errors.QueryCanceled``...), is the ``__cause__``.
    It is a ``concurrent.futures.CancelledError``, so code written for plain
    futures keeps working.
    """


# Python 3.9 and 3.10 have a TimeoutError of concurrent.futures' own (3.11
# made it the builtin): a deadline is both there too
_FUTURES_TIMEOUT: tuple[type[Exception], ...] = (
    () if concurrent.futures.TimeoutError is TimeoutError
    else (concurrent.futures.TimeoutError,))


class DeadlineExceeded(OperationCanceled, TimeoutError, *_FUTURES_TIMEOUT):  # type: ignore[misc]
    """The operation was aborted because its ``cancel_after=`` deadline passed.

    Unlike the ``TimeoutError`` that ``Operation.result(timeout=...)`` raises
    when a *wait* runs out (the operation then keeps running), this one means
    the work itself was stopped.  It is a ``TimeoutError`` and a
    ``concurrent.futures.TimeoutError`` on every Python version.
    """


class AbortVetoed(AsynchError):
    """A listener returned ``False`` for the CANCELED notification of ``abort()``.

    The operation goes on and ends normally.
    """


class NotSupportedError(AsynchError, ValueError):
    """A requested ``asynch`` flag cannot be honoured by this wrapper.

    Raised before anything runs.  ``RANDOM_POPULATION`` always raises it:
    DB-API result sets are ordered streams.
    """


def _detached(error: BaseException) -> BaseException:
    """The error to hand the caller for a driver that keeps every error it raises.

    MariaDB Connector/Python 1.1 keeps one reference to each exception its C
    code raises, forever.  The traceback of the exception would then keep the
    frames it passed through, and their callers' frames, and everything those
    refer to (a released cursor that could then never abort its statement).
    The caller gets a copy instead (same class, arguments, attributes,
    cause, context and traceback), and the original keeps none of these.
    Returns ``error`` itself when it is not an ``Exception`` (a
    ``KeyboardInterrupt`` is not the driver's) or cannot be copied.  Any
    thread; call it from the ``except`` clause that caught ``error``.  Raised
    there, the copy's ``__context__`` becomes the emptied original (C-level
    driver errors have no context of their own to lose).
    """
    if not isinstance(error, Exception):
        return error
    try:
        twin = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied stays as it is
        return error
    if type(twin) is not type(error):
        return error
    tb = error.__traceback__
    # the catching frame's own entry comes back when the copy is raised there
    twin.__traceback__ = tb.tb_next if tb is not None else None
    twin.__cause__, twin.__context__ = error.__cause__, error.__context__
    twin.__suppress_context__ = error.__suppress_context__
    error.__traceback__ = error.__cause__ = error.__context__ = None
    return twin
