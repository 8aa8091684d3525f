"""ClickHouse (``clickhouse_driver.dbapi``): ``KILL QUERY`` for a query id of our own, everywhere.

The invariant: every statement gets a query id of its own (the process's
random UUID prefix and a counter, or the one the user set with
``cursor.set_query_id``), and a cancel names that id
and nothing else, so it can never stop the next statement, whenever it
arrives.  Cursors made through the wrapped connection are instances of a
subclass of the driver's cursor (the connection's ``cursor`` uses it as
``cursor_factory``) whose ``execute`` and ``executemany`` pick the id just
before the statement goes out, on every path: asynchronous, synchronous,
with or without a deadline.  A cursor the driver made before ``wrap()`` gets
its id from the adapter before each asynchronous call instead.

The driver has no cancel that another thread may call: ``Client.cancel`` writes
to the socket the executing thread is reading.  ClickHouse has one:
``KILL QUERY WHERE query_id = ...`` sent on a second connection.  A DB-API
"connection" of this driver is only a factory: each cursor is a client with a
TCP connection of its own, so the adapter's second connection is simply one
more cursor of the same connection (same host, user, password), made in
:meth:`ClickHouseAdapter.prepare`, which connects only when first used.

A query on a ``Distributed`` table runs as one *initial* query on the server
the client talks to and one part per other shard, each with a query id of its
own and ``initial_query_id`` = ours.  So a cancel, on the aborting thread:

1. kills by ``initial_query_id`` on every other server of the clusters the
   server knows (``system.clusters``, ``is_local = 0``; found on the first
   cancel, one cursor per server, database ``system``), then
2. kills by ``query_id`` on the connection's own server.

Measured here (clickhouse-driver 0.2.11, two 18.16 servers on one machine,
docs/drivers.md): in that order each ``KILL ... ASYNC`` answers in 1-4 ms and
the executing thread gets ``OperationalError`` wrapping ``ServerException``
code 394 ("Query was cancelled") about 4 ms after the cancel; killing the
initial query first makes that ``KILL`` wait about 90 ms (it waits for the
connections to the shards) and the shard parts stop about 100 ms later.

Hazards, all reproduced with the raw driver:

* **The late shard.**  A kill that reaches the initial query in its first
  milliseconds stops it before it has sent its shard parts; a part can then
  start on another server after the kill, and runs to its end (3-4 of 40 tries
  with one kill; docs/drivers.md).  The engine re-sends the cancel every
  :attr:`ClickHouseAdapter.reissue_cancel` seconds while the call runs, and
  :meth:`ClickHouseAdapter.after_abort` keeps killing by ``initial_query_id``
  on the other servers for :data:`SWEEP` seconds after an aborted call ended
  (0 of 40 survived that way with the raw driver; through asynchdb, 0 of 200
  aborts sent 0-4 ms after the driver call started).  The sweep blocks the connection's next
  statement, so it runs only where a late part is possible: when the first
  cancel came within :data:`EARLY` seconds of the statement's start (or its
  start is unknown), and only on the servers where no kill has found the
  statement's part yet (one part per server and query).
* **A cancel before the statement started** finds nothing to kill: re-sent,
  as above.
* **Disconnecting does not stop a query.**  Closing the connection (or the
  process exiting) while a query runs leaves it running on every shard;
  ``close()`` from another thread returns at once and the executing thread
  gets ``OSError(9, 'Bad file descriptor')`` instead of a DB-API error.  The
  engine's order (abort, bounded wait, close on the owner) is required here.
* **Connection.close() leaves every other cursor open** (it walks its cursor
  list while each close removes an entry): their sockets stay open until the
  collector finds them.  :meth:`ClickHouseAdapter.close_connection` closes
  every cursor itself.
* **A killed query drops the cursor's TCP connection** (the driver
  disconnects after any server exception); the next ``execute`` reconnects by
  itself, so the cursor stays usable.  Nothing else needs repairing:
  ClickHouse has no transactions.

Threads: ``prepare``, ``text_source``/``progress_source`` (building) and
``after_abort`` run on the thread that owns the connection; ``cancel`` on the
aborting thread while the statement runs (the engine serialises cancels and
never lets one overlap ``after_abort``, a cursor close or the connection's
close, so the kill cursors are never used by two threads at once); the
progress and text callables on any thread; a cursor's ``execute`` on whichever
thread runs it.

Progress is ClickHouse's own: the progress packets the server sends about
every 100 ms (``interactive_delay``), which the driver adds up in the cursor's
client (``last_query.progress``: rows read, rows it expects to read).  The
progress source only reads those integers (no round trip).  A total of 0 (an
unbounded source such as ``system.numbers``) is reported as 0 of 1 with the
rows in the status text.  The driver keeps that object on the cursor's private
``_client``; if a release moves it the adapter reports no progress (0 of 1)
rather than failing.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from typing import Any, Callable, Optional

from ..adapters import Adapter, CallView, ConnectionView

log = logging.getLogger("asynchdb")

#: ClickHouse's error code QUERY_WAS_CANCELLED.
QUERY_WAS_CANCELLED = 394
#: Seconds after an aborted call ended during which its shard parts are still
#: killed on the other servers (a part started late appeared up to about 30 ms
#: after the call ended here).
SWEEP = 0.06
#: A first cancel later than this after the statement started finds every
#: shard's part already there (parts start within milliseconds): no sweep.
EARLY = 0.25
#: Seconds between two kills of that sweep.
SWEEP_EVERY = 0.005
#: Seconds a connection to another server of the cluster may take to open.
PEER_CONNECT_TIMEOUT = 2.0
_STATEMENT_CALLS = frozenset({"execute", "executemany"})


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: driver cursor class -> its subclass that gives each statement a query id
_ID_CURSORS: dict[type, type] = {}

#: Query ids: one random prefix per process and a counter, unique on the
#: servers as a ``uuid4`` per statement would be, without reading the
#: system's random source before every statement (on the worker's path
#: between the caller's call and the driver's: benchmarks P2).
_ID_PREFIX = uuid.uuid4().hex
_id_counter = itertools.count(1)
_id_lock = threading.Lock()


def _new_query_id() -> str:
    # any thread; the lock keeps ids unique without relying on the GIL (the
    # server refuses a query whose id another running query has)
    with _id_lock:
        n = next(_id_counter)
    return f"{_ID_PREFIX}-{n:x}"


def _id_cursor(base: type) -> type:
    """The subclass of the driver's cursor that gives each statement its own query id."""
    cls = _ID_CURSORS.get(base)
    if cls is not None:
        return cls

    class QueryIdCursor(base):  # type: ignore[misc]
        """The driver's cursor; ``execute`` and ``executemany`` set a fresh query id.

        Runs on whichever thread runs the statement.  ``asynchdb_query_id``
        is the id of the statement running or run last (read by the
        aborting thread: one attribute, replaced before the statement is sent).
        """

        asynchdb_query_id: Optional[str] = None
        _asynchdb_own_id: Optional[str] = None

        def set_query_id(self, query_id: Any) -> None:
            # the user's own id: used for every later statement, as the driver does
            self._asynchdb_own_id = query_id or None
            super().set_query_id(query_id)

        def _asynchdb_next_id(self) -> None:
            query_id = self._asynchdb_own_id or _new_query_id()
            super().set_query_id(query_id)
            self.asynchdb_query_id = str(query_id)

        def execute(self, operation: Any, parameters: Any = None) -> Any:
            self._asynchdb_next_id()
            return super().execute(operation, parameters)

        def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
            self._asynchdb_next_id()
            return super().executemany(operation, seq_of_parameters)

    QueryIdCursor.__name__ = QueryIdCursor.__qualname__ = base.__name__
    _ID_CURSORS[base] = QueryIdCursor
    return QueryIdCursor


