"""Listeners (docs/usage.md) and the OLE DB names (docs/oledb.md) on the fake driver.

The listener tests port the applicable variations of Microsoft's IDBAsynch
conformance test (its rules: docs/population.md): notification counts per listener,
several listeners, exactly one ``on_stop`` and always last, exactly one COMPLETE
notification on success with ``progress == progress_max``, one CANCELED
notification per abort request, vetoes, ``False`` in other phases, failing
listeners, late enlistment, cookies, re-entrant calls and delivery one at a time.

Statements block on the fake's gates; every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional

import plugin
import pytest

import asynchdb
from asynchdb import AbortVetoed, OperationCanceled, Phase, Status, oledb
from asynchdb import testing as fake

#: Seconds any single wait may take before the test fails.
WAIT = 5.0

Answer = Callable[["asynchdb.Operation[Any]", Status], Optional[bool]]


class Monitor:
    """Detects two notifications of one operation delivered at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.overlaps = 0
        self.order: list[tuple[str, str, Optional[Phase]]] = []  # (listener, kind, phase)

    def enter(self, who: str, kind: str, phase: Optional[Phase]) -> None:
        with self._lock:
            if self.active:
                self.overlaps += 1
            self.active += 1
            self.order.append((who, kind, phase))

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


class Recorder(plugin.Recorder):
    """The shared recording listener, named, reporting each delivery to a Monitor.

    ``answer`` decides on_progress's return.
    """

    def __init__(self, answer: Optional[Answer] = None, name: str = "rec",
                 monitor: Optional[Monitor] = None) -> None:
        super().__init__(answer)
        self.name = name
        self.monitor = monitor

    def _enter(self, kind: str, status: Optional[Status]) -> None:
        if self.monitor is not None:
            self.monitor.enter(self.name, kind, None if status is None else status.phase)

    def _leave(self) -> None:
        if self.monitor is not None:
            self.monitor.leave()

    def on_progress(self, op: asynchdb.Operation[Any], status: Status) -> Optional[bool]:
        self._enter("progress", status)
        try:
            answer: Optional[bool] = super().on_progress(op, status)
            return answer
        finally:
            self._leave()

    def on_stop(self, op: asynchdb.Operation[Any], status: Status) -> None:
        self._enter("stop", status)
        self._record("stop", status)
        self._leave()
        self.stopped.set()

    def on_low_resource(self, op: asynchdb.Operation[Any]) -> None:
        self._enter("low", None)
        super().on_low_resource(op)
        self._leave()

    # -- reading ------------------------------------------------------------
    def wait_stop(self) -> None:
        assert self.stopped.wait(WAIT), f"{self.name}: no on_stop"

    def after_start(self) -> list[tuple[str, Optional[Phase]]]:
        """kinds() without the INITIALIZATION progress heard while the call ran.

        A listener advised during the call may hear a periodic one if the test
        thread is slow: how many is a matter of timing.
        """
        kinds = self.kinds()
        while kinds and kinds[0] == ("progress", Phase.INITIALIZATION):
            kinds.pop(0)
        return kinds

    def stop_status(self) -> Status:
        (st,) = self.stops
        return st


def check_conformance(rec: Recorder, op: asynchdb.Operation[Any]) -> None:
    """What Microsoft's test checks for every listener of an operation that ran asynchronously."""
    assert rec.count("stop") == 1, rec.kinds()
    assert rec.events[-1][0] == "stop", rec.kinds()
    final = op.get_status()
    stop = rec.stop_status()
    assert stop.phase == final.phase
    assert stop.error is final.error
    for kind, st in rec.events:
        if kind == "progress":
            assert st is not None
            phase = st.phase
            assert 0 <= st.progress <= st.progress_max
            assert phase is not Phase.POPULATION  # INITIALIZE alone: never POPULATION
            if phase is Phase.COMPLETE:
                assert st.progress == st.progress_max
    if final.phase is Phase.COMPLETE and final.error is None:
        assert rec.count("progress", Phase.COMPLETE) == 1, rec.kinds()
        # COMPLETE immediately before on_stop
        assert rec.kinds()[-2] == ("progress", Phase.COMPLETE), rec.kinds()
    if final.phase is Phase.CANCELED:
        assert rec.count("progress", Phase.COMPLETE) == 0, rec.kinds()
        assert rec.count("progress", Phase.CANCELED) >= 1, rec.kinds()
    assert rec.count("low") == 0


class Env:
    def __init__(self, can_cancel: bool = True) -> None:
        self.conn = asynchdb.connect(fake, can_cancel=can_cancel)
        self.raw: Any = self.conn.driver_connection

    def cursors(self, n: int) -> list[asynchdb.Cursor]:
        return [self.conn.cursor() for _ in range(n)]

    def started(self, name: str) -> None:
        assert self.raw.started(name).wait(WAIT), f"statement {name!r} never started"

    def shutdown(self) -> None:
        for name in list(self.raw._started):
            self.raw.release(name)
        self.conn.close()


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.shutdown()


