"""An operation completes on the scale of the driver's last progress figures.

ClickHouse reports rows read of rows to read; when its call returns, the
operation's COMPLETE status keeps that total as ``progress_max`` (with
``progress == progress_max``) instead of falling back to 1 of 1.  The fake
driver of ``asynchdb.testing`` with a progress source that the test sets.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from plugin import BOUND

import asynchdb
from asynchdb import Phase
from asynchdb import testing as fake


class _Source:
    value: Optional[tuple[int, int]] = (3, 8)


class Estimating(fake.FakeAdapter):
    def progress_source(self, conn: Any,
                        call: Any) -> Optional[Callable[[], Optional[tuple[int, int]]]]:
        return lambda: _Source.value


class EstimatingConnection(fake.FakeConnection):
    __asynchdb_adapter__ = Estimating


def run_one(value: Optional[tuple[int, int]]) -> tuple[asynchdb.Status, asynchdb.Status]:
    _Source.value = value
    raw = EstimatingConnection()
    conn = asynchdb.wrap(raw)
    try:
        op = conn.cursor().execute("block g1", asynch=True)
        assert raw.started("g1").wait(BOUND)
        running = op.get_status()
        raw.release("g1")
        op.result(BOUND)
        return running, op.get_status()
    finally:
        conn.close()


def test_complete_keeps_the_drivers_total() -> None:
    running, final = run_one((3, 8))
    assert running.phase is Phase.INITIALIZATION
    assert (running.progress, running.progress_max) == (3, 8)
    assert final.phase is Phase.COMPLETE
    assert (final.progress, final.progress_max) == (8, 8)


def test_no_figures_complete_at_one_of_one() -> None:
    running, final = run_one(None)
    assert (running.progress, running.progress_max) == (0, 1)
    assert (final.progress, final.progress_max) == (1, 1)
