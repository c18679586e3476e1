"""Shared state for a fleet of processes: one provider budget and one circuit breaker in Redis.

:class:`RedisCircuitBreaker` and :class:`RedisRateLimiter` are drop-in replacements for
:class:`~embedguard.core.breaker.CircuitBreaker` and :class:`~embedguard.core.ratelimit.RateLimiter`
(they subclass them) whose state lives in Redis, so every worker of a job counts toward the same
limits and sees the same breaker. All bookkeeping runs in Lua scripts on the Redis server, timed
by the server's ``TIME`` (the workers' clocks may disagree).

While Redis is unreachable each object keeps working on its own in-memory state (the plain
breaker or limiter it extends), logs one warning per outage, reports ``degraded=True``, and
goes back to Redis as soon as it answers again (tried at most every ``resync_interval``
seconds).

Example::

    from embedguard.core.shared_state import RedisCircuitBreaker, RedisRateLimiter, connect

    redis = connect("redis://localhost:6379/0")
    breaker = RedisCircuitBreaker(profile.breaker, redis, name=profile.name)
    limiter = RedisRateLimiter(profile.rate_limit, redis, name=profile.name)

Requires the ``redis`` extra (``pip install 'embedguard[redis]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._extras import require
from ._breaker import RedisCircuitBreaker
from ._ratelimit import RedisRateLimiter

if TYPE_CHECKING:
    import redis

__all__ = ["RedisCircuitBreaker", "RedisRateLimiter", "connect"]


def connect(url: str, *, timeout: float = 0.5) -> redis.Redis:
    """Open a Redis client for shared state, with short socket timeouts.

    A command is retried once at once (a pooled connection may be stale after a Redis
    restart), never with a backoff: an unreachable Redis must fail fast so that requests go on
    with local state.

    Args:
        url: A ``redis://``, ``rediss://`` or ``unix://`` URL (database and password included).
        timeout: Seconds allowed to connect and for each reply.

    Returns:
        The client (connections are opened lazily, so this never fails for an unreachable
        server).
    """
    module = require("redis", "redis")
    backoff = require("redis.backoff", "redis")
    retry = require("redis.retry", "redis")
    client: redis.Redis = module.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry.Retry(backoff.NoBackoff(), 1),
    )
    return client
