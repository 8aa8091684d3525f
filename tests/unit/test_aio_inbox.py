"""The event loop's inbox: one wake-up per batch of ended operations (asynchdb._aio)."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

from asynchdb._aio import _Inbox, _inbox, _Settle


def test_one_wake_up_resolves_every_future_posted_before_it_ran() -> None:
    loop = asyncio.new_event_loop()
    try:
        calls: list[Any] = []
        real = loop.call_soon_threadsafe

        def counting(cb: Any, *args: Any) -> Any:
            calls.append(cb)
            return real(cb, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        inbox = _Inbox(loop)
        futures = [loop.create_future() for _ in range(3)]
        posters = [threading.Thread(target=inbox.post, args=(_Settle(inbox, f),))
                   for f in futures]
        for t in posters:
            t.start()
        for t in posters:
            t.join(5)
        assert len(calls) == 1  # the loop has not run yet: one drain for all three
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*futures), 5))
        assert all(f.result() is None for f in futures)
        # after the drain, the next post schedules a new one
        late = loop.create_future()
        inbox.post(_Settle(inbox, late))
        assert len(calls) == 2
        loop.run_until_complete(asyncio.wait_for(late, 5))
    finally:
        loop.close()


def test_a_post_to_a_closed_loop_is_dropped_quietly() -> None:
    loop = asyncio.new_event_loop()
    inbox = _Inbox(loop)
    fut = loop.create_future()
    loop.close()
    inbox.post(_Settle(inbox, fut))  # no RuntimeError: nobody waits on a closed loop
    assert not fut.done()
    loop2 = asyncio.new_event_loop()
    try:
        assert _inbox(loop2) is _inbox(loop2)  # one inbox a loop
    finally:
        loop2.close()


def test_an_inbox_keeps_no_loop_alive() -> None:
    loop = asyncio.new_event_loop()

    async def one() -> None:
        running = asyncio.get_running_loop()
        fut = running.create_future()
        threading.Thread(target=_Settle(_inbox(running), fut)).start()
        await asyncio.wait_for(fut, 5)

    loop.run_until_complete(one())
    loop.close()
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    assert ref() is None
