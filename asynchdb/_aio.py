"""asyncio: ``await op`` without blocking the event loop, and task cancellation as abort.

This module is imported only by ``Operation.__await__`` (so ``import asynchdb``
never imports asyncio) and is the only place that knows asyncio.

Threads:

* the event loop's thread runs :func:`wait`: it creates an asyncio future per
  awaiting task and suspends on it; it never blocks on a lock, a driver call
  or a cancel;
* the thread that ends the operation (a worker, or the aborting thread) runs
  the operation's ``concurrent.futures.Future`` callbacks, which only hand
  the wake-up to the loop with ``call_soon_threadsafe``;
* the timer thread sends the abort when an awaiting task is cancelled: a
  cancel can take milliseconds (psycopg opens a connection to send it,
  MariaDB a ``KILL QUERY``) and listeners may take as long as they like to
  decide on a veto, and neither may stall the loop.

Cancelling the awaiting task aborts the operation and the task raises
``CancelledError`` once the operation ended, or once a listener vetoed the
abort, or after :data:`DRAIN` seconds at most, whichever comes first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from ._hub import HUB
from .errors import AbortVetoed, OperationCanceled

if TYPE_CHECKING:
    from ._operation import Job, Operation

#: Seconds a cancelled task waits at most for its aborted operation to end.
DRAIN = 5.0


def _waker(loop: asyncio.AbstractEventLoop,
           fut: asyncio.Future[None]) -> Callable[[Any], None]:
    """A done-callback (any thread) that resolves ``fut`` on its loop."""

    def resolve() -> None:
        # loop thread
        if not fut.done():
            fut.set_result(None)

    def wake(_: Any) -> None:
        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:
            pass  # the loop was closed meanwhile: nobody is waiting any more

    return wake


def _ended_future(loop: asyncio.AbstractEventLoop, job: Job) -> asyncio.Future[None]:
    """An asyncio future of ``loop`` resolved once ``job`` ended (any thread ends it)."""
    fut: asyncio.Future[None] = loop.create_future()
    job.future().add_done_callback(_waker(loop, fut))
    return fut


async def wait(op: Operation[Any]) -> Any:
    """``await op``: the operation's value or error, as ``op.result()`` gives it."""
    job = op._job
    if not job.done():
        loop = asyncio.get_running_loop()
        ended = _ended_future(loop, job)
        try:
            await ended
        except asyncio.CancelledError:
            # the awaiting task was cancelled (task.cancel, wait_for, timeout,
            # a TaskGroup failing): abort the operation, wait for it to end
            # (or for a veto, or DRAIN seconds), then let the cancellation go on
            await _abort_and_drain(loop, job)
            raise
    # ended: result() does not block
    return op.result(0)


async def _abort_and_drain(loop: asyncio.AbstractEventLoop, job: Job) -> None:
    """Abort ``job`` off the loop and wait until it ended or the abort was refused."""
    if job.done():
        return
    settled: asyncio.Future[None] = loop.create_future()
    wake = _waker(loop, settled)
    job.future().add_done_callback(wake)

    def send() -> None:
        # timer thread: the cancel (or the listeners' veto) may take a while
        try:
            job.abort(OperationCanceled(f"{job.kind} was aborted: the awaiting task "
                                        "was cancelled"))
        except AbortVetoed:
            wake(None)  # the operation goes on; the task need not wait for it

    HUB.timer.schedule(0.0, send)
    deadline = loop.time() + DRAIN
    while not settled.done():
        left = deadline - loop.time()
        if left <= 0:
            return
        try:
            await asyncio.wait((settled,), timeout=left)
        except asyncio.CancelledError:
            # cancelled again while winding down: the first cancellation is
            # already on its way out; keep waiting for the operation (bounded)
            continue
