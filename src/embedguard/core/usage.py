"""Per-call usage: the tokens, requests and cost of the calls made inside a ``with`` block.

Metrics count everything a client ever did; usage answers "what did *this* call cost?"::

    from embedguard.core.usage import track_usage

    with track_usage() as usage:
        client.embed(texts)
    print(usage.tokens, usage.requests, usage.cost)

It follows the context (``contextvars``), so concurrent calls in other threads or tasks are not
counted, while the batches a call sends on worker threads or tasks are. Texts served from the
cache cost nothing and are counted in ``cached``. Small calls merged into one request by
micro-batching are counted in the context that opened the batching window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["Usage", "track_usage"]


@dataclass
class Usage:
    """What the calls inside one :func:`track_usage` block used (thread-safe counters)."""

    tokens: int = 0
    requests: int = 0
    items: int = 0
    cached: int = 0
    cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, tokens: int = 0, items: int = 0, cost: float = 0.0, cached: int = 0) -> None:
        """Count one successful request (or, with ``cached`` only, a cache lookup)."""
        with self._lock:
            self.tokens += tokens
            self.items += items
            self.cost += cost
            self.cached += cached
            if items:
                self.requests += 1


tracking: ContextVar[tuple[Usage, ...]] = ContextVar("embedguard_usage", default=())
"""The usage blocks open in this context (innermost last); empty when nobody tracks usage."""


@contextmanager
def track_usage() -> Iterator[Usage]:
    """Count the usage of the embedding calls made in this context until the block ends.

    Blocks nest: an inner block's usage is also counted by the outer ones.
    """
    usage = Usage()
    token = tracking.set((*tracking.get(), usage))
    try:
        yield usage
    finally:
        tracking.reset(token)


def record(*, tokens: int = 0, items: int = 0, cost: float = 0.0, cached: int = 0) -> None:
    """Add to every usage block open in the current context (cheap when there is none)."""
    for usage in tracking.get():
        usage.add(tokens=tokens, items=items, cost=cost, cached=cached)