class _Live:
    """One running statement: its query id and where its progress is read."""

    __slots__ = ("call", "query_id", "started", "client", "stale", "last")

    def __init__(self, call: CallView, query_id: Optional[str], client: Any) -> None:
        self.call = call
        #: the id given before the call (a plain driver cursor), or None: the
        #: cursor picks it as the statement goes out (``asynchdb_query_id``)
        self.query_id = query_id
        self.started = time.monotonic()
        self.client = client
        # the driver makes a new QueryInfo when the query starts: until then
        # last_query is the previous statement's
        self.stale = getattr(client, "last_query", None)
        #: the last figures read (a failed query's client forgets its own)
        self.last: Optional[tuple[int, int, int]] = None

    def _figures(self) -> Optional[tuple[int, int, int]]:
        info = getattr(self.client, "last_query", None)
        p = None if info is None or info is self.stale else getattr(info, "progress", None)
        if p is not None:
            self.last = (int(p.rows), int(p.total_rows), int(p.written_rows))
        return self.last

    def progress(self) -> Optional[tuple[int, int]]:
        # any thread (Operation.get_status): reads three integers
        figures = self._figures()
        if figures is None:
            return None
        rows, total, _ = figures
        if total <= 0:
            return 0, 1
        return min(rows, total), total

    def text(self) -> Optional[str]:
        figures = self._figures()
        elapsed = time.monotonic() - self.started
        if figures is None:
            return f"clickhouse: no progress from the server yet, {elapsed:.1f} s elapsed"
        rows, total, written = figures
        rate = rows / elapsed if elapsed > 0 else 0.0
        of = f" of ~{total:,}" if total > 0 else ""
        text = f"clickhouse: {rows:,}{of} rows read, {rate:,.0f} rows/s, {elapsed:.1f} s elapsed"
        if written:
            text += f", {written:,} rows written"
        return text


