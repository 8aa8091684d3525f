"""``Adapter.result_lost`` is asked only about a call whose abort was requested.

Only a cancel can destroy the result of a call that returned normally, and
the engine sends one only once the operation's abort flag is up; so the hook
is skipped on every other call (it and the call's view cost the worker's path
before the waiter wakes: benchmarks P2, P8).  The fake driver of
``asynchdb.testing``, with an adapter whose cancel reaches nothing, so that
an aborted call still returns normally and the hook decides.
"""

from __future__ import annotations

from typing import Any

from plugin import BOUND

import asynchdb
from asynchdb import Phase
from asynchdb import testing as fake


class Asked(fake.FakeAdapter):
    #: the kinds of the calls the hook was asked about, and its answer
    asked: list[str] = []
    answer = True

    def cancel(self, conn: Any, call: Any) -> None:
        pass  # the statement never hears of it: it returns normally

    def result_lost(self, conn: Any, call: Any) -> bool:
        Asked.asked.append(call.kind)
        return Asked.answer


class AskedConnection(fake.FakeConnection):
    __asynchdb_adapter__ = Asked


def test_not_asked_without_an_abort() -> None:
    Asked.asked = []
    raw = AskedConnection()
    conn = asynchdb.wrap(raw)
    try:
        cur = conn.cursor()
        op = cur.execute("block g1", asynch=True)
        assert raw.started("g1").wait(BOUND)
        raw.release("g1")
        assert op.result(BOUND) is cur
        cur.execute("select 1")  # the plain synchronous path
        assert Asked.asked == []
        assert op.get_status().phase is Phase.COMPLETE
    finally:
        conn.close()


def test_asked_after_an_abort_and_its_answer_decides() -> None:
    for answer, phase in ((True, Phase.CANCELED), (False, Phase.COMPLETE)):
        Asked.asked, Asked.answer = [], answer
        raw = AskedConnection()
        conn = asynchdb.wrap(raw)
        try:
            op = conn.cursor().execute("block g1", asynch=True)
            assert raw.started("g1").wait(BOUND)
            op.abort()
            assert not op.done()  # the cancel reached nothing: the call runs on
            raw.release("g1")
            assert op.wait_for_completion(BOUND)
            assert Asked.asked == ["execute"]
            assert op.get_status().phase is phase
        finally:
            conn.close()
