"""One bound on requests in flight, shared by threads and any number of event loops."""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["Slots"]

_Waiter = tuple[asyncio.AbstractEventLoop | None, "asyncio.Future[None] | threading.Event"]


class Slots:
    """A counting semaphore that sync callers and coroutines of any loop wait on together.

    Waiters are served in arrival order; a freed slot is handed straight to the next waiter, so
    the bound holds across threads and loops (``asyncio.Semaphore`` belongs to one loop, and a
    ``threading.Semaphore`` would block an event loop).
    """

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._free = size
        self._waiters: deque[_Waiter] = deque()

    def acquire(self) -> None:
        """Take a slot, blocking this thread until one is free."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            event = threading.Event()
            self._waiters.append((None, event))
        event.wait()

    async def aacquire(self) -> None:
        """Take a slot without blocking the event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            future: asyncio.Future[None] = loop.create_future()
            waiter: _Waiter = (loop, future)
            self._waiters.append(waiter)
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:  # not handed a slot yet: just leave the queue
                    self._waiters.remove(waiter)
            # Otherwise the slot is on its way; _hand() sees the cancellation and frees it.
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiter, else to the pool."""
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()
                    return
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(self._hand, waiter)
                    return
            self._free += 1

    def _hand(self, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled meanwhile: pass the slot on
            self.release()
        else:
            future.set_result(None)
