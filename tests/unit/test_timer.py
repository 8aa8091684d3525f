"""The timer thread: when scheduling or cancelling an entry wakes it, and when not.

An abort schedules the cancel's re-issue just as the aborted call returns on
the worker; waking the timer thread then costs the worker the GIL at the worst
moment.  So a lingering timer thread looks at its heap every ``LINGER_TICK``
seconds on its own, and an entry due after that look wakes nobody.  These tests
count the notifications on a private ``Timer`` (not the process's) and check
that each entry still runs, and that the thread still exits when it should.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from plugin import wait_until

from asynchdb import _hub
from asynchdb._hub import KEEPALIVE, LINGER_TICK, Timer

BOUND = 5.0  # seconds any wait here may take before the test fails


class CountingCondition(threading.Condition):
    """A condition variable that counts its notifications."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


class Harness:
    def __init__(self) -> None:
        self.timer = Timer()
        self.cond = CountingCondition()
        self.timer._cond = self.cond
        self.keep = True
        self.timer.keep_alive = lambda: self.keep

    def thread(self) -> threading.Thread | None:
        return self.timer._thread

    def run_once(self, delay: float) -> threading.Event:
        """Schedule a one-shot entry; the event is set when it ran."""
        ran = threading.Event()

        def fire() -> None:
            ran.set()

        self.timer.schedule(delay, fire)
        return ran

    def lingering(self) -> None:
        """Run one entry, so that the thread exists and lingers with nothing scheduled."""
        assert self.run_once(0.0).wait(BOUND)
        self.wait_lingering()

    def waits(self, until: Callable[[], bool]) -> None:
        """Return once the thread waits under the lock and ``until()`` holds there (bounded)."""
        def check() -> bool:
            with self.cond:
                return until()

        assert wait_until(check, BOUND, 0.001), "the timer thread never got to that wait"

    def wait_lingering(self) -> None:
        """Return once the thread waits with nothing live (bounded)."""
        self.waits(lambda: self.timer._live == 0 and self.timer._wake_at > 0)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.keep = False
    harness.timer.stop()
    t = harness.thread()
    assert t is None or not t.is_alive()


def test_an_entry_due_after_the_lingering_threads_next_look_wakes_nobody(h: Harness) -> None:
    h.lingering()
    before = h.cond.notified
    started = time.monotonic()
    ran = h.run_once(LINGER_TICK * 3)
    assert h.cond.notified == before
    assert ran.wait(BOUND)
    took = time.monotonic() - started
    assert took >= LINGER_TICK * 3 * 0.9  # not early
    assert took < KEEPALIVE / 2  # nor at the end of the linger (2 s late)


def test_an_entry_due_before_the_lingering_threads_next_look_wakes_it(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # a long tick: a test thread that stalls cannot find the next look overdue
    monkeypatch.setattr(_hub, "LINGER_TICK", 1.0)
    h.lingering()
    before = h.cond.notified
    ran = h.run_once(0.0)
    assert h.cond.notified == before + 1
    assert ran.wait(BOUND)


def test_cancelling_a_near_entry_lets_the_thread_linger_without_a_wake_up(h: Harness) -> None:
    h.lingering()
    entry = h.timer.schedule(LINGER_TICK * 2, lambda: None)
    before = h.cond.notified
    entry.cancel()
    assert h.cond.notified == before
    # with no connection left, the hub wakes the timer (Hub.closed): it exits
    h.keep = False
    h.timer.wake()
    t = h.thread()
    if t is not None:
        t.join(BOUND)
        assert not t.is_alive()


def test_cancelling_a_far_entry_wakes_the_thread_so_it_does_not_outstay_its_linger(
        h: Harness) -> None:
    h.lingering()
    entry = h.timer.schedule(KEEPALIVE * 100, lambda: None)
    assert h.thread() is not None
    h.waits(lambda: h.timer._wake_at > time.monotonic() + KEEPALIVE)  # for the far entry
    before = h.cond.notified
    entry.cancel()
    assert h.cond.notified == before + 1


def test_cancelling_the_last_entry_with_nothing_to_keep_the_thread_lets_it_exit_at_once(
        h: Harness) -> None:
    h.keep = False
    entry = h.timer.schedule(3600.0, lambda: None)
    t = h.thread()
    assert t is not None
    entry.cancel()
    t.join(BOUND)  # without the wake-up it would sleep for an hour
    assert not t.is_alive()


def test_cancelling_a_near_entry_with_nothing_to_keep_the_thread_lets_it_exit_at_once(
        h: Harness) -> None:
    h.keep = False
    entry = h.timer.schedule(KEEPALIVE * 0.75, lambda: None)
    t = h.thread()
    assert t is not None
    h.waits(lambda: h.timer._wake_at > 0)  # for the entry
    entry.cancel()
    t.join(KEEPALIVE * 0.25)  # not when the entry was due
    assert not t.is_alive()


def test_a_cancelled_entry_at_the_head_of_the_heap_does_not_hide_a_new_one(h: Harness) -> None:
    # found in review (2026-12-07): before the looks, a new entry was notified
    # only if it became the heap's head, and a cancelled entry kept there (other
    # entries were live when it was cancelled) hid it for the whole linger
    inside, go = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        go.wait(BOUND)

    h.timer.schedule(0.0, hold)
    assert inside.wait(BOUND)
    # cancelled while another entry is live: it stays in the heap, at its head
    h.timer.schedule(LINGER_TICK * 4, lambda: None).cancel()
    go.set()
    h.wait_lingering()
    started = time.monotonic()
    ran = h.run_once(LINGER_TICK * 6)
    assert ran.wait(BOUND)
    assert time.monotonic() - started < KEEPALIVE / 2
