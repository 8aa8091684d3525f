"""pg8000: abort with a PostgreSQL cancel request for the connection's backend.

pg8000 (pure Python) has no cancel of its own.  PostgreSQL's protocol has one
that needs no login: a ``CancelRequest`` message (length 16, code 80877102, the
backend's process id and secret key) sent on a new connection to the server,
which signals the backend and closes that connection.  pg8000 keeps the
backend's key (the ``BackendKeyData`` message of the start-up) on the
connection as ``_backend_key_data``; the server's address is the peer of its
socket.  :meth:`Pg8000Adapter.prepare` reads both on the owner thread, and
:meth:`Pg8000Adapter.cancel` sends the request from the aborting thread and
waits (bounded) until the server closed the request's connection: by then the
backend has been signalled.  This is what libpq's ``PQcancel`` does.  The
executing thread gets pg8000's ``ProgrammingError`` whose first argument is the
server's error fields, ``C`` (SQLSTATE) ``57014``.  Measured here
(docs/drivers.md): 2.1 ms median.  ``pg_cancel_backend(pid)`` on a second,
logged-in connection would do the same at the cost of a login; it is not
needed while pg8000 keeps the key.  A pg8000 that no longer keeps it (the
attributes are pg8000's internals) gets no cancel: an abort then abandons the
call honestly (:attr:`Pg8000Adapter.can_cancel` is False for that connection).

Hazards, measured, and how they are met:

* The cancel is connection-wide: a naive cancel sent while the next statement
  starts cancelled it in 39 of 40 trials.  The engine sends it only under the
  channel's cancel lock while the aborted job is the statement running, and
  starts the next statement only after :meth:`Pg8000Adapter.cancel` returned
  (once the server has signalled the backend; a backend waiting for its next
  command ignores the signal): 0 of 40 then.
* A request that reaches the server before the query does is ignored: the
  engine re-issues it every :attr:`Pg8000Adapter.reissue_cancel` seconds
  while the call runs.  pg8000 sends ``BEGIN`` before the first statement of
  a transaction; a cancel landing on that ``BEGIN`` fails it with the same
  57014, which ends the operation CANCELED too.
* ``close()`` from another thread while a statement runs returns at once, the
  server goes on running the statement, and the executing thread fails only
  when the statement ends: asynchdb aborts first and closes on the owner.
* A connect that fails after pg8000 opened its socket (a server that hangs
  up) leaves that socket open (raw too): :meth:`Pg8000Adapter.connect`
  closes it.
* ``close()`` after the server went away (a killed backend) raises
  ``InterfaceError("network error")`` although it closed its socket:
  :meth:`Pg8000Adapter.close_connection` lets that one pass (logged).

State after an abort: inside a transaction (pg8000's default) PostgreSQL fails
the whole transaction (every later statement raises 25P02, and pg8000 reports
the transaction status ``E``).  :meth:`Pg8000Adapter.after_abort` rolls it
back so the connection is usable at once; the earlier work of that
transaction is discarded (it could not have been committed anyway).
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any, Callable, Optional

from ..adapters import Adapter, CallView, ConnectionView

log = logging.getLogger("asynchdb")

#: PostgreSQL's ``CancelRequest`` code (1234 << 16 | 5678).
CANCEL_REQUEST_CODE = 80877102
#: Seconds a cancel request may take (connect, send, the server's close).
CANCEL_TIMEOUT = 5.0
#: SQLSTATE query_canceled.
QUERY_CANCELED = "57014"
#: pg8000's transaction status for a failed transaction (``ReadyForQuery`` 'E').
_FAILED = b"E"


class _Target:
    """Where and how to send the cancel request of one connection."""

    __slots__ = ("address", "family", "message")

    def __init__(self, family: int, address: Any, key: bytes) -> None:
        self.family = family
        self.address = address
        self.message = struct.pack("!ii", 16, CANCEL_REQUEST_CODE) + key


def _target_of(raw: Any) -> Optional[_Target]:
    """The cancel target of a pg8000 connection, or None when it cannot be known."""
    key = getattr(raw, "_backend_key_data", None)
    sock = getattr(raw, "_usock", None)
    if not isinstance(key, (bytes, bytearray)) or len(key) != 8 or sock is None:
        return None
    try:
        family = sock.family
        peer = sock.getpeername()
    except (OSError, AttributeError):
        return None
    if family not in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
        return None
    return _Target(family, peer, bytes(key))


def _close_half_open(exc: BaseException) -> None:
    """Close the socket of a pg8000 connection whose start-up failed.

    pg8000 opens its socket in ``Connection.__init__`` and does not close it
    when the start-up then fails (a server that hangs up, a refused login):
    the socket stays open until the collector finds it (a ResourceWarning;
    measured with pg8000 1.31.6, raw).  The half-built connection is ``self``
    in a frame of the error's traceback; its socket is closed here.
    """
    tb = exc.__traceback__
    while tb is not None:
        half = tb.tb_frame.f_locals.get("self")
        sock = getattr(half, "_usock", None)
        if isinstance(sock, socket.socket) and type(half).__module__.startswith("pg8000"):
            for name in ("_sock", "_usock"):
                part = getattr(half, name, None)
                if part is not None:
                    try:
                        part.close()
                    except OSError:
                        pass
            return
        tb = tb.tb_next


def send_cancel_request(target: _Target, timeout: float = CANCEL_TIMEOUT) -> None:
    """Send PostgreSQL's ``CancelRequest`` and wait until the server closed it."""
    with socket.socket(target.family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(target.address)
        s.sendall(target.message)
        # the server answers nothing: it signals the backend, then closes
        while s.recv(64):
            pass


class Pg8000Adapter(Adapter):
    name = "pg8000"
    can_cancel = True
    #: A cancel request that reached the server before the query did is ignored.
    reissue_cancel = 0.05
    #: Pure Python: Ctrl-C must not land inside its socket read, so it is
    #: held off while a main-thread call runs (docs/interrupts.md).
    interrupt_on_worker = True
    hold_interrupt = True
    #: pg8000's ``executemany`` executes one parameter set at a time.
    counts_executemany = True
    #: ``cursor()`` only builds a Python object: it need not wait for a
    #: running statement (an event loop's thread would stall meanwhile).
    cursor_anywhere = True

    def connect(self, factory: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        # owner thread
        try:
            return factory(*args, **kwargs)
        except BaseException as exc:
            _close_half_open(exc)
            raise

    def prepare(self, conn: ConnectionView) -> None:
        # owner thread: nothing else uses the connection now
        target = _target_of(conn.raw)
        conn.state = target
        if target is None:
            self.can_cancel = False  # an honest abandon for this connection

    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        # aborting thread, under the channel's cancel lock, while the call runs;
        # a socket of its own: pg8000's connection is not touched
        target = conn.state
        if isinstance(target, _Target):
            send_cancel_request(target)

    def is_cancel_error(self, exc: BaseException) -> bool:
        # pg8000 raises DatabaseError subclasses whose first argument is the
        # server's error fields (a dict); the class depends on pg8000's module
        if not type(exc).__module__.startswith("pg8000") or not exc.args:
            return False
        fields = exc.args[0]
        return isinstance(fields, dict) and fields.get("C") == QUERY_CANCELED

    def after_abort(self, conn: ConnectionView) -> None:
        # owner thread: a statement canceled inside a transaction fails it
        raw = conn.raw
        if getattr(raw, "_transaction_status", None) == _FAILED:
            raw.rollback()

    def close_connection(self, raw: Any) -> None:
        # owner thread.  pg8000 says goodbye to the server before it closes its
        # socket, and raises InterfaceError("network error") when the server
        # is gone (a killed backend); the socket is closed all the same.
        try:
            raw.close()
        except Exception as exc:
            if getattr(raw, "_usock", True) is not None or "network error" not in str(exc):
                raise
            log.debug("asynchdb: pg8000 could not say goodbye to a server that is gone: %r",
                      exc)

    def describe(self, raw: Any) -> str:
        return "pg8000"
