"""Usage: the tokens, requests and cost of the calls made inside a ``with`` block.

Metrics count everything a client ever did; usage answers "what did *these* calls cost?". A
block counts by one of two scopes::

    from embedguard.core.usage import track_usage

    with track_usage() as usage:            # this context: the calls made here
        client.embed(texts)

    with track_usage(owner=client) as usage:  # this client: its calls from any thread or task
        pool.map(client.embed, chunks)

    print(usage.tokens, usage.requests, usage.cost)

A context block follows ``contextvars``: concurrent calls in other threads or tasks are not
counted, while the batches a call sends on worker threads or tasks are. An owner block counts the
calls made on its owner (an :class:`~embedguard.EmbeddingClient`, or anything a caller names with
:func:`calls_on`) while it is open, whichever thread makes them, and nothing made on another
owner; it is what the adapters' ``usage()`` returns. Texts served from the cache cost nothing and
are counted in ``cached``. Small calls merged into one request by micro-batching are counted in
the context that opened the batching window (always the same owner: merging is per client).

The send path reports with :func:`record`; the owner is named by ``owner=`` or, when omitted, by
the innermost :func:`calls_on` of the context.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["Usage", "calls_on", "record", "track_usage"]


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
"""The per-context usage blocks open here (innermost last); empty when nobody tracks usage."""
_current = tracking
_caller: ContextVar[object | None] = ContextVar("embedguard_usage_owner", default=None)
# Open owner blocks by id(owner); each block holds its owner, so an id is not reused meanwhile.
# Values are tuples replaced whole under the lock, so record() reads them without it.
_by_owner: dict[int, tuple[Usage, ...]] = {}
owners = _by_owner
"""The open per-owner blocks, by ``id(owner)``: the send path skips :func:`record` when this and
:data:`tracking` are both empty (no call at all on the hot path)."""
_owners_lock = threading.Lock()


@contextmanager
def track_usage(owner: object | None = None) -> Iterator[Usage]:
    """Count the usage of embedding calls until the block ends.

    Args:
        owner: ``None`` counts the calls made in this context (blocks nest: an inner block's
            usage is also counted by the outer ones). An object (a client) counts the calls
            made on it, from any thread or task, while the block is open.
    """
    usage = Usage()
    if owner is None:
        token = _current.set((*_current.get(), usage))
        try:
            yield usage
        finally:
            _current.reset(token)
        return
    key = id(owner)
    with _owners_lock:
        _by_owner[key] = (*_by_owner.get(key, ()), usage)
    try:
        yield usage
    finally:
        with _owners_lock:
            rest = tuple(u for u in _by_owner.get(key, ()) if u is not usage)
            if rest:
                _by_owner[key] = rest
            else:
                _by_owner.pop(key, None)


@contextmanager
def calls_on(owner: object) -> Iterator[None]:
    """Mark the calls made in this context (and its worker threads and tasks) as on ``owner``."""
    token = _caller.set(owner)
    try:
        yield
    finally:
        _caller.reset(token)


def record(
    *,
    tokens: int = 0,
    items: int = 0,
    cost: float = 0.0,
    cached: int = 0,
    owner: object | None = None,
) -> None:
    """Add to the context's blocks and to the blocks open on ``owner`` (cheap when none is).

    ``owner`` defaults to the innermost :func:`calls_on` of the current context.
    """
    for usage in _current.get():
        usage.add(tokens=tokens, items=items, cost=cost, cached=cached)
    if _by_owner:
        named = owner if owner is not None else _caller.get()
        if named is not None:
            for usage in _by_owner.get(id(named), ()):
                usage.add(tokens=tokens, items=items, cost=cost, cached=cached)
