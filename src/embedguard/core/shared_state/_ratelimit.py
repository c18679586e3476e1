"""A rate limiter whose buckets live in Redis: one provider budget for every worker of a fleet."""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

from ..config import RateLimit
from ..ratelimit import (
    MAX_COUNT,
    MAX_PAUSE,
    RateLimiter,
    RateLimitInfo,
    Reservation,
    bound_count,
    bound_seconds,
)
from . import _lua
from ._link import Arg, Link

if TYPE_CHECKING:
    import redis

__all__ = ["RedisRateLimiter"]

_UNKNOWN_PAUSE = 1.0  # seconds to pause on a 429 without retry-after when no rate is known
_MIN_RATE = 1e-6  # per minute: a limit in force is never sent as 0 (which means "unlimited")


class _SharedReservation(Reservation):
    """A booking made in the shared buckets (settled in Redis, not in the local buckets)."""

    __slots__ = ()


class RedisRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose requests/min and tokens/min buckets are shared through Redis.

    Each bucket is a GCRA bucket kept by a Lua script timed by the Redis server's clock:
    capacity one minute of the limit, refilling at ``limit / 60`` per second, so the workers
    together never exceed the limit. :meth:`reserve` always books (a request larger than the
    bucket waits, it is never rejected); :meth:`correct` and :meth:`cancel` settle atomically.

    Adapting to the server is simpler than in the plain limiter: :meth:`observe` lowers the
    shared buckets to the ``remaining`` the headers report (minus this process's unsettled
    bookings), and :meth:`on_rate_limited` pushes a shared "not before" time (``retry_after``,
    at most 60 s, or 1 s when nothing limits the rate and the server gave no wait) or, without
    a wait hint, empties the shared buckets (to 0, never into debt). Which limit is in force
    (server, configured, assumed) and the blind slow-down are learned per process, as in the
    plain limiter, and set the capacity and rate at which that process books. Every hint is
    bounded first, so no header can remove, zero or stall the shared limit.

    While Redis is unreachable the limiter paces on its local buckets (the plain limiter:
    each process then allows the whole limit), logs one warning per outage, reads
    :attr:`degraded`, and goes back to the shared buckets when Redis answers (tried at most
    every ``resync_interval`` seconds).

    Args:
        cap: The configured caps per minute (``None``: learn), normally the same in every worker.
        redis: The Redis client (see :func:`~embedguard.core.shared_state.connect`).
        name: The provider name (part of the key ``<key_prefix>:{<name>}:ratelimit``).
        key_prefix: The prefix of the Redis keys.
        resync_interval: Seconds between attempts to reach Redis during an outage.
        assumed: The provider's assumed limits (see :class:`RateLimiter`).
    """

    def __init__(
        self,
        cap: RateLimit | None,
        redis: redis.Redis,
        *,
        name: str,
        key_prefix: str = "embedguard",
        resync_interval: float = 2.0,
        assumed: RateLimit | None = None,
    ) -> None:
        super().__init__(cap, assumed)
        self._name = name
        self._key = f"{key_prefix}:{{{name}}}:ratelimit"
        self._link = Link(
            redis,
            what=f"rate limiter {name!r}",
            clock=time.monotonic,
            resync_interval=resync_interval,
        )
        self._script = self._link.register(_lua.RATE_LIMIT)
        self._booked_lock = threading.Lock()
        self._booked = [0, 0]  # shared bookings (requests, tokens) not yet settled

    def __repr__(self) -> str:
        return f"RedisRateLimiter(name={self._name!r}, key={self._key!r}, degraded={self.degraded})"

    @property
    def degraded(self) -> bool:
        """Whether Redis is unreachable and the local buckets are in use."""
        return self._link.degraded

    def levels(self) -> tuple[float | None, float | None]:
        """The shared (requests, tokens) levels now; ``None`` where unlimited or degraded."""
        reply = self._run(0, 0)
        if reply is None:
            return None, None
        requests, tokens = (float(x) if x else None for x in reply[1:3])
        return requests, tokens

    def reserve(self, tokens: int) -> Reservation:
        """Book one request and ``tokens`` tokens in the shared buckets.

        Returns:
            The booking; wait ``delay`` seconds before sending.

        Raises:
            ValueError: ``tokens`` is negative.
        """
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        reply = self._run(1, tokens)
        if reply is None:
            return super().reserve(tokens)
        self._book(1, tokens)
        return _SharedReservation(tokens, float(reply[0]), self._clock())

    def correct(self, reservation: Reservation, actual_tokens: int) -> None:
        """Settle a booking with the usage the response reported (gives back or takes more)."""
        if not isinstance(reservation, _SharedReservation):
            super().correct(reservation, actual_tokens)
            return
        self._book(-1, -reservation.tokens)
        if actual_tokens != reservation.tokens:
            self._run(0, actual_tokens - reservation.tokens)

    def cancel(self, reservation: Reservation) -> None:
        """Give a booking back in full: the request was never sent."""
        if not isinstance(reservation, _SharedReservation):
            super().cancel(reservation)
            return
        self._book(-1, -reservation.tokens)
        self._run(-1, -reservation.tokens)

    def observe(self, info: RateLimitInfo) -> None:
        """Learn the server's limits and lower the shared buckets to its ``remaining`` counts.

        A ``limit_*`` outside ``[1, MAX_COUNT]`` marks that quantity's headers as placeholders
        or garbage (ignored).
        """
        super().observe(info)
        floors = self._floors(info)
        if floors != [None, None]:
            self._run(0, 0, floors=floors)

    def on_rate_limited(
        self,
        retry_after: float | None,
        *,
        info: RateLimitInfo | None = None,
        reservation: Reservation | None = None,
    ) -> None:
        """After a 429: apply the plain limiter's rules here, and make the whole fleet wait.

        Every worker's next booking waits at least ``retry_after`` seconds (bounded to
        ``[0, 60]``; NaN is ignored). Without a wait hint the shared buckets drop to the
        ``remaining`` counts of ``info`` (minus this process's unsettled bookings) if it has
        any, else to 0; a limiter with no limit in force pauses the fleet 1 s instead.
        """
        super().on_rate_limited(retry_after, info=info, reservation=reservation)
        pause = bound_seconds(retry_after, MAX_PAUSE)
        floors: list[float | None] = [None, None] if info is None else self._floors(info)
        if pause is None:
            if not self.enabled:
                pause = _UNKNOWN_PAUSE
            elif floors == [None, None]:
                floors = [0.0, 0.0]
        self._run(0, 0, floors=floors, pause=pause)

    # -- internals ----------------------------------------------------------------------------
    def _book(self, requests: int, tokens: int) -> None:
        with self._booked_lock:
            self._booked[0] = max(0, self._booked[0] + requests)
            self._booked[1] = max(0, self._booked[1] + tokens)

    def _floors(self, info: RateLimitInfo) -> list[float | None]:
        """The levels ``info``'s remaining counts set (``None``: none), less what is booked."""
        floors: list[float | None] = [None, None]
        pairs = (
            (info.limit_requests, info.remaining_requests),
            (info.limit_tokens, info.remaining_tokens),
        )
        with self._booked_lock:
            for i, (limit, raw) in enumerate(pairs):
                remaining = bound_count(raw)
                usable = limit is None or bound_count(limit, minimum=1) is not None
                if remaining is not None and usable:
                    floors[i] = remaining - self._booked[i]
        return floors

    def _shape(self) -> list[float]:
        """(capacity, rate per second) of both buckets; capacity 0 means unlimited.

        A limit in force is always sent as a finite number above 0, so nothing a server says
        can turn the shared limit into "unlimited".
        """
        shape: list[float] = []
        for per_minute in self.effective_limits:
            if per_minute is None:
                shape += [0.0, 0.0]
                continue
            if not math.isfinite(per_minute):
                per_minute = float(MAX_COUNT)
            per_minute = min(max(per_minute, _MIN_RATE), float(MAX_COUNT))
            shape += [per_minute, per_minute / 60.0]
        return shape

    def _run(
        self,
        requests: int,
        tokens: int,
        *,
        floors: list[float | None] | None = None,
        pause: float | None = None,
    ) -> list[str] | None:
        floors = floors or [None, None]
        args: list[Arg] = [repr(x) for x in self._shape()]
        args += [requests, tokens]
        args += ["" if f is None else repr(f) for f in floors]
        args.append("" if pause is None else repr(pause))
        raw = self._link.run(self._script, (self._key,), args)
        if raw is None:
            return None
        return [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