class _State:
    """Per-connection adapter state (``ConnectionView.state``)."""

    __slots__ = ("killer", "peers", "live", "aborted", "early", "killed", "assigned", "lock")

    def __init__(self, killer: Any) -> None:
        #: A driver cursor on the connection's own server, used only to kill.
        self.killer = killer
        #: Driver cursors on the other servers of the clusters; None until found.
        self.peers: Optional[list[Any]] = None
        #: The statement running now (set on the owner thread before the call).
        self.live: Optional[_Live] = None
        #: The query id the last cancel was sent for (after_abort sweeps it).
        self.aborted: Optional[str] = None
        #: Its first cancel came early: a shard's part may start after it.
        self.early = True
        #: Indexes in ``peers`` where a kill found (and stopped) its part.
        self.killed: set[int] = set()
        #: driver cursor -> the query id asynchdb last gave it (not the user's own)
        self.assigned: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        #: Guards peer discovery (cancel and after_abort never overlap, but be safe).
        self.lock = threading.Lock()


class ClickHouseAdapter(Adapter):
    name = "clickhouse"
    #: Pure Python: Ctrl-C must not land inside its socket read, so it is
    #: held off while a main-thread call runs (docs/interrupts.md).
    interrupt_on_worker = True
    hold_interrupt = True
    can_cancel = True
    #: A kill that arrives before the query, or before a shard's part, finds
    #: nothing: re-sent while the call runs.
    reissue_cancel = 0.02
    #: ``Connection.cursor()`` only builds a client object; it talks to no server.
    cursor_anywhere = True

    def __init__(self, module: Any) -> None:
        # a wrapped connection's class lives in clickhouse_driver.dbapi.connection;
        # the DB-API names (exceptions) are on clickhouse_driver.dbapi
        if module is None or getattr(module, "__name__", "") != "clickhouse_driver.dbapi":
            module = importlib.import_module("clickhouse_driver.dbapi")
        super().__init__(module)

    # -- owner thread --------------------------------------------------------
    def prepare(self, conn: ConnectionView) -> None:
        raw = conn.raw
        conn.state = _State(raw.cursor())
        make = raw.cursor
        factory = _id_cursor(importlib.import_module("clickhouse_driver.dbapi.cursor").Cursor)

        def cursor(cursor_factory: Any = None) -> Any:
            # any thread (the driver's cursor() talks to no server)
            return make(cursor_factory or factory)

        # an instance attribute: the connection's own cursor() is unchanged for
        # the adapter, and a user's cursor_factory still wins
        raw.cursor = cursor

    def _live(self, conn: ConnectionView, call: CallView) -> Optional[_Live]:
        state: Optional[_State] = conn.state
        cursor = call.cursor
        if state is None or call.kind not in _STATEMENT_CALLS or cursor is None:
            return None
        live = state.live
        if live is not None and live.call is call:
            return live
        query_id: Optional[str] = None
        if not hasattr(cursor, "asynchdb_query_id"):
            # a cursor made before wrap(): give it an id here
            own = getattr(cursor, "_query_id", None)
            if own and state.assigned.get(cursor) != own:
                query_id = str(own)  # the user's own id (set_query_id): kill that one
            else:
                query_id = _new_query_id()
                cursor.set_query_id(query_id)
                state.assigned[cursor] = query_id
        live = _Live(call, query_id, getattr(cursor, "_client", None))
        state.live = live
        return live

    def text_source(self, conn: ConnectionView,
                    call: CallView) -> Optional[Callable[[], Optional[str]]]:
        # called before progress_source, on the owner thread, before the driver call
        live = self._live(conn, call)
        return None if live is None else live.text

    def progress_source(self, conn: ConnectionView,
                        call: CallView) -> Optional[Callable[[], Optional[tuple[int, int]]]]:
        live = self._live(conn, call)
        return None if live is None else live.progress

    def after_abort(self, conn: ConnectionView) -> None:
        # A shard's part that started after the kills (the late shard) would
        # run to its end: keep killing it on the other servers for a moment.
        state: Optional[_State] = conn.state
        if state is None:
            return
        query_id, state.aborted, state.live = state.aborted, None, None
        if not query_id or not state.peers or not state.early:
            return
        pending = {i: p for i, p in enumerate(state.peers) if i not in state.killed}
        pause = threading.Event()
        deadline = time.monotonic() + SWEEP
        while pending:
            for i, peer in list(pending.items()):
                if self._kill(peer, "initial_query_id", query_id, quiet=True):
                    del pending[i]  # its part was there, and is stopped now
            if time.monotonic() >= deadline:
                return
            pause.wait(SWEEP_EVERY)

    # -- the aborting thread ---------------------------------------------------
    def cancel(self, conn: ConnectionView, call: CallView) -> None:
        state: Optional[_State] = conn.state
        if state is None:
            return
        live = state.live
        query_id = getattr(call.cursor, "asynchdb_query_id", None)
        if query_id is None and live is not None and live.call is call:
            query_id = live.query_id
        if query_id is None:
            return  # no id given yet: nothing runs; the cancel is re-sent
        # Just before the statement goes out the cursor may still hold the
        # previous statement's id: killing that one stops nothing that runs
        # now, and the re-sent cancel names the new one.
        if state.aborted != query_id:  # the first cancel for this statement
            started = live.started if live is not None and live.call is call else None
            state.aborted = query_id
            state.killed = set()
            state.early = started is None or time.monotonic() - started < EARLY
        # the shards' parts first: killed the other way round, the initial
        # query's KILL waits about 90 ms for its connections to the shards
        for i, peer in enumerate(self._peers(state, conn.raw)):
            if i not in state.killed \
                    and self._kill(peer, "initial_query_id", query_id, quiet=True):
                state.killed.add(i)
        self._kill(state.killer, "query_id", query_id, quiet=False)

    def _kill(self, cursor: Any, column: str, query_id: str, *, quiet: bool) -> bool:
        """Send one ``KILL QUERY ... ASYNC``; whether it found a query to stop."""
        try:
            cursor.execute(f"KILL QUERY WHERE {column} = {_quoted(query_id)} ASYNC")
            return bool(cursor.fetchall())
        except Exception:
            if not quiet:
                raise
            log.debug("asynchdb: KILL QUERY on another server failed", exc_info=True)
            return False

    def _peers(self, state: _State, raw: Any) -> list[Any]:
        """Cursors on the other servers of the clusters (found once, on first use)."""
        with state.lock:
            if state.peers is not None:
                return state.peers
            peers: list[Any] = []
            try:
                state.killer.execute(
                    "SELECT DISTINCT host_address, port FROM system.clusters "
                    "WHERE is_local = 0 ORDER BY host_address, port")
                servers = [(str(h), int(p)) for h, p in state.killer.fetchall()]
            except Exception:
                log.debug("asynchdb: reading system.clusters failed", exc_info=True)
                return peers  # not cached: tried again on the next cancel
            for host, port in servers:
                try:
                    peer = raw.cursor()
                    link = peer._client.connection
                except Exception:
                    log.debug("asynchdb: no cursor for another server", exc_info=True)
                    return peers
                # a server of its own: its own host list, a short connect timeout,
                # and a database every server has
                link.hosts = deque([(host, port)])
                link.connect_timeout = PEER_CONNECT_TIMEOUT
                link.database = "system"
                peers.append(peer)
            state.peers = peers
            return peers

    def is_cancel_error(self, exc: BaseException) -> bool:
        seen: set[int] = set()
        current: Optional[BaseException] = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if getattr(current, "code", None) == QUERY_WAS_CANCELLED:
                return True
            inner = current.args[0] if current.args else None
            if isinstance(inner, BaseException) \
                    and getattr(inner, "code", None) == QUERY_WAS_CANCELLED:
                return True
            current = current.__cause__ or current.__context__
        return False

    def close_connection(self, raw: Any) -> None:
        # Connection.close() iterates over its cursor list while each cursor's
        # close() removes itself from it, so every other cursor stays open
        # (its socket too): close them from a copy first.
        for cursor in list(getattr(raw, "cursors", ())):
            cursor.close()
        raw.close()

    def describe(self, raw: Any) -> str:
        return "clickhouse_driver"
