"""Shared state for a fleet of processes: one provider budget and one circuit breaker in Redis.

:class:`RedisCircuitBreaker` and :class:`RedisRateLimiter` are drop-in replacements for
:class:`~embedguard.core.breaker.CircuitBreaker` and :class:`~embedguard.core.ratelimit.RateLimiter`
(they subclass them) whose state lives in Redis, so every worker of a job counts toward the same
limits and sees the same breaker. All bookkeeping runs in Lua scripts on the Redis server, timed
by the server's ``TIME`` (the workers' clocks may disagree).

While Redis is unreachable each object keeps working on its own in-memory state (the plain
breaker or limiter it extends), logs one warning per outage, reports ``degraded=True``, and
goes back to Redis as soon as it answers again (tried at most every ``resync_interval``
seconds). Use :func:`connect` (or a client with equally short socket timeouts): a client
without a read timeout would let a hung Redis stall every call.

Example::

    from embedguard.core.shared_state import RedisCircuitBreaker, RedisRateLimiter, connect

    redis = connect("redis://localhost:6379/0")     # short timeouts: a hung Redis costs 0.2 s
    breaker = RedisCircuitBreaker(profile.breaker, redis, name=endpoint_identity)
    limiter = RedisRateLimiter(profile.rate_limit, redis, name=endpoint_identity)

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


def connect(url: str, *, timeout: float = 0.2) -> redis.Redis:
    """Open a Redis client for shared state, with short socket timeouts.

    A Redis that hangs (accepts connections but never answers) costs a call at most
    ``timeout`` seconds, once per ``resync_interval``: the command fails with a timeout, is not
    retried, and the breaker or limiter goes on with local state. A command whose connection
    was dropped (a pooled connection gone stale after a Redis restart) is retried once at once.

    Args:
        url: A ``redis://``, ``rediss://`` or ``unix://`` URL (database and password included).
        timeout: Seconds allowed to connect and for each reply.

    Returns:
        The client (connections are opened lazily, so this never fails for an unreachable
        server).
    """
    module = require("redis", "redis")
    backoff = require("redis.backoff", "redis")
    exceptions = require("redis.exceptions", "redis")
    retry = require("redis.retry", "redis")
    client: redis.Redis = module.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry.Retry(backoff.NoBackoff(), 1, supported_errors=(exceptions.ConnectionError,)),
    )
    return client
