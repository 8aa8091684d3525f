"""A thread of asynchdb's own for a connection the driver binds to its opening thread.

A connect callable may return a connection that refuses every call from any
thread but the one that opened it (sqlite3 with ``check_same_thread=True``).
``asynchdb.connect`` opens a callable's connection on a :class:`PinThread`;
if the adapter then finds it bound (``Adapter.bound_to_opener``, asked on
another thread), the channel is *pinned*: its queue is drained on that thread
only, so synchronous calls hop to it and asynchronous calls run there, and the
thread ends once the connection is closed.  Otherwise the thread ends at once
and the connection is an ordinary one.

Threads: :meth:`PinThread.call` and :meth:`PinThread.dispatch` from any
thread; everything they hand over runs on the pin thread, one at a time.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import Any, Callable, Optional, Protocol

log = logging.getLogger("asynchdb")

_names = itertools.count(1)


class _Drains(Protocol):
    def drain(self) -> None: ...


class PinThread:
    """One daemon thread that runs what it is handed, in order, until stopped."""

    def __init__(self) -> None:
        self._mailbox: queue.SimpleQueue[Optional[Callable[[], None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        #: The pin thread's id once it started (0 before).
        self.ident = 0

    def _hand(self, item: Optional[Callable[[], None]]) -> None:
        # any thread: queue ``item``; the first one starts the thread, which
        # then runs it at once (Thread.start returns once it is running), as
        # the pool does for a channel's first task
        self._mailbox.put(item)
        with self._lock:
            if self.thread is not None or item is None:
                return
            self.thread = threading.Thread(target=self._main, daemon=True,
                                           name=f"asynchdb-pin-{next(_names)}")
            self.thread.start()
            ident = self.thread.ident
            assert ident is not None
            self.ident = ident

    def _main(self) -> None:
        # pin thread
        while True:
            item = self._mailbox.get()
            if item is None:
                return
            try:
                item()
            except BaseException:  # pragma: no cover - items handle their errors
                log.exception("asynchdb: a pinned call failed")
            del item

    def dispatch(self, channel: _Drains) -> None:
        """Drain ``channel``'s queue on the pin thread (any thread)."""
        self._hand(channel.drain)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the pin thread and return (or raise) its outcome.

        Waits as long as the call takes (a driver's connect): the wait is
        interruptible (Ctrl-C).
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread
                box["error"] = exc
            finally:
                done.set()

        self._hand(run)
        done.wait()
        error = box.pop("error", None)
        if error is not None:
            try:
                raise error
            finally:
                error = None
        return box.get("value")

    def stop(self, join: float = 0) -> None:
        """Let the thread end once what it was handed has run (any thread).

        ``join``: seconds to wait for it to end (not from the pin thread itself).
        """
        self._hand(None)
        thread = self.thread
        if join > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(join)


def elsewhere(fn: Callable[..., Any], *args: Any, timeout: Optional[float] = None) -> Any:
    """``fn(*args)`` on a short-lived thread (a probe that must not run on the caller's).

    ``timeout``: seconds to wait for the answer; None (the answer never came) after it.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed back
            box["error"] = exc

    t = threading.Thread(target=run, name="asynchdb-probe", daemon=True)
    t.start()
    t.join(timeout)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def bound_to_opener(adapter: Any, raw: Any) -> bool:
    """The adapter's ``bound_to_opener(raw)``, asked on a thread other than the opener's.

    A probe that fails proves nothing: False.
    """
    try:
        return bool(adapter.bound_to_opener(raw))
    except Exception:  # noqa: BLE001 - a probe that fails proves nothing
        return False
