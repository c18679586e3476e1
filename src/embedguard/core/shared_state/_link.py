"""The connection to Redis: run a script, or report that local state must be used."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..._extras import require

if TYPE_CHECKING:
    import redis

_log = logging.getLogger("embedguard.core.shared_state")

Arg = str | int | float

_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PLAIN_HEAD = re.compile(r"[A-Za-z0-9._-]{0,32}")


def key_tag(name: str) -> str:
    """The part of a Redis key that stands for ``name`` (an endpoint's identity).

    A plain name (at most 64 of ``A-Z a-z 0-9 . _ -``) is used as is, so keys stay readable
    (``embedguard:{openai}:breaker``). Any other name, e.g. ``"azure|https://east.example/...
    |text-embedding-3-small"``, becomes its leading plain characters (at most 32) and ``~``
    and 16 hex digits of its SHA-256: distinct names get distinct keys, the key never holds a
    URL, a brace or a secret, and its length is bounded. ``~`` never occurs in a plain name,
    so the two forms cannot collide.
    """
    if _PLAIN.fullmatch(name):
        return name
    head = _PLAIN_HEAD.match(name)
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{head.group() if head else ''}~{digest}"


class Link:
    """Runs Lua scripts on Redis and tracks outages.

    :meth:`run` returns ``None`` when Redis is unreachable (the caller then uses its local
    state). The first failure of an outage logs one warning; during the outage Redis is tried
    again at most every ``resync_interval`` seconds; the first success ends the outage.

    Any :class:`redis.RedisError` counts as an outage, not only connection errors and
    timeouts: a read-only replica after a failover, an out-of-memory server or a foreign value
    under the key must not fail the requests the shared state only paces.

    Args:
        client: The Redis client.
        what: The owner, for log messages (``"circuit breaker 'openai'"``).
        clock: A monotonic clock in seconds.
        resync_interval: Seconds between attempts to reach Redis during an outage.
        on_outage: Called once when an outage starts (before the local state is used).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        what: str,
        clock: Callable[[], float],
        resync_interval: float,
        on_outage: Callable[[], None] | None = None,
    ) -> None:
        exceptions = require("redis.exceptions", "redis")
        self._errors: type[BaseException] = exceptions.RedisError
        self._client = client
        self._what = what
        self._clock = clock
        self._interval = resync_interval
        self._on_outage = on_outage
        self._lock = threading.Lock()
        self._degraded = False
        self._retry_at = 0.0

    @property
    def degraded(self) -> bool:
        """Whether the last attempt to reach Redis failed."""
        return self._degraded

    def register(self, source: str) -> Any:
        """Register a Lua script (run with EVALSHA, loaded again when the server lost it)."""
        return self._client.register_script(source)

    def run(self, script: Any, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run ``script``; ``None`` when Redis is unreachable or the outage is still on."""
        with self._lock:
            if self._degraded and self._clock() < self._retry_at:
                return None
        try:
            result = script(keys=list(keys), args=list(args))
        except self._errors as exc:
            with self._lock:
                first = not self._degraded
                self._degraded = True
                self._retry_at = self._clock() + self._interval
            if first:
                _log.warning(
                    "%s: shared state unavailable, using local state (%s: %s)",
                    self._what,
                    type(exc).__name__,
                    exc,
                )
                if self._on_outage is not None:
                    self._on_outage()
            return None
        with self._lock:
            recovered, self._degraded = self._degraded, False
        if recovered:
            _log.info("%s: shared state available again, re-synced", self._what)
        return result
