"""Connection pools bound to an event loop, closed when that loop shuts down."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import NamedTuple

import httpx

__all__ = ["LoopPool", "close_at_loop_shutdown"]


class LoopPool(NamedTuple):
    http: httpx.AsyncClient
    closer: AsyncGenerator[None, None]


async def close_at_loop_shutdown(http: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Suspended for the life of the event loop; closes the pool when the loop shuts down.

    An httpx.AsyncClient belongs to one event loop. ``asyncio.run`` (and every runner built on
    ``loop.shutdown_asyncgens``) closes the async generators still alive at shutdown, inside the
    loop, so the pool is closed cleanly even when the caller never calls ``aclose()``.
    """
    try:
        yield
    finally:
        await http.aclose()
