"""Background population: a bounded row buffer between the worker and the reader.

The worker fetches rows from the driver cursor in batches and appends them
here; the reader's ``fetch*`` calls take them out, in order, blocking only
until the next row arrives or the set ends.  When the buffer holds ``limit``
rows the worker *parks*: it gives the connection back (other operations on it
can run) and the reader re-queues the population once it has taken half of
the rows out.  Memory therefore never grows with the size of the result, and
no thread waits for a slow reader.

Threads: ``put``/``finish`` run on the thread that owns the connection;
``take*`` run on the reader's thread.  Everything is guarded by ``cond``.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Optional

#: Rows the buffer holds before the worker holds back (per cursor).
DEFAULT_LIMIT = 10_000
#: Rows in the first batch: one, so the first row is readable at once.  Later
#: batches grow 16-fold up to BATCH.
FIRST_BATCH = 1
#: Rows in a batch once the population is under way.
BATCH = 1_000


class RowBuffer:
    """Rows fetched by the worker and not read yet (internal)."""

    def __init__(self, limit: Optional[int]) -> None:
        self.cond = threading.Condition(threading.Lock())
        self._chunks: collections.deque[list[Any]] = collections.deque()
        self._head = 0          # rows of _chunks[0] already taken
        self._count = 0         # rows buffered
        self.fetched = 0        # rows the worker put in, in total
        self.limit = limit      # None: unbounded (PREPOPULATE)
        self.ended = False      # no more rows will come
        self.error: Optional[BaseException] = None  # raised to the reader after the rows
        self.parked = False     # the worker stopped for space; resume() restarts it
        self.resume: Optional[Callable[[], None]] = None
        self.started = False    # the worker is populating: reads come from here
        #                         (set before the job turns POPULATING, under its lock)

    def unpark(self) -> bool:
        """Take the parked worker's slot (an abort); True if it was parked."""
        with self.cond:
            if not self.parked:
                return False
            self.parked = False
            self.resume = None
            return True

    # -- worker side -----------------------------------------------------
    def space(self) -> int:
        with self.cond:
            if self.limit is None:
                return BATCH
            return self.limit - self._count

    def put(self, rows: list[Any]) -> None:
        with self.cond:
            self._chunks.append(rows)
            self._count += len(rows)
            self.fetched += len(rows)
            self.cond.notify_all()

    def park(self, resume: Callable[[], None]) -> bool:
        """Hold back until the reader makes room; False if there is room already."""
        with self.cond:
            if self.limit is None or self._count < self.limit:
                return False
            self.parked = True
            self.resume = resume
            return True

    def finish(self, error: Optional[BaseException] = None) -> None:
        with self.cond:
            self.ended = True
            self.parked = False
            self.resume = None
            if error is not None:
                self.error = error
            self.cond.notify_all()

    # -- reader side -----------------------------------------------------
    def _wait(self, timeout: Optional[float]) -> None:
        # caller holds cond: wait for a row or the end
        while not self._count and not self.ended:
            self.cond.wait(timeout)

    def _take(self, n: int) -> list[Any]:
        # caller holds cond
        out: list[Any] = []
        while n > 0 and self._chunks:
            chunk = self._chunks[0]
            avail = len(chunk) - self._head
            if avail <= n:
                out.extend(chunk[self._head:] if self._head else chunk)
                self._chunks.popleft()
                self._head = 0
                n -= avail
            else:
                out.extend(chunk[self._head:self._head + n])
                self._head += n
                n = 0
        self._count -= len(out)
        return out

    def _after_take(self) -> Optional[Callable[[], None]]:
        # caller holds cond: restart a parked worker once half the room is free
        if self.parked and self.limit is not None and self._count <= self.limit // 2:
            self.parked = False
            resume, self.resume = self.resume, None
            return resume
        return None

    def _raise_error(self) -> None:
        # caller holds cond: the driver error comes after the last row, once
        err, self.error = self.error, None
        if err is not None:
            raise err

    def take_one(self) -> Any:
        with self.cond:
            self._wait(None)
            if not self._count:
                self._raise_error()
                return None
            row = self._take(1)[0]
            resume = self._after_take()
        if resume is not None:
            resume()
        return row

    def take_many(self, n: int) -> list[Any]:
        with self.cond:
            self._wait(None)
            if not self._count:
                self._raise_error()
                return []
            rows = self._take(n)
            resume = self._after_take()
        if resume is not None:
            resume()
        return rows

    def take_all(self) -> list[Any]:
        out: list[Any] = []
        while True:
            with self.cond:
                self._wait(None)
                if not self._count:
                    if out:
                        return out
                    self._raise_error()
                    return out
                out.extend(self._take(self._count))
                resume = self._after_take()
            if resume is not None:
                resume()

    def buffered(self) -> int:
        with self.cond:
            return self._count
