"""Listeners (OLE DB ``IDBAsynchNotify``) and how asynchdb calls them.

A listener is any object with some of these methods; missing ones are skipped::

    class Listener(Protocol):
        def on_progress(self, op: Operation, status: Status) -> bool | None: ...
        def on_stop(self, op: Operation, status: Status) -> None: ...
        def on_low_resource(self, op: Operation) -> None: ...

An OLE DB style sink (``OnProgress``, ``OnStop``, ``OnLowResource`` returning
HRESULTs) is accepted too, through ``Operation.Advise``.

Threads: notifications for one operation are delivered one at a time, in
order.  The start and the end of the work are reported from the thread that
runs the driver call (a worker, or your own thread for a synchronous call with
a listener); periodic progress while a driver call runs comes from the
``asynchdb-timer`` thread; the CANCELED notification comes from the thread
that called ``abort()`` (or the timer thread for a deadline).  A notification
caused from inside a callback is delivered after that callback returns, by the
same thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

from .status import Status

if TYPE_CHECKING:
    from ._operation import Operation

__all__ = ["Listener"]


class Listener(Protocol):
    """What asynchdb calls on a listener; implement any subset."""

    def on_progress(self, op: Operation[Any], status: Status) -> Optional[bool]:
        """Progress or a phase change; return ``False`` to veto an abort or request one."""

    def on_stop(self, op: Operation[Any], status: Status) -> None:
        """The operation ended; called exactly once, last."""

    def on_low_resource(self, op: Operation[Any]) -> None:
        """The population buffer is full and the worker is holding back."""
