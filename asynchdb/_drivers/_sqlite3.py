"""sqlite3: abort through a progress handler bound to the running operation.

``Connection.interrupt()`` is sticky: while any other statement on the
connection is pending (a partly fetched cursor) every later statement fails
with ``interrupted`` (measured; docs/drivers.md).  A progress handler that returns non-zero
only while *this* operation's abort flag is set stops the running statement
and nothing after it.  The same handler counts virtual-machine steps, a count
with no known maximum, reported in the status text.

A user's own ``set_progress_handler`` is chained behind ours, not replaced.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..adapters import Adapter, CallView, ConnectionView

#: Virtual-machine instructions between two calls of the progress handler.
GRANULARITY = 1000


class _Hook:
    """The progress handler installed on every wrapped sqlite3 connection."""

    __slots__ = ("conn", "step", "ticks", "user", "user_count", "user_every")

    def __init__(self, conn: ConnectionView) -> None:
        self.conn = conn
        self.ticks = 0
        self.step = GRANULARITY
        self.user: Optional[Callable[[], Any]] = None
        self.user_every = 1
        self.user_count = 0

    def __call__(self) -> int:
        # owner thread, inside sqlite3_step; must be quick and never raise
        self.ticks += 1
        conn = self.conn
        call = conn.running
        if (call is not None and call.abort_requested) or conn.closing:
            return 1
        user = self.user
        if user is not None:
            self.user_count += 1
            if self.user_count >= self.user_every:
                self.user_count = 0
                return 1 if user() else 0
        return 0

    def set_user_handler(self, handler: Optional[Callable[[], Any]], n: int) -> None:
        """``sqlite3.Connection.set_progress_handler``, chained behind ours."""
        raw = self.conn.raw
        if handler is None or n <= 0:
            self.user = None
            step = GRANULARITY
        else:
            step = max(1, min(GRANULARITY, n))
            self.user_every = max(1, round(n / step))
            self.user_count = 0
            self.user = handler
        if step != self.step:
            self.step = step
        raw.set_progress_handler(self, step)

    def text_for(self) -> Callable[[], Optional[str]]:
        start = self.ticks

        def text() -> Optional[str]:
            steps = (self.ticks - start) * self.step
            return f"sqlite3: about {steps} virtual-machine steps" if steps else None

        return text


class Sqlite3Adapter(Adapter):
    name = "sqlite3"
    can_cancel = True
    counts_executemany = True
    # sqlite3's Connection.cursor() only builds a Python object (no sqlite3_* call)
    cursor_anywhere = True
    # the hook raises "interrupted" mid-fetch: a clean stop, never a bogus row
    cancel_while_fetching = True
    # the user's own interrupt() is sqlite3's: sticky, connection-wide, any thread
    direct_extras = frozenset({"interrupt"})

    def connect(self, factory: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        # The connection is used from asynchdb's worker threads, one at a time
        # (the channel's ownership rule), so sqlite3's same-thread check must be
        # off unless the caller asked for it explicitly.
        mod = self.module
        if mod is not None and factory is getattr(mod, "connect", None):
            kwargs.setdefault("check_same_thread", False)
        return factory(*args, **kwargs)

    def prepare(self, conn: ConnectionView) -> None:
        hook = _Hook(conn)
        conn.state = hook
        conn.raw.set_progress_handler(hook, GRANULARITY)

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # Nothing to send: the hook sees the job's abort flag at its next call,
        # at most GRANULARITY instructions later.
        return None

    def is_cancel_error(self, exc: BaseException) -> bool:
        mod = self.module
        return (mod is not None and isinstance(exc, mod.OperationalError)
                and bool(exc.args) and exc.args[0] == "interrupted")

    def text_source(self, conn: ConnectionView,
                    call: CallView) -> Optional[Callable[[], Optional[str]]]:
        hook = conn.state
        return hook.text_for() if hook is not None else None

    def extra(self, conn: ConnectionView, name: str) -> Any:
        if name == "set_progress_handler" and conn.state is not None:
            return conn.state.set_user_handler
        return None
