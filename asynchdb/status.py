"""Phases, status snapshots and the ``asynch=`` flags (OLE DB values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

__all__ = ["Asynch", "Phase", "Status"]


class Phase(enum.IntEnum):
    """Where an operation is, with OLE DB's ``DBASYNCHPHASE_*`` values."""

    #: Queued, or the worker is inside the driver call; the cursor is a zombie.
    INITIALIZATION = 0
    #: The driver call returned; rows are still arriving; the cursor is usable.
    POPULATION = 1
    #: Ended, successfully or with the driver's error (OLE DB reports failures
    #: as COMPLETE with the error).
    COMPLETE = 2
    #: Aborted (by ``abort()``, a deadline, a listener, close or release).
    CANCELED = 3


@dataclass(frozen=True)
class Status:
    """A snapshot of an operation, as ``Operation.get_status()`` returns it.

    ``0 <= progress <= progress_max``; at COMPLETE ``progress == progress_max``.
    Where nothing is known the operation reports 0 of 1 until it ends; counts
    with no known maximum go into ``status_text``.
    """

    phase: Phase
    progress: int
    progress_max: int
    status_text: Optional[str] = None
    #: The failure, or an ``OperationCanceled`` when aborted; ``None`` otherwise.
    error: Optional[BaseException] = None

    @property
    def done(self) -> bool:
        """Whether the phase is COMPLETE or CANCELED."""
        return self.phase >= Phase.COMPLETE


class Asynch(enum.IntFlag):
    """What to do asynchronously, with OLE DB's ``DBPROPVAL_ASYNCH_*`` values."""

    #: The driver call runs on the worker; the operation completes when it returns.
    INITIALIZE = 0x01
    #: After the call, the worker keeps fetching rows into a bounded buffer.
    SEQUENTIAL_POPULATION = 0x02
    #: Not supported: DB-API result sets are ordered streams.
    RANDOM_POPULATION = 0x04
    #: Same as SEQUENTIAL_POPULATION.
    BACKGROUND_POPULATION = 0x08
    #: The operation completes only once every row is fetched.
    PREPOPULATE = 0x10
    #: The same as INITIALIZE alone.
    POPULATE_ON_DEMAND = 0x20
