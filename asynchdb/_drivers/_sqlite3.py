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
#: sqlite3.connect's position of check_same_thread.
_CHECK_SAME_THREAD = 4


class _Hook:
    """The progress handler installed on every wrapped sqlite3 connection."""

    __slots__ = ("conn", "step", "ticks", "user", "user_count", "user_every")

    @property
    def __name__(self) -> str:
        # sqlite3 reports an error in the handler it holds (this hook) under
        # that object's name: while the user's handler is chained, it is theirs
        user = self.user
        return getattr(user, "__name__", "_Hook") if user is not None else "_Hook"

    def __init__(self, conn: ConnectionView) -> None:
        self.conn = conn
        self.ticks = 0
        self.step = GRANULARITY
        self.user: Optional[Callable[[], Any]] = None
        self.user_every = 1
        self.user_count = 0

    def __call__(self) -> Any:
        # owner thread, inside sqlite3_step; must be quick and never raise
        # (only the user's handler may, and then sqlite3 reports it as theirs)
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
                # its value as it is: sqlite3 takes its truth (and any error in that)
                return user()
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

    #: The caller's check_same_thread (sqlite3's default: True), kept by the
    #: engine for synchronous calls (same_thread) while sqlite3's own is off.
    _same_thread = False

    def connect(self, factory: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        # The connection is used from asynchdb's worker threads, one at a time
        # (the channel's ownership rule), so sqlite3's own same-thread check is
        # turned off; the caller's choice is kept by the engine for synchronous
        # calls (same_thread below), exempting the workers.
        mod = self.module
        if mod is not None and factory is getattr(mod, "connect", None):
            if len(args) > _CHECK_SAME_THREAD:  # given positionally
                self._same_thread = bool(args[_CHECK_SAME_THREAD])
                args = (*args[:_CHECK_SAME_THREAD], False, *args[_CHECK_SAME_THREAD + 1:])
            else:
                self._same_thread = bool(kwargs.get("check_same_thread", True))
                kwargs["check_same_thread"] = False
        return factory(*args, **kwargs)

    def same_thread(self, conn: ConnectionView) -> bool:
        return self._same_thread

    def bound_to_opener(self, raw: Any) -> bool:
        # another thread than the opener's.  cursor() checks the thread (the
        # getters such as total_changes do not); a cursor nobody used is all
        # it leaves behind, closed at once
        try:
            cur = raw.cursor()
        except self.module.ProgrammingError as exc:
            return "thread" in str(exc)
        cur.close()
        return False

    def wrong_thread_error(self, home: int, here: int) -> BaseException:
        # sqlite3's own message (Modules/_sqlite/connection.c)
        return self.module.ProgrammingError(  # type: ignore[no-any-return]
            "SQLite objects created in a thread can only be used in that same thread. "
            f"The object was created in thread id {home} and this is thread id {here}.")

    def prepare(self, conn: ConnectionView) -> None:
        hook = _Hook(conn)
        try:
            conn.raw.set_progress_handler(hook, GRANULARITY)
        except self.module.ProgrammingError:
            # a factory= subclass whose __init__ skipped sqlite3's: the driver
            # returned it, so must we (every call will raise sqlite3's error)
            return
        conn.state = hook

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
