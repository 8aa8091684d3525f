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

import logging
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from . import oledb
from .status import Phase, Status

if TYPE_CHECKING:
    from .operation import Operation

__all__ = ["Listener"]

log = logging.getLogger("asynchdb")


class Listener(Protocol):
    """What asynchdb calls on a listener; implement any subset."""

    def on_progress(self, op: Operation[Any], status: Status) -> Optional[bool]:
        """Progress or a phase change; return ``False`` to veto an abort or request one."""

    def on_stop(self, op: Operation[Any], status: Status) -> None:
        """The operation ended; called exactly once, last."""

    def on_low_resource(self, op: Operation[Any]) -> None:
        """The population buffer is full and the worker is holding back."""


class Sink:
    """A listener adapted to one calling convention (internal)."""

    __slots__ = ("_low", "_progress", "_stop", "listener")

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self._progress = getattr(listener, "on_progress", None)
        self._stop = getattr(listener, "on_stop", None)
        self._low = getattr(listener, "on_low_resource", None)
        if self._progress is None and self._stop is None and self._low is None:
            raise TypeError(
                "a listener needs at least one of on_progress, on_stop, "
                f"on_low_resource; got {type(listener).__name__}"
            )
        _require_callable(listener, ("on_progress", self._progress), ("on_stop", self._stop),
                          ("on_low_resource", self._low))

    def progress(self, op: Operation[Any], status: Status) -> bool:
        """Call on_progress; True means 'go on', False means veto/abort."""
        if self._progress is None:
            return True
        return self._progress(op, status) is not False

    def stop(self, op: Operation[Any], status: Status) -> None:
        if self._stop is not None:
            self._stop(op, status)

    def low_resource(self, op: Operation[Any]) -> None:
        if self._low is not None:
            self._low(op)


class OleDbSink(Sink):
    """An ``IDBAsynchNotify`` sink: HRESULT returns, unwanted phases honoured."""

    __slots__ = ("_no_low", "_no_progress", "_unwanted")

    def __init__(self, sink: Any) -> None:
        self.listener = sink
        self._progress = getattr(sink, "OnProgress", None)
        self._stop = getattr(sink, "OnStop", None)
        self._low = getattr(sink, "OnLowResource", None)
        if self._progress is None and self._stop is None and self._low is None:
            raise TypeError(
                "an OLE DB sink needs OnProgress, OnStop or OnLowResource; "
                f"got {type(sink).__name__}"
            )
        _require_callable(sink, ("OnProgress", self._progress), ("OnStop", self._stop),
                          ("OnLowResource", self._low))
        self._unwanted: set[int] = set()
        self._no_progress = False
        self._no_low = False

    def progress(self, op: Operation[Any], status: Status) -> bool:
        if self._progress is None or self._no_progress:
            return True
        phase = int(status.phase)
        if phase in self._unwanted:
            return True
        hr = self._progress(oledb.DB_NULL_HCHAPTER, oledb.DBASYNCHOP_OPEN, status.progress,
                            status.progress_max, phase, status.status_text)
        if hr == oledb.S_FALSE:
            return False
        if hr in (oledb.E_NOTIMPL, oledb.DB_S_UNWANTEDOPERATION):
            self._no_progress = True
        elif hr == oledb.DB_S_UNWANTEDPHASE:
            self._unwanted.add(phase)
        return True

    def stop(self, op: Operation[Any], status: Status) -> None:
        if self._stop is None:
            return
        self._stop(oledb.DB_NULL_HCHAPTER, oledb.DBASYNCHOP_OPEN, hresult_of(status),
                   status.status_text)

    def low_resource(self, op: Operation[Any]) -> None:
        if self._low is None or self._no_low:
            return
        if self._low(0) == oledb.E_NOTIMPL:
            self._no_low = True


def _require_callable(obj: Any, *methods: tuple[str, Any]) -> None:
    """Refuse, before anything runs, a listener whose method is not callable."""
    for name, fn in methods:
        if fn is not None and not callable(fn):
            raise TypeError(f"{type(obj).__name__}.{name} must be callable, "
                            f"not {type(fn).__name__}")


def hresult_of(status: Status) -> int:
    """The HRESULT OLE DB would report for a status."""
    if status.phase == Phase.CANCELED:
        return oledb.DB_E_CANCELED
    if status.error is not None:
        return oledb.E_FAIL
    return oledb.S_OK


def make_sink(listener: Union[Listener, Sink, Any]) -> Sink:
    """Adapt a listener object; raise TypeError before anything runs if it is none."""
    if isinstance(listener, Sink):
        return listener
    return Sink(listener)
