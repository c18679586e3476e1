"""Connection pools: one async pool per event loop, and sync sockets bound by a deadline."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, NamedTuple

import httpcore
import httpx

__all__ = ["LoopPool", "bound_reads", "close_at_loop_shutdown"]


class LoopPool(NamedTuple):
    """An event loop's connection pool and the generator that closes it at loop shutdown."""

    http: httpx.AsyncClient
    closer: AsyncGenerator[None, None]


async def close_at_loop_shutdown(http: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Suspended for the life of the event loop; closes the pool when the loop shuts down.

    ``asyncio.run`` (and every runner built on ``loop.shutdown_asyncgens``) closes the async
    generators still alive at shutdown, inside the loop, so the pool is closed cleanly even when
    the caller never calls ``aclose()``.
    """
    try:
        yield
    finally:
        await http.aclose()


class DeadlineBackend:
    """httpcore's sync network backend, with every stream wrapped by ``wrap``."""

    def __init__(self, backend: Any, wrap: Callable[[Any], Any]) -> None:
        self._backend = backend
        self._wrap = wrap

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(self._backend.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bound_reads(transport: httpx.BaseTransport, wrap: Callable[[Any], Any]) -> None:
    """Have the sync connection pool of an httpx transport embedguard made wrap its streams
    (the drivers' deadline-bound stream).

    Only the transports embedguard creates itself; a user's own client or transport is left as
    it is (each read then gets the read timeout, as httpx does). Without httpcore's usual pool
    (another httpx version), nothing changes.
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.SyncBackend):
        pool._network_backend = DeadlineBackend(backend, wrap)  # type: ignore[union-attr]
