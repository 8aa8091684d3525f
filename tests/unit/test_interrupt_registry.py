"""How Ctrl-C finds the call to cancel: each inline driver call registers itself.

The Ctrl-C watcher used to find the main thread's driver call by walking the
main thread's frames from its own thread (``sys._current_frames()`` and
``f_back``), which can crash CPython 3.11 (docs/reliability.md).  Now every
inline driver call sets ``Channel.inline`` (and ``inline_kind``) for its
duration, nested calls restore the outer one, and ``Channel.owned_by`` tells
whose call it is.  These tests pin that registry on sqlite3 (user functions
run inside the call, on the calling thread) and the lock's ``repr`` contract
that ``owned_by`` reads.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import asynchdb
from asynchdb import _interrupt
from asynchdb._channel import Channel

BOUND = 10.0


def _main_calls() -> list[tuple[Any, Any, Any, int]]:
    return _interrupt._main_calls()


def test_owned_by_reads_the_owner_of_the_lock() -> None:
    conn = asynchdb.wrap(sqlite3.connect(":memory:", check_same_thread=False))
    try:
        ch: Channel = conn._ch
        me = threading.get_ident()
        assert not ch.owned_by(me)
        assert ch.take()
        try:
            assert ch.owned_by(me)
            seen: list[bool] = []
            t = threading.Thread(target=lambda: seen.append(ch.owned_by(threading.get_ident())))
            t.start()
            t.join(BOUND)
            assert seen == [False]
            # a prefix of the owner's id is not the owner
            assert not ch.owned_by(int(str(me)[:-1]))
        finally:
            ch.release()
        assert not ch.owned_by(me)
    finally:
        conn.close()


def test_an_inline_call_registers_itself_and_nested_calls_restore_it() -> None:
    raw = sqlite3.connect(":memory:")
    conn = asynchdb.wrap(raw)
    try:
        ch: Channel = conn._ch
        outer = conn.cursor()
        inner = conn.cursor()
        seen: dict[str, Any] = {}

        def f(x: int) -> int:
            # inside the outer execute, on this (the calling) thread
            seen["outer"] = (ch.inline, ch.inline_kind)
            seen["outer_since"] = ch.inline_since
            seen["main_calls"] = [(c is ch, k, t) for c, _, k, t in _main_calls()]
            inner.execute("SELECT 2")
            seen["inner_done"] = (ch.inline, ch.inline_kind, ch.inline_since)
            seen["fetched"] = inner.fetchall()
            return x

        raw.create_function("f", 1, f)
        before = time.perf_counter_ns()
        outer.execute("SELECT f(1)")
        assert seen["outer"] == (outer.driver_cursor, "execute")
        # when the call began, on the clock a SIGINT's datagram is stamped with
        since = seen["outer_since"]
        assert before <= since <= time.perf_counter_ns()
        assert seen["main_calls"] == [(True, "execute", since)]
        assert seen["inner_done"] == (outer.driver_cursor, "execute", since), \
            "nested call did not restore"
        assert seen["fetched"] == [(2,)]
        assert (ch.inline, ch.inline_kind, ch.inline_since) == (None, None, 0)
        assert outer.fetchall() == [(1,)]
        # a call made through Channel.call registers the bound driver method (kind None)
        seen.clear()
        def g() -> int:
            seen["g"] = (ch.inline, ch.inline_kind)
            return 0

        raw.create_function("g", 0, g)
        outer.execute("CREATE TABLE t (x)")
        outer.executemany("INSERT INTO t VALUES (g() + ?)", [(1,)])
        inline, kind = seen["g"]
        assert kind is None and getattr(inline, "__name__", None) == "executemany"
        assert getattr(inline, "__self__", None) is outer.driver_cursor
        assert (ch.inline, ch.inline_kind) == (None, None)
    finally:
        conn.close()


def test_another_threads_inline_call_is_not_the_main_threads() -> None:
    raw = sqlite3.connect(":memory:", check_same_thread=False)
    conn = asynchdb.wrap(raw)
    inside = threading.Event()
    go = threading.Event()
    try:
        ch: Channel = conn._ch

        def block() -> int:
            inside.set()
            go.wait(BOUND)
            return 1

        raw.create_function("block", 0, block)
        cur = conn.cursor()
        t = threading.Thread(target=lambda: cur.execute("SELECT block()"), daemon=True)
        t.start()
        try:
            assert inside.wait(BOUND)
            assert ch.inline_kind == "execute"  # registered, but on that thread
            assert not ch.owned_by(threading.get_ident())
            if threading.current_thread() is threading.main_thread():
                assert [c for c, _, _, _ in _main_calls() if c is ch] == []
        finally:
            go.set()
            t.join(BOUND)
        assert not t.is_alive()
        assert (ch.inline, ch.inline_kind) == (None, None)
    finally:
        conn.close()


def test_a_failed_call_restores_the_registration() -> None:
    conn = asynchdb.wrap(sqlite3.connect(":memory:"))
    try:
        ch: Channel = conn._ch
        cur = conn.cursor()
        try:
            cur.execute("SELECT * FROM no_such_table")
        except sqlite3.OperationalError:
            pass
        else:  # pragma: no cover
            raise AssertionError("the driver's error was lost")
        assert (ch.inline, ch.inline_kind) == (None, None)
    finally:
        conn.close()


def test_the_next_call_on_the_same_cursor_is_another_call() -> None:
    """A record of an interrupted call never takes the cursor's next call for it.

    The watcher follows an interrupted call up (re-sent cancels, the repair)
    while the main thread is still in it.  When that call returned without
    the cancel's error (it came too late) and the program caught Python's
    KeyboardInterrupt and ran the same cursor's ``execute`` again, the same
    driver cursor and method are registered: only the call's begin time tells
    the two apart, or the re-sent cancel would stop the new statement.
    """
    raw = sqlite3.connect(":memory:")
    conn = asynchdb.wrap(raw)
    try:
        ch: Channel = conn._ch
        cur = conn.cursor()
        seen: dict[str, Any] = {}

        def probe() -> int:
            # inside the cursor's second execute, on this (the main) thread
            earlier = _interrupt._Record(ch, ch.inline, ch.inline_kind, seen["first"])
            this = _interrupt._Record(ch, ch.inline, ch.inline_kind, ch.inline_since)
            seen["earlier_running"] = earlier.running()
            seen["this_running"] = this.running()
            return 1

        def first() -> int:
            seen["first"] = ch.inline_since
            return 1

        raw.create_function("first", 0, first)
        raw.create_function("probe", 0, probe)
        cur.execute("SELECT first()")
        cur.fetchall()
        cur.execute("SELECT probe()")
        assert cur.fetchall() == [(1,)]
        if threading.current_thread() is not threading.main_thread():  # pragma: no cover
            pytest.skip("pytest runs tests on the main thread")
        assert (seen["earlier_running"], seen["this_running"]) == (False, True)
    finally:
        conn.close()


def test_a_signal_sent_before_a_call_began_is_not_for_it() -> None:
    """The watcher's choice: the main thread's calls that began before the SIGINT was sent."""
    raw = sqlite3.connect(":memory:")
    conn = asynchdb.wrap(raw)
    try:
        ch: Channel = conn._ch
        seen: dict[str, Any] = {}

        def probe() -> int:
            since = ch.inline_since
            with _interrupt._lock:
                seen["sent_after"] = [r.channel is ch for r in _interrupt._targets(since + 1)]
                seen["sent_before"] = [r.channel is ch for r in _interrupt._targets(since - 1)]
                _interrupt._records.pop(ch, None)
            return 1

        raw.create_function("probe", 0, probe)
        conn.cursor().execute("SELECT probe()")
        if threading.current_thread() is not threading.main_thread():  # pragma: no cover
            pytest.skip("pytest runs tests on the main thread")
        assert seen == {"sent_after": [True], "sent_before": []}
    finally:
        conn.close()


def test_an_unknown_signal_time_is_after_every_call() -> None:
    """Unstamped (another system): every registered call counts as interrupted, on any build."""
    assert _interrupt._UNKNOWN > time.perf_counter_ns() * 1000
    raw = sqlite3.connect(":memory:")
    conn = asynchdb.wrap(raw)
    try:
        ch: Channel = conn._ch
        seen: list[bool] = []

        def probe() -> int:
            with _interrupt._lock:
                seen.extend(r.channel is ch for r in _interrupt._targets(_interrupt._UNKNOWN))
                _interrupt._records.pop(ch, None)
            return 1

        raw.create_function("probe", 0, probe)
        conn.cursor().execute("SELECT probe()")
        if threading.current_thread() is not threading.main_thread():  # pragma: no cover
            pytest.skip("pytest runs tests on the main thread")
        assert seen == [True]
    finally:
        conn.close()


def test_a_call_nested_in_a_held_call_is_cancelled_with_it() -> None:
    """Under a held call Python's handler only counts: a nested call begun after the signal
    still has its KeyboardInterrupt ahead of it, so it is one of the watcher's targets."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        pytest.skip("held calls are the main thread's")
    outer_raw = sqlite3.connect(":memory:")
    inner_raw = sqlite3.connect(":memory:")
    outer, inner = asynchdb.wrap(outer_raw), asynchdb.wrap(inner_raw)
    try:
        och: Channel = outer._ch
        ich: Channel = inner._ch
        seen: dict[str, Any] = {}

        def probe() -> int:  # inside the inner call, nested in the held outer one
            sigint = (och.inline_since + ich.inline_since) // 2  # between the two
            with _interrupt._lock:
                found = _interrupt._targets(sigint)
                seen["held"] = sorted(r.channel is ich for r in found)
                _interrupt._records.clear()
            return 1

        inner_raw.create_function("probe", 0, probe)

        def nested() -> int:
            inner.cursor().execute("SELECT probe()")
            return 1

        outer_raw.create_function("nested", 0, nested)
        cur = outer.cursor()
        och.take()
        try:
            _interrupt.held_call(och, cur.driver_cursor, "execute", time.perf_counter_ns(),
                                 cur.driver_cursor.execute, ("SELECT nested()",), {})
        finally:
            och.release()
        # both: the held outer call began before the signal, the inner one after
        assert seen["held"] == [False, True]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        outer.close()
        inner.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS: Linux")