def veto_cancel(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
    return False if st.phase is Phase.CANCELED else None


# ---------------------------------------------------------------------------
# counts and order
# ---------------------------------------------------------------------------
def test_success_notifies_initialization_then_one_complete_then_one_stop(env: Env) -> None:
    (cur,) = env.cursors(1)
    first = Recorder(name="first")
    op = cur.execute("block g1", asynch=True, listener=first)
    env.started("g1")
    during = Recorder(name="during")
    op.advise(during)
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    first.wait_stop()
    during.wait_stop()
    check_conformance(first, op)
    check_conformance(during, op)
    # advised before the work started: at least one INITIALIZATION notification
    assert first.kinds()[0] == ("progress", Phase.INITIALIZATION)
    assert first.count("progress", Phase.CANCELED) == 0
    assert during.after_start() == [("progress", Phase.COMPLETE), ("stop", Phase.COMPLETE)]
    stop = first.stop_status()
    assert stop.error is None
    assert stop.progress == stop.progress_max


def test_several_listeners_get_the_same_notifications(env: Env) -> None:
    a, b = env.cursors(2)
    blocker = a.execute("block g0", asynch=True)
    env.started("g0")
    recs = [Recorder(name=f"r{i}") for i in range(3)]
    op = b.execute("block g1", asynch=True, listener=recs[0])
    op.advise(recs[1])
    op.advise(recs[2])  # all advised while queued: all see the start
    env.raw.release("g0")
    env.started("g1")
    env.raw.release("g1")
    for r in recs:
        r.wait_stop()
    for r in recs:
        check_conformance(r, op)
    assert recs[0].kinds() == recs[1].kinds() == recs[2].kinds()
    assert recs[0].kinds()[0] == ("progress", Phase.INITIALIZATION)
    assert blocker.get_status().phase is Phase.COMPLETE


def test_a_listener_advised_twice_hears_everything_twice(env: Env) -> None:
    (cur,) = env.cursors(1)
    rec = Recorder()
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    c1, c2 = op.advise(rec), op.advise(rec)
    assert c1 != c2
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    rec.wait_stop()
    # the second on_stop may still be on its way: a late listener is a barrier
    barrier = Recorder()
    op.advise(barrier)
    barrier.wait_stop()
    assert rec.after_start() == [("progress", Phase.COMPLETE), ("progress", Phase.COMPLETE),
                                 ("stop", Phase.COMPLETE), ("stop", Phase.COMPLETE)]


def test_failure_gives_one_stop_with_the_driver_error(env: Env) -> None:
    (cur,) = env.cursors(1)
    rec = Recorder()
    op = cur.execute("fail", asynch=True, listener=rec)
    assert op.wait_for_completion(WAIT)
    rec.wait_stop()
    check_conformance(rec, op)
    stop = rec.stop_status()
    assert stop.phase is Phase.COMPLETE
    assert isinstance(stop.error, fake.ProgrammingError)
    assert stop.error is op.exception(0)
    assert rec.count("progress", Phase.CANCELED) == 0
    assert rec.count("progress", Phase.COMPLETE) <= 1


def test_abort_gives_one_canceled_notification_per_request(env: Env) -> None:
    (cur,) = env.cursors(1)
    rec = Recorder()
    op = cur.execute("block g1", asynch=True, listener=rec)
    env.started("g1")
    op.abort()
    op.abort()  # a second request is a no-op: no second notification
    assert op.wait_for_completion(WAIT)
    op.abort()
    rec.wait_stop()
    check_conformance(rec, op)
    assert rec.count("progress", Phase.CANCELED) == 1
    canceled = next(s for s in rec.progress if s.phase is Phase.CANCELED)
    assert canceled is not None
    assert isinstance(canceled.error, OperationCanceled)
    stop = rec.stop_status()
    assert stop.phase is Phase.CANCELED
    assert stop.error is op.exception(0)
    # CANCELED then on_stop, nothing else after the request
    assert rec.kinds()[-2:] == [("progress", Phase.CANCELED), ("stop", Phase.CANCELED)]


def test_abort_of_a_queued_operation_notifies_canceled_then_stop(env: Env) -> None:
    a, b = env.cursors(2)
    blocker = a.execute("block g0", asynch=True)
    env.started("g0")
    rec = Recorder()
    op = b.execute("q1", asynch=True, listener=rec)
    op.abort()
    rec.wait_stop()
    check_conformance(rec, op)
    assert rec.kinds() == [("progress", Phase.CANCELED), ("stop", Phase.CANCELED)]
    env.raw.release("g0")
    assert blocker.wait_for_completion(WAIT)
    assert env.raw.log == [("block g0", "ok")]


def test_each_abort_request_after_a_veto_is_notified_again(env: Env) -> None:
    (cur,) = env.cursors(1)
    vetoes = [True]

    def answer(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.CANCELED and vetoes:
            vetoes.pop()
            return False
        return None

    rec = Recorder(answer)
    op = cur.execute("block g1", asynch=True, listener=rec)
    env.started("g1")
    with pytest.raises(AbortVetoed):
        op.abort()
    assert not op.done()
    op.abort()  # accepted this time
    assert op.wait_for_completion(WAIT)
    rec.wait_stop()
    check_conformance(rec, op)
    assert rec.count("progress", Phase.CANCELED) == 2
    assert op.get_status().phase is Phase.CANCELED


# ---------------------------------------------------------------------------
# veto and False
# ---------------------------------------------------------------------------
def test_veto_raises_abort_vetoed_and_the_work_ends_normally(env: Env) -> None:
    (cur,) = env.cursors(1)
    vetoer = Recorder(veto_cancel, name="vetoer")
    other = Recorder(name="other")
    op = cur.execute("block g1", asynch=True, listener=vetoer)
    op.advise(other)
    env.started("g1")
    with pytest.raises(AbortVetoed):
        op.abort()
    # the operation continues, untouched
    assert not op.done()
    st = op.get_status()
    assert st.phase is Phase.INITIALIZATION
    assert st.error is None
    assert env.raw.lost_cancels == 0
    env.raw.release("g1")
    assert op.result(WAIT) is cur
    vetoer.wait_stop()
    other.wait_stop()
    for r in (vetoer, other):
        check_conformance(r, op)
        # every listener heard the CANCELED request, then the normal end
        assert r.count("progress", Phase.CANCELED) == 1
        assert r.kinds()[-3:] == [("progress", Phase.CANCELED), ("progress", Phase.COMPLETE),
                                  ("stop", Phase.COMPLETE)]
    assert env.raw.log == [("block g1", "ok")]


def test_veto_of_a_queued_operation_keeps_it_queued(env: Env) -> None:
    a, b = env.cursors(2)
    a.execute("block g0", asynch=True)
    env.started("g0")
    rec = Recorder(veto_cancel)
    op = b.execute("q1", asynch=True, listener=rec)
    with pytest.raises(AbortVetoed):
        op.abort()
    assert not op.done()
    env.raw.release("g0")
    assert op.result(WAIT) is b
    assert env.raw.log == [("block g0", "ok"), ("q1", "ok")]


def test_veto_of_a_deadline_lets_the_work_continue(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="asynchdb")
    (cur,) = env.cursors(1)
    heard = threading.Event()

    def answer(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.CANCELED:
            heard.set()
            return False
        return None

    rec = Recorder(answer)
    op = cur.execute("block g1", asynch=True, cancel_after=0.05, listener=rec)
    env.started("g1")
    assert heard.wait(WAIT)
    assert not op.done()
    env.raw.release("g1")
    assert op.result(WAIT) is cur
    rec.wait_stop()
    check_conformance(rec, op)

    def logged() -> bool:
        return any("veto" in r.getMessage() for r in caplog.records if r.name == "asynchdb")

    # the timer thread logs the veto once abort() returned there: poll, bounded
    for _ in range(int(WAIT * 100)):
        if logged():
            break
        threading.Event().wait(0.01)
    assert logged()


@pytest.mark.parametrize("how", ["cursor.close", "connection.close"])
def test_closing_cannot_be_vetoed(env: Env, how: str) -> None:
    (cur,) = env.cursors(1)
    rec = Recorder(veto_cancel)
    op = cur.execute("block g1", asynch=True, listener=rec)
    env.started("g1")
    if how == "cursor.close":
        cur.close()
    else:
        env.conn.close()
    assert op.wait_for_completion(WAIT)
    assert op.get_status().phase is Phase.CANCELED
    rec.wait_stop()
    check_conformance(rec, op)
    assert rec.count("progress", Phase.CANCELED) == 1


def test_false_in_initialization_requests_an_abort(env: Env) -> None:
    (cur,) = env.cursors(1)

    def answer(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        return False if st.phase is Phase.INITIALIZATION else None

    rec = Recorder(answer)
    op = cur.execute("block g1", asynch=True, listener=rec)
    assert op.wait_for_completion(WAIT)
    rec.wait_stop()
    check_conformance(rec, op)
    assert op.get_status().phase is Phase.CANCELED
    assert rec.count("progress", Phase.CANCELED) == 1
    # asked at the first notification, before the driver started the statement
    assert env.raw.log == []


def test_false_in_initialization_can_be_vetoed_by_another_listener(env: Env) -> None:
    asked = [False]

    def ask(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.INITIALIZATION and not asked[0]:
            asked[0] = True
            return False
        return None

    asker, vetoer = Recorder(ask, name="asker"), Recorder(veto_cancel, name="vetoer")
    a, b = env.cursors(2)
    a.execute("block g0", asynch=True)
    env.started("g0")
    op = b.execute("rows 1", asynch=True, listener=asker)
    op.advise(vetoer)
    env.raw.release("g0")
    assert op.result(WAIT) is b
    asker.wait_stop()
    vetoer.wait_stop()
    for r in (asker, vetoer):
        check_conformance(r, op)
        assert r.count("progress", Phase.CANCELED) == 1
    assert op.get_status().phase is Phase.COMPLETE
    assert ("rows 1", "ok") in env.raw.log


def test_false_with_complete_changes_nothing(env: Env) -> None:
    (cur,) = env.cursors(1)

    def answer(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        return False if st.phase is Phase.COMPLETE else None

    rec = Recorder(answer)
    op = cur.execute("rows 2", asynch=True, listener=rec)
    assert op.result(WAIT) is cur
    rec.wait_stop()
    check_conformance(rec, op)
    assert op.get_status().phase is Phase.COMPLETE
    assert rec.count("progress", Phase.CANCELED) == 0
    assert cur.fetchall() == [(0,), (1,)]


# ---------------------------------------------------------------------------
# failing listeners
# ---------------------------------------------------------------------------
class Boom(Exception):
    pass


def test_a_raising_listener_is_logged_and_keeps_receiving(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asynchdb")
    (cur,) = env.cursors(1)

    def explode(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        raise Boom(st.phase.name)

    class Raising(Recorder):
        def on_stop(self, op: asynchdb.Operation[Any], status: Status) -> None:
            super().on_stop(op, status)
            raise Boom("stop")

    bad = Raising(explode, name="bad")
    good = Recorder(name="good")
    op = cur.execute("block g1", asynch=True, listener=bad)
    op.advise(good)
    env.started("g1")
    env.raw.release("g1")
    assert op.result(WAIT) is cur
    bad.wait_stop()
    good.wait_stop()
    check_conformance(bad, op)
    check_conformance(good, op)
    assert bad.count("progress", Phase.INITIALIZATION) >= 1
    raised = [r for r in caplog.records
              if r.name == "asynchdb" and r.exc_info and isinstance(r.exc_info[1], Boom)]
    assert len(raised) == bad.count("progress") + bad.count("stop")
    assert all(r.levelno >= logging.ERROR for r in raised)


def test_a_listener_raising_on_canceled_does_not_veto(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asynchdb")
    (cur,) = env.cursors(1)

    def explode(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.CANCELED:
            raise Boom("canceled")
        return None

    rec = Recorder(explode)
    op = cur.execute("block g1", asynch=True, listener=rec)
    env.started("g1")
    op.abort()
    assert op.wait_for_completion(WAIT)
    assert op.get_status().phase is Phase.CANCELED
    rec.wait_stop()
    check_conformance(rec, op)
    assert any(r.exc_info and isinstance(r.exc_info[1], Boom) for r in caplog.records)


# ---------------------------------------------------------------------------
# late enlistment
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["complete", "canceled", "failed"])
def test_late_advise_gets_the_final_phase_then_stop(env: Env, ending: str) -> None:
    (cur,) = env.cursors(1)
    early = Recorder(name="early")
    op = cur.execute("fail" if ending == "failed" else "block g1", asynch=True, listener=early)
    if ending != "failed":
        env.started("g1")
        if ending == "canceled":
            op.abort()
        else:
            env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    early.wait_stop()
    before = list(early.events)
    late = Recorder(name="late")
    cookie = op.advise(late)
    assert cookie > 0
    late.wait_stop()
    final = op.get_status()
    assert late.kinds() == [("progress", final.phase), ("stop", final.phase)]
    assert late.events[0][1] == final
    assert late.stop_status() == final
    assert early.events == before  # others get nothing new
    check_conformance(early, op)


def test_late_advise_while_the_end_is_being_delivered_gets_one_stop(env: Env) -> None:
    """Advised after the operation ended but before its on_stop went out to the others."""
    (cur,) = env.cursors(1)
    inside, go = threading.Event(), threading.Event()

    def hold(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.COMPLETE:
            inside.set()
            assert go.wait(WAIT)
        return None

    early = Recorder(hold, name="early")
    op = cur.execute("block g1", asynch=True, listener=early)
    env.started("g1")
    env.raw.release("g1")
    assert inside.wait(WAIT)  # the worker is delivering COMPLETE to `early`
    assert op.done()
    late = Recorder(name="late")
    op.advise(late)
    go.set()
    early.wait_stop()
    late.wait_stop()
    barrier = Recorder(name="barrier")
    op.advise(barrier)  # delivered after everything queued before it
    barrier.wait_stop()
    assert late.kinds() == [("progress", Phase.COMPLETE), ("stop", Phase.COMPLETE)]
    check_conformance(early, op)


# ---------------------------------------------------------------------------
# cookies
# ---------------------------------------------------------------------------
def test_cookies_are_positive_and_unique_and_unknown_ones_raise_key_error(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    recs = [Recorder(name=f"r{i}") for i in range(5)]
    cookies = [op.advise(r) for r in recs]
    assert all(isinstance(c, int) and c > 0 for c in cookies)
    assert len(set(cookies)) == 5
    op.unadvise(cookies[1])
    op.unadvise(cookies[3])
    with pytest.raises(KeyError):
        op.unadvise(cookies[1])  # twice
    more = [op.advise(Recorder(name=f"m{i}")) for i in range(3)]
    assert len(set(cookies + more)) == 8  # never reused
    for bad in (0, -1, max(cookies + more) + 1, 10**9):
        with pytest.raises(KeyError):
            op.unadvise(bad)
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    for i in (0, 2, 4):
        recs[i].wait_stop()
    barrier = Recorder()
    op.advise(barrier)
    barrier.wait_stop()
    # unadvised listeners hear nothing more
    assert recs[1].events == []
    assert recs[3].events == []
    assert recs[0].after_start() == [("progress", Phase.COMPLETE), ("stop", Phase.COMPLETE)]


def test_cookies_of_different_operations_are_independent(env: Env) -> None:
    a, b = env.cursors(2)
    op1 = a.execute("rows 1", asynch=True)
    op2 = b.execute("rows 1", asynch=True)
    c1 = op1.advise(Recorder())
    with pytest.raises(KeyError):
        op2.unadvise(c1 + 1000)
    assert op1.wait_for_completion(WAIT)
    assert op2.wait_for_completion(WAIT)
    op1.unadvise(c1)


def test_advise_refuses_an_object_without_listener_methods(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("rows 1", asynch=True)
    with pytest.raises(TypeError):
        op.advise(object())
    assert op.wait_for_completion(WAIT)


def test_a_listener_with_only_on_stop_is_enough(env: Env) -> None:
    (cur,) = env.cursors(1)
    stops: list[Status] = []
    done = threading.Event()

    class OnlyStop:
        def on_stop(self, op: asynchdb.Operation[Any], status: Status) -> None:
            stops.append(status)
            done.set()

    op = cur.execute("block g1", asynch=True, listener=OnlyStop())
    env.started("g1")
    op.abort()  # no on_progress: nobody can veto
    assert done.wait(WAIT)
    assert [s.phase for s in stops] == [Phase.CANCELED]


# ---------------------------------------------------------------------------
# re-entrant calls from callbacks
# ---------------------------------------------------------------------------
def test_operation_methods_work_inside_on_progress(env: Env) -> None:
    (cur,) = env.cursors(1)
    seen: dict[str, Any] = {}
    kept = Recorder(name="kept")

    def inside(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.INITIALIZATION and "status" not in seen:
            seen["status"] = op.get_status().phase
            seen["done"] = op.done()
            seen["wait"] = op.wait_for_completion(0)
            try:
                op.result(0)
            except TimeoutError:
                seen["result"] = "timeout"
            temp = op.advise(Recorder(name="temp"))
            op.unadvise(temp)
            seen["kept"] = op.advise(kept)
            seen["hr"] = op.GetStatus()[0]
        return None

    rec = Recorder(inside)
    op = cur.execute("block g1", asynch=True, listener=rec)
    env.started("g1")
    env.raw.release("g1")
    assert op.result(WAIT) is cur
    rec.wait_stop()
    kept.wait_stop()
    assert seen == {"status": Phase.INITIALIZATION, "done": False, "wait": False,
                    "result": "timeout", "kept": seen["kept"], "hr": oledb.S_OK}
    assert seen["kept"] > 0
    check_conformance(rec, op)
    check_conformance(kept, op)


def test_abort_from_a_callback_is_delivered_after_the_callback_returns(env: Env) -> None:
    (cur,) = env.cursors(1)
    order: list[str] = []
    returned: list[Any] = []

    def answer(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        order.append(f"enter {st.phase.name}")
        if st.phase is Phase.INITIALIZATION and not returned:
            returned.append(op.abort())  # must not deadlock nor wait for itself
            order.append("abort returned")
        order.append(f"leave {st.phase.name}")
        return None

    rec = Recorder(answer)
    op = cur.execute("block g1", asynch=True, listener=rec)
    assert op.wait_for_completion(WAIT)
    rec.wait_stop()
    assert returned == [None]
    assert order == ["enter INITIALIZATION", "abort returned", "leave INITIALIZATION",
                     "enter CANCELED", "leave CANCELED"]
    assert op.get_status().phase is Phase.CANCELED
    check_conformance(rec, op)
    assert env.raw.log == []


def test_operation_methods_work_inside_on_stop(env: Env) -> None:
    (cur,) = env.cursors(1)
    order: list[str] = []
    seen: dict[str, Any] = {}

    class Stopper(Recorder):
        def on_stop(self, op: asynchdb.Operation[Any], status: Status) -> None:
            order.append("stop enter")
            seen["wait"] = op.wait_for_completion()
            seen["result"] = op.result(0)
            seen["exception"] = op.exception(0)
            seen["status"] = op.get_status()
            op.abort()  # ended: a no-op
            op.advise(late)  # notifications it causes come after this callback
            order.append("stop leave")
            super().on_stop(op, status)

    class Late(Recorder):
        def on_progress(self, op: asynchdb.Operation[Any], status: Status) -> Optional[bool]:
            order.append(f"late {status.phase.name}")
            return super().on_progress(op, status)

    late = Late(name="late")
    rec = Stopper()
    op = cur.execute("rows 1", asynch=True, listener=rec)
    assert op.wait_for_completion(WAIT)
    rec.wait_stop()
    late.wait_stop()
    assert seen["wait"] is True
    assert seen["result"] is cur
    assert seen["exception"] is None
    assert seen["status"].phase is Phase.COMPLETE
    assert order == ["stop enter", "stop leave", "late COMPLETE"]
    assert late.kinds() == [("progress", Phase.COMPLETE), ("stop", Phase.COMPLETE)]


def test_unadvise_of_itself_inside_a_callback_stops_its_notifications(env: Env) -> None:
    a, b = env.cursors(2)
    a.execute("block g0", asynch=True)
    env.started("g0")
    cookie: list[int] = []

    def leave(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.INITIALIZATION and cookie:
            op.unadvise(cookie.pop())
        return None

    rec = Recorder(leave)
    other = Recorder(name="other")
    op = b.execute("rows 1", asynch=True)  # queued: both hear the start
    cookie.append(op.advise(rec))
    op.advise(other)
    env.raw.release("g0")
    assert op.result(WAIT) is b
    other.wait_stop()
    barrier = Recorder()
    op.advise(barrier)
    barrier.wait_stop()
    assert rec.kinds() == [("progress", Phase.INITIALIZATION)]
    assert other.kinds()[0] == ("progress", Phase.INITIALIZATION)
    check_conformance(other, op)


# ---------------------------------------------------------------------------
# one at a time, in order, whatever the threads
# ---------------------------------------------------------------------------
def test_notifications_are_delivered_one_at_a_time_in_order(env: Env) -> None:
    (cur,) = env.cursors(1)
    monitor = Monitor()
    entered, go = threading.Event(), threading.Event()

    def hold_first(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.INITIALIZATION and not entered.is_set():
            entered.set()
            assert go.wait(WAIT)
        return None

    first = Recorder(hold_first, name="first", monitor=monitor)
    op = cur.execute("block g1", asynch=True, listener=first)
    assert entered.wait(WAIT)  # the worker is inside the first notification
    others = [Recorder(name=f"o{i}", monitor=monitor) for i in range(4)]
    outcomes: list[Any] = []

    def abort() -> None:
        try:
            op.abort()
            outcomes.append("accepted")
        except AbortVetoed:  # pragma: no cover - nobody vetoes
            outcomes.append("vetoed")

    def advise(rec: Recorder) -> None:
        op.advise(rec)
        outcomes.append("advised")

    threads = [threading.Thread(target=abort) for _ in range(4)]
    threads += [threading.Thread(target=advise, args=(r,)) for r in others]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert op.wait_for_completion(WAIT)
    for r in [first, *others]:
        r.wait_stop()
    barrier = Recorder(monitor=monitor)
    op.advise(barrier)
    barrier.wait_stop()
    assert monitor.overlaps == 0
    assert sorted(outcomes) == ["accepted"] * 4 + ["advised"] * 4
    assert op.get_status().phase is Phase.CANCELED
    check_conformance(first, op)
    assert first.count("progress", Phase.CANCELED) == 1  # four requests, one abort
    for r in others:
        assert r.count("stop") == 1
        assert r.events[-1][0] == "stop"
    # per listener, the order of the global stream: no stop before a CANCELED
    for who in ("first", *[r.name for r in others]):
        kinds = [(k, p) for w, k, p in monitor.order if w == who]
        assert kinds[-1] == ("stop", Phase.CANCELED)
    assert ("block g1", "ok") not in env.raw.log


def test_progress_notifications_from_the_timer_do_not_overlap_callbacks(env: Env) -> None:
    """Periodic INITIALIZATION notifications come from another thread: still one at a time."""
    (cur,) = env.cursors(1)
    monitor = Monitor()
    twice = threading.Event()
    inits: list[int] = []

    def count(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.INITIALIZATION:
            inits.append(1)
            if len(inits) >= 2:
                twice.set()
        return None

    rec = Recorder(count, monitor=monitor)
    other = Recorder(name="other", monitor=monitor)
    op = cur.execute("block g1", asynch=True, listener=rec)
    op.advise(other)
    env.started("g1")
    # "at least once a second while a driver call runs"
    assert twice.wait(WAIT), "no periodic progress while the call ran"
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    rec.wait_stop()
    other.wait_stop()
    assert monitor.overlaps == 0
    assert len(rec.threads) >= 2  # the worker and the timer both delivered
    check_conformance(rec, op)
    check_conformance(other, op)


def test_a_sync_call_with_a_listener_notifies_like_an_asynchronous_one(env: Env) -> None:
    (cur,) = env.cursors(1)
    rec = Recorder()
    assert cur.execute("rows 2", listener=rec) is cur
    rec.wait_stop()
    assert rec.kinds()[-2:] == [("progress", Phase.COMPLETE), ("stop", Phase.COMPLETE)]
    assert rec.count("stop") == 1
    assert cur.fetchall() == [(0,), (1,)]


# ---------------------------------------------------------------------------
# OLE DB names (docs/oledb.md)
# ---------------------------------------------------------------------------
def test_getstatus_codes_and_values(env: Env) -> None:
    a, b, c, d = env.cursors(4)
    running = a.execute("block g1", asynch=True)
    env.started("g1")
    queued = b.execute("q2", asynch=True)
    for op in (running, queued):
        hr, progress, progress_max, phase, _text = op.GetStatus()
        assert (hr, phase) == (oledb.S_OK, oledb.DBASYNCHPHASE_INITIALIZATION)
        assert 0 <= progress < progress_max
    assert running.GetStatus(0, oledb.DBASYNCHOP_OPEN)[0] == oledb.S_OK
    assert running.GetStatus(1)[0] == oledb.DB_E_BADCHAPTER
    # an unknown operation is not an error: S_OK with progress == max
    hr, progress, progress_max, _, _ = running.GetStatus(0, 7)
    assert hr == oledb.S_OK
    assert progress == progress_max
    env.raw.release("g1")
    assert queued.wait_for_completion(WAIT)
    hr, progress, progress_max, phase, _ = running.GetStatus()
    assert (hr, phase) == (oledb.S_OK, oledb.DBASYNCHPHASE_COMPLETE)
    assert progress == progress_max
    failed = c.execute("fail", asynch=True)
    assert failed.wait_for_completion(WAIT)
    hr, progress, progress_max, phase, _ = failed.GetStatus()
    assert (hr, phase) == (oledb.E_FAIL, oledb.DBASYNCHPHASE_COMPLETE)
    canceled = d.execute("block g4", asynch=True)
    env.started("g4")
    canceled.abort()
    assert canceled.wait_for_completion(WAIT)
    hr, progress, progress_max, phase, _ = canceled.GetStatus()
    assert (hr, phase) == (oledb.DB_E_CANCELED, oledb.DBASYNCHPHASE_CANCELED)
    assert progress < progress_max


def test_abort_codes(env: Env) -> None:
    a, b, c = env.cursors(3)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    assert oledb.FAILED(op.Abort(1))  # a chapter: refused, nothing aborted
    assert not op.done()
    assert op.Abort() == oledb.S_OK
    assert op.wait_for_completion(WAIT)
    assert op.get_status().phase is Phase.CANCELED
    assert op.Abort() == oledb.S_OK  # already ended: no-op
    vetoed = b.execute("block g2", asynch=True, listener=Recorder(veto_cancel))
    env.started("g2")
    assert vetoed.Abort() == oledb.DB_E_CANCELED
    assert not vetoed.done()
    env.raw.release("g2")
    assert vetoed.wait_for_completion(WAIT)
    assert vetoed.get_status().phase is Phase.COMPLETE
    ended = c.execute("rows 1", asynch=True)
    assert ended.wait_for_completion(WAIT)
    before = ended.GetStatus()
    assert ended.Abort(0, oledb.DBASYNCHOP_OPEN) == oledb.S_OK
    assert ended.GetStatus() == before


def test_wait_for_asynch_completion_codes(env: Env) -> None:
    a, b, c = env.cursors(3)
    op = a.execute("block g1", asynch=True)
    env.started("g1")
    assert op.WaitForAsynchCompletion(0) == oledb.DB_S_ASYNCHRONOUS
    assert op.WaitForAsynchCompletion(10) == oledb.DB_S_ASYNCHRONOUS
    assert not op.done()  # a timed-out wait cancels nothing
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(op.WaitForAsynchCompletion(oledb.INFINITE)))
    t.start()
    env.raw.release("g1")
    t.join(WAIT)
    assert out == [oledb.S_OK]
    assert op.WaitForAsynchCompletion(0) == oledb.S_OK
    failed = b.execute("fail", asynch=True)
    assert failed.WaitForAsynchCompletion(int(WAIT * 1000)) == oledb.E_FAIL
    canceled = c.execute("block g3", asynch=True)
    env.started("g3")
    canceled.abort()
    assert canceled.WaitForAsynchCompletion(int(WAIT * 1000)) == oledb.DB_E_CANCELED


class Sink:
    """An OLE DB ``IDBAsynchNotify`` sink recording calls; ``progress_hr`` decides replies."""

    def __init__(self, progress_hr: Optional[Callable[[int], int]] = None) -> None:
        self.progress_hr = progress_hr
        self.calls: list[tuple[Any, ...]] = []
        self.stopped = threading.Event()

    def OnProgress(self, hChapter: int, eOperation: int, ulProgress: int,
                   ulProgressMax: int, eAsynchPhase: int, pwszStatusText: Any) -> int:
        self.calls.append(("OnProgress", hChapter, eOperation, ulProgress, ulProgressMax,
                           eAsynchPhase))
        return self.progress_hr(eAsynchPhase) if self.progress_hr else oledb.S_OK

    def OnStop(self, hChapter: int, eOperation: int, hrStatus: int,
               pwszStatusText: Any) -> int:
        self.calls.append(("OnStop", hChapter, eOperation, hrStatus))
        self.stopped.set()
        return oledb.S_OK

    def OnLowResource(self, dwReserved: int) -> int:
        self.calls.append(("OnLowResource", dwReserved))
        return oledb.S_OK

    def phases(self) -> list[int]:
        return [c[5] for c in self.calls if c[0] == "OnProgress"]

    def stops(self) -> list[int]:
        return [c[3] for c in self.calls if c[0] == "OnStop"]


def test_advise_and_unadvise_codes(env: Env) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute("block g1", asynch=True)
    env.started("g1")
    sink = Sink()
    hr, cookie = op.Advise(sink)
    assert hr == oledb.S_OK
    assert cookie > 0
    removed = Sink()
    hr2, cookie2 = op.Advise(removed)
    assert hr2 == oledb.S_OK
    assert cookie2 not in (0, cookie)
    assert op.Unadvise(cookie2) == oledb.S_OK
    assert op.Unadvise(cookie2) == oledb.CONNECT_E_NOCONNECTION
    assert op.Unadvise(12345) == oledb.CONNECT_E_NOCONNECTION
    hr3, cookie3 = op.Advise(object())
    assert oledb.FAILED(hr3)
    assert cookie3 == 0
    env.raw.release("g1")
    assert op.wait_for_completion(WAIT)
    assert sink.stopped.wait(WAIT)
    assert removed.calls == []
    assert sink.calls[-2:] == [
        ("OnProgress", oledb.DB_NULL_HCHAPTER, oledb.DBASYNCHOP_OPEN, 1, 1,
         oledb.DBASYNCHPHASE_COMPLETE),
        ("OnStop", oledb.DB_NULL_HCHAPTER, oledb.DBASYNCHOP_OPEN, oledb.S_OK)]


@pytest.mark.parametrize(("stmt", "abort", "hr"), [
    ("fail", False, oledb.E_FAIL),
    ("block g1", True, oledb.DB_E_CANCELED),
])
def test_onstop_carries_the_outcome_hresult(env: Env, stmt: str, abort: bool, hr: int) -> None:
    (cur,) = env.cursors(1)
    op = cur.execute(stmt, asynch=True)
    sink = Sink()
    op.Advise(sink)
    if abort:
        env.started("g1")
        op.Abort()
    assert op.wait_for_completion(WAIT)
    assert sink.stopped.wait(WAIT)
    assert sink.stops() == [hr]
    if abort:
        assert oledb.DBASYNCHPHASE_CANCELED in sink.phases()


def test_sink_s_false_on_canceled_vetoes(env: Env) -> None:
    (cur,) = env.cursors(1)
    sink = Sink(lambda phase: oledb.S_FALSE if phase == oledb.DBASYNCHPHASE_CANCELED
                else oledb.S_OK)
    op = cur.execute("block g1", asynch=True)
    op.Advise(sink)
    env.started("g1")
    assert op.Abort() == oledb.DB_E_CANCELED
    with pytest.raises(AbortVetoed):
        op.abort()
    assert not op.done()
    env.raw.release("g1")
    assert op.WaitForAsynchCompletion(int(WAIT * 1000)) == oledb.S_OK
    assert sink.stopped.wait(WAIT)
    assert sink.phases()[-1] == oledb.DBASYNCHPHASE_COMPLETE
    assert sink.phases().count(oledb.DBASYNCHPHASE_CANCELED) == 2
    assert sink.stops() == [oledb.S_OK]


def test_sink_s_false_in_initialization_aborts(env: Env) -> None:
    a, b = env.cursors(2)
    a.execute("block g0", asynch=True)
    env.started("g0")
    sink = Sink(lambda phase: oledb.S_FALSE if phase == oledb.DBASYNCHPHASE_INITIALIZATION
                else oledb.S_OK)
    op = b.execute("q1", asynch=True)
    op.Advise(sink)
    env.raw.release("g0")
    assert op.WaitForAsynchCompletion(int(WAIT * 1000)) == oledb.DB_E_CANCELED
    assert sink.stopped.wait(WAIT)
    assert sink.stops() == [oledb.DB_E_CANCELED]
    assert ("q1", "ok") not in env.raw.log


def test_sink_s_false_on_complete_changes_nothing(env: Env) -> None:
    (cur,) = env.cursors(1)
    sink = Sink(lambda phase: oledb.S_FALSE if phase == oledb.DBASYNCHPHASE_COMPLETE
                else oledb.S_OK)
    op = cur.execute("block g1", asynch=True)
    op.Advise(sink)
    env.started("g1")
    env.raw.release("g1")
    assert op.WaitForAsynchCompletion(int(WAIT * 1000)) == oledb.S_OK
    assert sink.stopped.wait(WAIT)
    assert sink.stops() == [oledb.S_OK]


def test_sink_e_notimpl_stops_onprogress_but_not_onstop(env: Env) -> None:
    (cur,) = env.cursors(1)
    sink = Sink(lambda phase: oledb.E_NOTIMPL)
    other = Sink()
    op = cur.execute("block g1", asynch=True)
    op.Advise(sink)
    op.Advise(other)
    env.started("g1")
    op.abort()  # a CANCELED notification the sink no longer hears
    assert op.wait_for_completion(WAIT)
    assert sink.stopped.wait(WAIT)
    assert other.stopped.wait(WAIT)
    assert len(sink.phases()) <= 1  # at most the one it answered E_NOTIMPL to
    assert oledb.DBASYNCHPHASE_CANCELED in other.phases()
    assert sink.stops() == [oledb.DB_E_CANCELED]


def test_sink_unwanted_phase_stops_only_that_phase(env: Env) -> None:
    cur, other = env.cursors(2)
    sink = Sink(lambda phase: oledb.DB_S_UNWANTEDPHASE
                if phase == oledb.DBASYNCHPHASE_INITIALIZATION else oledb.S_OK)
    twice = threading.Event()
    inits: list[int] = []

    def count(op: asynchdb.Operation[Any], st: Status) -> Optional[bool]:
        if st.phase is Phase.INITIALIZATION:
            inits.append(1)
            if len(inits) >= 2:
                twice.set()
        return None

    # both advised before the start (periodic progress goes to listeners that
    # were there when the call started); the sink first, so it is offered each
    # notification before the counter sees it
    blocker = cur.execute("block g0", asynch=True)
    env.started("g0")
    op = other.execute("block g1", asynch=True)
    op.Advise(sink)
    op.advise(Recorder(count))
    env.raw.release("g0")
    env.started("g1")
    assert twice.wait(WAIT), "no second INITIALIZATION notification"
    op.abort()
    assert op.wait_for_completion(WAIT)
    assert sink.stopped.wait(WAIT)
    assert blocker.wait_for_completion(WAIT)
    phases = sink.phases()
    assert phases.count(oledb.DBASYNCHPHASE_INITIALIZATION) == 1
    assert oledb.DBASYNCHPHASE_CANCELED in phases  # other phases still delivered
    assert sink.stops() == [oledb.DB_E_CANCELED]