def test_the_wakeup_datagrams_carry_their_send_time() -> None:
    pair = _interrupt._stamped_pair()
    assert pair is not None, "this kernel did not stamp the probe datagram"
    r, w = pair
    try:
        before = time.time_ns()
        w.send(bytes((int(signal.SIGINT),)))
        after = time.time_ns()
        r.setblocking(False)
        with _interrupt._lock:
            data, sigint = _interrupt._read(r)
        assert data == bytes((int(signal.SIGINT),))
        # on the calls' clock now: between two readings of it around the send
        moved = (before - time.time_ns() + time.perf_counter_ns(),
                 after - time.time_ns() + time.perf_counter_ns())
        assert moved[0] - 1_000_000 <= sigint <= moved[1] + 1_000_000
    finally:
        r.close()
        w.close()


def test_a_slow_reading_of_the_clocks_never_makes_a_signal_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher moves a signal's stamp onto the calls' clock; a GIL switch (or a
    preemption) between its readings must not make the signal look later than a call
    the program began after it (stress: 7 stray cancels in 4,638 on psycopg2)."""
    sent = time.time_ns()  # the signal's stamp, on the system clock
    since = time.perf_counter_ns()  # a call that began after it
    readings: list[str] = []

    class Clocks:  # the first reading of the calls' clock after the system's is late
        @staticmethod
        def time_ns() -> int:
            readings.append("system")
            return time.time_ns()

        @staticmethod
        def perf_counter_ns() -> int:
            late = readings.count("system") == 1 and readings[-1] == "system"
            readings.append("calls")
            return time.perf_counter_ns() + (5_000_000 if late else 0)

    monkeypatch.setattr(_interrupt, "time", Clocks)
    moved = _interrupt._on_call_clock(sent)
    monkeypatch.undo()
    assert moved <= since, (moved - since, readings)
    assert readings.count("system") == 2  # read again once the bracket was too wide


def _printed_inside(call_frame_holder: list[Any]) -> KeyboardInterrupt:
    """A KeyboardInterrupt raised in a function called from this frame, as a driver prints it."""
    call_frame_holder.append(sys._getframe())

    def decode() -> None:  # what psycopg2 calls while it reads an error message
        raise KeyboardInterrupt

    try:
        decode()
    except KeyboardInterrupt as ki:
        sys.last_type, sys.last_value, sys.last_traceback = type(ki), ki, ki.__traceback__
        return ki
    raise AssertionError("unreachable")  # pragma: no cover


@pytest.fixture
def no_last_value() -> Iterator[None]:
    """``sys.last_*`` as the test found it: absent (pytest sets none), and absent after."""
    yield
    for name in ("last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            delattr(sys, name)


def test_a_keyboard_interrupt_the_driver_printed_during_the_call_is_dropped(
        no_last_value: None) -> None:
    """psycopg2's PyErr_Print leaves the Ctrl-C in sys.last_value, holding the call's frames."""
    holder: list[Any] = []
    _printed_inside(holder)
    assert isinstance(sys.last_value, KeyboardInterrupt)
    _interrupt._forget_printed(holder[0])
    assert not hasattr(sys, "last_value")
    assert not hasattr(sys, "last_traceback")


def test_an_unrelated_last_value_is_kept(no_last_value: None) -> None:
    holder: list[Any] = []
    ki = _printed_inside(holder)

    def another_call() -> Any:
        return sys._getframe()

    _interrupt._forget_printed(another_call())  # not the call it was raised in
    assert sys.last_value is ki
    sys.last_value = ValueError("not a KeyboardInterrupt")
    _interrupt._forget_printed(holder[0])
    assert isinstance(sys.last_value, ValueError)


def test_a_wakeup_fd_someone_else_set_is_left_to_them() -> None:
    """A program (or a loop) that set ``signal.set_wakeup_fd`` keeps it: no Ctrl-C watcher."""
    import signal
    import socket

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal.set_wakeup_fd: main thread only")
    r, w = socket.socketpair()
    w.setblocking(False)
    before = signal.set_wakeup_fd(w.fileno())
    try:
        conn = asynchdb.connect(sqlite3, ":memory:")
        try:
            # still theirs (setting it again returns what was set)
            assert signal.set_wakeup_fd(w.fileno()) == w.fileno()
            assert not _interrupt.ARMED
            assert not _interrupt.interruptible_here()
            assert conn.cursor().execute("SELECT 1").fetchall() == [(1,)]
        finally:
            conn.close()
        assert signal.set_wakeup_fd(w.fileno()) == w.fileno()  # the close left it too
    finally:
        signal.set_wakeup_fd(before)
        r.close()
        w.close()
